"""The report at 10,000 scenarios: rows drawn from data a page at a time, details loaded when a row
opens, search, sort, light and sweep filters, the baseline column and the comparison, in Chromium."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import CHROMIUM

from ductaflow.core.lights import Status
from ductaflow.report.page import REPORT_NAME, STATE_DIR, write_report
from ductaflow.report.paged import CHUNK, PAGE, PAGED_AT, details_dir
from ductaflow.store.result import ErrorInfo, FlowResult

N = 10_000
T0 = "2026-01-05T22:00:00+00:00"
LIGHTS = ("red", "orange", "green", "green", "green", "green", "green", "green", "green", "green")


def _record(folder: Path, flow: str, light: str) -> str:
    rec = FlowResult(flow, Path(f"/p/flows/{flow}.py"), folder, Status(light), "finished", started=T0, finished=T0,
                     duration=2.0, instance=folder.name,
                     warnings=("Warning: outside the calibrated range",) if light == "orange" else ())  # fmt: skip
    return json.dumps(rec.to_record())


def _tree(runs: Path) -> list[dict[str, Any]]:
    """N build instances, each with its record and one flow's, and the conductor's state file."""
    rows = []
    for k in range(N):
        name = f"s{k:05d}"
        light = LIGHTS[k % len(LIGHTS)]
        inst = runs / "model" / name
        flow_dir = inst / "runs" / "step"
        flow_dir.mkdir(parents=True)
        (inst / "model_status.json").write_text(_record(inst, "model", "red" if light == "red" else "green"))
        (flow_dir / "step_status.json").write_text(_record(flow_dir, "step", light))
        rows.append({
            "instance": name, "dir": f"model/{name}", "values": {"rate": k % 7, "region": f"r{k % 13}"},
            "state": "done", "status": light, "duration": float(k % 50),
            "worst_flow": "step" if light != "green" else None,
            "error": "step: ValueError: negative demand" if light == "red" else None,
            "sweep": "first" if k < N // 2 else "second",
            "metrics": {} if light == "red" else {"length": 10.0 + k % 13, "trips": 1000.0 + k},
        })  # fmt: skip
    doc = {"schema": 1, "build": "model", "build_path": "/p/builds/model.py", "runs_root": str(runs),
           "state": "finished", "started": T0, "updated": T0, "finished": T0, "columns": ["rate", "region"],
           "scenarios": rows, "report": {"metrics": ["length", "trips"], "minimize": ["length"],
                                         "maximize": ["trips"], "baseline": "s00002"}}  # fmt: skip
    (runs / STATE_DIR).mkdir(parents=True)
    (runs / STATE_DIR / "model.json").write_text(json.dumps(doc))
    return rows


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("big") / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    _tree(runs)
    write_report(runs)
    return runs


def test_a_big_section_is_data_and_details_files_not_40_mb_of_rows(big: Path) -> None:
    page = (big / REPORT_NAME).read_text(encoding="utf-8")
    assert os.path.getsize(big / REPORT_NAME) < 5_000_000
    assert page.count('<details class="scn') == 0 and 'class="list paged"' in page
    doc = json.loads(page.split('id="b0-rows">', 1)[1].split("</script>", 1)[0])
    assert len(doc["rows"]) == N and doc["page"] == PAGE
    assert doc["details"] == f"{details_dir(REPORT_NAME).as_posix()}/b0-"
    files = sorted((big / details_dir(REPORT_NAME)).glob("*.js"))
    assert len(files) == N // CHUNK
    first = files[0].read_text(encoding="utf-8")
    assert first.startswith("window.ductaflowDetails && window.ductaflowDetails(") and "s00000" in first
    assert "Scenario × flow" not in page  # no 10,000-row matrix either


def test_fewer_scenarios_are_rendered_as_before(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    for k in range(PAGED_AT):
        inst = runs / "model" / f"s{k}"
        inst.mkdir(parents=True)
        (inst / "model_status.json").write_text(_record(inst, "model", "green"))
    page = write_report(runs).read_text(encoding="utf-8")
    assert page.count('<details class="scn') == PAGED_AT and 'class="list paged"' not in page


pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def page(browser: object, big: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.goto((big / REPORT_NAME).as_uri())
    yield pg
    assert pg.errors == []
    context.close()


def _until(page: Any, done: Any, timeout: float = 10.0) -> None:
    """Wait (polling from Python: the page's policy forbids the eval of wait_for_function) until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the page did not get there in time"
        page.wait_for_timeout(50)


def _pos(page: Any) -> str:
    return page.locator(".pos").inner_text()


def _names(page: Any) -> list[str]:
    return page.locator(".list.paged details.scn").evaluate_all("ds => ds.map(d => d.dataset.instance)")


def test_first_page_then_next(page: Any) -> None:
    assert _names(page) == [f"s{k:05d}" for k in range(PAGE)]
    assert page.locator(".pos").inner_text() == f"1–{PAGE} of 10,000 · page 1 of {N // PAGE}"
    page.locator("button.next").click()
    assert _names(page)[0] == f"s{PAGE:05d}"


def test_search_by_name_and_by_value(page: Any) -> None:
    page.fill("input.q", "s0123")
    _until(page, lambda: len(_names(page)) == 10)
    assert _names(page) == [f"s0123{d}" for d in range(10)]
    page.fill("input.q", "r12")  # a region value: k % 13 == 12
    expected = sum(1 for k in range(N) if k % 13 == 12)
    _until(page, lambda: _pos(page).startswith(f"1–{PAGE} of {expected:,} (of 10,000)"))


def test_sort_by_a_parameter_and_filter_by_light(page: Any) -> None:
    page.locator('.hdr [data-key="v0"]').click()  # rate ascending: every 7th scenario has rate 0
    assert _names(page)[:3] == ["s00000", "s00007", "s00014"]
    page.locator('.filters a.f-red').click()
    _until(page, lambda: "of 1,000 (of" in _pos(page))
    lights = page.locator(".list.paged details.scn").evaluate_all("ds => ds.map(d => d.className)")
    assert set(lights) == {"scn l-red"}


def test_a_row_opens_onto_its_flows_loaded_from_beside_the_report(page: Any) -> None:
    page.fill("input.q", "s04322")
    _until(page, lambda: len(_names(page)) == 1)
    row = page.locator("details.scn").first
    row.locator("summary").click()
    row.locator('tr[data-record="step"]').wait_for(timeout=10_000)
    assert "model/s04322/" in row.locator(".where").inner_text()
    assert row.locator('tr[data-record="step"] .lamp').inner_text() == "green"


def test_the_sweep_filter_narrows_the_data(page: Any) -> None:
    page.select_option("select.sweep-filter", "second")
    _until(page, lambda: "of 5,000" in _pos(page))
    assert _names(page)[0] == f"s{N // 2:05d}"


def test_baseline_charts_and_two_scenarios_side_by_side(page: Any) -> None:
    assert "length · lower is better" in page.locator("figure.chart figcaption").all_inner_texts()[1]
    assert page.locator("figure.chart rect.hbin").count() > 0  # 10,000 values: a histogram
    box = page.locator(".compare")
    assert box.locator(".cmp-a").input_value() == "s00002"  # the baseline first
    box.locator(".cmp-b").fill("s00005")
    length = box.locator('tbody tr:has(th:text-is("length")) td').all_inner_texts()
    assert length == ["12", "15", "+3"]


PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_hostile_text_in_a_paged_section_stays_text(browser: object, tmp_path: Path) -> None:
    """Values, errors and warnings carrying markup, in rows drawn from data and in the details
    files: shown as text, nothing runs, no policy violation."""
    runs = tmp_path / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    rows = []
    for k in range(PAGED_AT + 20):
        name = f"s{k:04d}"
        inst = runs / "model" / name
        inst.mkdir(parents=True)
        rec = FlowResult("model", Path("/p/builds/model.py"), inst, Status.RED, "finished", started=T0, finished=T0,
                         instance=name, error=ErrorInfo("ValueError", PAYLOAD, f"Traceback\nValueError: {PAYLOAD}"),
                         warnings=(f"Warning: {PAYLOAD}",))  # fmt: skip
        (inst / "model_status.json").write_text(json.dumps(rec.to_record()))
        rows.append({"instance": name, "dir": f"model/{name}", "values": {"label": PAYLOAD}, "state": "done",
                     "status": "red", "error": f"model: ValueError: {PAYLOAD}", "metrics": {}})  # fmt: skip
    (runs / STATE_DIR).mkdir(parents=True)
    (runs / STATE_DIR / "model.json").write_text(json.dumps({
        "schema": 1, "build": "model", "build_path": "/p/builds/model.py", "runs_root": str(runs), "state": "finished",
        "started": T0, "updated": T0, "finished": T0, "columns": ["label"], "scenarios": rows,
    }))  # fmt: skip
    report = write_report(runs)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.on("pageerror", lambda e: console.append(str(e)))
        page.goto(report.as_uri())
        row = page.locator(".list.paged details.scn").first
        assert PAYLOAD in row.locator("summary").inner_text()
        row.locator("summary").click()
        row.locator(".errbox").wait_for(timeout=10_000)
        assert row.locator(".errbox").inner_text() == f"model: ValueError: {PAYLOAD}"
        page.fill("input.q", "onerror")
        page.wait_for_timeout(400)
        assert page.evaluate("Object.keys(window).filter(k => k.startsWith('__pwned'))") == []
        assert page.locator("img, iframe, object").count() == 0
        assert [m for m in console if "Content Security Policy" in m or "Error" in m] == []
    finally:
        context.close()


def test_the_baseline_column_sorts_by_delta(page: Any) -> None:
    """The named metrics and their deltas to the baseline are columns of the paged list too."""
    header = page.locator('.hdr [data-key="d0"]')
    assert header.inner_text().replace("\n", "") == "Δ LENGTH"
    header.click()  # ascending: the shortest trips relative to s00002 (length 12) first
    first = [k for k in range(N) if k % 13 == 0 and LIGHTS[k % len(LIGHTS)] != "red"][:3]
    assert _names(page)[:3] == [f"s{k:05d}" for k in first]
    cells = page.locator(".list.paged details.scn").first.locator("summary .c.num").all_inner_texts()
    assert cells[:2] == ["10", "-2 (-16.7%)"]
    delta = page.locator(".list.paged details.scn").first.locator(".c.delta").first
    assert delta.get_attribute("class").endswith("better")  # length: lower is better
