"""The report in a real (headless Debian) Chromium from file://: expand, follow links, stay inert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import CHROMIUM, watched_page
from report_fixtures import IMG_PAYLOAD, SCRIPT_PAYLOAD, make_demo, make_instance, write_state
from report_fixtures import _row as _state_row

from ductaflow.report.page import write_report

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def report_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    runs = tmp_path_factory.mktemp("browser") / "runs"
    runs.mkdir()
    make_demo(runs)
    return write_report(runs).as_uri()


@pytest.fixture
def page(browser: object, report_url: str) -> Iterator[object]:
    yield from watched_page(browser, report_url)


def _row(page: object, instance: str) -> object:
    return page.locator(f'details.scn[data-instance="{instance}"]')


def test_one_click_expands_a_red_scenario_and_its_log_link_opens_the_log(page: object) -> None:
    row = _row(page, "g0.03_c1.5")
    failing = row.locator('tr[data-record="summarize"]')
    assert not failing.is_visible()
    row.locator(":scope > summary").click()
    assert row.evaluate("d => d.open") is True
    assert failing.is_visible()
    assert failing.locator(".emsg").inner_text() == "ValueError: boom: negative demand"
    assert failing.locator(".emsg").is_visible()
    assert failing.locator(".lamp").inner_text() == "red"
    failing.get_by_role("link", name="log").click()
    page.wait_for_url("**/summarize_execution_output.txt")
    assert "ValueError: boom: negative demand" in page.locator("body").inner_text()


def test_red_notebook_link_lands_on_the_error_cell(page: object) -> None:
    row = _row(page, "g0.03_c1.5")
    row.locator(":scope > summary").click()
    row.locator('tr[data-record="summarize"]').get_by_role("link", name="notebook").click()
    page.wait_for_url("**/summarize.html#papermill-error-cell")
    assert page.locator("#papermill-error-cell").is_visible()


def test_hostile_scenario_value_and_error_render_as_text(page: object) -> None:
    row = _row(page, "evil")
    assert SCRIPT_PAYLOAD in row.locator(":scope > summary").inner_text()
    row.locator(":scope > summary").click()
    assert row.locator(".errbox").inner_text() == f"model: RuntimeError: {IMG_PAYLOAD}"
    flow_error = row.locator('tr[data-record="model"]').locator(".emsg")
    assert flow_error.inner_text() == f"RuntimeError: {IMG_PAYLOAD}" and flow_error.is_visible()
    page.wait_for_timeout(300)  # give an injected onerror every chance to fire
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 1


def test_own_script_runs_under_the_csp_and_nothing_is_blocked(page: object) -> None:
    assert page.locator("#ago").inner_text().endswith("ago)")  # only the nonce'd script writes this
    assert not [m for m in page.console_messages if "Content Security Policy" in m or "Error" in m]


def test_filter_tiles_and_sorting(page: object) -> None:
    page.locator("a.tile.l-red").click()
    visible = [d.get_attribute("data-instance") for d in page.locator("details.scn").all() if d.is_visible()]
    assert visible == ["g0.03_c1.5", "evil"]
    page.locator("nav.filters a.all").click()
    page.locator('.hdr [data-key="dur"]').click()
    durations = page.eval_on_selector_all("details.scn", "ds => ds.map(d => d.dataset.dur)")
    timed = [float(d) for d in durations if d]
    assert len(timed) == 5 and timed == sorted(timed) and durations[5:] == ["", ""]
    assert page.locator('.hdr [data-key="dur"]').get_attribute("aria-sort") == "ascending"


def test_screenshot_for_a_human_eye(page: object) -> None:
    _row(page, "g0.03_c1.5").locator(":scope > summary").click()
    page.screenshot(path="/tmp/report.png", full_page=True)
    assert Path("/tmp/report.png").stat().st_size > 10_000


def test_live_reload_keeps_the_filter_and_the_expanded_row(browser: object, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    make_demo(runs, live=True)
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(write_report(runs).as_uri() + "#only-problems")
    _row(pg, "g0.02_c1.0").locator(":scope > summary").click()
    assert not _row(pg, "g0.01_c1.0").is_visible()
    with pg.expect_navigation(timeout=9000):  # the <meta refresh> reload, 5 s
        pass
    assert pg.url.endswith("#only-problems")
    assert _row(pg, "g0.02_c1.0").evaluate("d => d.open") is True
    assert not _row(pg, "g0.01_c1.0").is_visible()
    context.close()


@pytest.fixture(scope="module")
def uptodate_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second sweep in which every scenario was up to date, with a nested scenario column."""
    runs = tmp_path_factory.mktemp("uptodate") / "runs"
    runs.mkdir()
    nested = "prepare_zones.max_calibrated_growth"
    rows = []
    for name, light in (("g0.01_c0.05", "green"), ("g0.04_c0.05", "orange")):
        make_instance(runs, "demand_model", name, [{"flow": "prep", "status": light}])
        rows.append(_state_row(name, {"growth_rate": 0.01, nested: 0.03}, "skipped", light))
    write_state(runs, "demand_model", rows, columns=["growth_rate", nested])
    return write_report(runs).as_uri()


