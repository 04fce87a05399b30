"""Training target classifiers and the oracle.

Two regimes:
- ``normal``: plain cross-entropy (Tramèr et al.'s "Nor.", Adam, batch 64);
- ``fgsm-rs``: adversarial training on FGSM from a random start inside the ε-ball (Wong et al.
  2020, "fast adversarial training"). Our choice for the realism oracle: about twice the cost of
  normal training, and robust enough that AT-GAN's images do not simply transfer to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.data import TensorDataset

__all__ = ["ClassifierTrainingConfig", "accuracy", "train_classifier"]

REGIMES = ("normal", "fgsm-rs")


@dataclass
class ClassifierTrainingConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    regime: str = "normal"
    epsilon: float = 0.1  # ℓ∞ budget of the adversarial regimes (Fashion-MNIST, appendix Table 6)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown training regime {self.regime!r}; known: {REGIMES}")


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset, *, device: torch.device, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (evaluated in eval mode, the caller's mode restored)."""
    from atgan_plugin.utils import eval_mode

    correct = 0
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            x = data.images[start : start + batch_size].to(device)
            y = data.labels[start : start + batch_size].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(len(data), 1)


def _fgsm_random_start(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    # Step 1.25·ε from a uniform start, projected back to the ε-ball and the image box.
    delta = (torch.rand_like(x) * 2 - 1) * epsilon
    delta.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
    delta = (delta + 1.25 * epsilon * grad.sign()).clamp(-epsilon, epsilon)
    return (x + delta).clamp(0, 1).detach()


def train_classifier(
    model: nn.Module,
    train: TensorDataset,
    test: TensorDataset | None,
    config: ClassifierTrainingConfig,
    *,
    device: torch.device,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``model`` in place; returns ``{"test_accuracy": ..., "config": ...}``."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(train), generator=rng)
        batches = range(0, len(train), config.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for start in bar:
            idx = order[start : start + config.batch_size]
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            if config.regime == "fgsm-rs":
                x = _fgsm_random_start(model, x, y, config.epsilon)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise RuntimeError(f"classifier training diverged (loss {loss.item()}) in epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if test is not None:
            acc = accuracy(model, test, device=device)
            history.append(acc)
            tqdm.write(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
    model.eval()
    return {"test_accuracy": history[-1] if history else None, "history": history, "config": asdict(config)}
