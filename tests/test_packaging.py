"""The built wheel installs ``adapters/`` and ``vendored/`` as ``atgan_plugin.adapters`` and
``atgan_plugin.vendored``, and nothing under a generic top-level name.

The wheel is built from a copy of the source tree (so the checkout gets no ``build/`` folder),
installed with ``pip --target`` into a temporary folder, and imported in a subprocess whose path
holds that folder and not the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "atgan_plugin", "adapters", "vendored"]

pytest.importorskip("build")
pytest.importorskip("setuptools")


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)
    out = tmp_path_factory.mktemp("dist")
    # --skip-dependency-check: setuptools >= 70.1 builds wheels itself; the separate `wheel`
    # package named in [build-system] need not be installed for a --no-isolation build.
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(out)],
        cwd=tree,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        cwd=target,
    )
    return target


def test_wheel_holds_the_mapped_packages(names: list[str]) -> None:
    adapters = sorted(n for n in names if n.startswith("atgan_plugin/adapters/"))
    expected = sorted(f"atgan_plugin/adapters/{p.name}" for p in (ROOT / "adapters").glob("*.py"))
    assert expected and adapters == expected
    vendored = sorted(n for n in names if n.startswith("atgan_plugin/vendored/stylegan2_ada/"))
    expected_vendored = sorted(
        f"atgan_plugin/vendored/stylegan2_ada/{p.name}"
        for p in (ROOT / "vendored" / "stylegan2_ada").iterdir()
        if p.suffix == ".py" or p.name == "README.md"
    )
    assert "atgan_plugin/vendored/stylegan2_ada/networks.py" in expected_vendored and vendored == expected_vendored
    for required in (
        "atgan_plugin/__init__.py",
        "atgan_plugin/attack/atgan.py",
        "atgan_plugin/paper/cifar.py",
        "atgan_plugin/vendored/__init__.py",
        "atgan_plugin/vendored/README.md",
        "atgan_plugin/py.typed",
        "atgan_plugin/pretrained/__init__.py",
        "atgan_plugin/templates/report.html.j2",
        "atgan_plugin/human_eval/__init__.py",
        "atgan_plugin/human_eval/static/page.html",
        "atgan_plugin/human_eval/static/page.js",
        "atgan_plugin/human_eval/static/page.css",
        "atgan_plugin/torchattacks.py",
        "atgan_plugin/art.py",
    ):
        assert required in names


def test_wheel_has_no_generic_top_level_names(names: list[str]) -> None:
    tops = {n.split("/")[0] for n in names}
    assert not any(top in {"adapters", "vendored", "tests", "examples", "benchmarks"} for top in tops)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"atgan_plugin"}


def test_wheel_metadata(names: list[str], wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        top_level = (
            archive.read(f"{info}/top_level.txt").decode().split()
            if f"{info}/top_level.txt" in names
            else ["atgan_plugin"]
        )
    assert "Name: atgan-plugin" in metadata
    assert "atgan = atgan_plugin.cli:main" in entry_points
    assert top_level == ["atgan_plugin"]


def test_shipped_checkpoints_are_package_data(names: list[str]) -> None:
    folder = ROOT / "atgan_plugin" / "pretrained" / "fashion-mnist"
    shipped = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    prefix = "atgan_plugin/pretrained/fashion-mnist/"
    packaged = sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix))
    assert packaged == shipped
    assert "targets/A-iter.safetensors" in packaged  # the 16 targets of `atgan reproduce`


def test_installed_wheel_imports_from_the_install_folder(installed: Path) -> None:
    code = (
        "import importlib.util, json\n"
        "import atgan_plugin, atgan_plugin.adapters, atgan_plugin.vendored\n"
        "from atgan_plugin import ATGANAttack, load_generator\n"
        "from atgan_plugin.adapters import ACWGANGPGenerator, StyleGAN2ADAGenerator\n"
        "import atgan_plugin.vendored.stylegan2_ada.snapshot as snapshot\n"
        "from importlib import resources\n"
        "from jinja2 import Environment, PackageLoader\n"
        "Environment(loader=PackageLoader('atgan_plugin', 'templates')).get_template('report.html.j2')\n"
        "resources.files('atgan_plugin.human_eval').joinpath('static', 'page.js').read_bytes()\n"
        "print(json.dumps({'package': atgan_plugin.__file__, 'adapters': atgan_plugin.adapters.__file__,\n"
        "                  'vendored': atgan_plugin.vendored.__file__, 'attack': ATGANAttack.__module__,\n"
        "                  'adapter_module': ACWGANGPGenerator.__module__,\n"
        "                  'stylegan_module': StyleGAN2ADAGenerator.__module__, 'snapshot': snapshot.__file__,\n"
        "                  'top_adapters': importlib.util.find_spec('adapters') is not None,\n"
        "                  'top_vendored': importlib.util.find_spec('vendored') is not None}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}
    result = run([sys.executable, "-c", code], cwd=installed, env=env)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("package", "adapters", "vendored", "snapshot"):
        path = Path(found[key]).resolve()
        assert path.is_relative_to(installed.resolve()), f"{key} imported from {path}, not from the wheel"
        assert not path.is_relative_to(ROOT)
    assert Path(found["adapters"]).parent == installed.resolve() / "atgan_plugin" / "adapters"
    assert found["adapter_module"] == "atgan_plugin.adapters.acwgan_gp"
    assert found["stylegan_module"] == "atgan_plugin.adapters.stylegan2_ada"
    assert Path(found["snapshot"]).parent == installed.resolve() / "atgan_plugin" / "vendored" / "stylegan2_ada"
    assert not found["top_adapters"] and not found["top_vendored"]