def test_up_to_date_pills_and_nested_headers_are_not_cut(browser: object, uptodate_url: str) -> None:
    """After the README's "run it again" step: every pill reads its light in full, with the
    up-to-date mark beside it, and a nested column's header shows its whole name."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(uptodate_url)
        for name, light in (("g0.01_c0.05", "green"), ("g0.04_c0.05", "orange")):
            summary = _row(page, name).locator(":scope > summary")
            assert summary.locator(".lamp").inner_text() == light
            assert summary.locator(".utd").get_attribute("title") == "up to date: not re-run"
            cell = summary.locator(".c").first
            assert cell.evaluate("c => c.scrollWidth <= c.clientWidth"), f"{name}: the light's cell overflows"
        header = page.locator('.row.hdr [title="prepare_zones.max_calibrated_growth"]')
        assert header.inner_text().replace("\n", "") == "prepare_zones.max_calibrated_growth".upper()
        assert header.evaluate("c => c.scrollWidth <= c.clientWidth"), "the nested column's header is cut off"
    finally:
        context.close()


@pytest.fixture(scope="module")
def compare_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three scenarios with metrics and report settings kept in the state (as conduct(report=...) does)."""
    runs = tmp_path_factory.mktemp("compare") / "runs"
    rows = []
    for name, g, length, trips in (("a", 1, 10.0, 100.0), ("b", 2, 8.0, 100.0), ("c", 3, 12.0, 140.0)):
        make_instance(runs, "m", name, [{"flow": "prep", "status": "green"}])
        rows.append(_state_row(name, {"g": g}, "done", "green", dir=f"m/{name}",
                               metrics={"length": length, "trips": trips}))  # fmt: skip
    state = write_state(runs, "m", rows, columns=["g"])
    doc = json.loads(state.read_text())
    doc["report"] = {"metrics": ["length", "trips"], "minimize": ["length"], "maximize": ["trips"], "baseline": "a"}
    state.write_text(json.dumps(doc))
    return write_report(runs).as_uri()


def test_two_scenarios_side_by_side_with_their_differences(browser: object, compare_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(compare_url)
        box = page.locator(".compare")
        assert box.locator(".cmp-a option:checked").inner_text() == "a"  # the baseline comes first
        box.locator(".cmp-b").select_option(label="c")
        lines = {tr.locator("th").inner_text(): tr for tr in box.locator("tbody tr").all() if tr.locator("td").count()}
        assert lines["g"].get_attribute("class") == "diff"
        assert [td.inner_text() for td in lines["length"].locator("td").all()] == ["10", "12", "+2"]
        assert [td.inner_text() for td in lines["trips"].locator("td").all()] == ["100", "140", "+40"]
        assert lines["light"].get_attribute("class") in (None, "")  # both green: not highlighted
        box.locator(".cmp-b").select_option(label="b")
        assert box.locator('tbody tr:has(th:text-is("trips"))').get_attribute("class") in (None, "")
        # the baseline column and the Pareto chart are on the page too
        assert page.locator("th.delta").all_inner_texts() == ["Δ length", "Δ trips"]
        assert page.locator("figure.pareto circle.pt.on").count() == 2  # b (shortest) and c (most trips)
        assert errors == []
    finally:
        context.close()
