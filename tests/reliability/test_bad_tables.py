"""Scenario tables given to ``ductaflow conduct`` (and ``conduct()``): every problem named by row
and column, exit 2 before anything is written; big tables and mixed types work."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import psutil
import pytest
from relkit import assert_rejected, cli, make_project, snapshot, write_csv

from ductaflow import ScenarioError
from ductaflow.conductor.plan import plan_scenarios
from ductaflow.conductor.sweep import conduct

SECTION = "Bad input: scenario tables"

CSV_CASES = {
    "duplicate names": ("scenario_name,n\na,1\nb,2\na,3\n", ["rows 0 and 2 both name instance 'a'"]),
    "identical rows, no name column": ("n,label\n1,x\n1,x\n", ["rows 0 and 1 both name instance '1_x-"]),
    "NaN (an empty cell)": ("scenario_name,n\na,1\nb,\n", ["row 1, column 'n' is empty (nan)"]),
    "header only": ("scenario_name,n\n", ["the scenario table is empty"]),
    "empty file": ("", ["cannot read scenario table s.csv"]),
    "column 'status'": ("scenario_name,status\na,1\n", ["['status']", "clash with names ductaflow uses"]),
    "column 'state'": ("scenario_name,state\na,1\n", ["['state']", "clash"]),
    "column 'instance_dir'": ("scenario_name,instance_dir\na,1\n", ["['instance_dir']", "clash"]),
    "column 'action' (added by --explain)": ("scenario_name,action\na,1\n", ["['action']", "clash"]),
    "column '_project_root'": ("scenario_name,_project_root\na,/tmp\n", ["['_project_root']", "clash"]),
    "column '_instance'": ("scenario_name,_instance\na,x\n", ["['_instance']", "clash"]),
    "column 'instance' beside scenario_name": (
        "scenario_name,instance\na,x\n",
        ["column 'instance' would be overwritten", "scenario_name"],
    ),
    "column name with a space": ("scenario_name,growth rate\na,1\n", ["'growth rate' is not a parameter name"]),
    "column name with a leading space": ("scenario_name, n\na,1\n", ["' n' is not a parameter name"]),
    "same column twice": ("scenario_name,n,n\na,1,2\n", ["['n'] appear more than once"]),
    "column 'a' and 'a.b'": ("scenario_name,pipe,pipe.n\na,1,2\n", ["'pipe' and 'pipe.n' both set 'pipe'"]),
    "column 'a..b'": ("scenario_name,pipe..n\na,1\n", ["'pipe..n' has an empty part"]),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    # the build knows the parameters these tables set (a column no flow knows is refused: issue 14)
    (root / "config" / "builds" / "pipe.json").write_text('{"n": 1, "label": "", "g": 0.0, "x": null}')
    return root


@pytest.mark.parametrize("key", list(CSV_CASES))
def test_bad_csv(project: Path, case, key: str) -> None:
    text, culprits = CSV_CASES[key]
    c = case(f"table: {key}", f"ductaflow conduct s.csv --build builds/pipe.py with s.csv = {text!r}")
    (project / "s.csv").write_text(text, encoding="utf-8")
    before = snapshot(project)
    ran = cli("conduct", "s.csv", "--build", "builds/pipe.py", cwd=project)
    c.outcome = f"exit {ran.code}, nothing written: {assert_rejected(ran, project, before, *culprits)}"


def test_non_utf8_csv(project: Path, case) -> None:
    c = case("table: CSV in Latin-1", "ductaflow conduct s.csv with 'é' saved as Latin-1")
    (project / "s.csv").write_bytes("scenario_name,label\na,café\n".encode("latin-1"))
    before = snapshot(project)
    ran = cli("conduct", "s.csv", "--build", "builds/pipe.py", cwd=project)
    c.outcome = f"exit 2: {assert_rejected(ran, project, before, 's.csv', 'utf-8')}"


def test_none_and_nan_from_python(project: Path, case) -> None:
    c = case(
        "table: None and NaN in a DataFrame",
        "conduct(DataFrame(label=['a', None, 'c'], g=[0.1, 0.2, nan]), 'builds/pipe.py')",
    )
    table = pd.DataFrame({"label": pd.Series(["a", None, "c"], dtype=object), "g": [0.1, 0.2, float("nan")]})
    before = snapshot(project)
    with pytest.raises(ScenarioError) as info:
        conduct(table, project / "builds" / "pipe.py", progress=False)
    msg = str(info.value)
    assert "row 1, column 'label' is empty (None)" in msg and "row 2, column 'g' is empty (nan)" in msg
    assert snapshot(project) == before
    c.outcome = "ScenarioError naming both cells: " + " / ".join(msg.splitlines()[1:])


def test_integer_column_labels(project: Path, case) -> None:
    c = case("table: a DataFrame without a header (integer column labels)", "conduct(pd.DataFrame([[1, 2]]), ...)")
    before = snapshot(project)
    with pytest.raises(ScenarioError, match=r"column names must be text; found \[0, 1\]") as info:
        conduct(pd.DataFrame([[1, 2]]), project / "builds" / "pipe.py", progress=False)
    assert snapshot(project) == before
    c.outcome = f"ScenarioError (was a KeyError): {info.value}"


def test_mixed_types_keep_each_rows_type(project: Path, case) -> None:
    c = case(
        "table: one column of mixed types",
        "plan and dry-run a DataFrame whose column x holds 1, 'two', 2.5, True, [1, 2], {'k': 'v'}",
    )
    values = [1, "two", 2.5, True, [1, 2], {"k": "v"}]
    table = pd.DataFrame({"scenario_name": [f"s{i}" for i in range(len(values))], "x": pd.Series(values, dtype=object)})
    plans = plan_scenarios(table, {"n": 1})
    got = [p.config["x"] for p in plans]
    assert got == values and [type(v) for v in got] == [type(v) for v in values]
    out = conduct(table, project / "builds" / "pipe.py", dry_run=True, progress=False)
    assert list(out["instance"]) == [f"s{i}" for i in range(len(values))]
    assert not (project / "runs" / "pipe" / "s0").exists()
    c.outcome = "accepted: each row's config holds its own value and type (int stays int, True stays bool)"


def test_ten_thousand_rows_dry_run(project: Path, case) -> None:
    c = case(
        "table: 10,000 rows, --dry-run",
        "ductaflow conduct big.csv --build builds/pipe.py --dry-run, watching the process table meanwhile",
    )
    rows = [[f"s{i:05d}", i % 7, f"label {i}"] for i in range(10_000)]
    write_csv(project / "big.csv", ["scenario_name", "n", "label"], rows)
    before = snapshot(project)
    kernels: list[str] = []
    done = threading.Event()

    me = psutil.Process()
    # Earlier in-process tests may have left this process a multiprocessing forkserver and
    # resource tracker: only processes that appear during the dry run count.
    already = {p.pid for p in me.children(recursive=True)}

    def watch() -> None:
        while not done.is_set():
            for child in me.children(recursive=True):
                if child.pid in already:
                    continue
                try:
                    kernels.append(" ".join(child.cmdline()))
                except psutil.Error:
                    pass
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        ran = cli("conduct", "big.csv", "--build", "builds/pipe.py", "--dry-run", cwd=project)
    finally:
        done.set()
        watcher.join()
    assert ran.code == 0, ran.err
    assert "dry run OK: 10000 scenario(s) would run" in ran.out
    assert kernels == [], f"a dry run started processes: {kernels}"
    assert snapshot(project) == before, "a dry run wrote to disk"
    c.outcome = "exit 0, 'dry run OK: 10000 scenario(s)', no kernel or other child process, nothing written"
