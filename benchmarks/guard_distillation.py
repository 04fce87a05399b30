#!/usr/bin/env python
"""What a distilled guard costs on first use, beside what rendering its training images alone costs.

    OMP_NUM_THREADS=2 python benchmarks/guard_distillation.py            # 28×28 (shipped) and 32×32×3 generators

``guard="auto"`` trains a guard on ``G_orig(z, y) → y`` once per generator (then reads it from the
cache). For each generator this times, in one run: the distillation with the default recipe
(:class:`atgan_plugin.attack.guards.DistillConfig`), and the generator's own forward passes over the same
number of images (the floor no recipe can go under). It prints both, their ratio, and the guard's
accuracy on fresh G_orig images, clean and under FGSM at the recipe's ε.

The 32×32×3 generator is a StyleGAN2-ADA network built in code (10 classes, ``--channel-max`` channels
per layer; NVIDIA's CIFAR-10 network has 512, which makes the rendering, not the guard, the cost).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from common import machine_lines
from torch import nn

from atgan_plugin.adapters import StyleGAN2ADAGenerator
from atgan_plugin.attack.guards import DistillConfig, cached_distilled_guard
from atgan_plugin.defenses import fgsm
from atgan_plugin.pretrained import load_pretrained_generator
from atgan_plugin.vendored.stylegan2_ada import Generator


def stylegan_32(channel_max: int) -> nn.Module:
    torch.manual_seed(0)
    network = Generator(
        z_dim=128,
        c_dim=10,
        w_dim=128,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 16384, "channel_max": channel_max, "num_fp16_res": 0},
    )
    return StyleGAN2ADAGenerator(network).eval()


@torch.no_grad()
def render_seconds(generator: nn.Module, images: int, batch: int) -> float:
    rng = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(images // batch):
        y = torch.randint(int(generator.num_classes), (batch,), generator=rng)
        generator(generator.sample_z(batch, generator=rng), y)
    return time.perf_counter() - start


def guard_accuracy(generator: nn.Module, guard: nn.Module, epsilon: float, n: int = 1000) -> tuple[float, float]:
    rng = torch.Generator().manual_seed(123)
    y = torch.randint(int(generator.num_classes), (n,), generator=rng)
    with torch.no_grad():
        x = generator(generator.sample_z(n, generator=rng), y)
        clean = (guard(x).argmax(1) == y).float().mean().item()
    attacked = fgsm(guard, x, y, epsilon)
    with torch.no_grad():
        robust = (guard(attacked).argmax(1) == y).float().mean().item()
    return clean, robust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel-max", type=int, default=128)
    parser.add_argument("--steps", type=int, default=DistillConfig.steps)
    args = parser.parse_args()
    print("\n".join(machine_lines(torch.device("cpu"))))
    recipe = DistillConfig(steps=args.steps)
    for name, generator in (
        ("AC-WGAN_GP 1x28x28 (shipped)", load_pretrained_generator()),
        (f"StyleGAN2-ADA 3x32x32 (channel_max {args.channel_max})", stylegan_32(args.channel_max)),
    ):
        generator.default_guards = ()
        floor = render_seconds(generator, recipe.steps * recipe.batch_size, recipe.batch_size)
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            guard = cached_distilled_guard(generator, recipe, cache_dir=cache, progress=False)
            seconds = time.perf_counter() - start
        clean, robust = guard_accuracy(generator, guard, recipe.epsilon_for(int(generator.image_shape[0])))
        print(
            f"{name}: distillation {seconds:.0f} s ({recipe.steps} steps of {recipe.batch_size}); rendering the same "
            f"images alone {floor:.0f} s; RATIO {seconds / floor:.1f}x the rendering floor; guard accuracy on G_orig "
            f"{clean:.3f} clean, {robust:.3f} under FGSM"
        )


if __name__ == "__main__":
    main()
