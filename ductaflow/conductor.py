"""The conductor: one build instance per scenario row, run in parallel, reported live.

One scheduling loop over the futures of a :class:`~ductaflow.executors.Backend` (local
processes, this process, Dask; ``wait(FIRST_COMPLETED)``, never polling). Workers only
run a build and return plain data; this process alone writes the shared files: the
conductor state file, the ledger, the results table and the HTML report.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.config import find_project_root, normalise_config
from ductaflow.errors import ConductorFailed, DuctaflowError, FlowFileError
from ductaflow.execute import now_iso, resolve_flow_path
from ductaflow.execute import _sigterm_as_interrupt as sigterm_as_interrupt
from ductaflow.executors import Backend, make_backend
from ductaflow.flow import read_flow
from ductaflow.incremental import Decision, decide, fingerprint, referenced_flows
from ductaflow.kernels import KernelOptions, kernel_options
from ductaflow.ledger import append_runs, ingest_spool
from ductaflow.models import Status
from ductaflow.results import collect_metrics
from ductaflow.progress import Reporter, make_reporter
from ductaflow.records import summarize_instance
from ductaflow.rundir import atomic_write_json, contained_dir
from ductaflow.scenarios import ScenarioPlan, load_scenarios, plan_scenarios
from ductaflow.liveness import identity
from ductaflow.worker import finalize_lost, lost_outcome, run_build

log = logging.getLogger(__name__)

STATE_DIR = Path(".ductaflow") / "conductor"
#: Ledger records of running builds wait here (per build instance) for the conductor to ingest.
SPOOL_DIR = Path(".ductaflow") / "spool"
REPORT_NAME = "conductor_status_report.html"
_INTERRUPT_GRACE_S = 30.0
#: A live report that took t seconds to write is not rewritten for the next 4t seconds.
_REPORT_COST_FACTOR = 4.0


class _Run:
    """The parent's bookkeeping for one conduct() call."""

    def __init__(self, build: Path, runs_root: Path, plans: list[ScenarioPlan], columns: list[str]) -> None:
        self.build = build
        self.runs_root = runs_root
        self.state_path = runs_root / STATE_DIR / f"{build.stem}.json"
        self.started = now_iso()
        self.state = "running"
        self.columns = columns
        self._report_due = 0.0  # monotonic time before which a live report is not rewritten
        # who writes this state: a report can tell a conductor that was killed from one that runs
        self.owner = identity()
        self.rows: dict[str, dict[str, Any]] = {
            p.instance: {
                "instance": p.instance,
                "dir": f"{build.stem}/{p.instance}",
                "values": p.values,
                "state": "pending",
                "status": None,
                "duration": None,
                "error": None,
                "worst_flow": None,
                "metrics": {},
            }
            for p in plans
        }

    def counts(self) -> dict[str, int]:
        out = {"green": 0, "orange": 0, "red": 0}
        for row in self.rows.values():
            if row["status"] in out:
                out[row["status"]] += 1
        return out

    def save(self, report: bool = True) -> None:
        """Write the state file, then the report from disk; both atomically."""
        doc = {
            "schema": 1,
            "build": self.build.stem,
            "build_path": str(self.build),
            "runs_root": str(self.runs_root),
            "state": self.state,
            "started": self.started,
            "updated": now_iso(),
            "finished": None if self.state == "running" else now_iso(),
            "columns": self.columns,
            "conductor": self.owner,
            "scenarios": list(self.rows.values()),
        }
        try:
            atomic_write_json(self.state_path, doc)
        except OSError as exc:  # read-only or full disk: say so and stop, never a traceback
            raise DuctaflowError(
                f"cannot write the conductor state {self.state_path}: {exc.strerror or exc}; "
                "the runs root must be writable and have free space"
            ) from None
        if not report or (self.state == "running" and time.monotonic() < self._report_due):
            return
        t0 = time.monotonic()
        try:
            from ductaflow.report import write_report

            write_report(self.runs_root)
        except Exception as exc:  # noqa: BLE001 - a report problem must not stop the builds
            log.warning("could not write the status report: %s", exc)
        # The report is rebuilt from disk, so its cost grows with the table: rewriting it after
        # every build would make a long table quadratic. Rewrite at most at the pace that
        # keeps it under a fifth of the time (the final report is always written).
        self._report_due = time.monotonic() + _REPORT_COST_FACTOR * (time.monotonic() - t0)


