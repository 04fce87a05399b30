"""Adversarial examples made *inside* adversarial training: FGSM, PGD, FGSM from a random start.

This is training code, not the evaluation's baselines (those go through Foolbox and AdverTorch,
:mod:`atgan_plugin.paper.baselines`): a few lines of torch each, so that a training step pays no
toolkit overhead. Gradients are taken with ``torch.autograd.grad`` with respect to the images
only, so no model parameter's ``.grad`` is touched.

paper (AT-GAN paper, appendix A.2; Tramèr et al. 2018; Madry et al. 2018):
- ``adv`` (Goodfellow et al.): FGSM ``x + ε·sign(∇x CE)`` from the current model;
- ``ens`` (Tramèr et al.): the same FGSM, from a model drawn per batch among the current one
  and fixed pre-trained ones;
- ``pgd`` (Madry et al., "Iter."): PGD from a uniform random start in the ε-ball, ε/step/steps
  from appendix Table 6 (Fashion-MNIST: 0.1, 0.01, 20).
our choice: the current model makes its examples in eval mode (no dropout noise in the attack;
its train/eval flags are restored after); true labels, not predictions, are attacked.
``fgsm_random_start`` is Wong et al.'s fast adversarial training, which trained the shipped oracle.

Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N,)`` int64; outputs like the images, detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.utils import eval_mode

__all__ = ["fgsm", "fgsm_random_start", "pgd"]


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇x CE(model(x), y), ``(N, C, H, W)``; the model's parameters get no gradient."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """One signed-gradient step of size ε, clipped to [0, 1] (evaluated in eval mode)."""
    with eval_mode(model):
        grad = _input_gradient(model, x, y)
    return (x + epsilon * grad.sign()).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ℓ∞ PGD (Madry et al.): uniform start in the ε-ball, ``steps`` signed steps, each projected back
    to the ε-ball around ``x`` and to [0, 1]. ``generator`` (CPU) draws the start, for reproducibility."""
    start = torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1  # U(-1, 1), drawn on CPU
    adv = (x + epsilon * start).clamp(0, 1)
    with eval_mode(model):
        for _ in range(steps):
            grad = _input_gradient(model, adv, y)
            adv = torch.min(torch.max(adv + step_size * grad.sign(), x - epsilon), x + epsilon).clamp(0, 1)
    return adv.detach()


def fgsm_random_start(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Wong et al. 2020: a step of 1.25·ε from a uniform start, projected back to the ε-ball and [0, 1].

    Kept exactly as it trained the shipped oracle: the model is used in its current mode and the
    start comes from torch's global generator.
    """
    delta = (torch.rand_like(x) * 2 - 1) * epsilon
    delta.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
    delta = (delta + 1.25 * epsilon * grad.sign()).clamp(-epsilon, epsilon)
    return (x + delta).clamp(0, 1).detach()
