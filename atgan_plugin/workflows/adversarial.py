"""``atgan attack``'s output: adversarial examples from a fitted attack, and the files of its run folder.

Examples come in chunks of 500 from a seeded stream of ``(y_s, z)``; with several targets, example i
has target ``settings[i % K]`` and a source class other than its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from atgan_plugin import runs
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.checkpoints import atomic_write, write_safetensors
from atgan_plugin.workflows.fits import fit_summary, save_fits

if TYPE_CHECKING:  # imported lazily: it pulls in foolbox and advertorch
    from atgan_plugin.attack.atgan import ATGANAttack

__all__ = ["AttackRun", "generate_examples", "write_attack_run", "write_examples"]

CHUNK = 500  # examples per generation call


def generate_examples(
    attack: ATGANAttack,
    model: nn.Module,
    generator: Any,
    settings: list[int | None],
    n: int,
    seed: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """``n`` adversarial examples of ``generator``'s fits for ``settings`` (one target or None, or several
    targets), on the CPU.

    Returns images (n, C, H, W) in [0, 1], source_labels and predicted_labels (n,) and, when
    targeted, target_labels (n,): the tensors of adversarial.safetensors.
    """
    num_classes = int(generator.num_classes)
    rng = torch.Generator().manual_seed(seed + 1)
    images, sources, predicted, targets_made = [], [], [], []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        if len(settings) == 1:
            y_s = sample_sources(m, num_classes, settings[0], rng)
            chunk_targets = None if settings[0] is None else torch.full((m,), settings[0])
        else:
            chunk_targets = torch.tensor(settings)[(start + torch.arange(m)) % len(settings)]
            y = torch.randint(num_classes - 1, (m,), generator=rng)
            y_s = y + (y >= chunk_targets).long()  # never the example's own target
        y_s = y_s.to(device)
        z = generator.sample_z(m, generator=rng, device=device)
        adversarial = torch.empty((m, *generator.image_shape), device=device)
        for setting in settings:
            if chunk_targets is None or len(settings) == 1:
                rows = torch.ones(m, dtype=torch.bool)
            else:
                rows = torch.eq(chunk_targets, -1 if setting is None else setting)
            rows = rows.to(device)
            made = attack.generate(y_s[rows], target=setting, z=z[rows], model=model)
            adversarial[rows] = cast(torch.Tensor, made)
        with torch.no_grad():
            predicted.append(model(adversarial).argmax(1).cpu())
        images.append(adversarial.cpu())
        sources.append(y_s.cpu())
        if chunk_targets is not None:
            targets_made.append(chunk_targets)
    tensors = {
        "images": torch.cat(images).contiguous(),
        "source_labels": torch.cat(sources),
        "predicted_labels": torch.cat(predicted),
    }
    if targets_made:
        tensors["target_labels"] = torch.cat(targets_made).long()
    return tensors


def fooled(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per example (n,) bool: the model outputs the target (targeted) or not the source class (untargeted)."""
    if "target_labels" in tensors:
        return torch.eq(tensors["predicted_labels"], tensors["target_labels"])
    return torch.ne(tensors["predicted_labels"], tensors["source_labels"])


def write_examples(path: Path, tensors: dict[str, torch.Tensor], settings: list[int | None]) -> None:
    """``tensors`` as safetensors (metadata: the targets and the bounds) or, for a ``.pt`` path, torch.save."""
    if path.suffix == ".safetensors":
        label = "none" if "target_labels" not in tensors else ",".join(str(t) for t in settings)
        write_safetensors(path, tensors, {"target": label, "bounds": "0,1"})
        return
    with atomic_write(path) as tmp:
        torch.save(tensors, tmp)


@dataclass
class AttackRun:
    """What ``atgan attack`` wrote and measured: the files in the run folder and the share of fooled examples."""

    outputs: list[str]
    fooled_rate: float
    targeted: bool


def write_attack_run(
    attack: ATGANAttack,
    model: nn.Module,
    generator: Any,
    run_dir: Path,
    settings: list[int | None],
    *,
    n: int,
    seed: int,
    device: torch.device,
    file_format: str,
    save_fitted: bool,
) -> AttackRun:
    """Generates ``n`` examples and writes adversarial.<file_format>, the fits (when ``save_fitted``),
    grid.png, classes.png, targets.png (with every class a target) and summary.json into ``run_dir``."""
    from atgan_plugin.paper.evaluation import save_class_grid, save_difference_grid, save_target_grid

    tensors = generate_examples(attack, model, generator, settings, n, seed, device)
    was_fooled = fooled(tensors)
    fooled_rate = float(was_fooled.float().mean())
    out = run_dir / f"adversarial.{file_format}"
    write_examples(out, tensors, settings)
    outputs = ["options.json", out.name]
    if save_fitted:
        outputs += save_fits(attack, model, run_dir, settings, only=len(settings) == 1)
    save_difference_grid(attack, model, run_dir / "grid.png", target=settings[0])
    save_class_grid(attack, model, run_dir / "classes.png", target=settings[0])
    outputs += ["grid.png", "classes.png", "summary.json"]
    if len(settings) == int(generator.num_classes):
        save_target_grid(attack, model, run_dir / "targets.png")
        outputs.append("targets.png")
    fits = [fit_summary(attack.fit(model, t)) for t in settings]
    summary: dict[str, Any] = {
        "n": n,
        "target": settings[0] if len(settings) == 1 else None,
        "success_rate": fooled_rate,
        "fit": fits[0],
    }
    if len(settings) > 1:
        by_target = {str(t): float(was_fooled[tensors["target_labels"] == t].float().mean()) for t in settings}
        summary.update(targets=settings, success_per_target=by_target, fits=fits)
    runs.write_json(run_dir / "summary.json", summary)
    return AttackRun(outputs, fooled_rate, "target_labels" in tensors)
