"""Mass generation: N adversarial examples from a saved fit, as safetensors shards plus a manifest.

``atgan generate --fit g_attack.safetensors -n 1000000 --out DIR`` (:func:`generate_shards`) splits
the N examples into shards of ``shard_size``; shard ``i`` holds examples ``[i · shard_size, …)`` and
draws its ``(y_s, z)`` from its own seed (:meth:`GenerationPlan.shard_seed`), so its content depends
only on the plan, never on which process made it or when. Each shard is made by
:meth:`ATGANAttack.generate <atgan_plugin.attack.atgan.ATGANAttack.generate>` (the attack's own path,
shrink included) and written atomically; under torchrun rank r makes the shards ``i ≡ r (mod N)``.

A run that was killed resumes: a shard file exists only complete (written to a temporary file,
hashed, flushed and renamed), is verified against the plan and kept, never written twice; missing
ones are made. ``DIR/generation.json`` (the plan, written first) refuses a resume with other
settings; ``DIR/manifest.json`` is written last, by rank 0, and lists every shard with its count,
SHA-256 and seed.

Why safetensors shards (not WebDataset tars): an example is a float tensor, and safetensors stores
the images and labels of 10,000 examples as three arrays that load with one memory map and no code
execution (``safetensors.torch.load_file``, or NumPy/JAX without this package), read per tensor
without reading the rest; a tar of per-example files suits streaming of encoded images (PNG, JPEG)
and would quantise the adversarial images, which can undo their effect.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module
from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.checkpoints import atomic_write, remove_stale_temporaries, write_safetensors

__all__ = [
    "MANIFEST",
    "PLAN",
    "GenerationError",
    "GenerationPlan",
    "ModelNotNeeded",
    "file_sha256",
    "generate_shards",
    "read_shard",
]

MANIFEST = "manifest.json"
PLAN = "generation.json"
SHARD_KIND = "atgan.adversarial_examples"
_FORMAT = 1


class GenerationError(ValueError):
    """An output folder that holds another generation, or a shard that does not match its plan."""


class ModelNotNeeded(nn.Module):
    """Stands for the target model when ``search_steps=0``: generation never calls it (no shrink)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the model was called although search_steps=0 needs none; pass --model")


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
        if self.total < 1 or self.shard_size < 1:
            raise ValueError(f"the count and the shard size must be >= 1, got {self.total} and {self.shard_size}")

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
        return {"format": _FORMAT, **asdict(self)}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_inputs(plan: GenerationPlan, shard: int, generator: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Shard ``shard``'s source classes ``(n,)`` and latents ``(n, z_dim)``, on CPU, from its seed."""
    rng = torch.Generator().manual_seed(plan.shard_seed(shard))
    n = plan.count(shard)
    adapter = as_generator_module(generator)
    sources = sample_sources(n, int(adapter.num_classes), plan.target, rng)
    return sources, adapter.sample_z(n, generator=rng, device="cpu")


def read_shard(path: str | Path) -> dict[str, torch.Tensor]:
    """A shard's tensors: ``images`` ``(n, C, H, W)`` float32 in [0, 1], ``source_labels`` ``(n,)`` int64 and,
    for a targeted fit, ``target_labels``."""
    from safetensors.torch import load_file

    return load_file(str(path))


def _verify(path: Path, plan: GenerationPlan, shard: int) -> str | None:
    """Why the existing ``path`` is not shard ``shard`` of ``plan`` (None: it is)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shape = f.get_slice("images").get_shape()
    except (SafetensorError, OSError, KeyError) as error:
        return f"unreadable ({error})"
    expected = {
        "kind": SHARD_KIND,
        "shard": str(shard),
        "seed": str(plan.shard_seed(shard)),
        "count": str(plan.count(shard)),
    }
    wrong = [key for key, value in expected.items() if meta.get(key) != value]
    if wrong or not shape or shape[0] != plan.count(shard):
        return f"its {', '.join(wrong) or 'image count'} do not match the plan"
    return None


def _host_buffer(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Where a shard's images gather on the host: pinned memory when they come from a GPU (async copies)."""
    return torch.empty(shape, pin_memory=device.type == "cuda")


def _make_shard(
    attack: ATGANAttack,
    model: Any,
    plan: GenerationPlan,
    shard: int,
    batch_size: int,
    device: torch.device,
    advance: Callable[[int], None],
) -> dict[str, torch.Tensor]:
    sources, z = shard_inputs(plan, shard, attack.generator)
    if device.type == "cuda":
        sources, z = sources.pin_memory(), z.pin_memory()
    images = _host_buffer((len(z), *attack.generator.image_shape), device)
    for start in range(0, len(z), batch_size):
        rows = slice(start, start + batch_size)
        y = sources[rows].to(device, non_blocking=True)
        adversarial = attack.generate(y, target=plan.target, z=z[rows].to(device, non_blocking=True), model=model)
        images[rows].copy_(adversarial, non_blocking=True)  # type: ignore[arg-type]  # one tensor: no with_reference
        advance(len(y))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tensors = {"images": images, "source_labels": sources.clone()}
    if plan.target is not None:
        tensors["target_labels"] = torch.full_like(sources, plan.target)
    return tensors


def check_plan(out_dir: Path, plan: GenerationPlan) -> None:
    """Writes ``out_dir/generation.json`` for a new folder; for an existing one, a ``GenerationError``
    naming what differs when it was started with another plan."""
    path = out_dir / PLAN
    if path.exists():
        try:
            earlier = json.loads(path.read_text()).get("plan", {})
        except (OSError, ValueError, AttributeError) as error:
            raise GenerationError(f"{path} is unreadable ({error}); use another --out") from None
        differs = {k: (earlier.get(k), v) for k, v in plan.record().items() if earlier.get(k) != v}
        if differs:
            listed = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in differs.items())
            raise GenerationError(
                f"{out_dir} holds a generation with {listed}; resume it with the same settings or use another --out"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"plan": plan.record()}, indent=2, sort_keys=True) + "\n")


