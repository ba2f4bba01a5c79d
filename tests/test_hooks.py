"""Lifecycle hooks with real kernels and real worker processes: which process calls which method,
in what order, and what a hook that raises does (recorded; the light unchanged unless asked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flowkit import make_project, read_json, write_flow

from ductaflow import ConfigError, run_notebook

HOOKS = '''
import json, os
from pathlib import Path

LOG = Path(__file__).with_name("hook_events.jsonl")


def _log(method, subject, **extra):
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"method": method, "pid": os.getpid(), "subject": subject, **extra}) + "\\n")


class Recorder:
    def on_sweep_start(self, e): _log("on_sweep_start", e.build, to_run=e.to_run)
    def on_sweep_end(self, e): _log("on_sweep_end", e.build, state=e.state, counts=dict(e.counts))
    def on_scenario_start(self, e): _log("on_scenario_start", e.instance)
    def on_scenario_end(self, e): _log("on_scenario_end", e.instance, status=e.row["status"])
    def on_scenario_skip(self, e): _log("on_scenario_skip", e.instance)
    def on_scenario_error(self, e): _log("on_scenario_error", e.instance, error=e.row["error"])
    def on_flow_start(self, e): _log("on_flow_start", e.result.flow, state=e.result.state)
    def on_flow_end(self, e): _log("on_flow_end", e.result.flow, status=e.result.status.value)
    def on_flow_error(self, e):
        _log("on_flow_error", e.result.flow, error=e.result.error.type if e.result.error else None)


class KillsItsWorker:
    def on_flow_start(self, e):
        if e.result.flow == "b" and e.result.instance == "one":
            import signal
            os.kill(os.getpid(), signal.SIGKILL)  # the worker running this build dies mid-build


class Raising:
    def on_flow_end(self, e):
        if e.result.flow == "calc":
            raise RuntimeError("hook broke on purpose")

    def on_scenario_end(self, e):
        raise ValueError("scenario hook broke")
'''

BUILD = """
from ductaflow import step
step("flows/calc.py", config={"x": config["x"]})
"""

CONDUCT = """
import sys
import pandas as pd
from ductaflow import conduct

if __name__ == "__main__":
    table = pd.DataFrame({"name": ["one", "two"], "x": [1, 2]})
    out = conduct(table, "builds/b.py", instance_column="name", raise_on_failure=False, progress=False, **%s)
    print(out[["instance", "status", "error"]].to_json(orient="records"))
