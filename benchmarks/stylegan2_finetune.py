#!/usr/bin/env python
"""What the AT-GAN fit should update in StyleGAN2-ADA: synthesis only (our default) versus everything.

    OMP_NUM_THREADS=1 python benchmarks/stylegan2_finetune.py                 # tiny, CPU, ~1 minute
    python benchmarks/stylegan2_finetune.py --steps 200 --device cuda

Without NVIDIA's weights, both settings are compared on a tiny conditional StyleGAN2-ADA (16×16,
4 classes, random init) and a small CNN trained for a few seconds to recognise its classes, so the
attack starts from a low success rate. Each setting is fitted from the same G_orig with the same
seed, α = 3, β = 2, and evaluated on the same fresh latents: success against the target, mean ℓ2
distance to G_orig, trainable parameters and fit time. The closing ``RATIO`` lines compare
``all`` with ``synthesis``. With a real ``cifar10.pkl`` and CIFAR-10 model, pass ``--pickle`` and
``--model`` (a ``cifar.classifier`` checkpoint) instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine_lines
from torch import nn

from atgan_plugin.adapters import StyleGAN2ADAGenerator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.paper.cifar import CIFAR10_TRANSFER_DEFAULTS, SmallCifarCNN, load_cifar_classifier
from atgan_plugin.vendored.stylegan2_ada import Generator


def tiny_generator(num_classes: int) -> StyleGAN2ADAGenerator:
    network = Generator(
        z_dim=32,
        c_dim=num_classes,
        w_dim=32,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 512, "channel_max": 32, "num_fp16_res": 2, "conv_clamp": 256},
    )
    with torch.no_grad():
        for block in network.synthesis.blocks():
            block.torgb.weight.mul_(0.2)  # random-init images inside [-1, 1]
    return StyleGAN2ADAGenerator(network).eval()


def train_target(G: StyleGAN2ADAGenerator, steps: int, device: torch.device) -> nn.Module:
    """A small CNN that recognises G's classes (trained on G's own images)."""
    model = SmallCifarCNN(num_classes=G.num_classes, width=16, image_size=G.image_shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = torch.Generator().manual_seed(1)
    for _ in range(steps):
        z = G.sample_z(64, generator=rng, device=device)
        y = torch.randint(G.num_classes, (64,), generator=rng).to(device)
        with torch.no_grad():
            x = G(z, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--pickle", type=Path, default=None, help="NVIDIA StyleGAN2-ADA pickle [default: tiny random generator]"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="target (cifar.classifier checkpoint) [default: trained tiny CNN]"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60, help="fit steps")
    parser.add_argument("--lr", type=float, default=3e-3, help="fit learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=1000, help="fresh latents for the evaluation")
    args = parser.parse_args()
    device = torch.device(args.device)
    for line in machine_lines(device):
        print(line)

    torch.manual_seed(0)
    G = (StyleGAN2ADAGenerator.from_pickle(args.pickle) if args.pickle else tiny_generator(4)).to(device)
    target = load_cifar_classifier(args.model, device) if args.model else train_target(G, 150, device)
    z = G.sample_z(args.n, generator=torch.Generator().manual_seed(123), device=device)
    y = (torch.arange(args.n) % G.num_classes).to(device)
    with torch.no_grad():
        reference = G(z, y)
        baseline = (target(reference).argmax(1) != y).float().mean().item()
    print(f"G_orig: success {baseline:.3f} (the target's error on G_orig's images)")

    # Warm-up (allocator, kernels), so that neither timed fit pays for it.
    fit_attack_generator(
        G, target, config=TransferConfig(steps=2, batch_size=args.batch_size), device=device, progress=False
    )
    rows: dict[str, dict[str, float]] = {}
    print("| fine_tune | trainable params | success | mean l2 to G_orig | fit s |")
    print("|---|---|---|---|---|")
    for mode in ("synthesis", "all"):
        G.fine_tune = mode
        config = TransferConfig(**CIFAR10_TRANSFER_DEFAULTS, steps=args.steps, lr=args.lr, batch_size=args.batch_size)
        start = time.perf_counter()
        fit = fit_attack_generator(G, target, config=config, device=device, progress=False)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            adversarial = fit.generator(z, y)
            success = (target(adversarial).argmax(1) != y).float().mean().item()
        l2 = (adversarial - reference).flatten(1).norm(dim=1).mean().item()
        params = sum(p.numel() for p in G.attack_parameters())
        rows[mode] = {"success": success, "l2": l2, "seconds": seconds}
        print(f"| {mode} | {params:,} | {success:.3f} | {l2:.3f} | {seconds:.1f} |")
    for key in ("success", "l2", "seconds"):
        print(f"RATIO {key} all/synthesis = {rows['all'][key] / max(rows['synthesis'][key], 1e-12):.3f}")


if __name__ == "__main__":
    main()
