"""K parameter sets of one generator, stepped together: the fit's G_attack (K = 1) or one per target.

Each set holds its own copy of the parameters G_attack fine-tunes (``attack_parameters()``, stacked along a new
first axis); the rest of the generator and its frozen batch-norm statistics are shared. One forward pass runs
the K sets on their K groups of ``(z, y_s)`` (``torch.func.vmap`` over ``functional_call``; a loop over the
groups for generators that ``vmap`` cannot batch, e.g. a data-dependent check in ``forward``), and one fused
Adam steps the stack: Adam works element by element, so stepping the stack is stepping K optimisers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["StackedGenerator", "adam", "in_layout"]


class StackedGenerator:
    """K parameter sets of one generator: ``forward(z, y)`` maps ``(K, b, z_dim)``, ``(K, b)`` to
    ``(K, b, C, H, W)``, group k through parameter set k.

    ``stacked`` holds the fine-tuned parameters ``(K, *shape)`` by name (leaves that require grad, or
    after :meth:`adopt_layout` permuted views of such leaves); every other parameter and buffer of
    ``module`` is shared by the K sets.
    """

    def __init__(self, module: nn.Module, fine_tuned: Sequence[nn.Parameter], copies: int):
        chosen = {id(p) for p in fine_tuned}
        named = dict(module.named_parameters())
        self.module = module
        self.copies = copies
        self.stacked = {
            name: p.detach()[None].repeat(copies, *([1] * p.ndim)).requires_grad_(True)
            for name, p in named.items()
            if id(p) in chosen
        }
        self.shared = {name: p.detach() for name, p in named.items() if id(p) not in chosen}
        self.shared.update(dict(module.named_buffers()))
        self.vectorised: bool | None = None  # decided on the first call

    def _one(self, params: dict[str, torch.Tensor], z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = functional_call(self.module, {**params, **self.shared}, (z, y))
        return images

    def _loop(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [self._one({n: p[k] for n, p in self.stacked.items()}, z[k], y[k]) for k in range(self.copies)]
        )

    def _vmap(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return vmap(self._one)(self.stacked, z, y)

    def _can_vectorise(self, z: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether ``vmap`` runs this generator and agrees with the loop, tried on two examples per group."""
        with torch.no_grad():
            try:
                batched = self._vmap(z[:, :2], y[:, :2])
            except (RuntimeError, NotImplementedError, ValueError, TypeError):  # e.g. .item() inside forward
                return False
            return torch.allclose(batched, self._loop(z[:, :2], y[:, :2]), rtol=1e-4, atol=1e-5)

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.vectorised is None:
            self.vectorised = self._can_vectorise(z, y)
        return self._vmap(z, y) if self.vectorised else self._loop(z, y)

    def adopt_layout(self, grads: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stores each stacked parameter contiguous in its gradient's memory order; returns the tensors to
        optimise and ``grads`` matched to them. Call once, on the first step's gradients, before an
        optimiser holds the parameters.

        ``vmap`` gives a linear layer's weight gradient transposed, ``(K, out, in)`` with the strides of
        ``(K, in, out)``. Such a parameter becomes a contiguous leaf ``(K, in, out)``, and ``stacked`` keeps
        a permuted view of it: later gradients reach the leaf contiguous with no copy, and fused Adam on a
        CPU steps it in place (on a permuted tensor it copies all four operands, several times slower for the shipped
        generator's largest layer)."""
        leaves, leaf_grads = [], []
        for (name, param), grad in zip(list(self.stacked.items()), grads, strict=True):
            order = _memory_order(grad)
            if grad.stride() == param.stride() or not grad.permute(order).is_contiguous():
                leaves.append(param)
                leaf_grads.append(grad)  # the caller lays every gradient out like its leaf (in_layout)
                continue
            leaf = param.detach().permute(order).contiguous().requires_grad_(True)
            self.stacked[name] = leaf.permute(_inverse(order))  # shape (K, *shape), the gradient's strides
            leaves.append(leaf)
            leaf_grads.append(grad.permute(order))
        return leaves, leaf_grads

    @torch.no_grad()
    def start_from(self, k: int, module: nn.Module) -> None:
        """Parameter set ``k`` takes ``module``'s values (a generator of the same architecture, e.g. an earlier
        fit's G_attack): a warm start. Call before the first step."""
        named = dict(module.named_parameters())
        missing = [name for name in self.stacked if name not in named]
        if missing:
            raise ValueError(f"the generator to start from lacks the parameters {missing[:3]}")
        for name, stacked in self.stacked.items():
            if named[name].shape != stacked.shape[1:]:
                raise ValueError(
                    f"the generator to start from has {name} of shape {tuple(named[name].shape)}, "
                    f"not {tuple(stacked.shape[1:])}"
                )
            stacked[k].copy_(named[name])

    def generator(self, k: int) -> nn.Module:
        """A frozen copy of ``module`` holding parameter set ``k``."""
        copy_ = copy.deepcopy(self.module)
        named = dict(copy_.named_parameters())
        with torch.no_grad():
            for name, stacked in self.stacked.items():
                named[name].copy_(stacked[k])
        return copy_.requires_grad_(False).eval()


def _memory_order(tensor: torch.Tensor) -> list[int]:
    """The dimensions of ``tensor`` from the largest stride to the smallest: ``tensor.permute(order)`` is
    contiguous when ``tensor`` is dense (a permuted contiguous layout)."""
    strides = tensor.stride()
    return sorted(range(tensor.ndim), key=lambda d: -strides[d])


def _inverse(order: list[int]) -> list[int]:
    """The permutation that undoes ``permute(order)``."""
    inverse = [0] * len(order)
    for position, dim in enumerate(order):
        inverse[dim] = position
    return inverse


def in_layout(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``grad`` laid out like ``param``: fused Adam misreads a gradient whose strides differ (pytorch#106951)."""
    if grad.stride() == param.stride():
        return grad
    return torch.empty_strided(param.shape, param.stride(), dtype=grad.dtype, device=grad.device).copy_(grad)


def adam(params: list[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam, fused into one kernel where torch has one (CPU and CUDA): the same update as the default."""
    if device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr)
