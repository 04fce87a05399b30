"""``atgan prepare-guard``: distil (or find in the cache) a generator's guards ahead of a fit."""

from __future__ import annotations

import time
from pathlib import Path

import click

from atgan_plugin.cli.options import checkpoint_options, device_option, guard_cache_option, progress_option, user_errors
from atgan_plugin.utils import resolve_device

__all__ = ["prepare_guard_command"]


@click.command("prepare-guard")
@checkpoint_options("generator")
@click.option(
    "--add-guard",
    "added_guards",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="A classifier checkpoint the written generator should carry as a guard besides its own (repeatable; "
    "with --out).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the generator, in our safetensors format, carrying its guards (own, added, distilled), so "
    'that guard="auto" needs no distillation wherever the file goes.',
)
@click.option("--half/--no-half", default=False, show_default=True, help="With --out: store the weights as float16.")
@guard_cache_option
@device_option
@progress_option
@user_errors
def prepare_guard_command(
    generator_path: str | None,
    added_guards: tuple[str, ...],
    out: str | None,
    half: bool,
    guard_cache_dir: str | None,
    device: str,
    progress: bool,
) -> None:
    """Distil (or find in the cache) the guard ATGANAttack(guard="auto") uses for a generator.

    A generator that carries a distilled guard needs none; any other gets a small classifier trained
    adversarially on G_orig(z, y) -> y, cached under a hash of the generator's weights.
    """
    from atgan_plugin.attack.guards import default_cache_dir
    from atgan_plugin.workflows.guards import prepare_guards, write_guarded_generator
    from atgan_plugin.workflows.networks import checkpoint_path, load_networks

    dev = resolve_device(device)
    path = checkpoint_path("generator", generator_path)
    generator = load_networks(dev, generator=str(path))[0]["generator"]
    if added_guards and out is None:
        raise click.BadParameter("--add-guard only changes the file written by --out", param_hint="'--add-guard'")
    start = time.perf_counter()
    guards = prepare_guards(generator, added_guards, cache_dir=guard_cache_dir, device=dev, progress=progress)
    names = ", ".join(type(g).__name__ for g in guards)
    cache = Path(guard_cache_dir) if guard_cache_dir else default_cache_dir()
    click.echo(f"{len(guards)} guard(s) for {path} ({names}) in {time.perf_counter() - start:.1f} s; cache: {cache}")
    if out is not None:
        write_guarded_generator(generator, guards, path, out, half=half)
        click.echo(f"wrote {out}: the generator and its {len(guards)} guard(s)")
