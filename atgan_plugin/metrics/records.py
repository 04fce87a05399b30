"""The rates of one measured setting, as the two reports write them.

- :class:`SettingMetrics`: one setting of ``atgan evaluate`` / ``atgan demo`` (AT-GAN, untargeted or one
  target, G_attack's images against G_orig's on the same ``(z, y_s)``); ``success_rate`` is success
  (fooled), ``realistic_success_rate`` success the oracle accepts.
- :class:`AttackMetrics`: one (attack, model) cell of ``atgan reproduce``, where the tables count
  realistic success only and report the rejected and the fooled beside it.

Both are built from a :class:`~atgan_plugin.metrics.counting.Tally`, so the counting is the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from atgan_plugin.metrics.counting import ClassCounts, Tally, safe_ratio

__all__ = ["AttackMetrics", "SettingMetrics"]


@dataclass
class SettingMetrics:
    """One setting of ``atgan evaluate``: rates in [0, 1], distances in [0, 1] pixel units."""

    target: int | None  # None: untargeted
    n: int
    success_rate: float  # fooled: the model misclassifies (untargeted) or outputs the target
    realistic_success_rate: float  # success and the oracle still gives the source class
    oracle_agreement_orig: float  # the oracle gives the source class on G_orig's images
    oracle_agreement_attack: float  # ... on G_attack's images
    agreement_ratio: float  # attack / orig
    mean_l2: float
    mean_linf: float
    added_edges: float
    fd_orig: float | None = None  # robust-feature Fréchet distance of G_orig's images to the real test set
    fd_attack: float | None = None  # ... of G_attack's images
    fd_ratio: float | None = None  # attack / orig
    # Added in schema 3; None in older report.json files ("not measured"):
    reference_error: float | None = None  # the model misclassifies G_orig's image (G_orig's "success", untargeted)
    per_class: list[ClassCounts] | None = None  # one row per source class drawn, by class index

    @classmethod
    def from_tally(
        cls, tally: Tally, target: int | None, fd_orig: float | None = None, fd_attack: float | None = None
    ) -> SettingMetrics:
        fd_ratio = safe_ratio(fd_attack, fd_orig) if fd_attack is not None and fd_orig is not None else None
        return cls(
            target=target,
            n=tally.n,
            success_rate=tally.success_rate,
            realistic_success_rate=tally.realistic_success_rate,
            oracle_agreement_orig=tally.oracle_agreement_reference,
            oracle_agreement_attack=tally.oracle_agreement,
            agreement_ratio=tally.agreement_ratio,
            mean_l2=tally.mean_l2,
            mean_linf=tally.mean_linf,
            added_edges=tally.added_edges,
            fd_orig=fd_orig,
            fd_attack=fd_attack,
            fd_ratio=fd_ratio,
            reference_error=tally.reference_error if tally.reference_counted else None,
            per_class=[replace(tally.by_class[k]) for k in sorted(tally.by_class)],  # copies: the tally goes on
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SettingMetrics:
        """A setting from report.json of any schema version: a key it lacks is None ("not measured")."""
        values: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        if values["per_class"] is not None:
            if not isinstance(values["per_class"], list):
                raise ValueError(f"per_class must be a list of rows, not a {type(values['per_class']).__name__}")
            values["per_class"] = [_class_counts(row) for row in values["per_class"]]
        return cls(**values)


def _class_counts(row: Any) -> ClassCounts:
    """One ``per_class`` row of report.json: a ``ValueError`` naming it when it is not four counts."""
    names = ("source", "n", "fooled", "realistic")
    if not isinstance(row, dict) or not all(
        isinstance(row.get(k), int) and not isinstance(row.get(k), bool) for k in names
    ):
        raise ValueError(f"a per_class row must hold the integers {', '.join(names)}, got {row!r}"[:300])
    return ClassCounts(*(row[k] for k in names))


# The JSON key of each field where they differ. ``atgan reproduce``'s reports have always written the
# realistic success rate under "success_rate" (its tables call it "success"), and the files keep that key.
_ATTACK_JSON_KEYS = {"realistic_success_rate": "success_rate"}
_ATTACK_OPTIONAL = ("added_edges", "fd", "fd_reference", "seconds_per_1000", "fit_seconds")  # absent in older reports


@dataclass(frozen=True)
class AttackMetrics:
    """One attack against one model in ``atgan reproduce``: rates in [0, 1], distances in [0, 1] pixel units."""

    n: int
    realistic_success_rate: float  # fooled and the oracle still gives the source class (JSON: "success_rate")
    rejected_rate: float  # fooled, but the oracle no longer gives the source class (not counted)
    fooled_rate: float  # realistic success + rejected: success in atgan evaluate's sense
    oracle_agreement: float  # the oracle gives the source class, adversarial images
    oracle_agreement_reference: float  # ... the reference images
    reference_error: float  # the model is already wrong on the reference images
    mean_l2: float
    mean_linf: float
    added_edges: float | None  # None only in reports written before it was measured
    fd: float | None = None  # robust-feature Fréchet distance of the adversarial images to the real test set
    fd_reference: float | None = None  # ... of the reference images (the real test images for the baselines)
    seconds_per_1000: float | None = None  # AT-GAN: generation only
    fit_seconds: float | None = None  # AT-GAN: the one-off fit

    @classmethod
    def from_tally(cls, tally: Tally, fd: float | None = None, fd_reference: float | None = None) -> AttackMetrics:
        return cls(
            n=tally.n,
            realistic_success_rate=tally.realistic_success_rate,
            rejected_rate=tally.rejected_rate,
            fooled_rate=tally.success_rate,
            oracle_agreement=tally.oracle_agreement,
            oracle_agreement_reference=tally.oracle_agreement_reference,
            reference_error=tally.reference_error,
            mean_l2=tally.mean_l2,
            mean_linf=tally.mean_linf,
            added_edges=tally.added_edges,
            fd=fd,
            fd_reference=fd_reference,
        )

    def timed(self, seconds_per_1000: float, fit_seconds: float | None) -> AttackMetrics:
        return replace(self, seconds_per_1000=seconds_per_1000, fit_seconds=fit_seconds)

    def to_json(self) -> dict[str, Any]:
        return {_ATTACK_JSON_KEYS.get(name, name): value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttackMetrics:
        values: dict[str, Any] = {
            name: data.get(_ATTACK_JSON_KEYS.get(name, name)) for name in cls.__dataclass_fields__
        }
        missing = [name for name, value in values.items() if value is None and name not in _ATTACK_OPTIONAL]
        if missing:
            raise ValueError(f"a metrics record lacks {', '.join(missing)}: {sorted(data)}")
        return cls(**values)
