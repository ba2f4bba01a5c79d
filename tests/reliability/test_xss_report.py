"""34 XSS payloads in every place the report shows user text (scenario values and column names,
build and flow names, error messages, tracebacks, warning lines, notes, metrics recorded with
``ductaflow.record``, notices), rendered by ``write_report`` and ``generate_status_report`` and
loaded in a real Chromium: nothing runs, everything reads as the text it is, and the CSP only
lets the report's own script run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from relkit import REAL_PAYLOAD

from ductaflow.core.context import CONTEXT_ENV, RunContext
from ductaflow.core.lights import Status
from ductaflow.core.names import validate_name
from ductaflow.report.page import STATE_DIR, collect_report, generate_status_report, render_report, write_report
from ductaflow.store.metrics import collect_metrics, record
from ductaflow.store.result import ErrorInfo, FlowResult

SECTION = "Security: HTML report"

_CORPUS = [
    "<script>window.__pwned_{id}=1</script>",
    "<img src=x onerror=window.__pwned_{id}=1>",
    "<img src=x onerror=\"alert('{id}')\">",
    "<svg onload=window.__pwned_{id}=1>",
    "<svg><script>window.__pwned_{id}=1</script></svg>",
    '"><script>window.__pwned_{id}=1</script>',
    "'><img src=x onerror=window.__pwned_{id}=1>",
    '" onmouseover="window.__pwned_{id}=1" x="',
    "' onfocus='window.__pwned_{id}=1' autofocus='",
    "javascript:window.__pwned_{id}=1",
    '<a href="javascript:window.__pwned_{id}=1">click</a>',
    '<iframe src="javascript:top.__pwned_{id}=1"></iframe>',
    '<iframe srcdoc="<script>parent.__pwned_{id}=1</script>"></iframe>',
    "<body onload=window.__pwned_{id}=1>",
    "<details open ontoggle=window.__pwned_{id}=1>",
    "<input autofocus onfocus=window.__pwned_{id}=1>",
    '<div style="background:url(javascript:window.__pwned_{id}=1)">x</div>',
    '<div style="width:expression(window.__pwned_{id}=1)">x</div>',
    "<style>@import 'javascript:window.__pwned_{id}=1';</style>",
    "</textarea></title></style></script><script>window.__pwned_{id}=1</script>",
    "]]><script>window.__pwned_{id}=1</script>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned_{id}=1>",
    '<object data="javascript:window.__pwned_{id}=1"></object>',
    '<embed src="javascript:window.__pwned_{id}=1">',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned_{id}=1">',
    '<base href="javascript:window.__pwned_{id}=1//">',
    "{{constructor.constructor('window.__pwned_{id}=1')()}}",
    "{{7*7}} ${window.__pwned_{id}=1} <%= 7*7 %> #{7*7}",
    "&lt;script&gt;window.__pwned_{id}=1&lt;/script&gt;",
    "%3Cscript%3Ewindow.__pwned_{id}=1%3C%2Fscript%3E",
    "\u2028\u2029<script>window.__pwned_{id}=1</script>",
    "<video><source onerror=window.__pwned_{id}=1></video>",
    '<form action="javascript:window.__pwned_{id}=1"><button>go</button></form>',
    "<marquee onstart=window.__pwned_{id}=1>x</marquee>",
]
PAYLOADS = {f"p{i:02d}": p.replace("{id}", f"p{i:02d}") for i, p in enumerate(_CORPUS)}
COLUMN = '"><svg onload=window.__pwned_column=1>'
METRIC = "<img src=x onerror=window.__pwned_metric=1>"
BUILD2 = "<svg onload=window.__pwned_build=1>"
NOTICE = "<img src=x onerror=window.__pwned_notice=1>"
FORBIDDEN = (
    "iframe, object, embed, img, video, audio, source, input, button, math, marquee, base, form, textarea, "
    "body style, body meta, body link"
)


def _flow_name(pid: str, payload: str) -> str:
    """A payload as a flow (file) name where a file name can hold it."""
    return payload if "/" not in payload and "\x00" not in payload else f"flow-{pid}"


def _write(exec_dir: Path, result: FlowResult) -> None:
    exec_dir.mkdir(parents=True, exist_ok=True)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    (exec_dir / f"{result.flow}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (exec_dir / f"{result.flow}_execution_output.txt").write_text("\n".join(result.warnings), encoding="utf-8")
    (exec_dir / f"{result.flow}_config.json").write_text("{}", encoding="utf-8")
    (exec_dir / f"{result.flow}_status.json").write_text(json.dumps(result.to_record()), encoding="utf-8")


def _record_metrics(exec_dir: Path, flow: str, **metrics: Any) -> None:
    """The real ``ductaflow.record``, as a flow calls it (cwd = instance dir, its run context set)."""
    here, env = os.getcwd(), os.environ.get(CONTEXT_ENV)
    os.chdir(exec_dir)
    os.environ[CONTEXT_ENV] = RunContext(flow=flow).to_json()
    try:
        record(**metrics)
    finally:
        os.chdir(here)
        if env is None:
            os.environ.pop(CONTEXT_ENV, None)
        else:
            os.environ[CONTEXT_ENV] = env


def build_hostile_runs(runs: Path) -> None:
    """A runs root shaped like the conductor's, with a payload in every user-text field."""
    t0 = "2026-01-05T22:00:00+00:00"
    scenarios = []
    for i, (pid, payload) in enumerate(PAYLOADS.items()):
        inst = runs / "demand_model" / f"s{pid}"
        flow = _flow_name(pid, payload)
        common = {"state": "finished", "started": t0, "finished": t0, "duration": 1.0 + i}
        _write(inst, FlowResult("demand_model", Path("/p/builds/demand_model.py"), inst, Status.RED,
                                error=ErrorInfo("FlowFailed", payload), instance=f"s{pid}", **common))
        warn = inst / "runs" / "warn"
        _write(warn, FlowResult(flow, Path(f"/p/flows/{pid}.py"), warn, Status.ORANGE, instance="warn",
                                warnings=(f"Warning: {payload}", f"⚠️ {payload}"), notes=(payload,), **common))
        _record_metrics(warn, flow, label=payload, trips=10.0 * (i + 1), **{METRIC: i})
        fail = inst / "runs" / "fail"
        err = ErrorInfo("RuntimeError", payload, f"Traceback (most recent call last):\nRuntimeError: {payload}", 2)
        _write(fail, FlowResult("fail", Path("/p/flows/fail.py"), fail, Status.RED, error=err, instance="fail",
                                **common))
        (inst / "runs" / ".steps.json").write_text('["warn", "fail"]')
        scenarios.append({
            "instance": f"s{pid}", "dir": f"demand_model/s{pid}", "state": "done", "status": "red",
            "values": {"label": payload, "growth": 0.01 * i, COLUMN: payload},
            "duration": 1.0 + i, "error": f"fail: RuntimeError: {payload}", "worst_flow": flow,
            "metrics": collect_metrics(inst),
        })  # fmt: skip
    state = {"schema": 1, "build": "demand_model", "build_path": "/p/builds/demand_model.py", "state": "finished",
             "started": t0, "finished": t0, "columns": ["label", "growth", COLUMN], "scenarios": scenarios}
    (runs / STATE_DIR).mkdir(parents=True)
    (runs / STATE_DIR / "demand_model.json").write_text(json.dumps(state), encoding="utf-8")
    inst2 = runs / BUILD2 / "only"
    _write(inst2, FlowResult(BUILD2, Path("/p/builds/b.py"), inst2, Status.GREEN, "finished", t0, t0, 2.0))
    doc2 = {**state, "build": BUILD2, "columns": [], "scenarios": [
        {"instance": "only", "dir": f"{BUILD2}/only", "state": "done", "status": "green", "values": {}}]}
    (runs / STATE_DIR / "second.json").write_text(json.dumps(doc2), encoding="utf-8")
    (runs / STATE_DIR / f"{NOTICE}.json").write_text("{torn", encoding="utf-8")


