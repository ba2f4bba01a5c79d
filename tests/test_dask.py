"""The conductor on Dask distributed, with a real LocalCluster of two worker processes and
real kernels: same lights and files as local processes, a killed worker, re-submission,
fail-fast, Ctrl-C, a runs root the workers cannot see, and the missing-extra hint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from procs import run_or_dump, wait_for_no_kernels
from test_example import _copy_example, _env, _no_inherited_root  # noqa: F401 - an autouse fixture

from ductaflow import ConductorFailed, SharedFilesystemError, conduct, ledger
from ductaflow.conductor.executors.dask import DaskBackend
from ductaflow.conductor.worker import claim_attempt

distributed = pytest.importorskip("distributed")

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
time.sleep(config.get("sleep", 0))
if config.get("fail"):
    raise RuntimeError("asked to fail")
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
step("flows/work.py", "work", {k: config[k] for k in ("label", "sleep", "fail")})
'''


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit=0, dashboard_address=":0"
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "dask project"
    for sub in ("flows", "builds", "config/flows", "config/builds"):
        (root / sub).mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    defaults = {"label": "x", "sleep": 0, "fail": False}
    (root / "config" / "flows" / "work.json").write_text(json.dumps(defaults))
    (root / "config" / "builds" / "pipe.json").write_text(json.dumps(defaults))
    return root


def _files(runs: Path) -> set[str]:
    """Artifact paths of every instance, relative to the build dir (bookkeeping excluded)."""
    return {
        p.relative_to(runs).as_posix()
        for p in runs.rglob("*")
        if p.is_file() and not p.name.startswith(".") and ".ductaflow" not in p.parts
    }


def test_example_on_dask_gives_the_same_lights_and_files_as_local(client, tmp_path: Path) -> None:
    project = _copy_example(tmp_path / "example project")
    scenarios, build = project / "config" / "scenarios.csv", project / "builds" / "demand_model.py"
    on_dask = conduct(scenarios, build, executor=client, runs_root="runs_dask", progress=False)
    on_local = conduct(scenarios, build, executor="local", max_parallel=2, runs_root="runs_local", progress=False)
    lights = dict(zip(on_dask["instance"], on_dask["status"], strict=True))
    assert lights == {"base": "green", "high_growth": "orange", "high_growth_recalibrated": "green"}
    assert lights == dict(zip(on_local["instance"], on_local["status"], strict=True))
    assert list(on_dask["mean_trip_length"]) == list(on_local["mean_trip_length"])
    dask_files, local_files = _files(project / "runs_dask"), _files(project / "runs_local")
    assert "demand_model/base/runs/summarize/kpis.csv" in dask_files
    assert dask_files == local_files
    # the conductor alone wrote the ledger: every build and flow run is there, no spool is left
    runs = ledger(project / "runs_dask")
    assert sorted(runs.loc[runs["kind"] == "build", "instance"]) == ["base", "high_growth", "high_growth_recalibrated"]
    assert (runs["kind"] == "flow").sum() == 9
    assert not (project / "runs_dask" / ".ductaflow" / "spool").exists()
    assert (project / "runs_dask" / "conductor_status_report.html").is_file()


def test_identical_submissions_both_run(client, tmp_path: Path) -> None:
    """Dask would hand back the first result for a pure, identical call; ours must run twice."""
    backend = DaskBackend(client, None)
    counter = tmp_path / "attempts.json"
    first = backend.submit(claim_attempt, counter)
    assert first.result(timeout=30) == 1
    second = backend.submit(claim_attempt, counter)  # same function, same argument, first still held
    assert second.result(timeout=30) == 2
    backend.shutdown()


def test_rerunning_a_scenario_with_force_runs_it_again(client, project: Path) -> None:
    table = pd.DataFrame({"scenario_name": ["same"], "label": ["a"]})
    conduct(table, project / "builds" / "pipe.py", executor=client, progress=False)
    conduct(table, project / "builds" / "pipe.py", executor=client, progress=False, force=True)
    runs = ledger(project / "runs")
    builds = runs[runs["kind"] == "build"]
    assert list(builds["event"]) == ["run", "run"]
    assert builds["started"].nunique() == 2


def test_fail_fast_cancels_the_rest_on_dask(client, project: Path) -> None:
    table = pd.DataFrame({"label": list("abc"), "fail": [True, False, False]})
    out = conduct(
        table, project / "builds" / "pipe.py", executor=client, max_parallel=1, fail_fast=True,
        progress=False, raise_on_failure=False,
    )
    assert out.loc[0, "status"] == "red"
    assert list(out["state"][1:]) == ["cancelled", "cancelled"]


def test_killed_worker_is_red_worker_lost_and_the_rest_completes(client, project: Path) -> None:
    table = pd.DataFrame({"scenario_name": ["victim", "a", "b"], "label": list("vab"), "sleep": [120, 0, 0]})
    pid_file = project / "runs" / "pipe" / "victim" / "worker.pid"
    killed: list[int] = []

    def kill_victims_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pid_file.is_file() and pid_file.read_text()):
            time.sleep(0.2)
        time.sleep(1.0)  # let the nested flow's kernel start too
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    import threading

    killer = threading.Thread(target=kill_victims_worker, daemon=True)
    killer.start()
    out = conduct(table, project / "builds" / "pipe.py", executor=client, progress=False, raise_on_failure=False)
    killer.join(5)
    assert killed, "the victim's worker was never found"
    rows = out.set_index("scenario_name")
    assert rows.loc["victim", "status"] == "red"
    assert rows.loc["victim", "error"].startswith("worker_lost")
    assert list(rows.loc[["a", "b"], "status"]) == ["green", "green"]
    record = json.loads((project / "runs" / "pipe" / "victim" / "pipe_status.json").read_text())
    assert (record["state"], record["status"], record["error"]["type"]) == ("finished", "red", "WorkerLost")
    runs = ledger(project / "runs")
    victim = runs[(runs["kind"] == "build") & (runs["instance"] == "victim")]
    assert list(victim["status"]) == ["red"] and victim["duration"].notna().all(), victim
    # the flow that died with the worker has its row too, with how long it ran and why it ended
    killed = runs[(runs["kind"] == "flow") & runs["instance_dir"].str.startswith("pipe/victim/")]
    assert list(killed["status"]) == ["red"] and killed["duration"].notna().all(), killed
    assert killed["error_message"].str.startswith("worker_lost").all(), killed["error_message"]
    assert wait_for_no_kernels(str(project)) == [], "the dead worker's kernels outlived it"
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def test_a_retried_build_logs_its_lost_attempt_and_ends_green(client, project: Path) -> None:
    """``lost_retries=1``: the worker dies under attempt 1; Dask re-runs the task, attempt 2 closes
    what attempt 1 left open (a red ledger row each) and runs the build to green."""
    table = pd.DataFrame({"scenario_name": ["victim"], "label": ["v"], "sleep": [8]})
    pid_file = project / "runs" / "pipe" / "victim" / "worker.pid"
    killed: list[int] = []

    def kill_once() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pid_file.is_file() and pid_file.read_text()):
            time.sleep(0.2)
        time.sleep(1.0)
        killed.append(int(pid_file.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_once, daemon=True)
    killer.start()
    out = conduct(table, project / "builds" / "pipe.py", executor=client, progress=False, lost_retries=1)
    killer.join(5)
    assert killed and list(out["status"]) == ["green"], out[["status", "error"]]
    runs = ledger(project / "runs")
    builds = runs[runs["kind"] == "build"].sort_values("started")
    assert list(builds["status"]) == ["red", "green"], builds[["status", "error_message"]]
    lost = "worker_lost: the worker running attempt 1 died; re-run as attempt 2"
    assert builds["error_message"].iloc[0] == lost, builds["error_message"]
    assert builds["duration"].notna().all()
    client.wait_for_workers(2, timeout=60)


def test_ctrl_c_on_a_dask_local_cluster_stops_builds_and_kernels(project: Path) -> None:
    pd.DataFrame({"label": list("ab"), "sleep": [120, 120]}).to_csv(project / "slow.csv", index=False)
    command = [str(Path(sys.executable).with_name("ductaflow")), "conduct", "slow.csv", "--build", "builds/pipe.py"]
    proc = subprocess.Popen(
        [*command, "--executor", "dask", "--parallel", "2"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal job
    )
    logs = project / "runs" / "pipe"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len([p for p in logs.glob("*/runs/work/work_execution_output.txt") if p.read_text()]) >= 2:
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"builds never started: {proc.communicate()[0]}")
    os.killpg(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=90)[0]
    assert proc.returncode == 130, output
    records = sorted(logs.glob("*/runs/work/work_status.json"))
    assert len(records) == 2
    for path in records:
        nested = json.loads(path.read_text())
        assert (nested["state"], nested["status"], nested["interrupted"]) == ("finished", "red", True), path
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "interrupted"
    assert [s["status"] for s in state["scenarios"]] == ["red", "red"]
    assert (project / "runs" / "conductor_status_report.html").is_file()
    assert wait_for_no_kernels(str(project)) == []


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class HiddenRunsRoot:
    """A real scheduler on an OS-given port, and workers started on demand in their own mount
    namespace, where ``hidden`` (the runs root's parent) is an empty tmpfs: workers that see
    the project but not the runs root."""

    def __init__(self, tmp_path: Path) -> None:
        self.hidden = tmp_path / "local disk"
        self.hidden.mkdir()
        self.dask = str(Path(sys.executable).with_name("dask"))
        self.workers: list[subprocess.Popen[bytes]] = []
        sched_file, log = tmp_path / "scheduler.json", tmp_path / "scheduler.log"
        self._log = log.open("w")
        # --port 0: a port the OS hands out, read back from the scheduler file. The default, 8786, is
        # held here meanwhile, so a scheduler that still wanted it would die (and fail the test).
        self._busy = socket.socket()
        with contextlib.suppress(OSError):  # already taken by someone else: the same situation
            self._busy.bind(("127.0.0.1", 8786))
            self._busy.listen()
        self.scheduler = subprocess.Popen(
            [self.dask, "scheduler", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.address = _scheduler_address(self.scheduler, sched_file, log)

    def start_worker(self, hidden: bool = True) -> None:
        """A one-thread worker; ``hidden``: in its own mount namespace, without the runs root."""
        worker = [self.dask, "worker", self.address, "--nthreads", "1", "--no-dashboard"]
        if hidden:
            cmd = f"mount -t tmpfs tmpfs '{self.hidden}' && exec {' '.join(repr(a) for a in worker)}"
            worker = ["unshare", "-m", "sh", "-c", cmd]
        self.workers.append(subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            _stop(proc)
        self._log.close()
        self._busy.close()


@pytest.fixture
def hidden_root(tmp_path: Path) -> Iterator[HiddenRunsRoot]:
    if not _can_unshare():
        pytest.skip("needs `unshare -m` to give a worker its own filesystem view")
    cluster = HiddenRunsRoot(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def test_runs_root_the_workers_cannot_see_is_a_clear_error(project: Path, hidden_root: HiddenRunsRoot) -> None:
    """A real worker in its own mount namespace, where the runs root's parent is an empty tmpfs."""
    hidden = hidden_root.hidden
    hidden_root.start_worker()
    with distributed.Client(hidden_root.address, timeout="30s") as c:
        c.wait_for_workers(1, timeout=60)
        (hidden / "runs").mkdir()
        keep = hidden / "runs" / "keep.txt"
        keep.write_text("earlier results")
        table = pd.DataFrame({"label": ["a"]})
        with pytest.raises(SharedFilesystemError, match="not shared with the Dask workers") as info:
            conduct(table, project / "builds" / "pipe.py", executor=c, runs_root=hidden / "runs", progress=False)
        assert str(hidden / "runs") in str(info.value) and "cannot read" in str(info.value)
        assert keep.read_text() == "earlier results"
        assert not (hidden / "runs" / "pipe").exists(), "a build started anyway"
        address = c.scheduler.address
    table.to_csv(project / "one.csv", index=False)
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("ductaflow")), "conduct", "one.csv", "--build", "builds/pipe.py",
         "--runs-root", str(hidden / "runs"), "--scheduler", address],
        cwd=project, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "not shared with the Dask workers" in cli.stderr and "Traceback" not in cli.stderr


