"""``atgan train-gan`` survives a kill: rerun with the same command it resumes from the last state
(losing at most --checkpoint-every steps), completes what is missing and marks the folder finished;
a resume that would change the architecture, the seed or the data is refused before anything is
written; a new learning rate is applied, and recorded as such.

The networks are full size, so every write of state.pt (optimiser moments included) is about
200 MB: runs here take 2 or 3 steps of batch 8 and write state only where a test needs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

from atgan_plugin.adapters import load_generator
from atgan_plugin.atomic_files import is_our_temporary
from atgan_plugin.checkpoints import load_checkpoint, load_training_state
from atgan_plugin.cli import main
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import load_classifier
from atgan_plugin.paper import gan_training
from atgan_plugin.paper.gan_training import (
    GANTrainingConfig,
    ResumeMismatchError,
    check_resume,
    is_finished,
    train_acwgan_gp,
)
from atgan_plugin.runs import is_complete

FAST = ["--train-size", "256", "--batch-size", "8", "--critic-steps", "1", "--device", "cpu", "--no-progress"]


def train_gan(out: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["train-gan", *FAST, "--out", str(out), *args])


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every file under ``folder`` with its modification time and, for small files, its bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.stat().st_size < 100_000 else None)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_finished(out: Path, steps: int) -> None:
    assert is_finished(out, steps)
    generator = load_generator(out / "generator.safetensors")
    assert generator.num_classes == 10
    assert load_classifier(out / "aux_classifier.safetensors")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    for name in ("generator.safetensors", "aux_classifier.safetensors"):
        assert load_checkpoint(out / name).training["step"] == steps
    assert load_training_state(out / "state.pt")["step"] == steps
    assert not list(out.rglob(".atgan-tmp.*")), "temporary files left behind"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder trained by the CLI for 2 steps, one write of state.pt."""
    out = tmp_path_factory.mktemp("gan") / "out"
    result = train_gan(out, "--steps", "2", "--checkpoint-every", "2")
    assert result.exit_code == 0, result.output
    return out


