"""``atgan reproduce``: the paper's evaluation on one dataset, as Markdown and JSON.

What is measured, each against every target checkpoint that exists:
- Table 1 style: white-box success of FGSM, PGD, R+FGSM (:mod:`atgan_plugin.paper.baselines`, Table 6
  settings), Song et al.'s search (:mod:`atgan_plugin.paper.song`) and AT-GAN against Models A–D under
  Nor./Adv./Ens./Iter. training;
- Table 7 style: the examples made on Model A (Nor.) handed to Model C under each training;
- Tables 8/9 style: AT-GAN's success against Model A (Nor.) for ‖ρ‖₀ ∈ {0, …, 400} and ‖ρ‖∞ ∈ {0, …, 0.5};
- realism beside every success rate: an independent oracle's agreement with the source class and
  the mean ℓ2/ℓ∞ change from the reference image (the clean test image for the perturbation
  attacks; ``G(z0, y_s)`` for Song's; ``G_orig(z, y_s)`` for AT-GAN);
- time per 1,000 examples (AT-GAN split into the one-off fit and the generation).

our choices (where the paper leaves them open):
- untargeted attacks throughout; the tables' "success" is *realistic success* (:mod:`atgan_plugin.metrics`):
  the target model is fooled *and* the oracle still gives the source class; fooled examples the oracle
  rejects are reported separately ("rejected"), never counted;
- rates are over all ``n`` examples, not only those the model got right before the attack: the
  model's error on the references is reported beside them ("reference error");
- the perturbation attacks use the first ``n`` test images; Song's and AT-GAN use the same
  source classes (those images' labels) and the same latents ``z`` (seeded);
- Table 7's source is Model A under normal training; its examples are handed to Model C under
  each training (the paper's table names the targets' trainings only).

Checkpoints are found by name in one folder: ``A-nor.safetensors``, ``A-adv``, ``A-ens``,
``A-iter``, … ``D-iter`` (:data:`SLOTS`); the ones absent are reported as missing.

This module is the entry point; the work is in :mod:`~atgan_plugin.paper.reproduce.settings` (slots, attacks,
configuration), :mod:`~atgan_plugin.paper.reproduce.run` (the measurements),
:mod:`~atgan_plugin.paper.reproduce.report` (the report's dataclasses, JSON and merging) and
:mod:`~atgan_plugin.paper.reproduce.markdown` (``results.md``).
"""

from __future__ import annotations

from typing import Any

from atgan_plugin.paper.reproduce.markdown import render_markdown
from atgan_plugin.paper.reproduce.report import REPRODUCE_SCHEMA_VERSION, ReproduceReport, merge
from atgan_plugin.paper.reproduce.run import measure, run_reproduction
from atgan_plugin.paper.reproduce.settings import (
    ATTACK_NAMES,
    ATTACKS,
    PAPER_TABLE_7,
    RHO_L0,
    RHO_LINF,
    SLOTS,
    TRAININGS,
    TRANSFER_ROWS,
    TRANSFERABLE_OVERRIDES,
    TRANSFERABLE_STEPS_FACTOR,
    ReproduceConfig,
    find_checkpoints,
    load_target,
    training_command,
)

__all__ = [
    "ATTACKS",
    "ATTACK_NAMES",
    "PAPER_TABLE_7",
    "REPRODUCE_SCHEMA_VERSION",
    "RHO_L0",
    "RHO_LINF",
    "SLOTS",
    "TRAININGS",
    "TRANSFERABLE_OVERRIDES",
    "TRANSFERABLE_STEPS_FACTOR",
    "TRANSFER_ROWS",
    "ReproduceConfig",
    "ReproduceReport",
    "find_checkpoints",
    "load_target",
    "measure",
    "merge",
    "merge_reports",
    "render_markdown",
    "reproduce",
    "run_reproduction",
    "training_command",
]


def reproduce(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_reproduction` (same arguments), its report as ``results.json``'s JSON."""
    return run_reproduction(*args, **kwargs).to_json()


def merge_reports(parts: list[dict[str, Any]], *, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`~atgan_plugin.paper.reproduce.report.merge` on ``results.json`` contents of any schema
    version, the merged report as JSON."""
    return merge([ReproduceReport.from_json(part) for part in parts], environment=environment).to_json()
