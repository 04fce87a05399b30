"""The ``atgan`` command line: train, attack, evaluate, demo, reproduce.

One module per command group, each parsing options and calling :mod:`atgan_plugin.workflows`:
``train`` (train-classifier, train-gan), ``guard`` (prepare-guard), ``attack`` (attack, fit),
``generate``, ``evaluate`` (evaluate, demo), ``reproduce`` (reproduce, reproduce-merge) and
``views`` (report, human-eval); ``options`` holds what they share.

Each command writes the options it ran with (``options.json``) next to its outputs. Errors a
user can fix (missing data, bad checkpoint, bad option) come out through click as one line,
never as a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from atgan_plugin import runs
from atgan_plugin.cli.attack import attack_command, fit_command
from atgan_plugin.cli.evaluate import demo_command, evaluate_command
from atgan_plugin.cli.generate import generate_command
from atgan_plugin.cli.guard import prepare_guard_command
from atgan_plugin.cli.options import RUN_DIR_KEY
from atgan_plugin.cli.reproduce import reproduce_command, reproduce_merge_command
from atgan_plugin.cli.train import train_classifier_command, train_gan_command
from atgan_plugin.cli.views import human_eval_command, report_command

__all__ = ["main"]


@click.group()
@click.version_option(package_name="atgan-plugin")
def main() -> None:
    """AT-GAN: fine-tune a conditional GAN into an adversarial generator, and use it."""


@main.result_callback()
def _mark_run_complete(result: Any, **_: Any) -> None:
    """After a command returned normally: marks the run folder it made (if any) complete."""
    run_dir = click.get_current_context().meta.get(RUN_DIR_KEY)
    if run_dir is not None:
        runs.mark_complete(run_dir)


for _command in (
    train_classifier_command,
    train_gan_command,
    prepare_guard_command,
    attack_command,
    fit_command,
    generate_command,
    evaluate_command,
    demo_command,
    reproduce_command,
    reproduce_merge_command,
    report_command,
    human_eval_command,
):
    main.add_command(_command)

if __name__ == "__main__":
    main()