def generate_shards(
    attack: ATGANAttack,
    model: Any,
    plan: GenerationPlan,
    out_dir: str | Path,
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 1000,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], int, float]:
    """Makes (or, resuming, verifies and keeps) this rank's shards of ``plan`` in ``out_dir``.

    ``attack`` must hold the fit for ``model`` and ``plan.target`` (``attack.load_fit``); ``out_dir`` must
    exist with its plan (:func:`check_plan`). Returns this rank's manifest entries (shard order), the
    number of examples it generated now (resumed shards excluded) and the seconds it took.
    """
    out_dir = Path(out_dir)
    device = next(attack.fit(model, plan.target).generator.parameters()).device
    mine = list(range(rank, plan.num_shards, world_size))
    bar = tqdm(
        total=sum(plan.count(i) for i in mine),
        unit="img",
        unit_scale=True,
        disable=not progress,
        desc=f"generating ({world_size} process{'es' if world_size > 1 else ''}, rank {rank}'s share)",
    )
    entries, generated, start = [], 0, time.perf_counter()
    for shard in mine:
        path = out_dir / plan.shard_name(shard)
        if path.exists():
            problem = _verify(path, plan, shard)
            if problem is None:
                bar.update(plan.count(shard))
                entries.append(_entry(plan, shard, file_sha256(path)))
                continue
            warnings.warn(f"{path} is not shard {shard} of this plan ({problem}); making it again", stacklevel=2)
        tensors = _make_shard(attack, model, plan, shard, batch_size, device, bar.update)
        metadata = {
            "kind": SHARD_KIND,
            "shard": str(shard),
            "seed": str(plan.shard_seed(shard)),
            "count": str(plan.count(shard)),
            "first": str(plan.first(shard)),
            "target": "none" if plan.target is None else str(plan.target),
            "fit_sha256": plan.fit_sha256,
            "bounds": "0,1",
        }
        sha256 = write_safetensors(path, tensors, metadata)
        entries.append(_entry(plan, shard, sha256))
        generated += plan.count(shard)
    bar.close()
    return entries, generated, time.perf_counter() - start


def _entry(plan: GenerationPlan, shard: int, sha256: str) -> dict[str, Any]:
    return {
        "path": plan.shard_name(shard),
        "count": plan.count(shard),
        "sha256": sha256,
        "seed": plan.shard_seed(shard),
        "first": plan.first(shard),
    }


def write_manifest(
    out_dir: str | Path, plan: GenerationPlan, entries: list[dict[str, Any]], facts: dict[str, Any]
) -> Path:
    """``out_dir/manifest.json``: the plan, its seeds and every shard (written last: the folder is complete)."""
    entries = sorted(entries, key=lambda e: e["first"])
    if [e["path"] for e in entries] != [plan.shard_name(i) for i in range(plan.num_shards)] or sum(
        e["count"] for e in entries
    ) != plan.total:
        raise GenerationError(f"the shards made do not cover the plan's {plan.total} examples")
    manifest = {
        "kind": SHARD_KIND,
        "format": _FORMAT,
        "total": plan.total,
        "shard_size": plan.shard_size,
        "seeds": {
            "seed": plan.seed,
            "scheme": "shard i draws (source_labels, z) from torch.Generator seeded with "
            "SeedSequence([seed, i]).generate_state(1, uint64)[0] >> 1; its 'seed' below",
        },
        "target": plan.target,
        "plan": plan.record(),
        "shards": entries,
        "tensors": {
            "images": "float32 (n, C, H, W) in [0, 1]",
            "source_labels": "int64 (n,)",
            **({"target_labels": "int64 (n,)"} if plan.target is not None else {}),
        },
        **facts,
    }
    path = Path(out_dir) / MANIFEST
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def clear_stale(out_dir: str | Path) -> list[Path]:
    """Removes the temporary files a killed run left (call while no process writes to ``out_dir``)."""
    return remove_stale_temporaries(out_dir)
