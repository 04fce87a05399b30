"""The ``atgan attack``, ``evaluate`` and ``demo`` commands, run with click's ``CliRunner``.

Stand-in checkpoints are built in code (an untrained AC-WGAN_GP generator, untrained Model D
classifiers as target and oracle) and given by path, and fits run 2 steps, so every command
takes about a second. What is checked: the outputs and ``options.json`` land in a numbered run
folder, the files hold what they claim, and every bad input ends in one clean error line (non-
zero exit, a message naming the problem, no traceback, no run folder left behind).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file

import atgan_plugin.pretrained
from atgan_plugin import ACWGANGPGenerator
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.cli import main
from atgan_plugin.metrics.records import SettingMetrics
from atgan_plugin.models import build_classifier, save_classifier
from atgan_plugin.report_summary import summary_sentences

FAST = ["--steps", "2", "--batch-size", "8", "--device", "cpu", "--no-progress"]
FIT_OPTIONS = [
    "--steps",
    "--lr",
    "--alpha",
    "--beta",
    "--kappa",
    "--gamma",
    "--feature",
    "--rho-l0",
    "--rho-linf",
    "--batch-size",
]


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of stand-in checkpoints: generator, model, oracle, and truncated/foreign files."""
    folder = tmp_path_factory.mktemp("standins")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ACWGANGPGenerator(Generator()).save(folder / "generator.safetensors")
        for name in ("model", "oracle"):
            config = {"architecture": "D", "num_classes": 10, "in_channels": 1}
            save_classifier(folder / f"{name}.safetensors", build_classifier("D"), config, {"note": "stand-in"})
    paths = {name: folder / f"{name}.safetensors" for name in ("generator", "model", "oracle")}
    for name in ("generator", "model"):
        data = paths[name].read_bytes()
        truncated = folder / f"{name}-truncated.safetensors"
        truncated.write_bytes(data[: len(data) // 2])
        paths[f"{name}-truncated"] = truncated
    paths["text"] = folder / "notes.safetensors"
    paths["text"].write_text("not a checkpoint\n")
    return paths


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Result]:
    """``run(*args)``: invokes ``atgan`` with ``--runs-dir <tmp>/runs`` appended to a subcommand."""

    def invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(main, [*map(str, args), "--runs-dir", str(tmp_path / "runs")])

    return invoke


def checkpoint_args(standins: dict[str, Path], *names: str) -> list[str]:
    return [arg for name in names for arg in (f"--{name}", str(standins[name]))]


def only_run_folder(tmp_path: Path, name: str) -> Path:
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == [f"00001-{name}"]
    return folders[0]


def assert_succeeded(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output


def assert_clean_error(result: Result, exit_code: int, message: str, runs: Path) -> None:
    """Non-zero exit through click, the message on the 'Error:' line, no traceback, no run folder."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    assert message in error_lines[0], result.output
    assert not runs.exists() or not any(runs.iterdir()), "a failed command left a run folder"


# ------------------------------------------------------------------------------------------------
# atgan attack


def test_attack_untargeted_writes_examples_fit_grid_and_options(
    standins: dict[str, Path], run: Callable[..., Result], tmp_path: Path
) -> None:
    result = run("attack", *checkpoint_args(standins, "generator", "model"), "--n", "7", *FAST)
    assert_succeeded(result)
    folder = only_run_folder(tmp_path, "attack")
    assert str(folder) in result.output and "7 adversarial examples (untargeted)" in result.output
    for name in ("adversarial.safetensors", "g_attack.safetensors", "grid.png", "options.json", "summary.json"):
        assert (folder / name).is_file(), name

    tensors = load_file(str(folder / "adversarial.safetensors"))
    assert set(tensors) == {"images", "source_labels", "predicted_labels"}
    assert tensors["images"].shape == (7, 1, 28, 28) and tensors["images"].dtype == torch.float32
    assert 0 <= float(tensors["images"].min()) and float(tensors["images"].max()) <= 1
    assert tensors["source_labels"].dtype == torch.int64 and tensors["source_labels"].shape == (7,)

    recorded = json.loads((folder / "options.json").read_text())
    assert recorded["options"]["n"] == 7 and recorded["options"]["target"] is None
    assert recorded["options"]["steps"] == 2 and recorded["options"]["batch_size"] == 8
    assert recorded["options"]["kappa"] is None  # left out: the preset's value, recorded with the settings
    assert recorded["config"] == dataclasses.asdict(TransferConfig.realistic(steps=2, batch_size=8, seed=0))
    # No --guard: "auto", the generator's own guards plus a distilled one.
    assert recorded["checkpoints"] == {
        "generator": str(standins["generator"]),
        "model": str(standins["model"]),
        "guard": "auto",
    }
    assert recorded["environment"]["torch"] == torch.__version__


def test_attack_with_a_guard_records_it(standins: dict[str, Path], run: Callable[..., Result], tmp_path: Path) -> None:
    result = run(
        "attack", *checkpoint_args(standins, "generator", "model"), "--guard", standins["oracle"], "--n", "3", *FAST
    )
    assert_succeeded(result)
    folder = only_run_folder(tmp_path, "attack")
    assert json.loads((folder / "options.json").read_text())["checkpoints"]["guard"] == str(standins["oracle"])
    summary = json.loads((folder / "summary.json").read_text())
    assert "l_guard" in summary["fit"]["final"]


def test_attack_targeted_then_reuse_the_saved_fit(standins: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = [*checkpoint_args(standins, "generator", "model"), "--n", "5", *FAST, "--runs-dir", str(runs)]
    first = CliRunner().invoke(main, ["attack", "--target", "3", *common])
    assert_succeeded(first)
    fitted = runs / "00001-attack"
    # Reusing the fit: no fitting, no new g_attack file, the fit's target, the same images.
    second = CliRunner().invoke(
        main, ["attack", "--fit", str(fitted / "g_attack.safetensors"), "--format", "pt", *common]
    )
    assert_succeeded(second)
    reused = runs / "00002-attack"
    assert not (reused / "g_attack.safetensors").exists()
    assert "(target 3)" in second.output
    original = load_file(str(fitted / "adversarial.safetensors"))
    again = torch.load(reused / "adversarial.pt", weights_only=True)
    assert torch.equal(again["target_labels"], torch.full((5,), 3))
    assert not (again["source_labels"] == 3).any()  # sources skip the target class
    assert torch.equal(again["source_labels"], original["source_labels"])
    torch.testing.assert_close(again["images"], original["images"])
    recorded = json.loads((reused / "options.json").read_text())
    assert recorded["checkpoints"]["fit"] == str(fitted / "g_attack.safetensors")


# ------------------------------------------------------------------------------------------------
# atgan evaluate


def test_evaluate_with_targets_writes_report_and_grid(
    standins: dict[str, Path], run: Callable[..., Result], tmp_path: Path
) -> None:
    args = checkpoint_args(standins, "generator", "model", "oracle")
    result = run("evaluate", *args, "--n", "12", "--targets", "0,3", "--save-fits", *FAST)
    assert_succeeded(result)
    folder = only_run_folder(tmp_path, "evaluate")
    for row in ("untargeted", "target 0", "target 3", "targeted avg", "generation:"):
        assert row in result.output
    report = json.loads((folder / "report.json").read_text())
    assert report["untargeted"]["n"] == 12
    assert [m["target"] for m in report["targeted"]] == [0, 3]
    assert [f["target"] for f in report["fits"]] == [None, 0, 3]
    assert 0 <= report["untargeted"]["success_rate"] <= 1
    assert (folder / "grid.png").is_file() and not (folder / "targets.png").exists()
    fits = ["g_attack.safetensors", "g_attack-target0.safetensors", "g_attack-target3.safetensors"]
    assert sorted(p.name for p in folder.glob("g_attack*")) == sorted(fits)
    assert json.loads((folder / "options.json").read_text())["options"]["targets"] == [0, 3]


def test_evaluate_all_targets_writes_the_target_grid(
    standins: dict[str, Path], run: Callable[..., Result], tmp_path: Path
) -> None:
    args = checkpoint_args(standins, "generator", "model", "oracle")
    result = run("evaluate", *args, "--n", "4", "--targets", "all", *FAST)
    assert_succeeded(result)
    folder = only_run_folder(tmp_path, "evaluate")
    assert len(json.loads((folder / "report.json").read_text())["targeted"]) == 10
    assert (folder / "targets.png").is_file()
    assert not list(folder.glob("g_attack*"))  # --save-fits is off by default


def test_evaluate_reuses_a_saved_fit(standins: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    attack = CliRunner().invoke(
        main, ["attack", *checkpoint_args(standins, "generator", "model"), "--n", "2", *FAST, "--runs-dir", str(runs)]
    )
    assert_succeeded(attack)
    fit = runs / "00001-attack" / "g_attack.safetensors"
    args = [*checkpoint_args(standins, "generator", "model", "oracle"), "--n", "4", "--fit", str(fit)]
    # --steps 7 would show in the fit summary had it fitted again; the loaded fit ran 2 steps.
    result = CliRunner().invoke(
        main, ["evaluate", *args, "--steps", "7", "--device", "cpu", "--no-progress", "--runs-dir", str(runs)]
    )
    assert_succeeded(result)
    report = json.loads((runs / "00002-evaluate" / "report.json").read_text())
    assert report["fits"][0]["config"]["steps"] == 2


# ------------------------------------------------------------------------------------------------
# atgan demo


def test_demo_prints_the_table_and_where_outputs_went(
    standins: dict[str, Path], run: Callable[..., Result], tmp_path: Path
) -> None:
    result = run("demo", *checkpoint_args(standins, "generator", "model", "oracle"), "--n", "10", *FAST)
    assert_succeeded(result)
    folder = only_run_folder(tmp_path, "demo")
    assert "untargeted" in result.output and f"outputs in {folder}" in result.output
    for name in ("report.json", "grid.png", "g_attack.safetensors", "options.json"):
        assert (folder / name).is_file(), name
    report = json.loads((folder / "report.json").read_text())
    assert report["targeted"] == []
    # The sentences printed are report.html's summary, made by one function from report.json.
    sentences = summary_sentences(SettingMetrics.from_json(report["untargeted"]), standins["model"].name)
    assert "\n".join(sentences) in result.output
    rejected = report["rejected_examples"]
    assert (folder / "rejected.png").is_file() == (rejected["count"] > 0) == (rejected["file"] == "rejected.png")


def test_demo_runs_the_attacks_defaults() -> None:
    """The demo shows what the one-line drop-in gives: the attack's own defaults, on 2,000 examples
    (the size of the realism acceptance), with the shipped generator and its guards."""
    params = {p.name: p.default for p in main.commands["demo"].params}
    fit_settings = ("config", "steps", "lr", "alpha", "beta", "feature", "search_steps")
    assert all(params[name] is None for name in fit_settings), params  # None: ATGANAttack's own (realistic)
    assert params["guard_specs"] == ("auto",)
    assert params["n"] == 2_000 and params["generator_path"] is None


# ------------------------------------------------------------------------------------------------
# Shared options and untouched commands.


@pytest.mark.parametrize("command", ["attack", "evaluate", "demo"])
def test_every_new_command_has_the_shared_options(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert_succeeded(result)
    for option in [*FIT_OPTIONS, "--device", "--seed", "--runs-dir", "--generator", "--model", "--progress"]:
        assert option in result.output, option
    help_text = " ".join(result.output.split())  # click wraps the help
    realistic, paper = TransferConfig.realistic(), TransferConfig.paper()
    assert f"[default: (realistic {realistic.steps}, paper {paper.steps})" in help_text
    assert f"(realistic {realistic.lr:g}, paper {paper.lr:g})" in help_text


@pytest.mark.parametrize("command", ["train-classifier", "train-gan"])
def test_training_commands_are_still_there(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert_succeeded(result)
    assert "--out" in result.output and "--runs-dir" not in result.output


# ------------------------------------------------------------------------------------------------
# Bad input: one table of cases, one test.

ERROR_CASES = [
    # (id, command, arguments: names of stand-ins as {name} or literal strings, exit code, message)
    ("missing generator", "attack", ["--generator", "{missing}", "--model", "{model}"], 1, "does not exist"),
    (
        "missing model",
        "evaluate",
        ["--generator", "{generator}", "--model", "{missing}", "--oracle", "{oracle}"],
        1,
        "does not exist",
    ),
    (
        "missing oracle",
        "demo",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{missing}"],
        1,
        "does not exist",
    ),
    (
        "truncated generator",
        "attack",
        ["--generator", "{generator-truncated}", "--model", "{model}"],
        1,
        "is a truncated safetensors file",
    ),
    (
        "truncated model",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model-truncated}", "--oracle", "{oracle}"],
        1,
        "truncated",
    ),
    (
        "text file as model",
        "attack",
        ["--generator", "{generator}", "--model", "{text}"],
        1,
        "not a readable safetensors",
    ),
    (
        "generator as model",
        "attack",
        ["--generator", "{generator}", "--model", "{generator}"],
        1,
        "expected 'classifier'",
    ),
    (
        "classifier as generator",
        "demo",
        ["--generator", "{model}", "--model", "{model}", "--oracle", "{oracle}"],
        1,
        "not a generator checkpoint",
    ),
    (
        "truncated fit",
        "attack",
        ["--generator", "{generator}", "--model", "{model}", "--fit", "{model-truncated}"],
        1,
        "truncated",
    ),
    (
        "classifier as fit",
        "attack",
        ["--generator", "{generator}", "--model", "{model}", "--fit", "{model}"],
        1,
        "expected 'atgan.fitted_generator'",
    ),
    (
        "targets not numbers",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--targets", "0,x"],
        2,
        "--targets",
    ),
    (
        "target class too large",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--targets", "3,10"],
        2,
        "outside [0, 10)",
    ),
    (
        "target named twice",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--targets", "1,1"],
        2,
        "twice",
    ),
    (
        "empty targets",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--targets", ""],
        2,
        "--targets",
    ),
    (
        "attack target too large",
        "attack",
        ["--generator", "{generator}", "--model", "{model}", "--target", "10"],
        2,
        "outside [0, 10)",
    ),
    (
        "negative target",
        "attack",
        ["--generator", "{generator}", "--model", "{model}", "--target", "-1"],
        2,
        "--target",
    ),
    (
        "zero examples",
        "evaluate",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--n", "0"],
        2,
        "--n",
    ),
    ("zero fit steps", "attack", ["--generator", "{generator}", "--model", "{model}", "--steps", "0"], 2, "--steps"),
    (
        "negative beta",
        "demo",
        ["--generator", "{generator}", "--model", "{model}", "--oracle", "{oracle}", "--beta", "-1"],
        2,
        "--beta",
    ),
    (
        "unknown format",
        "attack",
        ["--generator", "{generator}", "--model", "{model}", "--format", "npz"],
        2,
        "--format",
    ),
]


@pytest.mark.parametrize(
    ("command", "arguments", "exit_code", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_bad_input_gives_one_clean_error(
    standins: dict[str, Path], tmp_path: Path, command: str, arguments: list[str], exit_code: int, message: str
) -> None:
    paths = {**{name: str(path) for name, path in standins.items()}, "missing": str(tmp_path / "missing.safetensors")}
    args = [arg.format(**paths) if arg.startswith("{") else arg for arg in arguments]
    result = CliRunner().invoke(main, [command, *FAST, *args, "--runs-dir", str(tmp_path / "runs")])  # args win
    assert_clean_error(result, exit_code, message, tmp_path / "runs")


def test_a_fit_for_another_target_is_refused(standins: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    made = CliRunner().invoke(
        main, ["attack", *checkpoint_args(standins, "generator", "model"), "--n", "2", *FAST, "--runs-dir", str(runs)]
    )
    assert_succeeded(made)
    fit = runs / "00001-attack" / "g_attack.safetensors"
    elsewhere = tmp_path / "elsewhere"
    attack = CliRunner().invoke(
        main,
        [
            "attack",
            *checkpoint_args(standins, "generator", "model"),
            "--fit",
            str(fit),
            "--target",
            "4",
            *FAST,
            "--runs-dir",
            str(elsewhere),
        ],
    )
    assert_clean_error(attack, 2, "fitted untargeted, not for target 4", elsewhere)


def test_missing_shipped_checkpoints_name_what_to_pass(
    standins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atgan_plugin.pretrained, "ROOT", tmp_path / "nothing-shipped")
    (tmp_path / "nothing-shipped").mkdir()
    result = CliRunner().invoke(main, ["demo", *FAST, "--runs-dir", str(tmp_path / "runs")])
    assert_clean_error(result, 1, "no pretrained generator", tmp_path / "runs")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(standins: dict[str, Path], tmp_path: Path) -> None:
    args = [*checkpoint_args(standins, "generator", "model"), "--device", "cuda", "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(main, ["attack", *args])
    assert_clean_error(result, 2, "CUDA is not available", tmp_path / "runs")
