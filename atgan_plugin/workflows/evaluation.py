"""``atgan evaluate`` and ``atgan demo``'s output: the evaluation of fitted settings and the files of its run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from atgan_plugin import runs
from atgan_plugin.workflows.fits import fit_summary, save_fits

if TYPE_CHECKING:  # imported lazily: they pull in foolbox and advertorch
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.paper.evaluation import EvaluationReport

__all__ = ["write_evaluation"]


def write_evaluation(
    attack: ATGANAttack,
    networks: dict[str, nn.Module],
    run_dir: Path,
    targets: list[int],
    *,
    n: int,
    seed: int,
    frechet: Any,
    fit_seconds: float,
    checkpoints: dict[str, str],
    save_fitted: bool,
) -> tuple[EvaluationReport, list[str]]:
    """Evaluates the untargeted setting and ``targets`` on ``n`` fresh examples each (drawn from ``seed + 1``,
    apart from the fit) and writes report.json, grid.png, classes.png, rejected.png (when the oracle rejected
    any untargeted success), targets.png (with every class a target) and, when ``save_fitted``, the fits into
    ``run_dir``. Returns the report and the files written.

    The fits are made before (``fit_seconds``), so the report adds their time to its own.
    """
    from atgan_plugin.paper.evaluation import (
        evaluate_attack,
        save_class_grid,
        save_difference_grid,
        save_target_grid,
    )
    from atgan_plugin.paper.rejected import RejectedExamples

    model, oracle = networks["model"], networks["oracle"]
    settings: list[int | None] = [None, *targets]
    rejected = RejectedExamples()
    report = evaluate_attack(
        attack, model, oracle, n=n, targets=targets, seed=seed + 1, frechet=frechet, rejected=rejected
    )
    report.fit_seconds += fit_seconds  # the fits were made before, so evaluate_attack found them cached
    outputs = ["options.json", "report.json"]
    fits = [fit_summary(attack.fit(model, t)) for t in settings]
    image = rejected.save(run_dir)
    record = {
        **report.to_dict(),
        "rejected_examples": rejected.record(image.name if image else None),
        "fits": fits,
        "checkpoints": checkpoints,
    }
    runs.write_json(run_dir / "report.json", record)
    save_difference_grid(attack, model, run_dir / "grid.png")
    save_class_grid(attack, model, run_dir / "classes.png")
    outputs += ["grid.png", "classes.png", *([image.name] if image else [])]
    if targets and len(targets) == int(networks["generator"].num_classes):  # type: ignore[arg-type]
        save_target_grid(attack, model, run_dir / "targets.png")
        outputs.append("targets.png")
    if save_fitted:
        outputs += save_fits(attack, model, run_dir, settings)
    return report, outputs
