"""The ``ductaflow`` command. Maps every DuctaflowError to one line and its exit code."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ductaflow.core.config import deep_merge, find_project_root, normalise_config
from ductaflow.errors import ConfigError, DuctaflowError
from ductaflow.run.signals import Terminated
from ductaflow.store.result import FlowResult

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process ended by it


def _parse_override(item: str) -> dict[str, Any]:
    """``-p a.b=3`` -> ``{"a": {"b": 3}}``, the value typed as papermill types it
    (:func:`ductaflow.core.params.parse_value`)."""
    # deferred: ductaflow.core.params reads flows (nbformat is heavy)
    from ductaflow.core.params import nest, parse_value

    if "=" not in item:
        raise ConfigError(f"-p expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    where = f"-p {key[:80]!r}"  # the key, not the value: a value may be megabytes
    return nest(key, parse_value(raw, where), where)


def _overrides(flow: Any, root: Path, params: tuple[str, ...], raws: tuple[tuple[str, str], ...],
               allow_unknown: bool) -> dict[str, Any]:
    """``-p`` then ``-r`` overrides, merged; keys ``flow`` (a Flow) does not know are a ConfigError
    naming the nearest known ones, unless ``allow_unknown``."""
    # deferred: reads flows (jupytext, nbformat are heavy)
    from ductaflow.core.config import check_keys
    from ductaflow.core.params import config_paths, describe_unknown, flow_names, nest  # deferred with the line above

    out: dict[str, Any] = {}
    for part in [_parse_override(item) for item in params] + [nest(k, v, "-r") for k, v in raws]:
        out = deep_merge(out, part)
    check_keys(out, "-p/-r")  # a key that cannot be a parameter at all says so first
    known = flow_names(flow, root)
    if not known:
        logging.getLogger(__name__).info("flow %s names no parameter: -p keys not checked", flow.name)
    elif not allow_unknown and known.unknown(config_paths(out, known)):
        problems = describe_unknown("parameter", known.unknown(config_paths(out, known)), known)
        raise ConfigError(
            f"flow {flow.name}: {problems} (the flow's parameters cell and default config do not name it); "
            "pass --allow-unknown to run with it anyway"
        )
    return out


def result_line(result: FlowResult) -> str:
    """One line: light, flow, duration, instance dir (and the reason when not green)."""
    dur = f"{result.duration:.1f}s" if result.duration is not None else "-"
    line = f"{result.status.emoji} {result.status.value:<6} {result.flow}  {dur}  {result.execution_dir}"
    if result.skipped:
        line += "  (up to date: not re-run; --force to run anyway)"
    elif result.status.value != "green":
        line += f"  ({result.reason})"
    return line


_LIGHTS = {"green": "🟢", "orange": "🟠", "red": "🔴"}


def _modules(values: tuple[str, ...]) -> list[str] | None:
    """``--preload a,b --preload c`` -> ``["a", "b", "c"]``; None when not given."""
    return [m for v in values for m in v.split(",") if m.strip()] if values else None


def _start_template(flow: Path, preload: list[str] | None) -> None:
    """Start the kernel template now, so it boots while ductaflow imports papermill."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.kernels.fork import template_for
    from ductaflow.kernels.options import kernel_options  # deferred with the line above

    try:
        options = kernel_options(find_project_root(flow.resolve()), preload)
        if options.forks:
            template_for(options.preload, wait=False)
    except (DuctaflowError, OSError):
        pass  # run_notebook reports a bad setting itself, before it writes anything


def _light_counts(counts: dict[str, int]) -> str:
    """'6 green, 3 orange, 0 red' from a status value count."""
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in _LIGHTS)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ductaflow")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """ductaflow: run notebook flows into instance directories."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        # Libraries that set their own loggers' levels (Dask's "distributed" logs INFO) still
        # reach this handler by propagation: the handler's level keeps them to -v.
        handler.setLevel(level)


@cli.command()
@click.argument("flow", type=click.Path(path_type=Path))
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="JSON config (default: the flow's own).")
@click.option("--instance", help="Instance name: runs into runs/<flow>/<instance>/.")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Run into this directory instead.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (a.b for a nested one); the value is typed as papermill's -p types it.")
@click.option("-r", "--raw", "raws", nargs=2, multiple=True, metavar="KEY VALUE",
              help="Override a config key with VALUE as a string, untouched.")
@click.option("--allow-unknown", is_flag=True,
              help="Accept -p/-r keys the flow's parameters cell and default config do not name.")
@click.option("--timeout", type=float, help="Kill the flow after this many seconds.")
@click.option("--html", is_flag=True, help="Also export the executed notebook as HTML.")
@click.option("--no-execute", is_flag=True, help="Prepare the instance directory only.")
@click.option("--force", is_flag=True, help="Run even when the instance is up to date.")
@click.option("--preload", "preload", multiple=True, metavar="MODULES",
              help="Modules the kernel template imports once (comma-separated; default: pyproject.toml).")
