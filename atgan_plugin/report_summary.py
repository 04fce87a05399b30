"""The summary report.html opens with: the answer of an ``atgan evaluate`` / ``atgan demo`` run.

Built from the run folder's files only (report.json, options.json, ``rejected.png``), so that ``atgan report``
rebuilds it identically:

- the sentences ``atgan demo`` prints, worded in one place (:func:`summary_sentences`);
- four numbers (success, realistic success, oracle agreement ratio, FD ×), each with G_orig's beside it where
  one exists;
- success and realistic success per source class;
- the examples the oracle rejected: successes whose source class it no longer gives, the failures to look at.

The untargeted setting leads; without one, the mean over the targets. A key that an older report.json lacks
(``reference_error``, ``per_class``, ``rejected_examples``) is shown as "not measured".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import PurePath
from typing import Any

from atgan_plugin.data import DATASETS
from atgan_plugin.metrics.counting import ClassCounts
from atgan_plugin.metrics.records import SettingMetrics
from atgan_plugin.paper.rejected import REJECTED_FILE
from atgan_plugin.report_paths import shipped_checkpoint
from atgan_plugin.report_tables import Table

__all__ = ["Number", "Summary", "build_summary", "summary_sentences", "target_name"]

NOT_MEASURED = "not measured"
# The fields a setting of report.json must hold as numbers for the summary (every schema version has them).
_REQUIRED = (
    "n",
    "success_rate",
    "realistic_success_rate",
    "oracle_agreement_orig",
    "oracle_agreement_attack",
    "agreement_ratio",
    "added_edges",
)
_OPTIONAL = ("fd_orig", "fd_attack", "fd_ratio", "reference_error")


def target_name(model_path: str | None) -> str:
    """How the sentences name the target model: "Model A" for the shipped one (``None``: no ``--model`` given),
    else its file name."""
    if model_path is None or (shipped_checkpoint(model_path) or ("", ""))[1] == "model_a":
        return "Model A"
    return PurePath(model_path).name


def summary_sentences(metrics: SettingMetrics, target: str, *, mean_over: int = 0) -> list[str]:
    """What the run found, in the words ``atgan demo`` prints and report.html opens with: success and the
    oracle's verdict, then the Fréchet distance when it was measured. ``target`` names the model
    (:func:`target_name`); ``mean_over`` > 0 says that ``metrics`` is the mean over that many targets."""
    m = metrics
    if mean_over:
        fooled = f"{target} gives the target class for {m.success_rate:.1%} of AT-GAN's images (mean over {mean_over} targets)"
    elif m.target is not None:
        fooled = f"{target} gives the target class {m.target} for {m.success_rate:.1%} of AT-GAN's images"
    else:
        fooled = f"{target} misclassifies {m.success_rate:.1%} of AT-GAN's images"
    sentences = [
        f"{fooled}; the oracle still sees the source class in {m.oracle_agreement_attack:.1%} of them "
        f"(G_orig's: {m.oracle_agreement_orig:.1%}, ratio {m.agreement_ratio:.3f})."
    ]
    if m.fd_ratio is not None and m.fd_orig is not None and m.fd_attack is not None:
        sentences.append(
            f"Fréchet distance to the real test images in robust features: G_orig {m.fd_orig:.1f}, AT-GAN "
            f"{m.fd_attack:.1f} ({m.fd_ratio:.2f}x); added edges {m.added_edges:.2f} of G_orig's."
        )
    return sentences


@dataclass(frozen=True)
class Number:
    """One of the four numbers: its name, AT-GAN's value, and G_orig's (or what it means) beside it."""

    label: str
    value: str
    beside: str


@dataclass
class Summary:
    """What the summary section shows; ``rejected_file`` is the image to embed (None: none)."""

    setting: str  # "untargeted", "target 3" or "mean over 10 targets"
    sentences: list[str]
    numbers: list[Number]
    per_class: Table | None  # None: not measured (an older report.json)
    rejected_text: str
    rejected_file: str | None
    rejected_caption: str


def _percent(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.1%}"


def _numbers(m: SettingMetrics) -> list[Number]:
    fd_measured = m.fd_ratio is not None and m.fd_orig is not None and m.fd_attack is not None
    error = "" if m.reference_error is None else " (the model's error on its images)"  # G_orig's "success"
    return [
        Number("success", _percent(m.success_rate), f"G_orig: {_percent(m.reference_error)}{error}"),
        Number("realistic success", _percent(m.realistic_success_rate), "fooled, and the oracle still sees the source"),
        Number(
            "oracle agreement ratio",
            f"{m.agreement_ratio:.3f}",
            f"AT-GAN {_percent(m.oracle_agreement_attack)} · G_orig {_percent(m.oracle_agreement_orig)}",
        ),
        Number(
            "FD ×",
            f"{m.fd_ratio:.2f}×" if fd_measured else "–",
            f"AT-GAN {m.fd_attack:.1f} · G_orig {m.fd_orig:.1f}" if fd_measured else f"FD {NOT_MEASURED}",
        ),
    ]


def _class_label(k: int, names: tuple[str, ...] | None) -> str:
    return f"{k} {names[k]}" if names is not None and 0 <= k < len(names) else str(k)


def _per_class_table(rows: list[ClassCounts], names: tuple[str, ...] | None) -> Table:
    """One row per source class: index, name (when the dataset is known), n, success and realistic success
    (rate and count)."""
    columns = ["class", *(["name"] if names else []), "n", "success", "realistic success"]
    raw: list[list[Any]] = []
    cells: list[list[str]] = []
    for row in rows:
        name = [names[row.source] if 0 <= row.source < len(names) else "–"] if names else []
        raw.append([row.source, *name, row.n, row.success_rate, row.realistic_success_rate])
        cells.append(
            [
                str(row.source),
                *name,
                str(row.n),
                f"{row.success_rate:.1%} ({row.fooled})",
                f"{row.realistic_success_rate:.1%} ({row.realistic})",
            ]
        )
    return Table("realistic success per source class", columns, cells, raw=raw)


def _rejected(
    m: SettingMetrics, target: str, record: Any, pngs: dict[str, bytes], names: tuple[str, ...] | None
) -> tuple[str, str | None, str]:
    """The rejected examples' sentence, image and caption (which class each column is)."""
    record = record if isinstance(record, dict) else {}
    fooled = round(m.n * m.success_rate)
    count = record.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        count = round(m.n * (m.success_rate - m.realistic_success_rate))
    file = REJECTED_FILE if REJECTED_FILE in pngs else None
    if count == 0:
        text = f"The oracle rejected none of the {fooled} images that fooled {target}."
    else:
        text = (
            f"The oracle rejected {count} of the {fooled} images that fooled {target}: it no longer sees "
            f"their source class, so they count as failures, not successes."
        )
        if file is None:
            text += f" This run kept no image of them (no {REJECTED_FILE})."
    sources, seen, where = record.get("sources"), record.get("oracle_classes"), record.get("target")
    caption = "G_orig's image above AT-GAN's, one column per rejected example"
    if isinstance(sources, list) and isinstance(seen, list) and len(sources) == len(seen):
        columns = [
            f"{_class_label(s, names)} (oracle: {_class_label(o, names)})"
            for s, o in zip(sources, seen, strict=True)
            if isinstance(s, int) and isinstance(o, int)
        ]
        caption = f"G_orig's image above AT-GAN's; source class, left to right: {'; '.join(columns)}"
    if isinstance(where, int):  # the evaluation keeps those of its first setting
        caption += f" (target {where})"
    return text, file, caption if file is not None else ""


