"""``ductaflow report``, ``status``, ``query`` and ``compact``: read what the runs recorded."""


from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ductaflow.cli.app import cli
from ductaflow.cli.common import (
    _light_counts,
)
from ductaflow.errors import DuctaflowError


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--sweep", metavar="ID", help="Only the scenarios of this sweep (conductor_status_report.sweep-ID.html).")
def report(runs_dir: Path, sweep: str | None) -> None:
    """Rebuild RUNS_DIR/conductor_status_report.html from the records on disk."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.report.page import write_report

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    click.echo(str(write_report(runs_dir, sweep)))


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--sweep", metavar="ID", help="Only the instances whose latest run was part of this sweep.")
def status(runs_dir: Path, sweep: str | None) -> None:
    """The latest state of every instance in RUNS_DIR, with its light."""
    import shutil

    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.report.query import status_rows, status_table

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    rows = _with_attempts(runs_dir, status_rows(runs_dir, sweep))
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 200
    lines = status_table(rows, width)
    click.echo(click.style(lines[0], bold=True) + "\n" + "\n".join(lines[1:]))
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    click.echo(f"{len(rows)} instance(s): {_light_counts(counts)}")


def _with_attempts(runs_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each instance's failure kind and phase, and its retries, before its error
    ("[kernel_died in execute, after 1 retry] ..."), read from its own record."""
    from ductaflow.store.layout import artifact_path  # deferred with the records it reads
    from ductaflow.store.records import read_status

    out = []
    for row in rows:
        rec = read_status(artifact_path(runs_dir / str(row["dir"]), str(row["flow"]), "status"), drop=_UNSHOWN)
        note = rec.attempts_note if rec is not None and rec.state != "running" else ""
        out.append({**row, "error": f"[{note}] {row['error'] or ''}".rstrip()} if note else row)
    return out


#: Record fields ``status`` does not show: left out when its rows are read.
_UNSHOWN = ("fingerprint_parts", "reasons", "deps", "provenance", "notes", "warnings")


@cli.command()
@click.argument("sql")
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--out", type=click.Path(path_type=Path), help="Write the result to a .csv or .parquet file.")
def query(sql: str, runs_dir: Path, out: Path | None) -> None:
    """Run DuckDB SQL over the views `runs` (every execution) and `results` (recorded metrics)."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.report.query import run_query

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    df = run_query(sql, runs_dir)
    if out is None:
        click.echo(df.to_string(index=False) if len(df.columns) else "(no columns)")
    elif out.suffix == ".parquet":
        df.to_parquet(out, index=False)
    elif out.suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        raise DuctaflowError(f"--out {out}: use a .csv or .parquet file name")
    if out is not None:
        click.echo(f"{len(df)} row(s) -> {out}")


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
def compact(runs_dir: Path) -> None:
    """Merge RUNS_DIR's ledger files into one (atomically; nothing is lost)."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.store.ledger import compact as compact_ledger

    click.echo(str(compact_ledger(runs_dir) or "ledger is empty"))
