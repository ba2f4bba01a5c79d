"""Failure kinds and phases, attempts and their history, and retries, without a kernel.

Old records (schema 7 and before) read with the kind their flags say; schema 8 round-trips;
the retry policy retries the machinery's failures, never a user's error unless named; a retry
loop stops at the first light that is not red; a build that raised ``FlowFailed`` takes its
failed step's kind; the ledger has a row per attempt and reads files written before the
columns existed; ``ductaflow status`` names a red run's kind and phase and its retries.
"""

from __future__ import annotations

import json
import random
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ductaflow.cli import cli
from ductaflow.core.context import RunContext
from ductaflow.core.failures import FailureKind, RetryPolicy, derive_kind
from ductaflow.core.lights import Status
from ductaflow.errors import ConfigError, FlowFailed
from ductaflow.lifecycle.hooks import Hooks
from ductaflow.run.attempts import classified, history, retry_facts, retrying
from ductaflow.run.recorder import Lifecycle, ledger_dispatcher
from ductaflow.store import ledger
from ductaflow.store.layout import artifact_path, steps_path
from ductaflow.store.ledger_files import COLUMNS, ledger_dir
from ductaflow.store.records import close_unfinished, read_status, write_status
from ductaflow.store.result import Attempt, ErrorInfo, FlowResult, RunState


def _result(folder: Path, flow: str = "f", **kw: Any) -> FlowResult:
    base: dict[str, Any] = {"flow": flow, "flow_path": folder / f"{flow}.py", "execution_dir": folder,
                            "status": Status.GREEN, "state": "finished", "instance": folder.name}  # fmt: skip
    return FlowResult(**{**base, **kw})


def _old_record(folder: Path, **kw: Any) -> dict[str, Any]:
    """A schema-7 record: no kind, phase, attempt or history keys."""
    rec = _result(folder, status=Status.RED, **kw).to_record()
    for key in ("kind", "phase", "attempt", "history"):
        del rec[key]
    rec["schema"] = 7
    return rec


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ({"terminated": True, "interrupted": True}, "interrupted"),
        ({"interrupted": True}, "interrupted"),
        ({"timed_out": True}, "timeout"),
        ({"kernel_died": True}, "kernel_died"),
        ({"error": ErrorInfo("HookFailed", "m:H.on_flow_end raised ValueError: x")}, "hook_failed"),
        ({"error": ErrorInfo("ValueError", "bad")}, "user_error"),
        ({"error": ErrorInfo("SystemExit", "3"), "exit_code": 3}, "user_error"),
    ],
)
def test_an_old_red_record_reads_with_the_kind_its_flags_say(tmp_path: Path, flags: dict, kind: str) -> None:
    back = FlowResult.from_record(_old_record(tmp_path, **flags))
    assert back.kind == kind and back.phase is None and back.attempt == 1 and back.history == ()


def test_old_records_that_are_not_red_and_final_have_no_kind_and_a_gone_one_is_worker_lost(tmp_path: Path) -> None:
    green = _result(tmp_path).to_record()
    del green["kind"]
    green["schema"] = 7
    assert FlowResult.from_record(green).kind is None
    running = _old_record(tmp_path, state="running", pid=2**22 + 12345, host=None)
    assert FlowResult.from_record(running).kind is None
    path = artifact_path(tmp_path, "f", "status")
    path.write_text(json.dumps({**running, "host": socket.gethostname()}), encoding="utf-8")
    gone = read_status(path)  # its owner is not alive: gone, red, the worker lost
    assert gone is not None and gone.state == RunState.GONE and gone.kind == "worker_lost"
    assert derive_kind(gone=True) is FailureKind.WORKER_LOST


def test_schema_8_round_trips_kind_phase_attempt_and_history(tmp_path: Path) -> None:
    earlier = (Attempt(1, "red", "kernel_died", "execute", "2026-12-04T00:00:00+00:00", 1.5, "DeadKernelError: x"),
               Attempt(2, "red", "timeout", None, None, None, None))  # fmt: skip
    result = _result(tmp_path, status=Status.RED, error=ErrorInfo("ValueError", "v"), kind="user_error",
                     phase="execute", attempt=3, history=earlier)  # fmt: skip
    write_status(result)
    doc = json.loads(result.status_path.read_text(encoding="utf-8"))
    assert doc["schema"] == 8 and doc["kind"] == "user_error" and doc["attempt"] == 3
    assert doc["history"][0] == {"attempt": 1, "status": "red", "kind": "kernel_died", "phase": "execute",
                                 "started": "2026-12-04T00:00:00+00:00", "duration": 1.5,
                                 "error": "DeadKernelError: x"}  # fmt: skip
    back = read_status(result.status_path)
    assert back == result and back is not None and back.history == earlier and back.retried == 2
    assert back.attempts_note == "user_error in execute, after 2 retries"
    assert _result(tmp_path, attempt=2).attempts_note == "after 1 retry"
    assert Attempt.from_record({"attempt": "1", "status": "red"}) is None and Attempt.from_record([]) is None
    doc["attempt"], doc["kind"] = True, None  # junk reads as a first attempt; a schema-8 null kind stays null
    assert FlowResult.from_record(doc).attempt == 1 and FlowResult.from_record(doc).kind is None


