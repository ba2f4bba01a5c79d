"""Report rows kept between processes: a fresh ``write_report`` reuses what did not change, and only that.

Each report here is written by a fresh interpreter, as ``ductaflow report`` or a new conductor would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ductaflow.core.lights import Status
from ductaflow.report.page import REPORT_NAME, STATE_DIR
from ductaflow.report.paged import CHUNK, PAGED_AT, details_dir
from ductaflow.report.row_store import ROW_STORE
from ductaflow.store.result import ErrorInfo, FlowResult

T0 = "2026-01-05T22:00:00+00:00"
N = PAGED_AT + CHUNK  # paged: rows from data, details in files


def _write(inst: Path, light: str, message: str = "") -> None:
    err = ErrorInfo("ValueError", message, f"Traceback\nValueError: {message}") if light == "red" else None
    rec = FlowResult("model", Path("/p/builds/model.py"), inst, Status(light), "finished", started=T0, finished=T0,
                     duration=1.0, instance=inst.name, error=err)  # fmt: skip
    (inst / "model_status.json").write_text(json.dumps(rec.to_record()))


def _state(runs: Path, rows: list[dict[str, Any]]) -> None:
    doc = {"schema": 1, "build": "model", "build_path": "/p/builds/model.py", "runs_root": str(runs),
           "state": "finished", "started": T0, "updated": T0, "finished": T0, "columns": ["x"],
           "scenarios": rows}  # fmt: skip
    (runs / STATE_DIR).mkdir(parents=True, exist_ok=True)
    (runs / STATE_DIR / "model.json").write_text(json.dumps(doc))


def _report(runs: Path) -> str:
    """``write_report`` in a fresh interpreter; the page it wrote."""
    code = "import sys; from ductaflow.report.page import write_report; write_report(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(runs)], check=True, timeout=120)
    return (runs / REPORT_NAME).read_text(encoding="utf-8")


def _rows(page: str) -> dict[str, list[Any]]:
    doc = json.loads(page.split('id="b0-rows">', 1)[1].split("</script>", 1)[0])
    return {r[1]: r for r in doc["rows"]}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    rows = []
    for k in range(N):
        inst = runs / "model" / f"s{k:04d}"
        inst.mkdir(parents=True)
        _write(inst, "green")
        rows.append({"instance": inst.name, "dir": f"model/{inst.name}", "values": {"x": k}, "state": "done",
                     "status": None, "metrics": {}})  # fmt: skip
    _state(runs, rows)
    time.sleep(1.1)  # older than the racy limit: the first report may keep every row
    return runs


def test_a_fresh_process_reuses_unchanged_rows_and_details_and_rebuilds_changed_ones(runs: Path) -> None:
    first = _rows(_report(runs))
    assert (runs / ROW_STORE).is_file() and first["s0007"][2] == "green"
    details = runs / details_dir(REPORT_NAME)
    stamps = {p.name: p.stat().st_mtime_ns for p in details.glob("*.js")}
    assert len(stamps) == N // CHUNK + (1 if N % CHUNK else 0)

    changed = runs / "model" / "s0007"
    _write(changed, "red", "boom after the first report")  # its files changed: its row must not be reused
    doc = json.loads((runs / STATE_DIR / "model.json").read_text())
    doc["scenarios"][420]["values"] = {"x": "edited"}  # its entry changed, its files did not
    (runs / STATE_DIR / "model.json").write_text(json.dumps(doc))

    second = _rows(_report(runs))
    assert second["s0007"][2] == "red" and "boom after the first report" in second["s0007"][11]
    assert second["s0420"][7] == ["edited"] and second["s0008"] == first["s0008"]
    rewritten = {p.name for p in details.glob("*.js") if p.stat().st_mtime_ns != stamps[p.name]}
    assert rewritten == {f"b0-{7 // CHUNK}.js", f"b0-{420 // CHUNK}.js"}  # the other details files were left alone
    assert "boom after the first report" in (details / f"b0-{7 // CHUNK}.js").read_text()


def test_a_deleted_instance_is_not_revived_from_the_store(runs: Path) -> None:
    _report(runs)
    gone = runs / "model" / "s0003"
    for p in gone.iterdir():
        p.unlink()
    gone.rmdir()
    rows = _rows(_report(runs))
    assert rows["s0003"][2] == "unknown"  # no record on disk: "no record", not the kept green


def test_a_foreign_or_broken_store_is_ignored(runs: Path) -> None:
    store = runs / ROW_STORE
    store.write_text("{not json")
    assert _rows(_report(runs))["s0001"][2] == "green"
    doc = json.loads(store.read_text())
    doc["schema"] = [0, "0.0.0", [3, 0]]
    for entry in doc["rows"].values():
        entry[3]["light"] = "red"  # a row this version did not write must never be shown
    store.write_text(json.dumps(doc))
    os.utime(store)
    assert _rows(_report(runs))["s0001"][2] == "green"
