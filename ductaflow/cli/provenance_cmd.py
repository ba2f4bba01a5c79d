"""``ductaflow provenance``: what code and environment made the runs in an instance directory."""

from __future__ import annotations

from pathlib import Path

import click

from ductaflow.cli.app import cli


@cli.command()
@click.argument("instance_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the records' provenance as JSON.")
@click.option("--packages", is_flag=True, help="List every installed distribution of the run's environment.")
def provenance(instance_dir: Path, as_json: bool, packages: bool) -> None:
    """Print the code (git commit, branch, uncommitted changes) and environment (Python, platform,
    installed distributions) each run in INSTANCE_DIR was made with, and how this environment
    differs from it.

    INSTANCE_DIR is a flow's instance folder or a build instance (its flows under runs/ too)."""
    # The view imports provenance, records and importlib.metadata, which 'ductaflow run' paid for
    # before it started its kernel template: deferred, each command imports only what it runs.
    from ductaflow.cli.provenance_view import show

    show(instance_dir, as_json, packages)
