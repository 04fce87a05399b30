"""``atgan reproduce`` and ``atgan reproduce-merge``: the targets a run reads, and the files it writes.

The evaluation itself is :func:`atgan_plugin.paper.reproduce.reproduce`; here are its inputs (the target
checkpoints of a folder) and its outputs (results.json, results.md, figures), for one run or merged parts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atgan_plugin import runs
from atgan_plugin.checkpoints import atomic_write

__all__ = ["load_targets", "read_parts", "write_merged", "write_results"]


def load_targets(
    checkpoints_dir: str | None, dataset: str, device: torch.device
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]], dict[str, str]]:
    """The target models of ``checkpoints_dir`` (default: the shipped ones of ``dataset``) by slot
    (``A-nor`` … ``D-iter``; absent slots left out), what they were trained with, and their paths.
    ``FileNotFoundError`` when the folder holds none."""
    from atgan_plugin.paper.reproduce import find_checkpoints, load_target
    from atgan_plugin.pretrained import pretrained_targets_dir

    folder = checkpoints_dir if checkpoints_dir is not None else str(pretrained_targets_dir(dataset))
    models, models_info, paths = {}, {}, {}
    for slot, path in find_checkpoints(folder).items():
        if path is not None:
            models[slot], models_info[slot] = load_target(path, device)
            paths[slot] = str(path)
    if not models:
        raise FileNotFoundError(f"no target checkpoints in {folder} (expected names such as A-nor.safetensors)")
    return models, models_info, paths


def write_results(run_dir: Path, report: dict[str, Any]) -> list[str]:
    """results.json and results.md of ``report`` in ``run_dir``; returns every output of the run
    (options.json and the figures the run wrote included)."""
    from atgan_plugin.paper.reproduce import render_markdown

    runs.write_json(run_dir / "results.json", report)
    with atomic_write(run_dir / "results.md") as tmp:
        tmp.write_text(render_markdown(report))
    return ["options.json", "results.md", "results.json", *(figure["file"] for figure in report["figures"])]


def read_parts(folders: list[Path], environment: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """The reports of the run folders ``folders`` merged into one, and their figures as (file, name).

    ``FileNotFoundError`` when a folder has no results.json; ``ValueError`` when two parts wrote the same
    figure file (the parts must share dataset, sizes and settings: :func:`merge_reports` checks that).
    """
    from atgan_plugin.paper.reproduce import merge_reports

    missing = [str(folder) for folder in folders if not (folder / "results.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no results.json in {', '.join(missing)} (give the run folders of atgan reproduce)")
    reports = [json.loads((folder / "results.json").read_text()) for folder in folders]
    merged = merge_reports(reports, environment=environment)
    figures = [
        (folder / figure["file"], figure["file"])
        for folder, report in zip(folders, reports, strict=True)
        for figure in report["figures"]
    ]
    names = [name for _, name in figures]
    if len(set(names)) != len(names):
        raise ValueError(
            f"two parts wrote the same figure file ({sorted(names)}); merge parts with figures from one only"
        )
    return merged, figures


def write_merged(run_dir: Path, merged: dict[str, Any], figures: list[tuple[Path, str]]) -> None:
    """The merged report's results.json and results.md, and the parts' figures, in ``run_dir``."""
    from atgan_plugin.paper.reproduce import render_markdown

    for source, name in figures:
        shutil.copy2(source, run_dir / name)
    runs.write_json(run_dir / "results.json", merged)
    with atomic_write(run_dir / "results.md") as tmp:
        tmp.write_text(render_markdown(merged))
