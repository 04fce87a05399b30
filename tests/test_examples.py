"""The scripts in ``examples/`` run as a user runs them (a subprocess each), on a small slice.

They use the shipped Fashion-MNIST checkpoints and the real test set, so these tests skip
themselves, saying which, while either is missing. Fits are a few steps: the point is that the
scripts work end to end and print their numbers, not what the numbers are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SLICE = ["--n", "40", "--batch-size", "20", "--fit-steps", "3", "--device", "cpu", "--no-progress"]


def _env(**extra: str) -> dict[str, str]:
    # One thread: CI machines are small and shared; the venv's bin first, for `atgan`.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "OMP_NUM_THREADS": "1", "PATH": path, **extra}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Path]:
    """The shipped checkpoints and the dataset the examples default to; skip when absent."""
    from atgan_plugin.data import DatasetNotFoundError, load_dataset
    from atgan_plugin.pretrained import pretrained_path

    try:
        paths = {name: pretrained_path(name) for name in ("generator", "model_a", "oracle")}
    except FileNotFoundError as error:
        pytest.skip(f"the examples default to the shipped checkpoints: {error}")
    try:
        load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError as error:
        pytest.skip(f"the examples read the Fashion-MNIST test set: {error}")
    return paths


def run_example(*args: str | Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=timeout, env=_env(**env))
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_foolbox_robustness(shipped: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "foolbox.json"
    result = run_example(sys.executable, EXAMPLES / "foolbox_robustness.py", *SLICE, "--json", out)
    numbers = json.loads(out.read_text())
    assert numbers["n"] == 40
    robust = numbers["robust_accuracy"]
    assert set(robust) == {"LinfPGD (eps=0.1, 20 steps)", "AT-GAN (epsilons=None)"}
    assert all(0 <= value <= 1 for value in [*robust.values(), numbers["oracle_agreement_atgan"]])
    # Foolbox counts an already misclassified image as a success: PGD cannot beat clean accuracy.
    assert robust["LinfPGD (eps=0.1, 20 steps)"] <= numbers["clean_accuracy"]
    assert numbers["clean_accuracy"] > 0.5  # the shipped Model A is a trained classifier
    for name, value in robust.items():
        assert re.search(rf"{re.escape(name)}\s+{value:.3f}", result.stdout), result.stdout
    assert f"AT-GAN images {numbers['oracle_agreement_atgan']:.3f}" in result.stdout


def test_advertorch_robustness(shipped: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "advertorch.json"
    result = run_example(sys.executable, EXAMPLES / "advertorch_robustness.py", *SLICE, "--json", out)
    numbers = json.loads(out.read_text())
    accuracy = numbers["adversarial_accuracy"]
    assert set(accuracy) == {"LinfPGDAttack (eps=0.1, 20 iterations)", "ATGANAttack"}
    assert all(0 <= value <= 1 for value in accuracy.values())
    assert numbers["clean_accuracy"] > 0.5
    assert accuracy["LinfPGDAttack (eps=0.1, 20 iterations)"] < numbers["clean_accuracy"]
    for name, value in accuracy.items():
        assert re.search(rf"{re.escape(name)}\s+{value:.3f}", result.stdout), result.stdout


def test_examples_name_what_is_missing(tmp_path: Path) -> None:
    """A wrong path is an argparse-style error (exit 2, one line), not a traceback."""
    missing = str(tmp_path / "missing.safetensors")
    arguments = {
        "foolbox_robustness.py": ["--model", missing, "--generator", missing, "--oracle", missing],
        "advertorch_robustness.py": ["--model", missing, "--generator", missing],
    }
    for script, args in arguments.items():
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / script), *args, "--n", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
        )
        assert result.returncode == 2, result.stderr
        assert f"{missing} does not exist" in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_cli_end_to_end(shipped: dict[str, Path], tmp_path: Path) -> None:
    # Model D (the MLP) keeps the training step to seconds; the script defaults to Model A.
    result = run_example(
        "bash",
        EXAMPLES / "cli_end_to_end.sh",
        ARCH="D",
        TRAIN_SIZE="500",
        EPOCHS="1",
        STEPS="3",
        N="30",
        DEVICE="cpu",
        TMPDIR=str(tmp_path),
    )
    for step in range(1, 6):
        assert f"== {step}." in result.stdout
    assert "30 adversarial examples (untargeted)" in result.stdout
    assert "30 adversarial examples (target 0)" in result.stdout
    assert re.search(r"target 3\s+30\s", result.stdout), result.stdout
    assert "== done: 4 run folders" in result.stdout
    assert not list(tmp_path.glob("atgan-e2e.*")), "the script left its temporary folder behind"
