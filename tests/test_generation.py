"""``atgan generate`` keeps only what it can vouch for and deletes only what it wrote.

One process, through the command: a resume verifies every kept shard (its bytes, its tensors' digest,
its plan, its tensors) and makes a damaged one again, byte for byte as it was; a folder holding
another plan's shards is refused by name, with or without its ``generation.json``; identical runs
write identical files; a user's hidden ``*.tmp`` files stay; bad folders, plan files, sizes and fit
files are named. (The torchrun generation is in test_distributed.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

from atgan_plugin import ACWGANGPGenerator, ATGANAttack
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.atomic_files import is_our_temporary, temporary_name
from atgan_plugin.attack.fit_store import FIT_KIND
from atgan_plugin.attack.generation import MANIFEST, PLAN, GenerationPlan, file_sha256, read_shard
from atgan_plugin.attack.shard_files import shard_metadata, write_shard
from atgan_plugin.checkpoints import Checkpoint, save_checkpoint, write_safetensors
from atgan_plugin.cli import main
from atgan_plugin.models import build_classifier, load_classifier, save_classifier

CLASSIFIER_CONFIG = {"architecture": "D", "num_classes": 10, "in_channels": 1}
N, SHARD = 40, 16  # three shards: 16, 16 and 8 examples


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained AC-WGAN_GP generator, Model D, two tiny fits for target 3 (seeds 0 and 1) and two fit
    files whose recorded target is outside the generator's classes (with valid digests)."""
    folder = tmp_path_factory.mktemp("generate")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = ACWGANGPGenerator(Generator())
        generator.save(folder / "generator.safetensors")
        save_classifier(folder / "model.safetensors", build_classifier("D"), CLASSIFIER_CONFIG, {})
    model = load_classifier(folder / "model.safetensors")
    for seed in (0, 1):
        attack = ATGANAttack(model, generator=generator, guard=None, steps=2, batch_size=8, seed=seed, progress=False)
        attack.save_fit(folder / f"fit{seed}.safetensors", target=3)
    for target in (99, -3):
        state = dict(generator.state_dict())
        save_checkpoint(folder / f"fit{target}.safetensors", Checkpoint(FIT_KIND, state, {}, {"target": target}))
    return folder


