"""Kernels that die, run out of memory, lose their output or never return: each run ends with a
truthful red status record, keeps what the flow printed, and leaves no process behind. The five
flows run at once (three threads) so the section costs about one kernel's time per thread."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
from procs import wait_for_no_kernels
from relkit import read_json

from ductaflow import run_notebook

SECTION = "Kernel faults"
HEAD = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nimport os, signal, sys, time\nfrom pathlib import Path\n'

FAULTS: dict[str, tuple[str, float | None]] = {
    "sigkill": (
        'print("about to be killed", flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\ntime.sleep(30)\n',
        None,
    ),
    "os_exit": ('print("leaving", flush=True)\nos._exit(1)\n', None),
    "memory": (
        "import resource, psutil\n"
        'print("limiting the address space", flush=True)\n'
        "vms = psutil.Process().memory_info().vms\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vms + 300 * 2**20, resource.RLIM_INFINITY))\n"
        "chunks = []\n"
        "while True:\n    chunks.append(bytearray(50 * 2**20))\n",
        30.0,
    ),
    "closed_streams": (
        'print("before closing", flush=True)\nsys.stdout.close()\nsys.stderr.close()\nos.close(1)\nos.close(2)\n'
        'Path("after.txt").write_text("still running")\n\n# %%\nPath("next_cell.txt").write_text("ran")\n'
        'print("printing to a closed stdout")\n',
        None,
    ),
    "forgotten_child": (
        "import subprocess\n"
        'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])\n'
        'Path("child.pid").write_text(str(child.pid))\n'
        'print("child started, now hanging", flush=True)\n'
        "time.sleep(300)\n",
        4.0,
    ),
}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("faults") / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    for name, (body, _) in FAULTS.items():
        (root / "flows" / f"{name}.py").write_text(HEAD + body)

    def one(name: str) -> dict[str, Any]:
        t0 = time.monotonic()
        result = run_notebook(root / "flows" / f"{name}.py", {}, root / "runs" / name, raise_on_failure=False,
                              timeout=FAULTS[name][1] or 90)  # fmt: skip
        return {"result": result, "seconds": time.monotonic() - t0}

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(FAULTS, pool.map(one, FAULTS), strict=True))
    for outcome in done.values():
        outcome["survivors"] = wait_for_no_kernels(str(outcome["result"].execution_dir), timeout=15)
    return done


def _common(outcome: dict[str, Any], first_line: str | None) -> dict[str, Any]:
    """Every fault: red, a finished record on disk, the flow's output kept, no kernel left.

    ``first_line=None`` for a kernel that dies at once: its last line, flushed a moment before,
    is sometimes still unread on IOPub when nbclient gives up on the dead kernel (a known gap,
    see RELIABILITY.md); the log file must exist, its content is reported, not asserted.
    """
    __tracebackhide__ = True
    result = outcome["result"]
    record = read_json(result.status_path)
    assert result.status.value == "red" and record["status"] == "red", record
    assert record["state"] == "finished", "the record must not be left saying 'running'"
    log_text = result.log_path.read_text()
    if first_line is not None:
        assert log_text.startswith(first_line), log_text
    assert outcome["survivors"] == [], f"kernels left behind: {outcome['survivors']}"
    return record


def _last_line(outcome: dict[str, Any], line: str) -> str:
    kept = outcome["result"].log_path.read_text().startswith(line)
    return "its last printed line was kept" if kept else "its last printed line was LOST this time (known gap)"


def test_kernel_sigkilled_mid_cell(faults: dict[str, Any], case) -> None:
    c = case("kernel SIGKILLed mid-cell", "a flow whose cell prints, then SIGKILLs its own kernel (run_notebook)")
    record = _common(faults["sigkill"], None)
    assert record["kernel_died"] is True and record["error"]["cell_index"] == 1
    took = faults["sigkill"]["seconds"]
    kept = _last_line(faults["sigkill"], "about to be killed")
    c.outcome = f"red, kernel_died, cell 1 named, no kernel left, recorded in {took:.0f} s; {kept}"


def test_kernel_os_exit(faults: dict[str, Any], case) -> None:
    c = case("kernel calls os._exit(1)", "a flow whose cell prints, then os._exit(1)")
    record = _common(faults["os_exit"], None)
    assert record["kernel_died"] is True and record["error"]["cell_index"] == 1
    took, kept = faults["os_exit"]["seconds"], _last_line(faults["os_exit"], "leaving")
    c.outcome = f"red, kernel_died, cell 1 named, no kernel left, recorded in {took:.0f} s; {kept}"


def test_memory_limit(faults: dict[str, Any], case) -> None:
    c = case(
        "memory exhausted (RLIMIT_AS)",
        "a flow limits its own address space to +300 MB with resource.setrlimit, then allocates 50 MB chunks forever",
    )
    record = _common(faults["memory"], "limiting the address space")
    died, error = record["kernel_died"], record["error"]
    # A kernel out of address space may die, report MemoryError, reply "error" without the error's
    # details (seen with forked kernels, whose IO thread could not allocate), or never reply at all
    # (seen on CI: no thread can allocate); then the flow's timeout makes it red.
    mute = error["type"] == "CellExecutionError" and "sent no details" in error["message"]
    hung = error["type"] == "Timeout"
    assert died or error["type"] == "MemoryError" or mute or hung, error
    assert died or error["cell_index"] == 1, error
    what = ("kernel died" if died else "MemoryError" if error["type"] == "MemoryError"
            else "a hang ended by the timeout" if hung else "an error without details")  # fmt: skip
    c.outcome = f"red, {what} recorded with its cell; no kernel left"


def test_flow_closes_its_output(faults: dict[str, Any], case) -> None:
    c = case(
        "flow closes stdout and stderr",
        "cell 1 closes sys.stdout, sys.stderr and file descriptors 1 and 2, then writes a file; cell 2 writes a "
        "file, then prints",
    )
    outcome = faults["closed_streams"]
    record = _common(outcome, "before closing")
    inst = outcome["result"].execution_dir
    assert (inst / "after.txt").is_file() and (inst / "next_cell.txt").is_file(), "the flow's own work was lost"
    error = record["error"]
    assert (error["type"], error["cell_index"]) == ("ValueError", 2) and "closed file" in error["message"], error
    c.outcome = (
        f"the kernel survives and both cells do their work; the print to the closed stream is the flow's own "
        f"error: red '{error['type']}: {error['message']}' in cell 2; no hang ({outcome['seconds']:.0f} s), "
        "no kernel left"
    )


def test_forgotten_child_is_reaped_on_timeout(faults: dict[str, Any], case) -> None:
    c = case(
        "flow never returns and forgets a child process",
        "a flow starts a 300 s child process (same process group) and sleeps; run_notebook(timeout=4)",
    )
    outcome = faults["forgotten_child"]
    record = _common(outcome, "child started, now hanging")
    assert record["timed_out"] is True and outcome["seconds"] < 60
    pid = int((outcome["result"].execution_dir / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive, f"the forgotten child {pid} is still running"
    c.outcome = f"red timed_out after {outcome['seconds']:.0f} s; the child (pid {pid}) is gone from the process table"
