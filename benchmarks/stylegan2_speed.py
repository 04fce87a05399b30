#!/usr/bin/env python
"""AT-GAN with StyleGAN2-ADA: fit steps/s and images/s, float32 versus mixed precision, side by side.

    python benchmarks/stylegan2_speed.py --device cuda                 # real CIFAR-10 config, WRN-32-10
    OMP_NUM_THREADS=1 python benchmarks/stylegan2_speed.py --tiny      # CPU smoke run (minutes -> seconds)

The generator is randomly initialised at the real CIFAR-10 configuration of NVIDIA's
``cifar10.pkl`` (32×32, 10 classes, z = w = 512, 2 mapping layers, 512 channels, fp16 in the
last 4 resolutions, clamp 256): speed does not depend on the weights. The target is WRN-32-10
(``--target cnn`` for the small CNN). Each precision is measured in the same process, on the
same batch and device: ``fp32`` against the adapter's low-precision blocks (``fp16`` autocast on
CUDA, ``bf16`` on CPU, or ``--mixed``). ``--tiny`` shrinks the networks (64 channels, small CNN)
so that a CPU run takes seconds; its numbers only check that the script works.
The classifier always runs in float32 (the fit does not autocast it).
"""

from __future__ import annotations

import argparse

import torch
from common import best_time, machine_lines

from atgan_plugin.adapters import StyleGAN2ADAGenerator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.paper.cifar import CIFAR10_TRANSFER_DEFAULTS, SmallCifarCNN, WideResNet
from atgan_plugin.vendored.stylegan2_ada import Generator

CIFAR10_CONFIG = dict(
    z_dim=512,
    c_dim=10,
    w_dim=512,
    img_resolution=32,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
)
TINY_CONFIG = dict(
    CIFAR10_CONFIG,
    z_dim=64,
    w_dim=64,
    synthesis_kwargs={"channel_base": 2048, "channel_max": 64, "num_fp16_res": 4, "conv_clamp": 256},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--tiny", action="store_true", help="small networks, for a quick CPU check of the script")
    parser.add_argument(
        "--target", choices=("wrn", "cnn"), default=None, help="target model [default: wrn, cnn with --tiny]"
    )
    parser.add_argument(
        "--mixed", choices=("fp16", "bf16"), default=None, help="low precision [default: fp16 on CUDA, bf16 on CPU]"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="fit and generation batch [default: 64, 8 with --tiny]"
    )
    parser.add_argument(
        "--fit-steps", type=int, default=None, help="timed fit steps per repeat [default: 20, 2 with --tiny]"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats, best kept [default: 3, 1 with --tiny]"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    mixed = args.mixed or ("fp16" if device.type == "cuda" else "bf16")
    batch = args.batch_size or (8 if args.tiny else 64)
    steps = args.fit_steps or (2 if args.tiny else 20)
    repeats = args.repeats or (1 if args.tiny else 3)
    target_name = args.target or ("cnn" if args.tiny else "wrn")
    if device.type == "cuda":  # measure what users get by default; say so
        print(
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
        )
    for line in machine_lines(device):
        print(line)

    torch.manual_seed(0)
    network = Generator(**(TINY_CONFIG if args.tiny else CIFAR10_CONFIG)).eval()
    target = (WideResNet() if target_name == "wrn" else SmallCifarCNN()).to(device).eval()
    print(
        f"generator: {'tiny' if args.tiny else 'CIFAR-10'} config, "
        f"{sum(p.numel() for p in network.parameters()) / 1e6:.1f} M "
        f"parameters; target: {target_name}, {sum(p.numel() for p in target.parameters()) / 1e6:.1f} M; batch {batch}"
    )

    results: dict[str, dict[str, float]] = {}
    for precision in ("fp32", mixed):
        G = StyleGAN2ADAGenerator(network, precision=precision, class_center_samples=16).to(device).eval()
        z = G.sample_z(batch, generator=torch.Generator().manual_seed(1), device=device)
        y = (torch.arange(batch) % G.num_classes).to(device)

        def generate(G: StyleGAN2ADAGenerator = G, z: torch.Tensor = z, y: torch.Tensor = y) -> torch.Tensor:
            with torch.no_grad():
                return G(z, y)

        config = TransferConfig(**CIFAR10_TRANSFER_DEFAULTS, steps=steps, batch_size=batch, lr=1e-4)

        def fit(G: StyleGAN2ADAGenerator = G, config: TransferConfig = config) -> object:
            return fit_attack_generator(G, target, config=config, device=device, progress=False)

        images_per_s = batch / best_time(generate, repeats, device)
        steps_per_s = steps / best_time(fit, repeats, device)
        results[precision] = {"images_per_s": images_per_s, "fit_steps_per_s": steps_per_s}
        print(
            f"{precision:>5}: generation {images_per_s:10.1f} images/s   fit {steps_per_s:8.2f} steps/s "
            f"({steps_per_s * batch:9.1f} images/s through the fit)"
        )

    for key, label in (("images_per_s", "generation images/s"), ("fit_steps_per_s", "fit steps/s")):
        print(f"RATIO {label} {mixed}/fp32 = {results[mixed][key] / results['fp32'][key]:.2f}")


if __name__ == "__main__":
    main()
