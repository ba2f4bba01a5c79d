"""``ductaflow conduct``: a build over every row of a scenario table."""


from __future__ import annotations

import sys
from pathlib import Path

import click

from ductaflow.cli.app import cli
from ductaflow.cli.common import (
    _light_counts,
    _modules,
    retry_options,
)


def _where_builds_run(executor: str | None, scheduler: str | None, cluster: str | None) -> str:
    """``conduct``'s executor from --executor, --scheduler and --cluster (which exclude each other)."""
    if cluster and (executor or scheduler):
        given = f"--executor {executor}" if executor else "--scheduler"
        raise click.UsageError(f"--cluster {cluster} starts its own Dask cluster; it cannot be combined with {given}")
    if scheduler and executor not in (None, "dask"):
        raise click.UsageError(f"--scheduler runs on Dask; it cannot be combined with --executor {executor}")
    if scheduler:
        return scheduler if "://" in scheduler else f"tcp://{scheduler}"
    return cluster or executor or "local"


@cli.command()
@click.argument("scenarios", type=click.Path(path_type=Path), required=False)
@click.option("--build", "build", type=click.Path(path_type=Path), help="The build flow to run per row.")
@click.option("--base-config", type=click.Path(path_type=Path), help="JSON config the rows are merged over.")
@click.option(
    "--runs-root", type=click.Path(path_type=Path), help="Where instances go (default: runs/ in the project root)."
)
@click.option("--instance-column", help="Column holding instance names.")
@click.option("--parallel", "max_parallel", type=int, help="Builds at once (default: number of cores).")
@click.option(
    "--executor",
    type=click.Choice(["local", "serial", "dask"]),
    default=None,
    help="Where builds run: local processes (default), serial, or dask (--scheduler, else a LocalCluster).",
)
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler to run on, e.g. tcp://host:8786 (implies dask).")
@click.option(
    "--cluster", type=click.Choice(["slurm"]), default=None,
    help="Start a Dask cluster of batch jobs: slurm (dask-jobqueue, adaptive; set up in pyproject.toml "
    "[tool.ductaflow.cluster]).",
)
@click.option(
    "--worker-wait", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
    help="On a cluster: how long to wait while no worker is connected before the scenarios not yet run "
    "are given up as not_run (default 300).",
)
@click.option(
    "--lost-retries", type=click.IntRange(min=0), default=0, show_default=True,
    help="Re-runs of a build whose worker died (Dask re-submits it), before it is red worker_lost.",
)
@click.option("--timeout", type=float, help="Kill a build after this many seconds.")
@click.option("--fail-fast", is_flag=True, help="Stop launching builds after the first red one.")
@click.option("--dry-run", is_flag=True, help="Check everything and print the plan; run nothing.")
@click.option("--force", is_flag=True, help="Re-run every scenario, up to date or not.")
@click.option("--only-failed", is_flag=True, help="Re-run only red and never-run scenarios.")
@click.option("--explain", is_flag=True, help="Say per scenario what would run and why; run nothing.")
@click.option("--allow-unknown", is_flag=True,
              help="Accept scenario columns and base config keys no flow of the build knows (else refused).")
@click.option("--preload", "preload", multiple=True, metavar="MODULES",
              help="Modules the kernel template imports once (comma-separated; default: pyproject.toml).")
@click.option("--html", "html", type=click.Choice(["failed", "all", "none"]), default="failed", show_default=True,
              help="Which executed notebooks become pages the report links to: red and orange ones, all, none.")
@click.option("--sweep", metavar="ID",
              help="Name this sweep (default: UTC time plus a short hash); every run's record carries it.")
@click.option("--replicates", type=int, metavar="N",
              help="Run each scenario N times, as instances <name>__r1..; each run gets its own seed.")
@click.option("--seed", "study_seed", type=int, metavar="S",
              help="Study seed the runs' seeds are derived from (default 0).")
@click.option("--max-runs", type=int, metavar="K",
              help="Refuse a plan that would run more than K builds (up-to-date ones not counted); with "
              "--follow-up, the search's budget: once K builds started, the rest is not run.")
