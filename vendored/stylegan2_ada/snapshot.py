"""A safe reader for NVIDIA's StyleGAN2-ADA PyTorch pickles (``network-snapshot-*.pkl``, ``cifar10.pkl``).

Those files pickle each network together with the source code of its module and, when opened
with ``pickle.load``, *execute* that source. This reader never does. It is a
``pickle.Unpickler`` whose ``find_class`` answers only the globals such a file needs (``ALLOWED_GLOBALS``),
each with a replacement of our own:

- the persistence hook becomes :class:`PersistentRecord`, an inert record of the class name,
  format version and ``__dict__`` state (the embedded source is kept only as its length and hash);
- tensor, parameter and storage rebuilders are our own functions; a storage's nested legacy
  ``torch.save`` blob is parsed by hand (its only global is a ``torch.<X>Storage`` name,
  mapped to a dtype);
- ``EasyDict`` is a plain ``dict`` subclass, numpy scalars become Python numbers.

Before any of that, :func:`~.picklescan.scan_pickle` bounds the stream (declared lengths,
nesting depth, memo indices, object counts), so a small hostile file can neither exhaust memory
nor crash the interpreter; the walks over what was read are bounded too.

Any other global (``os.system``, ``builtins.eval``, a network class of another code base, a
TensorFlow-era ``dnnlib.tflib`` object) stops the read with :class:`ForbiddenGlobalError` naming
it, before anything is imported or called. The records are then flattened into a state dict,
the recorded constructor arguments are checked against
:data:`~.networks.GENERATOR_KWARGS_SCHEMA`, our
:class:`~atgan_plugin.vendored.stylegan2_ada.networks.Generator` is built from them on the
``meta`` device (no memory), the recorded plain attributes and the tensor shapes are compared
with it, and only then is the real network built and the (finite) state loaded strictly.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import math
import pickle
import reprlib
import struct
import types
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atgan_plugin.checkpoints import CheckpointError, check_declared_tensors, check_finite, describe_tensors
from atgan_plugin.limits import Fields, config_problem
from atgan_plugin.vendored.stylegan2_ada.discriminator import DISCRIMINATOR_KWARGS_SCHEMA, Discriminator
from atgan_plugin.vendored.stylegan2_ada.networks import GENERATOR_KWARGS_SCHEMA, SNAPSHOT_ATTRIBUTES, Generator
from atgan_plugin.vendored.stylegan2_ada.picklescan import MAX_DEPTH, scan_pickle

__all__ = [
    "ALLOWED_GLOBALS",
    "ForbiddenGlobalError",
    "PersistentRecord",
    "load_discriminator_pickle",
    "load_generator_pickle",
    "looks_like_pickle",
    "read_snapshot",
]

PERSISTENCE_VERSION = 6
NETWORK_KEYS = ("G", "G_ema")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class ForbiddenGlobalError(CheckpointError):
    """The pickle references a global outside the whitelist; nothing of it was imported or run."""

    def __init__(self, module: str, name: str, where: str = "pickle"):
        self.module, self.name, self.where = module, name, where
        self.global_name = f"{module}.{name}"
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (a TensorFlow-era StyleGAN2-ADA pickle: not supported, use a PyTorch snapshot)"
        super().__init__(
            f"{where}: refused the global {self.global_name!r}, which is not in the StyleGAN2-ADA "
            f"whitelist; nothing from the file was imported or run{hint}"
        )


class _EasyDict(dict[str, Any]):
    """Stands in for ``dnnlib.util.EasyDict`` (the stream builds it with NEWOBJ, then SETITEMS)."""


@dataclass
class PersistentRecord:
    """What a persistent object of the snapshot holds, without its class ever being created."""

    class_name: str
    version: int
    state: dict[str, Any]
    source_length: int = 0
    source_sha256: str = ""
    children: dict[str, PersistentRecord] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = _plain(self.state.get("_init_kwargs") or {})
        return kwargs


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    # The data that NVIDIA's hook would turn into a live object by exec-ing meta['module_src'].
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise CheckpointError(
            "a persistent object in the pickle has an unexpected layout (expected type='class' with a state dict)"
        )
    class_name, version = meta.get("class_name"), meta.get("version", -1)
    if not isinstance(class_name, str) or isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError("a persistent object in the pickle has no class name (str) and version (int)")
    source = meta.get("module_src", "")
    source_bytes = source.encode("utf-8", "replace") if isinstance(source, str) else b""
    state = meta["state"]
    modules = state.get("_modules") or {}
    children = (
        {name: child for name, child in modules.items() if isinstance(child, PersistentRecord)}
        if isinstance(modules, dict)
        else {}
    )
    return PersistentRecord(
        class_name=class_name[:200],
        version=version,
        state=state,
        source_length=len(source_bytes),
        source_sha256=hashlib.sha256(source_bytes).hexdigest(),
        children=children,
    )


# ------------------------------------------------------------------------------------------------
# Tensors: storages from their nested legacy torch.save blobs, views with as_strided.

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: torch.dtype
    numel: int
    view: tuple[str, int, int] | None  # (base key, offset, size) for a legacy storage view


class _StorageUnpickler(pickle.Unpickler):
    """The inner stream of a storage blob: only ``torch.<X>Storage`` names and one persistent id."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise ForbiddenGlobalError(module, name, where="a storage blob")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
        ):
            raise CheckpointError(f"unexpected persistent id in a storage blob: {_short(pid)}")
        view = pid[5] if len(pid) > 5 else None
        if view is not None and not (
            isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])
        ):
            raise CheckpointError(f"unexpected storage view in a storage blob: {_short(view)}")
        return _StorageRef(key=pid[2], dtype=pid[1].dtype, numel=pid[4], view=view)


