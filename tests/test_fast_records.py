"""The status record: one schema (old records still read), one reader, one writer, and never a false green."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ductaflow import DuctaflowError, analyze_execution_logs
from ductaflow.core.context import RunContext
from ductaflow.core.deps import Dep
from ductaflow.core.lights import Status
from ductaflow.lifecycle.dispatch import Dispatcher
from ductaflow.lifecycle.events import EventKind, RunEvent, ending
from ductaflow.run.recorder import Lifecycle, running_record
from ductaflow.store.layout import artifact_path
from ductaflow.store.records import close_unfinished, read_status, roll_up, write_status
from ductaflow.store.result import STATUS_SCHEMA, ErrorInfo, FlowResult, RunState

SCHEMA_1 = {  # a record as main wrote it before schema 2 (issue 13)
    "flow": "f", "flow_path": "/p/flows/f.py", "execution_dir": "/old/place", "status": "orange",
    "state": "finished", "started": "2026-01-01T00:00:00.000+00:00", "finished": "2026-01-01T00:00:01.000+00:00",
    "duration": 1.0, "warnings": ["Warning: x"], "error": None, "interrupted": False, "timed_out": False,
    "kernel_died": False, "instance": "i", "notes": [], "html_exported": False, "fingerprint": "ab",
    "fingerprint_parts": {"code": "c"}, "peak_rss_mb": 12.5, "reasons": ["new"], "schema": 1, "pid": 1,
    "host": "h", "python": "3.11.7", "ductaflow_version": "0.1.0", "mode": "papermill",
}


def _result(tmp: Path, **kw: object) -> FlowResult:
    base = {"flow": "f", "flow_path": tmp / "f.py", "execution_dir": tmp, "status": Status.GREEN, "state": "finished"}
    return FlowResult(**{**base, **kw})  # type: ignore[arg-type]


def test_schema_1_records_still_read(tmp_path: Path) -> None:
    path = artifact_path(tmp_path, "f", "status")
    path.write_text(json.dumps(SCHEMA_1), encoding="utf-8")
    rec = read_status(path)
    assert rec is not None and rec.status is Status.ORANGE and rec.warnings == ("Warning: x",)
    assert rec.execution_dir == tmp_path and rec.mode == "papermill" and rec.peak_rss_mb == 12.5


def test_written_records_round_trip_with_the_schema_version(tmp_path: Path) -> None:
    deps = (Dep("module", "flows/helper.py", "abc", "1:2"), Dep("input", "data/z.csv", "def", "3:4"))
    result = _result(
        tmp_path, status=Status.RED, error=ErrorInfo("SystemExit", "3"), exit_code=3, terminated=True, deps=deps,
        outputs="0123",
    )
    write_status(result)
    doc = json.loads(result.status_path.read_text(encoding="utf-8"))
    assert doc["schema"] == STATUS_SCHEMA == 8 and doc["exit_code"] == 3 and doc["error"]["type"] == "SystemExit"
    assert doc["deps"][0] == {"kind": "module", "path": "flows/helper.py", "digest": "abc", "stamp": "1:2"}
    back = read_status(result.status_path)
    assert back == result and back is not None and back.deps == deps and back.outputs == "0123"


def test_records_before_schema_3_have_no_dependencies(tmp_path: Path) -> None:
    path = artifact_path(tmp_path, "f", "status")
    path.write_text(json.dumps(SCHEMA_1), encoding="utf-8")
    rec = read_status(path)
    assert rec is not None and rec.deps is None and rec.outputs is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_a_running_record_of_a_dead_process_reads_gone_and_red(tmp_path: Path) -> None:
    running = running_record(_result(tmp_path), mode="script")
    assert running.status is Status.RED and running.state == "running" and running.pid == os.getpid()
    write_status(running)
    assert read_status(running.status_path).state == RunState.RUNNING  # we are alive
    gone = {**running.to_record(), "pid": _dead_pid()}
    running.status_path.write_text(json.dumps(gone), encoding="utf-8")
    rec = read_status(running.status_path)
    assert rec.state == RunState.GONE and rec.status is Status.RED and rec.error.type == "Gone"
    assert analyze_execution_logs(tmp_path) is Status.RED
    assert roll_up(tmp_path, rec, ()).status is Status.RED  # a gone build is final, and red


def test_a_running_record_from_another_host_is_not_judged_by_our_process_table(tmp_path: Path) -> None:
    rec = {**running_record(_result(tmp_path), mode="script").to_record(), "pid": _dead_pid(), "host": "elsewhere"}
    path = artifact_path(tmp_path, "f", "status")
    path.write_text(json.dumps(rec), encoding="utf-8")
    assert read_status(path).state == RunState.RUNNING
    assert socket.gethostname() != "elsewhere"


def test_a_running_record_never_analyses_green_even_with_a_clean_log(tmp_path: Path) -> None:
    write_status(running_record(_result(tmp_path), mode="papermill"))
    artifact_path(tmp_path, "f", "log").write_text("all fine\n", encoding="utf-8")
    assert analyze_execution_logs(tmp_path) is Status.RED


def test_analyze_refuses_a_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DuctaflowError, match="not a directory"):
        analyze_execution_logs(tmp_path / "typo")
    with pytest.raises(DuctaflowError, match="nothing to analyze"):
        analyze_execution_logs(tmp_path)


def test_analyze_counts_an_unreadable_record_red(tmp_path: Path) -> None:
    artifact_path(tmp_path, "f", "status").write_text("{torn", encoding="utf-8")
    assert analyze_execution_logs(tmp_path) is Status.RED


def test_close_unfinished_finalises_only_unfinished_records(tmp_path: Path) -> None:
    running = running_record(_result(tmp_path, started="2026-12-04T10:00:00.000+00:00"), mode="papermill")
    write_status(running)
    closed = close_unfinished(running.status_path, ErrorInfo("WorkerLost", "worker_lost: gone"),
                              finished="2026-12-04T10:01:02.500+00:00")  # fmt: skip
    rec = read_status(running.status_path)
    assert rec.state == "finished" and rec.status is Status.RED and rec.error.type == "WorkerLost"
    assert closed is not None and closed.duration == rec.duration == 62.5, "a lost run keeps how long it ran"
    assert close_unfinished(running.status_path, ErrorInfo("X", "y")) is None  # final already: untouched


def test_a_failing_consumer_cannot_change_the_record_or_later_consumers(tmp_path: Path) -> None:
    seen: list[str] = []

    def broken(event: RunEvent) -> None:
        raise RuntimeError("tracker down")

    dispatcher = Dispatcher().add("status record", lambda e: write_status(e.result), required=True)
    dispatcher.add("broken", broken).add("after", lambda e: seen.append(str(e.kind)))
    life = Lifecycle(RunContext(), dispatcher)
    final = _result(tmp_path, status=Status.ORANGE, warnings=("Warning: w",))
    life.started(running_record(final, "papermill"))
    life.ended(final)
    assert seen == ["started", "finished"]
    assert [f.consumer for f in life.failures] == ["broken", "broken"]
    assert read_status(final.status_path) == final


def test_a_failing_required_consumer_stops_the_caller(tmp_path: Path) -> None:
    def disk_full(event: RunEvent) -> None:
        raise OSError("No space left on device")

    life = Lifecycle(RunContext(), Dispatcher().add("status record", disk_full, required=True))
    with pytest.raises(OSError):
        life.started(_result(tmp_path))


def test_a_run_ends_exactly_once(tmp_path: Path) -> None:
    kinds: list[EventKind] = []
    life = Lifecycle(RunContext(), Dispatcher().add("spy", lambda e: kinds.append(e.kind)))
    life.ended(_result(tmp_path, status=Status.RED))
    life.ended(_result(tmp_path))
    assert kinds == [EventKind.FAILED]


def test_the_final_event_follows_the_record() -> None:
    p = Path("/x")
    assert ending(_result(p)) is EventKind.FINISHED
    assert ending(_result(p, status=Status.ORANGE)) is EventKind.FINISHED
    assert ending(_result(p, status=Status.RED)) is EventKind.FAILED
    assert ending(_result(p, status=Status.RED, interrupted=True)) is EventKind.CANCELLED
    assert ending(_result(p, status=Status.RED, interrupted=True, terminated=True)) is EventKind.FAILED


def test_run_context_round_trips_and_ignores_unknown_keys() -> None:
    ctx = RunContext(project_root="/p", runs_root="/p/runs", build="b", scenario={"g": 0.1}, force=True, flow="f")
    assert RunContext.from_json(ctx.to_json()) == ctx
    assert RunContext.from_json(json.dumps({"flow": "f", "from_the_future": 1})).flow == "f"


def test_status_lists_a_killed_run_as_gone_and_red_even_after_caching(tmp_path: Path) -> None:
    """A flow killed by SIGKILL or os._exit left only its running record: `ductaflow status` says so."""
    from ductaflow.report.query import status_rows

    runs = tmp_path / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    inst = runs / "f" / "killed"
    inst.mkdir(parents=True)
    alive = running_record(_result(inst), mode="script")
    write_status(alive)
    assert [(r["instance"], r["state"]) for r in status_rows(runs)] == [("killed", "running")]
    alive.status_path.write_text(json.dumps({**alive.to_record(), "pid": _dead_pid()}), encoding="utf-8")
    row = status_rows(runs)[0]
    assert (row["state"], row["status"]) == ("gone", "red")