def test_a_late_worker_with_its_own_disk_never_gives_a_green_row(project: Path, hidden_root: HiddenRunsRoot) -> None:
    """The silent loss of issue 15: with ``max_parallel`` no start-up check ran, and a worker
    that joined later, in its own mount namespace (an empty tmpfs over the runs root's
    parent), ran the builds into its own disk. Now a worker is checked when it joins: this
    one is excluded and named; with no other worker the scenarios are not run after
    ``worker_wait``, and the sweep fails. Never green."""
    hidden = hidden_root.hidden
    with distributed.Client(hidden_root.address, timeout="30s") as c:
        table = pd.DataFrame({"label": ["a", "b"]})
        done: list[object] = []

        def sweep() -> None:  # started before any worker exists, as a SLURM job still queued
            try:
                done.append(conduct(table, project / "builds" / "pipe.py", executor=c, max_parallel=1,
                                    runs_root=hidden / "runs", progress=False, raise_on_failure=False,
                                    worker_wait=6))  # fmt: skip
            except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
                done.append(exc)

        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        time.sleep(2.0)  # the conductor has planned; no worker has joined yet
        hidden_root.start_worker()
        thread.join(timeout=180)
        assert done, "the sweep did not end"
        out = done[0]
        assert isinstance(out, pd.DataFrame), out
        assert "green" not in set(out["status"]), out[["status", "error"]]
        # checked as it joined: excluded and named before it took a build; nothing else to run on
        for _, row in out.iterrows():
            assert row["state"] == "cancelled" and pd.isna(row["status"]), row.to_dict()
            error = str(row["error"])
            assert error.startswith("not_run: no worker can run builds (1 excluded: tcp://"), error
            assert "cannot read" in error and str(hidden / "runs") in error, error
        assert not (hidden / "runs" / "pipe" / "a" / "pipe_status.json").exists()


