"""The conductor's pure parts, without a kernel: the sweep plan and its tasks, the typed
task and outcome that cross the process boundary, the state-file row, closing a lost
build's records, and the scheduling loop on a stand-in build function."""

from __future__ import annotations

import json
import os
import pickle
import socket
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ductaflow.conductor import schedule as schedule_mod
from ductaflow.conductor.executors import SerialBackend
from ductaflow.conductor.lost import close_lost, recover
from ductaflow.conductor.plan import SweepPlan, build_tasks, plan_sweep
from ductaflow.conductor.progress import NullReporter
from ductaflow.conductor.schedule import outcome_of, schedule
from ductaflow.conductor.state import ConductorRun, state_row
from ductaflow.conductor.tasks import NOT_RUN, WORKER_LOST, BuildOutcome, BuildTask, lost_outcome
from ductaflow.conductor.worker import claim_attempt, close_earlier_attempt
from ductaflow.core.failures import RetryPolicy
from ductaflow.core.lights import Status
from ductaflow.core.seeds import derive_seed
from ductaflow.errors import FlowFileError
from ductaflow.lifecycle.events import ScenarioEvent
from ductaflow.run.decide import Decision, still_current
from ductaflow.store.records import read_status, write_status
from ductaflow.store.result import FlowResult, RunState

FLOW = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n'
BUILD = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nfrom ductaflow import step\nstep("flows/work.py", "work", {})\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "builds").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    return root


def _plan(project: Path, **kw: object) -> SweepPlan:
    table = pd.DataFrame({"scenario_name": ["a", "b"], "g": [1, 2]})
    return plan_sweep(table, project / "builds" / "pipe.py", project_root=project, preload=(), **kw)  # type: ignore[arg-type]


def test_plan_sweep_decides_every_instance_once(project: Path) -> None:
    plan = _plan(project)
    assert plan.name == "pipe" and plan.runs_root == (project / "runs").resolve()
    assert [p.instance for p in plan.scenarios] == ["a", "b"] and plan.columns == ("scenario_name", "g")
    assert plan.flows == (project / "flows" / "work.py",)
    assert {i: (d.run, d.reasons) for i, d in plan.decisions.items()} == {"a": (True, ("new",)), "b": (True, ("new",))}
    assert [p.instance for p in plan.to_run] == ["a", "b"]
    assert _plan(project, force=True).decisions["a"].reasons == ("forced",)
    # the decision carries the fingerprint it was made on, with the build's flows hashed once
    fp = plan.decisions["a"].fingerprint
    assert fp is not None and set(fp.flows) == {"work"} and fp.upstream == ()


def test_plan_sweep_refuses_a_build_naming_a_missing_flow(project: Path) -> None:
    (project / "flows" / "work.py").unlink()
    with pytest.raises(FlowFileError, match="does not exist"):
        _plan(project)


def test_tasks_carry_the_plan_and_its_decision_and_skip_up_to_date_instances(project: Path) -> None:
    plan = _plan(project, force=True)
    up_to_date = Decision(False, ())
    plan = replace(plan, decisions={**plan.decisions, "a": up_to_date})
    attempts = project / "attempts"
    tasks = build_tasks(
        plan, attempts=attempts, conductor={"pid": 1}, timeout=5.0, lost_retries=2, kernel_template="/tmp/sock"
    )
    [task] = tasks
    assert task.instance == "b" and task.decision is plan.decisions["b"]
    assert task.instance_dir == plan.runs_root / "pipe" / "b" and task.build_path == project / "builds" / "pipe.py"
    assert task.config == {"g": 2, "_instance": "b", "_seed": derive_seed(0, "b")}
    assert task.project_root == project.resolve()
    assert task.attempt_file == attempts / "b.json" and task.lost_retries == 2 and task.timeout == 5.0
    assert task.force and task.context.force and task.kernel_template == "/tmp/sock" and task.preload == ()
    ctx = task.context
    assert (ctx.build, ctx.scenario, ctx.runs_root) == ("pipe", {"scenario_name": "b", "g": 2}, str(plan.runs_root))
    assert ctx.ledger_spool == str(plan.runs_root / ".ductaflow" / "spool" / "pipe" / "b")


def test_task_and_outcome_survive_pickling(project: Path) -> None:
    plan = _plan(project)
    record = FlowResult("pipe", project / "builds" / "pipe.py", project / "runs", Status.GREEN, "finished")
    plan = replace(plan, decisions={**plan.decisions, "a": Decision(True, ("config changed",), record)})
    task = build_tasks(plan, attempts=project)[0]
    again = pickle.loads(pickle.dumps(task))
    assert again == task and again.decision is not None and again.decision.record == record
    outcome = BuildOutcome("a", Status.ORANGE, 1.5, None, "work", notes=("a note",))
    assert pickle.loads(pickle.dumps(outcome)) == outcome


