"""Where fitted generators are kept: in memory per (model, target, setting), and in safetensors files.

:class:`FitCache` is :class:`~atgan_plugin.attack.atgan.ATGANAttack`'s cache of fits; :func:`write_fit`
and :func:`read_fit` are its ``save_fit``/``load_fit`` files. A fit holds only for the setting it was
made in, so the cache key carries the model's bounds, Foolbox preprocessing and device besides the
module and the target (:func:`fit_setting`).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from eagerpy.astensor import astensor
from foolbox.models.base import Model as FoolboxModel
from torch import nn

from atgan_plugin.adapters.protocol import as_generator_module
from atgan_plugin.attack.attacked_model import torch_module_of
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import FitResult
from atgan_plugin.checkpoints import (
    Checkpoint,
    CheckpointError,
    check_declared_tensors,
    load_checkpoint,
    read_header,
    save_checkpoint,
)

__all__ = ["FIT_KIND", "FitCache", "fit_setting", "foolbox_preprocessing", "read_fit", "write_fit"]

FIT_KIND = "atgan.fitted_generator"  # the checkpoint kind of a save_fit file


def foolbox_preprocessing(model: Any) -> tuple[Any, ...]:
    """A Foolbox model's preprocessing (mean, std, flip axis) as plain values: a fit made under one
    preprocessing does not hold under another, even around the same module."""
    args = getattr(model, "_preprocess_args", None) if isinstance(model, FoolboxModel) else None
    if args is None or all(a is None for a in args):  # none: as for the plain module
        return ()
    return tuple(a if a is None or isinstance(a, int) else tuple(astensor(a).raw.flatten().tolist()) for a in args)


def fit_setting(model: Any, bounds: tuple[float, float], device: Any) -> tuple[Any, ...]:
    """What a fit depends on besides the module and the target: (bounds, Foolbox preprocessing, device).
    A Foolbox model's own bounds replace ``bounds`` (the AdverTorch face's clip range)."""
    own_bounds = tuple(model.bounds) if isinstance(model, FoolboxModel) else bounds
    return own_bounds, foolbox_preprocessing(model), str(device)


@dataclass
class _Entry:
    owner: Any  # a weakref to the module (or model) the fit is for; the model itself if it has no weakrefs
    signature: tuple[Any, ...]  # identity, version, storage and layout of every parameter and buffer
    storages: list[Any]  # kept alive so that a replaced tensor's memory cannot be reused by its successor
    fit: FitResult


class FitCache:
    """Fitted generators per (model, target, setting).

    The key is the ``nn.Module`` behind the model (:func:`torch_module_of`), not the object passed:
    a fresh ``foolbox.PyTorchModel`` around the same module reuses the fit. ``setting`` holds what
    else the fit depends on (bounds, Foolbox preprocessing, device). An entry is stale once any
    parameter or buffer is replaced (a new Parameter, ``p.data = ...``, another view) or changed in
    place (its version counter: an optimiser step, ``load_state_dict``), and goes with its module.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int | None, tuple[Any, ...]], _Entry] = {}

    @staticmethod
    def _owner(model: Any) -> Any:
        module = torch_module_of(model)
        return module if module is not None else model

    @staticmethod
    def _state(owner: Any) -> tuple[tuple[Any, ...], list[Any]]:
        if not isinstance(owner, nn.Module):
            return (), []
        tensors = [*owner.parameters(), *owner.buffers()]
        signature = tuple(
            (id(t), t._version, t.data_ptr(), tuple(t.shape), t.stride(), t.storage_offset(), t.dtype, t.device)
            for t in tensors
        )
        return signature, [t.untyped_storage() for t in tensors]

    def get(self, model: Any, target: int | None, setting: tuple[Any, ...]) -> FitResult | None:
        owner = self._owner(model)
        key = (id(owner), target, setting)
        entry = self._entries.get(key)
        if entry is None:
            return None
        alive = entry.owner() if isinstance(entry.owner, weakref.ref) else entry.owner
        if alive is not owner or entry.signature != self._state(owner)[0]:
            del self._entries[key]  # stale: frees the old storages it kept
            return None
        return entry.fit

    def put(self, model: Any, target: int | None, setting: tuple[Any, ...], fit: FitResult) -> None:
        owner = self._owner(model)
        key = (id(owner), target, setting)
        try:
            ref: Any = weakref.ref(owner, lambda _: self._entries.pop(key, None))
        except TypeError:  # e.g. a bound method: hold it, so that its id cannot be reused
            ref = owner
        signature, storages = self._state(owner)
        self._entries[key] = _Entry(ref, signature, storages, fit)

    def fits(self) -> list[FitResult]:
        return [entry.fit for entry in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)


def write_fit(path: str | Path, fit: FitResult, target: int | None) -> None:
    """Writes ``fit``'s G_attack as a safetensors file (atomically), with its target, configuration
    and last history row in the header."""
    training = {"target": target, "config": asdict(fit.config), "history": fit.history[-1:]}
    save_checkpoint(path, Checkpoint(FIT_KIND, dict(fit.generator.state_dict()), {}, training))


def read_fit(
    path: str | Path,
    generator: nn.Module,
    *,
    config: TransferConfig,
    check_target: Callable[[Any], int | None],
    device: Any,
) -> FitResult:
    """The fit :func:`write_fit` saved, as a copy of ``generator`` (G_orig) holding the file's weights.

    The file's tensor names and shapes are compared with ``generator`` before any weight is read;
    its recorded configuration overrides ``config``'s fields, its target passes ``check_target`` and must be
    one of ``generator``'s classes (a file's digest vouches for its bytes, not for its values).
    A mismatch, a digest mismatch or a non-finite weight is a ``CheckpointError``.
    """
    header = read_header(path, expected_kind=FIT_KIND)
    try:
        check_declared_tensors(header.tensors, generator, str(path))
    except CheckpointError as error:
        raise CheckpointError(f"{path} was fitted from a different generator than this attack's: {error}") from None
    target, recorded = header.training.get("target"), header.training.get("config", {})
    if isinstance(recorded, dict):  # a fit saved before L_feature existed was made without it
        recorded = {"feature": 0.0, **recorded}
    try:
        target = check_target(target)
        config = replace(config, **recorded)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} records an unusable target or fit configuration: {error}") from None
    num_classes = int(as_generator_module(generator).num_classes)
    if target is not None and not 0 <= target < num_classes:
        raise CheckpointError(
            f"{path} records target {target}, outside the generator's classes [0, {num_classes}); "
            "it was not fitted for this generator"
        )
    g_attack = copy.deepcopy(generator).requires_grad_(False).eval()
    g_attack.load_state_dict(load_checkpoint(path, expected_kind=FIT_KIND).tensors, strict=True)
    history = header.training.get("history", [])
    return FitResult(g_attack.to(device), target, config, list(history) if isinstance(history, list) else [])