def test_a_finished_folder_is_marked_and_left_alone(finished: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_finished(finished, 2)
    assert is_complete(finished)
    before = snapshot(finished)
    steps: list[int] = []
    monkeypatch.setattr(gan_training, "gradient_penalty", lambda *a: steps.append(1))
    result = train_gan(finished, "--steps", "2", "--checkpoint-every", "2")
    assert result.exit_code == 0, result.output
    assert "already trained for 2 steps" in result.output and steps == []
    after = snapshot(finished)
    assert {k: v for k, v in after.items() if k not in ("options.json", "complete.json")} == {
        k: v for k, v in before.items() if k not in ("options.json", "complete.json")
    }


# (id, changed arguments, message)
REFUSED = [
    ("z_dim", ["--z-dim", "64"], "trained with z_dim 100 (now 64)"),
    ("seed", ["--seed", "3"], "trained with seed 0 (now 3)"),
    ("train size", ["--train-size", "128"], "trained with --train-size 256 (now 128)"),
    ("dataset", ["--dataset", "mnist"], "trained with --dataset fashion-mnist (now mnist)"),
    ("fewer steps", ["--steps", "1"], "already trained for 2 steps, more than the 1 asked for; pass --steps 2 or more"),
]


@pytest.mark.parametrize("arguments, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_resume_that_cannot_apply_its_options_is_refused_before_writing(
    finished: Path, arguments: list[str], message: str
) -> None:
    before = snapshot(finished)
    result = train_gan(finished, "--steps", "2", *arguments)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert snapshot(finished) == before  # options.json included: nothing was written


def test_a_new_learning_rate_is_applied_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "gan"
    assert train_gan(out, "--steps", "1").exit_code == 0
    result = train_gan(out, "--steps", "2", "--lr", "0.001")
    assert result.exit_code == 0, result.output
    state = load_training_state(out / "state.pt")
    assert state["step"] == 2
    for name in ("opt_G", "opt_D", "opt_f"):
        assert [group["lr"] for group in state[name]["param_groups"]] == [0.001]
    record = json.loads((out / "options.json").read_text())
    assert record["options"]["lr"] == 0.001 and record["resumed_from_step"] == 1
    assert [earlier["options"]["lr"] for earlier in record["earlier"]] == [2e-4]


KILL_AT_THE_LAST_GENERATOR = r"""
import os, signal, sys
from atgan_plugin.atomic_files import temporary_name
from atgan_plugin.paper import gan_training

original = gan_training.save_checkpoint

def killed(path, checkpoint, **kwargs):
    # state.pt of the last step is on disk; the generator is half written when the process is killed.
    if path.name == "generator.safetensors" and checkpoint.training["step"] == 3:
        (path.parent / temporary_name("generator.safetensors")).write_bytes(b"half a generator")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path, checkpoint, **kwargs)

gan_training.save_checkpoint = killed
from atgan_plugin.cli import main
main(sys.argv[1:])
"""


def test_killed_after_the_last_state_the_rerun_completes_the_networks(tmp_path: Path) -> None:
    out = tmp_path / "gan"
    arguments = ["train-gan", *FAST, "--out", str(out), "--steps", "3", "--checkpoint-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_THE_LAST_GENERATOR, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_training_state(out / "state.pt")["step"] == 3
    assert load_checkpoint(out / "generator.safetensors").training["step"] == 2  # the previous checkpoint's
    assert not is_complete(out) and any(is_our_temporary(p.name) for p in out.iterdir())
    users = [out / ".draft.20240101.tmp", out / "samples" / ".thesis.tex.backup_1.tmp"]  # not ours: kept
    for path in users:
        path.write_text("a user's")

    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert_finished(out, 3)
    assert all(path.read_text() == "a user's" for path in users)


def test_a_kill_mid_run_loses_at_most_checkpoint_every_steps(
    tmp_path: Path, fashion_train: TensorDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = fashion_train.subset(256)
    config = GANTrainingConfig(steps=3, batch_size=8, critic_steps=1, checkpoint_every=2)
    calls: list[int] = []
    original = gan_training.gradient_penalty

    def dies_at_step_3(*args: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands in for a kill: nothing after this line runs
        return original(*args)

    with monkeypatch.context() as patch:
        patch.setattr(gan_training, "gradient_penalty", dies_at_step_3)
        with pytest.raises(KeyboardInterrupt):
            train_acwgan_gp(data, tmp_path, config, device=torch.device("cpu"), progress=False)
    assert load_training_state(tmp_path / "state.pt")["step"] == 2 and not is_complete(tmp_path)
    assert check_resume(tmp_path, config, gan_training.network_args(data, config.z_dim)) == 2
    train_acwgan_gp(data, tmp_path, config, device=torch.device("cpu"), progress=False)
    assert_finished(tmp_path, 3)


def test_check_resume_names_the_architecture_of_older_states(tmp_path: Path, fashion_train: TensorDataset) -> None:
    """A state.pt written before the config was recorded in it: the shapes tell the architecture."""
    from atgan_plugin.adapters.acwgan_gp import Generator

    torch.save({"G": Generator(z_dim=100).state_dict(), "step": 1}, tmp_path / "state.pt")
    data = fashion_train.subset(64)
    config = GANTrainingConfig(steps=2, z_dim=64)
    with pytest.raises(ResumeMismatchError, match=r"whose generator has another architecture"):
        check_resume(tmp_path, config, gan_training.network_args(data, 64))
    assert check_resume(tmp_path, GANTrainingConfig(steps=2), gan_training.network_args(data, 100)) == 1


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(checkpoint_every=0), r"checkpoint_every must be >= 1, got 0"),
        (dict(lr=float("nan")), r"lr must be a positive finite number, got nan"),
        (dict(steps=0), r"steps must be >= 1, got 0"),
        (dict(beta2=1.0), r"beta2 must be in \[0, 1\), got 1\.0"),
    ],
    ids=["checkpoint_every 0", "lr nan", "steps 0", "beta2 1"],
)
def test_bad_training_settings_are_named(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GANTrainingConfig(**overrides)