def generate(inputs: Path, out: Path, *extra: str, n: int = N, fit: str = "fit0", steps: int = 2) -> Result:
    args = ["generate", "--fit", inputs / f"{fit}.safetensors", "-n", n, "--out", out, "--shard-size", SHARD]
    args += ["--generator", inputs / "generator.safetensors", "--model", inputs / "model.safetensors"]
    args += ["--search-steps", steps, "--batch-size", 16, "--device", "cpu", "--no-progress", *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def shards(out: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(out.glob("shard-*.safetensors"))}


def manifest_digests(out: Path) -> dict[str, str]:
    return {e["path"]: e["sha256"] for e in json.loads((out / MANIFEST).read_text())["shards"]}


def plan_of(out: Path) -> GenerationPlan:
    record = json.loads((out / PLAN).read_text())["plan"]
    return GenerationPlan(**{k: v for k, v in record.items() if k != "format"})


@pytest.fixture(scope="module")
def reference(inputs: Path) -> tuple[Path, dict[str, str]]:
    """A complete generation of the plan every test resumes, and its shards' SHA-256."""
    out = inputs / "reference"
    result = generate(inputs, out)
    assert result.exit_code == 0, result.output
    assert shards(out) == manifest_digests(out) and len(shards(out)) == 3
    return out, shards(out)


@pytest.fixture
def copy(reference: tuple[Path, dict[str, str]], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    return out


# ------------------------------------------------------------------------------------------------
# Reproducible bytes.


def test_identical_runs_write_identical_shards(
    inputs: Path, reference: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    result = generate(inputs, tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert shards(tmp_path / "again") == reference[1] == manifest_digests(tmp_path / "again")


# ------------------------------------------------------------------------------------------------
# A resume verifies every kept shard: each damage is made again, byte for byte as it was.


def _flip_bytes(path: Path, plan: GenerationPlan) -> None:
    data = bytearray(path.read_bytes())
    data[-4_000:] = bytes(b ^ 0xFF for b in data[-4_000:])  # 4,000 bytes of image data
    path.write_bytes(bytes(data))


def _nan_images(path: Path, plan: GenerationPlan) -> None:
    tensors = read_shard(path)
    tensors["images"][0, 0, 0, :5] = float("nan")
    write_shard(path, plan, 1, tensors)  # a digest that matches the NaN images: caught by the values


def _no_source_labels(path: Path, plan: GenerationPlan) -> None:
    tensors = read_shard(path)
    del tensors["source_labels"]
    write_shard(path, plan, 1, tensors)


def _no_digest(path: Path, plan: GenerationPlan) -> None:
    write_safetensors(path, read_shard(path), shard_metadata(plan, 1))


def _other_images_with_a_fresh_digest(path: Path, plan: GenerationPlan) -> None:
    tensors = read_shard(path)
    tensors["images"] = tensors["images"] * 0.5  # plausible images, a matching digest: only the manifest knows
    write_shard(path, plan, 1, tensors)


def _another_shards_labels(path: Path, plan: GenerationPlan) -> None:
    tensors = read_shard(path)
    tensors["source_labels"] = (tensors["source_labels"] + 1) % 10
    write_shard(path, plan, 1, tensors)


def _truncated(path: Path, plan: GenerationPlan) -> None:
    path.write_bytes(path.read_bytes()[:1000])


DAMAGES: list[tuple[str, Callable[[Path, GenerationPlan], None], str, bool]] = [
    ("4,000 changed bytes", _flip_bytes, "SHA-256 differs from the one manifest.json records", True),
    ("4,000 changed bytes, no manifest", _flip_bytes, "do not match the digest it records", False),
    ("NaN images", _nan_images, "5 of its image values are NaN or infinite", False),
    ("no source_labels", _no_source_labels, r"holds the tensors \['images', 'target_labels'\]", False),
    ("other images, digest redone", _other_images_with_a_fresh_digest, "differs from the one manifest.json", True),
    ("labels its seed does not draw", _another_shards_labels, "source_labels are not the ones its seed draws", False),
    ("truncated", _truncated, "unreadable", False),
    ("no digest recorded", _no_digest, "do not match the digest it records", False),
]


@pytest.mark.parametrize("damage, problem, keep_manifest", [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES])
def test_a_damaged_shard_is_made_again(
    inputs: Path,
    reference: tuple[Path, dict[str, str]],
    copy: Path,
    damage: Callable[[Path, GenerationPlan], None],
    problem: str,
    keep_manifest: bool,
) -> None:
    if not keep_manifest:
        (copy / MANIFEST).unlink()
    damage(copy / "shard-000001.safetensors", plan_of(copy))
    with pytest.warns(UserWarning, match=problem):
        result = generate(inputs, copy)
    assert result.exit_code == 0, result.output
    assert "16 made now" in result.output  # the damaged shard only
    assert shards(copy) == reference[1] == manifest_digests(copy)


def test_a_shard_that_links_outside_is_replaced_never_read(
    inputs: Path, reference: tuple[Path, dict[str, str]], copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(copy / "shard-000002.safetensors", outside)
    (copy / "shard-000002.safetensors").unlink()
    (copy / "shard-000002.safetensors").symlink_to(outside)
    with pytest.warns(UserWarning, match="a link or not a regular file"):
        result = generate(inputs, copy)
    assert result.exit_code == 0, result.output
    assert not (copy / "shard-000002.safetensors").is_symlink() and shards(copy) == reference[1]
    assert file_sha256(outside) == reference[1]["shard-000002.safetensors"]  # untouched


# ------------------------------------------------------------------------------------------------
# Another plan's shards are refused by name, with or without generation.json.


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(fit="fit1"), "fit_sha256"),
        (dict(steps=0), "search_steps 2 (this plan: 0)"),
        (dict(n=48), "total 40 (this plan: 48)"),
    ],
    ids=["another --fit", "another --search-steps", "another -n"],
)
def test_another_plan_is_refused_even_without_its_plan_file(
    inputs: Path, reference: tuple[Path, dict[str, str]], copy: Path, change: dict[str, Any], named: str
) -> None:
    result = generate(inputs, copy, **change)
    assert result.exit_code == 1 and "holds a generation with" in result.output  # generation.json
    (copy / PLAN).unlink()
    result = generate(inputs, copy, **change)
    assert result.exit_code == 1 and "holds a generation with" in result.output  # manifest.json
    (copy / MANIFEST).unlink()
    result = generate(inputs, copy, **change)
    assert result.exit_code == 1, result.output
    assert "shard-000000.safetensors is a shard of another generation" in result.output and named in result.output
    assert "Traceback" not in result.output and shards(copy) == reference[1] and not (copy / PLAN).exists()


# ------------------------------------------------------------------------------------------------
# Temporary files: only ours go.


def test_only_our_temporaries_are_removed(inputs: Path, copy: Path) -> None:
    users = [copy / ".draft.20240101.tmp", copy / ".thesis.tex.backup_1.tmp", copy / "notes.tmp"]
    for path in users:
        path.write_text("a user's")
    ours = copy / temporary_name("shard-000001.safetensors")
    ours.write_bytes(b"half a shard")
    (copy / MANIFEST).unlink()
    result = generate(inputs, copy)
    assert result.exit_code == 0, result.output
    assert all(path.read_text() == "a user's" for path in users) and not ours.exists()
    assert not any(is_our_temporary(p.name) for p in copy.iterdir())


# ------------------------------------------------------------------------------------------------
# Named errors.


def test_a_read_only_output_folder_is_named(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: refuse creating files in the folder as the kernel would
        real_open = os.open

        def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & os.O_CREAT and Path(path).parent == out:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    try:
        result = generate(inputs, out)
    finally:
        monkeypatch.undo()
        out.chmod(0o755)
    assert result.exit_code == 1 and f"cannot write to --out {out}: Permission denied" in result.output
    assert "Traceback" not in result.output and list(out.iterdir()) == []


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"plan": []}', r"holds no plan \(a JSON object with a 'plan' object\)"),
        ("[]", "holds no plan"),
        ("{not json", r"is unreadable \(JSONDecodeError"),
        ("[" * 100_000 + "]" * 100_000, r"is unreadable \(RecursionError"),
    ],
    ids=["plan is a list", "a list", "not JSON", "100,000 deep"],
)
def test_a_bad_plan_file_is_named(inputs: Path, tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / PLAN).write_text(content)
    result = generate(inputs, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / 'out' / PLAN}" in result.output and re.search(match, result.output)


