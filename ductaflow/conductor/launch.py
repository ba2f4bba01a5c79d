"""Running the builds of a sweep that has some to run: the backend (a local pool, a cluster),
the warm kernel template local workers fork from, the scheduling loop, and cleaning up after.

:func:`~ductaflow.conductor.sweep.conduct` imports this only when its plan runs something, so
that a re-run with every scenario up to date loads no pool, cluster or kernel code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from ductaflow.conductor.executors import Backend, make_backend
from ductaflow.conductor.plan import SweepPlan, build_tasks
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.schedule import schedule
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.tasks import BuildTask
from ductaflow.core.failures import RetryPolicy
from ductaflow.kernels import fork
from ductaflow.kernels.provisioner import remove_leftovers
from ductaflow.store.layout import REPORT_NAME

log = logging.getLogger(__name__)


def run_builds(
    run: ConductorRun,
    reporter: Reporter,
    *,
    executor: str | Executor | Any | None,
    max_parallel: int | None,
    worker_wait: float | None,
    timeout: float | None,
    lost_retries: int,
    html: str,
    fail_fast: bool,
    retry: RetryPolicy | None = None,
) -> bool:
    """Run the plan's builds that are due (and the follow-ups the sweep's search proposes),
    recording each in ``run``; returns True when a Ctrl-C (or SIGTERM) stopped them in order.
    The backend, the reporter and this call's bookkeeping files are closed on every way out."""
    plan = run.plan
    backend = _open_backend(plan, executor, max_parallel, worker_wait)
    try:
        template = _kernel_template(backend, plan)

        def make_tasks(scenarios: Sequence[ScenarioPlan]) -> list[BuildTask]:
            tasks = build_tasks(run.plan, attempts=run.attempts, conductor=run.owner, timeout=timeout,
                                lost_retries=lost_retries, kernel_template=template, html=html,
                                scenarios=scenarios)  # fmt: skip
            return [replace(t, context=t.context.child(sweep=run.sweep)) for t in tasks]

        tasks = make_tasks(plan.to_run)
        try:
            _begin(run, tasks, backend, reporter)
        except KeyboardInterrupt:  # before any build started: the rows say so, the state is final
            run.interrupt()
            return True
        return schedule(run, backend, tasks, fail_fast=fail_fast, reporter=reporter, retry=retry,
                        make_task=lambda p: make_tasks([p])[0])  # fmt: skip
    finally:
        backend.shutdown()
        reporter.close()
        run.clean_up()
        log.debug("removed %d leftover kernel file(s)", remove_leftovers())


def _open_backend(
    plan: SweepPlan, executor: str | Executor | Any | None, max_parallel: int | None, worker_wait: float | None
) -> Backend:
    """Where the builds run, once its workers are shown to see the runs root and the flows."""
    backend = make_backend(executor, max_parallel, project_root=plan.project_root, worker_wait=worker_wait)
    try:
        backend.check_shared(plan.runs_root, [plan.build.path, *plan.flows])
    except BaseException:
        backend.shutdown()
        raise
    return backend


def _kernel_template(backend: Backend, plan: SweepPlan) -> str | None:
    """Local workers fork their kernels from one template this process starts now, while the
    pool starts; workers elsewhere (Dask) start their own on first use."""
    if not (plan.kernel.forks and backend.name == "local"):
        return None
    try:
        return fork.template_for(plan.kernel.preload, wait=False).socket_path
    except OSError as exc:
        log.warning("cannot start the kernel template (%s); workers start their own", exc)
        return None


def _begin(run: ConductorRun, tasks: list[BuildTask], backend: Backend, reporter: Reporter) -> None:
    """Before the first build: the ledger's leftovers, the up-to-date rows, the first state and report."""
    run.ingest_leftovers()
    run.mark_up_to_date(reporter)
    name = run.plan.name
    report = run.plan.runs_root / REPORT_NAME
    title = f"conducting {len(tasks)} scenario(s) of {name} on {backend.describe()}; live report: {report}"
    reporter.start(len(tasks), title if tasks else f"nothing to run for {name}; report: {report}")
    run.save()


