"""``atgan train-gan --arch stylegan2-ada`` end to end with tiny networks: the files, the generator that
``load_generator`` reads, a rerun of a finished folder, a kill and its resume (same weights as a run that
was never killed), and the options and resumes it refuses before writing anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from atgan_plugin.adapters import StyleGAN2ADAGenerator, load_generator
from atgan_plugin.checkpoints import load_checkpoint, load_training_state
from atgan_plugin.cli import main
from atgan_plugin.paper.stylegan2_training import is_finished
from atgan_plugin.runs import is_complete

TINY = [
    "--arch",
    "stylegan2-ada",
    "--train-size",
    "256",
    "--batch-size",
    "8",
    "--channel-base",
    "128",
    "--channel-max",
    "16",
    "--z-dim",
    "16",
    "--device",
    "cpu",
    "--no-progress",
]


def train_gan(out: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["train-gan", *TINY, "--out", str(out), *args])


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps, asked for as kimg: 0.016 thousand images at batch 8."""
    out = tmp_path_factory.mktemp("stylegan") / "out"
    result = train_gan(out, "--kimg", "0.016")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("done: {") and f"networks in {out}" in result.output
    return out


def test_the_cli_trains_a_generator_that_load_generator_reads(finished: Path) -> None:
    assert is_finished(finished, 2) and is_complete(finished)
    generator = load_generator(finished / "generator.safetensors")
    assert isinstance(generator, StyleGAN2ADAGenerator) and generator.num_classes == 10
    assert generator.network.z_dim == generator.network.w_dim == 16
    with torch.no_grad():
        images = generator(torch.randn(3, 16), torch.tensor([0, 5, 9]))
    assert images.shape == (3, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    training = load_checkpoint(finished / "generator.safetensors").training
    assert training["step"] == 2 and training["dataset"] == "fashion-mnist" and training["options"]["kimg"] == 0.016
    record = json.loads((finished / "options.json").read_text())
    assert record["options"]["arch"] == "stylegan2-ada" and record["options"]["steps"] == 2
    assert record["options"]["r1_gamma"] == 0.01 and "critic_steps" not in record["options"]  # defaults resolved
    assert load_training_state(finished / "state.pt")["step"] == 2


def test_a_finished_folder_is_left_alone(finished: Path) -> None:
    before = snapshot(finished)
    result = train_gan(finished, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "already trained for 2 steps" in result.output
    after = snapshot(finished)
    kept = ("options.json", "complete.json")  # rewritten: the record of this start
    assert {k: v for k, v in after.items() if k not in kept} == {k: v for k, v in before.items() if k not in kept}


# (id, changed arguments, message)
REFUSED = [
    ("channel base", ["--channel-base", "64"], "trained with channel_base 128 (now 64)"),
    ("z_dim", ["--z-dim", "8"], "trained with z_dim 16 (now 8)"),
    ("seed", ["--seed", "3"], "trained with seed 0 (now 3)"),
    ("train size", ["--train-size", "128"], "trained with --train-size 256 (now 128)"),
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
    assert snapshot(finished) == before


def test_another_arch_in_the_same_folder_is_refused(finished: Path) -> None:
    before = snapshot(finished)
    result = CliRunner().invoke(main, ["train-gan", "--out", str(finished), "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "trained with --arch stylegan2-ada (now acwgan-gp)" in result.output
    assert snapshot(finished) == before


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--arch", "stylegan2-ada", "--critic-steps", "2"], "applies to --arch acwgan-gp only, not stylegan2-ada"),
        (["--r1-gamma", "1"], "applies to --arch stylegan2-ada only, not acwgan-gp"),
        (["--no-augment"], "applies to --arch stylegan2-ada only, not acwgan-gp"),
        (["--arch", "stylegan2-ada", "--steps", "2", "--kimg", "1"], "give --steps or --kimg, not both"),
        (["--arch", "stylegan2-ada", "--batch-size", "6"], "must be a multiple of the minibatch-std group (4)"),
    ],
    ids=["critic steps", "r1 gamma", "augment", "steps and kimg", "batch vs mbstd"],
)
def test_options_of_the_other_arch_are_refused(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["train-gan", "--out", str(tmp_path / "out"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and not (tmp_path / "out").exists()


KILL_AFTER_THE_STATE_OF_STEP_2 = r"""
import os, signal, sys
from atgan_plugin.paper import stylegan2_training

original = stylegan2_training.save_training_state

def killed(path, state):
    original(path, state)
    if state["step"] == 2:  # state.pt of step 2 is on disk, its generator is not
        os.kill(os.getpid(), signal.SIGKILL)

stylegan2_training.save_training_state = killed
from atgan_plugin.cli import main
main(sys.argv[1:])
"""


RUN = "import sys; from atgan_plugin.cli import main; main(sys.argv[1:])"


def test_a_killed_run_resumed_equals_one_never_killed(tmp_path: Path) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    arguments = ["train-gan", *TINY, "--steps", "3", "--checkpoint-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_THE_STATE_OF_STEP_2, *arguments, "--out", str(killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_training_state(killed / "state.pt")["step"] == 2 and not is_complete(killed)
    assert not (killed / "generator.safetensors").exists()

    # The same command resumes the killed run; the other runs straight through. Both in a process like the
    # killed one's: one thread, so that the sums' order (and so every bit) is the same.
    for out in (killed, straight):
        command = [sys.executable, "-c", RUN, *arguments, "--out", str(out)]
        process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stderr
    assert is_finished(killed, 3)
    a, b = (load_checkpoint(out / "generator.safetensors").tensors for out in (killed, straight))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    states = [load_training_state(out / "state.pt") for out in (killed, straight)]
    assert all(torch.equal(states[0]["D"][k], states[1]["D"][k]) for k in states[0]["D"])
