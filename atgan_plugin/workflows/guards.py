"""``atgan prepare-guard``: the guards ``ATGANAttack(guard="auto")`` uses for a generator, made once, and
optionally the generator written carrying them (so that "auto" needs no distillation where it goes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from atgan_plugin.checkpoints import CheckpointError, read_header

__all__ = ["prepare_guards", "write_guarded_generator"]


def prepare_guards(
    generator: nn.Module,
    added_guards: tuple[str, ...],
    *,
    cache_dir: str | None,
    device: torch.device,
    progress: bool,
) -> list[nn.Module]:
    """The "auto" guards of ``generator``: its own, the classifiers ``added_guards`` and, when it carries
    no distilled guard, one distilled from it (or found in ``cache_dir``). ``generator`` keeps its own
    and the added ones as its default guards."""
    from atgan_plugin.adapters import SharedGuards
    from atgan_plugin.attack.guards import AUTO, resolve_guards
    from atgan_plugin.models import load_classifier

    extra = [load_classifier(guard, device=device) for guard in added_guards]
    own = tuple(getattr(generator, "default_guards", ()))
    # An adapter's attribute; nn.Module's __getattr__ would type it as Tensor | Module.
    cast(Any, generator).default_guards = SharedGuards((*own, *extra))
    return list(resolve_guards(AUTO, generator, cache_dir=cache_dir, device=device, progress=progress))


def write_guarded_generator(
    generator: nn.Module, guards: list[nn.Module], source: Path, out: str, *, half: bool
) -> None:
    """Writes ``generator`` carrying ``guards`` to ``out`` in our safetensors format, keeping ``source``'s
    training record (train-gan's options and metrics) when it has one."""
    if not hasattr(generator, "save"):
        raise CheckpointError(f"{type(generator).__name__} cannot be written in our format")
    from atgan_plugin.adapters import SharedGuards

    try:
        record: dict[str, Any] = dict(read_header(source).training)
    except CheckpointError:  # an NVIDIA pickle
        record = {}
    adapter = cast(Any, generator)  # an adapter with save() (checked above), not any nn.Module
    adapter.default_guards = SharedGuards(tuple(g.cpu() for g in guards))
    record = {**record, "source": str(source), "guards": [type(g).__name__ for g in guards]}
    adapter.cpu().save(out, record, half=half)
