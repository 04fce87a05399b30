"""``atgan reproduce --quick`` end to end, and ``atgan train-classifier`` with the new regimes, via click's CliRunner.

Stand-in checkpoints (an untrained AC-WGAN_GP generator, untrained Model D classifiers saved
under the slot names A-nor, C-nor, C-iter) keep the run to seconds; what is checked is that every
section and field is written, that absent slots are reported as missing, and that bad inputs end
in one clean error line. One case runs the shipped checkpoints (skipped when they are absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from atgan_plugin import ACWGANGPGenerator
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.cli import main
from atgan_plugin.models import build_classifier, save_classifier
from atgan_plugin.paper.reproduce import ATTACKS, SLOTS, TRANSFER_ROWS, ReproduceConfig
from atgan_plugin.paper.reproduce.settings import TABLE_1_ATGAN

SECTIONS = [
    "## Run",
    "## Settings",
    "## White-box success rate, % (Table 1 style)",
    "## Realism beside success",
    "## Time per 1,000 adversarial examples (s)",
    "## Transfer from Model A (Nor.) to Model C",
    "## AT-GAN against Model A (Nor.) versus the noise ρ (Tables 8 and 9 style)",
    "## Figures",
    "## Missing and not run",
]
METRICS = {
    "n",
    "success_rate",
    "rejected_rate",
    "fooled_rate",
    "oracle_agreement",
    "oracle_agreement_reference",
    "reference_error",
    "mean_l2",
    "mean_linf",
    "added_edges",
    "fd",
    "fd_reference",
    "seconds_per_1000",
    "fit_seconds",
}
PRESENT = ("A-nor", "C-nor", "C-iter")


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reproduce")
    (folder / "checkpoints").mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ACWGANGPGenerator(Generator()).save(folder / "generator.safetensors")
        config = {"architecture": "D", "num_classes": 10, "in_channels": 1}
        save_classifier(folder / "oracle.safetensors", build_classifier("D"), config, {"note": "stand-in"})
        for slot in PRESENT:
            record = {"note": "stand-in", "test_accuracy": 0.1, "environment": {"command": f"made in code for {slot}"}}
            save_classifier(folder / "checkpoints" / f"{slot}.safetensors", build_classifier("D"), config, record)
    return folder


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_succeeded(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output


def test_quick_reproduction_writes_every_section(standins: Path, tmp_path: Path) -> None:
    result = invoke(
        "reproduce",
        "--quick",
        "--checkpoints",
        standins / "checkpoints",
        "--generator",
        standins / "generator.safetensors",
        "--oracle",
        standins / "oracle.safetensors",
        "--device",
        "cpu",
        "--no-progress",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert_succeeded(result)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name == "00001-reproduce"
    assert {p.name for p in run_dir.iterdir()} == {
        "options.json",
        "results.md",
        "results.json",
        "difference.png",
        "targets.png",
        "report.html",
        "complete.json",
    }

    markdown = (run_dir / "results.md").read_text()
    positions = [markdown.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "(quick run)" in markdown and "say nothing about the methods" in markdown
    assert "| B Nor. | missing | missing | missing | missing | missing |" in markdown
    assert "| AT-GAN, paper (appendix Table 7) | 58.0 | 22.7 | 32.0 | 15.2 |" in markdown
    assert "![targets.png](targets.png)" in markdown and "`made in code for A-nor`" in markdown

    report = json.loads((run_dir / "results.json").read_text())
    assert report["config"]["n"] == 16 and report["config"]["quick"] is True  # --quick sizes
    assert report["settings"]["song"]["steps"] == 3 and report["settings"]["atgan"]["steps"] == 3
    assert report["settings"]["baselines"]["pgd_steps"] == 20  # the baselines keep Table 6's settings
    assert report["environment"]["command"].startswith("atgan")  # the process's own command line
    assert "CPU cores" in report["environment"]["machine"]
    assert sorted(report["white_box"]) == sorted(PRESENT)
    assert report["missing"] == [slot for slot in SLOTS if slot not in PRESENT]
    for per_attack in report["white_box"].values():
        assert sorted(per_attack) == sorted(ATTACKS)
        for name, metrics in per_attack.items():
            assert set(metrics) == METRICS
            assert metrics["success_rate"] + metrics["rejected_rate"] == pytest.approx(metrics["fooled_rate"])
            assert (metrics["fit_seconds"] is not None) == (name == "atgan")
    assert sorted(report["transfer"]) == ["C-iter", "C-nor"]
    assert all(sorted(per_attack) == sorted(TRANSFER_ROWS) for per_attack in report["transfer"].values())
    transferable, atgan = report["transfer_fit"]["settings"], report["settings"]["atgan"]
    assert (
        transferable["kappa"] > atgan["kappa"] and transferable["steps"] == int(0.75 * atgan["steps"]) == 2
    )  # --quick sizes carry over
    assert set(report["transfer_fit"]["white_box"]) == METRICS
    # --generator without --transfer-guard: the shipped robust guards are not its;
    # the run's own ("auto": a distilled one).
    assert report["transfer_fit"]["guards"] == ["Sequential"]
    assert "| AT-GAN, transferable fit (κ 40, γ 200, 2 steps, 1 guard) |" in markdown
    assert "The transferable fit against A-nor itself" in markdown
    assert [row["rho_l0"] for row in report["ablation"]["rho_l0"]] == [0, 100, 200, 300, 400]
    assert [row["rho_linf"] for row in report["ablation"]["rho_linf"]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    fgsm = report["white_box"]["A-nor"]["fgsm"]
    assert fgsm["mean_linf"] <= 0.1 + 1e-6  # the FGSM ε of Table 6


def test_quick_reproduction_on_the_shipped_checkpoints(pretrained_model_a, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(
        "reproduce",
        "--quick",
        "--n",
        "8",
        "--no-ablation",
        "--no-figures",
        "--device",
        "cpu",
        "--no-progress",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert_succeeded(result)
    (run_dir,) = (tmp_path / "runs").iterdir()
    report = json.loads((run_dir / "results.json").read_text())
    assert sorted(report["white_box"]) == sorted(SLOTS) and report["missing"] == []  # the 16 shipped targets
    # Table 1's AT-GAN is the attack's default (guard "auto": the generator's own two guards); Table 7's
    # transferable fit keeps the shipped robust guards it was measured with.
    options = json.loads((run_dir / "options.json").read_text())
    assert options["checkpoints"]["guard"] == "auto"
    assert [Path(p).name for p in options["checkpoints"]["transfer_guard"].split(", ")] == [
        "robust_guard.safetensors",
        "robust_guard_2.safetensors",
    ]
    assert len(report["transfer_fit"]["guards"]) == 2
    table_1 = TABLE_1_ATGAN  # the paper's fit settings, with the run's guards and the realistic shrink
    assert report["settings"]["atgan"]["beta"] == table_1.beta and report["settings"]["atgan"]["gamma"] > 0
    assert report["settings"]["atgan"]["search_steps"] == TransferConfig.realistic().search_steps
    assert report["settings"]["guard"] == "auto"
    assert report["white_box"]["A-nor"]["atgan"]["fd"] is not None  # the realism measures are there
    assert report["models"]["A-nor"]["test_accuracy"] == pytest.approx(0.8961)
    assert report["ablation"] == {} and report["figures"] == []
    assert "Not measured" in (run_dir / "results.md").read_text()


def quick_run(standins: Path, slots: tuple[str, ...], runs: Path, *extra: str) -> Path:
    """``atgan reproduce --quick`` on the stand-ins ``slots`` only; returns its run folder."""
    folder = runs.parent / f"checkpoints-{'-'.join(slots)}"
    folder.mkdir()
    for slot in slots:
        (folder / f"{slot}.safetensors").symlink_to(standins / "checkpoints" / f"{slot}.safetensors")
    result = invoke(
        "reproduce",
        "--quick",
        "--checkpoints",
        folder,
        "--generator",
        standins / "generator.safetensors",
        "--oracle",
        standins / "oracle.safetensors",
        "--no-ablation",
        "--no-figures",
        "--device",
        "cpu",
        "--no-progress",
        "--runs-dir",
        runs,
        *extra,
    )
    assert_succeeded(result)
    return sorted(runs.iterdir())[-1]


def test_merge_joins_runs_over_disjoint_checkpoints(standins: Path, tmp_path: Path) -> None:
    first = quick_run(
        standins, ("A-nor", "C-nor"), tmp_path / "runs", "--figures"
    )  # parts may differ in what they run beside
    second = quick_run(standins, ("C-iter",), tmp_path / "runs")
    result = invoke("reproduce-merge", first, second, "--runs-dir", tmp_path / "merged")
    assert_succeeded(result)
    (run_dir,) = (tmp_path / "merged").iterdir()
    report = json.loads((run_dir / "results.json").read_text())
    parts = [json.loads((part / "results.json").read_text()) for part in (first, second)]
    assert sorted(report["white_box"]) == sorted(PRESENT)
    assert report["white_box"]["C-iter"] == parts[1]["white_box"]["C-iter"]
    assert report["missing"] == [slot for slot in SLOTS if slot not in PRESENT]
    assert list(report["transfer"]) == ["C-nor"]  # transfer needs A-nor and the C model in the same part
    assert report["transfer_fit"] == parts[0]["transfer_fit"] and parts[1]["transfer_fit"] is None
    assert report["seconds"] == pytest.approx(parts[0]["seconds"] + parts[1]["seconds"])
    assert [part["slots"] for part in report["environment"]["parts"]] == [["A-nor", "C-nor"], ["C-iter"]]
    assert report["config"]["figures"] is True and {"difference.png", "targets.png"} <= {
        p.name for p in run_dir.iterdir()
    }
    markdown = (run_dir / "results.md").read_text()
    assert "Merged from runs over disjoint checkpoints" in markdown and "| C Iter. |" in markdown


def test_merge_refuses_overlaps_and_different_settings(standins: Path, tmp_path: Path) -> None:
    first = quick_run(standins, ("A-nor", "C-nor"), tmp_path / "runs")
    other_n = quick_run(standins, ("C-iter",), tmp_path / "runs", "--n", "4")
    for parts, message in (
        ((first, first), "measures A-nor, C-nor again"),
        ((first, other_n), "differs from part 1 in config (n)"),
    ):
        result = invoke("reproduce-merge", *parts, "--runs-dir", tmp_path / "merged")
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize(("folder", "message"), [("empty", "no target checkpoints in"), ("absent", "does not exist")])
def test_reproduce_errors_are_one_line(folder: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke(
        "reproduce", "--quick", "--checkpoints", tmp_path / folder, "--device", "cpu", "--runs-dir", tmp_path / "runs"
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------
# atgan train-classifier: the regimes that make the Adv./Ens./Iter. checkpoints.

TRAIN = ["train-classifier", "--arch", "D", "--epochs", "1", "--train-size", "64", "--device", "cpu", "--no-progress"]


def test_train_classifier_pgd_takes_table_6_and_fewer_steps(tmp_path: Path) -> None:
    result = invoke(*TRAIN, "--regime", "pgd", "--pgd-steps", "2", "--out", tmp_path / "D-iter.safetensors")
    assert_succeeded(result)
    config = json.loads((tmp_path / "D-iter.json").read_text())["config"]
    assert (config["regime"], config["epsilon"], config["pgd_step_size"], config["pgd_steps"]) == ("pgd", 0.1, 0.01, 2)


def test_train_classifier_ens_records_its_static_models(standins: Path, tmp_path: Path) -> None:
    static = standins / "checkpoints" / "C-nor.safetensors"
    result = invoke(*TRAIN, "--regime", "ens", "--static-model", static, "--out", tmp_path / "D-ens.safetensors")
    assert_succeeded(result)
    record = json.loads((tmp_path / "D-ens.json").read_text())
    assert record["config"]["regime"] == "ens" and list(record["static_models"]) == [str(static)]
    assert len(record["static_models"][str(static)]) == 64  # sha256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--regime", "ens"], "--regime ens needs at least one --static-model"),
        (
            ["--regime", "adv", "--static-model", "x.safetensors"],
            "static models are used only by --regime ens, not adv",
        ),
        (["--regime", "pgd", "--pgd-steps", "0"], "0 is not in the range x>=1"),
    ],
)
def test_train_classifier_refuses_bad_regime_options(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke(*TRAIN, *args, "--out", tmp_path / "m.safetensors")
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------------------------------------
# Table 7's transferable fit, on the shipped checkpoints.


@pytest.mark.slow
def test_transferable_fit_transfers_realistically_more_often(
    pretrained_generator: torch.nn.Module, pretrained_model_a: torch.nn.Module
) -> None:
    # Table 1's fit (400 steps, the robust guard) against the transferable one
    # (0.75x the steps, κ 40, both robust guards).
    from atgan_plugin.models import load_classifier
    from atgan_plugin.pretrained import load_pretrained_classifier, pretrained_targets_dir

    model_c = load_classifier(pretrained_targets_dir("fashion-mnist") / "C-nor.safetensors").float().eval()
    oracle = load_pretrained_classifier("oracle").float().eval()
    guards = [load_pretrained_classifier("robust_guard"), load_pretrained_classifier("robust_guard_2")]
    generator = torch.Generator().manual_seed(1)
    z, y = pretrained_generator.sample_z(500, generator=generator), torch.randint(10, (500,), generator=generator)
    table_1 = TransferConfig(beta=0.25, steps=400)  # the robust guard's setting of the transfer table
    transferable = ReproduceConfig(atgan=table_1).atgan_transferable
    assert transferable is not None and transferable.steps == 300
    transferred = {}
    for name, config, fit_guards in (("table_1", table_1, guards[:1]), ("transferable", transferable, guards)):
        fit = fit_attack_generator(
            pretrained_generator, pretrained_model_a, config=config, guard=fit_guards, progress=False
        )
        with torch.no_grad():
            images = fit.generator(z, y)
            realistic = (model_c(images).argmax(1) != y) & (oracle(images.float()).argmax(1) == y)
        transferred[name] = realistic.float().mean().item()
    assert transferred["transferable"] > transferred["table_1"] + 0.1, transferred
