"""``atgan reproduce``'s report as dataclasses: what ``results.json`` holds, read back and merged.

``results.json`` is :meth:`ReproduceReport.to_json`. Reports written before the schema had a version
(schema 1: no ``schema_version`` key, possibly no ``transfer_fit``, no guard list in it, no ``fd`` or
``added_edges`` in the metrics) are converted on load by :meth:`ReproduceReport.from_json`; what they
did not measure reads as None and is shown as "—".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atgan_plugin.metrics.records import AttackMetrics
from atgan_plugin.paper.reproduce.settings import SLOTS

__all__ = ["REPRODUCE_SCHEMA_VERSION", "AblationRow", "Figure", "ReproduceReport", "TransferFit", "merge"]

REPRODUCE_SCHEMA_VERSION = 2

PerAttack = dict[str, AttackMetrics]  # attack name (ATTACKS, TRANSFER_ROWS) -> its metrics


@dataclass(frozen=True)
class TransferFit:
    """Table 7's transferable AT-GAN fit: its settings, its guards and its white-box metrics on A-nor."""

    settings: dict[str, Any]  # the fit's TransferConfig, as a dict
    guards: list[str] | None  # the guards' class names; None in schema 1 reports (the run's guard)
    white_box: AttackMetrics

    def to_json(self) -> dict[str, Any]:
        data = {"settings": self.settings, "guards": self.guards, "white_box": self.white_box.to_json()}
        return data if self.guards is not None else {k: v for k, v in data.items() if k != "guards"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransferFit:
        return cls(data["settings"], data.get("guards"), AttackMetrics.from_json(data["white_box"]))


@dataclass(frozen=True)
class AblationRow:
    """One row of Table 8 or 9: AT-GAN against A-nor with ρ bounded by ``rho_l0`` and ``rho_linf``."""

    rho_l0: int
    rho_linf: float
    metrics: AttackMetrics

    def to_json(self) -> dict[str, Any]:
        return {"rho_l0": self.rho_l0, "rho_linf": self.rho_linf, **self.metrics.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AblationRow:
        return cls(data["rho_l0"], data["rho_linf"], AttackMetrics.from_json(data))


@dataclass(frozen=True)
class Figure:
    slot: str  # the model the figure's fit attacked
    file: str  # its file name in the run folder
    what: str  # a caption

    def to_json(self) -> dict[str, str]:
        return {"slot": self.slot, "file": self.file, "what": self.what}


@dataclass
class ReproduceReport:
    """Every measurement of one reproduction (or of several merged), keyed by slot (:data:`SLOTS`)."""

    dataset: str
    started: str
    config: dict[str, Any]  # ReproduceConfig's sizes and switches
    environment: dict[str, Any]  # the command line, the machine; "parts" for a merged report
    settings: dict[str, Any]  # baselines, song, atgan, guard
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # slot -> load_target's info
    white_box: dict[str, PerAttack] = field(default_factory=dict)  # Table 1
    transfer: dict[str, PerAttack] = field(default_factory=dict)  # Table 7: slot of a Model C -> rows
    transfer_fit: TransferFit | None = None
    ablation: dict[str, list[AblationRow]] = field(default_factory=dict)  # "rho_l0" / "rho_linf" -> rows
    figures: list[Figure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # slots without a checkpoint
    seconds: float = 0.0
    schema_version: int = REPRODUCE_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        def per_slot(table: dict[str, PerAttack]) -> dict[str, Any]:
            return {slot: {name: m.to_json() for name, m in per.items()} for slot, per in table.items()}

        return {
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "started": self.started,
            "config": self.config,
            "environment": self.environment,
            "settings": self.settings,
            "models": self.models,
            "white_box": per_slot(self.white_box),
            "transfer": per_slot(self.transfer),
            "transfer_fit": None if self.transfer_fit is None else self.transfer_fit.to_json(),
            "ablation": {key: [row.to_json() for row in rows] for key, rows in self.ablation.items()},
            "figures": [figure.to_json() for figure in self.figures],
            "missing": self.missing,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReproduceReport:
        """A report from ``results.json`` of any schema version."""

        def per_slot(table: dict[str, dict[str, Any]]) -> dict[str, PerAttack]:
            return {slot: {name: AttackMetrics.from_json(m) for name, m in per.items()} for slot, per in table.items()}

        fit = data.get("transfer_fit")  # absent in older reports
        return cls(
            dataset=data["dataset"],
            started=data["started"],
            config=data["config"],
            environment=data["environment"],
            settings=data["settings"],
            models=data.get("models", {}),
            white_box=per_slot(data["white_box"]),
            transfer=per_slot(data.get("transfer", {})),
            transfer_fit=TransferFit.from_json(fit) if fit else None,
            ablation={key: [AblationRow.from_json(r) for r in rows] for key, rows in data.get("ablation", {}).items()},
            figures=[Figure(**figure) for figure in data.get("figures", [])],
            missing=data.get("missing", [slot for slot in SLOTS if slot not in data["white_box"]]),
            seconds=data.get("seconds", 0.0),
        )


# ReproduceConfig switches that the parts of one reproduction may set differently.
_PART_OPTIONS = ("ablation", "figures")


def _comparable(part: ReproduceReport, key: str) -> Any:
    """What must agree between parts: what a part ran beside the tables (the ablation, the figures) may
    differ, how it measured may not."""
    value = getattr(part, key)
    if key != "config":
        return value
    return {name: setting for name, setting in value.items() if name not in _PART_OPTIONS}


def _check_mergeable(parts: list[ReproduceReport]) -> None:
    """A ``ValueError`` naming the first part and field that differ from part 1."""
    first = parts[0]
    for index, part in enumerate(parts[1:], start=2):
        for key in ("dataset", "config", "settings"):
            mine, theirs = _comparable(part, key), _comparable(first, key)
            if mine == theirs:
                continue
            differing = (
                sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                if isinstance(mine, dict)
                else [key]
            )
            raise ValueError(
                f"part {index} differs from part 1 in {key} ({', '.join(map(str, differing))}); "
                f"only runs with the same dataset, sizes and settings can be merged"
            )


def merge(parts: list[ReproduceReport], *, environment: dict[str, Any] | None = None) -> ReproduceReport:
    """One report from runs over disjoint sets of checkpoints (e.g. one run per architecture, side by side
    on a CPU's cores, or on several machines). They must share the dataset, the sizes and every attack's
    settings (whether a part ran the ablation or the figures may differ); each slot may come from one part
    only. The parts' commands, machines and times are kept under ``environment["parts"]``; ``seconds`` is
    their sum (compute, not wall time)."""
    if not parts:
        raise ValueError("nothing to merge: give at least one results.json")
    _check_mergeable(parts)
    first = parts[0]
    tables: dict[str, dict[str, Any]] = {"white_box": {}, "transfer": {}, "models": {}}
    ablation: dict[str, list[AblationRow]] = {}
    figures: list[Figure] = []
    transfer_fit = None
    for index, part in enumerate(parts, start=1):
        for key, table in tables.items():
            mine = getattr(part, key)
            overlap = sorted(set(table) & set(mine))
            if overlap:
                raise ValueError(
                    f"part {index} measures {', '.join(overlap)} again ({key}); each slot may come from one part only"
                )
            table.update(mine)
        if part.ablation:
            if ablation:
                raise ValueError(f"part {index} has a ρ ablation too; only one part may have it")
            ablation = part.ablation
        figures += part.figures
        if part.transfer_fit is not None:  # only a part with A-nor and a Model C has one
            transfer_fit = part.transfer_fit
    order = {slot: i for i, slot in enumerate(SLOTS)}
    ordered = {key: dict(sorted(table.items(), key=lambda item: order[item[0]])) for key, table in tables.items()}
    machines = sorted({part.environment["machine"] for part in parts})
    runs = [
        {
            "command": part.environment.get("command"),
            "machine": part.environment["machine"],
            "started": part.started,
            "seconds": part.seconds,
            "slots": list(part.white_box),
        }
        for part in parts
    ]
    return ReproduceReport(
        dataset=first.dataset,
        started=min(part.started for part in parts),
        config={**first.config, **{k: any(part.config[k] for part in parts) for k in _PART_OPTIONS}},
        environment={**(environment or {}), "machine": " / ".join(machines), "parts": runs},
        settings=first.settings,
        models=ordered["models"],
        white_box=ordered["white_box"],
        transfer=ordered["transfer"],
        transfer_fit=transfer_fit,
        ablation=ablation,
        figures=figures,
        missing=[slot for slot in SLOTS if slot not in ordered["white_box"]],
        seconds=sum(part.seconds for part in parts),
    )