def conduct(
    scenarios: pd.DataFrame | str | Path,
    build: str | Path,
    *,
    base_config: Mapping[str, Any] | str | Path | None = None,
    runs_root: str | Path = "runs",
    instance_column: str | None = None,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    dry_run: bool = False,
    executor: str | Executor | Any | None = None,
    progress: bool | Reporter | None = None,
    project_root: str | Path | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
    force: bool = False,
    only_failed: bool = False,
    explain: bool = False,
    lost_retries: int = 0,
    preload: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Run ``build`` once per scenario row into ``<runs_root>/<build>/<instance>/``.

    Each row, merged over ``base_config`` (default: the build's own default config), is
    one build instance. Returns the scenario table with ``instance``, ``status``,
    ``state``, ``duration``, ``instance_dir``, ``error`` and ``worst_flow`` added. Raises
    :class:`ConductorFailed` (carrying the table) when any scenario is red, unless
    ``raise_on_failure=False``; re-raises ``KeyboardInterrupt`` after an orderly stop.
    Relative ``runs_root`` paths are taken from the project root.

    Instances whose last green/orange run matches their fingerprint are skipped ("up to
    date", no kernel started); ``force`` re-runs all, ``only_failed`` only red and
    never-run ones, ``explain`` runs nothing and says per instance what would run and why.
    Metrics the flows ``record()`` come back as columns and go to ``<build>/results.parquet``.

    ``executor`` says where builds run: ``"local"`` processes (default), ``"serial"``,
    ``"dask"`` (a LocalCluster) or a Dask scheduler address, any
    ``concurrent.futures.Executor``, or a ``distributed.Client``. A build whose worker
    dies is red ``worker_lost`` (after ``lost_retries`` re-runs, where the executor
    re-runs lost tasks, as Dask does); the rest of the table carries on.

    ``preload`` names modules imported once by the kernel template that every flow kernel
    is forked from (default: ``[tool.ductaflow] preload`` in pyproject.toml; see
    :mod:`ductaflow.kernels`). Every flow still gets a fresh kernel of its own.
    """
    table = load_scenarios(scenarios)
    build_path = resolve_flow_path(build, project_root)
    build_flow = read_flow(build_path)
    root = Path(project_root).resolve() if project_root else find_project_root(build_flow.path)
    hashes: dict[str, str] = {}  # read (and checked) once, shared by every scenario's fingerprint
    flow_paths = list(referenced_flows(build_flow, root))
    for flow_path in flow_paths:
        if not flow_path.is_file():
            raise FlowFileError(f"build {build_flow.path.name} runs {flow_path}, which does not exist")
        hashes[flow_path.stem] = read_flow(flow_path).code_hash()
    if base_config is None:
        default = build_flow.default_config_path(root)
        base = normalise_config(default) if default else {}
    else:
        base = normalise_config(base_config, "base_config")
    plans = plan_scenarios(table, base, instance_column)
    kernel = kernel_options(root, preload)
    runs = Path(runs_root)
    runs = (runs if runs.is_absolute() else root / runs).resolve()
    build_dir = runs / build_flow.name
    for folder in [build_dir, *(build_dir / p.instance for p in plans)]:
        if os.path.lexists(folder):  # refused up front (exit 2), not as a red row from the worker
            contained_dir(folder, [runs])

    out = table.reset_index(drop=True).copy()
    out["instance"] = [p.instance for p in plans]
    out["instance_dir"] = [str(build_dir / p.instance) for p in plans]
    reporter = make_reporter(progress)
    decisions = {
        p.instance: decide(
            build_dir / p.instance,
            build_flow.name,
            fingerprint(build_flow, p.config, root, flows=hashes),
            p.config,
            force=force,
            only_failed=only_failed,
        )
        for p in plans
    }
    if explain:
        out["action"] = ["run" if decisions[p.instance].run else "skip" for p in plans]
        out["reasons"] = [decisions[p.instance].text for p in plans]
        for p in plans:
            d = decisions[p.instance]
            reporter.message(f"{p.instance}: {'run' if d.run else 'skip'} ({d.text})")
        return out
    if dry_run:
        out["state"] = "planned"
        reporter.message(f"dry run: {len(plans)} scenario(s) of build {build_flow.name} -> {build_dir}")
        for p in plans:
            reporter.message(f"  {p.instance}: {p.values}")
        return out

    # Nothing to run (all up to date): no pool, no cluster, no kernel template to start.
    backend = make_backend(executor if any(d.run for d in decisions.values()) else "serial", max_parallel)
    try:
        backend.check_shared(runs, [build_flow.path, *flow_paths])
    except BaseException:
        backend.shutdown()
        raise
    run = _Run(build_flow.path, runs, plans, [str(c) for c in table.columns])
    attempts = runs / STATE_DIR / "attempts" / f"{build_flow.name}-{os.getpid()}-{time.time_ns()}"
    tasks = [
        {
            "build_path": str(build_flow.path),
            "config": p.config,
            "instance_dir": str(build_dir / p.instance),
            "project_root": str(root),
            "instance": p.instance,
            "timeout": timeout,
            "force": force,
            "attempt_file": str(attempts / f"{p.instance}.json"),
            "lost_retries": lost_retries,
            "conductor": run.owner,  # workers this process started stop their builds if it dies
            "preload": list(kernel.preload),
            "context": {
                "build": build_flow.name,
                "scenario": p.values,
                "runs_root": str(runs),
                "ledger_spool": str(runs / SPOOL_DIR / build_flow.name / p.instance),
            },
        }
        for p in plans
        if decisions[p.instance].run
    ]
    _share_template(backend, kernel, tasks)
    _ingest_leftovers(runs, build_flow.name)
    _mark_up_to_date(run, plans, decisions, reporter, root)
    reporter.start(
        len(tasks),
        f"conducting {len(tasks)} scenario(s) of {build_flow.name} on {backend.describe()}"
        if tasks
        else f"nothing to run for {build_flow.name}",
    )
    try:
        run.save()
    except BaseException:
        backend.shutdown()
        reporter.close()
        raise
    interrupted = False
    try:
        with sigterm_as_interrupt():
            _schedule(run, backend, tasks, fail_fast, reporter)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        backend.shutdown()
        reporter.close()
        shutil.rmtree(attempts, ignore_errors=True)
        _remove_empty(attempts.parent, runs / SPOOL_DIR / build_flow.name, runs / SPOOL_DIR)
    if interrupted:
        run.state = "interrupted"
    elif run.state == "running":
        run.state = "finished"
    run.save()

    for col in ("status", "state", "duration", "error", "worst_flow"):
        out[col] = [run.rows[p.instance][col] for p in plans]
    out = _join_metrics(out, [run.rows[p.instance]["metrics"] for p in plans])
    _write_results(out, build_dir)
    if interrupted:
        raise KeyboardInterrupt
    red = [p.instance for p in plans if run.rows[p.instance]["status"] == "red"]
    if red and raise_on_failure:
        raise ConductorFailed(f"{len(red)} of {len(plans)} scenario(s) red: {', '.join(red[:10])}", out)
    return out


def _schedule(run: _Run, backend: Backend, tasks: list[dict[str, Any]], fail_fast: bool, reporter: Reporter) -> None:
    """Keep ``backend.workers`` builds in flight; record each as it finishes; stop early on fail-fast.

    On Ctrl-C: launch nothing more, ask the running builds to stop (their kernels are
    interrupted and reaped, their records say ``interrupted``), record what they report,
    re-raise.
    """
    queue = list(tasks)
    running: dict[Future[Any], dict[str, Any]] = {}
    stopping = False
    interrupting = False  # a worker that goes during a Ctrl-C was stopped, not lost

    def record(fut: Future[Any]) -> None:
        task = running.pop(fut)
        row = run.rows[task["instance"]]
        outcome = _outcome(fut)
        if outcome.pop("lost", False):
            if interrupting:
                outcome["error"] = "interrupted"
            _close_lost(run, task, outcome["error"], interrupted=interrupting)
        ingest_spool(run.runs_root, Path(task["context"]["ledger_spool"]))
        skipped = outcome.pop("skipped", False)
        notes = outcome.pop("notes", ())
        row.update({k: v for k, v in outcome.items() if k in row}, state="skipped" if skipped else "done")
        if row["duration"] is None:  # a lost build reports none: take it from its record
            row["duration"] = _build_duration(run, row)
        row["metrics"] = collect_metrics(Path(task["instance_dir"]))
        for note in notes:
            reporter.message(f"{task['instance']}: {note}")
        reporter.finished(row, run.counts())

    try:
        while queue or running:
            while queue and len(running) < backend.workers and not stopping:
                task = queue.pop(0)
                run.rows[task["instance"]]["state"] = "running"
                run.save(report=False)
                running[backend.submit(run_build, task)] = task
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                instance = running[fut]["instance"]
                record(fut)
                if run.rows[instance]["status"] == "red" and fail_fast and not stopping:
                    stopping = True
                    run.state = "stopped"
                    reporter.message(f"fail-fast: {instance} is red; not starting {len(queue)} more")
                run.save()
            if stopping:
                for task in queue:
                    run.rows[task["instance"]]["state"] = "cancelled"
                queue.clear()
    except KeyboardInterrupt:
        reporter.message("interrupted: stopping running builds and reaping their kernels ...")
        interrupting = True
        backend.stop([t["instance_dir"] for t in running.values()])
        done, _ = wait(list(running), timeout=_INTERRUPT_GRACE_S)
        for fut in done:
            record(fut)
        for task in running.values():
            ingest_spool(run.runs_root, Path(task["context"]["ledger_spool"]))
        for row in run.rows.values():
            if row["state"] == "running":
                summary = summarize_instance(run.runs_root / row["dir"], run.build.stem)
                duration = summary.build.duration if summary.build else None
                row.update(state="done", status="red", error="interrupted", duration=duration,
                           worst_flow=summary.worst_flow)
            elif row["state"] == "pending":
                row["state"] = "cancelled"
        for row in run.rows.values():
            if row["state"] == "done" and row["status"] == "red" and not row["error"]:
                row["error"] = "interrupted"
        raise


def _share_template(backend: Backend, kernel: KernelOptions, tasks: list[dict[str, Any]]) -> None:
    """Local workers fork their kernels from one template this process starts now, while the
    pool starts; workers elsewhere (Dask) start their own on first use."""
    if not (tasks and kernel.forks and backend.name == "local"):
        return
    from ductaflow.kernels import fork

    try:
        template = fork.template_for(kernel.preload, wait=False)
    except OSError as exc:
        log.warning("cannot start the kernel template (%s); workers start their own", exc)
        return
    for task in tasks:
        task["kernel_template"] = template.socket_path


def _outcome(fut: Future[Any]) -> dict[str, Any]:
    """A finished future as row fields; a future that failed means the worker was lost."""
    try:
        res = fut.result()
    except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, Dask's KilledWorker, a lost connection
        return lost_outcome(f"{type(exc).__name__}: {exc}".rstrip(": "))
    keys = ("status", "duration", "error", "worst_flow", "skipped", "notes", "lost")
    return {k: res.get(k) for k in keys if k in res}


def _close_lost(run: _Run, task: dict[str, Any], error: str, interrupted: bool = False) -> None:
    """A lost build's records say red (not "running" forever) and the ledger has the run."""
    instance_dir = Path(task["instance_dir"])
    detail = error.split(": ", 1)[-1]
    finalize_lost(instance_dir, detail, interrupted=interrupted)
    summary = summarize_instance(instance_dir, run.build.stem)
    if summary.build is not None:
        ctx = {"build": run.build.stem, "runs_root": str(run.runs_root), "project_root": task["project_root"],
               "ledger_spool": task["context"]["ledger_spool"]}
        append_runs(ctx, [(summary.build, "run", task["context"]["scenario"])])
    run.rows[task["instance"]]["worst_flow"] = summary.worst_flow


def _build_duration(run: _Run, row: dict[str, Any]) -> float | None:
    summary = summarize_instance(run.runs_root / row["dir"], run.build.stem)
    return summary.build.duration if summary.build else None


def _remove_empty(*folders: Path) -> None:
    """Bookkeeping folders go once they are empty (in the order given)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _ingest_leftovers(runs: Path, build: str) -> None:
    """Ledger records a killed conductor left in the spool go into the ledger first."""
    folder = runs / SPOOL_DIR / build
    if folder.is_dir():
        for spool in sorted(p for p in folder.iterdir() if p.is_dir()):
            ingest_spool(runs, spool)


def _mark_up_to_date(
    run: _Run, plans: list[ScenarioPlan], decisions: dict[str, Decision], reporter: Reporter, root: Path
) -> None:
    """Rows whose instance is up to date: filled from disk, logged once in the ledger."""
    skipped = []
    for p in plans:
        d = decisions[p.instance]
        if d.run:
            continue
        row = run.rows[p.instance]
        summary = summarize_instance(run.runs_root / row["dir"], run.build.stem)
        row.update(
            state="skipped",
            status=(summary.status or Status(d.record["status"])).value,
            duration=summary.build.duration if summary.build else None,
            error=summary.error,
            worst_flow=summary.worst_flow,
            metrics=collect_metrics(run.runs_root / row["dir"]),
        )
        if summary.build is not None:
            skipped.append((replace(summary.build, skipped=True), "skip", p.values))
    if skipped:
        ctx = {"build": run.build.stem, "runs_root": str(run.runs_root), "project_root": str(root)}
        append_runs(ctx, skipped)
        reporter.message(f"{len(skipped)} scenario(s) up to date; not re-run (use force=True / --force to re-run)")


def _join_metrics(out: pd.DataFrame, metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """Recorded metrics as columns beside the scenario values (existing columns win)."""
    if not any(metrics):
        return out
    extra = pd.DataFrame(metrics, index=out.index)
    clash = [c for c in extra.columns if c in out.columns]
    if clash:
        log.warning("recorded metrics named like scenario columns were prefixed with 'metric.': %s", clash)
        extra = extra.rename(columns={c: f"metric.{c}" for c in clash})
    return pd.concat([out, extra], axis=1)


def _write_results(out: pd.DataFrame, build_dir: Path) -> None:
    """``<build>/results.parquet``: the whole scenario table with lights and metrics, atomically."""
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = build_dir / ".results.parquet.tmp"
    table = out.copy()
    for col in table.columns:
        if table[col].dtype == object:
            kinds = {type(v) for v in table[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
            if len(kinds) > 1 or not kinds <= {str, bool, int, float}:
                table[col] = table[col].map(lambda v: None if v is None else str(v))
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, build_dir / "results.parquet")
    except Exception as exc:  # noqa: BLE001 - the table is also returned; a write failure is logged
        log.warning("could not write %s: %s", build_dir / "results.parquet", exc)