def _load_storage_blob(blob: Any) -> torch.Tensor:
    """A storage saved with legacy ``torch.save``, as a 1-D CPU tensor."""
    if not isinstance(blob, bytes | bytearray):
        raise CheckpointError(f"a storage blob is {type(blob).__name__}, expected bytes")
    if blob[:4] == b"PK\x03\x04":  # zip-format torch.save: torch's own weights-only reader
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:  # uncompressed only: no entry outgrows the blob
                if any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist()):
                    raise CheckpointError("a zip-format storage blob has compressed entries")
            storage = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
            return torch.empty(0, dtype=storage.dtype).set_(storage.untyped_storage())
        except CheckpointError:
            raise
        except Exception as error:
            raise CheckpointError(f"unreadable zip-format storage blob: {error}") from error
    f = io.BytesIO(blob)

    def load() -> Any:  # one of the five pickles in a row, bounded first
        scan_pickle(blob, f.tell())
        return _StorageUnpickler(f).load()

    try:
        magic = load()
        protocol = load()
        sys_info = load()
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(
                f"a storage blob has magic {_short(magic)} / protocol {_short(protocol)}, not legacy torch.save"
            )
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError("big-endian storage blobs are not supported")
        ref = load()
        keys = load()
    except CheckpointError as error:
        if isinstance(error, ForbiddenGlobalError) or "storage blob" in str(error):
            raise
        raise CheckpointError(f"corrupt storage blob: {error}") from error
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise CheckpointError(f"corrupt storage blob: {error}") from error
    if not isinstance(ref, _StorageRef) or keys != [ref.key]:  # the record is the root storage's, even for a view
        raise CheckpointError("a storage blob does not hold exactly one storage")
    header = f.read(8)
    if len(header) != 8:
        raise CheckpointError("a storage blob is truncated (no size record)")
    (numel,) = struct.unpack("<q", header)
    itemsize = torch.empty(0, dtype=ref.dtype).element_size()
    data = f.read(numel * itemsize)
    if numel < 0 or len(data) != numel * itemsize:
        raise CheckpointError(f"a storage blob is truncated: expected {numel * itemsize} bytes, found {len(data)}")
    flat = torch.frombuffer(bytearray(data), dtype=ref.dtype) if numel else torch.empty(0, dtype=ref.dtype)
    if ref.view is not None:
        _, offset, size = ref.view
        flat = flat[int(offset) : int(offset) + int(size)]
    return flat


def _rebuild_tensor_v2(
    storage: Any, offset: int, size: Any, stride: Any, requires_grad: Any = False, *_: Any
) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise CheckpointError("a tensor in the pickle does not refer to a storage")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise CheckpointError(
            f"a tensor in the pickle has an invalid view: size {size}, stride {stride}, offset {offset}"
        )
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else -1
    if last >= storage.numel():
        raise CheckpointError(
            f"a tensor view (size {size}, stride {stride}, offset {offset}) overruns its storage of "
            f"{storage.numel()} elements"
        )
    # Only overlapping views (e.g. stride 0) have more elements than their storage.
    if math.prod(size) > storage.numel():
        raise CheckpointError(
            f"a tensor view (size {size}, stride {stride}) has more elements than its storage of {storage.numel()}"
        )
    return storage.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data: Any, requires_grad: Any = False, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter in the pickle does not hold a tensor")
    return data


