"""Report rows (``ductaflow.report.rows``): records made here as FlowResult objects, a snapshot
made by hand, no kernel and no runs written by a conductor."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ductaflow.core.lights import Status
from ductaflow.report import rows
from ductaflow.report.instances import Snapshot
from ductaflow.report.links import DIR, FILE, Folder
from ductaflow.store.result import ErrorInfo, FlowResult

T0 = "2026-01-05T22:00:00+00:00"


def _result(exec_dir: Path, flow: str, status: str = "green", **kw: Any) -> FlowResult:
    fields: dict[str, Any] = {"state": "finished", "started": T0, "finished": T0, "duration": 1.5, **kw}
    return FlowResult(flow=flow, flow_path=Path(f"/p/flows/{flow}.py"), execution_dir=exec_dir,
                      status=Status(status), instance=exec_dir.name, **fields)  # fmt: skip


@pytest.fixture
def layout(tmp_path: Path) -> SimpleNamespace:
    runs = tmp_path / "runs"
    inst = runs / "model" / "i1"
    work = inst / "runs" / "work"
    work.mkdir(parents=True)
    files = {
        str(inst): {"model.ipynb": FILE, "model.html": FILE, "model_execution_output.txt": FILE, "runs": DIR},
        str(inst / "runs"): {"work": DIR},
        str(work): {"work.ipynb": FILE, "work_config.json": FILE},
    }
    return SimpleNamespace(runs=runs, inst=inst, work=work, files=files)


def _snapshot(layout: SimpleNamespace, build: FlowResult | None, flows: tuple[FlowResult, ...], **kw: Any) -> Snapshot:
    running = build is not None and build.state == "running"
    summary = SimpleNamespace(build=build, flows=flows, running=running, status=kw.get("status"),
                              error=kw.get("error"), worst_flow=kw.get("worst_flow"))  # fmt: skip
    return Snapshot(token=1, instance_dir=str(layout.inst), summary=summary, files=layout.files)  # type: ignore[arg-type]


# ---------------------------------------------------------------- formatting
@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (-1, ""), ("12", ""), (0, "0.0 s"), (12.34, "12.3 s"), (60, "1 m 00 s"), (245, "4 m 05 s"),
     (3599, "59 m 59 s"), (3600, "1 h 00 m"), (7380, "2 h 03 m")],
)  # fmt: skip
def test_fmt_duration(seconds: Any, text: str) -> None:
    assert rows.fmt_duration(seconds) == text


def test_times_are_cut_to_seconds_and_elapsed_is_safe() -> None:
    assert rows.fmt_time("2024-05-01T13:02:11.123456+00:00") == "2024-05-01 13:02:11"
    assert rows.fmt_time(None) == rows.fmt_time("") == ""
    assert rows.elapsed(T0, "2026-01-05T22:01:30+00:00") == 90.0
    assert rows.elapsed(T0, "2026-01-05T21:00:00+00:00") == 0.0  # a clock step back is not negative
    assert rows.elapsed("yesterday") is None and rows.elapsed(None) is None
    assert rows.elapsed(T0, "2026-01-05T22:01:30") is None  # naive against aware
    started = (datetime.now(timezone.utc) - timedelta(seconds=30)).isoformat()
    assert 29 <= rows.elapsed(started) < 120  # type: ignore[operator]


# ---------------------------------------------------------------- one record
def test_a_red_build_record_links_its_html_at_the_error_cell(layout: SimpleNamespace) -> None:
    traceback = "\n".join(f"line {i}" for i in range(100))
    build = _result(layout.inst, "model", "red", duration=75.0, html_exported=True,
                    error=ErrorInfo("ValueError", "boom", traceback, 3))  # fmt: skip
    ctx = rows.record_context(build, Folder(layout.runs, str(layout.inst), layout.files[str(layout.inst)]), "build")
    assert (ctx["role"], ctx["flow"], ctx["instance"]) == ("build", "model", "i1")
    assert ctx["light"] == ctx["label"] == "red"
    assert ctx["reason"] == "ValueError: boom" and ctx["error_type"] == "ValueError" and ctx["error_message"] == "boom"
    assert ctx["duration_text"] == "1 m 15 s" and ctx["started"] == "2026-01-05 22:00:00"
    assert ctx["traceback"].splitlines() == [f"line {i}" for i in range(40, 100)]  # the last 60 lines
    assert ctx["links"] == [
        {"label": "notebook", "href": "model/i1/model.html#papermill-error-cell"},
        {"label": "log", "href": "model/i1/model_execution_output.txt"},
        {"label": "html", "href": "model/i1/model.html"},
    ]  # no config link: the listing has no model_config.json


def test_an_orange_flow_shows_twenty_warnings_and_counts_the_rest(layout: SimpleNamespace) -> None:
    flow = _result(layout.work, "work", "orange", warnings=tuple(f"Warning: {i}" for i in range(25)))
    folder = Folder(layout.runs, str(layout.work), layout.files[str(layout.work)])
    ctx = rows.record_context(flow, folder)
    assert ctx["light"] == "orange" and ctx["reason"] == "25 warning line(s)"
    assert ctx["warnings"] == [f"Warning: {i}" for i in range(20)] and ctx["more_warnings"] == 5
    assert ctx["error_type"] == ctx["traceback"] == ""
    assert ctx["links"] == [
        {"label": "notebook", "href": "model/i1/runs/work/work.ipynb"},
        {"label": "config", "href": "model/i1/runs/work/work_config.json"},
    ]


def test_green_has_no_reason_and_running_counts_its_time_from_the_start(layout: SimpleNamespace) -> None:
    folder = Folder(layout.runs, str(layout.work), layout.files[str(layout.work)])
    assert rows.record_context(_result(layout.work, "work"), folder)["reason"] == ""
    started = (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()
    running = rows.record_context(_result(layout.work, "work", state="running", started=started, duration=None), folder)
    assert running["light"] == "running" and running["duration"] >= 5
    prepared = rows.record_context(_result(layout.work, "work", state="prepared"), folder)
    assert prepared["light"] == "pending" and prepared["label"] == "pending"


def test_links_outside_the_runs_root_are_dropped(layout: SimpleNamespace, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ctx = rows.record_context(_result(outside, "work"), Folder(layout.runs, str(outside), {"work.ipynb": FILE}))
    assert ctx["links"] == []


# ---------------------------------------------------------------- one scenario row
def test_a_scenario_row_rolls_up_its_build_and_flows(layout: SimpleNamespace) -> None:
    build = _result(layout.inst, "model", "red", error=ErrorInfo("ValueError", "boom"))
    flow = _result(layout.work, "work", "orange", warnings=("Warning: low",))
    snap = _snapshot(layout, build, (flow,), status=Status.RED, error="ValueError: boom", worst_flow="work")
    values = {"growth": 0.01, "city": "été", "opts": {"a": 1}, "flag": True}
    entry = {"instance": "i1", "state": "done", "status": "red", "duration": 80, "values": values}
    entry["metrics"] = {"trips": 3}
    row = rows.scenario_row(layout.runs, ["growth", "city", "opts", "flag", "absent"], entry, 0, snap)
    assert (row["instance"], row["dir"], row["light"], row["label"]) == ("i1", "model/i1", "red", "red")
    assert row["rank"] == rows.LIGHTS.index("red") == 0
    assert row["cells"] == ["0.01", "été", '{"a":1}', "true", ""]
    assert row["error"] == "ValueError: boom" and row["note"] == "ValueError: boom" and row["worst_flow"] == "work"
    assert row["duration_text"] == "1 m 20 s" and row["metrics"] == {"trips": 3}
    assert [r["role"] for r in row["records"]] == ["build", "flow"] and set(row["flows"]) == {"work"}
    assert not rows.live(row)


def test_row_lights_from_the_entry_the_snapshot_or_nothing(layout: SimpleNamespace) -> None:
    flow = _result(layout.work, "work", "orange", warnings=("Warning: low",))
    orange = _snapshot(layout, _result(layout.inst, "model"), (flow,), status=Status.ORANGE, worst_flow="work")
    row = rows.scenario_row(layout.runs, [], {"instance": "i1", "state": "done"}, 0, orange)
    assert row["light"] == "orange" and row["note"] == "work: Warning: low" and row["error"] == ""
    skipped = rows.scenario_row(layout.runs, [], {"instance": "i1", "state": "skipped", "status": "green"}, 0, orange)
    assert skipped["label"] == "green" and skipped["up_to_date"] and skipped["note"] == "up to date: not re-run"
    pending = rows.scenario_row(layout.runs, [], {"state": "pending"}, 4, None)
    assert (pending["instance"], pending["light"], pending["records"], pending["dir"]) == ("#5", "pending", [], "")
    unknown = rows.scenario_row(layout.runs, [], {"instance": "x", "state": "done"}, 0, None)
    assert unknown["light"] == "unknown" and unknown["label"] == "no record"
    odd = rows.scenario_row(layout.runs, [], {"instance": "x", "state": "exploded", "values": "not a dict"}, 0, None)
    assert odd["state"] == "done" and odd["cells"] == []


def test_a_running_build_makes_a_live_row(layout: SimpleNamespace) -> None:
    started = (datetime.now(timezone.utc) - timedelta(seconds=3)).isoformat()
    build = _result(layout.inst, "model", state="running", started=started, duration=None)
    flow = _result(layout.work, "work", state="running", started=started, duration=None)
    snap = _snapshot(layout, build, (flow,))
    row = rows.scenario_row(layout.runs, [], {"instance": "i1", "state": "running"}, 0, snap)
    assert row["light"] == "running" and row["note"] == "running work" and rows.live(row)
    assert row["duration"] >= 3
    discovered = rows.scenario_row(layout.runs, [], {"instance": "i1"}, 0, snap, discovered=True)
    assert discovered["light"] == "running"


def test_a_scenario_given_up_says_why_and_a_cancelled_one_says_nothing(tmp_path: Path) -> None:
    entry = {"instance": "c", "state": "cancelled", "status": None, "values": {}}
    given_up = rows.scenario_row(tmp_path, [], {**entry, "error": "not_run: no worker connected for 300 s"}, 0, None)
    assert (given_up["light"], given_up["note"]) == ("cancelled", "not_run: no worker connected for 300 s")
    assert rows.scenario_row(tmp_path, [], {**entry, "error": None}, 1, None)["note"] == ""
