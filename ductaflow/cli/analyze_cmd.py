"""``ductaflow analyze``: compare, stability, pareto, sensitivity and resources over a build's results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ductaflow.cli.app import cli
from ductaflow.errors import DuctaflowError

_RUNS = click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
_BUILD = click.option("--build", "build", metavar="NAME", help="The build (default: the only one with results).")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json", "html"]), default="markdown",
                       show_default=True, help="How to print the table.")  # fmt: skip
_OUT = click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), help="Write it to FILE instead.")


def _names(values: tuple[str, ...]) -> list[str] | None:
    """``--metrics a,b --metrics c`` -> ``["a", "b", "c"]``; None when not given."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()] or None


def _emit(frame: Any, fmt: str, out: Path | None, title: str) -> None:
    # deferred: each command imports only what it runs (pandas is heavy)
    from ductaflow.analysis.output import render

    text = render(frame, fmt, title)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DuctaflowError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(str(out))


def _table(runs_dir: Path, build: str | None) -> Any:
    # deferred with _emit's import
    from ductaflow.analysis import load

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    return load(runs_dir, build)


def _command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every analysis shares."""
    for option in (_OUT, _FORMAT, _BUILD, _RUNS):
        fn = option(fn)
    return analyze.command()(fn)


@cli.group()
def analyze() -> None:
    """Which scenario is best, by how much, and how sure: tables over a build's recorded metrics
    (runs/<build>/results.parquet) and its runs (the ledger)."""


@_command
@click.option("--baseline", required=True, metavar="NAME", help="The scenario (or instance) to compare with.")
@click.option("--metrics", multiple=True, metavar="A,B", help="Only these metrics.")
@click.option("--by", metavar="COLUMN", help="Compare groups of this column instead of scenarios.")
def compare(runs_dir: Path, build: str | None, fmt: str, out: Path | None, baseline: str,
            metrics: tuple[str, ...], by: str | None) -> None:  # fmt: skip
    """Each scenario's metrics with absolute and percent deltas to the baseline."""
    from ductaflow.analysis import compare as run  # deferred with _emit's import

    table = _table(runs_dir, build)
    _emit(run(table, baseline, _names(metrics), by), fmt, out, f"{table.build}: compared with {baseline}")


@_command
@click.option("--by", metavar="COLUMN", help="Group by this column (default: a scenario's replicates).")
@click.option("--metrics", multiple=True, metavar="A,B", help="Only these metrics.")
def stability(runs_dir: Path, build: str | None, fmt: str, out: Path | None, by: str | None,
              metrics: tuple[str, ...]) -> None:  # fmt: skip
    """Mean, standard deviation, coefficient of variation, min and max per group and metric."""
    from ductaflow.analysis import stability as run  # deferred with _emit's import

    table = _table(runs_dir, build)
    _emit(run(table, by, _names(metrics)), fmt, out, f"{table.build}: stability")


@_command
@click.option("--maximize", multiple=True, metavar="A,B", help="Metrics where higher is better.")
@click.option("--minimize", multiple=True, metavar="A,B", help="Metrics where lower is better.")
def pareto(runs_dir: Path, build: str | None, fmt: str, out: Path | None, maximize: tuple[str, ...],
           minimize: tuple[str, ...]) -> None:  # fmt: skip
    """The scenarios no other beats on every metric at once (front 1), then front 2, ..."""
    from ductaflow.analysis import pareto as run  # deferred with _emit's import

    table = _table(runs_dir, build)
    _emit(run(table, _names(maximize), _names(minimize)), fmt, out, f"{table.build}: Pareto fronts")


@_command
@click.option("--metrics", multiple=True, metavar="A,B", help="Only these metrics.")
def sensitivity(runs_dir: Path, build: str | None, fmt: str, out: Path | None, metrics: tuple[str, ...]) -> None:
    """How much each metric moves with each scenario parameter, ranked."""
    from ductaflow.analysis import sensitivity as run  # deferred with _emit's import

    table = _table(runs_dir, build)
    _emit(run(table, _names(metrics)), fmt, out, f"{table.build}: sensitivity")


@_command
@click.option("--sort", type=click.Choice(["duration", "memory"]), default="duration", show_default=True)
@click.option("--by", metavar="COLUMN", help="Totals per flow, scenario, instance or scenario-table column.")
def resources(runs_dir: Path, build: str | None, fmt: str, out: Path | None, sort: str, by: str | None) -> None:
    """Duration and peak memory of every flow of every scenario, the slowest (or hungriest) first."""
    from ductaflow.analysis import builds_with_results  # deferred with _emit's import
    from ductaflow.analysis import resources as run  # deferred with _emit's import

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    if build is None:
        found = builds_with_results(runs_dir)
        if len(found) != 1:
            raise DuctaflowError(f"{runs_dir}: say which build (--build NAME); found {', '.join(found) or 'none'}")
        build = found[0]
    _emit(run(runs_dir, build, sort, by), fmt, out, f"{build}: resources")