@pytest.mark.parametrize(
    "n, shard_size, match",
    [
        (10**12, 1, r"make 1,000,000,000,000 shard files; at most 100,000: pass --shard-size 10,000,000 or more"),
        (10**9, 10**9, r"a shard of 1,000,000,000 images of shape \(1, 28, 28\) takes 2,920\.6 GiB in memory"),
        (10**13, 10**7, r"make 1,000,000 shard files"),
        (10**10, 10**5, r"GiB more in .*, which has .* GiB free"),
    ],
    ids=["10**12 shards", "a shard of 10**9", "10**13 examples", "more than the free disk"],
)
def test_sizes_are_checked_before_anything_is_written(
    inputs: Path, tmp_path: Path, n: int, shard_size: int, match: str
) -> None:
    out = tmp_path / "out"
    args = ["generate", "--fit", inputs / "fit0.safetensors", "-n", n, "--out", out, "--shard-size", shard_size]
    args += ["--generator", inputs / "generator.safetensors", "--search-steps", 0, "--device", "cpu"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert re.search(match, result.output.replace("\n", " ")), result.output
    assert not out.exists()


@pytest.mark.parametrize("target", [99, -3])
def test_a_fit_whose_target_is_not_a_class_is_refused(inputs: Path, tmp_path: Path, target: int) -> None:
    for steps in (0, 2):
        result = generate(inputs, tmp_path / "out", fit=f"fit{target}", steps=steps)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"records target {target}, outside the generator's classes [0, 10)" in result.output
    assert not (tmp_path / "out").exists()
