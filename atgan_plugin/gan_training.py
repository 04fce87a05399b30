"""Training AC-WGAN_GP, the original generator G_orig (stage 1 of AT-GAN).

Losses (appendix B, ``method.md`` §1), with x real, y its label, y_s a random source class:
    L_D = -E[D(x)] + E[D(G(z, y_s))] + λ·E[(‖∇D(x̂)‖₂ - 1)²],  x̂ on segments real–fake
    L_f =  CE(f(x), y) + CE(f(G(z, y_s)), y_s)
    L_G =  CE(f(G(z, y_s)), y_s) - E[D(G(z, y_s))]
Optimiser settings follow Song et al.'s reference (Adam β=(0, 0.9), lr 2e-4, 5 critic steps per
generator step, batch 64, λ=10, real images dequantised with U(0, 1/255) noise).

The output folder holds ``state.pt`` (resumable, written atomically), ``generator.safetensors``
and ``aux_classifier.safetensors`` (the shippable networks), ``samples/step_*.png`` and
``log.jsonl``. Training resumes from ``state.pt`` when it exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm.auto import tqdm

from atgan_plugin.acwgan_gp import AuxiliaryClassifier, Critic, Generator
from atgan_plugin.checkpoints import Checkpoint, load_training_state, save_checkpoint, save_training_state
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import AUX_CLASSIFIER_KIND

__all__ = ["GANTrainingConfig", "TrainingDivergedError", "gradient_penalty", "train_acwgan_gp"]


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good state is kept on disk."""


@dataclass
class GANTrainingConfig:
    steps: int = 6000  # generator updates
    batch_size: int = 64
    critic_steps: int = 5  # critic updates per generator update
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    gp_lambda: float = 10.0
    z_dim: int = 100
    seed: int = 0
    sample_every: int = 500
    checkpoint_every: int = 250


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """E[(‖∇_x̂ D(x̂)‖₂ − 1)²] with x̂ uniformly on segments between real and fake samples."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _check_finite(step: int, **losses: float) -> None:
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise TrainingDivergedError(
            f"training diverged at generator step {step}: {bad}; the last good state is in state.pt "
            "(resume to retry, or lower --lr)"
        )


def train_acwgan_gp(
    dataset: TensorDataset,
    out_dir: str | Path,
    config: GANTrainingConfig,
    *,
    device: torch.device,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains (or resumes) AC-WGAN_GP on ``dataset``; returns final metrics."""
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    num_classes = int(dataset.labels.max()) + 1
    net_args = dict(z_dim=config.z_dim, num_classes=num_classes, img_channels=dataset.images.shape[1])
    torch.manual_seed(config.seed)
    G, D, f = Generator(**net_args).to(device), Critic(**net_args).to(device), AuxiliaryClassifier(**net_args).to(device)
    betas = (config.beta1, config.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr, betas=betas)
    opt_f = torch.optim.Adam(f.parameters(), lr=config.lr, betas=betas)
    rng = torch.Generator().manual_seed(config.seed)
    start = 0

    state_path = out / "state.pt"
    if state_path.exists():
        state = load_training_state(state_path)
        for module, key in ((G, "G"), (D, "D"), (f, "f"), (opt_G, "opt_G"), (opt_D, "opt_D"), (opt_f, "opt_f")):
            module.load_state_dict(state[key])
        rng.set_state(state["rng"])
        if "torch_rng" in state:  # dropout in f draws from the global generator
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = int(state["step"])

    images, labels = dataset.images, dataset.labels
    fixed_z = torch.randn(num_classes * 8, config.z_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    fixed_y = torch.arange(num_classes).repeat_interleave(8).to(device)

    def real_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(images), (config.batch_size,), generator=rng)
        x = images[idx] + torch.rand(images[idx].shape, generator=rng) / 255.0  # dequantise
        return x.clamp_(0, 1).to(device), labels[idx].to(device)

    def fake_inputs() -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(config.batch_size, config.z_dim, generator=rng).to(device)
        return z, torch.randint(num_classes, (config.batch_size,), generator=rng).to(device)

    def save_all(step: int, metrics: dict[str, float]) -> None:
        save_training_state(state_path, {
            "G": G.state_dict(), "D": D.state_dict(), "f": f.state_dict(), "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(), "opt_f": opt_f.state_dict(), "rng": rng.get_state(), "step": step,
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
        })  # fmt: skip
        training = {"config": asdict(config), "step": step, "metrics": metrics, **(extra_metadata or {})}
        save_checkpoint(out / "generator.safetensors", Checkpoint("acwgan_gp.generator", G.state_dict(), net_args, training))
        save_checkpoint(out / "aux_classifier.safetensors", Checkpoint(AUX_CLASSIFIER_KIND, f.state_dict(), net_args, training))

    metrics: dict[str, float] = {}
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="AC-WGAN_GP", disable=not progress)
    G.train(), D.train(), f.train()
    with open(out / "log.jsonl", "a") as log:
        for step in bar:
            # Critic updates.
            for _ in range(config.critic_steps):
                x, y = real_batch()
                z, y_s = fake_inputs()
                with torch.no_grad():
                    fake = G(z, y_s)
                gp = gradient_penalty(D, x, fake, rng)
                wasserstein = D(x).mean() - D(fake).mean()
                loss_D = -wasserstein + config.gp_lambda * gp
                opt_D.zero_grad(set_to_none=True)
                loss_D.backward()
                opt_D.step()
            # Auxiliary classifier update, on the last critic batch.
            loss_f = F.cross_entropy(f(x), y) + F.cross_entropy(f(fake), y_s)
            opt_f.zero_grad(set_to_none=True)
            loss_f.backward()
            opt_f.step()
            # Generator update.
            z, y_s = fake_inputs()
            fake = G(z, y_s)
            loss_G = F.cross_entropy(f(fake), y_s) - D(fake).mean()
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()

            metrics = {"loss_D": loss_D.item(), "loss_G": loss_G.item(), "loss_f": loss_f.item(),
                       "wasserstein": wasserstein.item(), "gp": gp.item()}  # fmt: skip
            _check_finite(step + 1, **metrics)
            if (step + 1) % 50 == 0:
                log.write(json.dumps({"step": step + 1, **metrics}) + "\n")
                log.flush()
                bar.set_postfix(W=f"{metrics['wasserstein']:.3f}", f=f"{metrics['loss_f']:.3f}")
            if (step + 1) % config.sample_every == 0 or step + 1 == config.steps:
                G.eval()
                with torch.no_grad():
                    save_image(G(fixed_z, fixed_y), out / "samples" / f"step_{step + 1:06d}.png", nrow=8)
                G.train()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save_all(step + 1, metrics)
    return metrics
