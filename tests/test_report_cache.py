"""What a report or ``ductaflow status`` keeps between calls never hides a change on disk.

Real runs dirs, real edits between two calls. Files are aged past the racy window (timestamps
are coarse: a file younger than ``instances.RACY_NS`` is always read again) by sleeping, so the
second call really goes through the signature checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import age as _age
from report_fixtures import make_demo, make_instance, shorten_racy_window, write_record

from ductaflow.cli import cli
from ductaflow.report import instances
from ductaflow.report.instances import read_instance
from ductaflow.report.memory import memory_of
from ductaflow.report.page import collect_report, write_report
from ductaflow.report.query import status_rows, status_table
from ductaflow.store.layout import STATUS_CACHE


@pytest.fixture(autouse=True)
def _window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shorten_racy_window(monkeypatch, tmp_path)


def _rows(ctx: dict) -> dict[str, dict]:
    return {r["instance"]: r for s in ctx["sections"] for r in s["rows"]}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    make_demo(root)
    _age()
    return root


def test_unchanged_rows_are_reused_and_a_record_edited_in_place_shows(runs: Path) -> None:
    first = _rows(collect_report(runs))
    assert first["g0.01_c1.0"]["light"] == "green"
    record = runs / "demand_model" / "g0.01_c1.0" / "runs" / "model" / "model_status.json"
    rec = json.loads(record.read_text())
    rec.update(status="red", error={"type": "KeyError", "message": "'zone'", "traceback": "", "cell_index": 1})
    record.write_text(json.dumps(rec))  # in place: same inode, the folder's mtime unchanged
    second = _rows(collect_report(runs))
    assert second["g0.02_c1.0"] is first["g0.02_c1.0"], "an untouched row was built again"
    changed = second["g0.01_c1.0"]
    assert changed is not first["g0.01_c1.0"]
    assert changed["flows"]["model"]["light"] == "red" and changed["flows"]["model"]["error_type"] == "KeyError"
    page = write_report(runs).read_text()
    assert "KeyError" in page and "&#39;zone&#39;" in page


def test_a_rewrite_reads_again_only_the_instance_that_changed(runs: Path) -> None:
    """Between reports only what validates each row is kept (no records): an unchanged instance
    is not read again, a changed one is, and the rewritten page shows the change."""
    write_report(runs)
    mem = memory_of(runs.absolute())
    assert all(r.snapshot.summary is None for _, r in mem.instances.items()), "records kept between reports"
    reads = mem.instances.reads
    write_report(runs)
    live = mem.instances.reads - reads  # the running instance: read every time
    assert live == 1
    record = runs / "demand_model" / "g0.02_c1.0" / "runs" / "model" / "model_status.json"
    rec = json.loads(record.read_text())
    error = {"type": "KeyError", "message": "'zone'", "traceback": "", "cell_index": 1}
    record.write_text(json.dumps({**rec, "status": "red", "warnings": [], "error": error}))
    reads = mem.instances.reads
    page = write_report(runs).read_text()
    assert mem.instances.reads - reads == live + 1, "an unchanged instance was read again"
    assert "KeyError" in page and "low memory" not in page
    assert _rows(collect_report(runs))["g0.02_c1.0"]["flows"]["model"]["light"] == "red"


def test_a_record_that_cannot_be_read_is_noticed_on_every_rewrite(runs: Path) -> None:
    (runs / "demand_model" / "g0.01_c1.0" / "runs" / "model" / "model_status.json").write_text("{not json")
    _age()
    first = collect_report(runs)
    second = collect_report(runs)
    assert any("model_status.json" in n for n in first["notices"])
    assert second["notices"] == first["notices"]
    assert _rows(second)["g0.01_c1.0"] is _rows(first)["g0.01_c1.0"]


def test_discovered_instances_are_not_read_again_when_unchanged(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        make_instance(runs, "m", name, [{"flow": "f", "status": "green"}])
    _age()
    first = _rows(collect_report(runs))
    mem = memory_of(runs.absolute())
    reads = mem.instances.reads
    second = _rows(collect_report(runs))
    assert mem.instances.reads == reads and second["a"] is first["a"]
    write_record(runs / "m" / "b" / "runs" / "f", "f", "red")
    _age()  # else its reading is too young to trust, and read once more for its row
    assert _rows(collect_report(runs))["b"]["light"] == "red" and mem.instances.reads == reads + 1


def test_a_running_row_is_never_frozen(runs: Path) -> None:
    """Its durations grow by themselves: such a row is built anew for every report."""
    first = _rows(collect_report(runs))["g0.04_c1.0"]
    time.sleep(0.3)
    second = _rows(collect_report(runs))["g0.04_c1.0"]
    assert second["light"] == "running" and second is not first
    assert second["flows"]["model"]["duration"] > first["flows"]["model"]["duration"]


def test_an_atomic_rewrite_and_a_new_flow_show(runs: Path) -> None:
    collect_report(runs)
    inst = runs / "demand_model" / "g0.01_c1.0"
    tmp = inst / "runs" / "prep" / "tmp.json"
    rec = json.loads((inst / "runs" / "prep" / "prep_status.json").read_text())
    tmp.write_text(json.dumps({**rec, "status": "orange", "warnings": ["Warning: late"]}))
    os.replace(tmp, inst / "runs" / "prep" / "prep_status.json")
    write_record(inst / "runs" / "extra", "extra", "green")
    row = _rows(collect_report(runs))["g0.01_c1.0"]
    assert row["flows"]["prep"]["warnings"] == ["Warning: late"]
    assert "extra" in row["flows"]


def test_a_deleted_instance_disappears_and_a_new_one_appears(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        make_instance(runs, "m", name, [{"flow": "f", "status": "green"}])
    _age()
    assert set(_rows(collect_report(runs))) == {"a", "b"}  # discovered: no state file
    shutil.rmtree(runs / "m" / "b")
    make_instance(runs, "m", "c", [{"flow": "f", "status": "red", "error": ("E", "x")}])
    rows = _rows(collect_report(runs))
    assert set(rows) == {"a", "c"} and rows["c"]["light"] == "red"


def test_a_deleted_instance_named_by_the_state_file_loses_its_records(runs: Path) -> None:
    assert _rows(collect_report(runs))["g0.01_c1.0"]["records"]
    shutil.rmtree(runs / "demand_model" / "g0.01_c1.0")
    row = _rows(collect_report(runs))["g0.01_c1.0"]
    assert row["records"] == [] and row["flows"] == {}
    assert "g0.01_c1.0/runs" not in write_report(runs).read_text()


def test_links_follow_files_added_removed_or_swapped_for_a_symlink(runs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the report")
    collect_report(runs)
    folder = runs / "demand_model" / "g0.01_c1.0" / "runs" / "model"
    (folder / "model.html").write_text("<html></html>")
    (folder / "model_config.json").unlink()
    (folder / "model_execution_output.txt").unlink()
    (folder / "model_execution_output.txt").symlink_to(outside)
    links = {ln["label"]: ln["href"] for ln in _rows(collect_report(runs))["g0.01_c1.0"]["flows"]["model"]["links"]}
    assert set(links) == {"notebook", "html"}, links


def test_a_reading_of_fresh_files_is_not_trusted_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit in the same timestamp tick and of the same size would leave a signature as it
    was: a reading taken within the racy window is read again next time, whatever it says."""
    monkeypatch.setattr(instances, "RACY_NS", 300_000_000)  # "fresh" must hold on a loaded machine too
    runs = tmp_path / "runs"
    inst = make_instance(runs, "m", "a", [{"flow": "f", "status": "green"}])
    assert read_instance(str(inst), "m").racy
    _age()
    reading = read_instance(str(inst), "m")
    assert not reading.racy and reading.current()
    (inst / "runs" / "f" / "f_config.json").unlink()
    assert not reading.current(), "a file gone from a listed folder went unnoticed"


