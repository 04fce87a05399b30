"""atgan_plugin.paper.evaluation: success and realism metrics, the report, image grids.

With the target model itself as the "oracle", the metrics must satisfy exact identities (an image
cannot both fool the model and be given its source class by the same model); those identities,
and agreement with an independent estimate, are what these tests check.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.data import TensorDataset
from atgan_plugin.metrics.records import SettingMetrics
from atgan_plugin.paper.evaluation import EvaluationReport, evaluate_attack, save_difference_grid, save_target_grid
from atgan_plugin.paper.rejected import RejectedExamples

STRONG: dict[str, Any] = dict(steps=40, batch_size=32, lr=0.05, progress=False)
FAST: dict[str, Any] = dict(steps=3, batch_size=16, lr=0.05, progress=False)
N = 300


@pytest.fixture(scope="module")
def attack(make_tiny_generator: Callable[..., nn.Module], tiny_target: nn.Module) -> ATGANAttack:
    return ATGANAttack(tiny_target, generator=make_tiny_generator(), **STRONG)


@pytest.fixture(scope="module")
def rejected() -> RejectedExamples:
    return RejectedExamples(limit=10)


@pytest.fixture(scope="module")
def report(attack: ATGANAttack, tiny_target: nn.Module, rejected: RejectedExamples) -> EvaluationReport:
    return evaluate_attack(
        attack, tiny_target, tiny_target, n=N, targets=[2, 5], batch_size=128, seed=1, rejected=rejected
    )


def test_report_shape(report: EvaluationReport) -> None:
    assert report.untargeted is not None and report.untargeted.target is None
    assert [m.target for m in report.targeted] == [2, 5]
    for m in [report.untargeted, *report.targeted]:
        assert m.n == N
        for key in ("success_rate", "realistic_success_rate", "oracle_agreement_orig", "oracle_agreement_attack"):
            assert 0.0 <= getattr(m, key) <= 1.0, key
        assert 0.0 < m.mean_linf <= 1.0
        assert m.mean_l2 >= m.mean_linf  # ‖v‖₂ ≥ ‖v‖∞ per image
        assert m.agreement_ratio == pytest.approx(m.oracle_agreement_attack / m.oracle_agreement_orig)
    assert report.generation_images_per_second > 0
    assert report.device == "cpu"


def test_identities_when_the_oracle_is_the_target(report: EvaluationReport) -> None:
    m = report.untargeted
    assert m is not None
    # Success means "the model does not give the source class", agreement that it does.
    assert m.realistic_success_rate == 0.0
    assert m.oracle_agreement_attack == pytest.approx(1.0 - m.success_rate)
    for t in report.targeted:
        assert t.realistic_success_rate == 0.0
        assert t.success_rate + t.oracle_agreement_attack <= 1.0 + 1e-9  # target ≠ source


def test_success_agrees_with_an_independent_estimate(
    report: EvaluationReport, attack: ATGANAttack, tiny_target: nn.Module
) -> None:
    rng = torch.Generator().manual_seed(99)
    sources = torch.randint(10, (N,), generator=rng)
    z = attack.generator.sample_z(N, generator=rng)
    adversarial, reference = attack.generate(sources, z=z, with_reference=True)
    with torch.no_grad():
        success = (tiny_target(adversarial).argmax(1) != sources).float().mean().item()
        baseline = (tiny_target(reference).argmax(1) == sources).float().mean().item()
    assert report.untargeted is not None
    assert report.untargeted.success_rate == pytest.approx(success, abs=0.1)
    assert report.untargeted.oracle_agreement_orig == pytest.approx(baseline, abs=0.1)
    assert report.untargeted.success_rate > 0.6


def test_targeted_mean_and_serialisation(report: EvaluationReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    expected = sum(m.success_rate for m in report.targeted) / 2
    assert data["targeted_mean"]["success_rate"] == pytest.approx(expected)
    assert report.targeted_mean("success_rate") == pytest.approx(expected)
    assert data["untargeted"]["n"] == N and len(data["targeted"]) == 2


def test_per_class_counts_add_up_to_the_setting(report: EvaluationReport) -> None:
    # The evaluation draws its sources from seed 1 before anything else: the per-class n are those draws.
    drawn = sample_sources(N, 10, None, torch.Generator().manual_seed(1))
    for m in [report.untargeted, *report.targeted]:
        assert m is not None and m.per_class is not None
        rows = {row.source: row for row in m.per_class}
        assert [row.source for row in m.per_class] == sorted(rows) and m.target not in rows  # no row for the target
        assert sum(row.n for row in m.per_class) == N
        assert sum(row.fooled for row in m.per_class) == round(m.success_rate * N)
        assert sum(row.realistic for row in m.per_class) == round(m.realistic_success_rate * N)
        assert all(0 <= row.realistic <= row.fooled <= row.n for row in m.per_class)
    assert report.untargeted is not None and report.untargeted.per_class is not None
    counts = torch.bincount(drawn, minlength=10).tolist()
    assert {row.source: row.n for row in report.untargeted.per_class} == {k: c for k, c in enumerate(counts) if c}


def test_reference_error_is_the_models_error_on_g_orig(report: EvaluationReport) -> None:
    m = report.untargeted
    assert m is not None and m.reference_error is not None
    # The oracle is the target model here: its agreement on G_orig's images is exactly 1 − the model's error.
    assert m.reference_error == pytest.approx(1.0 - m.oracle_agreement_orig)


def test_rejected_examples_of_the_untargeted_setting(report: EvaluationReport, rejected: RejectedExamples) -> None:
    m = report.untargeted
    assert m is not None and rejected.target is None
    # The oracle is the target model: every success is rejected, and it sees another class in each.
    assert rejected.count == round(m.success_rate * N) > 0
    assert len(rejected.sources) == len(rejected.references) == min(10, rejected.count)
    assert all(seen != source for seen, source in zip(rejected.oracle_classes, rejected.sources, strict=True))
    record = rejected.record("rejected.png")
    assert json.loads(json.dumps(record)) == record and record["count"] == rejected.count


def test_rejected_grid_shows_g_orig_above_at_gan(rejected: RejectedExamples, tmp_path: Path) -> None:
    path = rejected.save(tmp_path)
    assert path == tmp_path / "rejected.png"
    with Image.open(path) as image:
        assert image.size == (tiles(len(rejected.sources)), tiles(2))
    assert RejectedExamples().save(tmp_path / "none") is None and not (tmp_path / "none").exists()


def test_older_report_json_reads_without_the_new_keys(report: EvaluationReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema_version"] == 3
    assert data["untargeted"]["per_class"][0].keys() == {"source", "n", "fooled", "realistic"}
    assert report.untargeted is not None
    assert SettingMetrics.from_json(data["untargeted"]) == report.untargeted  # round trip, per-class rows included
    for setting in [data["untargeted"], *data["targeted"]]:
        del setting["per_class"], setting["reference_error"]
    old = SettingMetrics.from_json(data["untargeted"])
    assert old.per_class is None and old.reference_error is None
    with pytest.raises(ValueError, match="a per_class row must hold the integers source, n, fooled, realistic"):
        SettingMetrics.from_json({**data["untargeted"], "per_class": [{"source": 1, "n": "3"}]})


def test_table_has_one_row_per_setting(report: EvaluationReport) -> None:
    lines = report.table().splitlines()
    names = [line.split()[0] + (" " + line.split()[1] if line.startswith("target") else "") for line in lines[2:-1]]
    assert names == ["untargeted", "target 2", "target 5", "targeted avg"]
    assert lines[-1].startswith("generation:")


def test_evaluation_is_reproducible(report: EvaluationReport, attack: ATGANAttack, tiny_target: nn.Module) -> None:
    again = evaluate_attack(
        attack, tiny_target, tiny_target, n=N, targets=[2, 5], batch_size=128, seed=1
    )  # fits are cached
    for key in ("success_rate", "oracle_agreement_orig", "mean_l2"):
        assert getattr(again.untargeted, key) == pytest.approx(getattr(report.untargeted, key), abs=1e-6)
        assert [getattr(m, key) for m in again.targeted] == pytest.approx(
            [getattr(m, key) for m in report.targeted], abs=1e-6
        )


def test_targeted_only(attack: ATGANAttack, tiny_target: nn.Module) -> None:
    only = evaluate_attack(attack, tiny_target, tiny_target, n=20, targets=[5], untargeted=False)
    assert only.untargeted is None
    assert [m.target for m in only.targeted] == [5]


# ------------------------------------------------------------------------------------------------
# Image grids: 28x28 tiles with 2-pixel padding.


def tiles(n: int) -> int:
    return n * 28 + (n + 1) * 2


@pytest.mark.parametrize("target, columns", [(None, 10), (4, 9)])
def test_difference_grid_layout(
    tmp_path: Path, target: int | None, columns: int, tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    attack.fit(target=target)
    path = save_difference_grid(attack, tiny_target, tmp_path / "grid.png", target=target)
    with Image.open(path) as image:
        assert image.size == (tiles(columns), tiles(3))  # G_orig, AT-GAN and difference rows


def test_target_grid_layout(tmp_path: Path, tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    for target in [None, *range(10)]:
        attack.fit(target=target)
    path = save_target_grid(attack, tiny_target, tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.size == (tiles(10), tiles(10))


@pytest.mark.parametrize("save", [save_difference_grid, save_target_grid], ids=["difference", "target"])
def test_grids_fit_on_first_use(
    tmp_path: Path, save: Callable[..., Path], tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    # The grid functions run under no_grad; a fit they trigger must still take gradients.
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    assert save(attack, tiny_target, tmp_path / "grid.png").is_file()


def test_evaluation_restores_model_modes(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    model, oracle = copy.deepcopy(tiny_target).train(), copy.deepcopy(tiny_target).train()
    evaluate_attack(ATGANAttack(model, generator=tiny_generator, **FAST), model, oracle, n=8, batch_size=8)
    assert all(m.training for m in model.modules()) and all(m.training for m in oracle.modules())


def test_pretrained_checkpoints_evaluate_sensibly(
    pretrained_generator: nn.Module,
    pretrained_model_a: nn.Module,
    pretrained_oracle: nn.Module,
    fashion_test: TensorDataset,
) -> None:
    # The shipped oracle recognises most of the shipped generator's images.
    attack = ATGANAttack(pretrained_model_a, generator=pretrained_generator, steps=10, batch_size=16, progress=False)
    result = evaluate_attack(attack, pretrained_model_a, pretrained_oracle, n=200, batch_size=100)
    assert result.untargeted is not None
    assert result.untargeted.oracle_agreement_orig > 0.6
