"""The reliability suite's plugin: each test registers the case(s) it checks; RELIABILITY.md can
be generated from the real test outcomes at the end of a session that ran the whole directory.

A test asks for the ``case`` fixture, calls ``case(name, action)`` and sets ``.outcome`` to
what actually happened. Pass/fail comes from pytest's own reports (``pytest_runtest_makereport``),
never from the test's text.

RELIABILITY.md is a tracked file, and no test run writes a tracked file by itself: the table is
written only when asked for, with ``python -m pytest tests/reliability --write-reliability`` (or
``DUCTAFLOW_WRITE_RELIABILITY=1``; the option is defined in ``tests/conftest.py``), and then only
when every test file of this directory was collected, nothing was deselected (``-k``, ``-m``,
``--deselect``, a ``file::test`` id) and every collected test ran to its end: a partial run
leaves the previous table alone.
"""

from __future__ import annotations

import html
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUTPUT = REPO / "RELIABILITY.md"
WRITE_ENV = "DUCTAFLOW_WRITE_RELIABILITY"
sys.path.insert(0, str(HERE.parent))  # flowkit, report_fixtures, procs

#: Sections in the order the table shows them; a module names its own with ``SECTION = ...``.
SECTION_ORDER = (
    "Bad input: configs",
    "Bad input: names",
    "Bad input: scenario tables",
    "Bad input: flows",
    "Paths with spaces and accents",
    "Security: HTML report",
    "Security: links and deletion",
    "Kernel faults",
    "Conductor faults",
)


@dataclass
class Case:
    """One row of RELIABILITY.md."""

    section: str
    name: str
    action: str
    nodeid: str
    outcome: str = ""