def test_slots_follow_the_workers_that_join(project: Path, tmp_path: Path) -> None:
    """Started with one worker thread, the sweep runs two builds at once once a second worker joins."""
    cluster = HiddenRunsRoot(tmp_path)  # only its scheduler and plain workers: nothing is hidden
    try:
        cluster.start_worker(hidden=False)
        with distributed.Client(cluster.address, timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)
            table = pd.DataFrame({"scenario_name": list("abcdef"), "label": list("abcdef"), "sleep": [4] * 6})
            first_started = project / "runs" / "pipe" / "a" / "pipe_status.json"
            joiner = threading.Timer(0.0, lambda: _after(first_started, cluster.start_worker, hidden=False))
            joiner.start()
            out = conduct(table, project / "builds" / "pipe.py", executor=c, progress=False, worker_wait=60)
            joiner.join(60)
        assert list(out["status"]) == ["green"] * 6
        spans = []
        for name in "abcdef":
            rec = json.loads((project / "runs" / "pipe" / name / "pipe_status.json").read_text())
            spans.append((rec["started"], rec["finished"]))
        most = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
        assert most == 2, f"never two builds at once after the second worker joined: {spans}"
    finally:
        cluster.close()


def _after(path: Path, then: Any, **kw: Any) -> None:
    """Call ``then`` once ``path`` exists (bounded wait)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    then(**kw)


def test_a_killed_scheduler_keeps_finished_rows_and_ends_non_zero(project: Path, tmp_path: Path) -> None:
    """The scheduler dies mid-sweep: the finished build stays green, the running one is lost,
    the never-started ones are not run, and ``conduct`` ends (raising) within a bounded time."""
    cluster = HiddenRunsRoot(tmp_path)
    try:
        cluster.start_worker(hidden=False)
        with distributed.Client(cluster.address, timeout="5s") as c:  # its reconnect attempt: 5 s
            c.wait_for_workers(1, timeout=60)
            table = pd.DataFrame({"scenario_name": list("abcd"), "label": list("abcd"), "sleep": [0, 60, 0, 0]})
            running = project / "runs" / "pipe" / "b" / "runs" / "work" / "work_status.json"
            killer = threading.Thread(target=_after, args=(running, cluster.scheduler.kill), daemon=True)
            killer.start()
            t0 = time.monotonic()
            with pytest.raises(ConductorFailed) as info:
                conduct(table, project / "builds" / "pipe.py", executor=c, progress=False)
            took = time.monotonic() - t0
        out = info.value.table.set_index("label")
        assert out.loc["a", "status"] == "green", out.loc["a"].to_dict()
        assert out.loc["b", "status"] == "red" and out.loc["b", "error"].startswith("worker_lost"), out.loc["b"]
        for name in "cd":
            assert out.loc[name, "state"] == "cancelled" and pd.isna(out.loc[name, "status"]), out.loc[name]
            assert out.loc[name, "error"].startswith("not_run: the cluster's scheduler was lost")
        assert took < 50, f"the conductor took {took:.0f} s to give up"
        state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
        assert state["state"] == "finished" and (project / "runs" / "conductor_status_report.html").is_file()
    finally:
        cluster.close()
    assert wait_for_no_kernels(str(project), timeout=30) == []


#: A Dask worker (no nanny: one process) that cannot import ductaflow, as on a node whose
#: environment lacks it.
NO_DUCTAFLOW_WORKER = """
import sys

