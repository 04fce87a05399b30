#!/usr/bin/env python
"""One fit of the realistic preset, with changes, against one target: its success curve and its realism.

    OMP_NUM_THREADS=2 python benchmarks/study/lag_probe.py atgan_plugin/pretrained/fashion-mnist/targets/D-nor.safetensors \\
        '{"steps": 2000}' --n 1000 >> lag.jsonl

The changes are ``TransferConfig.realistic`` fields as JSON; ``"attack_seed"`` seeds ``ATGANAttack``. Prints one
JSON line: the mean batch success of every 100 steps, the steps run, and ``atgan_row`` (success, realistic success,
oracle ratio, FD ×) on ``--n`` fresh examples, judged by the shipped oracle and features. Used for "A fit that lags
is lengthened" in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from heldout import load_network  # noqa: E402
from realism_check import _batches, atgan_row  # noqa: E402

from atgan_plugin import ATGANAttack, load_generator  # noqa: E402
from atgan_plugin.attack.config import TransferConfig  # noqa: E402
from atgan_plugin.data import load_dataset  # noqa: E402
from atgan_plugin.metrics.realism import RobustFrechetDistance  # noqa: E402
from atgan_plugin.models import load_classifier  # noqa: E402
from atgan_plugin.pretrained import pretrained_path  # noqa: E402
from atgan_plugin.utils import eval_mode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the target: a classifier file or a benchmarks/heldout.py network")
    parser.add_argument("changes", nargs="?", default="{}", help="TransferConfig.realistic fields, as JSON")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    changes = json.loads(args.changes)
    seed = int(changes.pop("attack_seed", 0))
    device = torch.device("cpu")
    model = load_network(args.model, device)
    oracle = load_network(pretrained_path("oracle"), device)
    test = load_dataset("fashion-mnist", "test")
    frechet = RobustFrechetDistance(load_classifier(pretrained_path("realism_features")), _batches(test.images))
    config = TransferConfig.realistic(**changes)
    attack = ATGANAttack(
        generator=load_generator(pretrained_path("generator")), config=config, progress=False, seed=seed
    )
    attack.prepare_guard()
    with eval_mode(model, oracle):
        start = time.perf_counter()
        fit = attack.fit(model)
        seconds = time.perf_counter() - start
        row = atgan_row(attack, model, oracle, frechet, args.n, device)
    curve = []
    for end in range(100, fit.steps_run + 100, 100):
        window = [h["success"] for h in fit.history if end - 100 < h["step"] <= end]
        curve.append((end, round(sum(window) / max(len(window), 1), 3)))
    row.update(fit_seconds=seconds, steps=fit.steps_run)
    print(
        json.dumps({"model": str(args.model), "changes": {**changes, "attack_seed": seed}, "curve": curve, "row": row})
    )


if __name__ == "__main__":
    main()
