"""The conductor with real kernels: parallel builds, fail-fast, dry-run, Ctrl-C, bad tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from procs import kernels_mentioning

from ductaflow import ConductorFailed, FlowFileError, ScenarioError, conduct, expand_grid
from ductaflow.conductor.plan import plan_scenarios, slug
from ductaflow.core.seeds import derive_seed

FLOW = '''\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config
config = flow_config(config, "config/flows/work.json")

# %%
import time
from pathlib import Path
print("working on", config["label"])
if config.get("warn"):
    print("Warning: outside the calibrated range")
time.sleep(config.get("sleep", 0))
if config.get("fail"):
    raise RuntimeError("scenario asked to fail <b>")
Path("out.txt").write_text(config["label"])
'''

BUILD = '''\
# %% tags=["parameters"]
config = {}

# %%
import os
from pathlib import Path
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")
Path("worker.pid").write_text(os.environ["JPY_PARENT_PID"])  # the process that started this kernel

# %%
keys = ("label", "warn", "fail", "sleep")
step("flows/work.py", "work", {k: config[k] for k in keys})

# %%
from pathlib import Path
assert Path("runs/work/out.txt").read_text() == config["label"]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj ect"  # a space in the path, on purpose
    (root / "flows").mkdir(parents=True)
    (root / "builds").mkdir()
    (root / "config" / "flows").mkdir(parents=True)
    (root / "config" / "builds").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    defaults = {"label": "x", "warn": False, "fail": False, "sleep": 0}
    (root / "config" / "flows" / "work.json").write_text(json.dumps(defaults))
    (root / "config" / "builds" / "pipe.json").write_text(json.dumps(defaults))
    return root


def _kernels_of(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in kids if "ipykernel" in " ".join(p.cmdline())]


def _kernels_mentioning(text: str) -> list[psutil.Process]:
    return kernels_mentioning(text)


def test_parallel_keep_going_reports_every_light(project: Path) -> None:
    table = pd.DataFrame(
        {
            "scenario_name": ["calm", "warned", "broken"],
            "label": ["a", "b", "c"],
            "warn": [False, True, False],
            "fail": [False, False, True],
        }
    )
    with pytest.raises(ConductorFailed) as info:
        conduct(table, project / "builds" / "pipe.py", max_parallel=2, progress=False)
    out = info.value.table
    assert list(out["status"]) == ["green", "orange", "red"]
    assert list(out["state"]) == ["done", "done", "done"]
    broken = out.set_index("scenario_name").loc["broken"]
    assert broken["worst_flow"] == "work"
    assert "RuntimeError" in broken["error"] and "<b>" in broken["error"]
    warned = out.set_index("scenario_name").loc["warned"]
    assert warned["worst_flow"] == "work" and pd.isna(warned["error"])
    runs = project / "runs"
    for name, label in (("calm", "a"), ("warned", "b")):
        inst = runs / "pipe" / name
        assert (inst / "runs" / "work" / "out.txt").read_text() == label  # each build wrote only its own dir
        assert json.loads((inst / "pipe_status.json").read_text())["state"] == "finished"
    # the broken build stopped at its red flow: the build itself is red too
    assert json.loads((runs / "pipe" / "broken" / "pipe_status.json").read_text())["status"] == "red"
    state = json.loads((runs / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "finished"
    assert [s["status"] for s in state["scenarios"]] == ["green", "orange", "red"]
    assert state["scenarios"][1]["values"]["warn"] is True
    assert not list(runs.glob("pipe/*/out.txt")), "flow outputs must stay in the flow instance dirs"
    assert _kernels_of(os.getpid()) == []


def test_fail_fast_cancels_pending(project: Path) -> None:
    table = pd.DataFrame({"label": list("abcd"), "fail": [True, False, False, False]})
    out = conduct(
        table, project / "builds" / "pipe.py", max_parallel=1, fail_fast=True, progress=False, raise_on_failure=False
    )
    assert out.loc[0, "status"] == "red"
    assert list(out["state"][1:]) == ["cancelled"] * 3
    assert out["status"][1:].isna().all()
    assert not (project / "runs" / "pipe" / out.loc[1, "instance"]).exists()
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "stopped"


def test_dry_run_validates_and_writes_nothing(project: Path) -> None:
    table = expand_grid(label=["a", "b"], sleep=[0, 1])
    out = conduct(table, project / "builds" / "pipe.py", dry_run=True, progress=False)
    assert list(out["state"]) == ["planned"] * 4
    assert out["instance"].is_unique
    assert not (project / "runs").exists()
    # a build that names a missing flow is caught before anything runs
    (project / "builds" / "bad.py").write_text(BUILD.replace("flows/work.py", "flows/missing.py"))
    with pytest.raises(FlowFileError, match="missing.py"):
        conduct(table, project / "builds" / "bad.py", dry_run=True, progress=False)


def test_cli_exit_codes_and_dry_run(project: Path) -> None:
    csv = project / "scenarios.csv"
    pd.DataFrame({"scenario_name": ["ok", "bad"], "label": ["a", "b"], "fail": [False, True]}).to_csv(csv, index=False)
    cmd = [sys.executable, "-m", "ductaflow", "conduct", str(csv), "--build", "builds/pipe.py"]
    dry = subprocess.run([*cmd, "--dry-run"], cwd=project, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "2 scenario(s) would run" in dry.stdout
    real = subprocess.run([*cmd, "--parallel", "2"], cwd=project, capture_output=True, text=True, timeout=300)
    assert real.returncode == 1, real.stdout + real.stderr
    assert "1 green, 0 orange, 1 red" in real.stdout
    assert "bad" in real.stderr  # the red build is reported as it happens
    missing = subprocess.run(
        [sys.executable, "-m", "ductaflow", "conduct", str(csv), "--build", "builds/nope.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "nope.py" in missing.stderr and "Traceback" not in missing.stderr


def test_ctrl_c_stops_kills_kernels_and_records(project: Path) -> None:
    script = project / "run_conductor.py"
    script.write_text(
        textwrap.dedent(
            """
            import pandas as pd
            from ductaflow import conduct
            if __name__ == "__main__":
                table = pd.DataFrame({"label": list("abcd"), "sleep": [60] * 4})
                conduct(table, "builds/pipe.py", max_parallel=2, progress=False)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=True,  # its own process group, like a terminal job
    )
    flow_logs = project / "runs" / "pipe"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = [p for p in flow_logs.glob("*/runs/work/work_execution_output.txt") if p.read_text()]
        if len(started) >= 2:
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the flows never started: " + (proc.stdout.read() if proc.stdout else ""))
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode in (130, -signal.SIGINT), out
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "interrupted"
    by_state = {s["instance"]: s for s in state["scenarios"]}
    assert sorted(s["state"] for s in by_state.values()) == ["cancelled", "cancelled", "done", "done"]
    for s in by_state.values():
        if s["state"] == "done":
            assert s["status"] == "red"
            flow_status = json.loads((project / "runs" / s["dir"] / "runs" / "work" / "work_status.json").read_text())
            assert flow_status["interrupted"] is True and flow_status["status"] == "red"
    time.sleep(1)
    assert _kernels_mentioning(str(project)) == [], "a kernel survived Ctrl-C"
    report = (project / "runs" / "conductor_status_report.html").read_text()
    assert 'http-equiv="refresh"' not in report, "the final report must stop refreshing"