_COLLECT = """() => {
  const URL_ATTRS = ['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'srcdoc', 'background', 'poster'];
  const text = (sel, root) => Array.from((root || document).querySelectorAll(sel), e => e.textContent);
  const rows = {};
  for (const d of document.querySelectorAll('details.scn')) {
    rows[d.dataset.instance] = {
      v0: d.getAttribute('data-v0'), v2: d.getAttribute('data-v2'), cells: text(':scope > summary .val', d),
      errbox: text('.errbox', d), warns: text('.warns li', d), emsg: text('.emsg', d),
      flows: text('.muted.small', d), tb: text('.tb pre', d), note: text('.note', d),
    };
  }
  const attrs = [];
  for (const e of document.querySelectorAll('*')) {
    for (const a of e.attributes) {
      if (a.name.startsWith('on')) attrs.push(e.tagName + '.' + a.name);
      if (URL_ATTRS.includes(a.name) && !(e.tagName === 'LINK' && a.value.startsWith('data:image/svg+xml'))
          && (/^\\s*[a-z][a-z0-9+.-]*:/i.test(a.value) || a.value.includes('..')))
        attrs.push(e.tagName + '.' + a.name + '=' + a.value);
    }
  }
  return {
    pwned: Object.keys(window).filter(k => k.startsWith('__pwned')),
    rows, attrs,
    forbidden: Array.from(document.querySelectorAll(arguments[0] || 'iframe'), e => e.tagName),
    svgOutsideCharts: Array.from(document.querySelectorAll('svg')).filter(s => !s.closest('figure.chart')).length,
    scripts: Array.from(document.scripts).filter(s => s.type !== 'application/json')
      .map(s => s.nonce ? 'nonce' : 'NO NONCE'),
    dataBlocks: Array.from(document.scripts).filter(s => s.type === 'application/json')
      .map(s => JSON.parse(s.textContent) && 'json'),
    headers: text('.hdr .c'), results: text('table.results td'), captions: text('figure.chart figcaption'),
    builds: text('section.build h2'), notices: text('.notice li'),
    ago: (document.getElementById('ago') || {}).textContent,
  };
}"""


