"""Sweeps accumulate: two conduct calls with their own sweep ids, one table, one report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from browserkit import CHROMIUM
from click.testing import CliRunner
from report_fixtures import _row, make_instance, write_state

from ductaflow import conduct
from ductaflow.cli import cli
from ductaflow.errors import ConfigError, InvalidName
from ductaflow.report.page import sweep_report_name, write_report
from ductaflow.store.layout import STATE_DIR
from ductaflow.store.ledger import read as read_ledger
from ductaflow.store.results import RESULTS_NAME

pytestmark = pytest.mark.kernel

STEP = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
from ductaflow import record
record(double=2 * config["x"])
"""

BUILD = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
from ductaflow import step
step("flows/twice.py", "twice", {"x": config["x"]})
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project conducted twice: 2 scenarios as sweep s1, then 1 new one and an unchanged one as s2."""
    root = tmp_path_factory.mktemp("sweeps") / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "builds").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "twice.py").write_text(STEP)
    build = root / "builds" / "pair.py"
    build.write_text(BUILD)
    first = conduct(pd.DataFrame({"scenario_name": ["a", "b"], "x": [1, 2]}), build, sweep="s1", progress=False)
    assert list(first["status"]) == ["green", "green"]
    second = conduct(pd.DataFrame({"scenario_name": ["a", "c"], "x": [1, 3]}), build, sweep="s2", progress=False,
                     report={"metrics": ["double"], "maximize": ["double"], "baseline": "a"})
    assert list(second["state"]) == ["skipped", "done"]
    return root / "runs"


def test_results_table_keeps_every_sweep(runs: Path) -> None:
    """``a`` was up to date in s2: its row keeps the sweep of the run that produced it."""
    table = pd.read_parquet(runs / "pair" / RESULTS_NAME)
    assert sorted(zip(table["instance"], table["sweep"], table["double"], strict=True)) == [
        ("a", "s1", 2), ("b", "s1", 4), ("c", "s2", 6)
    ]


def test_records_and_ledger_carry_the_sweep(runs: Path) -> None:
    for inst, sweep in (("a", "s1"), ("c", "s2")):
        build_rec = json.loads((runs / "pair" / inst / "pair_status.json").read_text())
        step_rec = json.loads((runs / "pair" / inst / "runs" / "twice" / "twice_status.json").read_text())
        assert build_rec["sweep"] == step_rec["sweep"] == sweep
    ledger = read_ledger(runs)
    ran = ledger[ledger["event"] != "skip"]
    assert sorted(set(zip(ran["instance"], ran["sweep"], strict=True))) == [
        ("a", "s1"), ("b", "s1"), ("c", "s2"), ("twice", "s1"), ("twice", "s2")
    ]
    skipped = ledger[ledger["event"] == "skip"]  # the skip is an event of the sweep that skipped it
    assert list(zip(skipped["instance"], skipped["sweep"], strict=True)) == [("a", "s2")]


def test_report_lists_every_sweep_with_its_column(runs: Path) -> None:
    page = (runs / "conductor_status_report.html").read_text()
    for inst, sweep in (("a", "s1"), ("b", "s1"), ("c", "s2")):
        assert f'data-instance="{inst}" data-sweep="{sweep}"' in page
    assert '<select class="sweep-filter"' in page and '<option value="s1">s1</option>' in page
    assert 'data-key="sweep">Sweep</span>' in page


def test_conduct_report_settings_are_kept_and_drawn(runs: Path) -> None:
    """conduct(report=...): kept in the state file, so the report (and a later `ductaflow report`) uses them."""
    doc = json.loads((runs / STATE_DIR / "pair.json").read_text())
    assert doc["report"] == {"metrics": ["double"], "minimize": [], "maximize": ["double"], "baseline": "a"}
    page = (runs / "conductor_status_report.html").read_text()
    assert "Δ double" in page and "<figcaption>double · higher is better</figcaption>" in page
    with pytest.raises(ConfigError, match=r"conduct\(report=...\): unknown key\(s\) 'metric'"):
        conduct(pd.DataFrame({"scenario_name": ["z"], "x": [1]}), runs.parent / "builds" / "pair.py",
                report={"metric": ["double"]}, progress=False)
    assert not (runs / "pair" / "z").exists()  # refused before anything ran


def test_cli_report_and_status_narrow_to_one_sweep(runs: Path) -> None:
    ran = CliRunner().invoke(cli, ["report", str(runs), "--sweep", "s2"])
    assert ran.exit_code == 0, ran.output
    page = (runs / sweep_report_name("s2")).read_text()
    assert 'data-instance="c"' in page and 'data-instance="a"' not in page and 'data-instance="b"' not in page
    ran = CliRunner().invoke(cli, ["status", str(runs), "--sweep", "s1"])
    assert ran.exit_code == 0, ran.output
    assert ran.output.splitlines()[-1].startswith("2 instance(s)")
    names = {line.split()[2] for line in ran.output.splitlines()[1:-1]}
    assert names == {"a", "b"}


def test_a_sweep_id_is_checked_like_an_instance_name(runs: Path) -> None:
    with pytest.raises(InvalidName):
        conduct(pd.DataFrame({"x": [1]}), runs.parent / "builds" / "pair.py", sweep="../up", progress=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium")
def test_the_sweep_select_filters_rows_in_chromium(runs: Path, browser: object) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto((runs / "conductor_status_report.html").as_uri())

    def visible() -> list[str]:
        return [d.get_attribute("data-instance") for d in page.locator("details.scn").all() if d.is_visible()]

    assert sorted(visible()) == ["a", "b", "c"]
    page.select_option("select.sweep-filter", "s2")
    assert visible() == ["c"]
    shown = [t.inner_text().strip() for t in page.locator("table.results tbody th").all() if t.is_visible()]
    assert shown == ["c"]  # the results table follows
    page.reload()  # the choice is remembered across the live reload
    assert visible() == ["c"]
    page.select_option("select.sweep-filter", "")
    assert sorted(visible()) == ["a", "b", "c"]
    context.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium")
def test_a_replicate_group_opens_onto_its_rows_in_chromium(tmp_path: Path, browser: object) -> None:
    runs = tmp_path / "runs"
    (runs / STATE_DIR).mkdir(parents=True)
    rows = []
    for name, rep, trips in (("base__r1", 1, 10.0), ("base__r2", 2, 14.0), ("solo", None, 5.0)):
        make_instance(runs, "demand_model", name, [{"flow": "model", "status": "green"}])
        rows.append({**_row(name, {"g": 1}, "done", "green", metrics={"trips": trips}, sweep="s1"), "replicate": rep})
    write_state(runs, "demand_model", rows, columns=["g"])
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(write_report(runs).as_uri())
    group = page.locator('details.grp[data-instance="base"]')
    replicate = group.locator('details.scn[data-instance="base__r2"]')
    assert group.is_visible() and not replicate.is_visible()
    group.locator(":scope > summary").click()
    assert replicate.is_visible()
    cells = group.locator("table.stats tbody td").all_inner_texts()
    assert cells == ["trips", "2", "12", "2.828", "0.2357", "10", "14"]  # n, mean, std, cv, min, max
    context.close()
