"""Failure kinds, phases and retries with real kernels.

A flow that SIGKILLs its own kernel on its first attempt is green after one retry of its
step, with the dead attempt in its history and in the ledger; a build whose step's kernel
died is ``kernel_died`` itself; a ``ValueError`` is not retried; a timeout is ``timeout``; a
kernel that cannot start is ``start_failed``; script mode records ``user_error``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flowkit import make_project, write_flow

import ductaflow
from ductaflow import Status, run_notebook
from ductaflow.store.records import read_status

pytestmark = pytest.mark.kernel

FLAKY = """
# %%
import os
import signal
from pathlib import Path
marker = Path(config["marker"])
if not marker.exists():
    marker.write_text("died once")
    os.kill(os.getpid(), signal.SIGKILL)
print("second time lucky")
"""

BUILD = """
# %%
from ductaflow import step
step("flows/flaky.py", "flaky", {"marker": config["marker"]}, retries=config["retries"], backoff=0)
"""

RAISES = """
# %%
from pathlib import Path
Path("tries.txt").write_text(Path("tries.txt").read_text() + "x" if Path("tries.txt").exists() else "x")
raise ValueError("bad input")
"""

SLEEPS = """
# %%
import time
time.sleep(60)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    (root / "builds").mkdir()
    write_flow(root, "flaky", FLAKY)
    (root / "builds" / "retrying.py").write_text('# %% tags=["parameters"]\nconfig = {}\n\n' + BUILD.lstrip())
    return root


def test_a_step_whose_kernel_died_once_is_green_after_one_retry(project: Path, tmp_path: Path) -> None:
    inst = project / "runs" / "retrying" / "one"
    result = run_notebook(project / "builds" / "retrying.py", {"marker": str(tmp_path / "m1"), "retries": 1}, inst,
                          project, timeout=120)  # fmt: skip
    assert result.status is Status.GREEN and result.kind is None and result.attempt == 1
    step = read_status(inst / "runs" / "flaky" / "flaky_status.json")
    assert step is not None and step.status is Status.GREEN and step.attempt == 2 and step.retried == 1
    [first] = step.history
    assert (first.attempt, first.status, first.kind, first.phase) == (1, "red", "kernel_died", "execute")
    assert first.error is not None and first.error.startswith("DeadKernelError")
    rows = ductaflow.ledger(project / "runs")
    flaky = rows[rows.flow == "flaky"]
    assert flaky.attempt.tolist() == [1, 2] and flaky.status.tolist() == ["red", "green"]
    assert flaky.failure_kind.tolist()[0] == "kernel_died" and flaky.phase.tolist()[0] == "execute"


def test_a_build_whose_step_s_kernel_died_is_kernel_died_itself(project: Path, tmp_path: Path) -> None:
    inst = project / "runs" / "retrying" / "two"
    result = run_notebook(project / "builds" / "retrying.py", {"marker": str(tmp_path / "m2"), "retries": 0}, inst,
                          project, timeout=120, raise_on_failure=False)  # fmt: skip
    assert result.status is Status.RED and result.error is not None and result.error.type == "FlowFailed"
    assert (result.kind, result.phase) == ("kernel_died", "execute")
    on_disk = read_status(result.status_path)
    assert on_disk is not None and (on_disk.kind, on_disk.phase) == ("kernel_died", "execute")
    step = read_status(inst / "runs" / "flaky" / "flaky_status.json")
    assert step is not None and step.kind == "kernel_died" and step.attempt == 1 and step.history == ()
    with pytest.raises(ductaflow.FlowFailed) as failed:  # the same build, run again as a first attempt
        run_notebook(project / "builds" / "retrying.py", {"marker": str(tmp_path / "m3"), "retries": 0},
                     project / "runs" / "retrying" / "three", project, timeout=120)  # fmt: skip
    assert failed.value.kind == "kernel_died"


def test_the_cli_retries_a_flow_whose_kernel_died_and_says_so(project: Path, tmp_path: Path) -> None:
    """``ductaflow run --retries N`` retries as run_notebook(retries=N) and the conductor do;
    without it the same flow stays red."""
    marker = tmp_path / "cli-marker"
    base = [sys.executable, "-m", "ductaflow", "run", "flows/flaky.py", "-r", "marker", str(marker), "--allow-unknown"]
    once = subprocess.run([*base, "--instance", "once"], cwd=project, capture_output=True, text=True, timeout=180)
    assert once.returncode == 1 and "kernel died" in once.stdout, once.stdout + once.stderr
    marker.unlink()
    done = subprocess.run([*base, "--instance", "twice", "--retries", "1", "--backoff", "0"], cwd=project,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "green" in done.stdout and "after 1 retry" in done.stdout
    rec = read_status(project / "runs" / "flaky" / "twice" / "flaky_status.json")
    assert rec is not None and rec.status is Status.GREEN and rec.attempt == 2
    assert [(a.attempt, a.kind) for a in rec.history] == [(1, "kernel_died")]


def test_a_value_error_is_not_retried_unless_named(project: Path) -> None:
    flow = write_flow(project, "raises", RAISES)
    inst = project / "runs" / "raises" / "a"
    result = run_notebook(flow, {}, inst, project, retries=2, backoff=0, raise_on_failure=False)
    assert result.status is Status.RED and (result.kind, result.phase) == ("user_error", "execute")
    assert result.attempt == 1 and result.history == () and (inst / "tries.txt").read_text() == "x"
    named = project / "runs" / "raises" / "b"
    again = run_notebook(flow, {}, named, project, retries=1, retry_on=["ValueError"], backoff=0,
                         raise_on_failure=False)  # fmt: skip
    assert again.status is Status.RED and again.attempt == 2 and (named / "tries.txt").read_text() == "xx"
    assert [(a.attempt, a.kind) for a in again.history] == [(1, "user_error")]


def test_a_timeout_is_kind_timeout_in_execute(project: Path) -> None:
    flow = write_flow(project, "sleeps", SLEEPS)
    result = run_notebook(flow, {}, project / "runs" / "sleeps" / "a", project, timeout=3, raise_on_failure=False)
    assert result.status is Status.RED and result.timed_out and (result.kind, result.phase) == ("timeout", "execute")


def test_a_kernel_that_cannot_start_is_start_failed(project: Path) -> None:
    spec = project.parent / "jupyter" / "kernels" / "deadpy"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Dead", "language": "python"}))
    write_flow(project, "hello", "# %%\nprint('hello')\n")
    env = {**os.environ, "JUPYTER_PATH": str(project.parent / "jupyter")}
    command = [sys.executable, "-m", "ductaflow", "run", "flows/hello.py", "--kernel", "deadpy", "--timeout", "60"]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode != 0
    [record] = (project / "runs").rglob("hello_status.json")
    rec = read_status(record)
    assert rec is not None and rec.status is Status.RED, done.stderr
    assert (rec.kind, rec.phase) == ("start_failed", "start"), rec.error


def test_script_mode_records_user_error_in_execute(project: Path) -> None:
    header = "# %%\nfrom ductaflow import flow_config\nconfig = flow_config(config, 'config/flows/exits.json')\n\n"
    write_flow(project, "exits", header + "# %%\nimport sys\nsys.exit(3)\n", config={})
    out = project / "runs" / "exits" / "s"
    done = subprocess.run([sys.executable, "flows/exits.py", "--output-dir", str(out)], cwd=project,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 3, done.stderr
    rec = read_status(out / "exits_status.json")
    assert rec is not None and rec.mode == "script" and (rec.kind, rec.phase) == ("user_error", "execute")
