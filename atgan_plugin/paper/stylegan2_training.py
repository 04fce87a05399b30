"""Training a class-conditional StyleGAN2-ADA (our clean-room networks) from scratch, on CPU or GPU.

The loop of the training specification (``stylegan2_training_spec.md`` §4) with the losses of
:mod:`atgan_plugin.paper.stylegan2_loss`: per iteration a generator step (Gmain), a discriminator
step (Dmain) and, every ``d_reg_interval`` iterations, an R1 step (Dreg, gain = interval); Adam
(β = 0, 0.99; lr and β scaled by the lazy-regularisation ratio); the EMA generator G_ema; the ADA
heuristic steering a small augmentation pipe (integer translation; x-flip on request). Fakes take the labels
of random training images (the data's label distribution). Images are padded with the background
value 0 to the next power of two (Fashion-MNIST: 28 → 32, 2 pixels a side) and mapped to [-1, 1].

Our choices where the specification leaves room (the numbers behind them: docs/stylegan2_training.md):
a small network for CPU training (``channel_base`` 1024 / ``channel_max`` 128, z = w = 128, two mapping
layers), float32 without clamping, no path-length regularisation or style mixing (the original's
32-pixel 'cifar' preset uses neither), and an R1 γ of 0.01 (the 'cifar' preset's).

The output folder holds what :mod:`atgan_plugin.paper.gan_training` writes for AC-WGAN_GP, with the
same habits (atomic writes, resuming after a kill with the same options, ``complete.json``):
``state.pt`` (resumable), ``generator.safetensors`` (G_ema as our adapter's checkpoint, read by
``load_generator``, with its training record), ``network-snapshot.pkl`` (G, D and G_ema in the layout
of NVIDIA's snapshots, read by our safe reader; written at the end), ``samples/step_*.png`` and
``log.jsonl``. A resume may change the optimiser settings, batch size, R1 γ, EMA, augmentation and
intervals, not the architecture (:data:`FIXED_ON_RESUME`, the data's classes, channels and size) or seed.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm.auto import tqdm

from atgan_plugin import runs
from atgan_plugin.adapters.stylegan2_ada import StyleGAN2ADAGenerator
from atgan_plugin.checkpoints import (
    CheckpointError,
    atomic_write,
    load_training_state,
    read_header,
    remove_stale_temporaries,
    save_training_state,
)
from atgan_plugin.data import TensorDataset
from atgan_plugin.paper import stylegan2_loss as losses
from atgan_plugin.paper.gan_training import TrainingDivergedError, trim_log
from atgan_plugin.paper.stylegan2_config import (
    ARCH,
    FIXED_ON_RESUME,
    StyleGAN2TrainingConfig,
    check_resume,
    network_args,
    pad_images,
)
from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.augment import AdaptiveAugment, AugmentPipe
from atgan_plugin.vendored.stylegan2_ada.discriminator import Discriminator
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import write_snapshot

__all__ = [
    "ARCH",
    "FIXED_ON_RESUME",
    "StyleGAN2TrainingConfig",
    "check_resume",
    "is_finished",
    "network_args",
    "pad_images",
    "train_stylegan2_ada",
]

SNAPSHOT = "network-snapshot.pkl"
NETWORKS = ("generator.safetensors", SNAPSHOT)


def is_finished(out_dir: str | Path, steps: int | None = None) -> bool:
    """Whether ``out_dir`` holds a finished run: its networks and ``complete.json`` (for ``steps``, if given)."""
    out = Path(out_dir)
    if not (runs.is_complete(out) and all((out / name).is_file() for name in NETWORKS)):
        return False
    return steps is None or json.loads((out / runs.COMPLETE_MARKER).read_text()).get("step") == steps


class _Run:
    """The networks, optimisers and random streams of one training run, and what it writes."""

    def __init__(self, dataset: TensorDataset, out: Path, config: StyleGAN2TrainingConfig, device: torch.device):
        self.out, self.config, self.device = out, config, device
        self.net_args = network_args(dataset, config)
        self.images, self.labels = dataset.images, dataset.labels
        self.resolution = self.net_args["G"]["img_resolution"]
        self.c_dim = self.net_args["G"]["c_dim"]
        torch.manual_seed(config.seed)  # initial weights; later, G's noise inputs
        self.G = Generator(**self.net_args["G"]).to(device)
        self.D = Discriminator(**self.net_args["D"]).to(device)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), eps=1e-8)
        self.apply_optimiser_settings()
        self.pipe = AugmentPipe(xflip=config.augment_xflip).to(device)
        self.ada = AdaptiveAugment(target=config.ada_target, interval=config.ada_interval, speed_kimg=config.ada_kimg)
        self.rng = torch.Generator().manual_seed(config.seed)  # data, latents, labels, augmentation
        self.step, self.cur_nimg = 0, 0
        self.window: dict[str, list[float]] = {}  # each metric since the last log line (saved: a resume logs alike)
        self.fixed_z = torch.randn(self.c_dim * 8, config.z_dim, generator=torch.Generator().manual_seed(1234))
        self.fixed_c = F.one_hot(torch.arange(self.c_dim).repeat_interleave(8), self.c_dim).float()

    def apply_optimiser_settings(self) -> None:
        """This run's lr with each network's lazy-regularisation ratio (also over a resumed state's)."""
        for optimiser, interval in ((self.opt_G, self.config.g_reg_interval), (self.opt_D, self.config.d_reg_interval)):
            lr, betas = losses.lazy_regularisation(self.config.lr, (0.0, 0.99), interval)
            for group in optimiser.param_groups:
                group["lr"], group["betas"] = lr, betas

    # ---------------------------------------------------------------------------------------------
    # One iteration.

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Reals ``(N, C, R, R)`` in [-1, 1] with one-hot labels, and two fresh (z, c) for Gmain and Dmain."""
        n = self.config.batch_size
        idx = torch.randint(len(self.images), (n,), generator=self.rng)
        real = pad_images(self.images[idx], self.resolution).to(self.device)
        c_real = F.one_hot(self.labels[idx], self.c_dim).float().to(self.device)
        latents = []
        for _ in range(2):
            z = torch.randn(n, self.config.z_dim, generator=self.rng)
            c = self.labels[torch.randint(len(self.labels), (n,), generator=self.rng)]  # the data's label distribution
            latents.append((z.to(self.device), F.one_hot(c, self.c_dim).float().to(self.device)))
        return real, c_real, latents

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        augmented: torch.Tensor = self.pipe(images, generator=self.rng)
        return augmented

    def train_step(self) -> dict[str, float]:
        config, G, D = self.config, self.G, self.D
        real, c_real, ((z_g, c_g), (z_d, c_d)) = self.batch()
        self.pipe.p.fill_(self.ada.p if config.augment else 0.0)

        # Gmain: the generator against the current discriminator.
        G.requires_grad_(True), D.requires_grad_(False)
        loss_G = losses.generator_loss(D, losses.generate(G, z_g, c_g), c_g, self.augment)
        self._descend(self.opt_G, G, loss_G, "loss_G")

        # Dmain: fakes (no gradient into G) against reals.
        G.requires_grad_(False), D.requires_grad_(True)
        with torch.no_grad():
            fake = losses.generate(G, z_d, c_d)
        loss_D, logits_fake, logits_real = losses.discriminator_loss(D, fake, c_d, real, c_real, self.augment)
        self.ada.observe(logits_real)
        self._descend(self.opt_D, D, loss_D, "loss_D")

        # Dreg: lazy R1 on the reals, its gain the interval.
        metrics: dict[str, float] = {}
        if config.r1_gamma > 0 and self.step % config.d_reg_interval == 0:
            loss_r1, norms, logits = losses.r1_penalty(D, real, c_real, self.augment, config.r1_gamma)
            self.ada.observe(logits)
            self._descend(self.opt_D, D, loss_r1 * config.d_reg_interval, "loss_r1")
            metrics["r1"] = float(norms.mean())

        # G_ema, counters, ADA.
        beta = losses.ema_beta(config.batch_size, self.cur_nimg, config.ema_kimg, config.ema_rampup)
        losses.update_ema(self.G_ema, G, beta)
        self.cur_nimg += config.batch_size
        self.step += 1
        if config.augment:
            self.ada.step(config.batch_size)
        accuracy = ((logits_real > 0).float().mean() + (logits_fake < 0).float().mean()) / 2
        return {
            "loss_G": float(loss_G.detach()),
            "loss_D": float(loss_D.detach()),
            "logits_real": float(logits_real.mean()),
            "logits_fake": float(logits_fake.mean()),
            "d_accuracy": float(accuracy),
            **metrics,
        }

    def _descend(
        self, optimiser: torch.optim.Optimizer, network: torch.nn.Module, loss: torch.Tensor, name: str
    ) -> None:
        """One optimiser step on ``loss``; a non-finite loss stops training (the last good state stays on disk)."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"training diverged at step {self.step + 1}: {name} is {value}; the last good state is in "
                f"{self.out / 'state.pt'} (resume to retry, or lower --lr or raise --r1-gamma)"
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        for p in network.parameters():  # as the original: NaN -> 0, ±inf -> ±1e5 before the step
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
        optimiser.step()

    # ---------------------------------------------------------------------------------------------
    # State and files.

    def state(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "arch": ARCH,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ada": asdict(self.ada),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "cur_nimg": self.cur_nimg,
            "window": self.window,
            "config": asdict(self.config),
            "net_args": self.net_args,
            "metrics": metrics,
            **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
        }

    def load(self, state: dict[str, Any]) -> None:
        for module, key in (
            (self.G, "G"),
            (self.D, "D"),
            (self.G_ema, "G_ema"),
            (self.opt_G, "opt_G"),
            (self.opt_D, "opt_D"),
        ):
            module.load_state_dict(state[key])
        self.apply_optimiser_settings()  # the saved groups hold the old settings
        known = {f.name for f in fields(AdaptiveAugment)}
        self.ada = AdaptiveAugment(**{k: v for k, v in state["ada"].items() if k in known})
        self.ada.target, self.ada.interval = self.config.ada_target, self.config.ada_interval  # this run's settings
        self.ada.speed_kimg = self.config.ada_kimg
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.cur_nimg = int(state["step"]), int(state["cur_nimg"])
        self.window = {name: [float(v) for v in values] for name, values in state.get("window", {}).items()}

    def training_record(self, metrics: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "arch": ARCH,
            "config": asdict(self.config),
            "step": self.step,
            "kimg": self.cur_nimg / 1000,
            "metrics": metrics,
            "augment_p": self.ada.p if self.config.augment else 0.0,
            "preprocessing": f"padded with 0 to {self.resolution}x{self.resolution}, scaled to [-1, 1]",
            **extra,
        }

    def save_samples(self) -> None:
        """G_ema's images of the fixed latents, 8 per class, one row per class."""
        with torch.no_grad(), atomic_write(self.out / "samples" / f"step_{self.step:06d}.png") as tmp:
            images = self.G_ema(self.fixed_z.to(self.device), self.fixed_c.to(self.device), precision="fp32")
            save_image(((images + 1) / 2).clamp(0, 1), tmp, nrow=8, format="png")

    def save_generator(self, record: dict[str, Any]) -> None:
        """G_ema as our adapter's safetensors checkpoint, with its training record."""
        network = copy.deepcopy(self.G_ema).cpu().requires_grad_(False).eval()
        StyleGAN2ADAGenerator(network).save(self.out / "generator.safetensors", training=record)

    def save_snapshot(self, dataset_name: str) -> None:
        """G, D and G_ema in the layout of NVIDIA's snapshots (spec §6; our reader reads it back)."""
        kwargs = dict(class_name="atgan_plugin.data.load_dataset", path=dataset_name, use_labels=True,
                      max_size=len(self.labels), xflip=False, resolution=self.resolution)  # fmt: skip
        write_snapshot(self.out / SNAPSHOT, self.G_ema, G=self.G, D=self.D, training_set_kwargs=kwargs)


def _generator_at(out: Path, step: int) -> bool:
    try:
        return read_header(out / "generator.safetensors").training.get("step") == step
    except CheckpointError:
        return False


def train_stylegan2_ada(
    dataset: TensorDataset,
    out_dir: str | Path,
    config: StyleGAN2TrainingConfig,
    *,
    device: torch.device,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Trains (or resumes, or completes) a conditional StyleGAN2-ADA on ``dataset`` (images in [0, 1]);
    returns the last logged metrics (empty when the folder was already trained to ``config.steps``)."""
    out = Path(out_dir)
    run = _Run(dataset, out, config, device)
    resumed = check_resume(out, config, run.net_args)  # before anything is written
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "samples"):  # what a kill left behind
        remove_stale_temporaries(folder)
    (out / runs.COMPLETE_MARKER).unlink(missing_ok=True)  # written again once everything is
    state_path = out / "state.pt"
    if resumed is not None:
        run.load(load_training_state(state_path))
    trim_log(out / "log.jsonl", run.step)
    extra = dict(extra_metadata or {})

    metrics: dict[str, float] = {}
    bar = tqdm(total=config.steps, initial=run.step, desc="StyleGAN2-ADA", disable=not progress)
    with open(out / "log.jsonl", "a") as log:
        while run.step < config.steps:
            for name, value in run.train_step().items():
                run.window.setdefault(name, []).append(value)
            bar.update(1)
            step = run.step
            if step % config.log_every == 0 or step == config.steps:
                metrics = {name: sum(values) / len(values) for name, values in run.window.items()}
                metrics["augment_p"] = run.ada.p if config.augment else 0.0
                rt = run.ada.last_rt
                line = {
                    "step": step,
                    "kimg": run.cur_nimg / 1000,
                    **metrics,
                    "augment_rt": None if math.isnan(rt) else rt,
                }
                log.write(json.dumps(line) + "\n")
                log.flush()
                bar.set_postfix(
                    D=f"{metrics['loss_D']:.3f}", G=f"{metrics['loss_G']:.3f}", p=f"{metrics['augment_p']:.3f}"
                )
                run.window = {}
            if step % config.sample_every == 0 or step == config.steps:
                run.save_samples()
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_training_state(state_path, run.state(metrics))
                run.save_generator(run.training_record(metrics, extra))
    bar.close()

    # Complete what a kill after the last state.pt left out (the state holds the final networks).
    if not _generator_at(out, config.steps):
        final = metrics or dict(load_training_state(state_path).get("metrics", {}))
        run.save_generator(run.training_record(final, extra))
    if not (out / "samples" / f"step_{config.steps:06d}.png").exists():
        run.save_samples()
    if resumed != config.steps or not (out / SNAPSHOT).exists():  # a finished folder keeps its snapshot
        run.save_snapshot(str(extra.get("dataset", "")))
    runs.mark_complete(out, step=config.steps, networks=list(NETWORKS))
    return metrics
