#!/usr/bin/env python
"""The shrink's search, measured on saved fits: the margin-reading search at 0–4 passes beside the bisection it
replaced (8 halvings, 9 model passes), on the same latents.

    OMP_NUM_THREADS=1 python benchmarks/study/shrink_lab.py --fit fits/cos_b32_s1000_lr3-A-nor.safetensors \\
        --target A-nor --n 2000

For each variant: success, realistic success and the judge's agreement ratio, the robust-feature Fréchet distance
ratio, the mean ``t`` kept of the change, and the model passes per example. The bisection is re-implemented here
(a few lines) as the package had it before, so that both run in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fit_cost_lab import load_target  # noqa: E402
from realism_check import _agrees, _batches  # noqa: E402

from atgan_plugin import ATGANAttack  # noqa: E402
from atgan_plugin.attack.fit import sample_sources  # noqa: E402
from atgan_plugin.attack.shrink import SHRINK_MARGIN, fooling_margin, shrink_towards_reference  # noqa: E402
from atgan_plugin.data import load_dataset  # noqa: E402
from atgan_plugin.metrics.realism import RobustFrechetDistance, added_edges  # noqa: E402
from atgan_plugin.models import load_classifier  # noqa: E402
from atgan_plugin.pretrained import load_pretrained_generator, pretrained_path  # noqa: E402


@torch.no_grad()
def bisection(reference: torch.Tensor, adversarial: torch.Tensor, fooled, steps: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The shrink before: bisection on t for the smallest fooling t (fooled at t = 1 or returned as is)."""
    t_fooled, t_clean = torch.ones(len(reference)), torch.zeros(len(reference))
    change = adversarial - reference
    at_one = fooled(adversarial)
    for _ in range(steps):
        middle = (t_clean + t_fooled) / 2
        ok = fooled(reference + middle[:, None, None, None] * change)
        t_fooled, t_clean = torch.where(ok, middle, t_fooled), torch.where(ok, t_clean, middle)
    return torch.where(at_one, t_fooled, torch.ones_like(t_fooled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", type=Path, required=True)
    parser.add_argument("--target", default="A-nor")
    parser.add_argument("--judge", default="oracle")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("shrink_lab.jsonl"))
    args = parser.parse_args()
    generator = load_pretrained_generator()
    model, judge = load_target(args.target, torch.device("cpu")), load_target(args.judge, torch.device("cpu"))
    attack = ATGANAttack(model, generator=generator, search_steps=0, progress=False)
    fit = attack.load_fit(args.fit)
    test = load_dataset("fashion-mnist", "test")
    frechet = RobustFrechetDistance(load_classifier(pretrained_path("realism_features")), _batches(test.images))
    rng = torch.Generator().manual_seed(1)
    sources = sample_sources(args.n, 10, None, rng)
    z = generator.sample_z(args.n, generator=rng)
    with torch.no_grad():
        reference = torch.cat([generator(z[i : i + 500], sources[i : i + 500]) for i in range(0, args.n, 500)])
        adversarial = torch.cat([fit.generator(z[i : i + 500], sources[i : i + 500]) for i in range(0, args.n, 500)])

    def margin(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = torch.cat([model(b) for b in _batches(images)])
        return fooling_margin(logits, sources, targeted=False) - SHRINK_MARGIN

    agree_orig = _agrees(judge, reference, sources).float().mean().item()
    fd_orig = frechet(_batches(reference))
    variants: dict[str, tuple[torch.Tensor, int]] = {
        "none (t = 1)": (torch.ones(args.n), 0),
        "bisection, 8 halvings": (bisection(reference, adversarial, lambda x: margin(x) > 0, 8), 9),
    }
    for steps in (1, 2, 3, 4):
        _, t = shrink_towards_reference(reference, adversarial, margin, steps=steps)
        variants[f"margin search, {steps} passes"] = (t, steps + 2)
    for name, (t, passes) in variants.items():
        images = torch.where(
            (t == 1)[:, None, None, None], adversarial, reference + t[:, None, None, None] * (adversarial - reference)
        )
        fooled = margin(images) > -SHRINK_MARGIN
        agrees = _agrees(judge, images, sources)
        edges, own = added_edges(images, reference)
        row = {
            "fit": args.fit.name,
            "variant": name,
            "model_passes": passes,
            "success": fooled.float().mean().item(),
            "realistic": (fooled & agrees).float().mean().item(),
            "oracle_ratio": agrees.float().mean().item() / agree_orig,
            "fd_ratio": frechet(_batches(images)) / fd_orig,
            "added_edges": edges / own,
            "mean_t": t[fooled].mean().item(),
        }
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
