"""``atgan report`` and ``atgan human-eval``: where people look at a run.

Registered on the ``atgan`` group by :mod:`atgan_plugin.cli`. Errors a user can fix (an unknown
run folder, a port in use, a malformed answers file) come out as one click error line.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from atgan_plugin.human_eval import ItemSet

__all__ = ["human_eval_command", "report_command"]


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report_command(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html from the run's files (options, result tables, grids, fit curves)."""
    from atgan_plugin.report import RunFolderError, write_report

    try:
        path = write_report(run_dir)
    except RunFolderError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"report: {path}")


@click.command("human-eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
# The item set: made once, stored in RUN_DIR/human-eval/.
@click.option(
    "--per-class",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Latents per class, each shown through G_orig and through G_attack (paper: 100).",
)
@click.option(
    "--real-control",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Real test images per class mixed in as a control.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the item set and of each rater's order.")
@click.option(
    "--fit",
    "fit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The fitted G_attack [default: RUN_DIR/g_attack.safetensors, else the run's --fit].",
)
@click.option(
    "--dataset", default="fashion-mnist", show_default=True, help="Dataset of the class names and of the real control."
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder of the dataset's IDX files.")
# The page.
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to serve on (only this machine by default)."
)
@click.option(
    "--port", type=click.IntRange(min=0, max=65535), default=8765, show_default=True, help="Port; 0 takes any free one."
)
@click.option("--rater", default=None, help="Rater name the page starts with (else it asks; each rater gets a file).")
@click.option("--ask-class", is_flag=True, default=False, help='Also ask "Which class is it?" after each judgement.')
# Instead of serving.
@click.option(
    "--table",
    "table_only",
    is_flag=True,
    default=False,
    help="Write and print Table 10 from the answers so far (human-eval/table10.md, .json); do not serve. "
    "The operator's way to the table: the page shows it only to a rater who has answered every item.",
)
@click.option(
    "--csv",
    "csv_only",
    is_flag=True,
    default=False,
    help="Export items.csv, key.csv and answers.csv for crowd platforms; do not serve.",
)
def human_eval_command(
    run_dir: Path,
    per_class: int,
    real_control: int,
    seed: int,
    fit_path: Path | None,
    dataset: str,
    data_dir: str | None,
    host: str,
    port: int,
    rater: str | None,
    ask_class: bool,
    table_only: bool,
    csv_only: bool,
) -> None:
    """The paper's human evaluation of RUN_DIR (a folder of atgan demo, evaluate or attack) as a local page.

    Raters see the same (z, y) through G_orig and G_attack, shuffled and blinded, and answer
    "Is this a realistic <class>?" with y / n. Every answer is written to
    RUN_DIR/human-eval/answers/<rater>.jsonl at once; reopening the page resumes. The page is
    blind until a rater has answered every item: then it shows that rater Table 10. The operator
    gets it at any time with --table. One server per run folder; only this machine's own page is
    answered.
    """
    from atgan_plugin.checkpoints import CheckpointError
    from atgan_plugin.data import DATASETS, DatasetNotFoundError
    from atgan_plugin.human_eval import (
        AnswersFileError,
        HumanEvalApp,
        RunFolderError,
        ServerBusyError,
        build_items,
        load_items,
        make_server,
    )
    from atgan_plugin.human_eval.items import describe

    if dataset not in DATASETS:
        raise click.BadParameter(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}", param_hint="'--dataset'")
    try:
        items = load_items(run_dir / "human-eval") if run_dir.is_dir() else None
        ctx = click.get_current_context()
        if items is None:
            click.echo(f"making the item set in {run_dir / 'human-eval'} ...")
            items = build_items(
                run_dir,
                per_class=per_class,
                real_control=real_control,
                seed=seed,
                dataset=dataset,
                data_dir=data_dir,
                fit_path=fit_path,
            )
        else:
            asked = {"per_class": per_class, "real_control": real_control, "seed": seed, "dataset": dataset}
            differ = [
                f"--{k.replace('_', '-')} {v} (stored: {items.settings[k]})"
                for k, v in asked.items()
                if ctx.get_parameter_source(k) != ParameterSource.DEFAULT and items.settings.get(k) != v
            ]
            if differ:
                raise click.UsageError(
                    f"{items.folder} already holds an item set made with other settings: {', '.join(differ)}; "
                    "its answers refer to those items (move the folder away to start a new evaluation)"
                )
        click.echo(describe(items))
        if table_only or csv_only:
            _write_outputs(items, table_only, csv_only)
            return
        app = HumanEvalApp(items, ask_class=ask_class, rater=rater)
    except (RunFolderError, AnswersFileError, CheckpointError, DatasetNotFoundError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    except ValueError as error:
        raise click.UsageError(str(error)) from error

    try:
        server = make_server(app, host, port)
    except ServerBusyError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is in use (another atgan human-eval?); pass --port N, "
                "or --port 0 for any free port"
            ) from error
        raise click.ClickException(f"cannot serve on {host}:{port}: {error.strerror or error}") from error
    url = f"http://{host}:{server.server_address[1]}/" + (f"?rater={rater}" if rater else "")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"note: serving on {host}, not only this machine: anyone who can reach it can open the page and answer"
        )
    click.echo(f"serving the human evaluation on {url}  (Ctrl-C stops; answers are saved as they come)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


def _write_outputs(items: ItemSet, table_only: bool, csv_only: bool) -> None:
    from atgan_plugin.human_eval import write_csv, write_table

    if table_only:
        _, markdown = write_table(items)
        click.echo(markdown, nl=False)
        click.echo(f"written: {items.folder / 'table10.md'}, {items.folder / 'table10.json'}")
    if csv_only:
        paths, problems = write_csv(items)
        for problem in problems:
            click.echo(f"skipped: {problem}")
        click.echo(f"written: {', '.join(map(str, paths))}")