def test_outcome_row_fields_and_lost_outcomes() -> None:
    done = BuildOutcome("a", Status.RED, 2.0, "work: RuntimeError: boom", "work", kind="user_error")
    assert done.row_fields() == {
        "state": "done",
        "status": "red",
        "duration": 2.0,
        "error": "work: RuntimeError: boom",
        "worst_flow": "work",
        "kind": "user_error",
    }
    assert BuildOutcome("a", Status.GREEN, kind="user_error").row_fields()["kind"] is None  # only red rows have one
    assert BuildOutcome("a", Status.GREEN, skipped=True).row_fields()["state"] == "skipped"
    lost = lost_outcome("a", "gone")
    assert lost.lost and lost.status is Status.RED and lost.error == f"{WORKER_LOST}: gone"
    assert lost.kind == "worker_lost"
    failed: Future[BuildOutcome] = Future()
    failed.set_exception(RuntimeError("boom"))
    assert outcome_of(failed, "a") == lost_outcome("a", "RuntimeError: boom")
    empty: Future[BuildOutcome] = Future()
    empty.set_exception(EOFError())
    assert outcome_of(empty, "a").error == f"{WORKER_LOST}: EOFError"


def test_state_row_and_the_state_file(project: Path) -> None:
    plan = _plan(project)
    assert state_row(plan.scenarios[0], "pipe") == {
        "instance": "a",
        "dir": "pipe/a",
        "values": {"scenario_name": "a", "g": 1},
        "state": "pending",
        "status": None,
        "duration": None,
        "error": None,
        "worst_flow": None,
        "metrics": {},
        "sweep": None,
        "replicate": None,
        "parent": None,
        "attempts": 0,
        "kind": None,
    }
    run = ConductorRun(plan)
    run.start("a")
    row = run.finish(BuildOutcome("a", Status.GREEN, 1.0))
    assert row["state"] == "done" and row["status"] == "green" and run.counts() == {"green": 1, "orange": 0, "red": 0}
    run.save(report=False)
    doc = json.loads(run.state_path.read_text())
    assert doc["state"] == "running" and doc["finished"] is None and doc["columns"] == ["scenario_name", "g"]
    assert doc["conductor"]["pid"] == os.getpid() and [r["state"] for r in doc["scenarios"]] == ["done", "pending"]
    run.interrupt()
    assert run.column("state") == ["done", "cancelled"]


def test_interrupt_marks_running_rows_red_and_unexplained_reds_interrupted(project: Path) -> None:
    run = ConductorRun(_plan(project))
    run.start("a")
    run.rows["b"].update(state="done", status="red")
    run.interrupt()
    assert run.column("status") == ["red", "red"] and run.column("error") == ["interrupted", "interrupted"]
    assert run.column("state") == ["done", "done"]