def test_a_first_attempt_never_carries_history_and_a_later_one_carries_the_chain(tmp_path: Path) -> None:
    path = artifact_path(tmp_path, "f", "status")
    assert history(2, path) == ()  # nothing recorded yet
    first = _result(tmp_path, status=Status.RED, kind="kernel_died", phase="execute", duration=2.0,
                    error=ErrorInfo("DeadKernelError", "died"))  # fmt: skip
    write_status(first)
    assert history(1, path) == ()  # a user re-running a red instance starts clean
    second = replace(first, attempt=2, kind="timeout", history=history(2, path))
    assert second.history == (Attempt(1, "red", "kernel_died", "execute", None, 2.0, "DeadKernelError: died"),)
    write_status(second)
    assert [a.attempt for a in history(3, path)] == [1, 2] and history(3, path)[1].kind == "timeout"
    write_status(replace(first, state=RunState.RUNNING.value, pid=None))
    assert history(2, path) == ()  # a running record is no earlier attempt


def test_the_retry_policy_retries_the_machinery_and_a_named_error_only() -> None:
    policy = RetryPolicy.of(2)
    assert policy.should_retry(1, "kernel_died", "DeadKernelError") and policy.should_retry(2, "timeout", None)
    assert not policy.should_retry(3, "kernel_died", None)  # two retries: attempts 1 and 2 may fail
    assert not policy.should_retry(1, "user_error", "ValueError")
    assert not policy.should_retry(1, "interrupted", None) and not policy.should_retry(1, "hook_failed", None)
    named = RetryPolicy.of(1, ("ValueError", "requests.ConnectionError"))
    assert named.should_retry(1, "user_error", "ValueError") and named.should_retry(1, "user_error", "ConnectionError")
    assert not named.should_retry(1, "kernel_died", None)  # retry_on replaces the default kinds
    with pytest.raises(ConfigError):
        RetryPolicy.of(1, ("not a type",))
    with pytest.raises(ConfigError):
        RetryPolicy(-1)
    rng = random.Random(1)
    delays = [RetryPolicy(5, backoff=2.0, max_backoff=5.0).delay(n, rng) for n in (1, 2, 3)]
    assert 1.0 <= delays[0] < 3.0 and 2.0 <= delays[1] < 6.0 and 2.5 <= delays[2] < 7.5


def test_retrying_stops_at_the_first_light_that_is_not_red_or_a_failure_it_does_not_retry(tmp_path: Path) -> None:
    calls: list[int] = []

    def died_then_green(attempt: int) -> FlowResult:
        calls.append(attempt)
        if attempt < 3:
            return _result(tmp_path, status=Status.RED, kind="kernel_died", attempt=attempt)
        return _result(tmp_path, attempt=attempt)

    result = retrying(RetryPolicy.of(3, backoff=0), died_then_green, first=1)
    assert result.status is Status.GREEN and result.attempt == 3 and calls == [1, 2, 3]
    calls.clear()
    assert retrying(RetryPolicy.of(1, backoff=0), died_then_green, first=1).status is Status.RED and calls == [1, 2]
    calls.clear()
    assert retrying(RetryPolicy.of(5, backoff=0), died_then_green, first=2).attempt == 3 and calls == [2, 3]

    def value_error(attempt: int) -> FlowResult:
        calls.append(attempt)
        return _result(tmp_path, status=Status.RED, kind="user_error", error=ErrorInfo("ValueError", "x"))

    calls.clear()
    assert retrying(RetryPolicy.of(2, backoff=0), value_error).status is Status.RED and calls == [1]
    calls.clear()
    retrying(RetryPolicy.of(2, ("ValueError",), backoff=0), value_error)
    assert calls == [1, 2, 3]

    def interrupted(attempt: int) -> FlowResult:
        calls.append(attempt)
        return _result(tmp_path, status=Status.RED, kind="interrupted", interrupted=True)

    calls.clear()
    retrying(RetryPolicy.of(2, ("interrupted",), backoff=0), interrupted)
    assert calls == [1]  # a Ctrl-C is never answered with another attempt


def test_a_build_that_raised_flow_failed_takes_its_failed_step_s_kind(tmp_path: Path) -> None:
    step_dir = tmp_path / "runs" / "model"
    step_dir.mkdir(parents=True)
    steps_path(tmp_path).write_text(json.dumps(["prep", "model"]))
    green_step = _result(tmp_path / "runs" / "prep", "prep", started="2026-12-04T00:00:00+00:00")
    (tmp_path / "runs" / "prep").mkdir()
    write_status(green_step)
    write_status(_result(step_dir, "model", status=Status.RED, kind="kernel_died", phase="execute",
                         started="2026-12-04T00:00:01+00:00", error=ErrorInfo("DeadKernelError", "died")))  # fmt: skip
    build = _result(tmp_path, "chain", status=Status.RED, error=ErrorInfo("FlowFailed", "flow 'model' failed"))
    assert classified(build, "user_error", "execute").kind == "kernel_died"
    own = _result(tmp_path, "chain", status=Status.RED, error=ErrorInfo("RuntimeError", "mine"))
    assert (classified(own, "user_error", "execute").kind, classified(own).phase) == ("user_error", None)
    assert classified(_result(tmp_path, kind="timeout", phase="execute")).kind is None  # not red: no kind
    assert FlowFailed(classified(build)).kind == "kernel_died"
    assert retry_facts(classified(build)) == ("kernel_died", "DeadKernelError")  # the step's error type
    assert retry_facts(classified(own)) == ("user_error", "RuntimeError")