def _load(browser: Any, url: str) -> dict[str, Any]:
    """Open ``url``, expand every row and traceback, wait, and collect what the page shows."""
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.goto(url)
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.mouse.move(300, 300)
    page.keyboard.press("Tab")
    page.wait_for_timeout(400)  # every injected handler's chance to fire
    data = page.evaluate(_COLLECT.replace("arguments[0] || 'iframe'", repr(FORBIDDEN)))
    data.update(dialogs=dialogs, console=console)
    context.close()
    return data


@pytest.fixture(scope="module")
def pages(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    runs = tmp_path_factory.mktemp("xss") / "runs"
    build_hostile_runs(runs)
    generated = runs / "generated_report.html"
    generated.write_text(generate_status_report(None, runs), encoding="utf-8")
    return {"write_report": _load(browser, write_report(runs).as_uri()), "generate": _load(browser, generated.as_uri())}


def test_nothing_ran_on_either_page(pages: dict[str, dict[str, Any]], case) -> None:
    c = case(
        f"XSS: {len(PAYLOADS)} payloads in 11 kinds of place, whole page",
        "write_report and generate_status_report over a runs root whose values, column and build names, flow names, "
        "errors, tracebacks, warnings, notes, record() metrics and a state file name carry the payloads; load both "
        "in Chromium, open every row, move the mouse, press Tab",
    )
    for name, page in pages.items():
        assert page["pwned"] == [], (name, page["pwned"])
        assert page["dialogs"] == [], (name, page["dialogs"])
        assert page["attrs"] == [], (name, page["attrs"])
        assert page["forbidden"] == [], (name, page["forbidden"])
        assert page["svgOutsideCharts"] == 0, name
        assert page["scripts"] == ["nonce"], (name, page["scripts"])  # data blocks (JSON, never run) aside
        assert set(page["dataBlocks"]) <= {"json"}, (name, page["dataBlocks"])
        blocked = [m for m in page["console"] if "Content Security Policy" in m or "Error" in m]
        assert blocked == [], f"{name}: something tried to run: {blocked}"
        assert page["ago"] and page["ago"].endswith("ago)"), "the report's own script did not run"
        assert len(page["rows"]) == len(PAYLOADS) + 1
        assert BUILD2 in page["builds"] and COLUMN in page["headers"] and METRIC in page["captions"]
        assert any(NOTICE in n for n in page["notices"])
    c.outcome = (
        "on both pages: no window.__pwned*, no dialog, no CSP violation or script error logged, no on* attribute, "
        "no javascript:/data: URL, no injected element, one script (the nonce'd own one, which ran); build name, "
        "column name, metric name and torn-state-file name shown as text"
    )


@pytest.mark.parametrize("pid", list(PAYLOADS))
def test_payload_shown_as_text(pages: dict[str, dict[str, Any]], case, pid: str) -> None:
    payload = PAYLOADS[pid]
    shown = payload.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    c = case(f"XSS: {shown}", "in value, data-attribute, error box, flow error, traceback, warnings, note, "
             "flow name and metric of one scenario row")  # fmt: skip
    for name, page in pages.items():
        assert f"__pwned_{pid}" not in page["pwned"] and pid not in page["dialogs"]
        row = page["rows"][f"s{pid}"]
        assert row["v0"] == payload and row["v2"] == payload, name
        assert row["cells"][0] == payload, name
        assert row["errbox"] == [f"fail: RuntimeError: {payload}"], name
        assert f"RuntimeError: {payload}" in row["emsg"] and f"FlowFailed: {payload}" in row["emsg"], name
        assert row["warns"] == [f"Warning: {payload}", f"⚠️ {payload}"], name
        assert payload in row["tb"][0], name
        assert _flow_name(pid, payload) in row["flows"] and payload in row["flows"], name
        assert payload in page["results"], name
    c.outcome = "did not run; textContent equals the payload in all 9 places on both pages"


def test_csp_meta_and_fresh_nonce(tmp_path: Path, case) -> None:
    c = case(
        "CSP: meta tag, nonce per render",
        "render the report twice; read the Content-Security-Policy meta and the script's nonce",
    )
    context = collect_report(tmp_path)
    first, second = render_report(context), render_report(context)
    policies = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', first)
    assert len(policies) == 1
    csp = dict(part.strip().split(" ", 1) for part in policies[0].split(";"))
    nonce = re.search(r"<script nonce=\"([^\"]+)\">", first)
    assert nonce and csp["script-src"] == f"'nonce-{nonce.group(1)}'"
    assert csp["default-src"] == "'none'" and "unsafe" not in csp["script-src"]
    assert first.index("Content-Security-Policy") < first.index("<title>"), "the CSP must precede all user text"
    other = re.search(r"<script nonce=\"([^\"]+)\">", second)
    assert other and other.group(1) != nonce.group(1) and len(nonce.group(1)) >= 22
    c.outcome = f"script-src is only 'nonce-…' ({len(nonce.group(1))} chars, new each render); default-src 'none'"


def test_csp_blocks_a_script_that_got_through(browser: Any, tmp_path: Path, case) -> None:
    c = case(
        "CSP: an injected inline script and handler (escaping bypassed on purpose)",
        "insert <script>…</script> and <img onerror=…> into a rendered report by string editing; load it",
    )
    page_html = render_report(collect_report(tmp_path))
    injected = page_html.replace(
        "<main>", "<main><script>window.__pwned_control=1</script><img src=x onerror=window.__pwned_control2=1>", 1
    )
    path = tmp_path / "control.html"
    path.write_text(injected, encoding="utf-8")
    context = browser.new_context()
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(m.text))
    pg.goto(path.as_uri())
    pg.wait_for_timeout(300)
    pwned = pg.evaluate("() => Object.keys(window).filter(k => k.startsWith('__pwned'))")
    ago = pg.locator("#ago").inner_text()
    context.close()
    assert pwned == []
    violations = [m for m in console if "Content Security Policy" in m]
    assert len(violations) >= 2, console
    assert ago.endswith("ago)"), "the report's own script must still run"
    c.outcome = f"both blocked by the CSP ({len(violations)} violations logged); the own nonce'd script still ran"


