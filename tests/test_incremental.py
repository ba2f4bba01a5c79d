"""Re-run only what changed, resume after SIGKILL, two conductors at once, ledger and results.

Real kernels, real processes, real Parquet and DuckDB. A two-flow build (``a`` then ``b``,
``b`` reading ``../a/a.txt``) keeps each conductor run to a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from procs import wait_for_no_kernels

import ductaflow
from ductaflow import conduct, run_notebook
from ductaflow.core.fingerprint import fingerprint
from ductaflow.core.flowfile import read_flow
from ductaflow.run.decide import decide

FLOW_A = '''\
# %% [markdown]
# Flow a: writes a.txt

# %% tags=["parameters"]
config = {}

# %%
import time
from pathlib import Path
from ductaflow import record
hold = Path(config["_project_root"]) / "HOLD"
deadline = time.monotonic() + 60
while config.get("hold") and hold.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
Path("a.txt").write_text(str(config["x"]))
record(x_seen=config["x"])
'''

FLOW_B = '''\
# %% tags=["parameters"]
config = {}

# %%
from pathlib import Path
from ductaflow import record, record_table
import pandas as pd
x = float(Path(config["src"]).read_text())
Path("b.txt").write_text(str(2 * x))
record(doubled=2 * x)
record_table("detail", pd.DataFrame({"x": [x], "y": [2 * x]}))
'''

BUILD = '''\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import step
step("flows/a.py", "a", {"x": config["x"], "hold": config.get("hold", False)})
if config.get("stop_after_a"):
    raise RuntimeError("stopped after a")
step("flows/b.py", "b", {"src": "../a/a.txt"})
'''

RUNNER = '''\
import sys
import pandas as pd
from ductaflow import conduct
if __name__ == "__main__":
    table = pd.read_csv(sys.argv[1])
    conduct(table, "builds/chain.py", max_parallel=2, progress=False, raise_on_failure=False)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "builds").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "a.py").write_text(FLOW_A)
    (root / "flows" / "b.py").write_text(FLOW_B)
    (root / "builds" / "chain.py").write_text(BUILD)
    (root / "run_conductor.py").write_text(RUNNER)
    return root


def _conduct(project: Path, table: pd.DataFrame, **kw: object) -> pd.DataFrame:
    return conduct(table, project / "builds" / "chain.py", project_root=project, progress=False,
                   raise_on_failure=False, **kw)


def _runs(project: Path) -> pd.DataFrame:
    return ductaflow.ledger(project / "runs")


def _new_runs(project: Path, before: int) -> list[tuple[str, str]]:
    """(flow, instance_dir) of every 'run' event appended after the first ``before`` records."""
    led = _runs(project).iloc[before:]
    return sorted(zip(led[led.event == "run"].flow, led[led.event == "run"].instance_dir, strict=True))


TABLE = pd.DataFrame({"scenario_name": ["s1", "s2"], "x": [1, 2]})


def test_only_what_changed_re_runs_and_says_why(project: Path) -> None:
    first = _conduct(project, TABLE)
    assert list(first.status) == ["green", "green"]
    assert list(first.doubled) == [2.0, 4.0] and list(first.x_seen) == [1, 2]  # recorded metrics joined
    results = pd.read_parquet(project / "runs" / "chain" / "results.parquet")
    assert list(results.doubled) == [2.0, 4.0]
    table_file = project / "runs" / "chain" / "s2" / "runs" / "b" / "b_table_detail.parquet"
    assert pd.read_parquet(table_file).y.tolist() == [4.0]
    n = len(_runs(project))
    assert n == 6  # 2 builds x (build + 2 flows), all 'run'

    # nothing changed: nothing runs, the skip is recorded, no kernel starts
    again = _conduct(project, TABLE)
    assert list(again.state) == ["skipped", "skipped"] and list(again.status) == ["green", "green"]
    assert list(again.doubled) == [2.0, 4.0]
    assert _new_runs(project, n) == []
    led = _runs(project)
    assert list(led.iloc[n:].event) == ["skip", "skip"]
    n = len(led)

    # a markdown cell and trailing whitespace do not count
    a = project / "flows" / "a.py"
    a.write_text(a.read_text().replace("# Flow a: writes a.txt", "# Flow a: writes a.txt (documented)") + "   \n\n")
    assert list(_conduct(project, TABLE).state) == ["skipped", "skipped"]
    n = len(_runs(project))

    # a code cell of b: exactly b (and the builds that use it) re-run; a is skipped inside
    b = project / "flows" / "b.py"
    b.write_text(b.read_text() + "print('one more line')\n")
    explained = _conduct(project, TABLE, explain=True)
    assert list(explained.action) == ["run", "run"]
    assert all(r == "flow code changed: b" for r in explained.reasons)
    _conduct(project, TABLE)
    assert _new_runs(project, n) == sorted(
        [("b", "chain/s1/runs/b"), ("b", "chain/s2/runs/b"), ("chain", "chain/s1"), ("chain", "chain/s2")]
    )
    led = _runs(project).iloc[n:]
    assert set(led[(led.flow == "a")].event) == {"skip"}
    n = len(_runs(project))

    # a code cell of a: a re-runs, and b downstream of it re-runs because its upstream changed
    a.write_text(a.read_text() + "print('a changed')\n")
    _conduct(project, TABLE)
    led = _runs(project).iloc[n:]
    assert sorted(led[led.flow == "b"].reason) == ["upstream changed", "upstream changed"]
    assert sorted(led[led.flow == "a"].reason) == ["flow code changed: a"] * 2
    n = len(_runs(project))

    # one scenario value: only that scenario re-runs, and --explain names the key
    changed = TABLE.assign(x=[1, 5])
    explained = _conduct(project, changed, explain=True)
    assert list(explained.action) == ["skip", "run"] and explained.reasons[1] == "config keys changed: x"
    out = _conduct(project, changed)
    assert list(out.state) == ["skipped", "done"] and list(out.doubled) == [2.0, 10.0]
    assert {d for _, d in _new_runs(project, n)} == {"chain/s2", "chain/s2/runs/a", "chain/s2/runs/b"}

    # artifacts missing, forced, only-failed
    (project / "runs" / "chain" / "s1" / "chain.ipynb").unlink()
    explained = _conduct(project, changed, explain=True)
    assert list(explained.reasons) == ["artifacts missing: chain.ipynb", "up to date"]
    assert list(_conduct(project, changed, explain=True, force=True).reasons) == ["forced", "forced"]
    assert list(_conduct(project, changed, explain=True, only_failed=True).action) == ["skip", "skip"]
    n = len(_runs(project))
    _conduct(project, changed, force=True)  # force reaches the nested flows too
    assert len(_new_runs(project, n)) == 6


def test_explain_names_failed_interrupted_and_stale_runs(project: Path) -> None:
    flow = project / "flows" / "a.py"
    run_dir = project / "runs" / "a" / "one"
    cfg = {"x": 3}

    def why() -> tuple[bool, tuple[str, ...]]:
        parsed = read_flow(flow)
        d = decide(run_dir, "a", fingerprint(parsed, cfg, project), cfg)
        return d.run, d.reasons

    assert why() == (True, ("new",))
    first = run_notebook(flow, cfg, run_dir, project)
    assert not first.skipped and first.fingerprint and first.peak_rss_mb and first.peak_rss_mb > 10
    assert why() == (False, ())
    second = run_notebook(flow, cfg, run_dir, project)
    assert second.skipped and second.fingerprint == first.fingerprint
    assert second.started == first.started  # nothing was re-executed or rewritten

    status = run_dir / "a_status.json"
    rec = json.loads(status.read_text())
    for patch, reason in [
        ({"status": "red", "error": {"type": "ValueError", "message": "m"}}, "last run failed"),
        ({"status": "red", "interrupted": True}, "last run was interrupted"),
        ({"status": "red", "timed_out": True}, "last run timed out"),
        ({"status": "red", "state": "running", "pid": 999999}, "last run did not finish (its process 999999"),
    ]:
        status.write_text(json.dumps({**rec, **patch}))
        run, reasons = why()
        assert run and reasons[0].startswith(reason), reasons
    status.write_text("{torn")
    assert why() == (True, ("status record unreadable",))
    third = run_notebook(flow, cfg, run_dir, project)  # a torn record is re-run, not trusted
    assert not third.skipped and third.status.value == "green"


def test_sigkilled_conductor_resumes_only_unfinished_instances(project: Path) -> None:
    table = pd.DataFrame({"scenario_name": ["k1", "k2", "k3", "k4"], "x": [1, 2, 3, 4], "hold": [0, 0, 1, 1]})
    table.to_csv(project / "table.csv", index=False)
    (project / "HOLD").write_text("")
    proc = subprocess.Popen(
        [sys.executable, "run_conductor.py", "table.csv"], cwd=project, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    runs = project / "runs" / "chain"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [n for n in ("k1", "k2") if '"state": "finished"' in _read(runs / n / "chain_status.json")]
        held = [n for n in ("k3", "k4") if (runs / n / "runs" / "a" / "a_status.json").exists()]
        if len(done) == 2 and len(held) == 2:
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("conductor never reached the kill point: " + (proc.stdout.read() if proc.stdout else ""))
    finished_before = {n: (runs / n / "chain_status.json").stat().st_mtime_ns for n in ("k1", "k2")}
    os.killpg(proc.pid, signal.SIGKILL)  # the conductor and its workers: no chance to clean up
    proc.wait(timeout=30)
    _wait_for_orphan_kernels(str(project))
    assert '"state": "running"' in _read(runs / "k3" / "chain_status.json")
    n = len(_runs(project))
    led = _runs(project)
    assert set(led[led.event == "run"].instance_dir) >= {"chain/k1", "chain/k2"}

    (project / "HOLD").unlink()
    explained = _conduct(project, table, explain=True)
    assert list(explained.action) == ["skip", "skip", "run", "run"]
    assert explained.reasons[2].startswith("last run did not finish")
    out = _conduct(project, table)
    assert list(out.status) == ["green"] * 4 and list(out.state) == ["skipped", "skipped", "done", "done"]
    assert {n: (runs / n / "chain_status.json").stat().st_mtime_ns for n in ("k1", "k2")} == finished_before
    assert {d for _, d in _new_runs(project, n)} == {
        f"chain/{k}{sub}" for k in ("k3", "k4") for sub in ("", "/runs/a", "/runs/b")
    }
    status = subprocess.run([sys.executable, "-m", "ductaflow", "status", "runs"], cwd=project,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "4 instance(s): 4 green, 0 orange, 0 red" in status.stdout


def test_two_conductors_at_once_never_run_an_instance_twice(project: Path) -> None:
    table = pd.DataFrame({"scenario_name": ["c1", "c2", "c3"], "x": [1, 2, 3]})
    table.to_csv(project / "table.csv", index=False)
    procs = [
        subprocess.Popen([sys.executable, "run_conductor.py", "table.csv"], cwd=project,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    led = _runs(project)
    ran = led[led.event == "run"].groupby("instance_dir").size()
    assert len(ran) == 9 and (ran == 1).all(), ran  # 3 builds + 6 flows, each executed exactly once
    assert set(led.status) == {"green"}
    for path in (project / "runs" / ".ductaflow" / "ledger").glob("*.parquet"):
        pd.read_parquet(path)  # every file whole


def test_query_status_and_compact_from_the_cli(project: Path, tmp_path: Path) -> None:
    _conduct(project, TABLE)
    cli = [sys.executable, "-m", "ductaflow"]
    q = subprocess.run([*cli, "query", "select scenario_name, doubled from results order by 1", "runs"],
                       cwd=project, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and "s2" in q.stdout and "4.0" in q.stdout, q.stderr
    out = tmp_path / "runs.parquet"
    q = subprocess.run([*cli, "query", "select flow, count(*) n from runs group by flow", "runs", "--out", str(out)],
                       cwd=project, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0, q.stderr
    assert dict(pd.read_parquet(out).values.tolist()) == {"chain": 2, "a": 2, "b": 2}
    bad = subprocess.run([*cli, "query", "select nope from runs", "runs"], cwd=project, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    (project / "runs" / ".ductaflow" / "ledger" / "garbage.parquet").write_text("not parquet")
    before = _runs(project)
    assert len(before) == 6  # the torn file is skipped (with a warning), the rest read
    c = subprocess.run([*cli, "compact", "runs"], cwd=project, capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    files = sorted(p.name for p in (project / "runs" / ".ductaflow" / "ledger").glob("*.parquet"))
    assert len(files) == 2 and "garbage.parquet" in files  # merged into one; the garbage left in place
    after = _runs(project)
    assert sorted(after.run_id) == sorted(before.run_id)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _wait_for_orphan_kernels(text: str, timeout: float = 20) -> None:
    """Kernels whose parent was SIGKILLed notice it (ipykernel's parent poller) and exit."""
    alive = wait_for_no_kernels(text, timeout)
    for proc in alive:
        proc.kill()
    assert not alive, f"{len(alive)} kernel(s) outlived their SIGKILLed conductor by {timeout}s"


def test_record_rejects_non_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ductaflow import DuctaflowError
    from ductaflow.core.context import CONTEXT_ENV, RunContext
    from ductaflow.store.metrics import record

    monkeypatch.chdir(tmp_path)  # record() writes into the cwd, as in a flow's kernel
    monkeypatch.setenv(CONTEXT_ENV, RunContext(flow="f").to_json())
    assert record(a=1, b="x") == {"a": 1, "b": "x"}
    assert record(a=2) == {"a": 2, "b": "x"}  # later calls add or replace
    assert pd.read_parquet(tmp_path / "f_metrics.parquet").a.tolist() == [2]
    with pytest.raises(DuctaflowError, match="scalar"):
        record(c=[1, 2])
    with pytest.raises(DuctaflowError):
        record(d=float("nan"))



def test_a_build_that_stops_earlier_does_not_report_older_steps(project: Path) -> None:
    from ductaflow.store.metrics import collect_metrics
    from ductaflow.store.records import summarize_instance

    build = project / "builds" / "chain.py"
    inst = project / "runs" / "chain" / "one"
    first = run_notebook(build, {"x": 2}, inst, project, timeout=60.5)  # a float timeout is fine
    assert first.status.value == "green"
    assert [f.flow for f in summarize_instance(inst, "chain").flows] == ["a", "b"]
    assert collect_metrics(inst)["doubled"] == 4.0
    second = run_notebook(build, {"x": 2, "stop_after_a": True}, inst, project, raise_on_failure=False)
    assert second.status.value == "red" and second.error and "stopped after a" in second.error.message
    summary = summarize_instance(inst, "chain")
    assert [f.flow for f in summary.flows] == ["a"]  # b's record from the first run is not this run's
    assert summary.status.value == "red" and "stopped after a" in (summary.error or "")
    assert "doubled" not in collect_metrics(inst)
    assert (inst / "runs" / "b" / "b_status.json").exists()  # kept on disk, just not reported


_APPEND_WITHOUT_PANDAS = """
import sys, importlib
if sys.argv[2] == "pyarrow":
    import pyarrow.fs  # what papermill loads: the ledger then writes through Arrow
ledger = importlib.import_module("ductaflow.store.ledger")
ledger.append(sys.argv[1], [{"kind": "flow", "event": "run", "flow": sys.argv[2], "duration": 1,
                             "warning_count": 2, "scenario": {"a": 1}, "error_message": "é ✓ \\n",
                             "peak_rss_mb": float("nan")}])
assert "pandas" not in sys.modules, "a lone run must not import pandas for its ledger record"
assert ("duckdb" in sys.modules) == (sys.argv[2] == "duckdb"), "DuckDB only where pyarrow is not loaded"
"""


def test_a_ledger_record_written_without_pandas_reads_like_any_other(tmp_path: Path) -> None:
    """Both writers of a process without pandas (DuckDB, or Arrow's JSON reader once papermill
    has loaded pyarrow) give the same columns, types and values as one written with pandas loaded."""
    import importlib

    import pyarrow.parquet as pq

    ledger = importlib.import_module("ductaflow.store.ledger")
    for writer in ("duckdb", "pyarrow"):
        subprocess.run([sys.executable, "-c", _APPEND_WITHOUT_PANDAS, str(tmp_path), writer], check=True, timeout=60)
    ledger.append(tmp_path, [{"kind": "flow", "event": "run", "flow": "full", "duration": 2.5, "warning_count": 0}])
    read = [pq.read_table(p) for p in ledger.ledger_dir(tmp_path).glob("*.parquet")]
    tables = {table["flow"][0].as_py(): table for table in read}
    assert sorted(tables) == ["duckdb", "full", "pyarrow"]
    assert tables["duckdb"].schema.types == tables["pyarrow"].schema.types == tables["full"].schema.types
    df = ductaflow.ledger(tmp_path).set_index("flow")
    for writer in ("duckdb", "pyarrow"):
        assert df.loc[writer, "duration"] == 1.0 and df.loc[writer, "warning_count"] == 2
        assert json.loads(df.loc[writer, "scenario"]) == {"a": 1}
        assert df.loc[writer, "error_message"] == "é ✓ \n"
        assert pd.isna(df.loc[writer, "peak_rss_mb"])
    assert ledger.compact(tmp_path) is not None and len(ductaflow.ledger(tmp_path)) == 3