def test_a_hook_that_turns_a_run_red_is_hook_failed_in_finalize_and_a_lost_run_is_worker_lost(
    tmp_path: Path,
) -> None:
    class Boom:
        def on_flow_end(self, event: object) -> None:
            raise RuntimeError("no")

    life = Lifecycle(RunContext(), hooks=Hooks([("b", Boom())], "red"), after=ledger_dispatcher())
    life.started(_result(tmp_path, status=Status.RED, state=RunState.RUNNING.value))
    final = life.ended(_result(tmp_path))
    assert final.status is Status.RED and (final.kind, final.phase) == ("hook_failed", "finalize")
    write_status(_result(tmp_path, status=Status.RED, state=RunState.RUNNING.value))
    closed = close_unfinished(tmp_path / "f_status.json", ErrorInfo("WorkerLost", "gone"))
    assert closed is not None and closed.kind == "worker_lost" and closed.phase is None
    write_status(_result(tmp_path, status=Status.RED, state=RunState.RUNNING.value))
    stopped = close_unfinished(tmp_path / "f_status.json", ErrorInfo("Cancelled", "x"), interrupted=True)
    assert stopped is not None and stopped.kind == "interrupted"


def test_the_run_context_carries_the_attempt_to_nested_runs() -> None:
    ctx = RunContext(build="b").child(attempt=3)
    assert RunContext.from_json(ctx.to_json()).attempt == 3
    for junk in ("2", 0, True, None):
        doc = {**json.loads(ctx.to_json()), "attempt": junk}
        assert RunContext.from_json(json.dumps(doc)).attempt == 1


def test_every_attempt_is_a_ledger_row_and_ledgers_written_before_the_columns_still_read(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = ledger_dir(runs)
    folder.mkdir(parents=True)
    old_columns = [c for c in COLUMNS if c not in ("failure_kind", "phase", "attempt")]
    old = {c: [None] for c in old_columns} | {"run_id": ["old"], "event": ["run"], "status": ["red"],
                                              "started": ["2026-01-01T00:00:00+00:00"]}  # fmt: skip
    pq.write_table(pa.table({c: pa.array(v, pa.string()) for c, v in old.items()}), folder / "0-old.parquet")
    inst = runs / "f" / "x"
    inst.mkdir(parents=True)
    ctx = {"runs_root": str(runs)}
    first = _result(inst, status=Status.RED, kind="kernel_died", phase="execute", started="2026-12-04T00:00:01")
    ledger.append_run(ctx, first, "run")
    ledger.append_run(ctx, _result(inst, attempt=2, history=(first.summary(),), started="2026-12-04T00:00:02"), "run")
    df = ledger.read(runs)
    assert list(df.run_id.iloc[:1]) == ["old"] and df.attempt.isna().iloc[0] and df.failure_kind.isna().iloc[0]
    new = df.iloc[1:]
    assert new.attempt.tolist() == [1, 2] and new.failure_kind.tolist()[0] == "kernel_died"
    assert new.phase.tolist()[0] == "execute" and new.failure_kind.isna().tolist()[1]
    assert set(new.kind) == {"flow"}  # ``kind`` stays flow/build


def test_status_shows_a_red_run_s_kind_and_phase_and_a_green_run_s_retries(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    red_dir, green_dir = runs / "f" / "red_one", runs / "f" / "green_one"
    red_dir.mkdir(parents=True)
    green_dir.mkdir(parents=True)
    write_status(_result(red_dir, status=Status.RED, kind="kernel_died", phase="execute", attempt=2,
                         error=ErrorInfo("DeadKernelError", "died")))  # fmt: skip
    write_status(_result(green_dir, attempt=3))
    out = CliRunner().invoke(cli, ["status", str(runs)])
    assert out.exit_code == 0, out.output
    red_line = next(line for line in out.output.splitlines() if "red_one" in line)
    green_line = next(line for line in out.output.splitlines() if "green_one" in line)
    assert "[kernel_died in execute, after 1 retry]" in red_line and "[after 2 retries]" in green_line


def test_ductaflow_run_refuses_a_negative_retry_count_before_anything_runs(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["run", str(tmp_path / "flows" / "x.py"), "--retries", "-1"])
    assert out.exit_code == 2 and "--retries" in out.output
    assert list(tmp_path.iterdir()) == []