def _numpy_scalar(dtype: Any, data: Any = b"") -> float | int | bool:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise CheckpointError(f"unsupported numpy scalar in the pickle (dtype {dtype!r})")
    if len(data) != dtype.itemsize:
        raise CheckpointError(f"a numpy scalar has {len(data)} bytes, its dtype {dtype} needs {dtype.itemsize}")
    value: float | int | bool = np.frombuffer(data, dtype=dtype)[0].item()
    return value


# (module, name) -> our replacement. Nothing else is ever resolved.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_blob,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, file: Any):
        super().__init__(file)
        # The stream's BUILD opcode sets attributes on whatever object it holds, the globals it named
        # included; so it gets fresh stand-ins for this read only, never our module's own classes and
        # functions (a file could otherwise rewrite them for every later read in the process).
        # numpy.dtype, OrderedDict and set are immutable built-in types.
        easy_dict = type("EasyDict", (_EasyDict,), {})
        self._globals = {
            key: easy_dict
            if value is _EasyDict
            else functools.partial(value)
            if isinstance(value, types.FunctionType)
            else value
            for key, value in ALLOWED_GLOBALS.items()
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise ForbiddenGlobalError(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"unexpected persistent id in a snapshot pickle: {pid!r:.200}")


# ------------------------------------------------------------------------------------------------
# Reading.


def looks_like_pickle(path: str | Path) -> bool:
    """True when the file is a pickle (protocol 2-5) whose top-level object is a dict, as a snapshot's is.

    Checks the header only: the protocol opcode, an optional 8-byte frame, then EMPTY_DICT.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if len(head) < 3 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    first = 11 if head[2] == 0x95 else 2  # FRAME (protocol 4+) is followed by its 8-byte length
    return len(head) > first and head[first] == ord("}")


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """The snapshot's top-level dict, networks as :class:`PersistentRecord` s; executes nothing.

    Raises:
        ForbiddenGlobalError: a global outside :data:`ALLOWED_GLOBALS` (names it).
        CheckpointError: a missing, truncated, oversized or otherwise unreadable file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"StyleGAN2-ADA pickle {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"StyleGAN2-ADA pickle {path} does not exist")
    try:
        data = path.read_bytes()
        scan_pickle(data)  # lengths, nesting, memo and counts, before the unpickler sees a byte
        result = _SnapshotUnpickler(io.BytesIO(data)).load()
    except ForbiddenGlobalError as error:
        where = str(path) if error.where == "pickle" else f"{path}, in {error.where}"
        raise ForbiddenGlobalError(error.module, error.name, where=where) from None
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from error
    except EOFError as error:
        raise CheckpointError(f"{path} is truncated: the pickle stream ends early ({error or 'EOF'})") from error
    except Exception as error:  # hostile input reaches many code paths; every failure is named as this file's
        reason = "truncated" if "truncated" in str(error) else "corrupt or not a StyleGAN2-ADA pickle"
        raise CheckpointError(f"{path} is {reason}: {type(error).__name__}: {_short(error)}") from error
    if isinstance(result, tuple) and len(result) == 3:
        raise CheckpointError(f"{path} looks like a TensorFlow-era (G, D, Gs) pickle, which is not supported")
    if not isinstance(result, dict):
        raise CheckpointError(f"{path} does not hold a StyleGAN2-ADA snapshot dict (found {type(result).__name__})")
    return result


def _short(value: Any, limit: int = 200) -> str:
    """A bounded ``repr`` (``str`` for an exception) for messages: deep or huge values from a hostile
    file must not cost anything."""
    if isinstance(value, BaseException):
        return str(value)[:limit]
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother = 3, limit, limit
    return shown.repr(value)[:limit]


_PLAIN_BUDGET = 100_000  # nodes one _plain walk may visit (constructor arguments are a few dozen)


def _plain(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """EasyDicts and OrderedDicts to dicts, tuples to lists (JSON-friendly constructor args).

    Bounded: at most :data:`MAX_DEPTH` deep and ``_PLAIN_BUDGET`` nodes, so a hostile DAG of
    shared containers cannot make it run for ever.
    """
    budget = budget if budget is not None else [_PLAIN_BUDGET]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise CheckpointError("constructor arguments nested too deep or too large")
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, budget, depth + 1) for v in value]
    return value


