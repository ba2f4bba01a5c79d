"""The search in the report without a browser: row lineage, attempts and failure kinds, the tree
built from the rows (nesting, orphans, cycles, the best node) and its escaped HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from report_fixtures import SCRIPT_PAYLOAD, make_demo
from search_fixtures import EVIL, METRIC, make_search

from ductaflow.report.collect import collect_report
from ductaflow.report.html import record_row
from ductaflow.report.lineage import MAX_TREE_NODES, attempt_fields, retries_text, search_tree, tree_html
from ductaflow.report.memory import Memory
from ductaflow.report.page import write_report
from ductaflow.report.paged import paged_parts
from ductaflow.report.spec import ReportSpec


def _row(instance: str, index: int, parent: str | None = None, light: str = "green", **metrics: Any) -> dict[str, Any]:
    return {"instance": instance, "index": index, "parent": parent, "light": light, "label": light,
            "metrics": metrics, "attempt_note": "", "records": []}  # fmt: skip


def _shape(tree: dict[str, Any] | None) -> list[tuple[int, str]]:
    assert tree is not None
    return [(d, r["instance"]) for d, r in tree["nodes"]]


class _Nesting(HTMLParser):
    """Each tree item's nearest enclosing tree item (None at the top)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.parent_of: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "li":
            name = dict(attrs)["data-instance"] or ""
            self.parent_of[name] = next((s for s in reversed(self.stack) if s), None)
            self.stack.append(name)
        elif tag == "ul":
            self.stack.append(None)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("li", "ul"):
            self.stack.pop()


def _nesting(html: str) -> dict[str, str | None]:
    parser = _Nesting()
    parser.feed(html)
    assert parser.stack == []  # every list and item closed
    return parser.parent_of


def test_retries_text_counts_the_attempts_after_the_first() -> None:
    assert retries_text("green", 3) == "green after 2 retries"
    assert retries_text("red", 2) == "red after 1 retry"
    assert retries_text("green", 1) == retries_text("green", 0) == ""
    assert retries_text("running", 3) == ""  # not done: no verdict to qualify


def test_attempt_fields_take_the_entry_first_then_the_build_record() -> None:
    rec = SimpleNamespace(kind="kernel_died", phase="execute", attempt=2)
    got = attempt_fields({"parent": "a", "attempts": 3, "kind": "kernel_died"}, "red", rec)
    assert got == {"parent": "a", "attempts": 3, "kind": "kernel_died", "phase": "execute",
                   "attempt_note": "red after 2 retries · kernel_died in execute"}  # fmt: skip
    # the record's phase belongs to the record's kind: not shown beside another kind
    assert attempt_fields({"kind": "worker_lost", "attempts": 1}, "red", rec)["attempt_note"] == "worker_lost"
    # an older state file: no keys; the record says it all
    assert attempt_fields({}, "red", rec)["attempt_note"] == "red after 1 retry · kernel_died in execute"
    assert attempt_fields({"attempts": 2}, "running", None)["attempt_note"] == "attempt 2"


def test_attempt_fields_of_older_files_and_records_are_empty() -> None:
    older = SimpleNamespace()  # a record from before schema 8: no kind, phase or attempt
    assert attempt_fields({}, "red", older) == {"parent": None, "attempts": 0, "kind": "", "phase": "",
                                                 "attempt_note": ""}  # fmt: skip
    assert attempt_fields({"kind": "timeout"}, "green", None)["kind"] == ""  # only a red row has a kind
    assert attempt_fields({"attempts": True, "parent": ""}, "green", None)["parent"] is None


def test_no_parent_means_no_tree() -> None:
    assert search_tree([_row("a", 0), _row("b", 1)], ReportSpec(metrics=(METRIC,))) is None
    assert search_tree([]) is None


def test_tree_nests_children_under_parents_in_row_order() -> None:
    rows = [_row("a", 0), _row("b", 1), _row("a2", 2, "a"), _row("a1", 3, "a"), _row("a2x", 4, "a2"),
            _row("b1", 5, "b")]  # fmt: skip
    tree = search_tree(rows)
    assert _shape(tree) == [(0, "a"), (1, "a2"), (2, "a2x"), (1, "a1"), (0, "b"), (1, "b1")]
    assert tree is not None and tree["follow_ups"] == 4 and tree["metric"] is None


def test_orphans_and_cycles_are_roots_and_every_row_is_shown_once() -> None:
    rows = [_row("x", 0, "gone"), _row("p", 1, "q"), _row("q", 2, "p"), _row("s", 3, "s"), _row("x", 4, "p")]
    assert _shape(search_tree(rows)) == [(0, "x"), (0, "s"), (0, "p"), (1, "q")]