def test_bad_tables_are_rejected_with_rows_named(project: Path) -> None:
    build = project / "builds" / "pipe.py"
    with pytest.raises(ScenarioError, match="empty"):
        conduct(pd.DataFrame({"label": []}), build, progress=False)
    dup = pd.DataFrame({"scenario_name": ["a", "b", "A"], "label": ["1", "2", "3"]})
    with pytest.raises(ScenarioError, match=r"rows 0 and 2 both name instance 'A'"):
        conduct(dup, build, progress=False)
    unsafe = pd.DataFrame({"scenario_name": ["ok", "../escape", "a/b"], "label": ["1", "2", "3"]})
    with pytest.raises(ScenarioError) as info:
        conduct(unsafe, build, progress=False)
    assert "row 1" in str(info.value) and "row 2" in str(info.value)
    nan = pd.DataFrame({"label": ["a", None], "sleep": [0.1, float("nan")]})
    with pytest.raises(ScenarioError, match=r"row 1, column 'sleep'"):
        conduct(nan, build, progress=False)
    objs = pd.DataFrame({"label": ["a"], "warn": [object()]})
    with pytest.raises(ScenarioError, match=r"row 0, column 'warn'"):
        conduct(objs, build, progress=False)
    clash = pd.DataFrame({"label": ["a"], "status": ["x"]})
    with pytest.raises(ScenarioError, match="status"):
        conduct(clash, build, progress=False)
    with pytest.raises(FlowFileError):
        conduct(pd.DataFrame({"label": ["a"]}), project / "builds" / "nope.py", progress=False)
    with pytest.raises(ScenarioError, match="not found"):
        conduct(project / "missing.csv", build, progress=False)
    assert not (project / "runs").exists(), "bad input must not write anything"