HEADER = "| case | what was done | what happened | result | s |"
_CASES = pytest.StashKey[list[Case]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


class _Session:
    """What this process saw of the reliability directory."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []
        self.deselected = 0


_STATE = _Session()


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Any:
    """``case(name, action[, section]) -> Case``: register a row; the test sets ``.outcome``."""
    made = request.node.stash.setdefault(_CASES, [])
    section = getattr(request.module, "SECTION", request.module.__name__)

    def register(name: str, action: str, section_: str | None = None) -> Case:
        made.append(Case(section_ or section, name, action, request.node.nodeid))
        return made[-1]

    yield register
    call = request.node.stash.get(_REPORTS, {}).get("call")
    if call is not None and call.passed:
        if not made:
            pytest.fail("a reliability test must register its case with case(name, action)")
        missing = [c.name for c in made if not c.outcome.strip()]
        if missing:
            pytest.fail(f"case(s) {missing} passed without saying what happened (.outcome)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember this directory's items (after -k/-m deselection: trylast); each must use ``case``."""
    _STATE.items = [i for i in items if _ours(i)]
    lacking = [i.nodeid for i in _STATE.items if "case" not in getattr(i, "fixturenames", ())]
    if lacking:
        raise pytest.UsageError(f"reliability tests without the 'case' fixture: {lacking}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    _STATE.deselected += sum(1 for i in items if _ours(i))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep every phase's report on the item: the table's pass/fail is pytest's own verdict."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _verdict(item: pytest.Item) -> tuple[str, str, float]:
    """('pass'|'FAIL'|'skip', failure text, seconds) from the item's phase reports."""
    reports = item.stash.get(_REPORTS, {})
    seconds = sum(r.duration for r in reports.values())
    failed = [r for r in reports.values() if r.failed]
    if failed:
        crash = getattr(failed[0].longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(failed[0].longrepr)
        return "FAIL", f"{failed[0].when} failed: {text.splitlines()[0] if text else ''}", seconds
    if any(r.skipped for r in reports.values()):
        skipped = next(r for r in reports.values() if r.skipped)
        reason = skipped.longrepr[2] if isinstance(skipped.longrepr, tuple) else str(skipped.longrepr)
        return "skip", reason, seconds
    return "pass", "", seconds


def _complete(session: pytest.Session) -> str | None:
    """None when the whole directory ran; else why the table is not written."""
    config = session.config
    if config.option.collectonly:
        return "collect-only"
    if _STATE.deselected or config.option.keyword or config.option.markexpr:
        return "tests were deselected (-k/-m/--deselect)"
    for arg in config.args:
        target = Path(config.invocation_params.dir, str(arg).split("::")[0]).resolve()
        if "::" in str(arg) and (target == HERE or HERE in target.parents):
            return "single tests were selected"
    on_disk = {p.resolve() for p in HERE.glob("test_*.py")}
    collected = {Path(str(i.path)).resolve() for i in _STATE.items}
    if not on_disk or collected != on_disk:
        return "not every test file of tests/reliability was collected"
    for item in _STATE.items:
        reports = item.stash.get(_REPORTS, {})
        if "teardown" not in reports or not ("call" in reports or reports["setup"].skipped):
            return f"{item.nodeid} did not run to its end"
    return None


def _cell(text: str) -> str:
    """Markdown table cell: HTML-escaped (payloads stay text), one line, pipes escaped."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _render(rows: list[tuple[Case, str, str, float]], total_s: float) -> str:
    order = {name: i for i, name in enumerate(SECTION_ORDER)}
    rows = sorted(rows, key=lambda r: order.get(r[0].section, len(order)))
    counts = {v: sum(1 for r in rows if r[1] == v) for v in ("pass", "FAIL", "skip")}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability and security cases",
        "",
        "Generated by `tests/reliability/conftest.py` at the end of a full run of",
        "`python -m pytest tests/reliability --write-reliability`; do not edit it by hand. Each row is one case: what",
        "the test did, what it observed, and pytest's verdict on that test. Time is the test's",
        "own setup + call + teardown; a kernel run shared by several cases is counted once, in",
        "the first test that needed it.",
        "",
        f"Run: {now}, Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s). {len(rows)} cases: {counts['pass']} pass, {counts['FAIL']} fail, "
        f"{counts['skip']} skipped; {total_s:.1f} s of test time (load average {_load()} at the end: "
        "times are as measured on that machine, not a benchmark).",
    ]
    section = None
    for c, verdict, extra, seconds in rows:
        if c.section != section:
            section = c.section
            lines += ["", f"## {section}", "", HEADER, "|---|---|---|---|---|"]
        happened = c.outcome or "(no outcome recorded)"
        if extra:
            happened = f"{happened} [{extra}]"
        lines.append(f"| {_cell(c.name)} | {_cell(c.action)} | {_cell(happened)} | {verdict} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


def _asked_to_write(config: pytest.Config) -> bool:
    """``--write-reliability`` (tests/conftest.py) or DUCTAFLOW_WRITE_RELIABILITY=1."""
    return bool(config.getoption("write_reliability", False)) or os.environ.get(WRITE_ENV) == "1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write RELIABILITY.md from this run, only when asked to and when it covered the whole directory."""
    if not _STATE.items:
        return
    if not _asked_to_write(session.config):
        return
    why_not = _complete(session)
    if why_not is not None:
        if session.config.option.verbose >= 0:
            sys.stderr.write(f"\nRELIABILITY.md not written: {why_not}\n")
        return
    rows = []
    total = 0.0
    for item in _STATE.items:
        verdict, extra, seconds = _verdict(item)
        total += seconds
        section = getattr(getattr(item, "module", None), "SECTION", "(unregistered)")
        cases = item.stash.get(_CASES, []) or [Case(section, item.name, "(did not start)", item.nodeid)]
        rows += [(c, verdict, extra, seconds) for c in cases]
    tmp = OUTPUT.with_name(f".{OUTPUT.name}.tmp")
    tmp.write_text(_render(rows, total), encoding="utf-8")
    os.replace(tmp, OUTPUT)


@pytest.fixture(scope="session")
def unicode_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real conductor run in a project whose paths hold spaces, an apostrophe and accents."""
    from relkit import run_unicode_project

    return run_unicode_project(tmp_path_factory.mktemp("paths"))


@pytest.fixture(scope="module")
def browser() -> Any:
    """Debian's headless Chromium through Playwright (skips when either is missing)."""
    from browserkit import chromium

    yield from chromium()