class NoDuctaflow:
    def find_spec(self, name, path=None, target=None):
        if name == "ductaflow" or name.startswith("ductaflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoDuctaflow())
from distributed.cli.dask_worker import main

sys.argv = ["dask-worker", *sys.argv[1:]]
main()
"""


def test_a_late_worker_without_ductaflow_is_named(project: Path, tmp_path: Path) -> None:
    cluster = HiddenRunsRoot(tmp_path)
    try:
        with distributed.Client(cluster.address, timeout="30s") as c:
            done: list[object] = []

            def sweep() -> None:
                try:
                    done.append(conduct(pd.DataFrame({"label": ["a"]}), project / "builds" / "pipe.py", executor=c,
                                        progress=False, raise_on_failure=False, worker_wait=8))  # fmt: skip
                except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
                    done.append(exc)

            thread = threading.Thread(target=sweep, daemon=True)
            thread.start()
            time.sleep(1.0)
            worker = [sys.executable, "-c", NO_DUCTAFLOW_WORKER, cluster.address, "--nthreads", "1", "--no-nanny",
                      "--no-dashboard"]  # fmt: skip
            cluster.workers.append(subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            thread.join(timeout=120)
        assert done and isinstance(done[0], pd.DataFrame), done
        row = done[0].iloc[0]
        assert row["state"] == "cancelled" and pd.isna(row["status"]), row.to_dict()
        error = str(row["error"])
        assert error.startswith("not_run: no worker can run builds (1 excluded: tcp://"), error
        assert "No module named 'ductaflow'" in error and "is ductaflow installed there?" in error, error
    finally:
        cluster.close()


def _scheduler_address(scheduler: subprocess.Popen[bytes], sched_file: Path, log: Path, timeout: float = 60) -> str:
    """The address a scheduler started with ``--port 0`` wrote to its file (bounded wait; a
    scheduler that exits first fails the test with its output, instead of a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            pytest.fail(f"the dask scheduler exited ({scheduler.returncode}): {log.read_text()[-2000:]}")
        try:
            address = json.loads(sched_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
            continue
        assert not address.endswith(":8786"), address
        return str(address)
    pytest.fail(f"the dask scheduler wrote no address in {timeout:.0f} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate, then kill: never wait without a bound."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def test_dask_without_the_extra_names_the_install_command(project: Path) -> None:
    pd.DataFrame({"label": ["a"]}).to_csv(project / "one.csv", index=False)
    code = textwrap.dedent(
        """
        import sys
        sys.modules["distributed"] = None  # as if the extra were not installed
        from ductaflow.cli import main
        sys.argv = ["ductaflow", "conduct", "one.csv", "--build", "builds/pipe.py", "--executor", "dask"]
        main()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'ductaflow[dask]'" in proc.stderr
    assert not (project / "runs").exists()


def test_the_cli_keeps_dask_quiet_unless_asked(project: Path, tmp_path: Path) -> None:
    """Dask logs INFO on its own loggers (~17 lines per start); the command shows them with -v only.
    A sweep leaves nothing in the temporary folder nor in Jupyter's runtime folder."""
    pd.DataFrame({"label": ["a"]}).to_csv(project / "one.csv", index=False)
    command = [str(Path(sys.executable).with_name("ductaflow"))]
    args = ["conduct", "one.csv", "--build", "builds/pipe.py", "--executor", "dask", "--force"]
    tmp, runtime = tmp_path / "tmp", tmp_path / "runtime"
    tmp.mkdir()
    private = {**_env(), "TMPDIR": str(tmp), "JUPYTER_RUNTIME_DIR": str(runtime)}
    quiet = run_or_dump([*command, *args], 180, cwd=project, env=private)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "INFO distributed" not in quiet.stderr and "1 green" in quiet.stdout + quiet.stderr
    left = sorted(p.name for p in [*tmp.iterdir(), *(runtime.iterdir() if runtime.is_dir() else [])])
    assert left == [], f"left behind: {left}"
    loud = run_or_dump([*command, "-v", *args], 180, cwd=project, env=_env())
    assert loud.returncode == 0 and "INFO distributed" in loud.stderr
