"""Readable notebook pages from a real sweep: rendered for red flows by default, on request for the
rest, opened from the report in headless Chromium at the failing cell, with no script from user data.

One conduct run (two scenarios: green, and red with the report's XSS payloads in its config values,
printed output, an output file's name and its exception message) is checked in several ways; a second,
one-scenario run checks ``ductaflow conduct --html all``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flowkit import ductaflow_cmd
from report_fixtures import IMG_PAYLOAD, SCRIPT_PAYLOAD

from ductaflow import conduct
from ductaflow.run.notebook_html import CSP, FAILED_CELL_ANCHOR

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

FLOW = """\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, unpack_config
config = flow_config(config, "config/flows/work.json")
unpack_config(config, "work")

# %%
from pathlib import Path
print("working on", config["label"])
Path(config["outname"]).write_text("x" * 1500)
if config["fail"]:
    print("shouting", config["shout"])
    raise RuntimeError(config["shout"])
"""

BUILD = """\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")

# %%
step("flows/work.py", "work", {k: config[k] for k in ("label", "fail", "shout", "outname")})
"""
SHOUT = f"{SCRIPT_PAYLOAD} {IMG_PAYLOAD}"
EVIL_LABEL = f"`{IMG_PAYLOAD}`"  # ends the backtick span the config summary used to put it in


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pages") / "proj"
    for sub in ("flows", "builds", "config/flows", "config/builds"):
        (root / sub).mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    defaults = {"label": "x", "fail": False, "shout": "quiet", "outname": "result.txt"}
    (root / "config" / "flows" / "work.json").write_text(json.dumps(defaults))
    (root / "config" / "builds" / "pipe.json").write_text(json.dumps(defaults))
    return root


@pytest.fixture(scope="module")
def swept(project: Path) -> pd.DataFrame:
    """The one default sweep (html="failed") all but the last test read."""
    table = pd.DataFrame({
        "scenario_name": ["calm", "evil"], "label": ["a", EVIL_LABEL], "fail": [False, True],
        "shout": ["quiet", SHOUT], "outname": ["result.txt", IMG_PAYLOAD],
    })  # fmt: skip
    out = conduct(table, project / "builds" / "pipe.py", max_parallel=2, progress=False, raise_on_failure=False)
    assert list(out["status"]) == ["green", "red"]
    return out


def _inst(project: Path, name: str) -> Path:
    return project / "runs" / "pipe" / name


def _has_strict_csp(page: Path) -> bool:
    head = page.read_text(encoding="utf-8").split("</head>")[0]
    return f'content="{CSP}"' in head and "<script" not in head.lower()


def test_red_flows_get_a_page_by_default_and_green_ones_do_not(project: Path, swept: pd.DataFrame) -> None:
    evil, calm = _inst(project, "evil"), _inst(project, "calm")
    assert _has_strict_csp(evil / "runs" / "work" / "work.html") and _has_strict_csp(evil / "pipe.html")
    assert not (calm / "runs" / "work" / "work.html").exists() and not (calm / "pipe.html").exists()
    record = json.loads((evil / "runs" / "work" / "work_status.json").read_text())
    assert record["status"] == "red" and record["html_exported"] is False  # the run's record is its own
    nb = json.loads((evil / "runs" / "work" / "work.ipynb").read_text())
    summary = next("".join(o["data"]["text/markdown"]) for c in nb["cells"] for o in c.get("outputs", [])
                   if "text/markdown" in o.get("data", {}))  # fmt: skip
    assert "**Config for work** (4 keys)" in summary and "| `fail` | `True` |" in summary
    assert EVIL_LABEL not in summary and "\\`\\<img" in summary  # its backticks cannot end a code span


def test_the_red_notebook_link_lands_on_the_failing_cell_and_nothing_runs(
    project: Path, swept: pd.DataFrame, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto((project / "runs" / "conductor_status_report.html").as_uri())
        row = page.locator('details.scn[data-instance="evil"]')
        row.locator(":scope > summary").click()
        record = row.locator('tr[data-record="work"]')
        assert record.get_by_role("link", name="folder").get_attribute("href") == "pipe/evil/runs/work/"
        record.locator("details.outs > summary").click()
        assert IMG_PAYLOAD in record.locator("details.outs").inner_text() and "1.5 kB" in record.inner_text()
        record.get_by_role("link", name="notebook").click()
        page.wait_for_url(f"**/work.html#{FAILED_CELL_ANCHOR}", timeout=15_000)
        assert page.evaluate("location.hash") == f"#{FAILED_CELL_ANCHOR}"
        assert page.evaluate("document.querySelector(':target').id") == FAILED_CELL_ANCHOR
        cell = page.locator(f"#{FAILED_CELL_ANCHOR}")
        text = cell.inner_text()
        assert "RuntimeError" in text and SHOUT in text and 'raise RuntimeError(config["shout"])' in text
        in_view = "e => { const r = e.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }"
        assert cell.evaluate(in_view)
        body = page.locator("body").inner_text()
        assert EVIL_LABEL in body and f"shouting {SHOUT}" in body  # the config summary and the printed line, as text
        page.wait_for_timeout(300)  # give an injected onerror every chance to fire
        assert page.evaluate("window.__pwned") is None and dialogs == []
        assert page.locator("img[onerror], script:not([type='text/x-mathjax-config'])").count() <= 1
    finally:
        context.close()


def test_ductaflow_html_renders_a_green_instance_on_request(project: Path, swept: pd.DataFrame) -> None:
    calm = _inst(project, "calm")
    done = ductaflow_cmd("html", str(calm), "--flow", "work", cwd=project)
    assert done.returncode == 0, done.stderr
    page = calm / "runs" / "work" / "work.html"
    assert done.stdout.split() == [str(page)] and _has_strict_csp(page)
    text = page.read_text(encoding="utf-8")
    assert f'id="{FAILED_CELL_ANCHOR}"' not in text and "working on a" in text
    assert not (calm / "pipe.html").exists()  # --flow: only that one
    assert ductaflow_cmd("html", str(calm), cwd=project).returncode == 0 and _has_strict_csp(calm / "pipe.html")
    missing = ductaflow_cmd("html", str(calm), "--flow", "nope", cwd=project)
    assert missing.returncode != 0 and "no recorded run of flow 'nope'" in missing.stderr


def test_conduct_html_all_renders_every_notebook(project: Path, swept: pd.DataFrame) -> None:
    (project / "one.csv").write_text("scenario_name,label\nsolo,s\n")
    done = ductaflow_cmd("conduct", "one.csv", "--build", "builds/pipe.py", "--runs-root", "runs_all",
                         "--html", "all", "--parallel", "1", cwd=project, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    solo = project / "runs_all" / "pipe" / "solo"
    assert _has_strict_csp(solo / "pipe.html") and _has_strict_csp(solo / "runs" / "work" / "work.html")
    report = (project / "runs_all" / "conductor_status_report.html").read_text(encoding="utf-8")
    assert 'href="pipe/solo/runs/work/work.html">notebook</a>' in report  # green: the page, at its top