def test_real_run_report_in_browser(browser: Any, unicode_run: Any, case) -> None:
    c = case(
        "XSS: payload through a real conductor run",
        "the paths run's scenario value is an <img onerror> payload; its flow prints it as a Warning: line and "
        "record()s it; load that report in Chromium and open the row",
    )
    assert unicode_run.ran.code == 0, unicode_run.ran.err
    page = _load(browser, (unicode_run.runs / "conductor_status_report.html").as_uri())
    assert page["pwned"] == [] and page["dialogs"] == [] and page["attrs"] == [] and page["forbidden"] == []
    row = page["rows"]["base"]
    assert row["cells"] == [REAL_PAYLOAD]
    assert row["warns"] == [f"Warning: label is {REAL_PAYLOAD}"]
    assert REAL_PAYLOAD in page["results"]
    c.outcome = "did not run; shown literally as the value, the warning line and the recorded metric"


def test_payloads_are_not_instance_names(case) -> None:
    c = case("XSS: payloads as instance names", f"validate_name() on each of the {len(PAYLOADS)} payloads")
    refused = 0
    for payload in [*PAYLOADS.values(), COLUMN, METRIC, BUILD2]:
        with pytest.raises(Exception, match="instance name"):
            validate_name(payload)
        refused += 1
    c.outcome = f"all {refused} refused (instance names are A-Z a-z 0-9 . _ = + - only), so none reaches a path"
