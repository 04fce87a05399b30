"""Writing fitted G_attacks into a run folder, and what a run records of them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atgan_plugin.attack.fit import FitResult

if TYPE_CHECKING:  # imported lazily: it pulls in foolbox and advertorch
    from atgan_plugin.attack.atgan import ATGANAttack

__all__ = ["fit_file_name", "fit_summary", "save_fits"]


def fit_file_name(target: int | None, *, only: bool = False) -> str:
    """``g_attack.safetensors`` for the untargeted fit (or the run's only fit, when ``only``),
    ``g_attack-target<K>.safetensors`` for target K."""
    return "g_attack.safetensors" if target is None or only else f"g_attack-target{target}.safetensors"


def save_fits(
    attack: ATGANAttack, model: Any, run_dir: Path, targets: Iterable[int | None], *, only: bool = False
) -> list[str]:
    """Saves the fit of each of ``targets`` into ``run_dir`` (names by :func:`fit_file_name`); returns the names."""
    names = []
    for target in targets:
        name = fit_file_name(target, only=only)
        attack.save_fit(run_dir / name, target=target, model=model)
        names.append(name)
    return names


def fit_summary(fit: FitResult) -> dict[str, Any]:
    """A fit's configuration and outcome with its per-step history, as report.json and summary.json hold it."""
    return {**fit.summary(), "history": fit.history}