def _mean_setting(settings: list[SettingMetrics]) -> SettingMetrics:
    """The mean of each rate over ``settings`` (a key one of them lacks: None), their examples together and
    their per-class counts summed."""
    values: dict[str, Any] = {"target": None, "n": sum(m.n for m in settings)}
    for field in fields(SettingMetrics):
        if field.name in ("target", "n", "per_class"):
            continue
        column = [getattr(m, field.name) for m in settings]
        values[field.name] = None if any(v is None for v in column) else sum(column) / len(column)
    per_class: dict[int, ClassCounts] | None = {}
    for m in settings:
        if per_class is None or m.per_class is None:
            per_class = None
            continue
        for row in m.per_class:
            total = per_class.setdefault(row.source, ClassCounts(row.source))
            total.n += row.n
            total.fooled += row.fooled
            total.realistic += row.realistic
    values["per_class"] = None if per_class is None else [per_class[k] for k in sorted(per_class)]
    return SettingMetrics(**values)


def _setting(data: Any, where: str) -> SettingMetrics | None:
    """A setting of report.json, or None with a warning naming what is wrong with it."""
    problem = None
    if not isinstance(data, dict):
        problem = f"is a {type(data).__name__}, not an object"
    else:
        bad = [k for k in _REQUIRED if not _is_number(data.get(k))]
        bad += [k for k in _OPTIONAL if data.get(k) is not None and not _is_number(data[k])]
        if bad:
            problem = f"lacks numbers for {', '.join(bad)}"
    if problem is None:
        try:
            return SettingMetrics.from_json(data)
        except ValueError as error:
            problem = str(error)
    warnings.warn(f"report.json's {where} {problem}: the report has no summary", stacklevel=4)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_summary(report: Any, options: dict[str, Any], pngs: dict[str, bytes]) -> Summary | None:
    """The summary of a run folder from its report.json (``report``), options.json and images; None when
    report.json holds no measured setting (other commands' runs, or none measured)."""
    if not isinstance(report, dict):
        return None
    checkpoints = report.get("checkpoints") or options.get("checkpoints") or {}
    checkpoints = checkpoints if isinstance(checkpoints, dict) else {}
    model = checkpoints.get("model")
    target = target_name(model if isinstance(model, str) else None)
    if report.get("untargeted") is not None:
        metrics = _setting(report["untargeted"], "untargeted setting")
        setting, mean_over = "untargeted", 0
    elif isinstance(report.get("targeted"), list) and report["targeted"]:
        targeted = [_setting(m, f"targeted[{i}]") for i, m in enumerate(report["targeted"])]
        if any(m is None for m in targeted):
            return None
        settings = [m for m in targeted if m is not None]
        metrics = settings[0] if len(settings) == 1 else _mean_setting(settings)
        setting = f"target {metrics.target}" if len(settings) == 1 else f"mean over {len(settings)} targets"
        mean_over = 0 if len(settings) == 1 else len(settings)
    else:
        return None
    if metrics is None:
        return None
    names = _class_names(checkpoints, options, metrics)
    text, file, caption = _rejected(metrics, target, report.get("rejected_examples"), pngs, names)
    return Summary(
        setting=setting,
        sentences=summary_sentences(metrics, target, mean_over=mean_over),
        numbers=_numbers(metrics),
        per_class=None if metrics.per_class is None else _per_class_table(metrics.per_class, names),
        rejected_text=text,
        rejected_file=file,
        rejected_caption=caption,
    )


def _class_names(checkpoints: dict[str, Any], options: dict[str, Any], m: SettingMetrics) -> tuple[str, ...] | None:
    """The class names, where the dataset is known: the shipped generator's, or the run's ``--dataset`` when
    the Fréchet distance compared the images with that dataset's (a generator of other images has no names)."""
    generator = checkpoints.get("generator")
    shipped = shipped_checkpoint(generator) if isinstance(generator, str) else None
    settings = options.get("options")
    chosen = settings.get("dataset") if isinstance(settings, dict) else None
    dataset = shipped[0] if shipped is not None else (chosen if m.fd_ratio is not None else None)
    info = DATASETS.get(dataset) if isinstance(dataset, str) else None
    return info.class_names if info is not None else None
