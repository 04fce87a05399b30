"""Table 10 from the answers: per class, the share of images judged realistic, and rater agreement.

Paper (appendix Table 10): per class, % realistic for the original generator and for AT-GAN. Our
additions: the counts, 95 % Wilson score intervals, the ratio AT-GAN / G_orig, the real control,
"Which class is it?" agreement when asked, and between-rater agreement (percent agreement and
Fleiss' kappa over the items every rater answered; Cohen's kappa for two raters).

Every answer of every rater counts once (an item judged by three raters adds three answers to its
class and source); "all classes" pools the answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from atgan_plugin.human_eval.answers import Answer
from atgan_plugin.human_eval.items import SOURCES, ItemSet

__all__ = ["agreement", "render_markdown", "table10", "wilson_interval"]

_Z95 = 1.959963984540054  # two-sided 95 % normal quantile
_LABELS = {"orig": "G_orig", "attack": "AT-GAN", "real": "real"}


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion, in [0, 1]; ``None`` without observations."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def _share(answers: Sequence[Answer], shown: dict[str, int] | None = None) -> dict[str, Any]:
    """Realistic answers among ``answers`` (and, with ``shown``, how often the named class was the shown one)."""
    n = len(answers)
    yes = sum(a.realistic for a in answers)
    interval = wilson_interval(yes, n)
    cell: dict[str, Any] = {
        "realistic": yes,
        "n": n,
        "percent": 100 * yes / n if n else None,
        "ci95": [100 * interval[0], 100 * interval[1]] if interval else None,
    }
    if shown is not None:
        named = [a for a in answers if a.cls is not None]
        if named:
            cell["class_named"] = len(named)
            cell["class_right"] = sum(a.cls == shown[a.item] for a in named)
    return cell


def _ratio(attack: dict[str, Any], orig: dict[str, Any]) -> float | None:
    return attack["percent"] / orig["percent"] if attack["percent"] is not None and orig["percent"] else None


def agreement(by_rater: dict[str, list[Answer]]) -> dict[str, Any] | None:
    """Agreement on "realistic" over the items every rater answered; ``None`` with fewer than two raters."""
    raters = sorted(by_rater)
    if len(raters) < 2:
        return None
    votes = {r: {a.item: a.realistic for a in by_rater[r]} for r in raters}
    common = sorted(set.intersection(*(set(v) for v in votes.values())))
    result: dict[str, Any] = {
        "raters": len(raters),
        "items": len(common),
        "percent_agreement": None,
        "fleiss_kappa": None,
    }
    if not common:
        return result
    m = len(raters)
    yes_counts = [sum(votes[r][item] for r in raters) for item in common]
    # Per item, the share of agreeing rater pairs (Fleiss' P_i).
    pair_agreement = [(y * (y - 1) + (m - y) * (m - y - 1)) / (m * (m - 1)) for y in yes_counts]
    observed = sum(pair_agreement) / len(common)
    p_yes = sum(yes_counts) / (m * len(common))
    expected = p_yes**2 + (1 - p_yes) ** 2
    result["percent_agreement"] = 100 * observed
    result["fleiss_kappa"] = (observed - expected) / (1 - expected) if expected < 1 else None
    if m == 2:
        a, b = (votes[r] for r in raters)
        pa, pb = (sum(v[i] for i in common) / len(common) for v in (a, b))
        chance = pa * pb + (1 - pa) * (1 - pb)
        result["cohen_kappa"] = (observed - chance) / (1 - chance) if chance < 1 else None
    return result


def table10(items: ItemSet, by_rater: dict[str, list[Answer]], problems: Sequence[str] = ()) -> dict[str, Any]:
    """Table 10 as data: one row per class and one for all classes (see the module docstring)."""
    info = items.index
    shown = {item.id: item.cls for item in items.items}
    answers = [a for rater in sorted(by_rater) for a in by_rater[rater]]
    sources = [s for s in SOURCES if any(item.source == s for item in items.items)]
    classes = sorted({item.cls for item in items.items})

    def row(selected: list[Answer]) -> dict[str, Any]:
        cells = {s: _share([a for a in selected if info[a.item].source == s], shown) for s in sources}
        return {**cells, "ratio": _ratio(cells["attack"], cells["orig"])}

    rows = [
        {"class": k, "name": items.class_names[k], **row([a for a in answers if info[a.item].cls == k])}
        for k in classes
    ]
    return {
        "classes": rows,
        "all": {"class": None, "name": "all classes", **row(answers)},
        "sources": sources,
        "raters": {rater: len(by_rater[rater]) for rater in sorted(by_rater)},
        "items": len(items.items),
        "agreement": agreement(by_rater),
        "problems": list(problems),
        "settings": items.settings,
    }


def _percent(cell: dict[str, Any]) -> str:
    if cell["percent"] is None:
        return "–"
    low, high = cell["ci95"]
    return f"{cell['percent']:.1f} ({cell['realistic']}/{cell['n']}; {low:.1f}–{high:.1f})"


def render_markdown(table: dict[str, Any]) -> str:
    """Table 10 as Markdown: % realistic (realistic/answers; 95 % interval) per class and source."""
    sources = table["sources"]
    header = ["class", *(f"{_LABELS[s]} % realistic" for s in sources), "ratio AT-GAN / G_orig"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in [*table["classes"], table["all"]]:
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.3f}"
        label = row["name"] if row["class"] is None else f"{row['class']} {row['name']}"
        lines.append("| " + " | ".join([label, *(_percent(row[s]) for s in sources), ratio]) + " |")
    raters = ", ".join(f"{name} ({count})" for name, count in table["raters"].items()) or "none yet"
    out = [
        "Table 10: share of images judged realistic, % (realistic/answers; 95 % Wilson interval)",
        "",
        *lines,
        "",
        f"raters (answers): {raters}; {table['items']} items",
    ]
    named = table["all"]["attack"].get("class_named")
    if named:
        parts = [
            f"{_LABELS[s]} {100 * table['all'][s]['class_right'] / table['all'][s]['class_named']:.1f} %"
            for s in sources
            if table["all"][s].get("class_named")
        ]
        out.append("named the shown class: " + ", ".join(parts))
    agree = table["agreement"]
    if agree is not None and agree["items"]:
        kappa = "–" if agree["fleiss_kappa"] is None else f"{agree['fleiss_kappa']:.3f}"
        text = (
            f"agreement of {agree['raters']} raters on {agree['items']} items: "
            f"{agree['percent_agreement']:.1f} %, Fleiss' κ {kappa}"
        )
        if agree.get("cohen_kappa") is not None:
            text += f", Cohen's κ {agree['cohen_kappa']:.3f}"
        out.append(text)
    for problem in table["problems"]:
        out.append(f"skipped: {problem}")
    return "\n".join(out) + "\n"
