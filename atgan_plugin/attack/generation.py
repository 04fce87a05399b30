"""Mass generation: N adversarial examples from a saved fit, as safetensors shards plus a manifest.

``atgan generate --fit g_attack.safetensors -n 1000000 --out DIR`` (:func:`generate_shards`) splits
the N examples into shards of ``shard_size``; shard ``i`` holds examples ``[i · shard_size, …)`` and
draws its ``(y_s, z)`` from its own seed (:meth:`GenerationPlan.shard_seed`), so its content depends
only on the plan, never on which process made it or when. Each shard is made by
:meth:`ATGANAttack.generate <atgan_plugin.attack.atgan.ATGANAttack.generate>` (the attack's own path,
shrink included) and written atomically; under torchrun rank r makes the shards ``i ≡ r (mod N)``.

A run that was killed resumes: a shard file exists only complete (written to a temporary file,
hashed, flushed and renamed); a kept shard is verified in full against the plan and its recorded
digests (:func:`~atgan_plugin.attack.shard_files.verify_shard`) and never written twice; missing or
damaged ones are made. ``DIR/generation.json`` (the plan, written first, after the sizes are checked
against :mod:`~atgan_plugin.attack.generation_plan`'s limits and the free disk) refuses a resume with
other settings, and a folder holding shards of another plan is refused even without it;
``DIR/manifest.json`` is written last, by rank 0, and lists every shard with its count, SHA-256 and
seed. Shards are byte-for-byte reproducible: the same plan gives the same files.

Why safetensors shards (not WebDataset tars): an example is a float tensor, and safetensors stores
the images and labels of 10,000 examples as three arrays that load with one memory map and no code
execution (``safetensors.torch.load_file``, or NumPy/JAX without this package), read per tensor
without reading the rest; a tar of per-example files suits streaming of encoded images (PNG, JPEG)
and would quantise the adversarial images, which can undo their effect.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module
from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.attack.generation_plan import PLAN_FORMAT, GenerationError, GenerationPlan, check_shard_bytes
from atgan_plugin.attack.shard_files import SHARD_KIND, foreign_shard, verify_shard, write_shard
from atgan_plugin.checkpoints import atomic_write, remove_stale_temporaries

__all__ = [
    "MANIFEST",
    "PLAN",
    "GenerationError",
    "GenerationPlan",
    "ModelNotNeeded",
    "check_plan",
    "file_sha256",
    "generate_shards",
    "read_shard",
]

MANIFEST = "manifest.json"
PLAN = "generation.json"
_LABEL_BYTES = 8  # an int64 label per example and label tensor


class ModelNotNeeded(nn.Module):
    """Stands for the target model when ``search_steps=0``: generation never calls it (no shrink)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the model was called although search_steps=0 needs none; pass --model")


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


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file of ours in the output folder; a ``GenerationError`` naming the file otherwise."""
    if path.is_symlink() or not path.is_file():
        raise GenerationError(
            f"{path} is a link or not a regular file, not one atgan generate wrote; use another --out"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise GenerationError(f"{path} is unreadable ({type(error).__name__}: {error}); use another --out") from None
    if not isinstance(data, dict) or not isinstance(data.get("plan"), dict):
        raise GenerationError(f"{path} holds no plan (a JSON object with a 'plan' object); use another --out")
    return data


def _differences(earlier: dict[str, Any], plan: GenerationPlan) -> str:
    return ", ".join(f"{k} {earlier.get(k)!r} (now {v!r})" for k, v in plan.record().items() if earlier.get(k) != v)


def _check_disk(out_dir: Path, plan: GenerationPlan, image_shape: tuple[int, ...]) -> None:
    """A ``GenerationError`` when the shards still to write cannot fit on ``out_dir``'s disk."""
    per_example = check_shard_bytes(plan, image_shape) // min(plan.shard_size, plan.total)
    per_example += _LABEL_BYTES * (1 if plan.target is None else 2)
    kept = sum(p.stat().st_size for p in out_dir.glob("shard-*.safetensors") if p.is_file()) if out_dir.is_dir() else 0
    needed = plan.total * per_example - kept
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise GenerationError(
            f"{plan.total:,} examples need about {needed / 1024**3:,.1f} GiB more in {out_dir}, "
            f"which has {free / 1024**3:,.1f} GiB free; ask for fewer (-n) or use another --out"
        )


