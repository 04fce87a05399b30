"""What decides every example of ``atgan generate``: the plan, and the sizes it may ask for.

A :class:`GenerationPlan` names the count, the sharding, the seed and the inputs (by SHA-256); the
shard files (:mod:`atgan_plugin.attack.shard_files`) and ``generation.json`` record it. Sizes are
checked when a plan is made and before anything is written or allocated: at most
:data:`MAX_SHARDS` shard files, and a shard's images at most :data:`MAX_SHARD_BYTES` in memory (a
shard is gathered on the host and serialised there before it is written).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_SHARDS", "MAX_SHARD_BYTES", "PLAN_FORMAT", "GenerationError", "GenerationPlan", "check_shard_bytes"]

PLAN_FORMAT = 2  # 2: shards record the whole plan and their tensors' digest
# our choice: a folder of 100,000 files still lists in a second; at the default 10,000 examples per
# shard that is a billion examples.
MAX_SHARDS = 100_000
# our choice: 2 GiB of float32 images per shard; serialising it needs about as much again.
MAX_SHARD_BYTES = 2 * 1024**3
_FLOAT32_BYTES = 4


class GenerationError(ValueError):
    """An output folder that holds another generation, a shard that does not match its plan, or a
    plan the machine cannot hold (the message names which)."""


def _gib(n: float) -> str:
    return f"{n / 1024**3:,.1f} GiB"


@dataclass(frozen=True)
class GenerationPlan:
    """What decides every example: the count, the sharding, the seed and the inputs (by digest)."""

    total: int
    shard_size: int
    seed: int
    target: int | None
    search_steps: int
    precision: str
    fit_sha256: str
    generator_sha256: str
    model_sha256: str | None  # None with search_steps = 0

    def __post_init__(self) -> None:
        for name in ("total", "shard_size", "seed", "search_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise GenerationError(f"the plan's {name} must be an integer, got {value!r}")
        if self.total < 1 or self.shard_size < 1:
            raise GenerationError(f"the count and the shard size must be >= 1, got {self.total} and {self.shard_size}")
        if self.num_shards > MAX_SHARDS:
            raise GenerationError(
                f"{self.total:,} examples in shards of {self.shard_size:,} make {self.num_shards:,} shard files; "
                f"at most {MAX_SHARDS:,}: pass --shard-size {-(-self.total // MAX_SHARDS):,} or more"
            )

    @property
    def num_shards(self) -> int:
        return -(-self.total // self.shard_size)

    def first(self, shard: int) -> int:
        return shard * self.shard_size

    def count(self, shard: int) -> int:
        return min(self.shard_size, self.total - self.first(shard))

    def shard_seed(self, shard: int) -> int:
        """Shard ``shard``'s seed: an independent stream of NumPy's ``SeedSequence([seed, shard])``."""
        return int(np.random.SeedSequence([self.seed, shard]).generate_state(1, np.uint64)[0] >> np.uint64(1))

    @staticmethod
    def shard_name(shard: int) -> str:
        return f"shard-{shard:06d}.safetensors"

    def record(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, **asdict(self)}


def check_shard_bytes(plan: GenerationPlan, image_shape: tuple[int, ...]) -> int:
    """The bytes of one full shard's images ``(shard_size, *image_shape)`` float32; a
    :class:`GenerationError` naming a smaller ``--shard-size`` when they exceed :data:`MAX_SHARD_BYTES`."""
    per_image = math.prod(image_shape) * _FLOAT32_BYTES
    size = min(plan.shard_size, plan.total)
    if size * per_image > MAX_SHARD_BYTES:
        raise GenerationError(
            f"a shard of {size:,} images of shape {tuple(image_shape)} takes {_gib(size * per_image)} in memory; "
            f"at most {_gib(MAX_SHARD_BYTES)}: pass --shard-size {max(1, MAX_SHARD_BYTES // per_image):,} or less"
        )
    return size * per_image
