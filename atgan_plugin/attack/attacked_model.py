"""The model under attack as the attack sees it: the torch module behind it and its dtype.

A model reaches the attack as an ``nn.Module``, a plain function (AdverTorch) or a Foolbox model
wrapping a module; eval mode, the fit cache and dtype handling need the module itself.
:class:`CheckedClassifier` is how the fit, the shrink and the predictions call it: images in the
module's own dtype (a float64 model works), and a named ``TypeError`` when it returns anything but
a tensor (a tuple: neither Foolbox nor AdverTorch takes its first element, so neither do we).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from eagerpy.astensor import astensor, astensor_
from foolbox.models.base import Model as FoolboxModel
from torch import nn

__all__ = ["CheckedClassifier", "InputsInModelDtype", "parameter_dtype", "torch_module_of"]


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


class CheckedClassifier:
    """``classify(images) -> logits`` around the user's model: ``images`` ``(N, C, H, W)`` cast to
    ``dtype`` (the model's parameters') on the way in, and anything but a tensor coming out refused.

    ``inner`` is what is called (the module, a function, or a Foolbox model's ``__call__``); with
    ``compile=True`` the attack swaps it for its ``torch.compile`` wrapper (:meth:`with_inner`).
    Gradients flow through the cast, so the fit's float32 images reach a float64 model.
    """

    def __init__(self, inner: Callable[[torch.Tensor], Any], dtype: torch.dtype | None, foolbox: bool = False):
        self.inner, self.dtype, self.foolbox = inner, dtype, foolbox

    @classmethod
    def of(cls, model: Any) -> CheckedClassifier:
        """The checked classifier of a module, a function or a Foolbox model (once wrapped, kept as is)."""
        if isinstance(model, CheckedClassifier):
            return model
        dtype = parameter_dtype(torch_module_of(model))
        if isinstance(model, FoolboxModel):
            return cls(lambda batch: model(batch), dtype, foolbox=True)
        return cls(model, dtype)

    def with_inner(self, inner: Callable[[torch.Tensor], Any]) -> CheckedClassifier:
        return CheckedClassifier(inner, self.dtype, self.foolbox)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.dtype is not None and images.is_floating_point() and images.dtype != self.dtype:
            images = images.to(self.dtype)
        try:
            logits = self.inner(images)
        except ValueError as error:
            # eagerpy's words when a Foolbox model's module returns what it cannot wrap (a tuple, a dict).
            if self.foolbox and str(error).startswith("Unknown type"):
                raise TypeError(_not_logits(str(error)[len("Unknown type: ") :])) from None
            raise
        if not isinstance(logits, torch.Tensor):
            raise TypeError(_not_logits(type(logits).__name__))
        return logits


def _not_logits(what: str) -> str:
    return (
        f"the model must return a tensor of logits (N, classes), got {what}; neither Foolbox nor AdverTorch "
        "takes the first element of a tuple: pass a model that returns the logits, e.g. a module whose "
        "forward returns model(x)[0]"
    )