def test_best_node_follows_the_metric_direction_and_skips_red() -> None:
    rows = [_row("a", 0, **{METRIC: 5.0}), _row("b", 1, "a", **{METRIC: 3.0}), _row("c", 2, "a", **{METRIC: 9.0}),
            _row("d", 3, "a", "red", **{METRIC: 1.0}), _row("e", 4, "b", **{METRIC: 3.0})]  # fmt: skip
    low = search_tree(rows, ReportSpec(metrics=(METRIC,), minimize=(METRIC,)))
    high = search_tree(rows, ReportSpec(maximize=(METRIC,)))
    undirected = search_tree(rows, ReportSpec(metrics=(METRIC,)))
    assert low is not None and high is not None and undirected is not None
    assert (low["best"], low["sense"], high["best"], high["metric"]) == (1, -1, 2, METRIC)
    assert undirected["best"] is None


def test_tree_html_nests_as_the_tree_says_and_escapes_names() -> None:
    rows = [_row("a", 0), _row(SCRIPT_PAYLOAD, 1, "a"), _row("a1", 2, "a"), _row("a1x", 3, "a1"), _row("b", 4)]
    html = tree_html(search_tree(rows) or {}, "b0")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert _nesting(html) == {"a": None, SCRIPT_PAYLOAD: "a", "a1": "a", "a1x": "a1", "b": None}
    assert 'href="#b0-r3"' in html  # linked to its row


def test_a_big_tree_is_cut_and_counted() -> None:
    rows = [_row("root", 0)] + [_row(f"n{i}", i, "root") for i in range(1, MAX_TREE_NODES + 20)]
    html = tree_html(search_tree(rows) or {}, "b0", paged=True)
    assert html.count("<li") == MAX_TREE_NODES
    assert "… and 20 more scenarios" in html
    _nesting(html.split("<p", 1)[0])  # still well nested


def test_report_section_of_a_search_has_its_tree_and_notes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_search(runs)
    (section,) = collect_report(runs)["sections"]
    tree = section["tree"]
    assert _shape(tree) == [(0, "g0.01"), (1, "g0.02"), (2, "g0.015"), (2, EVIL), (2, "g0.03"), (3, "g0.04"),
                            (0, "g0.05")]  # fmt: skip
    assert tree["metric"] == METRIC and tree["sense"] == -1
    by = {r["instance"]: r for r in section["rows"]}
    assert tree["best"] == by["g0.03"]["index"]
    assert by["g0.02"]["note"] == "green after 2 retries"
    assert by["g0.05"]["note"] == "red after 1 retry · kernel_died in execute · model: DeadKernelError: x"
    assert by["g0.015"]["note"].startswith("user_error · ")
    page = write_report(runs).read_text(encoding="utf-8")
    assert 'data-tree="b0"' in page and "window.__pwned=1</script>" not in page


def test_a_grid_without_lineage_has_no_tree(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_demo(runs)  # an older state file: no parent, attempts or kind keys
    (section,) = collect_report(runs)["sections"]
    assert section["tree"] is None
    assert all(r["attempt_note"] == "" for r in section["rows"])
    assert 'class="tree"' not in write_report(runs).read_text(encoding="utf-8")


def test_a_flow_record_shows_its_failure_and_retries() -> None:
    rec = {"role": "flow", "flow": "model", "instance": "model", "light": "red", "label": "red", "reason": "",
           "duration_text": "", "started": "", "warnings": [], "more_warnings": 0, "error_type": "X",
           "error_message": "", "traceback": "", "notes": [], "links": [], "attempts_note": "kernel_died in <b>"}
    assert '<div class="tries">kernel_died in &lt;b&gt;</div>' in record_row(rec)



def test_the_tree_is_kept_while_its_rows_are_and_rebuilt_when_one_changes(tmp_path: Path) -> None:
    mem = Memory(str(tmp_path))
    spec = ReportSpec(metrics=(METRIC,))
    rows = [{**_row("a", 0), "_token": 1}, {**_row("a1", 1, "a"), "_token": 2}]
    first = mem.section_tree("s", rows, spec)
    assert first is not None and mem.section_tree("s", list(rows), spec) is first  # unchanged: not built again
    assert mem.section_tree("s", rows, ReportSpec()) is not first  # other settings
    rows[1] = {**_row("a1", 1, "a", **{METRIC: 2.0}), "_token": 3}  # a row built again
    assert _shape(mem.section_tree("s", rows, spec)) == [(0, "a"), (1, "a1")]
    assert mem.section_tree("s", rows, spec) is not first
    assert mem.section_tree("grid", [{**_row("g", 0), "_token": 4}], spec) is None and "grid" not in mem.trees


def test_a_paged_section_links_nodes_to_their_folders_and_draws_its_tree(tmp_path: Path) -> None:
    build = {"role": "build", "folder": "demand_model/a1/"}
    rows = [_row("a", 0), {**_row("a1", 1, "a"), "records": [build]}]
    tree = search_tree(rows) or {}
    html = tree_html(tree, "b0", paged=True)
    assert 'href="demand_model/a1/"' in html and 'href="#b0-r1"' not in html
    assert '<span class="tname">a</span>' in html  # no folder: named, not linked
    section = {"id": "b0", "rows": [], "columns": [], "results": None, "tree": tree}
    assert paged_parts(section, "details")["tree"] == [html]
