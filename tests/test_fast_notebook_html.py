"""Readable notebook pages without a kernel: Markdown escaping of config summaries, the page's
CSP and anchored failing cell, which runs get a page, and the report's folder and output links."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from bs4 import BeautifulSoup
from markupsafe import escape
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from report_fixtures import IMG_PAYLOAD, SCRIPT_PAYLOAD

from ductaflow import conduct
from ductaflow.core.flowfile import ERROR_MARKER_TAG
from ductaflow.core.lights import Status
from ductaflow.core.mdescape import md_cell, md_text
from ductaflow.errors import DuctaflowError
from ductaflow.report import html as report_html
from ductaflow.report import rows
from ductaflow.report.instances import listing
from ductaflow.report.links import Folder
from ductaflow.run.notebook_html import (
    CSP,
    FAILED_CELL_ANCHOR,
    export_page,
    failing_cell,
    notebooks_in,
    render,
    render_instance,
    wants_page,
)
from ductaflow.store.result import FlowResult

HOSTILE = [
    f"`{IMG_PAYLOAD}`",
    f"``{SCRIPT_PAYLOAD}``",
    IMG_PAYLOAD,
    "a\\|<b>bold</b>|<i>x</i>",
    "&lt;img&gt; &amp;",
    "ends with a backslash\\",
    "line\nbreak <u>u</u>",
]


def _text(fragment: str) -> str:
    """The text a browser would show for an HTML fragment (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.mark.parametrize("value", HOSTILE)
def test_a_config_value_in_the_markdown_summary_shows_as_text_never_as_html(value: str) -> None:
    row = f"| {md_cell(value)} | {md_cell(repr(value))} |"
    md = f"**{md_text('Config for ' + value)}**\n\n| key | value |\n|---|---|\n{row}"
    out = markdown2html_mistune(md)
    assert not re.search(r"<(img|script|b|i|u)\b", out), out
    shown = _text(out)
    flat = value.replace("\n", " ")
    assert flat in shown and repr(value).replace("\n", " ") in shown, (md, out)
    assert out.count("<tr>") == 2 and out.count("<td>") == 2  # no pipe split the row


def test_plain_values_stay_code_spans() -> None:
    assert md_cell("m.beta") == "`m.beta`" and md_cell("2") == "`2`" and md_cell("'<x>'") == "`'<x>'`"
    assert md_text("Config for Unpacking") == "Config for Unpacking"


def _nb() -> Any:
    js = nbformat.v4.new_code_cell("show()")
    js.outputs = [
        nbformat.v4.new_output("display_data", data={"application/javascript": "window.__pwned=1"}),
        nbformat.v4.new_output("display_data", data={"text/html": SCRIPT_PAYLOAD}),
        nbformat.v4.new_output("display_data", data={"text/markdown": f"`` ` ``{IMG_PAYLOAD}"}),
    ]
    top = nbformat.v4.new_markdown_cell('<span>An Exception was encountered <a href="#papermill-error-cell">here</a>')
    banner = nbformat.v4.new_markdown_cell('<span id="papermill-error-cell" style="color:red">stopped here:</span>')
    top.metadata["tags"] = banner.metadata["tags"] = [ERROR_MARKER_TAG]
    failed = nbformat.v4.new_code_cell("raise RuntimeError(msg)")
    failed.outputs = [nbformat.v4.new_output("error", ename="RuntimeError", evalue=IMG_PAYLOAD, traceback=["boom"])]
    after = nbformat.v4.new_code_cell("never_run()")
    nb = nbformat.v4.new_notebook()
    nb.cells = [top, js, banner, failed, after]  # papermill's note at the top, its anchor before the cell
    return nb


def test_the_page_has_a_strict_csp_first_no_script_of_its_own_and_the_failing_cell_anchored() -> None:
    page = render(_nb(), "a<flow>")
    soup = BeautifulSoup(page, "html.parser")
    first = soup.head.find(True)
    assert first.name == "meta" and first["http-equiv"] == "Content-Security-Policy" and first["content"] == CSP
    assert "script-src" not in CSP and "default-src 'none'" in CSP
    assert soup.head.find("script") is None  # no require.js, MathJax, Mermaid, widgets
    assert soup.title.get_text() == "a<flow>"
    anchored = soup.find_all(id=FAILED_CELL_ANCHOR)
    assert len(anchored) == 1  # the banner gave its id up
    assert "RuntimeError" in anchored[0].get_text() and "raise RuntimeError(msg)" in anchored[0].get_text()
    assert "never_run" not in anchored[0].get_text()
    assert "stopped here:" in page


def test_the_failing_cell_is_found_by_banner_else_by_error_output() -> None:
    nb = _nb()
    assert failing_cell(nb) == 3
    del nb.cells[2]  # no anchor banner: the first cell with an error output
    assert failing_cell(nb) == 2
    nb.cells[2].outputs = []
    assert failing_cell(nb) is None
    assert f'id="{FAILED_CELL_ANCHOR}"' not in render(nb)


def test_which_runs_get_a_page() -> None:
    assert [wants_page("failed", s) for s in Status] == [s in (Status.RED, Status.ORANGE) for s in Status]
    assert all(wants_page("all", s) for s in Status) and not any(wants_page("none", s) for s in Status)
    with pytest.raises(DuctaflowError, match="failed, all, none"):
        wants_page("red", Status.RED)
    with pytest.raises(DuctaflowError, match="failed, all, none"):
        conduct("no-such-table.csv", "no-such-build.py", html="sometimes")  # refused before anything is read


def test_export_writes_atomically_and_a_bad_notebook_is_logged_not_raised(tmp_path: Path) -> None:
    good, bad = tmp_path / "f.ipynb", tmp_path / "g.ipynb"
    nbformat.write(_nb(), str(good))
    bad.write_text("not a notebook")
    assert export_page(good, tmp_path / "f.html") and (tmp_path / "f.html").read_text().startswith("<!DOCTYPE html>")
    assert not export_page(bad, tmp_path / "g.html") and not (tmp_path / "g.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.html", "f.ipynb", "g.ipynb"]  # no temp file left


def test_notebooks_in_a_build_instance(tmp_path: Path) -> None:
    inst = tmp_path / "pipe" / "a"
    for folder, flow in ((inst, "pipe"), (inst / "runs" / "w1", "work"), (inst / "runs" / "w2", "work")):
        folder.mkdir(parents=True, exist_ok=True)
        rec = FlowResult(flow, Path(f"/p/{flow}.py"), folder, Status.GREEN, "finished")
        (folder / f"{flow}_status.json").write_text(json.dumps(rec.to_record()))
    (inst / "runs" / "w2" / "other_status.json").write_text("{broken")
    assert notebooks_in(inst) == [(inst, "pipe"), (inst / "runs" / "w1", "work"), (inst / "runs" / "w2", "work")]
    assert notebooks_in(inst, "w2") == [(inst / "runs" / "w2", "work")]
    assert notebooks_in(inst, "nothing") == []


def test_an_instance_of_greens_gets_no_page_and_never_loads_nbconvert(tmp_path: Path) -> None:
    # a conductor worker calls this after every build: a sweep of greens must not pay for
    # nbconvert's import (~0.2 s in each worker's first build, measured); a red gets its page
    inst = tmp_path / "pipe" / "a"
    for folder, flow in ((inst, "pipe"), (inst / "runs" / "w1", "work")):
        folder.mkdir(parents=True, exist_ok=True)
        rec = FlowResult(flow, Path(f"/p/{flow}.py"), folder, Status.GREEN, "finished")
        (folder / f"{flow}_status.json").write_text(json.dumps(rec.to_record()))
        nbformat.write(_nb(), str(folder / f"{flow}.ipynb"))
    code = (
        "import sys; from pathlib import Path; from ductaflow.run.notebook_html import render_instance\n"
        f"print(render_instance(Path({str(inst)!r}), 'pipe', 'failed'), 'nbconvert' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["[]", "False"]
    red = FlowResult("work", Path("/p/work.py"), inst / "runs" / "w1", Status.RED, "finished")
    (inst / "runs" / "w1" / "work_status.json").write_text(json.dumps(red.to_record()))
    assert render_instance(inst, "pipe", "failed") == [inst / "runs" / "w1" / "work.html"]


# ---------------------------------------------------------------- the report's folder and output links
def _folder(runs: Path, inst: Path) -> Folder:
    return Folder(runs, str(inst), listing(str(inst)) or {})


def test_a_record_links_its_folder_and_lists_its_outputs_with_sizes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    inst = runs / "work" / "i 1"
    (inst / "plots").mkdir(parents=True)
    for name in ("work.ipynb", "work.html", "work_status.json", "work_config.json", "work_execution_output.txt",
                 "work_metrics.parquet", "work_table_t.parquet", ".work.lock", "other_status.json", "other.ipynb"):
        (inst / name).write_text("x")  # ductaflow's own files (of both flows there) and hidden ones: not listed
    (inst / "out.csv").write_bytes(b"1" * 1500)
    (inst / IMG_PAYLOAD).write_text("hostile name")
    rec = FlowResult("work", Path("/p/work.py"), inst, Status.GREEN, "finished")
    ctx = rows.record_context(rec, _folder(runs, inst))
    assert ctx["folder"] == "work/i%201/"
    assert [(o["name"], o["size"]) for o in ctx["outputs"]] == [(IMG_PAYLOAD, "12 B"), ("out.csv", "1.5 kB"),
                                                               ("plots/", "")]  # fmt: skip
    assert ctx["outputs"][1]["href"] == "work/i%201/out.csv" and ctx["outputs"][2]["href"] == "work/i%201/plots/"
    assert {ln["label"]: ln["href"] for ln in ctx["links"]}["notebook"] == "work/i%201/work.html"  # the page
    cell = report_html.record_row(ctx)
    assert IMG_PAYLOAD not in cell and str(escape(IMG_PAYLOAD)) in cell
    assert '<a href="work/i%201/" title="the instance folder">folder</a>' in cell
    assert "<summary>3 output files</summary>" in cell


def test_the_output_list_is_capped(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    inst = runs / "work" / "i"
    inst.mkdir(parents=True)
    for i in range(rows.MAX_OUTPUTS + 7):
        (inst / f"f{i:03d}.txt").write_text("x")
    rec = FlowResult("work", Path("/p/work.py"), inst, Status.GREEN, "finished")
    ctx = rows.record_context(rec, _folder(runs, inst))
    assert len(ctx["outputs"]) == rows.MAX_OUTPUTS and ctx["more_outputs"] == 7
    assert "… and 7 more" in report_html.record_row(ctx) and f"{rows.MAX_OUTPUTS + 7} output files" in (
        report_html.record_row(ctx)
    )


@pytest.mark.parametrize(("size", "text"), [(None, ""), (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"),
                                            (2_500_000, "2.5 MB"), (3 * 10**9, "3.0 GB")])  # fmt: skip
def test_fmt_size(size: int | None, text: str) -> None:
    assert rows.fmt_size(size) == text
