"""An adaptive sweep's search in the report, in a real (headless Debian) Chromium from file://:
the tree is shown and nested by lineage, its links open the row, and hostile names stay text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browserkit import CHROMIUM, watched_page
from report_fixtures import SCRIPT_PAYLOAD
from search_fixtures import EVIL, make_search

from ductaflow.report.page import write_report

pytestmark = [
    pytest.mark.kernel,  # a browser: not the fast lane
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def report_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    runs = tmp_path_factory.mktemp("search") / "runs"
    runs.mkdir()
    make_search(runs)
    return write_report(runs).as_uri()


@pytest.fixture
def page(browser: object, report_url: str) -> Iterator[object]:
    yield from watched_page(browser, report_url)


def _node(page: object, instance: str) -> object:
    return page.locator(".tree li.tn").filter(has=page.locator(f':scope > .tname:text-is("{instance}")'))


# each node's nearest enclosing node, as the browser parsed the page
_PARENTS = """() => Array.from(document.querySelectorAll('.tree li.tn')).map(li => {
  const up = li.parentElement.closest('li.tn');
  return [li.dataset.instance, up ? up.dataset.instance : null];
})"""


def test_the_tree_is_visible_and_nested_by_lineage(page: object) -> None:
    assert page.locator("h3", has_text="Search").is_visible()
    tree = page.locator(".tree")
    assert tree.is_visible()
    parents = {name: up for name, up in page.evaluate(_PARENTS)}
    assert parents == {"g0.01": None, "g0.02": "g0.01", "g0.015": "g0.02", EVIL: "g0.02", "g0.03": "g0.02",
                       "g0.04": "g0.03", "g0.05": None}  # fmt: skip
    names = page.locator(".tree li.tn > .tname").all_inner_texts()
    assert names == ["g0.01", "g0.02", "g0.015", EVIL, "g0.03", "g0.04", "g0.05"]  # parents before children
    # a child sits to the right of its parent
    x = {n: _node(page, n).locator(":scope > .tname").bounding_box()["x"] for n in ("g0.01", "g0.02", "g0.015")}
    assert x["g0.01"] < x["g0.02"] < x["g0.015"]


def test_each_node_shows_its_light_key_metric_and_attempts(page: object) -> None:
    g02 = _node(page, "g0.02")
    assert g02.locator(":scope > .lamp").inner_text() == "green"
    assert g02.locator(":scope > .tmetric").inner_text() == "mean_trip_length 10.25"
    assert g02.locator(":scope > .tnote").inner_text() == "green after 2 retries"
    red = _node(page, "g0.05")
    assert red.locator(":scope > .lamp").inner_text() == "red"
    assert red.locator(":scope > .tnote").inner_text() == "red after 1 retry · kernel_died in execute"
    assert _node(page, "g0.03").locator(":scope > .tbest").is_visible()  # lowest mean_trip_length
    assert not _node(page, EVIL).locator(":scope > .tmetric").count()  # not run yet: no metric to show


def test_a_node_links_to_its_row_which_says_its_failure(page: object) -> None:
    _node(page, "g0.05").locator(":scope > .tname").click()
    row = page.locator('details.scn[data-instance="g0.05"]')
    page.wait_for_function("() => document.querySelector('details.scn[data-instance=\"g0.05\"]').open")
    note = row.locator(":scope > summary .note")
    assert note.inner_text().startswith("red after 1 retry · kernel_died in execute")
    assert page.locator('details.scn[data-instance="g0.02"] > summary .note').inner_text() == "green after 2 retries"


def test_hostile_names_and_values_stay_text(page: object) -> None:
    evil = _node(page, EVIL)
    assert evil.locator(":scope > .tname").inner_text() == EVIL and evil.is_visible()
    assert SCRIPT_PAYLOAD in page.locator(f'details.scn[data-instance="{EVIL}"] > summary').inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".tree script").count() == 0
    assert not [m for m in page.console_messages if "Content Security Policy" in m or "Error" in m]
