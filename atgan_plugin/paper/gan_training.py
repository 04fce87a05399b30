"""Training AC-WGAN_GP, the original generator G_orig (stage 1 of AT-GAN).

Losses (AT-GAN paper, appendix B), with x real, y its label, y_s a random source class:
    L_D = -E[D(x)] + E[D(G(z, y_s))] + λ·E[(‖∇D(x̂)‖₂ - 1)²],  x̂ on segments real–fake
    L_f =  CE(f(x), y) + CE(f(G(z, y_s)), y_s)
    L_G =  CE(f(G(z, y_s)), y_s) - E[D(G(z, y_s))]
Optimiser settings follow Song et al.'s reference (Adam β=(0, 0.9), lr 2e-4, 5 critic steps per
generator step, batch 64, λ=10, real images dequantised with U(0, 1/255) noise).

The output folder holds ``state.pt`` (resumable, written atomically every ``checkpoint_every``
steps), ``generator.safetensors`` and ``aux_classifier.safetensors`` (the shippable networks),
``samples/step_*.png``, ``log.jsonl`` and, once all of them are written, ``complete.json``: a
folder is finished when that marker and both networks exist.

A run killed at any moment and started again with the same options resumes from ``state.pt``
(losing at most ``checkpoint_every`` steps), removes the temporary files the kill left, and
completes what is missing (a final ``state.pt`` without its networks gets them written).
Resuming checks :func:`check_resume` first, before anything is written: the architecture
(``z_dim``, the data's classes and channels) and ``seed`` cannot change; the optimiser settings
(``lr``, betas), ``batch_size``, ``critic_steps``, ``gp_lambda`` and the intervals can, and are
applied from the resumed step on.
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

from atgan_plugin import runs
from atgan_plugin.adapters.acwgan_gp import AuxiliaryClassifier, Critic, Generator
from atgan_plugin.checkpoints import (
    Checkpoint,
    CheckpointError,
    atomic_write,
    load_training_state,
    read_header,
    remove_stale_temporaries,
    save_checkpoint,
    save_training_state,
)
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import AUX_CLASSIFIER_KIND

__all__ = [
    "FIXED_ON_RESUME",
    "GANTrainingConfig",
    "ResumeMismatchError",
    "TrainingDivergedError",
    "check_resume",
    "gradient_penalty",
    "is_finished",
    "network_args",
    "train_acwgan_gp",
    "trim_log",
]

NETWORKS = ("generator.safetensors", "aux_classifier.safetensors")
# Settings a resumed run cannot change: the architecture and the seed that drew the initial
# weights and the data stream (the state restores the stream, so a new seed would be ignored).
FIXED_ON_RESUME = ("z_dim", "seed")


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good state is kept on disk."""