@click.option("--follow-up", "follow_up", metavar="MODULE:FUNCTION",
              help="Adaptive sweep: after each scenario, this function (found at the project root too) "
              "returns more scenario rows to run.")
@click.option("--resume", metavar="SWEEP",
              help="Carry on a sweep whose conductor died: what ended is not run again (SCENARIOS and --build "
              "are then optional).")
@retry_options("build", default=None)
@click.option("--tracker", "trackers", multiple=True, metavar="NAME",
              help="Also log every flow run to this experiment tracker (noop, mlflow, wandb); repeatable.")
def conduct(
    scenarios: Path | None,
    build: Path | None,
    base_config: Path | None,
    runs_root: Path | None,
    instance_column: str | None,
    max_parallel: int | None,
    executor: str | None,
    scheduler: str | None,
    cluster: str | None,
    worker_wait: float | None,
    lost_retries: int,
    timeout: float | None,
    fail_fast: bool,
    dry_run: bool,
    force: bool,
    only_failed: bool,
    explain: bool,
    allow_unknown: bool,
    preload: tuple[str, ...],
    html: str,
    sweep: str | None,
    replicates: int | None,
    study_seed: int | None,
    max_runs: int | None,
    follow_up: str | None,
    resume: str | None,
    retries: int | None,
    retry_on: tuple[str, ...],
    backoff: float | None,
    trackers: tuple[str, ...],
) -> None:
    """Run BUILD once per row of SCENARIOS (CSV or Parquet) and keep the live report.

    Every column but the one naming instances must be a parameter the build or one of its
    flows knows (a key of their default configs or parameters cells; a.b for a nested
    one). A typo such as growth_rat is refused before anything runs, also with --dry-run
    and --explain, with the nearest known names. --allow-unknown lets such columns through.

    Scenarios whose last green/orange run is still up to date (same build and flow code,
    same config) are not run again."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.conductor.sweep import conduct as run_conductor
    from ductaflow.store.layout import REPORT_NAME  # deferred with the line above

    if resume is None and (scenarios is None or build is None):
        raise click.UsageError("give SCENARIOS and --build (or --resume SWEEP)")
    where = _where_builds_run(executor, scheduler, cluster)
    table = run_conductor(
        scenarios,
        build,
        base_config=base_config,
        runs_root=runs_root.resolve() if runs_root else "runs",
        instance_column=instance_column,
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        dry_run=dry_run,
        executor=where,
        worker_wait=worker_wait,
        lost_retries=lost_retries,
        timeout=timeout,
        raise_on_failure=False,
        force=force,
        only_failed=only_failed,
        explain=explain,
        allow_unknown=allow_unknown,
        progress=False if explain else None,
        preload=_modules(preload),
        html=html,
        sweep=sweep,
        replicates=replicates,
        seed=study_seed,
        max_runs=max_runs,
        trackers=trackers,
        follow_up=follow_up,
        resume=resume,
        retries=retries,
        retry_on=retry_on or None,
        backoff=backoff,
    )
    if explain:
        for row in table.itertuples():
            click.echo(f"{row.instance}: {row.action} ({row.reasons})")
        n = int((table["action"] == "run").sum())
        click.echo(f"{n} of {len(table)} scenario(s) would run")
        return
    if dry_run:
        n = int((table["action"] == "run").sum())  # up-to-date instances would be skipped
        skipped = f" ({len(table) - n} up to date)" if n < len(table) else ""
        click.echo(f"dry run OK: {n} scenario(s) would run{skipped}")
        return
    counts = table["status"].value_counts().to_dict()
    summary = _light_counts(counts)
    report = Path(table["instance_dir"].iloc[0]).parents[1] / REPORT_NAME if len(table) else REPORT_NAME
    errors = table["error"].astype(str) if "error" in table else None
    budget = int((errors == "not_run: budget").sum()) if errors is not None else 0  # a search's budget: expected
    not_run = int(errors.str.startswith("not_run").sum()) - budget if errors is not None else 0
    summary += f", {not_run} not run" if not_run else ""
    summary += f", {budget} left by the run budget (--max-runs)" if budget else ""
    click.echo(f"{len(table)} scenario(s): {summary}; report: {report}")
    sys.exit(1 if counts.get("red") or not_run else 0)
