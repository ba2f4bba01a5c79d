"""``ductaflow conduct --cluster slurm`` end to end against a fake SLURM (tests/fakeslurm/).

The conductor runs as a command with the fake ``sbatch``/``squeue``/``scancel`` first on its
PATH, in a temporary project whose pyproject.toml holds ``[tool.ductaflow.cluster]``.
dask-jobqueue builds the job scripts and submits them; the fake runs each job on this
machine: real Dask workers, real kernels. The fixture reaps every fake job at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("dask_jobqueue")

FAKESLURM = Path(__file__).resolve().parent / "fakeslurm"
MARKER = "FAKESLURM_JOB"
COMMAND = str(Path(sys.executable).with_name("ductaflow"))

FLOW = '''\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config
config = flow_config(config, "config/flows/work.json")

# %%
import os
import time
from pathlib import Path
time.sleep(config["sleep"])
Path("job.txt").write_text(os.environ.get("SLURM_JOB_ID", "not in a job"))
'''

BUILD = '''\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")

# %%
step("flows/work.py", "work", {"label": config["label"], "sleep": config["sleep"]})
'''

TABLE = f"""\
[tool.ductaflow.cluster]
cores = 2
processes = 2
memory = "2GiB"
walltime = "00:10:00"
queue = "debugq"
account = "proj42"
job_name = "df-test"
job_extra_directives = ["--qos=short", "--constraint=fake"]
job_script_prologue = ["export FAKE_PROLOGUE=ran"]
interface = "lo"
python = "{sys.executable}"
minimum_jobs = 0
maximum_jobs = 2
dashboard_address = ":0"
"""


class FakeSlurm:
    """The fake's state folder and the environment that puts it first on PATH."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DUCTAFLOW_", "FAKESLURM_", "SLURM_"))}
        self.env.update(
            PATH=f"{FAKESLURM}{os.pathsep}{os.environ.get('PATH', '')}",
            FAKESLURM_DIR=str(state),
            FAKESLURM_PYTHON=sys.executable,
            FAKESLURM_KILL_WAIT="3",
            PYTHONUNBUFFERED="1",
        )

    def jobs(self) -> dict[str, dict[str, object]]:
        """Job id -> its record (name, state, times)."""
        out = {}
        for path in self.state.glob("*.json"):
            try:
                out[path.stem] = json.loads(path.read_text())
            except ValueError:  # being replaced this very moment: read it again
                time.sleep(0.05)
                out[path.stem] = json.loads(path.read_text())
        return out

    def script(self, job: str) -> str:
        return (self.state / f"{job}.sh").read_text()

    def live(self) -> list[int]:
        """Processes of any fake job still alive (the marker the fake sbatch puts in their environment)."""
        wanted = f"{MARKER}={self.state}/".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if any(item.startswith(wanted) for item in environ.split(b"\0")):
                pids.append(int(entry.name))
        return pids

    def wait_for_none(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for every job process to end; returns the survivors."""
        deadline = time.monotonic() + timeout
        while (alive := self.live()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return alive

    def reap(self, timeout: float = 60) -> list[int]:
        """``scancel`` every job; SIGKILL what survives that. Returns what had to be killed here."""
        ids = sorted(self.jobs())
        if ids:
            subprocess.run([str(FAKESLURM / "scancel"), *ids], env=self.env, capture_output=True, timeout=timeout)
        survivors = self.wait_for_none(10)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return survivors


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[FakeSlurm]:
    fake = FakeSlurm(tmp_path / "slurm state")
    fake.state.mkdir()
    try:
        yield fake
    finally:
        left = fake.reap()
        assert not left, f"fake SLURM job processes outlived the test (killed now): {left}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "slurm project"
    for sub in ("flows", "builds", "config/flows", "config/builds"):
        (root / sub).mkdir(parents=True)
    (root / "pyproject.toml").write_text(TABLE)
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    defaults = {"label": "x", "sleep": 0}
    (root / "config" / "flows" / "work.json").write_text(json.dumps(defaults))
    (root / "config" / "builds" / "pipe.json").write_text(json.dumps(defaults))
    return root


def _conduct(project: Path, slurm: FakeSlurm, table: pd.DataFrame, *args: str,
             timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    table.to_csv(project / "scenarios.csv", index=False)
    command = [COMMAND, "conduct", "scenarios.csv", "--build", "builds/pipe.py", "--cluster", "slurm", *args]
    return subprocess.run(command, cwd=project, env={**slurm.env, **env}, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_conduct_on_slurm_runs_every_scenario_in_a_job(project: Path, slurm: FakeSlurm) -> None:
    names = ["a", "b", "c", "d", "e"]
    table = pd.DataFrame({"scenario_name": names, "label": names, "sleep": [1] * 5})
    proc = _conduct(project, slurm, table, "--worker-wait", "120")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "5 scenario(s): 5 green" in output, output
    assert "INFO distributed" not in proc.stderr, "Dask's own logs are for -v"
    # adaptive scaling asked for jobs, within the table's maximum, and every build ran inside one
    jobs = slurm.jobs()
    assert jobs and all(job["name"] == "df-test" for job in jobs.values()), jobs
    spans = [(float(job["submitted"]), float(job.get("ended", float("inf")))) for job in jobs.values()]
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) <= 2, f"more than maximum_jobs: {jobs}"
    ran_in = set()
    for name in names:
        record = json.loads((project / "runs" / "pipe" / name / "pipe_status.json").read_text())
        assert (record["state"], record["status"]) == ("finished", "green"), record
        ran_in.add((project / "runs" / "pipe" / name / "runs" / "work" / "job.txt").read_text())
    assert ran_in <= set(jobs), f"builds ran outside the fake jobs: {ran_in} vs {sorted(jobs)}"
    assert (project / "runs" / "conductor_status_report.html").is_file()
    # the job script sbatch received carries the table's directives
    script = slurm.script(min(jobs))
    for line in ("#SBATCH -J df-test", "#SBATCH -p debugq", "#SBATCH -A proj42", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem=2G", "#SBATCH -t 00:10:00", "#SBATCH --qos=short", "#SBATCH --constraint=fake",
                 "export FAKE_PROLOGUE=ran"):  # fmt: skip
        assert line in script.splitlines(), f"{line!r} not in the job script:\n{script}"
    worker = script.splitlines()[-1]
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:"), worker
    assert "--nworkers 2" in worker and "--nthreads 1" in worker and "--interface lo" in worker, worker
    assert not worker.split()[3].endswith(":8786"), "the scheduler took a fixed port"
    # the cluster closed its jobs: no worker, no kernel is left
    assert slurm.wait_for_none(30) == [], "job processes outlived the conductor"
    assert {job["state"] for job in slurm.jobs().values()} <= {"CANCELLED", "COMPLETED"}


def test_a_job_slurm_refuses_is_shown_and_the_scenarios_are_not_run(project: Path, slurm: FakeSlurm) -> None:
    """sbatch fails (an account SLURM does not know): its error reaches the terminal; with no worker
    for --worker-wait seconds the scenarios are given up as not_run and the exit is non-zero."""
    table = pd.DataFrame({"scenario_name": ["a", "b"], "label": ["a", "b"], "sleep": [0, 0]})
    started = time.monotonic()
    proc = _conduct(project, slurm, table, "--worker-wait", "5", FAKESLURM_REFUSE="^#SBATCH -A proj42$")
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Invalid account or account/partition combination specified" in proc.stderr, output
    assert "no worker connected (sbatch failed: sbatch: error: Batch job submission failed" in output, output
    assert "0 green, 0 orange, 0 red, 2 not run" in output, output
    assert slurm.jobs() == {}
    assert took < 60, f"took {took:.0f} s to give up after a 5 s worker wait"
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    for row in state["scenarios"]:
        assert row["error"].startswith("not_run: no worker connected (sbatch failed: "), row


@pytest.mark.parametrize("processes", [2])
def test_a_build_killed_at_the_job_walltime_is_red_worker_lost(project: Path, slurm: FakeSlurm, processes: int) -> None:
    """SLURM ends a job at its walltime, the build in it too. Adaptive scaling submits another
    job for the build Dask still holds; its re-run there says worker_lost at once. The other
    scenario stays green. Jobs of several worker processes only: there ductaflow itself notices
    the lost job (with one, distributed does); the one-process case (30 s) was cut from the
    suite for its time budget and passes the same way (``processes`` = 1)."""
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text().replace('walltime = "00:10:00"', 'walltime = "0:25"')
    pyproject.write_text(text.replace("processes = 2", f"processes = {processes}"))
    table = pd.DataFrame({"scenario_name": ["long", "short"], "label": ["l", "s"], "sleep": [120, 0]})
    # a lost job is taken as gone after 2 s, not the default 15 s
    proc = _conduct(project, slurm, table, "--worker-wait", "120", DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT="2s")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    results = pd.read_parquet(project / "runs" / "pipe" / "results.parquet").set_index("scenario_name")
    assert results.loc["short", "status"] == "green", results.loc["short"].to_dict()
    assert results.loc["long", "status"] == "red", results.loc["long"].to_dict()
    assert str(results.loc["long", "error"]).startswith("worker_lost: the worker running it died"), output
    if processes > 1:  # distributed notices a lost job of one worker itself; ductaflow does for several
        assert "the Dask workers of SLURMCluster-0 are all gone" in proc.stderr, output
    states = sorted(str(job["state"]) for job in slurm.jobs().values())
    assert states[-1] == "TIMEOUT" and len(states) >= 2, f"no job after the one killed at its walltime: {states}"
    assert slurm.wait_for_none(30) == []


def test_ctrl_c_stops_the_builds_and_cancels_the_jobs(project: Path, slurm: FakeSlurm) -> None:
    """Ctrl-C reaches the conductor's orderly stop (dask-jobqueue's import-time SIGINT handler
    is undone): running builds are recorded interrupted, the jobs cancelled, exit 130."""
    names = ["a", "b", "c", "d"]
    pd.DataFrame({"scenario_name": names, "label": names, "sleep": [120] * 4}).to_csv(
        project / "slow.csv", index=False
    )
    command = [COMMAND, "conduct", "slow.csv", "--build", "builds/pipe.py", "--cluster", "slurm"]
    proc = subprocess.Popen(command, cwd=project, env=slurm.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    logs = project / "runs" / "pipe"
    deadline = time.monotonic() + 120
    while len(list(logs.glob("*/runs/work/work_status.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.3)
    if time.monotonic() >= deadline:
        proc.kill()
        pytest.fail(f"the builds never started: {proc.communicate(timeout=30)[0]}")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "interrupted: stopping running builds" in output, output
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "interrupted"
    for row in state["scenarios"]:
        assert row["status"] == "red" and row["error"].endswith("interrupted"), row
    assert {job["state"] for job in slurm.jobs().values()} == {"CANCELLED"}
    assert slurm.wait_for_none(30) == []

