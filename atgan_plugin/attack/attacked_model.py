"""The model under attack as the attack sees it: the torch module behind it and its dtype.

A model reaches the attack as an ``nn.Module``, a plain function (AdverTorch) or a Foolbox model
wrapping a module; eval mode, the fit cache and dtype handling need the module itself.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from eagerpy.astensor import astensor, astensor_
from foolbox.models.base import Model as FoolboxModel
from torch import nn

__all__ = ["InputsInModelDtype", "parameter_dtype", "torch_module_of"]


def torch_module_of(model: Any) -> nn.Module | None:
    """The ``nn.Module`` behind a model: itself, or the one a ``foolbox.PyTorchModel`` wraps.

    ``PyTorchModel`` keeps the module only in the closure of its forward function, so we look
    there; anything else (a plain function) has no module and no train/eval mode to manage.
    """
    if isinstance(model, nn.Module):
        return model
    forward = getattr(model, "_model", None)
    if forward is not None and callable(forward):
        try:
            module = inspect.getclosurevars(forward).nonlocals.get("model")
        except (TypeError, ValueError):
            return None
        return module if isinstance(module, nn.Module) else None
    return None


def parameter_dtype(module: nn.Module | None) -> torch.dtype | None:
    """The dtype of the first floating-point parameter of ``module`` (None: no module or none)."""
    for p in module.parameters() if module is not None else ():
        if p.is_floating_point():
            return p.dtype
    return None


class InputsInModelDtype(FoolboxModel):
    """A Foolbox model fed in its parameters' dtype.

    Foolbox judges success by calling the model on the attack's output, which keeps the inputs'
    dtype: float64 images and a float32 model would fail there. The attack's ``__call__`` hands
    Foolbox this wrapper; its ``run`` unwraps it.
    """

    def __init__(self, model: FoolboxModel, dtype: torch.dtype):
        self.model, self.dtype = model, dtype

    @property
    def bounds(self) -> Any:
        return self.model.bounds

    def __call__(self, inputs: Any) -> Any:
        x, restore_type = astensor_(inputs)
        return restore_type(astensor(self.model(x.raw.to(self.dtype))))