def _flatten(record: PersistentRecord) -> tuple[dict[str, torch.Tensor], dict[str, PersistentRecord]]:
    """State dict (nn.Module.state_dict order) and the record of every submodule, by name.

    Walks the module tree with an explicit stack; a record that contains itself is refused.
    """
    tensors: dict[str, torch.Tensor] = {}
    records: dict[str, PersistentRecord] = {}
    seen: set[int] = set()
    stack: list[tuple[str, PersistentRecord]] = [("", record)]
    while stack:
        prefix, current = stack.pop()
        if id(current) in seen or len(seen) > 100_000 or prefix.count(".") > MAX_DEPTH:
            raise CheckpointError(
                f"the network record at {prefix.rstrip('.')[:200] or 'its root'} contains itself or nests too deep"
            )
        seen.add(id(current))
        records[prefix.rstrip(".")] = current
        for slot in ("_parameters", "_buffers"):
            entries = current.state.get(slot) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{prefix}{slot} is a {type(entries).__name__}, expected a dict")
            for name, value in entries.items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
                tensors[f"{prefix}{name}"] = value
        modules = current.state.get("_modules") or {}
        if not isinstance(modules, dict):
            raise CheckpointError(f"{prefix}_modules is a {type(modules).__name__}, expected a dict")
        children = []
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(
                    f"submodule {prefix}{name} is a {type(child).__name__}, expected a persistent network"
                )
            children.append((f"{prefix}{name}.", child))
        stack.extend(reversed(children))  # depth-first in registration order, as state_dict() is
    return tensors, records


# Attributes that only choose how fast a block runs (which blocks use low precision, memory format).
_SPEED_HINTS = frozenset({"use_fp16", "channels_last"})


def _same(recorded: Any, ours: Any) -> bool:
    if isinstance(recorded, float | int) and isinstance(ours, float | int) and not isinstance(recorded, bool):
        return bool(np.isclose(float(recorded), float(ours), rtol=1e-6, atol=0))
    return bool(_plain(recorded) == _plain(ours))


@dataclass(frozen=True)
class _Family:
    """How one recorded network class becomes ours: its constructor, bounds and argument names."""

    class_name: str
    build: Callable[..., nn.Module]
    schema: Fields
    positional: tuple[str, ...]  # constructor arguments _init_args may hold, in order
    from_state: tuple[str, ...]  # arguments read from the recorded plain attributes when the kwargs lack them


_GENERATOR = _Family(
    "Generator",
    Generator,
    GENERATOR_KWARGS_SCHEMA,
    ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"),
    ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"),
)
# The discriminator's positional order is not in the specification: its records must use keywords.
_DISCRIMINATOR = _Family("Discriminator", Discriminator, DISCRIMINATOR_KWARGS_SCHEMA, (), ())


