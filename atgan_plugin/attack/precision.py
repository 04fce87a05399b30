"""Mixed precision for the fit and for generation: float32, or the forward passes under bf16 autocast.

our choice: ``"bf16"`` runs the generators', the model's and the guards' forward passes under
``torch.autocast(dtype=torch.bfloat16)``; their outputs are cast back to float32 before any loss,
and the parameters, their gradients and Adam's moments stay float32. bfloat16 keeps float32's
exponent range, so no loss scaling is needed (float16 would need it). It pays on GPUs with bf16
tensor cores (Ampere and later) and on CPUs with AVX-512 BF16 or AMX; elsewhere it is slower than
float32. Measurements: ``docs/benchmarks.md``, "StyleGAN2-ADA: float32 versus mixed precision".
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "autocast", "check_precision"]

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """A ``ValueError`` naming the choices when ``precision`` is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager[object]:
    """bf16 autocast on ``device``'s type for ``precision="bf16"``; nothing for ``"fp32"``."""
    check_precision(precision)
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