def test_status_rows_keep_a_cache_that_never_hides_a_change(runs: Path) -> None:
    cache = runs / STATUS_CACHE
    first = status_rows(runs)
    assert cache.is_file(), "the runs root has .ductaflow: the cache is kept there"
    assert status_rows(runs) == first
    record = runs / "demand_model" / "g0.02_c1.0" / "runs" / "model" / "model_status.json"
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({**rec, "status": "green", "warnings": []}))
    rows = {r["instance"]: r for r in status_rows(runs)}
    assert rows["g0.02_c1.0"]["status"] == "green" and rows["g0.02_c1.0"]["worst_flow"] is None
    assert rows["g0.04_c1.0"]["state"] == "stale"  # "running" with no lock held: judged anew each time
    shutil.rmtree(runs / "demand_model" / "evil")
    assert "evil" not in {r["instance"] for r in status_rows(runs)}
    cache.write_text("{torn")
    assert {r["instance"] for r in status_rows(runs)} == set(rows) - {"evil"}


def test_a_finished_report_leaves_its_rows_for_status(runs: Path, tmp_path: Path) -> None:
    cache = runs / STATUS_CACHE
    write_report(runs)
    assert cache.is_file(), "a report that is not live shares what it read with ductaflow status"
    kept = json.loads(cache.read_text())["rows"]
    # g0.04_c1.0 is still running: never kept, since its process may die without a file changing
    assert set(kept) == {f"demand_model/{n}" for n in ("g0.01_c1.0", "g0.02_c1.0", "g0.03_c1.5", "evil")}
    from_report = status_rows(runs)
    cache.unlink()
    assert status_rows(runs) == from_report
    live = tmp_path / "live"
    live.mkdir()
    make_demo(live, live=True)
    write_report(live)
    assert not (live / STATUS_CACHE).exists(), "a live report spends no time on the status cache"


