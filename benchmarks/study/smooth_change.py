#!/usr/bin/env python
"""Issue 11, a variant not adopted: smooth each example's change before the shrink.

For each example the change ``G_attack(z, y) − G_orig(z, y)`` is blurred with the widest Gaussian of a grid
(σ 0.7 to 3 pixels) at which G_orig's image plus the blurred change still fools the model; then the default
shrink runs on it. "guard-picked" keeps the smoothed example only where the fit's own guards give its source
class at least the log-probability they give the default's. Printed beside the default, on the same examples:
success, realistic success and agreement ratio by the study's independent judge, Fréchet distance in the
shipped robust features (AT-GAN's over G_orig's) and added edges. Results: docs/benchmarks.md.

    python benchmarks/study/smooth_change.py --target user_normal --models-dir MODELS --fit fit.safetensors

``MODELS`` holds the study's held-out models (``realism_lab.py models``); ``--fit`` is a default fit saved by
``attack.save_fit`` (made and saved there when the file does not exist).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

sys.path.insert(0, str(Path(__file__).parent))
import realism_lab as lab

from atgan_plugin import ATGANAttack, load_generator
from atgan_plugin.attack.shrink import SHRINK_MARGIN, fooled_with_margin, shrink_while_fooled
from atgan_plugin.attack.transfer import sample_sources
from atgan_plugin.data import load_dataset
from atgan_plugin.metrics.realism import RobustFrechetDistance, added_edges
from atgan_plugin.models import load_classifier
from atgan_plugin.pretrained import pretrained_path

SIGMAS = (0.7, 1.0, 1.5, 2.0, 3.0)


def batches(images: torch.Tensor, size: int = 500) -> list[torch.Tensor]:
    return [images[i : i + size] for i in range(0, len(images), size)]


def smoothed(
    reference: torch.Tensor, raw: torch.Tensor, fooled: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Each example's change blurred with the widest σ of SIGMAS that still fools (unblurred where none does)."""
    out = raw.clone()
    for sigma in SIGMAS:  # a wider σ overwrites a narrower one
        size = 2 * round(3 * sigma) + 1
        candidate = (reference + gaussian_blur(raw - reference, [size, size], [sigma, sigma])).clamp(0, 1)
        ok = fooled(candidate)
        out[ok] = candidate[ok]
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="a held-out target of the study, e.g. user_normal")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--fit", type=Path, required=True)
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    device = torch.device("cpu")
    generator = load_generator(pretrained_path("generator"), device=device)
    model = lab.load_target(args.target, args.models_dir, device)
    judge = lab.load_held_out("oracle_ind", args.models_dir, device)
    attack = ATGANAttack(generator=generator, device=device, progress=False, search_steps=0)
    if args.fit.exists():
        attack.load_fit(args.fit, model=model)
    else:
        with torch.enable_grad():
            attack.fit(model)
        attack.save_fit(args.fit, model=model)
    test = load_dataset("fashion-mnist", "test")
    frechet = RobustFrechetDistance(load_classifier(pretrained_path("realism_features"), device), batches(test.images))

    rng = torch.Generator().manual_seed(1)
    sources = sample_sources(args.n, 10, None, rng)
    z = generator.sample_z(args.n, generator=rng, device="cpu")
    pairs = [
        attack.generate(s, z=zz, model=model, with_reference=True)
        for s, zz in zip(batches(sources), batches(z), strict=True)
    ]
    raw, reference = torch.cat([a for a, _ in pairs]), torch.cat([r for _, r in pairs])

    def fooled(images: torch.Tensor) -> torch.Tensor:
        return fooled_with_margin(model(images), sources, targeted=False, margin=SHRINK_MARGIN)

    def shrink(images: torch.Tensor) -> torch.Tensor:
        return shrink_while_fooled(
            reference, images, model, sources, None, bounds=(0.0, 1.0), precision="fp32", steps=8
        )

    def guards_log_prob(images: torch.Tensor) -> torch.Tensor:  # (N,): the least any guard gives the source
        per_guard = [F.log_softmax(g(images), 1).gather(1, sources[:, None]).squeeze(1) for g in attack.guards]
        return torch.stack(per_guard).min(0).values

    fd_reference = frechet(batches(reference))
    agree_reference = judge(reference).argmax(1) == sources

    def report(name: str, images: torch.Tensor) -> None:
        is_fooled = model(images).argmax(1) != sources
        agree = judge(images).argmax(1) == sources
        edges, own = added_edges(images, reference)
        print(
            f"{name:18s} success {is_fooled.float().mean():.3f}  realistic {(is_fooled & agree).float().mean():.3f}  "
            f"ratio {agree.float().mean() / agree_reference.float().mean():.3f}  "
            f"FD x {frechet(batches(images)) / fd_reference:.2f}  added edges {edges / own:.2f}",
            flush=True,
        )

    default = shrink(raw)
    smooth = shrink(smoothed(reference, raw, fooled))
    picked = torch.where((guards_log_prob(smooth) >= guards_log_prob(default))[:, None, None, None], smooth, default)
    print(f"target {args.target}, {args.n} examples")
    report("default (shrink)", default)
    report("smoothed", smooth)
    report("guard-picked", picked)


if __name__ == "__main__":
    main()