def _network_from_record(record: PersistentRecord, where: str, family: _Family) -> nn.Module:
    """Builds our network of ``family`` from the record's constructor arguments and checks it against the record."""
    if record.class_name != family.class_name:
        raise CheckpointError(f"{where} is a {record.class_name!r}, expected a StyleGAN2-ADA {family.class_name!r}")
    if record.version != PERSISTENCE_VERSION:
        warnings.warn(
            f"{where}: persistence format version {record.version}, expected {PERSISTENCE_VERSION}", stacklevel=3
        )
    kwargs = record.init_kwargs
    args = _plain(record.state.get("_init_args") or [])
    if not isinstance(kwargs, dict) or not isinstance(args, list):
        raise CheckpointError(f"{where}: its constructor arguments are not a dict and a list")
    positional = family.positional
    if len(args) > len(positional):
        raise CheckpointError(
            f"{where}: {len(args)} positional constructor arguments, at most {len(positional)} expected"
        )
    kwargs.update(zip(positional, args, strict=False))
    # Drive the build from the recorded plain attributes where the kwargs leave them out.
    for name in family.from_state:
        if name not in kwargs and name in record.state:
            kwargs[name] = record.state[name]
    # Bounds first, then a build on the meta device (no memory) to compare the record with.
    problem = config_problem(kwargs, family.schema, "its constructor arguments")
    if problem is not None:
        raise CheckpointError(f"{where}: {problem}")
    try:
        with torch.device("meta"):
            skeleton = family.build(**kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{where}: cannot rebuild the network from its recorded arguments {_short(kwargs)}: {error}"
        ) from error
    tensors, records = _flatten(record)
    modules = dict(skeleton.named_modules())
    hints: list[tuple[str, str, bool]] = []  # (module, attribute, value) to set on the real network
    for name, sub in records.items():
        ours = modules.get(name)
        label = f"{where}.{name}" if name else where
        if ours is None or type(ours).__name__ != sub.class_name:
            raise CheckpointError(
                f"{label} is a {sub.class_name!r}, our rebuilt network has "
                f"{type(ours).__name__ if ours is not None else 'nothing'} there (not a StyleGAN2-ADA {family.class_name.lower()}?)"
            )
        for attribute in SNAPSHOT_ATTRIBUTES.get(sub.class_name, ()):
            if attribute not in sub.state:
                continue
            if attribute in _SPEED_HINTS:  # no effect on the output: follow the file, never refuse it
                hints.append((name, attribute, bool(sub.state[attribute])))
                continue
            if not _same(sub.state[attribute], getattr(ours, attribute)):
                raise CheckpointError(
                    f"{label}.{attribute} is {_short(sub.state[attribute])} in the file but "
                    f"{getattr(ours, attribute)!r} in the rebuilt network"
                )
    check_declared_tensors(describe_tensors(tensors), skeleton, where)
    check_finite(tensors, where)

    network = family.build(**kwargs)
    for name, attribute, value in hints:
        setattr(network.get_submodule(name), attribute, value)
    network.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    return network.requires_grad_(False).eval()


def load_generator_pickle(path: str | Path, *, which: str = "G_ema", require_conditional: bool = False) -> Generator:
    """Our :class:`Generator` holding the weights of ``which`` ("G_ema", default, or "G") of a snapshot.

    Never imports or executes anything from the file (see the module docstring). The network
    comes back on the CPU, in eval mode, with ``requires_grad=False``.

    Raises:
        ForbiddenGlobalError: the file references a global outside the whitelist.
        CheckpointError: truncated or corrupt file, no ``which`` network, not a StyleGAN2-ADA
            generator, or an unconditional one when ``require_conditional``.
    """
    if which not in NETWORK_KEYS:
        raise ValueError(f"which must be one of {NETWORK_KEYS}, got {which!r}")
    network = _load_network(path, which, _GENERATOR)
    assert isinstance(network, Generator)  # _GENERATOR builds one
    if require_conditional and network.c_dim == 0:
        raise CheckpointError(
            f"{path}: {which} is unconditional (c_dim = 0); a class-conditional generator is required"
        )
    return network


def load_discriminator_pickle(path: str | Path) -> Discriminator:
    """Our :class:`~.discriminator.Discriminator` holding the weights of a snapshot's ``D``.

    Read like :func:`load_generator_pickle` (nothing in the file is imported or executed), built
    from the constructor arguments the record holds (spec §6: ``D.init_kwargs``), on the CPU, in
    eval mode, with ``requires_grad=False``.

    Raises:
        ForbiddenGlobalError: the file references a global outside the whitelist.
        CheckpointError: truncated or corrupt file, no ``D``, or not a discriminator we can rebuild.
    """
    network = _load_network(path, "D", _DISCRIMINATOR)
    assert isinstance(network, Discriminator)  # _DISCRIMINATOR builds one
    return network


def _load_network(path: str | Path, which: str, family: _Family) -> nn.Module:
    """The network under the snapshot's key ``which``, rebuilt as ``family``."""
    data = read_snapshot(path)
    if which not in data or data[which] is None:
        found = ", ".join(_short(k, 40) for k in list(data)[:10]) or "nothing"
        raise CheckpointError(f"{path} has no {which} network (it holds: {found})")
    record = data[which]
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"{path}: {which} is a {type(record).__name__}, not a persistent network")
    try:
        return _network_from_record(record, f"{Path(path).name}:{which}", family)
    except CheckpointError:
        raise
    except Exception as error:  # a hostile record reaches many code paths; every failure is named
        raise CheckpointError(
            f"{path}: {which} is not a readable StyleGAN2-ADA {family.class_name.lower()} record: "
            f"{type(error).__name__}: {_short(error)}"
        ) from error
