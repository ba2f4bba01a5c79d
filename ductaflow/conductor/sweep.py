"""The conductor: one build instance per scenario row, run in parallel, reported live.

:func:`conduct` composes three steps: plan (:mod:`ductaflow.conductor.plan`: every row
checked and every run-or-skip decision made, before anything starts), schedule
(:mod:`ductaflow.conductor.schedule`: one loop over the futures of a
:class:`~ductaflow.conductor.executors.Backend`) and record
(:mod:`ductaflow.conductor.state`). Workers only run a build and return its outcome; this
process alone writes the shared files: the conductor state file, the ledger, the results
table and the HTML report.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.conductor.plan import SweepPlan, plan_sweep
from ductaflow.conductor.progress import Reporter, make_reporter
from ductaflow.conductor.resume import Resumed, load_resumed, start_state
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.search import FinishedScenario, Search, follow_up_spec, resolve_follow_up
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.tables import load_scenarios
from ductaflow.conductor.tasks import NOT_RUN
from ductaflow.core.failures import RetryPolicy
from ductaflow.core.names import validate_name
from ductaflow.errors import ConductorFailed, ScenarioError
from ductaflow.report.spec import ReportSpec
from ductaflow.run.notebook_html import check_policy
from ductaflow.store.layout import REPORT_NAME
from ductaflow.store.results import with_groups, write_results
from ductaflow.store.sweeps import BUDGET

log = logging.getLogger(__name__)


def conduct(
    scenarios: pd.DataFrame | str | Path | None,
    build: str | Path | None,
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
    allow_unknown: bool = False,
    worker_wait: float | None = None,
    html: str = "failed",
    sweep: str | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    max_runs: int | None = None,
    report: Mapping[str, Any] | ReportSpec | None = None,
    hooks: Sequence[object] = (),
    hooks_fail: str | None = None,
    trackers: Sequence[str] = (),
    follow_up: Callable[[FinishedScenario], Any] | str | None = None,
    resume: str | None = None,
    retries: int | None = None,
    retry_on: Sequence[str] | str | None = None,
    backoff: float | None = None,
) -> pd.DataFrame:
    """Run ``build`` once per scenario row into ``<runs_root>/<build>/<instance>/``.

    Each row, merged over ``base_config`` (default: the build's own default config), is
    one build instance. Returns the scenario table with ``instance``, ``status``,
    ``state``, ``duration``, ``instance_dir``, ``error`` and ``worst_flow`` added. Raises
    :class:`ConductorFailed` (carrying the table) when any scenario is red, unless
    ``raise_on_failure=False``; re-raises ``KeyboardInterrupt`` after an orderly stop.
    Relative ``runs_root`` paths are taken from the project root.

    Every scenario column (but the one naming instances) and every ``base_config`` key must
    be a parameter the build or one of its flows knows: a key of their default configs or
    literal parameters cells (nested ``a.b`` too), or of a flow an earlier instance of the
    build recorded running. Others raise :class:`ScenarioError` before anything runs or is
    written (also with ``dry_run`` and ``explain``), naming the nearest known names;
    ``allow_unknown=True`` passes them on anyway, with a log line. The name column is
    passed as a parameter only when some flow knows a key of that name.

    Instances whose last green/orange run matches their fingerprint are skipped ("up to
    date", no kernel started); ``force`` re-runs all, ``only_failed`` only red and
    never-run ones, ``explain`` runs nothing and says per instance what would run and why.
    Metrics the flows ``record()`` come back as columns and go to ``<build>/results.parquet``.

    ``executor`` says where builds run: ``"local"`` processes (default), ``"serial"``,
    ``"dask"`` (a LocalCluster), ``"slurm"`` (an adaptive SLURMCluster from
    ``[tool.ductaflow.cluster]``) or a Dask scheduler address, any
    ``concurrent.futures.Executor``, or a ``distributed.Client``. A build whose worker
    dies is red ``worker_lost`` (after ``lost_retries`` re-runs, where the executor
    re-runs lost tasks, as Dask does); the rest of the table carries on. On a cluster
    (Dask), ``worker_wait`` seconds (default 300) is how long the sweep waits while no
    worker is connected before the scenarios not yet run are given up as ``not_run``.

    ``preload`` names modules imported once by the kernel template that every flow kernel
    is forked from (default: ``[tool.ductaflow] preload`` in pyproject.toml; see
    :mod:`ductaflow.kernels`). Every flow still gets a fresh kernel of its own.

    ``html`` says which executed notebooks (the build's and its flows') become readable,
    script-free pages ``<flow>.html`` that the report links to, rendered by the worker once a
    build has ended: ``"failed"`` (red and orange, the default), ``"all"`` or ``"none"``.

    ``sweep`` names this call (an instance-style name; default: UTC time plus a short hash,
    ``20261204T171530-3fa9c2``); every record and ledger row of the builds it runs carries it,
    and ``results.parquet`` keeps the rows of earlier sweeps of other instances.

    ``replicates=N`` runs each row N times as instances ``<name>__r<k>`` (k = 1..N, padded
    to the width of N; ``config["_replicate"] = k``). Every instance's config carries
    ``_seed``: the first 4 bytes, big-endian, of sha256 over ``f"{seed}\x00{name}\x00{k}"``
    (``seed`` default 0, k = 0 without replicates); its kernels' ``random`` and numpy legacy
    global state are seeded with it before the first cell. ``max_runs`` refuses, with a
    :class:`ScenarioError` before anything runs, a plan that would run more builds than that
    (up-to-date instances are not counted).

    ``report`` says what the report compares (keys ``metrics``, ``minimize``, ``maximize``,
    ``baseline``; see :mod:`ductaflow.report.spec`); default: ``[tool.ductaflow.report]`` of
    the project's pyproject.toml. It is kept in the conductor's state file.

    ``hooks`` (``package.module:Name`` strings, classes or objects), after the project's
    ``[tool.ductaflow] hooks`` and the ``ductaflow.hooks`` entry points, are called at the sweep's,
    each scenario's (here) and each flow's (where it runs) start and end; see
    :mod:`ductaflow.lifecycle.hooks`. A hook that raises is recorded with the run and never
    changes its light unless ``hooks_fail`` is ``"red"`` (or ``"stop"``: red, and no further
    scenario starts).

    ``trackers`` names experiment trackers (``noop``, ``mlflow``, ``wandb``) every flow of the
    builds is logged to, besides the project's ``[tool.ductaflow] trackers``; the report links
    each flow to its tracker run (:mod:`ductaflow.trackers`).

    ``follow_up`` makes the sweep adaptive: called in this process with each scenario that
    ends with a light (a :class:`~ductaflow.conductor.search.FinishedScenario`: light, values,
    config, metrics), it returns more scenario rows (a DataFrame, a list of dicts, a dict or
    None; an optional ``priority`` column, lower runs first, ties in submission order). They are
    checked like the table, carry their parent as lineage, and a row equal to a scenario of the
    sweep is not run twice. With a follow-up, ``max_runs`` is the search's budget: once that
    many builds started, what is still queued ends ``not_run: budget``. A follow-up given as
    ``"module:function"`` (or a function defined in a module) can be found again by a resume
    from the command line.

    The sweep's search state (its scenarios, their lineage, priorities and lights) is kept in
    ``<runs_root>/.ductaflow/sweeps/<sweep>.json`` (:func:`ductaflow.read_sweep_state`), after
    every change in an adaptive sweep. ``resume=<sweep>`` carries a sweep on after its conductor
    died: scenarios that ended are not run again, queued ones keep their priority, running ones
    start again; ``scenarios`` and ``build`` may then be None (the sweep's own), and settings not
    given are the sweep's.

    ``retries=N`` runs a red build again, up to N times, when its failure kind (``kernel_died``,
    ``worker_lost``, ``timeout``, ``start_failed`` by default) or exception type is listed in
    ``retry_on``, after ``backoff * 2**(attempt-1)`` seconds (default 1 s, with jitter). A
    user's own error is not retried unless its type is listed. Every attempt has its record and
    ledger row; the row's light is the last attempt's.
    """
    check_policy(html)
    spec = ReportSpec.from_mapping(report, "conduct(report=...)") if report is not None else None
    resumed = load_resumed(resume, build, runs_root, project_root) if resume else None
    sweep_id = _sweep_id(resumed, sweep)
    given: dict[str, Any] = {"base_config": base_config, "instance_column": instance_column, "max_runs": max_runs,
             "retries": retries, "retry_on": retry_on, "backoff": backoff, "timeout": timeout,
             "replicates": replicates, "seed": seed}  # fmt: skip
    opts = resumed.fill(given) if resumed else given
    if resumed is not None:
        build = build if build is not None else resumed.state.build_path
        follow_up = follow_up if follow_up is not None else resumed.state.follow_up
    if build is None or (scenarios is None and resumed is None):
        raise ScenarioError("conduct() needs a scenario table and a build (or resume=<sweep>)")
    table = load_scenarios(scenarios) if scenarios is not None else None
    policy = RetryPolicy.of(opts["retries"] or 0, opts["retry_on"], opts["backoff"])
    plan = plan_sweep(
        table, build, base_config=opts["base_config"], runs_root=runs_root, instance_column=opts["instance_column"],
        project_root=project_root, preload=preload, force=force, only_failed=only_failed,
        allow_unknown=allow_unknown, replicates=opts["replicates"], seed=opts["seed"],
        max_runs=None if follow_up is not None else opts["max_runs"], hooks=hooks, hooks_fail=hooks_fail,
        trackers=trackers, scenarios=resumed.scenarios if resumed else (),
    )  # fmt: skip
    plan = resumed.keep_ended(plan) if resumed is not None else plan
    fn = resolve_follow_up(follow_up, plan.project_root)
    reporter = make_reporter(progress)
    if explain or dry_run:
        return (_explain if explain else _dry_run)(plan, _scenario_table(table, plan, resumed), reporter)
    run = ConductorRun(plan, sweep=sweep_id, report=spec)
    opts = {**opts, "base_config": dict(plan.rules.base) if plan.rules else None, "retry_on": list(policy.retry_on)}
    spec_ = follow_up_spec(follow_up, plan.project_root)
    state = start_state(plan, sweep_id, run.owner, max_runs=opts["max_runs"] if fn else None, follow_up=spec_,
                        options=opts, resumed=resumed)  # fmt: skip
    run.attach(Search(run, state, fn, adaptive=fn is not None or policy.retries > 0))
    run.sweep_event("start")
    if plan.to_run or fn is not None:
        # deferred: pools, clusters and the kernel machinery load only when a build runs
        from ductaflow.conductor.launch import run_builds

        interrupted = run_builds(
            run, reporter, executor=executor, max_parallel=max_parallel, worker_wait=worker_wait,
            timeout=opts["timeout"], lost_retries=lost_retries, html=html, fail_fast=fail_fast, retry=policy,
        )
    else:
        interrupted = _nothing_to_run(run, reporter)
    run.close(interrupted)
    if plan.parsed is not None:
        plan.parsed.save()  # after the state file: its commit stays the conductor's first rename
    run.sweep_event("end")
    out = _results(_scenario_table(table, run.plan, resumed), run, interrupted, raise_on_failure)
    if run.search is not None and run.search.failure is not None:
        raise run.search.failure
    return out


def _sweep_id(resumed: Resumed | None, sweep: str | None) -> str:
    """This call's sweep id: a resumed sweep's own (another ``sweep`` is refused), the one given, or a new one."""
    if resumed is None:
        return new_sweep_id() if sweep is None else validate_name(sweep, "sweep id")
    if sweep is not None and sweep != resumed.state.sweep:
        raise ScenarioError(f"resume={resumed.state.sweep!r} and sweep={sweep!r}: a resumed sweep keeps its id")
    return resumed.state.sweep


def _scenario_table(table: pd.DataFrame | None, plan: SweepPlan, resumed: Resumed | None = None) -> pd.DataFrame:
    """The returned table: the scenarios with their instance names and folders (and the parent
    of each follow-up, when there are any)."""
    first = len(resumed.state.nodes) if resumed is not None else 0  # the table's rows come after a resume's
    from_table = resumed is None and table is not None and all(p.parent is None for p in plan.scenarios)
    if from_table and table is not None:
        rows = [p.row for p in plan.scenarios]  # a row run as N replicates appears N times
        out = table.reset_index(drop=True).iloc[rows].reset_index(drop=True)
    else:  # a grown or resumed sweep: each row from its values (the table's own rows keep their types)
        base = table.reset_index(drop=True) if table is not None else None
        records = [_values_of(p, base, first) for p in plan.scenarios]
        out = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    out["instance"] = [p.instance for p in plan.scenarios]
    out["instance_dir"] = [str(plan.instance_dir(p.instance)) for p in plan.scenarios]
    if any(p.parent for p in plan.scenarios):
        out["parent"] = [p.parent for p in plan.scenarios]
    return out


def _values_of(p: ScenarioPlan, table: pd.DataFrame | None, first: int) -> dict[str, Any]:
    """A scenario's row: from the table when it came from it, else its planned values."""
    if table is not None and p.parent is None and first <= p.row < first + len(table):
        return dict(table.iloc[p.row - first].to_dict())
    return dict(p.values)


def _explain(plan: SweepPlan, out: pd.DataFrame, reporter: Reporter) -> pd.DataFrame:
    """``explain``: per instance, run or skip and why; nothing runs."""
    decisions = [plan.decisions[p.instance] for p in plan.scenarios]
    out["action"] = ["run" if d.run else "skip" for d in decisions]
    out["reasons"] = [d.text for d in decisions]
    for p, d in zip(plan.scenarios, decisions, strict=True):
        reporter.message(f"{p.instance}: {'run' if d.run else 'skip'} ({d.text})")
    return out


def _dry_run(plan: SweepPlan, out: pd.DataFrame, reporter: Reporter) -> pd.DataFrame:
    """``dry_run``: the plan, printed; nothing runs or is written."""
    out["state"] = "planned"
    out["action"] = ["run" if plan.decisions[p.instance].run else "skip" for p in plan.scenarios]
    reporter.message(f"dry run: {len(plan.scenarios)} scenario(s) of build {plan.name} -> {plan.build_dir}; "
                     f"{len(plan.to_run)} would run")
    for p in plan.scenarios:
        reporter.message(f"  {p.instance}: {p.values}")
    return out


def _nothing_to_run(run: ConductorRun, reporter: Reporter) -> bool:
    """Every scenario is up to date: their rows from disk, one ledger item each; no pool, no
    kernel. Returns True when a Ctrl-C came first (the rows then say so)."""
    report = run.plan.runs_root / REPORT_NAME
    try:
        run.ingest_leftovers()
        run.mark_up_to_date(reporter)
        reporter.start(0, f"nothing to run for {run.plan.name}; report: {report}")
    except KeyboardInterrupt:
        run.interrupt()
        return True
    finally:
        reporter.close()
        run.clean_up()
    return False


def new_sweep_id() -> str:
    """A fresh sweep id: the UTC time to the second plus a short hash (``20261204T171530-3fa9c2``)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    salt = hashlib.sha1(f"{time.time_ns()}-{os.getpid()}-{os.urandom(8).hex()}".encode()).hexdigest()[:6]
    return f"{stamp}-{salt}"


def _results(out: pd.DataFrame, run: ConductorRun, interrupted: bool, raise_on_failure: bool) -> pd.DataFrame:
    """The scenario table with each row's outcome and metrics, also merged into the results table."""
    for col in ("status", "state", "duration", "error", "worst_flow"):
        out[col] = run.column(col)
    before = set(out.columns)
    out = _join_metrics(out, run.column("metrics"))
    written = out if "sweep" in out.columns else out.assign(sweep=run.column("sweep"))
    groups = with_groups(written, [p.config.get("_replicate") for p in run.plan.scenarios])
    write_results(groups, run.plan.build_dir, [c for c in out.columns if c not in before])
    if interrupted:
        raise KeyboardInterrupt
    red = [p.instance for p in run.plan.scenarios if run.rows[p.instance]["status"] == "red"]
    budget = f"{NOT_RUN}: {BUDGET}"  # a search's budget spent: expected, not a failure
    errors = [(p.instance, str(run.rows[p.instance]["error"])) for p in run.plan.scenarios]
    not_run = [name for name, error in errors if error.startswith(NOT_RUN) and error != budget]
    if (red or not_run) and raise_on_failure:
        parts = [f"{len(red)} red: {', '.join(red[:10])}"] if red else []
        parts += [f"{len(not_run)} not run: {', '.join(not_run[:10])}"] if not_run else []
        raise ConductorFailed(f"of {len(run.plan.scenarios)} scenario(s), {'; '.join(parts)}", out)
    return out


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