def _running_record(folder: Path, flow: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rec = FlowResult(
        flow,
        Path(f"{flow}.py"),
        folder,
        Status.RED,
        RunState.RUNNING.value,
        started="2024-01-01T00:00:00",
        pid=os.getpid(),
        host=None,
    )
    write_status(rec)
    return rec.status_path


@pytest.mark.parametrize("interrupted", [False, True])
def test_close_lost_closes_the_records_and_logs_the_run(project: Path, interrupted: bool) -> None:
    plan = _plan(project)
    [task, _] = build_tasks(plan, attempts=project)
    build_rec = _running_record(task.instance_dir, "pipe")
    flow_rec = _running_record(task.instance_dir / "runs" / "work", "work")
    done = close_lost(task, lost_outcome("a", "KilledWorker: x"), interrupted=interrupted)
    for path in (build_rec, flow_rec):
        rec = read_status(path)
        assert rec is not None and rec.state == "finished" and rec.status is Status.RED
        assert rec.interrupted is interrupted and rec.error is not None
        if interrupted:
            assert (rec.error.type, rec.error.message) == ("KeyboardInterrupt", "interrupted")
        else:
            assert (rec.error.type, rec.error.message) == ("WorkerLost", f"{WORKER_LOST}: KilledWorker: x")
    assert done.worst_flow == "work"
    assert done.error == ("interrupted" if interrupted else f"{WORKER_LOST}: KilledWorker: x")
    parked = [r for f in Path(task.context.ledger_spool or "").glob("*.json") for r in json.loads(f.read_text())]
    assert sorted(r["flow"] for r in parked) == ["pipe", "work"], "each lost run (build and flow) is logged"
    assert all(r["status"] == "red" and r["duration"] > 0 for r in parked), "with how long it ran"


def _attempted(task: BuildTask, started: str) -> None:
    """The attempt file a worker writes as it starts ``task`` (at time ``started``)."""
    assert task.attempt_file is not None
    claim_attempt(task.attempt_file)
    doc = json.loads(task.attempt_file.read_text())
    task.attempt_file.write_text(json.dumps({**doc, "started": started}))


def test_a_build_that_finished_keeps_its_light_when_its_answer_is_lost(project: Path) -> None:
    """The scheduler went away after the build finished: its final record on disk is the answer."""
    plan = _plan(project)
    [task, _] = build_tasks(plan, attempts=project / "attempts")
    _attempted(task, "2024-01-01T00:00:00.000+00:00")
    rec = FlowResult("pipe", task.build_path, task.instance_dir, Status.GREEN, "finished",
                     started="2024-01-01T00:00:01.000+00:00", duration=3.0)  # fmt: skip
    task.instance_dir.mkdir(parents=True)
    write_status(rec)
    out = recover(task, lost_outcome("a", "CancelledError"), cluster_gone=True)
    assert (out.status, out.lost, out.not_run, out.started) == (Status.GREEN, False, False, rec.started)
    assert read_status(rec.status_path) == rec, "a finished record is not touched"


def test_an_older_finished_record_is_not_taken_for_a_lost_attempt(project: Path) -> None:
    plan = _plan(project)
    [task, _] = build_tasks(plan, attempts=project / "attempts")
    _attempted(task, "2024-01-02T00:00:00.000+00:00")  # started after the record below
    task.instance_dir.mkdir(parents=True)
    write_status(FlowResult("pipe", task.build_path, task.instance_dir, Status.GREEN, "finished",
                            started="2024-01-01T00:00:01.000+00:00"))  # fmt: skip
    out = recover(task, lost_outcome("a", "CancelledError"), cluster_gone=True)
    assert out.status is Status.RED and out.lost and out.error.startswith(WORKER_LOST)


@pytest.mark.parametrize("gone", [True, False])
def test_a_build_that_never_started_is_not_run_only_when_the_cluster_is_gone(project: Path, gone: bool) -> None:
    plan = _plan(project)
    [task, _] = build_tasks(plan, attempts=project / "attempts")
    out = recover(task, lost_outcome("a", "the scheduler was lost"), cluster_gone=gone)
    if gone:
        assert out.not_run and not out.lost and out.error == f"{NOT_RUN}: the scheduler was lost"
        assert out.row_fields()["state"] == "cancelled" and out.row_fields()["status"] is None
    else:
        assert out.lost and out.status is Status.RED and out.error.startswith(WORKER_LOST)


def test_a_retried_task_closes_and_logs_its_dead_attempt(project: Path) -> None:
    """Attempt 2 of a task (its first worker died mid-build) closes what attempt 1 left running."""
    plan = _plan(project)
    [task, _] = build_tasks(plan, attempts=project / "attempts", lost_retries=1)
    build_rec = _running_record(task.instance_dir, "pipe")
    assert close_earlier_attempt(task, 2) == 1
    rec = read_status(build_rec)
    assert rec is not None and (rec.state, rec.status) == ("finished", Status.RED)
    assert rec.error is not None and "attempt 1 died; re-run as attempt 2" in rec.error.message
    parked = [r for f in Path(task.context.ledger_spool or "").glob("*.json") for r in json.loads(f.read_text())]
    assert [r["flow"] for r in parked] == ["pipe"] and parked[0]["duration"] is not None


def test_the_conductors_decision_holds_unless_the_record_changed_since(tmp_path: Path) -> None:
    """A second conductor that ran the instance meanwhile leaves a different record: decide again."""
    new = Decision(True, ("new",), None)
    assert still_current(tmp_path, "pipe", new)
    path = _running_record(tmp_path, "pipe")
    assert not still_current(tmp_path, "pipe", new)
    seen = read_status(path)
    stale = Decision(True, ("last run did not finish",), seen)
    assert still_current(tmp_path, "pipe", stale)
    assert seen is not None
    write_status(replace(seen, state="finished", status=Status.GREEN, finished="2024-01-01T00:01:00"))
    assert not still_current(tmp_path, "pipe", stale)


def test_claim_attempt_counts_starts(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "a.json"
    assert [claim_attempt(path), claim_attempt(path)] == [1, 2]
    assert json.loads(path.read_text())["attempts"] == 2 and not list(path.parent.glob(".*"))


NOW = "2026-12-04T12:00:00.000Z"


def _ran(task: BuildTask, status: Status, *, on_disk: bool = True, started: str = NOW) -> BuildOutcome:
    """What a worker returns after a build, its final record written where the conductor reads (or not)."""
    if on_disk:
        task.instance_dir.mkdir(parents=True, exist_ok=True)
        build = task.build_path.stem
        write_status(FlowResult(build, task.build_path, task.instance_dir, status, RunState.FINISHED.value, started))
    return BuildOutcome(task.instance, status, 0.1, worker="node7:4242", started=started)


def test_a_green_whose_record_is_not_on_the_conductors_disk_is_red(project: Path, monkeypatch) -> None:
    """A worker that does not see the runs root wrote the build to its own disk: never green here."""
    table = pd.DataFrame({"scenario_name": ["here", "elsewhere", "stale"]})
    plan = plan_sweep(table, project / "builds" / "pipe.py", project_root=project, preload=())
    tasks = build_tasks(plan, attempts=ConductorRun(plan).attempts)
    _ran(tasks[2], Status.GREEN, started="2026-11-01T00:00:00.000Z")  # last month's run, on this disk

    def fake_build(task: BuildTask) -> BuildOutcome:
        return _ran(task, Status.GREEN, on_disk=task.instance == "here")

    monkeypatch.setattr(schedule_mod, "run_build", fake_build)
    run = ConductorRun(plan)
    schedule(run, SerialBackend(), tasks, fail_fast=False, reporter=NullReporter())
    assert run.column("status") == ["green", "red", "red"]
    errors = run.column("error")
    assert errors[0] is None
    assert errors[1].startswith("shared_filesystem: worker node7:4242 reported green") and "missing" in errors[1]
    assert "2026-11-01" in errors[2]  # an older run's record is not this run's


def test_the_loop_records_every_build_and_fail_fast_cancels_the_rest(project: Path, monkeypatch) -> None:
    table = pd.DataFrame({"scenario_name": list("abcd"), "fail": [False, True, False, False]})
    plan = plan_sweep(table, project / "builds" / "pipe.py", project_root=project, preload=())
    seen: list[str] = []

    def fake_build(task: BuildTask) -> BuildOutcome:
        seen.append(task.instance)
        return _ran(task, Status.RED if task.config["fail"] else Status.GREEN)

    monkeypatch.setattr(schedule_mod, "run_build", fake_build)
    run = ConductorRun(plan)
    tasks = build_tasks(plan, attempts=run.attempts)
    assert schedule(run, SerialBackend(), tasks, fail_fast=True, reporter=NullReporter()) is False
    assert seen == ["a", "b"] and run.state == "stopped"
    assert run.column("state") == ["done", "done", "cancelled", "cancelled"]
    assert run.column("status") == ["green", "red", None, None]

    run = ConductorRun(plan)
    assert schedule(run, SerialBackend(), tasks, fail_fast=False, reporter=NullReporter()) is False
    assert run.column("status") == ["green", "red", "green", "green"] and run.state == "running"


def test_every_scenario_emits_its_events_and_a_failing_consumer_changes_nothing(project: Path, monkeypatch) -> None:
    table = pd.DataFrame({"scenario_name": list("abc"), "fail": [False, True, False]})
    plan = plan_sweep(table, project / "builds" / "pipe.py", project_root=project, preload=())

    def fake_build(task: BuildTask) -> BuildOutcome:
        return _ran(task, Status.RED if task.config["fail"] else Status.GREEN)

    def broken(event: ScenarioEvent) -> None:
        raise RuntimeError("tracker down")

    monkeypatch.setattr(schedule_mod, "run_build", fake_build)
    run = ConductorRun(plan)
    seen: list[tuple[str, str, str | None]] = []
    run.events.add("broken", broken)
    run.events.add("spy", lambda e: seen.append((e.instance, str(e.kind), e.row["status"])))
    assert schedule(run, SerialBackend(), build_tasks(plan, attempts=run.attempts), fail_fast=False,
                    reporter=NullReporter()) is False  # fmt: skip
    assert seen == [
        ("a", "started", None), ("a", "finished", "green"),
        ("b", "started", None), ("b", "failed", "red"),
        ("c", "started", None), ("c", "finished", "green"),
    ]  # fmt: skip
    assert run.column("status") == ["green", "red", "green"]
    assert {f.consumer for f in run.failures} == {"broken"} and len(run.failures) == 6
    state = json.loads(run.state_path.read_text())
    assert [s["status"] for s in state["scenarios"]] == ["green", "red", "green"]


def test_a_build_runs_only_where_the_conductors_token_is_seen(project: Path, tmp_path: Path) -> None:
    """Every build checks, on its worker, that it sees the runs root (defence behind the join check)."""
    from ductaflow.conductor.executors.dask_remote import Probe, Unshared, run_on_worker

    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "coordinator").write_text("token-1")
    ran: list[str] = []

    def build(task: str) -> BuildOutcome:
        ran.append(task)
        return BuildOutcome(task, Status.GREEN)

    out = run_on_worker(build, "a", Probe(str(folder), "token-1"))
    assert ran == ["a"] and isinstance(out, BuildOutcome) and out.worker == f"{socket.gethostname()}:{os.getpid()}"
    for probe in (Probe(str(folder), "another sweep's token"), Probe(str(tmp_path / "elsewhere"), "token-1")):
        refused = run_on_worker(build, "b", probe)
        assert isinstance(refused, Unshared) and ran == ["a"], refused
        assert refused.kind == "shared_filesystem" and str(folder.parent) in refused.problem


def test_kernel_files_of_gone_owners_are_removed(tmp_path: Path) -> None:
    """Pool workers end without exit handlers: the files of their kernels are swept, a live owner's kept."""
    import subprocess
    import sys

    from ductaflow.kernels.provisioner import remove_leftovers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    names = [f"df-{dead.stdout.strip()}-abc.json", f"df-{dead.stdout.strip()}-abc-1", f"df-{os.getpid()}-def.json",
             "df-0123456789abcdef-1", "kernel-1.json"]  # fmt: skip
    runtime, temp = tmp_path / "runtime", tmp_path / "tmp"
    runtime.mkdir(), temp.mkdir()
    for name in names:
        (runtime / name).write_text("")
    dead_template = temp / f"ductaflow-kt-{dead.stdout.strip()}-x1"  # owner and template SIGKILLed
    live_template = temp / f"ductaflow-kt-{os.getpid()}-x2"
    for folder in (dead_template, live_template):
        folder.mkdir()
        (folder / "s").write_text("")
    (temp / "ductaflow-kt-x3").mkdir()  # an older name without its owner: left alone
    assert remove_leftovers(runtime, temp) == 3
    assert sorted(p.name for p in runtime.iterdir()) == sorted(names[2:])
    assert sorted(p.name for p in temp.iterdir()) == sorted([live_template.name, "ductaflow-kt-x3"])


def test_a_build_still_queued_on_the_cluster_is_cancelled_by_an_interrupt_not_red(project: Path) -> None:
    run = ConductorRun(_plan(project))
    run.start("a")
    run.start("b")
    run.unstart("b")  # handed to the cluster, never began
    run.interrupt()
    assert run.column("state") == ["done", "cancelled"] and run.column("status") == ["red", None]


class _ScenarioCalls:
    """A hook that keeps the scenario-level calls it gets, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_scenario_start(self, e: ScenarioEvent) -> None:
        self.calls.append(("start", e.instance))

    def on_scenario_end(self, e: ScenarioEvent) -> None:
        self.calls.append(("end", e.instance))

    def on_scenario_error(self, e: ScenarioEvent) -> None:
        self.calls.append(("error", e.instance))


def test_a_retried_scenario_s_hooks_see_one_start_and_one_end(project: Path, monkeypatch) -> None:
    """The documented order (one on_scenario_start, then exactly one end) holds across retries;
    the conductor's own consumers still see each attempt start."""
    hook = _ScenarioCalls()
    table = pd.DataFrame({"scenario_name": ["a"]})
    plan = plan_sweep(table, project / "builds" / "pipe.py", project_root=project, preload=(), hooks=[hook])
    attempts: list[int] = []

    def flaky_build(task: BuildTask) -> BuildOutcome:
        attempts.append(task.attempt)
        if task.attempt == 1:
            return replace(_ran(task, Status.RED), kind="kernel_died", error="DeadKernelError: died")
        return _ran(task, Status.GREEN)

    monkeypatch.setattr(schedule_mod, "run_build", flaky_build)
    run = ConductorRun(plan)
    kinds: list[str] = []
    run.events.add("spy", lambda e: kinds.append(str(e.kind)))
    interrupted = schedule(run, SerialBackend(), build_tasks(plan, attempts=run.attempts), fail_fast=False,
                           reporter=NullReporter(), retry=RetryPolicy.of(1, None, 0))  # fmt: skip
    assert interrupted is False and attempts == [1, 2] and run.column("status") == ["green"]
    assert kinds == ["started", "started", "finished"]
    assert hook.calls == [("start", "a"), ("end", "a")]