"""


def _project(tmp_path: Path, hooks: str = "") -> Path:
    root = make_project(tmp_path)
    (root / "pyproject.toml").write_text(f"[tool.ductaflow]\nhooks = [{hooks}]\n" if hooks else "")
    (root / "hooks.py").write_text(HOOKS)
    body = ('# %%\nfrom pathlib import Path\nfrom ductaflow import artifacts, record\nrecord(y=config["x"] * 10)\n'
            'Path("out.txt").write_text("x" * config["x"])\nartifacts("out.txt")\nprint("x is", config["x"])')
    write_flow(root, "calc", body, params='config = {"x": 0}')
    (root / "builds").mkdir()
    (root / "builds" / "b.py").write_text(
        '# %% tags=["parameters"]\nconfig = {"x": 0}\n\n# %%\n' + textwrap.dedent(BUILD), encoding="utf-8"
    )
    return root


def _conduct(root: Path, env: dict[str, str] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    script = root / "conduct.py"
    script.write_text(CONDUCT % repr(kwargs))
    proc = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _events(root: Path) -> list[dict[str, Any]]:
    log = root / "hook_events.jsonl"
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return events


def test_hooks_fire_in_order_in_the_conductor_and_where_each_flow_runs(tmp_path: Path) -> None:
    root = _project(tmp_path, hooks='"hooks:Recorder"')
    rows = _conduct(root)
    assert [r["status"] for r in rows] == ["green", "green"]
    events = _events(root)
    methods = [e["method"] for e in events]
    assert methods[0] == "on_sweep_start" and methods[-1] == "on_sweep_end"
    conductor = events[0]["pid"]
    assert events[0]["to_run"] == 2 and events[-1]["state"] == "finished" and events[-1]["counts"]["green"] == 2
    coordinator = [e for e in events if e["method"].startswith(("on_sweep", "on_scenario"))]
    assert {e["pid"] for e in coordinator} == {conductor}
    for name in ("one", "two"):
        mine = [e for e in events if e["subject"] == name or e.get("instance") == name]
        assert [e["method"] for e in mine] == ["on_scenario_start", "on_scenario_end"]
    flows = [e for e in events if e["method"].startswith("on_flow")]
    assert [(e["method"], e["subject"]) for e in flows].count(("on_flow_start", "b")) == 2
    build_pids = {e["pid"] for e in flows if e["subject"] == "b"}
    calc_pids = {e["pid"] for e in flows if e["subject"] == "calc"}
    assert conductor not in build_pids | calc_pids  # builds run in worker processes ...
    assert not build_pids & calc_pids  # ... and a step runs in its build's kernel
    for pid in calc_pids:  # each step's events sit between its build's start and end, in order
        own = [e["method"] for e in flows if e["pid"] == pid]
        assert own == ["on_flow_start", "on_flow_end"]
    starts = {e["subject"]: i for i, e in enumerate(events) if e["method"] == "on_flow_start"}
    assert all(e["state"] == "running" for e in flows if e["method"] == "on_flow_start")
    assert starts  # (indices checked per scenario below)
    for name in ("one", "two"):
        i_start = next(i for i, e in enumerate(events) if e["method"] == "on_scenario_start" and e["subject"] == name)
        i_end = next(i for i, e in enumerate(events) if e["method"] == "on_scenario_end" and e["subject"] == name)
        between = [e["method"] for e in events[i_start:i_end] if e["method"].startswith("on_flow")]
        assert len(between) >= 4  # its build's and its step's start and end came before its end

    _conduct(root)  # nothing changed: every scenario is skipped, no flow runs
    again = [(e["method"], e["subject"]) for e in _events(root)]
    assert again[1:-1] == [("on_scenario_skip", "one"), ("on_scenario_skip", "two")]


def test_a_raising_hook_is_recorded_with_its_traceback_and_leaves_the_light(tmp_path: Path) -> None:
    root = _project(tmp_path)
    rows = _conduct(root, hooks=["hooks:Raising"])
    assert [r["status"] for r in rows] == ["green", "green"]
    calc = read_json(root / "runs" / "b" / "one" / "runs" / "calc" / "calc_status.json")
    assert calc["status"] == "green"
    [failure] = calc["hook_failures"]
    assert failure["hook"] == "hooks:Raising" and failure["method"] == "on_flow_end"
    assert failure["error"] == "RuntimeError: hook broke on purpose" and "raise RuntimeError" in failure["traceback"]
    state = read_json(root / "runs" / ".ductaflow" / "conductor" / "b.json")
    row = next(r for r in state["scenarios"] if r["instance"] == "one")
    assert sorted((f["method"], f["flow"]) for f in row["hook_failures"]) == [
        ("on_flow_end", "calc"), ("on_scenario_end", None)]  # fmt: skip
    report = (root / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    assert "hook broke on purpose" in report and "scenario hook broke" in report

    rows = _conduct(root, hooks=["hooks:Raising"], hooks_fail="red", force=True)
    assert [r["status"] for r in rows] == ["red", "red"]
    assert all("hook" in r["error"] for r in rows), rows
    calc = read_json(root / "runs" / "b" / "one" / "runs" / "calc" / "calc_status.json")
    assert calc["status"] == "red" and calc["error"]["type"] == "HookFailed"


def test_hooks_fail_stop_starts_no_further_scenario(tmp_path: Path) -> None:
    root = _project(tmp_path)
    rows = _conduct(root, hooks=["hooks:Raising"], hooks_fail="stop", max_parallel=1, executor="serial")
    assert rows[0]["status"] == "red" and rows[1]["status"] is None, rows
    state = read_json(root / "runs" / ".ductaflow" / "conductor" / "b.json")
    assert state["state"] == "stopped"


def test_on_flow_and_scenario_error_fire_for_a_kernel_that_cannot_start(tmp_path: Path) -> None:
    root = _project(tmp_path, hooks='"hooks:Recorder"')
    spec = tmp_path / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    argv = [str(tmp_path / "no-such-python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Broken", "language": "python"}))
    build = root / "builds" / "b.py"
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     name: broken\n#     display_name: Broken\n"
              "#     language: python\n# ---\n\n")
    build.write_text(header + build.read_text(encoding="utf-8"), encoding="utf-8")
    rows = _conduct(root, env={"JUPYTER_PATH": str(tmp_path / "jupyter")})
    assert [r["status"] for r in rows] == ["red", "red"]
    events = _events(root)
    conductor = events[0]["pid"]
    errors = [e for e in events if e["method"] == "on_scenario_error"]
    assert sorted(e["subject"] for e in errors) == ["one", "two"] and {e["pid"] for e in errors} == {conductor}
    flow_errors = [e for e in events if e["method"] == "on_flow_error" and e["subject"] == "b"]
    assert len(flow_errors) == 2 and conductor not in {e["pid"] for e in flow_errors}
    assert not [e for e in events if e["method"] == "on_scenario_end"]


def test_run_notebook_hooks_and_a_refused_config_reach_on_flow_error(tmp_path: Path) -> None:
    root = _project(tmp_path)
    flow = root / "flows" / "calc.py"
    sys.path.insert(0, str(root))
    try:
        from hooks import Recorder  # the project's hooks.py, as a user's notebook would import it

        result = run_notebook(flow, {"x": 3}, project_root=root, instance_name="i", hooks=[Recorder()])
        assert result.status.value == "green"
        seen = [(e["method"], e["subject"]) for e in _events(root)]
        assert seen == [("on_flow_start", "calc"), ("on_flow_end", "calc")]
        with pytest.raises(ConfigError):
            run_notebook(flow, {"_secret": 1}, project_root=root, instance_name="j", hooks=["hooks:Recorder"])
        [event] = _events(root)
        assert (event["method"], event["error"]) == ("on_flow_error", "ConfigError")
        assert not (root / "runs" / "calc" / "j").exists()  # refused before anything was written
        with pytest.raises(ConfigError, match="no_such_module"):
            run_notebook(flow, {"x": 1}, project_root=root, instance_name="k", hooks=["no_such_module:Hook"])
        with pytest.raises(ConfigError, match="hooks_fail"):
            run_notebook(flow, {"x": 1}, project_root=root, instance_name="k", hooks_fail="sometimes")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("hooks", None)


# ---------------------------------------------------------------- trackers
def test_the_noop_tracker_logs_every_flow_of_a_sweep_and_the_report_links_it(tmp_path: Path) -> None:
    from ductaflow.trackers.noop import NoopTracker, read_events

    root = _project(tmp_path)
    rows = _conduct(root, trackers=["noop"])
    assert [r["status"] for r in rows] == ["green", "green"]
    calc_dir = root / "runs" / "b" / "two" / "runs" / "calc"
    calc = read_json(calc_dir / "calc_status.json")
    [binding] = calc["trackers"]
    assert binding["backend"] == "noop" and binding["project"] == "proj" and binding["group"] == "b"
    events_file = calc_dir / "tracker" / binding["run_id"] / "events.jsonl"
    assert binding["url"] == events_file.as_uri()
    events = read_events(events_file)
    assert [e["event"] for e in events] == ["init_run", "log", "log", "log_artifact", "log_artifact", "log_artifact",
                                            "set_tags", "finish"]  # fmt: skip
    assert all(e["at"].endswith("+00:00") for e in events)
    init = events[0]
    assert init["config"] == {"x": 2} and init["run_name"] == "b/two/runs/calc"
    assert init["tags"]["scenario.x"] == "2" and init["tags"]["sweep"] == calc["sweep"]
    assert (events[1]["metrics"], events[1]["step"]) == ({"y": 20}, 0)  # live, from the flow's kernel
    assert (events[2]["metrics"], events[2]["step"]) == ({"y": 20}, None)  # and all of them at the end
    assert events[0]["at"] <= events[1]["at"] <= events[2]["at"]
    sizes = {e["name"]: e["size_bytes"] for e in events if e["event"] == "log_artifact"}
    assert sizes == {"notebook": (calc_dir / "calc.ipynb").stat().st_size,
                     "log": (calc_dir / "calc_execution_output.txt").stat().st_size, "out.txt": 2}  # fmt: skip
    assert events[-2]["tags"] == {"light": "green"} and events[-1]["exit_code"] == 0
    build = read_json(root / "runs" / "b" / "two" / "b_status.json")
    assert [t["backend"] for t in build["trackers"]] == ["noop"]

    runs = NoopTracker(root / "runs").list_runs(project="proj", group_prefix="b")
    assert len(runs) == 4 and {r.id for r in runs} >= {binding["run_id"]}
    report = (root / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    assert f'href="b/two/runs/calc/tracker/{binding["run_id"]}/events.jsonl"' in report


def test_an_unknown_or_uninstalled_tracker_refuses_the_run_with_a_hint(tmp_path: Path) -> None:
    import importlib.util

    from flowkit import ductaflow_cmd

    root = _project(tmp_path)
    proc = ductaflow_cmd("run", "flows/calc.py", "--instance", "t", "--tracker", "nope", cwd=root)
    assert proc.returncode == 2 and "unknown tracker 'nope' (did you mean noop?)" in proc.stderr
    if importlib.util.find_spec("wandb") is None:
        proc = ductaflow_cmd("run", "flows/calc.py", "--instance", "t", "--tracker", "wandb", cwd=root)
        assert proc.returncode == 2 and "pip install 'ductaflow[wandb]'" in proc.stderr
    assert not (root / "runs" / "calc" / "t").exists()


def test_mlflow_reads_back_params_metrics_artifacts_and_nesting_of_a_sweep(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    root = _project(tmp_path)
    rows = _conduct(root, env={"MLFLOW_TRACKING_URI": ""}, trackers=["mlflow"])
    assert [r["status"] for r in rows] == ["green", "green"]
    calc = read_json(root / "runs" / "b" / "one" / "runs" / "calc" / "calc_status.json")
    build = read_json(root / "runs" / "b" / "one" / "b_status.json")
    assert calc["hook_failures"] == [] and build["hook_failures"] == []
    [calc_run], [build_run] = calc["trackers"], build["trackers"]
    assert calc_run["backend"] == build_run["backend"] == "mlflow" and calc_run["group"] == "b"

    client = MlflowClient(f"sqlite:///{root / 'runs' / '.ductaflow' / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(calc_run["run_id"])
    assert run.data.params == {"x": "1"} and run.data.metrics == {"y": 10.0}
    assert run.data.tags["mlflow.parentRunId"] == build_run["run_id"]  # nested under its build
    assert run.data.tags["light"] == "green" and run.data.tags["scenario.x"] == "1"
    assert run.info.status == "FINISHED" and run.info.run_name == "b/one/runs/calc"
    assert sorted(a.path for a in client.list_artifacts(calc_run["run_id"])) == [
        "calc.ipynb", "calc_execution_output.txt", "out.txt"]  # fmt: skip
    history = client.get_metric_history(calc_run["run_id"], "y")
    assert [m.value for m in history] == [10.0, 10.0]  # logged live from the kernel, then at the end
    experiment = client.get_experiment_by_name("b")
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 4  # two builds, two steps


def test_wandb_offline_runs_land_in_their_instance_dirs_and_sync_offline_lists_them(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from flowkit import ductaflow_cmd

    root = _project(tmp_path)
    (root / "pyproject.toml").write_text("[tool.ductaflow]\ntracker_offline = true\n")
    home = {f"WANDB_{k}_DIR": str(tmp_path / f"wandb-{k.lower()}") for k in ("CONFIG", "CACHE", "DATA")}
    rows = _conduct(root, env=home, trackers=["wandb"])
    assert [r["status"] for r in rows] == ["green", "green"]  # W&B's own chatter never reaches a flow's log
    folders = []
    for name in ("one", "two"):
        for where, flow in ((root / "runs" / "b" / name, "b"), (root / "runs" / "b" / name / "runs" / "calc", "calc")):
            [binding] = read_json(where / f"{flow}_status.json")["trackers"]
            assert binding["backend"] == "wandb" and binding["group"] == "b"
            [folder] = (where / "wandb").glob("offline-run-*")
            assert folder.name.endswith(f"-{binding['run_id']}") and binding["url"] == folder.as_uri()
            assert (folder / f"run-{binding['run_id']}.wandb").is_file()
            folders.append(folder)
    proc = ductaflow_cmd("sync-offline", "runs", "--dry-run", cwd=root)
    assert proc.returncode == 0, proc.stderr
    listed = [line for line in proc.stdout.splitlines() if "offline-run-" in line]
    assert sorted(listed) == sorted(str(f.relative_to(root)) for f in folders) and "4 offline run(s)" in proc.stdout


def test_a_lost_worker_reaches_on_flow_error_and_on_scenario_error_in_the_conductor(tmp_path: Path) -> None:
    root = _project(tmp_path, hooks='"hooks:Recorder", "hooks:KillsItsWorker"')
    rows = _conduct(root, max_parallel=1)
    by_name = {r["instance"]: r for r in rows}
    assert by_name["one"]["status"] == "red" and by_name["one"]["error"].startswith("worker_lost")
    assert by_name["two"]["status"] == "green"
    events = _events(root)
    conductor = events[0]["pid"]
    [scenario_error] = [e for e in events if e["method"] == "on_scenario_error"]
    assert scenario_error["subject"] == "one" and scenario_error["pid"] == conductor
    lost = [e for e in events if e["method"] == "on_flow_error" and e["subject"] == "b"]
    assert [e["pid"] for e in lost] == [conductor] and lost[0]["error"] == "WorkerLost"
