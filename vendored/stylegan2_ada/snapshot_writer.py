"""Writes our :class:`Generator` (and :class:`Discriminator`) in the layout of NVIDIA's snapshot pickles (``vendored/stylegan2_ada/README.md``).

For tests and fixtures, where no NVIDIA code or file may be used: the file has the same
top-level keys, the same persistent-object records (``_reconstruct_persistent_obj`` with a
``meta`` dict of type, version 6, module source, class name and ``__dict__`` state), the same
``EasyDict`` constructor arguments, numpy-scalar gains and torch tensor encoding as one written
by NVIDIA's training code, so :mod:`.snapshot` reads both the same way.

The globals are produced by stand-in modules (``torch_utils.persistence``, ``dnnlib.util``)
that exist in ``sys.modules`` only while the file is written. ``module_src`` is whatever text
the caller passes: a file written here is meant for our reader, which never executes it.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atgan_plugin.checkpoints import atomic_write
from atgan_plugin.vendored.stylegan2_ada.discriminator import Discriminator
from atgan_plugin.vendored.stylegan2_ada.networks import SNAPSHOT_ATTRIBUTES, Generator

__all__ = ["EasyDict", "dump_snapshot", "snapshot_dict", "write_snapshot"]

DEFAULT_MODULE_SRC = "# stand-in for training/networks.py: written by atgan_plugin, never executed by it\n"
_NUMPY_GAINS = ("weight_gain", "act_gain")  # recorded as numpy.float64 by the original


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:
    raise RuntimeError("stand-in for NVIDIA's persistence hook: only its name is written, it is never called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict[str, Any]):
    """Stand-in for ``dnnlib.util.EasyDict`` while writing."""


EasyDict.__module__ = "dnnlib.util"


class _Persistent:
    """Pickles as ``_reconstruct_persistent_obj(meta)``, like a persistent network of the original."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return _reconstruct_persistent_obj, (self.meta,)


@contextmanager
def _stand_in_modules() -> Iterator[None]:
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    saved = {name: sys.modules.get(name) for name in names}
    # Bare modules, typed Any: the attributes set on them are the ones NVIDIA's pickles refer to.
    modules: dict[str, Any] = {name: types.ModuleType(name) for name in names}
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    modules["torch_utils"].persistence = modules["torch_utils.persistence"]
    modules["dnnlib.util"].EasyDict = EasyDict
    modules["dnnlib"].util = modules["dnnlib.util"]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _easy(value: Any) -> Any:
    if isinstance(value, dict):
        return EasyDict({k: _easy(v) for k, v in value.items()})
    return value


def _record(
    module: nn.Module, module_src: str, class_name: str | None = None, init_kwargs: dict[str, Any] | None = None
) -> _Persistent:
    """The persistent record of ``module`` and, recursively, of its children."""
    class_name = class_name or type(module).__name__
    state: dict[str, Any] = {
        "training": False,
        "_parameters": OrderedDict(
            (name, nn.Parameter(p.detach().cpu().clone(), requires_grad=False))
            for name, p in module._parameters.items()
            if p is not None
        ),
        "_buffers": OrderedDict(
            (name, b.detach().cpu().clone()) for name, b in module._buffers.items() if b is not None
        ),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict(
            (name, _record(child, module_src)) for name, child in module._modules.items() if child is not None
        ),
        "_init_args": (),
        "_init_kwargs": _easy(init_kwargs or {}),
    }
    for attribute in SNAPSHOT_ATTRIBUTES.get(class_name, ()):
        value = getattr(module, attribute)
        state[attribute] = np.float64(value) if attribute in _NUMPY_GAINS else value
    meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name, "state": state}
    return _Persistent(meta)


def snapshot_dict(
    G_ema: Generator,
    *,
    G: Generator | None = None,
    D: Discriminator | None = None,
    module_src: str = DEFAULT_MODULE_SRC,
    training_set_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The top-level snapshot dict: ``training_set_kwargs``, ``G``, ``D``, ``G_ema``, ``augment_pipe``.

    ``G`` defaults to ``G_ema``. ``D`` is recorded with its constructor arguments, as the original
    records its discriminator; without one, a small stand-in ``'Discriminator'`` record (our reader
    parses the whole stream, but rebuilds it only when asked). ``augment_pipe`` is None: our
    augmentation is not the original's ``AugmentPipe`` and is not recorded as one.
    """
    if D is None:
        stand_in = nn.Module()
        stand_in.register_parameter("weight", nn.Parameter(torch.randn(4, 3, 3, 3)))
        discriminator = _record(stand_in, module_src, class_name="Discriminator")
    else:
        discriminator = _record(D, module_src, init_kwargs=D.init_kwargs)
    return {
        "training_set_kwargs": dict(training_set_kwargs) if training_set_kwargs is not None else None,
        "G": _record(G if G is not None else G_ema, module_src, init_kwargs=(G or G_ema).init_kwargs),
        "D": discriminator,
        "G_ema": _record(G_ema, module_src, init_kwargs=G_ema.init_kwargs),
        "augment_pipe": None,
    }


def dump_snapshot(path: str | Path, data: Any, *, protocol: int = 3) -> None:
    """Pickles ``data`` (e.g. a :func:`snapshot_dict`, possibly edited) to ``path``, atomically."""
    with _stand_in_modules(), atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=protocol)


def write_snapshot(path: str | Path, G_ema: Generator, *, protocol: int = 3, **kwargs: Any) -> None:
    """Writes a snapshot holding ``G_ema``, ``G`` and ``D`` (:func:`snapshot_dict`) at pickle ``protocol`` (3 or 4)."""
    dump_snapshot(path, snapshot_dict(G_ema, **kwargs), protocol=protocol)
