"""``ductaflow init``: scaffold a new project that runs green as it is."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ductaflow.cli.app import cli


@cli.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Scaffold into a non-empty directory: add only the missing files; no existing file is replaced.",
)
def init(directory: Path, force: bool) -> None:
    """Create a ductaflow project in DIRECTORY (made if missing): two flows, a build, their
    configs, a scenario table and conductor.py, ready to run.

    A non-empty DIRECTORY is refused unless --force, which adds only the files that are
    missing and lists the ones it left alone."""
    import shlex

    # deferred: each command imports only what it runs ('ductaflow run' paid ~5 ms for the scaffold)
    from ductaflow.scaffold import init_project

    result = init_project(directory, force=force)
    if result.created:
        click.echo(f"created {len(result.created)} file(s) in {result.root}:")
        for rel in result.created:
            click.echo(f"  {rel}")
    else:
        click.echo(f"created nothing in {result.root}: every template file is already there")
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} file(s) whose path is taken (an existing file is never replaced):")
        for rel in result.skipped:
            click.echo(f"  {rel}")
    click.echo("next, run every scenario and open runs/conductor_status_report.html:")
    click.echo(f"  cd {shlex.quote(os.fspath(directory))}")
    click.echo("  python conductor.py    # or: ductaflow conduct config/scenarios.csv --build builds/pipeline.py")
