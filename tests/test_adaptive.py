"""Adaptive sweeps with real kernels: follow-ups, priorities, duplicates, the budget, resume after kill -9, retries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flowkit import ductaflow_cmd

from ductaflow import conduct, read_sweep_state
from ductaflow.conductor.search import FinishedScenario
from ductaflow.errors import ConductorFailed
from ductaflow.store.ledger import read as read_ledger
from ductaflow.store.records import read_status
from ductaflow.store.sweeps import sweep_state_path

pytestmark = pytest.mark.kernel

#: A toy model: the build records f(mid) = mid**2 - 2 for the midpoint of its bracket [lo, hi].
BISECT = """\
# %% tags=["parameters"]
config = {"lo": 0.0, "hi": 2.0, "pause": 0.0}

# %%
import time
from ductaflow import record
time.sleep(config.get("pause", 0.0))
mid = (config["lo"] + config["hi"]) / 2
record(mid=mid, f=mid * mid - 2)
"""

#: The follow-up, in a module of the project so that a resume from the command line finds it again.
SEARCH = """\
def bisect(result):
    if result.status != "green" or abs(result.metrics["f"]) < 0.01:
        return None
    lo, hi, mid = result.values["lo"], result.values["hi"], result.metrics["mid"]
    row = {"lo": lo, "hi": mid} if result.metrics["f"] > 0 else {"lo": mid, "hi": hi}
    return [{**row, "pause": result.values.get("pause", 0.0)}]
"""

#: A build that kills its own kernel on its first attempt (a marker file says it did), or raises.
FLAKY = """\
# %% tags=["parameters"]
config = {"marker": "", "mode": "die"}

# %%
import os, signal
from pathlib import Path
if config["mode"] == "raise":
    raise ValueError("a user's own error")
marker = Path(config["marker"])
if not marker.exists():
    marker.write_text("died once")
    os.kill(os.getpid(), signal.SIGKILL)
print("second attempt runs")
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "builds").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "builds" / "bisect.py").write_text(BISECT)
    (root / "builds" / "flaky.py").write_text(FLAKY)
    (root / "search.py").write_text(SEARCH)
    return root


def _bisect(result: FinishedScenario) -> Any:
    if result.status != "green" or abs(result.metrics["f"]) < 0.01:
        return None
    lo, hi, mid = result.values["lo"], result.values["hi"], result.metrics["mid"]
    return [{"lo": lo, "hi": mid} if result.metrics["f"] > 0 else {"lo": mid, "hi": hi}]


def test_a_bisection_through_follow_up_converges_with_lineage(tmp_path: Path) -> None:
    root = _project(tmp_path)
    out = conduct(pd.DataFrame({"lo": [0.0], "hi": [2.0]}), root / "builds" / "bisect.py", follow_up=_bisect,
                  max_runs=20, sweep="bisect", executor="serial", progress=False)  # fmt: skip
    assert 5 <= len(out) <= 12 and set(out["status"]) == {"green"}
    assert abs(out["f"].iloc[-1]) < 0.01 and abs(out["mid"].iloc[-1] - 2**0.5) < 0.01
    parents = list(out["parent"])
    assert pd.isna(parents[0]) and parents[1:] == list(out["instance"])[:-1]  # a chain: each from the last
    state = read_sweep_state(root / "runs", "bisect")
    assert state.state == "finished" and state.runs == len(out)
    assert [n.instance for _, n in state.walk()] == list(out["instance"])
    assert [d for d, _ in state.walk()] == list(range(len(out)))
    assert all(n.state == "done" and n.status == "green" and n.followed for n in state.nodes)
    assert read_sweep_state(root / "runs").sweep == "bisect"  # the latest sweep by default


def test_priorities_decide_the_order_and_duplicates_are_not_run_twice(tmp_path: Path) -> None:
    root = _project(tmp_path)
    seen: list[str] = []

    def fan_out(result: FinishedScenario) -> Any:
        seen.append(result.instance)
        if result.parent is not None:
            return None
        rows = [{"lo": 0.0, "hi": h, "priority": p} for h, p in ((3.0, 3), (1.0, 1), (1.5, 2))]
        return pd.DataFrame(rows + [{"lo": 0.0, "hi": 1.0, "priority": 0}, {"lo": 0.0, "hi": 2.0}])  # duplicates

    out = conduct(pd.DataFrame({"lo": [0.0], "hi": [2.0]}), root / "builds" / "bisect.py", follow_up=fan_out,
                  max_parallel=1, sweep="prio", progress=False)  # fmt: skip
    assert len(out) == 4  # the root and three children; the repeat and the root's twin were dropped
    children = out[out["parent"].notna()]
    started = {row.instance: read_status(Path(row.instance_dir) / "bisect_status.json").started
               for row in children.itertuples()}  # fmt: skip
    order = sorted(started, key=lambda k: started[k])
    assert list(children.set_index("instance").loc[order, "hi"]) == [1.0, 1.5, 3.0]
    state = read_sweep_state(root / "runs", "prio")
    assert state.duplicates == 2 and len(state.nodes) == 4
    assert sorted(n.priority for n in state.children(out["instance"].iloc[0])) == [1.0, 2.0, 3.0]
    assert seen[0] == out["instance"].iloc[0] and len(seen) == 4


