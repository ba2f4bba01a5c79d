"""The status report from fabricated runs dirs: context, links, escaping, refresh, fallbacks (no kernels)."""

from __future__ import annotations

import ast
import html
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fixtures import IMG_PAYLOAD, SCRIPT_PAYLOAD, make_demo, make_instance, write_record, write_state

from ductaflow.report import page as report
from ductaflow.report.page import REPORT_NAME, collect_report, generate_status_report, href, render_report, write_report
from ductaflow.report.rows import fmt_duration

A_HREF = re.compile(r'<a\b[^>]*\bhref="([^"]*)"')


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.handlers: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [(tag, name) for name, _ in attrs if name.startswith("on")]


def _event_handler_attributes(page: str) -> list[tuple[str, str]]:
    parser = _Attrs()
    parser.feed(page)
    return parser.handlers


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


def _rows(ctx: dict) -> dict[str, dict]:
    return {r["instance"]: r for s in ctx["sections"] for r in s["rows"]}


def test_lights_totals_and_order_follow_the_state_file(runs: Path) -> None:
    demo = make_demo(runs)
    ctx = collect_report(runs)
    assert [r["instance"] for r in ctx["sections"][0]["rows"]] == [s["instance"] for s in demo["scenarios"]]
    lights = {k: r["light"] for k, r in _rows(ctx).items()}
    assert lights == {
        "g0.01_c1.0": "green",
        "g0.02_c1.0": "orange",
        "g0.03_c1.5": "red",
        "evil": "red",
        "g0.04_c1.0": "running",
        "g0.05_c1.0": "pending",
        "g0.06_c1.0": "cancelled",
    }
    t = ctx["totals"]
    assert (t["green"], t["orange"], t["red"], t["running"], t["pending"], t["cancelled"], t["total"]) == (
        1,
        1,
        2,
        1,
        1,
        1,
        7,
    )
    assert ctx["worst"] == "red" and ctx["live"] is False
    assert ctx["sections"][0]["columns"] == ["growth_rate", "cost_sensitivity", "label"]
    assert _rows(ctx)["g0.01_c1.0"]["cells"] == ["0.01", "1.0", "base"]


def test_rows_carry_flows_errors_warnings_and_worst_flow(runs: Path) -> None:
    make_demo(runs)
    rows = _rows(collect_report(runs))
    red = rows["g0.03_c1.5"]
    assert red["worst_flow"] == "summarize" and red["duration_text"] == "8.2 s"
    assert red["error"] == "summarize: ValueError: boom: negative demand"
    flows = red["flows"]
    assert list(flows) == ["prep", "model", "summarize"]
    failing = flows["summarize"]
    assert (failing["error_type"], failing["error_message"]) == ("ValueError", "boom: negative demand")
    assert red["records"][0]["role"] == "build"
    orange = rows["g0.02_c1.0"]
    assert orange["flows"]["model"]["warnings"] == ["Warning: low memory", "⚠️ 3 zones empty"]
    assert orange["note"] == "model: Warning: low memory" and orange["error"] == ""
    running = rows["g0.04_c1.0"]
    assert running["flows"]["model"]["light"] == "running" and running["note"] == "running model"
    assert rows["g0.05_c1.0"]["records"] == []


def test_state_status_missing_falls_back_to_the_records(runs: Path) -> None:
    make_instance(runs, "b", "x", [{"flow": "f", "status": "orange", "warnings": ("warning: hm",)}])
    write_state(
        runs,
        "b",
        [
            {"instance": "x", "dir": "b/x", "values": {}, "state": "done", "status": None},
            {"instance": "y", "dir": "b/y", "values": {}, "state": "done", "status": None},
        ],
        columns=[],
    )
    rows = _rows(collect_report(runs))
    assert rows["x"]["light"] == "orange" and rows["x"]["worst_flow"] == "f"
    assert rows["y"]["light"] == "unknown" and rows["y"]["label"] == "no record"


