"""The conductor state file (snapshot + append-only journal), its reader in the report, and
the removal of attempts folders that killed conductors left: no kernel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from report_fixtures import age, shorten_racy_window

from ductaflow.conductor.attempts import remove_stale_attempts
from ductaflow.conductor.plan import plan_sweep
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.tasks import BuildOutcome
from ductaflow.core.lights import Status
from ductaflow.lifecycle.events import EventKind
from ductaflow.report.collect import collect_report
from ductaflow.store.layout import ATTEMPTS_DIR, STATE_DIR
from ductaflow.store.sweep_state import (
    SCHEMA,
    StateWriter,
    journal_path,
    lines_per_snapshot,
    read_state,
    state_path,
)

ROWS = 40  # a snapshot every lines_per_snapshot(40) = 5 changes: the journal is used
T1 = "2026-01-05T22:11:00+00:00"


def _row(i: int, **kw: Any) -> dict[str, Any]:
    row = {"instance": f"s{i:03d}", "dir": f"pipe/s{i:03d}", "values": {"i": i}, "state": "pending", "status": None,
           "duration": None, "error": None, "worst_flow": None, "metrics": {}}  # fmt: skip
    row.update(kw)
    return row


def _document(rows: list[dict[str, Any]], state: str = "running") -> dict[str, Any]:
    return {"build": "pipe", "build_path": "/p/builds/pipe.py", "runs_root": "/p/runs", "state": state,
            "started": "2026-01-05T22:00:00+00:00", "updated": "2026-01-05T22:00:00+00:00", "finished": None,
            "columns": ["i"], "conductor": None, "scenarios": rows}  # fmt: skip


def _raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _writer(tmp_path: Path, n: int = ROWS) -> tuple[StateWriter, list[dict[str, Any]]]:
    rows = [_row(i) for i in range(n)]
    writer = StateWriter(state_path(tmp_path, "pipe"))
    writer.snapshot(_document(rows))
    return writer, rows


def test_names_and_the_compaction_rule(tmp_path: Path) -> None:
    path = state_path(tmp_path, "pipe")
    assert path == tmp_path / STATE_DIR / "pipe.json"
    assert journal_path(path) == tmp_path / STATE_DIR / "pipe.journal.jsonl"
    assert not journal_path(path).name.endswith(".json")  # the report globs *.json
    assert [lines_per_snapshot(n) for n in (0, 3, 15, 16, 40, 10_000)] == [1, 1, 1, 2, 5, 1250]


def test_snapshot_round_trip(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    doc = read_state(writer.path)
    assert doc["schema"] == SCHEMA == 2 and doc["journal"] == writer.journal_id
    assert doc["scenarios"] == rows and {k: v for k, v in doc.items() if k not in ("schema", "journal")} == _document(
        rows
    )
    assert not writer.journal.exists()


def test_changes_go_to_the_journal_and_are_replayed(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    before = os.stat(writer.path)
    rows[3] = {**rows[3], "state": "running"}
    rows[7] = {**rows[7], "state": "done", "status": "green", "duration": 1.5, "metrics": {"x": 2}}
    rows[3] = {**rows[3], "state": "done", "status": "red", "error": "boom"}

    def whole() -> dict[str, Any]:
        raise AssertionError("a snapshot was written before one was due")

    for i, at in ((3, "t1"), (7, "t2"), (3, T1)):
        assert writer.change(rows[i], at, whole) is False
    after = os.stat(writer.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # the snapshot was not rewritten
    assert len(writer.journal.read_text().splitlines()) == 3
    assert [r["state"] for r in _raw(writer.path)["scenarios"][:8]] == ["pending"] * 8
    doc = read_state(writer.path)
    assert doc["scenarios"] == rows and doc["updated"] == T1


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    rows[1] = {**rows[1], "state": "running"}
    writer.change(rows[1], T1, dict)
    complete = {"j": writer.journal_id, "at": "t9", "row": {**rows[2], "state": "done", "status": "green"}}
    with writer.journal.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(complete)[:-1])  # killed mid-line: no closing brace, no newline
    doc = read_state(writer.path)
    assert doc["scenarios"] == rows and doc["updated"] == T1
    with writer.journal.open("a", encoding="utf-8") as fh:
        fh.write("}")  # the same line, whole but without its newline: still not counted
    assert read_state(writer.path)["scenarios"][2]["state"] == "pending"


def test_compaction_folds_the_journal_into_a_new_snapshot(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    first_id = writer.journal_id
    due = lines_per_snapshot(ROWS)
    written = []
    for k in range(3 * due):
        rows[k] = {**rows[k], "state": "done", "status": "green"}
        written.append(writer.change(rows[k], T1, lambda: _document(rows)))
        assert writer.journal.exists() == (writer.lines > 0)
        assert writer.lines < due  # the journal never holds a snapshot's worth of lines
    assert written == ([False] * (due - 1) + [True]) * 3
    raw = _raw(writer.path)
    assert raw["journal"] == writer.journal_id != first_id and raw["scenarios"] == rows
    assert not writer.journal.exists() and read_state(writer.path)["scenarios"] == rows


def test_small_tables_write_the_snapshot_on_every_change(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path, n=3)
    rows[0] = {**rows[0], "state": "running"}
    assert writer.change(rows[0], T1, lambda: _document(rows)) is True
    assert _raw(writer.path)["scenarios"][0]["state"] == "running" and not writer.journal.exists()


def test_a_journal_of_an_older_snapshot_is_not_replayed(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    writer.change({**rows[0], "state": "done", "status": "red"}, T1, dict)
    old_journal = writer.journal.read_bytes()
    writer.snapshot(_document(rows))  # rows[0] is still pending in this snapshot
    writer.journal.write_bytes(old_journal)  # as if the writer died before removing the old journal
    doc = read_state(writer.path)
    assert doc["scenarios"][0]["state"] == "pending" and doc["updated"] != T1
    # a line of the current journal after the stale ones still counts
    writer.change({**rows[1], "state": "running"}, T1, dict)
    assert [r["state"] for r in read_state(writer.path)["scenarios"][:2]] == ["pending", "running"]


def test_an_older_schema_ignores_a_journal_beside_it(tmp_path: Path) -> None:
    writer, rows = _writer(tmp_path)
    writer.change({**rows[0], "state": "running"}, T1, dict)
    doc = _raw(writer.path)
    doc.update(schema=1)
    del doc["journal"]
    writer.path.write_text(json.dumps(doc), encoding="utf-8")
    assert read_state(writer.path) == doc
    writer.path.write_text("[1, 2]", encoding="utf-8")
    assert read_state(writer.path) == [1, 2]  # not a state at all: the caller judges
    writer.path.write_text("{torn", encoding="utf-8")
    with pytest.raises(ValueError):
        read_state(writer.path)


def _lights(runs: Path) -> list[str]:
    ctx = collect_report(runs)
    [section] = ctx["sections"]
    return [row["light"] for row in section["rows"]]


def test_the_report_reads_journal_updates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shorten_racy_window(monkeypatch, tmp_path)
    runs = tmp_path / "runs"
    writer, rows = _writer(runs)
    rows[0] = {**rows[0], "state": "done", "status": "green"}
    writer.change(rows[0], T1, dict)
    age()  # old enough for the report to keep what it parsed (see report.instances.RACY_NS)
    assert _lights(runs)[:3] == ["green", "pending", "pending"]
    assert _lights(runs)[:3] == ["green", "pending", "pending"]  # from its memory this time
    rows[1] = {**rows[1], "state": "done", "status": "red", "error": "boom"}
    writer.change(rows[1], T1, dict)
    assert _lights(runs)[:3] == ["green", "red", "pending"]
    assert not list((runs / STATE_DIR).glob("*.jsonl.json"))


def _project(tmp_path: Path, n: int) -> ConductorRun:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text('# %% tags=["parameters"]\nconfig = {"g": 0}\n\n# %%\nx = 1\n')
    table = pd.DataFrame({"scenario_name": [f"s{i:03d}" for i in range(n)], "g": list(range(n))})
    return ConductorRun(plan_sweep(table, root / "flows" / "work.py", project_root=root, preload=()))


def test_the_conductor_journals_each_change_and_keeps_counts(tmp_path: Path) -> None:
    run = _project(tmp_path, ROWS)
    run.save(report=False)
    lights = [Status.GREEN, Status.RED, Status.ORANGE, Status.GREEN]
    for name, light in zip(["s000", "s001", "s002", "s003"], lights, strict=True):
        run.start(name)
        run.emit(EventKind.STARTED, name)
        run.finish(BuildOutcome(name, light, 1.0))
        run.emit(EventKind.FINISHED, name)
    assert run.counts() == {"green": 2, "orange": 1, "red": 1}
    run.rows["s003"]["status"] = "red"  # a row changed again is counted under its new light only
    run.emit(EventKind.FAILED, "s003")
    assert run.counts() == {"green": 1, "orange": 1, "red": 2}
    assert run.store.lines > 0 and _raw(run.state_path)["scenarios"][3]["state"] != "done"
    doc = read_state(run.state_path)
    assert [r["status"] for r in doc["scenarios"][:5]] == ["green", "red", "orange", "red", None]
    run.close(interrupted=False)
    raw = _raw(run.state_path)
    assert raw["state"] == "finished" and raw["scenarios"] == doc["scenarios"]
    assert not journal_path(run.state_path).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_attempts_go_and_a_live_conductors_stay(tmp_path: Path) -> None:
    folder = tmp_path / ATTEMPTS_DIR
    old_ns = time.time_ns() - 3_600 * 10**9
    me = psutil.Process()
    host = socket.gethostname()
    dead = _dead_pid()
    made = {
        "killed": (f"pipe-{dead}-{old_ns}", None),  # no owner file (an older ductaflow), pid gone
        "reused": (f"a-b-{os.getpid()}-{int((me.create_time() - 100) * 1e9)}", None),  # pid started since
        "owner_gone": (f"pipe-{dead}-{old_ns + 1}", {"pid": dead, "created": 1.0, "host": host}),
        "owner_live": (f"pipe-{os.getpid()}-{old_ns}", {"pid": os.getpid(), "created": me.create_time(), "host": host}),
        "other_host": (f"pipe-{dead}-{old_ns + 2}", {"pid": dead, "created": 1.0, "host": host + "-elsewhere"}),
        "young": (f"pipe-{dead}-{time.time_ns()}", None),  # may be a conductor making it right now
        "odd_name": ("notes", None),
    }
    for name, owner in made.values():
        (folder / name).mkdir(parents=True)
        (folder / name / "s1.json").write_text("{}")
        if owner is not None:
            (folder / name / ".conductor.json").write_text(json.dumps(owner))
    init = psutil.Process(1)
    if time.time() - init.create_time() > 120:  # a live process from before the folder was named
        made["pid_live"] = (f"pipe-1-{int((init.create_time() + 5) * 1e9)}", None)
        (folder / made["pid_live"][0]).mkdir()
    removed = remove_stale_attempts(tmp_path)
    assert sorted(removed) == sorted(made[k][0] for k in ("killed", "reused", "owner_gone"))
    left = {p.name for p in folder.iterdir()}
    assert left == {made[k][0] for k in made if k not in ("killed", "reused", "owner_gone")}


def test_a_conductor_claims_its_attempts_folder_and_removes_stale_ones(tmp_path: Path) -> None:
    run = _project(tmp_path, 2)
    stale = run.runs_root / ATTEMPTS_DIR / f"pipe-{_dead_pid()}-{time.time_ns() - 3_600 * 10**9}"
    stale.mkdir(parents=True)
    run.ingest_leftovers()
    assert not stale.exists() and not run.attempts.exists()
    run.save(report=False)  # the first state file: the folder is claimed right after it
    assert _raw(run.attempts / ".conductor.json") == json.loads(json.dumps(run.owner))
    assert remove_stale_attempts(run.runs_root) == [] and run.attempts.is_dir()  # another conductor's sweep
    run.clean_up()
    assert not run.attempts.exists() and not (run.runs_root / ATTEMPTS_DIR).exists()
