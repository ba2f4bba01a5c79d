"""The kernel-hunting helpers of ``procs.py`` see every kind of kernel they claim to see.

The leak checks of the other tests pass when the helpers find no kernel; these tests make sure
that "none found" is not vacuous: a real kernel of each kind is found while its flow sleeps, by
directory, by owner and by ancestry, and is not found once the flow has ended.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from flowkit import make_project, write_flow
from procs import (
    FORKED,
    LAUNCHED,
    TEMPLATE,
    kernels_mentioning,
    kernels_owned_by,
    kind,
    my_kernels,
    owner,
    templates_owned_by,
    wait_for_no_kernels,
)

from ductaflow import run_notebook
from ductaflow.kernels import fork
from ductaflow.kernels.options import LAUNCHER_ENV

pytestmark = pytest.mark.kernel

SLEEPY = "# %%\nimport time\nprint('asleep', flush=True)\ntime.sleep(config.get('sleep', 5))\n"


class Running:
    """A flow run in a thread; ``wait_asleep`` returns once its first cell is sleeping."""

    def __init__(self, root: Path, name: str, sleep: float = 5) -> None:
        self.exec_dir = root / "runs" / name
        self.box: dict[str, Any] = {}
        flow = root / "flows" / "sleepy.py"

        def run() -> None:
            try:
                self.box["result"] = run_notebook(flow, {"sleep": sleep}, execution_dir=self.exec_dir)
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.box["error"] = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_asleep(self, timeout: float = 90) -> None:
        log = self.exec_dir / "sleepy_execution_output.txt"
        deadline = time.monotonic() + timeout
        while not (log.is_file() and "asleep" in log.read_text()):
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail(f"the flow never started sleeping: {self.box}")
            time.sleep(0.1)

    def finish(self, timeout: float = 90) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not end"
        assert "error" not in self.box, self.box["error"]
        return self.box["result"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "sleepy", SLEEPY)
    return root


def _pids(procs: list[psutil.Process]) -> set[int]:
    return {p.pid for p in procs}


@pytest.mark.skipif(not fork.supported(), reason="fork launching is Linux-only")
def test_a_forked_kernel_is_seen_while_it_runs_and_not_after(root: Path) -> None:
    run = Running(root, "forked")
    run.wait_asleep()
    found = kernels_mentioning(str(run.exec_dir))
    assert len(found) == 1, "the running flow's kernel was not found"
    kernel = found[0]
    assert kind(kernel) == FORKED and owner(kernel) == os.getpid()
    assert kernel.pid in _pids(my_kernels())
    assert kernel.pid in _pids(kernels_owned_by(os.getpid()))
    templates = templates_owned_by(os.getpid())
    assert kernel.ppid() in _pids(templates), "a forked kernel is its template's child"
    assert all(kind(t) == TEMPLATE for t in templates)
    assert kernel.pid in _pids(psutil.Process().children(recursive=True))
    assert run.finish().status.value == "green"
    assert wait_for_no_kernels(str(run.exec_dir)) == []
    assert kernel.pid not in _pids(my_kernels())


@pytest.mark.skipif(not fork.supported(), reason="fork launching is Linux-only")
def test_a_forked_kernel_whose_template_died_is_found_though_no_longer_our_descendant(root: Path) -> None:
    run = Running(root, "adopted", sleep=6)
    run.wait_asleep()
    [kernel] = kernels_mentioning(str(run.exec_dir))
    template = kernel.ppid()
    assert kind(psutil.Process(template)) == TEMPLATE
    os.kill(template, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while kernel.ppid() == template and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kernel.ppid() != template, "the kernel was not adopted"
    if kernel.pid not in _pids(psutil.Process().children(recursive=True)):  # unless we are a subreaper
        assert kernel.pid in _pids(my_kernels()), "found by its owner, not by ancestry"
    assert kind(kernel) == FORKED and owner(kernel) == os.getpid()
    assert _pids(kernels_mentioning(str(run.exec_dir))) == {kernel.pid}
    assert run.finish().status.value == "green"
    assert wait_for_no_kernels(str(run.exec_dir)) == []
    assert kernel.pid not in _pids(my_kernels())


def test_a_launched_kernel_is_seen_while_it_runs_and_not_after(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LAUNCHER_ENV, "spawn")
    run = Running(root, "launched")
    run.wait_asleep()
    found = kernels_mentioning(str(run.exec_dir))
    assert len(found) == 1, "the running flow's kernel was not found"
    kernel = found[0]
    assert kind(kernel) == LAUNCHED and owner(kernel) == os.getpid()
    assert kernel.pid in _pids(my_kernels()) and kernel.pid in _pids(kernels_owned_by(os.getpid()))
    connection = kernel.cmdline()[kernel.cmdline().index("-f") + 1]
    assert _pids(kernels_mentioning(connection)) == {kernel.pid}
    assert run.finish().status.value == "green"
    assert wait_for_no_kernels(str(run.exec_dir)) == [] and wait_for_no_kernels(connection) == []
    assert kernel.pid not in _pids(my_kernels())
