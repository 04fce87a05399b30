"""A pool of ``(z, y_s)`` rendered once through G_orig and the guards, drawn from at every fit step.

our choice (``TransferConfig.pool``): G_orig's images and the guards' views of them need no gradient and do
not change during the fit, so rendering them afresh at every step is work done twice once the draws repeat.
The pool renders ``pool`` latents once, in large batches, and each step draws its batch from it: every
target group walks through a random permutation of the pool's rows whose source class is not its target
(``sample_sources``'s distribution), a new permutation each time it is used up. ``pool=0`` keeps fresh draws
every step (the paper's fit). The pool lives on the fit's device; its size is capped so that it stays within
:data:`POOL_BYTES` (large images get a smaller pool). Measured: ``docs/benchmarks.md``, "The realistic fit at
the paper fit's cost".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from atgan_plugin.adapters.protocol import as_generator_module
from atgan_plugin.attack.objective import Reference, render_reference

__all__ = ["POOL_BYTES", "ReferencePool"]

POOL_BYTES = 512 * 2**20  # at most this much memory for the pool's images and the guards' views
RENDER_BATCH = 256  # latents per rendering pass


class ReferencePool:
    """Rendered ``(z, y_s)``: ``z`` ``(P, z_dim)``, ``sources`` ``(P,)`` and their :class:`Reference`."""

    def __init__(self, z: torch.Tensor, sources: torch.Tensor, reference: Reference):
        self.z, self.sources, self.reference = z, sources, reference

    def __len__(self) -> int:
        return len(self.z)

    @classmethod
    def render(
        cls,
        g_orig: nn.Module,
        guards: Sequence[nn.Module],
        size: int,
        *,
        num_classes: int,
        generator: torch.Generator,
        device: torch.device,
        precision: str,
    ) -> ReferencePool:
        """Draws ``size`` latents and uniform source classes with ``generator`` and renders them (at most
        :data:`POOL_BYTES` worth: fewer latents when one example's rendering is large)."""
        z = as_generator_module(g_orig).sample_z(size, generator=generator, device=device)
        sources = torch.randint(num_classes, (size,), generator=generator).to(device)
        parts: list[Reference] = []
        for start in range(0, size, RENDER_BATCH):
            part = render_reference(
                g_orig,
                guards,
                z[start : start + RENDER_BATCH],
                sources[start : start + RENDER_BATCH],
                num_classes=num_classes,
                precision=precision,
            )
            if not parts:  # cap the pool by what one example's rendering weighs
                size = min(size, max(1, POOL_BYTES // _bytes_per_row(part)))
            parts.append(part)
            if start + RENDER_BATCH >= size:
                break
        return cls(z[:size], sources[:size], Reference.concat(parts).take(slice(0, size)))

    def sampler(self, target: int | None, generator: torch.Generator) -> Callable[[int], torch.Tensor]:
        """``draw(n)``: ``n`` row indices of the pool for one target group (``None``: untargeted), walking
        through random permutations of the rows whose source is not ``target``."""
        rows = torch.arange(len(self)) if target is None else (self.sources.cpu() != target).nonzero().squeeze(1)
        if len(rows) == 0:
            raise ValueError(f"the pool holds no source class other than the target {target}; use a larger pool")
        queue: list[torch.Tensor] = []

        def draw(n: int) -> torch.Tensor:
            taken = 0
            chosen = []
            while taken < n:
                if not queue:
                    queue.append(rows[torch.randperm(len(rows), generator=generator)])
                head = queue[0][: n - taken]
                queue[0] = queue[0][len(head) :]
                if len(queue[0]) == 0:
                    queue.pop()
                chosen.append(head)
                taken += len(head)
            return torch.cat(chosen).to(self.z.device)

        return draw


def _bytes_per_row(reference: Reference) -> int:
    tensors = (reference.images, *reference.guard_logits, *reference.guard_features)
    return sum(t[:1].numel() * t.element_size() for t in tensors)