def test_the_budget_ends_a_search_that_would_not(tmp_path: Path) -> None:
    root = _project(tmp_path)

    def forever(result: FinishedScenario) -> Any:
        lo, hi = result.values["lo"], result.values["hi"]
        return [{"lo": lo, "hi": hi + 1}, {"lo": lo + 1, "hi": hi + 1}]

    out = conduct(pd.DataFrame({"lo": [0.0], "hi": [2.0]}), root / "builds" / "bisect.py", follow_up=forever,
                  max_runs=3, max_parallel=1, sweep="budget", progress=False)  # fmt: skip
    ran = out[out["state"] == "done"]
    assert len(ran) == 3 and set(ran["status"]) == {"green"}
    rest = out[out["state"] != "done"]
    assert len(rest) >= 2 and set(rest["error"]) == {"not_run: budget"}
    state = read_sweep_state(root / "runs", "budget")
    assert state.runs == 3 and {n.note for n in state.nodes if n.state == "not_run"} == {"budget"}


def test_kill_9_of_the_conductor_then_resume_finishes_the_same_search(tmp_path: Path) -> None:
    root = _project(tmp_path)
    script = root / "calibrate.py"
    script.write_text(
        "import pandas as pd\nfrom ductaflow import conduct\n"
        "if __name__ == '__main__':\n"
        "    conduct(pd.DataFrame({'lo': [0.0], 'hi': [2.0], 'pause': [0.6]}), 'builds/bisect.py', "
        "follow_up='search:bisect', max_runs=30, sweep='cal', max_parallel=1, progress=False)\n"
    )
    state_file = sweep_state_path(root / "runs", "cal")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = _done(state_file)
            if len(done) >= 3:
                break
            assert proc.poll() is None, "the conductor ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("the search did not get going within 120 s")
        os.killpg(proc.pid, signal.SIGKILL)  # the conductor, its pool and kernels: nothing writes any more
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = read_sweep_state(root / "runs", "cal")
    finished = {n.instance: _started(root, n.instance) for n in before.nodes if n.state == "done"}
    assert len(finished) >= 3 and before.state == "running"
    result = ductaflow_cmd("conduct", "--resume", "cal", cwd=root, timeout=240)
    assert result.returncode == 0, result.stderr
    after = read_sweep_state(root / "runs", "cal")
    assert after.state == "finished" and all(n.state == "done" and n.status == "green" for n in after.nodes)
    assert {k: _started(root, k) for k in finished} == finished  # nothing that had finished ran again
    chain = [n for _, n in after.walk()]
    assert [n.parent for n in chain[1:]] == [n.instance for n in chain[:-1]]
    assert abs(chain[-1].metrics["f"]) < 0.01
    runs = read_ledger(root / "runs")
    started = runs[(runs["event"] != "skip") & (runs["flow"] == "bisect")]
    assert started["instance"].value_counts().max() <= 2  # at most the one killed mid-run started twice


def _done(path: Path) -> list[str]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [n["instance"] for n in doc.get("nodes", []) if n["state"] == "done"]


def _started(root: Path, instance: str) -> str | None:
    rec = read_status(root / "runs" / "bisect" / instance / "bisect_status.json")
    return rec.started if rec else None


def test_a_kernel_that_dies_is_retried_and_a_value_error_is_not(tmp_path: Path) -> None:
    root = _project(tmp_path)
    table = pd.DataFrame({"scenario_name": ["dies", "raises"], "mode": ["die", "raise"],
                          "marker": [str(tmp_path / "dies.marker"), str(tmp_path / "raises.marker")]})  # fmt: skip
    with pytest.raises(ConductorFailed) as failed:
        conduct(table, root / "builds" / "flaky.py", retries=2, backoff=0.1, sweep="flaky", max_parallel=1,
                progress=False)  # fmt: skip
    out = failed.value.table.set_index("instance")
    assert out.loc["dies", "status"] == "green" and out.loc["raises", "status"] == "red"
    state = read_sweep_state(root / "runs", "flaky")
    dies, raises = state.node("dies"), state.node("raises")
    assert dies is not None and dies.attempts == 2 and dies.status == "green"
    assert raises is not None and raises.attempts == 1 and raises.kind == "user_error"
    rec = read_status(root / "runs" / "flaky" / "dies" / "flaky_status.json")
    assert rec is not None and rec.attempt == 2 and [h.kind for h in rec.history] == ["kernel_died"]
    ledger = read_ledger(root / "runs")
    ends = ledger[(ledger["instance"] == "dies") & (ledger["event"] != "start")]
    assert sorted(ends["attempt"].dropna().astype(int)) == [1, 2]


REPO = Path(__file__).resolve().parents[1]


def _readme_block(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f'```python title="{title}"\n') + len(f'```python title="{title}"\n')
    return text[start : text.index("```", start)]


def test_the_readme_calibration_of_the_example_converges(tmp_path: Path) -> None:
    project = tmp_path / "example"
    project.mkdir()
    for name in ("flows", "builds", "config"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "calibrate.py").write_text(_readme_block("calibrate.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    done = subprocess.run([sys.executable, "calibrate.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    state = read_sweep_state(project / "runs", "calibrate")
    assert state.state == "finished" and 3 <= state.runs <= 12
    km = [n.metrics["mean_trip_length"] for n in state.nodes]
    assert min(abs(k - 9.95) for k in km) < 0.005  # the target is hit
    assert all(n.status == "green" for n in state.nodes)
    assert [n.parent is None for n in state.nodes[:2]] == [True, True] and all(n.parent for n in state.nodes[2:])


def test_the_command_line_search_ends_at_its_budget_with_exit_0(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "start.csv").write_text("lo,hi\n0.0,2.0\n")
    done = ductaflow_cmd("conduct", "start.csv", "--build", "builds/bisect.py", "--follow-up", "search:bisect",
                         "--max-runs", "2", "--sweep", "cli", "--parallel", "1", cwd=root, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 scenario(s): 2 green, 0 orange, 0 red, 1 left by the run budget (--max-runs)" in done.stdout
    state = read_sweep_state(root / "runs", "cli")
    assert state.runs == 2 and state.follow_up == "search:bisect" and [n.note for n in state.nodes][-1] == "budget"
