"""Run folders of ``atgan attack`` (and every command that makes one) record ``complete.json`` only
when the command returned normally: a killed run is recognisable by its absence."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from torch import nn

from atgan_plugin.adapters import ACWGANGPGenerator
from atgan_plugin.cli import main
from atgan_plugin.models import save_classifier
from atgan_plugin.paper import evaluation
from atgan_plugin.runs import is_complete

FAST = ["--steps", "2", "--batch-size", "8", "--device", "cpu", "--no-progress", "--n", "4"]


@pytest.fixture
def checkpoints(tmp_path: Path, random_generator: ACWGANGPGenerator, tiny_target: nn.Module) -> list[str]:
    random_generator.save(tmp_path / "generator.safetensors")
    save_classifier(
        tmp_path / "model.safetensors", tiny_target, {"architecture": "D", "num_classes": 10, "in_channels": 1}, {}
    )
    return ["--generator", str(tmp_path / "generator.safetensors"), "--model", str(tmp_path / "model.safetensors")]


def test_a_finished_attack_run_is_marked_complete(tmp_path: Path, checkpoints: list[str]) -> None:
    result = CliRunner().invoke(main, ["attack", *checkpoints, *FAST, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert is_complete(run)


def test_an_attack_killed_midway_leaves_an_incomplete_run(
    tmp_path: Path, checkpoints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands in for a kill after the examples were written

    monkeypatch.setattr(evaluation, "save_difference_grid", killed)
    result = CliRunner().invoke(main, ["attack", *checkpoints, *FAST, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code != 0
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "options.json").is_file() and not is_complete(run)
