"""The shard files of ``atgan generate``: what each must hold, written and verified here.

A shard is a safetensors file: ``images`` ``(n, C, H, W)`` float32 in [0, 1], ``source_labels`` ``(n,)``
int64 and, for a targeted fit, ``target_labels`` ``(n,)`` int64. Its metadata records the whole plan
(``plan``, JSON), its place in it (``shard``, ``first``, ``count``, ``seed``) and ``tensors_sha256``, the
digest of its tensors (:func:`~atgan_plugin.checkpoints.tensor_digest`: names, dtypes, shapes and
bytes) taken before writing. The header is written in a fixed order, so identical plans give
identical files, byte for byte.

A resume keeps a shard only when :func:`verify_shard` finds nothing wrong: its bytes match the
manifest's SHA-256 where there is one, its tensors match their recorded digest, its metadata is
exactly this plan's, its tensors have the planned names, dtypes and shapes, its images are finite and
in [0, 1] and its labels are the ones its seed draws. :func:`foreign_shard` tells a shard of another
plan (refused by name: its folder's ``generation.json`` was removed or replaced) from a damaged one
(made again).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors

from atgan_plugin.attack.generation_plan import GenerationPlan
from atgan_plugin.checkpoints import tensor_digest, write_safetensors
from atgan_plugin.safetensors_files import header_of

__all__ = ["SHARD_KIND", "foreign_shard", "shard_metadata", "verify_shard", "write_shard"]

SHARD_KIND = "atgan.adversarial_examples"
_DIGEST = "tensors_sha256"


def shard_metadata(plan: GenerationPlan, shard: int) -> dict[str, str]:
    """Shard ``shard``'s metadata, all but its tensors' digest (safetensors metadata values are strings)."""
    return {
        "kind": SHARD_KIND,
        "plan": json.dumps(plan.record(), sort_keys=True),
        "shard": str(shard),
        "seed": str(plan.shard_seed(shard)),
        "count": str(plan.count(shard)),
        "first": str(plan.first(shard)),
        "target": "none" if plan.target is None else str(plan.target),
        "fit_sha256": plan.fit_sha256,
        "bounds": "0,1",
    }


def write_shard(path: Path, plan: GenerationPlan, shard: int, tensors: dict[str, torch.Tensor]) -> str:
    """Writes shard ``shard`` of ``plan`` atomically; returns the SHA-256 of the file's bytes."""
    return write_safetensors(path, tensors, {**shard_metadata(plan, shard), _DIGEST: tensor_digest(tensors)})


def _plan_differences(recorded: Any, plan: GenerationPlan) -> str | None:
    """How a shard's recorded plan (the JSON text of its ``plan`` metadata) differs from ``plan``."""
    try:
        earlier = json.loads(recorded) if isinstance(recorded, str) else None
    except ValueError:
        earlier = None
    if not isinstance(earlier, dict):
        return "it records no plan (written by another version of atgan generate?)"
    differs = [f"{k} {earlier.get(k)!r} (this plan: {v!r})" for k, v in plan.record().items() if earlier.get(k) != v]
    return f"it was made with {', '.join(differs)}" if differs else None


def foreign_shard(path: Path, plan: GenerationPlan) -> str | None:
    """Why the shard file ``path`` belongs to another generation than ``plan``, read from its metadata
    alone; ``None`` when it belongs to ``plan`` or cannot be read (a damaged shard is made again)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RecursionError):
        return None
    if meta.get("kind") != SHARD_KIND:
        return None
    return _plan_differences(meta.get("plan"), plan)


def _tensor_problem(
    tensors: dict[str, torch.Tensor], plan: GenerationPlan, sources: torch.Tensor, image_shape: tuple[int, ...]
) -> str | None:
    """What is wrong with a shard's tensors for ``plan`` (``sources``: the labels its seed draws)."""
    n = len(sources)
    names = {"images", "source_labels", *(["target_labels"] if plan.target is not None else [])}
    if set(tensors) != names:
        return f"it holds the tensors {sorted(tensors)}, not {sorted(names)}"
    images, labels = tensors["images"], tensors["source_labels"]
    if images.dtype != torch.float32 or tuple(images.shape) != (n, *image_shape):
        return f"its images are {images.dtype} {tuple(images.shape)}, not torch.float32 {(n, *image_shape)}"
    if not bool(torch.isfinite(images).all()):
        return f"{int((~torch.isfinite(images)).sum())} of its image values are NaN or infinite"
    if n and (float(images.min()) < 0 or float(images.max()) > 1):
        return "its images leave [0, 1]"
    if labels.dtype != torch.int64 or not torch.equal(labels, sources):
        return "its source_labels are not the ones its seed draws"
    if plan.target is not None:
        targets = tensors["target_labels"]
        if targets.dtype != torch.int64 or targets.shape != (n,) or not bool((targets == plan.target).all()):
            return f"its target_labels are not {n} times {plan.target}"
    return None


def verify_shard(
    path: Path,
    plan: GenerationPlan,
    shard: int,
    *,
    sources: torch.Tensor,
    image_shape: tuple[int, ...],
    recorded_sha256: str | None = None,
) -> tuple[str | None, str]:
    """Whether ``path`` is shard ``shard`` of ``plan``: ``(None, sha256)`` when it is, else ``(why not, sha256)``.

    ``sources`` ``(n,)`` are the source labels the shard's seed draws; ``recorded_sha256`` the file's digest
    in the manifest of an earlier run of the same plan, if any.
    """
    if path.is_symlink() or not path.is_file():
        return "it is a link or not a regular file, not a shard we wrote", ""
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if recorded_sha256 is not None and sha256 != recorded_sha256:
        return "its SHA-256 differs from the one manifest.json records", sha256
    try:
        meta = header_of(data)[0].get("__metadata__") or {}
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RecursionError) as error:
        return f"unreadable ({type(error).__name__}: {error})", sha256
    if not isinstance(meta, dict) or meta.get(_DIGEST) != tensor_digest(tensors):
        return "its tensors do not match the digest it records (changed bytes)", sha256
    expected = {**shard_metadata(plan, shard), _DIGEST: meta[_DIGEST]}
    if meta != expected:
        wrong = sorted(k for k in set(meta) | set(expected) if meta.get(k) != expected.get(k))
        return f"its metadata ({', '.join(wrong)}) is not this plan's", sha256
    return _tensor_problem(tensors, plan, sources, image_shape), sha256
