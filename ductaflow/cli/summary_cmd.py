"""``ductaflow summary``: an adaptive sweep's search as markdown, read while it runs or after."""

from __future__ import annotations

from pathlib import Path

import click

from ductaflow.cli.app import cli


@cli.command()
@click.argument("sweep", required=False)
@click.option("--runs-root", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="The runs root the sweep ran into.")
@click.option("--metric", help="Rank the scenarios by this metric (default: the report settings' first metric).")
@click.option("--max/--min", "maximize", default=None,
              help="Higher (--max) or lower (--min) is better (default: as the report settings say, else lower).")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many best scenarios to list.")
def summary(sweep: str | None, runs_root: Path, metric: str | None, maximize: bool | None, top: int) -> None:
    """Print the search of sweep SWEEP (default: the sweep changed last) as markdown: its budget,
    counts per light, the best scenarios by a metric, the search tree and the failures by kind.

    Read-only and safe while the sweep runs (its state file is only ever replaced whole)."""
    # deferred: each command imports only what it runs, so every command starts light
    from ductaflow.report.summary import spec_of, summary_markdown
    from ductaflow.store.sweeps import read_sweep_state  # deferred too

    state = read_sweep_state(runs_root, sweep)  # SweepNotFound: one line, exit code 2
    spec = spec_of(runs_root, state)
    click.echo(summary_markdown(state, metric=metric, maximize=maximize, top=top, spec=spec), nl=False)