def test_the_status_cache_serves_the_next_process(runs: Path) -> None:
    """Rows kept by one process are used by the next (so the signature hash must not depend on
    the process: an instance with a missing file, here its step list, checks that too)."""
    (runs / "demand_model" / "g0.01_c1.0" / "runs" / ".steps.json").unlink(missing_ok=True)
    _age(real=True)
    code = "import sys; from ductaflow.report.query import status_rows; status_rows(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(runs)], check=True)
    cache = runs / STATUS_CACHE
    written = cache.stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", code, str(runs)], check=True)
    assert cache.stat().st_mtime_ns == written, "the second process read instances again and rewrote the cache"


def test_a_report_that_read_only_some_instances_keeps_the_others_status_rows(runs: Path) -> None:
    """A process that starts from kept report rows reads only what changed; the status cache it
    writes still holds every instance (each row is checked when used)."""
    _age(real=True)
    code = "import sys; from ductaflow.report.page import write_report; write_report(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(runs)], check=True)
    cache = runs / STATUS_CACHE
    before = set(json.loads(cache.read_text())["rows"])
    assert len(before) == 4
    write_record(runs / "demand_model" / "g0.01_c1.0", "demand_model", status="orange")
    _age(real=True)
    subprocess.run([sys.executable, "-c", code, str(runs)], check=True)
    assert set(json.loads(cache.read_text())["rows"]) == before
    assert {r["dir"]: r["status"] for r in status_rows(runs)}["demand_model/g0.01_c1.0"] == "orange"


def test_status_keeps_no_cache_where_there_is_no_ductaflow_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_instance(runs, "m", "a", [{"flow": "f", "status": "orange", "warnings": ("Warning: hm",)}])
    assert [r["status"] for r in status_rows(runs)] == ["orange"]
    assert not (runs / ".ductaflow").exists()


def test_status_command_prints_an_aligned_table_and_the_counts(runs: Path) -> None:
    ran = CliRunner().invoke(cli, ["status", str(runs)])
    assert ran.exit_code == 0, ran.output
    lines = ran.output.splitlines()
    assert lines[0].split() == ["flow", "instance", "state", "duration", "finished", "worst", "flow", "/", "error"]
    assert lines[-1] == "5 instance(s): 1 green, 1 orange, 3 red"
    starts = {line.index("demand_model") for line in lines[1:-1]}
    assert len(starts) == 1, "the flow column is not aligned after the emoji lights"
    assert any(line.startswith(" 🟠") and line.rstrip().endswith("model") for line in lines)


def test_status_table_wraps_only_the_last_column() -> None:
    row = {"status": "red", "flow": "b", "instance": "été", "state": "finished", "duration": 1.25,
           "finished": "2026-01-05T22:00:00+00:00", "worst_flow": "f", "error": "word " * 30}  # fmt: skip
    lines = status_table([row], width=100)
    assert lines[1].startswith(" 🔴  b     été       finished  1.2s      2026-01-05 22:00:00  word")
    assert len(lines) > 2 and all(len(line) <= 100 for line in lines)
    indent = lines[1].index("word") + 1  # in columns: the light takes two
    assert all(line[:indent].isspace() and line[indent] == "w" for line in lines[2:])