def run(
    flow: Path,
    config_file: Path | None,
    instance: str | None,
    output_dir: Path | None,
    params: tuple[str, ...],
    raws: tuple[tuple[str, str], ...],
    allow_unknown: bool,
    timeout: float | None,
    html: bool,
    no_execute: bool,
    force: bool,
    preload: tuple[str, ...],
) -> None:
    """Run FLOW once and print its light, duration and instance directory.

    The config is the flow's default config (or --config), with -p and then -r on top. -p
    values are typed as papermill types them, and JSON lists and objects are parsed (below);
    -r KEY VALUE keeps VALUE a string. A key neither the flow's parameters cell nor its
    default config names is refused, with the nearest names, unless --allow-unknown.

    \b
      -p flag=False            False, not the string 'False' (also false, True, true)
      -p x=None                None (also null)
      -p n=3 -p rate=0.05      3 and 0.05
      -p 'zones=[1, 2]'        a list;  -p 'opts={"a": 1}' an object
      -p model.iters=20        the nested key iters inside model
      -p city=Leeds            the string 'Leeds'
      -r code 007              the string '007' (-p would give 7)

    An instance whose last green/orange run had the same code and config is not run
    again (use --force)."""
    modules = _modules(preload)
    if not no_execute:
        _start_template(flow, modules)  # boots while the imports below run
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.core.flowfile import read_flow
    from ductaflow.run.execute import run_notebook  # deferred with the line above

    if instance and output_dir:
        raise click.UsageError("give --instance or --output-dir, not both")
    parsed = read_flow(flow)
    root = find_project_root(parsed.path)
    if config_file is not None:
        cfg = normalise_config(config_file)
    else:
        default = parsed.default_config_path(root)
        cfg = normalise_config(default) if default else {}
    cfg = deep_merge(cfg, _overrides(parsed, root, params, raws, allow_unknown))
    result = run_notebook(
        parsed.path,
        cfg,
        execution_dir=output_dir,
        project_root=root,
        instance_name=instance,
        timeout=timeout,
        export_html=html,
        no_execute=no_execute,
        raise_on_failure=False,
        force=force,
        preload=modules,
    )
    if no_execute:
        click.echo(f"prepared {result.flow} in {result.execution_dir} (not executed)")
        return
    click.echo(result_line(result))
    if result.error:
        click.echo(f"   {result.error.summary}", err=True)
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.argument("instance_dir", type=click.Path(path_type=Path))
@click.option("--flow", help="Which recorded flow, when the directory holds several.")
@click.option("--force", is_flag=True, help="Replace an existing debug notebook.")
def debug(instance_dir: Path, flow: str | None, force: bool) -> None:
    """Write a notebook for INSTANCE_DIR with its exact config, ready to open in Jupyter."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.debug import prepare_debug_notebook

    target = prepare_debug_notebook(instance_dir, flow=flow, force=force)
    click.echo(f"open {target} in Jupyter: its working directory is {target.parent}")


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
@click.argument("scenarios", type=click.Path(path_type=Path))
@click.option("--build", "build", required=True, type=click.Path(path_type=Path), help="The build flow to run per row.")
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
def conduct(
    scenarios: Path,
    build: Path,
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
    )
    if explain:
        for row in table.itertuples():
            click.echo(f"{row.instance}: {row.action} ({row.reasons})")
        n = int((table["action"] == "run").sum())
        click.echo(f"{n} of {len(table)} scenario(s) would run")
        return
    if dry_run:
        click.echo(f"dry run OK: {len(table)} scenario(s) would run")
        return
    counts = table["status"].value_counts().to_dict()
    summary = _light_counts(counts)
    report = Path(table["instance_dir"].iloc[0]).parents[1] / REPORT_NAME if len(table) else REPORT_NAME
    not_run = int(table["error"].astype(str).str.startswith("not_run").sum()) if "error" in table else 0
    summary += f", {not_run} not run" if not_run else ""
    click.echo(f"{len(table)} scenario(s): {summary}; report: {report}")
    sys.exit(1 if counts.get("red") or not_run else 0)


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
def report(runs_dir: Path) -> None:
    """Rebuild RUNS_DIR/conductor_status_report.html from the records on disk."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.report.page import write_report

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    click.echo(str(write_report(runs_dir)))


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
def status(runs_dir: Path) -> None:
    """The latest state of every instance in RUNS_DIR, with its light."""
    import shutil

    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.report.query import status_rows, status_table

    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs directory not found: {runs_dir}")
    rows = status_rows(runs_dir)
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 200
    lines = status_table(rows, width)
    click.echo(click.style(lines[0], bold=True) + "\n" + "\n".join(lines[1:]))
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    click.echo(f"{len(rows)} instance(s): {_light_counts(counts)}")


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning our errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="ductaflow", standalone_mode=False)
    except DuctaflowError as exc:
        click.echo(f"ductaflow: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ductaflow: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        click.echo("ductaflow: terminated (SIGTERM)", err=True)
        sys.exit(EXIT_TERMINATED)
    except KeyboardInterrupt:
        click.echo("ductaflow: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def entry() -> None:
    """The ``ductaflow`` console script.

    Once the command is done (records written, kernels stopped), ``gc.freeze()`` moves every
    live object out of the collector's sight, so the interpreter's exit skips its final
    collection passes over papermill's import graph (~0.1 s per command, measured). Exit
    handlers, thread joins and stream flushes still run; only ``__del__`` of objects in
    reference cycles may not, which Python never promises at exit anyway.
    """
    try:
        main()
    finally:
        gc.freeze()