class ResumeMismatchError(ValueError):
    """The output folder holds a run that these settings cannot resume (nothing was written)."""


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
    # Steps between writes of state.pt (and the networks): at most this many are lost to a kill.
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "critic_steps", "z_dim", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not (math.isfinite(self.gp_lambda) and self.gp_lambda >= 0):
            raise ValueError(f"gp_lambda must be a finite number >= 0, got {self.gp_lambda}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """E[(‖∇_x̂ D(x̂)‖₂ − 1)²] with x̂ uniformly on segments between real and fake samples."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    norms: torch.Tensor = grad.flatten(1).norm(dim=1)  # (N,)
    return ((norms - 1) ** 2).mean()


def _check_finite(step: int, **losses: float) -> None:
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise TrainingDivergedError(
            f"training diverged at generator step {step}: {bad}; the last good state is in state.pt "
            "(resume to retry, or lower --lr)"
        )


def network_args(dataset: TensorDataset, z_dim: int) -> dict[str, int]:
    """The networks' constructor arguments: ``z_dim`` and what the data says (classes, channels)."""
    return dict(z_dim=z_dim, num_classes=int(dataset.labels.max()) + 1, img_channels=int(dataset.images.shape[1]))


def check_resume(out_dir: str | Path, config: GANTrainingConfig, net_args: dict[str, int]) -> int | None:
    """The step ``out_dir``'s ``state.pt`` resumes from (None: no state, a fresh start); reads only.

    Raises:
        ResumeMismatchError: the state was trained with another architecture (``z_dim``, or data
            with other classes or channels) or seed, or already holds more than ``config.steps`` steps.
        CheckpointError: ``state.pt`` is unreadable.
    """
    state_path = Path(out_dir) / "state.pt"
    if not state_path.exists():
        return None
    state = load_training_state(state_path)
    where = f"{out_dir} holds a run"
    if state.get("arch", "acwgan-gp") != "acwgan-gp":  # written by another trainer (stylegan2_training)
        raise ResumeMismatchError(
            f"{where} of {state['arch']!r}, not 'acwgan-gp'; use the same --arch, or another output folder"
        )
    recorded_config = state.get("config")
    recorded: dict[str, Any] = recorded_config if isinstance(recorded_config, dict) else {}
    changed = {
        name: (recorded[name], getattr(config, name))
        for name in FIXED_ON_RESUME
        if name in recorded and recorded[name] != getattr(config, name)
    }
    if isinstance(state.get("net_args"), dict):
        changed.update(
            {
                name: (value, net_args.get(name))
                for name, value in state["net_args"].items()
                if net_args.get(name) != value
            }
        )
    if changed:
        listed = ", ".join(f"{name} {old} (now {new})" for name, (old, new) in changed.items())
        raise ResumeMismatchError(
            f"{where} trained with {listed}; it cannot be resumed with other values: "
            f"use the same ones, or another output folder"
        )
    with torch.device("meta"):  # states written before the config was recorded: compare shapes
        expected = {k: tuple(v.shape) for k, v in Generator(**net_args).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.get("G", {}).items()} if isinstance(state.get("G"), dict) else {}
    if found != expected:
        raise ResumeMismatchError(
            f"{where} whose generator has another architecture (z_dim, or the data's classes or "
            f"channels, differ); use the same settings, or another output folder"
        )
    step = int(state.get("step", 0))
    if step > config.steps:
        raise ResumeMismatchError(
            f"{where} already trained for {step} steps, more than the {config.steps} asked for; "
            f"pass --steps {step} or more"
        )
    return step


def is_finished(out_dir: str | Path, steps: int | None = None) -> bool:
    """Whether ``out_dir`` holds a finished run: both networks and ``complete.json`` (for ``steps``, if given)."""
    out = Path(out_dir)
    if not (runs.is_complete(out) and all((out / name).is_file() for name in NETWORKS)):
        return False
    return steps is None or json.loads((out / runs.COMPLETE_MARKER).read_text()).get("step") == steps


def _networks_at(out: Path, step: int) -> bool:
    """Whether both network files exist and were written at ``step`` (headers only)."""
    try:
        return all(read_header(out / name).training.get("step") == step for name in NETWORKS)
    except CheckpointError:
        return False


def trim_log(path: Path, step: int) -> None:
    """Keeps the log lines up to ``step``: a resumed run logs the later steps again (a kill may also
    have cut the last line)."""
    if not path.exists():
        return
    text = path.read_text()
    lines = text.splitlines()
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    if kept == lines and text.endswith("\n") or not text:  # nothing to drop
        return
    with atomic_write(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def train_acwgan_gp(
    dataset: TensorDataset,
    out_dir: str | Path,
    config: GANTrainingConfig,
    *,
    device: torch.device,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains (or resumes, or completes) AC-WGAN_GP on ``dataset``; returns the final metrics
    (empty when the folder was already trained to ``config.steps``)."""
    out = Path(out_dir)
    net_args = network_args(dataset, config.z_dim)
    num_classes = net_args["num_classes"]
    resumed = check_resume(out, config, net_args)  # before anything is written
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "samples"):  # what a kill left behind
        remove_stale_temporaries(folder)
    (out / runs.COMPLETE_MARKER).unlink(missing_ok=True)  # written again once everything is

    torch.manual_seed(config.seed)
    G, D, f = (
        Generator(**net_args).to(device),
        Critic(**net_args).to(device),
        AuxiliaryClassifier(**net_args).to(device),
    )
    betas = (config.beta1, config.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr, betas=betas)
    opt_f = torch.optim.Adam(f.parameters(), lr=config.lr, betas=betas)
    rng = torch.Generator().manual_seed(config.seed)
    start = 0

    state_path = out / "state.pt"
    if resumed is not None:
        state = load_training_state(state_path)
        for module, key in ((G, "G"), (D, "D"), (f, "f"), (opt_G, "opt_G"), (opt_D, "opt_D"), (opt_f, "opt_f")):
            module.load_state_dict(state[key])
        for optimiser in (opt_G, opt_D, opt_f):  # the saved groups hold the old settings: apply this run's
            for group in optimiser.param_groups:
                group["lr"], group["betas"] = config.lr, betas
        rng.set_state(state["rng"])
        if "torch_rng" in state:  # dropout in f draws from the global generator
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = resumed
    trim_log(out / "log.jsonl", start)

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

    def save_samples(step: int) -> None:
        G.eval()
        with torch.no_grad(), atomic_write(out / "samples" / f"step_{step:06d}.png") as tmp:
            save_image(G(fixed_z, fixed_y), tmp, nrow=8, format="png")
        G.train()

    def save_networks(step: int, metrics: dict[str, float]) -> None:
        training = {"config": asdict(config), "step": step, "metrics": metrics, **(extra_metadata or {})}
        aux = Checkpoint(AUX_CLASSIFIER_KIND, f.state_dict(), net_args, training)
        # The generator carries its auxiliary classifier: ATGANAttack(guard="auto") guards with it.
        save_checkpoint(
            out / "generator.safetensors",
            Checkpoint("acwgan_gp.generator", G.state_dict(), net_args, training, parts={"guard0": aux}),
        )
        save_checkpoint(out / "aux_classifier.safetensors", aux)

    def save_all(step: int, metrics: dict[str, float]) -> None:
        save_training_state(
            state_path,
            {
                "G": G.state_dict(),
                "D": D.state_dict(),
                "f": f.state_dict(),
                "opt_G": opt_G.state_dict(),
                "opt_D": opt_D.state_dict(),
                "opt_f": opt_f.state_dict(),
                "rng": rng.get_state(),
                "step": step,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(config),
                "net_args": net_args,
                "metrics": metrics,
                **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
            },
        )
        save_networks(step, metrics)

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
            loss_f.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt_f.step()
            # Generator update.
            z, y_s = fake_inputs()
            fake = G(z, y_s)
            loss_G = F.cross_entropy(f(fake), y_s) - D(fake).mean()
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()

            metrics = {
                "loss_D": loss_D.item(),
                "loss_G": loss_G.item(),
                "loss_f": loss_f.item(),
                "wasserstein": wasserstein.item(),
                "gp": gp.item(),
            }
            _check_finite(step + 1, **metrics)
            if (step + 1) % 50 == 0:
                log.write(json.dumps({"step": step + 1, **metrics}) + "\n")
                log.flush()
                bar.set_postfix(W=f"{metrics['wasserstein']:.3f}", f=f"{metrics['loss_f']:.3f}")
            if (step + 1) % config.sample_every == 0 or step + 1 == config.steps:
                save_samples(step + 1)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save_all(step + 1, metrics)

    # Complete what a kill after the last state.pt left out (G and f hold that state), then mark
    # the folder finished.
    if not _networks_at(out, config.steps):
        save_networks(config.steps, metrics or dict(load_training_state(state_path).get("metrics", {})))
    if not (out / "samples" / f"step_{config.steps:06d}.png").exists():
        save_samples(config.steps)
    runs.mark_complete(out, step=config.steps, networks=list(NETWORKS))
    return metrics