def test_numpy_and_timestamp_values_are_converted() -> None:
    table = pd.DataFrame(
        {
            "n": np.array([1, 2], dtype=np.int64),
            "x": np.array([0.5, 1.5], dtype=np.float32),
            "when": pd.to_datetime(["2030-01-01", "2040-06-30"]),
            "flag": np.array([True, False]),
        }
    )
    plans = plan_scenarios(table, {"base": 1, "n": 0})
    expected = {"base": 1, "n": 1, "x": 0.5, "when": "2030-01-01T00:00:00", "flag": True}
    name = plans[0].instance
    assert plans[0].config == {**expected, "_instance": name, "_seed": derive_seed(0, name)}
    assert type(plans[0].config["n"]) is int
    json.dumps(plans[1].config)  # plain JSON types only
    assert plans[0].instance != plans[1].instance
    assert slug({"a": 1}) == slug({"a": 1}) and slug({"a": 1}) != slug({"a": 2})


def test_dotted_columns_reach_nested_config_and_expand_grid_links_frames() -> None:
    linked = pd.DataFrame({"region": ["north", "south"], "pop": [1, 2]})
    grid = expand_grid(linked, year=[2030, 2040])
    assert len(grid) == 4 and list(grid.columns) == ["region", "pop", "year"]
    assert grid[["region", "pop"]].drop_duplicates().shape[0] == 2
    plans = plan_scenarios(pd.DataFrame({"model.alpha": [0.1]}), {"model": {"alpha": 0.0, "beta": 2}})
    assert plans[0].config["model"] == {"alpha": 0.1, "beta": 2}
    with pytest.raises(ScenarioError, match="given twice"):
        expand_grid(linked, region=["x"])


def test_a_killed_local_worker_is_red_worker_lost_and_the_queue_goes_on(project: Path) -> None:
    """SIGKILL the process running one build: that row is red worker_lost, a fresh pool runs the rest."""
    import threading

    table = pd.DataFrame({"scenario_name": ["victim", "a", "b"], "label": list("vab"), "sleep": [120, 0, 0]})
    victim_dir = project / "runs" / "pipe" / "victim"
    killed: list[int] = []

    def kill_the_victims_worker() -> None:
        pid_file = victim_dir / "worker.pid"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pid_file.is_file() and pid_file.read_text()):
            time.sleep(0.2)
        time.sleep(1.0)  # let the nested flow's kernel start too
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_victims_worker, daemon=True)
    killer.start()
    out = conduct(table, project / "builds" / "pipe.py", max_parallel=1, progress=False, raise_on_failure=False)
    killer.join(5)
    assert killed, "the victim's worker process was never found"
    rows = out.set_index("scenario_name")
    assert rows.loc["victim", "status"] == "red" and rows.loc["victim", "error"].startswith("worker_lost")
    assert list(rows.loc[["a", "b"], "status"]) == ["green", "green"]
    record = json.loads((victim_dir / "pipe_status.json").read_text())
    assert (record["state"], record["error"]["type"]) == ("finished", "WorkerLost")
    deadline = time.monotonic() + 20
    while kernels_mentioning(str(victim_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kernels_mentioning(str(victim_dir)) == [], "the dead worker's kernels outlived it"


def test_a_conductor_script_read_from_stdin_runs_on_local_processes(project: Path) -> None:
    """`python - < script`: workers must not try to re-run a __main__ file named "<stdin>"."""
    script = "import pandas as pd\nfrom ductaflow import conduct\n"
    script += "out = conduct(pd.DataFrame({'label': ['a', 'b']}), 'builds/pipe.py', max_parallel=2, progress=False)\n"
    script += "print(list(out['status']))\n"
    proc = subprocess.run([sys.executable, "-"], input=script, cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "['green', 'green']" in proc.stdout
    assert "worker process died" not in proc.stderr