def test_red_notebook_link_opens_the_error_cell_of_the_html_export(runs: Path) -> None:
    make_demo(runs)
    rows = _rows(collect_report(runs))
    links = {ln["label"]: ln["href"] for ln in rows["g0.03_c1.5"]["flows"]["summarize"]["links"]}
    assert links["notebook"] == "demand_model/g0.03_c1.5/runs/summarize/summarize.html#papermill-error-cell"
    assert links["log"] == "demand_model/g0.03_c1.5/runs/summarize/summarize_execution_output.txt"
    assert links["html"] == "demand_model/g0.03_c1.5/runs/summarize/summarize.html"
    no_html = {ln["label"]: ln["href"] for ln in rows["evil"]["flows"]["model"]["links"]}
    assert no_html["notebook"] == "demand_model/evil/runs/model/model.ipynb" and "html" not in no_html
    green = {ln["label"]: ln["href"] for ln in rows["g0.01_c1.0"]["flows"]["prep"]["links"]}
    assert set(green) == {"notebook", "log", "config"} and green["notebook"].endswith("prep.ipynb")


def test_links_stay_inside_the_runs_root(runs: Path, tmp_path: Path) -> None:
    make_demo(runs)
    outside = tmp_path / "outside"
    write_record(outside, "b", "red", error=("E", "secret"))
    make_instance(runs, "demand_model", "a b%c", [{"flow": "f", "status": "green"}])
    state = json.loads((runs / report.STATE_DIR / "demand_model.json").read_text())
    state["scenarios"] += [
        {"instance": "up", "dir": "../outside", "values": {}, "state": "done", "status": "red"},
        {"instance": "abs", "dir": str(outside), "values": {}, "state": "done", "status": "red"},
        {"instance": "sp", "dir": "demand_model/a b%c", "values": {}, "state": "done", "status": "green"},
    ]
    (runs / report.STATE_DIR / "demand_model.json").write_text(json.dumps(state))
    rows = _rows(collect_report(runs))
    assert rows["up"]["records"] == [] and rows["abs"]["records"] == [] and rows["up"]["dir"] == ""
    assert "demand_model/a%20b%25c/runs/f/f.ipynb" in [ln["href"] for ln in rows["sp"]["flows"]["f"]["links"]]
    page = write_report(runs).read_text()
    hrefs = [html.unescape(h) for h in A_HREF.findall(page)]
    files = [h for h in hrefs if not h.startswith("#")]
    assert len(files) > 40
    for h in files:
        assert ".." not in h and not h.startswith("/") and ":" not in h.split("#")[0], h
        target = runs / h.split("#")[0].replace("%20", " ").replace("%25", "%")
        assert target.is_file() or (h.endswith("/") and target.is_dir()), h  # a file, or an instance folder
    assert "secret" not in page


