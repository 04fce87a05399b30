"""Bounds on what a checkpoint may declare, checked before anything is built from it.

A checkpoint's metadata names the constructor arguments of its network. A hostile or corrupt
file can claim ``z_dim = 10**6`` or a million mapping layers, and building that network costs
gigabytes before any weight is compared. Each network family therefore states a
:class:`Fields` schema (the argument names it accepts, each with its type and range) and
:func:`config_problem` compares the declared arguments with it first: a value of the wrong JSON
type, an unknown key, a negative size or an absurd one is described in one line naming the
field, which the loader raises as a ``CheckpointError`` naming the file.

The ranges are generous: every network we ship or read (Fashion-MNIST Models A–D, the oracle,
AC-WGAN_GP, CIFAR-10 WideResNets, NVIDIA's StyleGAN2-ADA configurations up to 1024 px) lies well
inside them; they only stop declarations no real network makes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["Fields", "Flag", "Int", "OneOf", "Optional", "Real", "Spec", "Taps", "config_problem"]


@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in ``[low, high]``."""

    low: int
    high: int

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer in [{self.low}, {self.high}]"
        return None if self.low <= value <= self.high else f"expected an integer in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class Real:
    """A finite number (int or float, not a bool) in ``[low, high]``."""

    low: float
    high: float

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"expected a finite number in [{self.low}, {self.high}]"
        return None if self.low <= value <= self.high else f"expected a number in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class Flag:
    """A JSON boolean."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "expected true or false"


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value in self.values else f"expected one of {list(self.values)}"


@dataclass(frozen=True)
class Taps:
    """A non-empty list of at most ``most`` finite numbers (a FIR filter's taps)."""

    most: int = 16

    def problem(self, value: Any) -> str | None:
        real = Real(-1e6, 1e6)
        if (
            not isinstance(value, list | tuple)
            or not 1 <= len(value) <= self.most
            or any(real.problem(v) for v in value)
        ):
            return f"expected a list of 1 to {self.most} finite numbers"
        return None


@dataclass(frozen=True)
class Optional:
    """``None`` (JSON null) or a value that ``spec`` accepts."""

    spec: Spec

    def problem(self, value: Any) -> str | None:
        return None if value is None else self.spec.problem(value)


@dataclass(frozen=True)
class Fields:
    """A JSON object whose keys are all in ``specs`` and include ``required``."""

    specs: Mapping[str, Spec]
    required: frozenset[str] = field(default_factory=frozenset)

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else "expected a JSON object"


Spec = Union[Int, Real, Flag, OneOf, Taps, Optional, Fields]


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, int | float | str | bool) or value is None else _json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_problem(config: Any, schema: Fields, name: str = "config") -> str | None:
    """What is wrong with ``config`` according to ``schema`` (the first field refused), or None.

    ``name`` names the object in the message. Nested objects are walked with an explicit stack, so
    no declaration can make this recurse deeply.
    """
    stack: list[tuple[str, Any, Spec]] = [(name, config, schema)]
    while stack:
        label, value, spec = stack.pop()
        problem = spec.problem(value)
        if problem is not None:
            return f"{label} is {_shown(value)}, {problem}"
        if isinstance(spec, Optional) and isinstance(spec.spec, Fields) and value is not None:
            stack.append((label, value, spec.spec))
        if not isinstance(spec, Fields):
            continue
        unknown = sorted(str(key) for key in value if key not in spec.specs)
        if unknown:
            return f"{label} has unknown keys {unknown[:5]} (known: {sorted(spec.specs)})"
        missing = sorted(spec.required - set(value))
        if missing:
            return f"{label} lacks the required keys {missing}"
        stack.extend((f"{label}.{key}", item, spec.specs[key]) for key, item in value.items())
    return None