def check_plan(out_dir: Path, plan: GenerationPlan, *, image_shape: tuple[int, ...] | None = None) -> None:
    """Checks ``out_dir`` against ``plan`` and writes ``out_dir/generation.json`` for a new folder.

    A :class:`GenerationError` names what is wrong, before anything is written: a shard of
    ``image_shape`` too large for memory, too little free disk, a folder started with another plan
    (its ``generation.json``, or without one its ``manifest.json`` or any of its shards), a plan file
    that holds no plan, or a folder that cannot be written to.
    """
    if image_shape is not None:
        check_shard_bytes(plan, image_shape)
    path, manifest = out_dir / PLAN, out_dir / MANIFEST
    recorded = path if path.exists() or path.is_symlink() else manifest if manifest.exists() else None
    if recorded is not None:
        differs = _differences(_read_json_object(recorded)["plan"], plan)
        if differs:
            raise GenerationError(
                f"{out_dir} holds a generation with {differs} ({recorded.name}); "
                "resume it with the same settings or use another --out"
            )
    for shard in sorted(out_dir.glob("shard-*.safetensors")) if out_dir.is_dir() else []:
        problem = foreign_shard(shard, plan)
        if problem is not None:
            raise GenerationError(
                f"{shard} is a shard of another generation: {problem}; use another --out or move the shards away"
            )
    if image_shape is not None:
        _check_disk(out_dir, plan, image_shape)
    if path.exists():
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps({"plan": plan.record()}, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        raise GenerationError(f"cannot write to --out {out_dir}: {error.strerror or error}") from None


def _recorded_digests(out_dir: Path, plan: GenerationPlan) -> dict[str, str]:
    """Each shard's SHA-256 as an earlier run of the same plan recorded it in ``manifest.json`` (none: empty)."""
    try:
        manifest = _read_json_object(out_dir / MANIFEST)
    except GenerationError:
        return {}
    if manifest["plan"] != plan.record() or not isinstance(manifest.get("shards"), list):
        return {}
    return {
        e["path"]: e["sha256"]
        for e in manifest["shards"]
        if isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str)
    }


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
    image_shape = tuple(attack.generator.image_shape)
    check_shard_bytes(plan, image_shape)  # before any shard is gathered in memory
    device = next(attack.fit(model, plan.target).generator.parameters()).device
    mine = range(rank, plan.num_shards, world_size)
    recorded = _recorded_digests(out_dir, plan)
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
        if path.exists() or path.is_symlink():
            sources = shard_inputs(plan, shard, attack.generator)[0]
            problem, sha256 = verify_shard(
                path, plan, shard, sources=sources, image_shape=image_shape, recorded_sha256=recorded.get(path.name)
            )
            if problem is None:
                bar.update(plan.count(shard))
                entries.append(_entry(plan, shard, sha256))
                continue
            warnings.warn(f"{path} is not shard {shard} of this plan ({problem}); making it again", stacklevel=2)
        tensors = _make_shard(attack, model, plan, shard, batch_size, device, bar.update)
        try:
            sha256 = write_shard(path, plan, shard, tensors)
        except OSError as error:
            raise GenerationError(f"cannot write {path}: {error.strerror or error}") from None
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
        "format": PLAN_FORMAT,
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
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as error:
        raise GenerationError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def clear_stale(out_dir: str | Path) -> list[Path]:
    """Removes the temporary files a killed run left (call while no process writes to ``out_dir``)."""
    return remove_stale_temporaries(out_dir)
