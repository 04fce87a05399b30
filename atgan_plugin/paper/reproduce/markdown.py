"""``results.md``: :class:`~atgan_plugin.paper.reproduce.report.ReproduceReport` as Markdown, in the
layout of the paper's Tables 1, 7, 8 and 9, with realism, time, figures and what is missing."""

from __future__ import annotations

from typing import Any

from atgan_plugin.metrics.records import AttackMetrics
from atgan_plugin.paper.reproduce.report import ReproduceReport, TransferFit
from atgan_plugin.paper.reproduce.settings import (
    ARCHITECTURES,
    ATTACK_NAMES,
    ATTACKS,
    PAPER_TABLE_7,
    TRAININGS,
    TRANSFER_ROWS,
    TRANSFER_SOURCE,
    training_command,
)

__all__ = ["render_markdown"]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _seconds(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fd(metrics: AttackMetrics) -> str:
    if metrics.fd is None or metrics.fd_reference is None:  # not measured (no features given, or an older report)
        return "—"
    return f"{metrics.fd:.1f} / {metrics.fd_reference:.1f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] + ["---:"] * (len(header) - 1)), *map(_row, rows), ""]


def _run_section(report: ReproduceReport) -> list[str]:
    config, env, white = report.config, report.environment, report.white_box
    lines = ["## Run", "", f"- command: `{env['command']}`", f"- machine: {env['machine']}"]
    lines += [
        f"- started: {report.started}, took {report.seconds:.0f} s",
        f"- examples per (attack, model): {config['n']}; seed {config['seed']}; "
        f"toolkit for the baselines: {config['toolkit']}",
        f"- models present: {', '.join(white) or 'none'}",
        f"- models missing: {', '.join(report.missing) or 'none'}",
        "",
    ]
    if env.get("parts"):
        lines += ["Merged from runs over disjoint checkpoints (the time above is their sum):", ""]
        rows = [[f"`{p['command']}`", ", ".join(p["slots"]), p["started"], f"{p['seconds']:.0f}"] for p in env["parts"]]
        lines += _table(["command", "slots", "started", "seconds"], rows)
    lines += ["Target checkpoints and the commands that trained them:", ""]
    rows = [
        [
            slot,
            str(info.get("architecture")),
            str(info.get("regime")),
            _pct(info.get("test_accuracy")),
            f"`{info.get('command')}`" if info.get("command") else "—",
        ]
        for slot, info in report.models.items()
    ]
    lines += _table(["slot", "architecture", "regime", "test accuracy", "command"], rows)
    settings = report.settings
    lines += [
        "## Settings",
        "",
        f"- baselines (appendix Table 6): `{settings['baselines']}`",
        f"- Song et al.: `{settings['song']}`",
        f"- AT-GAN: `{settings['atgan']}` (guard: {settings['guard']})",
        "",
        "Success counts an example only when the model is fooled **and** the oracle still gives the source class; "
        "fooled examples the oracle rejects are in the realism table, not counted. Rates are over all examples.",
        "",
    ]
    return lines


def _white_box_sections(report: ReproduceReport) -> list[str]:
    white = report.white_box
    lines = ["## White-box success rate, % (Table 1 style)", ""]
    rows = []
    for arch in ARCHITECTURES:
        for training, label in TRAININGS.items():
            per = white.get(f"{arch}-{training}")
            cells = [_pct(per[a].realistic_success_rate) for a in ATTACKS] if per else ["missing"] * len(ATTACKS)
            rows.append([f"{arch} {label}", *cells])
    lines += _table(["model", *(ATTACK_NAMES[a] for a in ATTACKS)], rows)

    lines += ["## Realism beside success (%; ℓ2/ℓ∞ in [0, 1] pixel units)", ""]
    rows = [
        [
            slot,
            ATTACK_NAMES[a],
            _pct(m.realistic_success_rate),
            _pct(m.rejected_rate),
            _pct(m.oracle_agreement),
            _pct(m.oracle_agreement_reference),
            _pct(m.reference_error),
            _fd(m),
            _number(m.added_edges),
            f"{m.mean_l2:.2f}",
            f"{m.mean_linf:.2f}",
        ]
        for slot, per in white.items()
        for a, m in per.items()
    ]
    header = ["model", "attack", "success", "oracle-rejected", "oracle agrees (adv.)", "oracle agrees (reference)"]
    header += ["reference error", "FD adv. / reference", "added edges", "mean ℓ2", "mean ℓ∞"]
    lines += _table(header, rows)
    lines += [
        "FD: Fréchet distance to the real test images in an adversarially trained classifier's features, of the "
        "adversarial images and of their references (G_orig's images; the real images for FGSM, PGD, R+FGSM). "
        "Added edges: total variation of the change over that of the reference.",
        "",
    ]
    lines += ["## Time per 1,000 adversarial examples (s)", "", f"Measured on {report.environment['machine']}.", ""]
    others = [a for a in ATTACKS if a != "atgan"]
    rows = [
        [
            slot,
            *(_seconds(per[a].seconds_per_1000, 2) for a in others),
            _seconds(per["atgan"].fit_seconds, 1),
            _seconds(per["atgan"].seconds_per_1000, 3),
        ]
        for slot, per in white.items()
    ]
    lines += _table(["model", *(ATTACK_NAMES[a] for a in others), "AT-GAN fit (once)", "AT-GAN generate"], rows)
    return lines


def _transferable_name(fit: TransferFit, report: ReproduceReport) -> str:
    guards = len(fit.guards) if fit.guards is not None else int(report.settings["guard"] is not None)
    settings = fit.settings
    return (
        f"AT-GAN, transferable fit (κ {settings['kappa']:g}, γ {settings['gamma']:g}, "
        f"{settings['steps']} steps, {guards} guard{'s' * (guards != 1)})"
    )


def _transfer_section(report: ReproduceReport) -> list[str]:
    lines = ["## Transfer from Model A (Nor.) to Model C, success % (Table 7 style)", ""]
    paper = PAPER_TABLE_7.get(report.dataset, {})
    fit = report.transfer_fit
    names = {**ATTACK_NAMES, "atgan": "AT-GAN, Table 1's fit"}
    if fit is not None:
        names["atgan_transferable"] = _transferable_name(fit, report)
    rows = []
    for a in (a for a in TRANSFER_ROWS if a in names):
        cells = []
        for training in TRAININGS:
            per = report.transfer.get(f"C-{training}")
            cells.append(_pct(per[a].realistic_success_rate) if per and a in per else "missing")
        rows.append([names[a], *cells])
        if a in paper and a != "atgan":
            rows.append([f"{ATTACK_NAMES[a]}, paper (appendix Table 7)", *(f"{paper[a][t]:.1f}" for t in TRAININGS)])
    if "atgan" in paper:  # below both AT-GAN rows
        rows.append(["AT-GAN, paper (appendix Table 7)", *(f"{paper['atgan'][t]:.1f}" for t in TRAININGS)])
    if TRANSFER_SOURCE not in report.white_box:
        lines += [f"Not measured: {TRANSFER_SOURCE} is missing.", ""]
    lines += _table(["attack", *(f"C {label}" for label in TRAININGS.values())], rows)
    if fit is not None:
        own = fit.white_box
        lines += [
            f"The transferable fit against {TRANSFER_SOURCE} itself: success {_pct(own.realistic_success_rate)} %, "
            f"oracle agrees {_pct(own.oracle_agreement)} % (reference {_pct(own.oracle_agreement_reference)} %), "
            f"mean ℓ2 {own.mean_l2:.2f}; fit {_seconds(own.fit_seconds, 1)} s. Its settings: `{fit.settings}`.",
            "",
        ]
    return lines


def _ablation_section(report: ReproduceReport) -> list[str]:
    lines = ["## AT-GAN against Model A (Nor.) versus the noise ρ (Tables 8 and 9 style)", ""]
    if not report.ablation:
        lines += [f"Not measured: {TRANSFER_SOURCE} is missing or the ablation was switched off.", ""]
    for key, title in (("rho_l0", "‖ρ‖₀ (‖ρ‖∞ = 0.5)"), ("rho_linf", "‖ρ‖∞ (‖ρ‖₀ = 200)")):
        if key in report.ablation:
            rows = [
                [
                    str(row.rho_l0 if key == "rho_l0" else row.rho_linf),
                    _pct(row.metrics.realistic_success_rate),
                    _pct(row.metrics.rejected_rate),
                    _pct(row.metrics.oracle_agreement),
                    f"{row.metrics.mean_l2:.2f}",
                ]
                for row in report.ablation[key]
            ]
            lines += _table([title, "success", "oracle-rejected", "oracle agrees", "mean ℓ2"], rows)
    return lines


def render_markdown(report: ReproduceReport | dict[str, Any]) -> str:
    """The report (or its JSON, of any schema version) as Markdown: settings, Tables 1/7/8/9 style,
    realism, timing, figures, what is missing."""
    if not isinstance(report, ReproduceReport):
        report = ReproduceReport.from_json(report)
    quick = report.config["quick"]
    lines = [f"# AT-GAN reproduction: {report.dataset}{' (quick run)' if quick else ''}", ""]
    if quick:
        lines += [
            "**Quick run**: tiny sizes for a check that the pipeline works end to end. Its numbers say "
            "nothing about the methods; do not compare them with the paper.",
            "",
        ]
    lines += _run_section(report)
    lines += _white_box_sections(report)
    lines += _transfer_section(report)
    lines += _ablation_section(report)
    lines += ["## Figures", ""]
    figures = [f"{fig.what}, {fig.slot}:\n\n![{fig.file}]({fig.file})\n" for fig in report.figures]
    lines += figures or ["None written.", ""]
    lines += ["## Missing and not run", ""]
    commands = [f"- {slot}: train it with `{training_command(slot, report.dataset)}`" for slot in report.missing]
    lines += commands or ["- nothing missing"]
    lines.append("")
    return "\n".join(lines)
