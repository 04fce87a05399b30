"""Imports AdverTorch 0.2.3 (the latest PyPI release) on torch >= 1.9.

advertorch 0.2.3 does ``from torch.autograd.gradcheck import zero_gradients`` at import time;
torch 1.9 removed that function (upstream issues BorealisAI/advertorch#91 and #99, fixed on
master but never released). Before importing advertorch we put the old helper back on the
*module object* in ``sys.modules``: ``import torch.autograd.gradcheck as m`` would bind the
re-exported *function* ``gradcheck`` instead, and setting an attribute there does nothing.
The shim only adds a missing name; it changes nothing torch itself uses.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Any

import torch


def _zero_gradients(x: Any) -> None:
    """torch < 1.9's ``zero_gradients``: zero ``.grad`` of a tensor or of an iterable of tensors."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, Iterable):
        for element in x:
            _zero_gradients(element)


def install_zero_gradients_shim() -> None:
    importlib.import_module("torch.autograd.gradcheck")
    gradcheck_module = sys.modules["torch.autograd.gradcheck"]
    if not hasattr(gradcheck_module, "zero_gradients"):
        gradcheck_module.zero_gradients = _zero_gradients  # type: ignore[attr-defined]  # torch removed it


install_zero_gradients_shim()

import advertorch.attacks  # noqa: E402  (must come after the shim)
from advertorch.attacks.base import Attack as AdvertorchAttack  # noqa: E402
from advertorch.attacks.base import LabelMixin  # noqa: E402
from advertorch.context import ctx_noparamgrad  # noqa: E402

__all__ = ["AdvertorchAttack", "LabelMixin", "advertorch", "ctx_noparamgrad", "install_zero_gradients_shim"]
advertorch = importlib.import_module("advertorch")
