"""Training target classifiers and the oracle, normally or adversarially.

Regimes (AT-GAN paper, appendix A.2; the adversarial examples come from :mod:`atgan_plugin.defenses`):
- ``normal``: plain cross-entropy (Tramèr et al.'s "Nor.", Adam, batch 64);
- ``adv``: ½·CE(x) + ½·CE(FGSM(x)) with the current model (Goodfellow et al.; "Adv.");
- ``ens``: the same, with the FGSM examples made per batch by a model drawn uniformly among the
  current one and fixed pre-trained ones (Tramèr et al.'s ensemble adversarial training; "Ens.");
- ``pgd``: CE on PGD examples only (Madry et al.; "Iter."); ε, step and steps from appendix Table 6
  (Fashion-MNIST: 0.1, 0.01, 20), fewer steps allowed for cheaper runs;
- ``fgsm-rs``: CE on FGSM from a random start inside the ε-ball (Wong et al. 2020, "fast
  adversarial training"). Our choice for the realism oracle: about twice the cost of normal
  training, and robust enough that AT-GAN's images do not simply transfer to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.data import TensorDataset
from atgan_plugin.defenses import fgsm, fgsm_random_start, pgd
from atgan_plugin.utils import eval_mode

__all__ = ["REGIMES", "ClassifierTrainingConfig", "accuracy", "train_classifier"]

REGIMES = ("normal", "adv", "ens", "pgd", "fgsm-rs")


@dataclass
class ClassifierTrainingConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    regime: str = "normal"
    epsilon: float = 0.1  # ℓ∞ budget of the adversarial regimes (Fashion-MNIST, appendix Table 6)
    pgd_step_size: float = 0.01  # regime "pgd" (Fashion-MNIST, appendix Table 6)
    pgd_steps: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown training regime {self.regime!r}; known: {REGIMES}")
        if self.epsilon < 0 or self.pgd_step_size <= 0:
            raise ValueError(f"epsilon must be >= 0 and pgd_step_size > 0, got {self.epsilon} and {self.pgd_step_size}")
        if self.pgd_steps < 1:
            raise ValueError(f"pgd_steps must be >= 1, got {self.pgd_steps}")


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset, *, device: torch.device, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (evaluated in eval mode, the caller's mode restored)."""
    correct = 0
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            x = data.images[start : start + batch_size].to(device)
            y = data.labels[start : start + batch_size].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(len(data), 1)


def _loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: ClassifierTrainingConfig,
    static_models: Sequence[nn.Module],
    rng: torch.Generator,
) -> torch.Tensor:
    """The regime's training loss on one batch ``x`` ``(B, C, H, W)``, ``y`` ``(B,)``."""
    if config.regime == "normal":
        return F.cross_entropy(model(x), y)
    if config.regime == "fgsm-rs":
        return F.cross_entropy(model(fgsm_random_start(model, x, y, config.epsilon)), y)
    if config.regime == "pgd":
        x_adv = pgd(
            model, x, y, epsilon=config.epsilon, step_size=config.pgd_step_size, steps=config.pgd_steps, generator=rng
        )
        return F.cross_entropy(model(x_adv), y)
    # "adv" and "ens": half clean, half FGSM; one forward pass over both halves (2B images).
    source = model
    if config.regime == "ens":
        index = int(torch.randint(len(static_models) + 1, (1,), generator=rng))  # 0: the current model
        source = model if index == 0 else static_models[index - 1]
    x_adv = fgsm(source, x, y, config.epsilon)
    return F.cross_entropy(model(torch.cat([x, x_adv])), torch.cat([y, y]))


def train_classifier(
    model: nn.Module,
    train: TensorDataset,
    test: TensorDataset | None,
    config: ClassifierTrainingConfig,
    *,
    device: torch.device,
    progress: bool = True,
    static_models: Sequence[nn.Module] = (),
) -> dict[str, Any]:
    """Trains ``model`` in place; returns ``{"test_accuracy": ..., "history": ..., "config": ...}``.

    ``static_models`` are the fixed pre-trained sources of regime ``ens`` (Tramèr et al. used
    Models A, C and D); they must take the same images, are moved to ``device`` and are only read
    (in eval mode, their flags restored; no gradient).
    """
    if config.regime == "ens" and not static_models:
        raise ValueError("regime 'ens' needs at least one fixed pre-trained model (static_models / --static-model)")
    if config.regime != "ens" and static_models:
        raise ValueError(f"static models are used only by regime 'ens', not {config.regime!r}")
    statics = [m.to(device) for m in static_models]  # only read, in eval mode (defenses.fgsm)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    attack_rng = torch.Generator().manual_seed(config.seed + 1)  # ens draws, PGD starts: apart from the order
    history = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(train), generator=rng)
        batches = range(0, len(train), config.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs} ({config.regime})", disable=not progress)
        for start in bar:
            idx = order[start : start + config.batch_size]
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            loss = _loss(model, x, y, config, statics, attack_rng)
            if not torch.isfinite(loss):
                raise RuntimeError(f"classifier training diverged (loss {loss.item()}) in epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if test is not None:
            acc = accuracy(model, test, device=device)
            history.append(acc)
            tqdm.write(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
    model.eval()
    return {"test_accuracy": history[-1] if history else None, "history": history, "config": asdict(config)}