def test_href_drops_what_it_cannot_keep_inside(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    assert href(tmp_path, tmp_path / "d" / "f.txt") == "d/f.txt"
    assert href(tmp_path, tmp_path / "d" / ".." / "d" / "f.txt") is None
    assert href(tmp_path, tmp_path.parent / "f.txt") is None
    assert href(tmp_path, tmp_path / "d" / "missing.txt") is None
    assert href(tmp_path, tmp_path / "d" / "f.txt", "a b") == "d/f.txt#a%20b"


def test_refresh_and_banner_only_while_a_conductor_runs(runs: Path) -> None:
    make_demo(runs, live=True)
    live = write_report(runs).read_text()
    assert '<meta http-equiv="refresh" content="5">' in live and 'class="banner' in live
    for state in ("finished", "interrupted", "stopped"):
        doc = json.loads((runs / report.STATE_DIR / "demand_model.json").read_text())
        doc["state"] = state
        (runs / report.STATE_DIR / "demand_model.json").write_text(json.dumps(doc))
        page = write_report(runs).read_text()
        assert 'http-equiv="refresh"' not in page and 'class="banner' not in page, state


def test_user_text_is_escaped(runs: Path) -> None:
    make_demo(runs)
    page = generate_status_report(None, runs)
    assert SCRIPT_PAYLOAD not in page and IMG_PAYLOAD not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in page
    assert page.count("<script") == 1 and "<img" not in page


def test_csp_nonce_is_fresh_and_the_only_script_carries_it(runs: Path) -> None:
    make_demo(runs)
    ctx = collect_report(runs)
    pages = [render_report(ctx), render_report(ctx)]
    nonces = []
    for page in pages:
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
        assert csp.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'nonce-")
        nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
        assert re.findall(r"<script([^>]*)>", page) == [f' nonce="{nonce}"']
        assert not _event_handler_attributes(page)
        assert not re.search(r'(src|href)="(https?:)?//', page)
        nonces.append(nonce)
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 16


def test_without_a_state_file_instances_are_discovered(runs: Path) -> None:
    make_instance(runs, "demand_model", "hand_a", [{"flow": "prep", "status": "green"}])
    make_instance(runs, "demand_model", "hand_b", [{"flow": "prep", "status": "red", "error": ("KeyError", "'x'")}])
    write_record(runs / "clean" / "one", "clean", "orange", warnings=("Warning: odd",))
    (runs / "notes").mkdir()
    ctx = collect_report(runs)
    sections = {s["build"]: s for s in ctx["sections"]}
    assert set(sections) == {"demand_model", "clean"} and not ctx["live"]
    assert all(s["source"] == "discovered" for s in ctx["sections"])
    rows = _rows(ctx)
    assert (rows["hand_a"]["light"], rows["hand_b"]["light"], rows["one"]["light"]) == ("green", "red", "orange")
    assert rows["hand_b"]["error"] == "prep: KeyError: 'x'"
    page = render_report(ctx)
    assert "found on disk" in page and 'http-equiv="refresh"' not in page


def test_garbage_status_record_is_skipped_with_a_warning(runs: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_demo(runs)
    bad = runs / "demand_model" / "g0.01_c1.0" / "runs" / "model" / "model_status.json"
    bad.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        ctx = collect_report(runs)
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    assert list(_rows(ctx)["g0.01_c1.0"]["flows"]) == ["prep", "summarize"]
    assert any("model_status.json" in n for n in ctx["notices"])
    assert "model_status.json" in render_report(ctx)


def test_garbage_state_file_falls_back_to_discovery(runs: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_instance(runs, "demand_model", "x", [{"flow": "f", "status": "green"}])
    state = runs / report.STATE_DIR / "demand_model.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"scenarios": 3}')
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        ctx = collect_report(runs)
    assert any("demand_model.json" in r.getMessage() for r in caplog.records)
    assert ctx["sections"][0]["source"] == "discovered" and _rows(ctx)["x"]["light"] == "green"
    assert "could not be read" in render_report(ctx)


def test_empty_or_missing_runs_root_renders(tmp_path: Path) -> None:
    assert "No runs found" in render_report(collect_report(tmp_path / "nope"))
    assert "No runs found" in generate_status_report([], tmp_path)


def test_write_report_is_atomic_and_in_the_runs_root(runs: Path) -> None:
    make_demo(runs)
    path = write_report(runs)
    assert path == runs / REPORT_NAME and path.read_text().startswith("<!DOCTYPE html>")
    assert not list(runs.glob(".*.tmp"))


def test_generate_status_report_restricts_to_given_instance_dirs(runs: Path) -> None:
    make_demo(runs)
    everything = generate_status_report(None, runs)
    assert "g0.06_c1.0" in everything
    base = runs / "demand_model"
    dicts = [{"instance_dir": str(base / "evil")}, {"instance_dir": str(base / "g0.01_c1.0")}]
    page = generate_status_report(dicts, runs)
    assert "g0.03_c1.5" not in page and page.index('data-instance="evil"') < page.index('data-instance="g0.01_c1.0"')
    assert "demand_model/g0.02_c1.0" in generate_status_report(["demand_model/g0.02_c1.0"], runs)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"instance": ["evil"], "instance_dir": [str(base / "evil")]})
    assert 'data-instance="g0.01_c1.0"' not in generate_status_report(frame, runs)
    assert 'data-instance="g0.01_c1.0"' in generate_status_report(pd.DataFrame({"x": [1]}), runs)


def test_duration_formatting() -> None:
    fmt = fmt_duration
    assert (fmt(None), fmt(3.14), fmt(65), fmt(3725), fmt(-1)) == ("", "3.1 s", "1 m 05 s", "1 h 02 m", "")


def test_report_never_imports_execution() -> None:
    tree = ast.parse(Path(report.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    banned = {
        "ductaflow.run.execute", "ductaflow.kernels.engine", "ductaflow.conductor.sweep", "ductaflow.cli",
        "ductaflow.inflow.build",
    }
    assert not imported & banned


def test_the_instance_name_column_is_not_repeated_as_a_value(runs: Path) -> None:
    make_instance(runs, "b", "x", [{"flow": "f", "status": "green"}])
    row = {"instance": "x", "dir": "b/x", "values": {"name": "x", "g": 1}, "state": "done", "status": "green"}
    write_state(runs, "b", [row], columns=["name", "g"])
    ctx = collect_report(runs)
    assert ctx["sections"][0]["columns"] == ["g"] and _rows(ctx)["x"]["cells"] == ["1"]


def test_results_table_charts_and_up_to_date_rows(runs: Path) -> None:
    rows = [
        {"instance": "a", "dir": "m/a", "values": {"g": 1}, "state": "skipped", "status": "green",
         "metrics": {"trips": 100.0, "zones": 40, "note": SCRIPT_PAYLOAD}},
        {"instance": "b", "dir": "m/b", "values": {"g": 2}, "state": "done", "status": "orange",
         "metrics": {"trips": 250.0, "zones": 40}},
        {"instance": "c", "dir": "m/c", "values": {"g": 3}, "state": "done", "status": "red", "metrics": {}},
    ]
    write_state(runs, "m", rows, columns=["g"])
    ctx = collect_report(runs)
    section = ctx["sections"][0]
    assert _rows(ctx)["a"]["label"] == "green" and _rows(ctx)["a"]["up_to_date"]
    assert _rows(ctx)["b"]["label"] == "orange" and not _rows(ctx)["b"]["up_to_date"]
    res = section["results"]
    assert res["columns"] == ["trips", "zones", "note"]
    assert [r["cells"] for r in res["rows"]] == [["100", "40", SCRIPT_PAYLOAD], ["250", "40", ""], ["", "", ""]]
    [chart] = res["charts"]  # zones is the same everywhere: no chart; note is not a number
    assert chart["metric"] == "trips"
    widths = {b["instance"]: b["width"] for b in chart["bars"]}
    assert widths["b"] == 360 and widths["a"] == 144
    page = render_report(ctx)
    assert "Results by scenario" in page and page.count('<rect class="bar') == 2
    assert SCRIPT_PAYLOAD not in page  # a recorded string is user text too


def test_a_killed_conductor_is_shown_gone_not_live(runs: Path) -> None:
    """A state file left 'running' by a conductor that no longer exists: no refresh, rows red."""
    import socket
    import subprocess
    import sys

    import psutil

    make_demo(runs, live=True)
    path = runs / report.STATE_DIR / "demand_model.json"
    doc = json.loads(path.read_text())
    me = psutil.Process()
    doc["conductor"] = {"pid": me.pid, "created": me.create_time(), "host": socket.gethostname()}
    path.write_text(json.dumps(doc))
    assert '<meta http-equiv="refresh"' in write_report(runs).read_text(), "a live conductor stopped refreshing"

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(gone.pid).create_time()
    gone.wait()
    doc["conductor"] = {"pid": gone.pid, "created": created, "host": socket.gethostname()}
    path.write_text(json.dumps(doc))
    ctx = report.collect_report(runs)
    section = next(s for s in ctx["sections"] if s["build"] == "demand_model")
    assert section["state"] == "abandoned" and not ctx["live"]
    assert "running" not in {r["light"] for r in section["rows"]}
    page = write_report(runs).read_text()
    assert '<meta http-equiv="refresh"' not in page and "its conductor is gone" in page
