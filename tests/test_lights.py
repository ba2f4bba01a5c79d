"""The traffic light with real kernels: raises, exits, warning lines, dying kernels, timeouts, signals.

The light cases run once, concurrently, in a module fixture (one kernel each); every test
below asserts on its own case.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from flowkit import kernels_mentioning, make_project, my_kernels, read_json, write_flow

from ductaflow import DuctaflowError, FlowResult, Status, analyze_execution_logs, run_notebook

CHILD = """
import subprocess
from pathlib import Path
child = subprocess.Popen(["sleep", "300"])
Path("child.pid").write_text(str(child.pid))
"""

CASES: dict[str, tuple[str, dict]] = {
    "value_error": (
        """
        # %%
        print("start")

        # %%
        raise ValueError("bad value")
        """,
        {},
    ),
    "key_error": (
        """
        # %%
        table = {}
        table["missing_key"]
        """,
        {},
    ),
    "custom_error": (
        """
        # %%
        class CalibrationError(Exception):
            pass

        # %% [markdown]
        # The model must converge.

        # %%
        raise CalibrationError("did not converge after 50 iterations")
        """,
        {},
    ),
    "exit3": (
        """
        # %%
        import sys
        print("leaving with 3")
        sys.exit(3)
        """,
        {},
    ),
    "exit0": (
        """
        # %%
        import sys
        print("before exit")
        sys.exit(0)
        print("after exit")

        # %%
        from pathlib import Path
        Path("next_cell_ran.txt").write_text("x")
        """,
        {},
    ),
    "orange_stdout": (
        """
        # %%
        print("plain line")
        print("⚠️ data issue")
        print("Warning: missing file")
        print("[s2] wArNiNg: odd value")
        """,
        {},
    ),
    "orange_stderr": (
        """
        # %%
        import sys
        print("plain line", file=sys.stderr)
        print("WARNING: low memory", file=sys.stderr)
        print("⚠️ on stderr", file=sys.stderr)
        print("warning: lower case", file=sys.stderr)
        """,
        {},
    ),
    "orange_single_stderr": (
        """
        # %%
        import sys
        print("WARNING: only this", file=sys.stderr)
        """,
        {},
    ),
    "python_warning": (
        """
        # %%
        import warnings
        warnings.warn("careful with this")
        """,
        {},
    ),
    "green_late_warning": (
        """
        # %%
        import sys
        print("Processing data with warning: inside")
        print("0123456789abcdeWarning: just past 15")
        print("the word warning appears late", file=sys.stderr)
        print("progress 50%", file=sys.stderr)
        """,
        {},
    ),
    "os_exit": (
        """
        # %%
        print("about to die")

        # %%
        import os
        os._exit(1)
        """,
        {},
    ),
    "sigkill": (
        """
        # %%
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        {},
    ),
    "timeout": (
        "# %%" + CHILD + '\n# %%\nimport time\nprint("sleeping")\ntime.sleep(60)\n',
        {"timeout": 3},
    ),
}


@pytest.fixture(scope="module")
def lights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[FlowResult, float]]:
    root = make_project(tmp_path_factory.mktemp("lights"))
    for name, (body, _) in CASES.items():
        write_flow(root, name, body)

    def run(name: str) -> tuple[FlowResult, float]:
        t0 = time.monotonic()
        result = run_notebook(
            root / "flows" / f"{name}.py",
            {},
            root / "runs" / name,
            raise_on_failure=False,
            **CASES[name][1],
        )
        return result, time.monotonic() - t0

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(CASES, pool.map(run, CASES), strict=True))
    return results


def _log(result: FlowResult) -> str:
    return result.log_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("case", "etype", "message", "cell"),
    [
        ("value_error", "ValueError", "bad value", 2),
        ("key_error", "KeyError", "'missing_key'", 1),
        ("custom_error", "CalibrationError", "did not converge after 50 iterations", 3),
        ("exit3", "SystemExit", "3", 1),
    ],
)
def test_raise_and_nonzero_exit_are_red_with_type_and_cell(lights, case, etype, message, cell) -> None:
    result, _ = lights[case]
    assert result.status is Status.RED
    assert result.error is not None
    assert (result.error.type, result.error.message, result.error.cell_index) == (etype, message, cell)
    assert not (result.kernel_died or result.timed_out or result.interrupted)
    rec = read_json(result.status_path)
    assert rec["status"] == "red" and rec["error"]["type"] == etype and rec["error"]["cell_index"] == cell
    assert result.notebook_path.is_file()


def test_exit0_ends_the_flow_early_and_green(lights) -> None:
    result, _ = lights["exit0"]
    assert result.status is Status.GREEN and result.error is None and result.warnings == ()
    log = _log(result)
    assert "before exit" in log and "after exit" not in log
    assert not (result.execution_dir / "next_cell_ran.txt").exists(), "cells after sys.exit(0) must not run"


def test_warning_lines_on_stdout_and_stderr_are_orange(lights) -> None:
    out, _ = lights["orange_stdout"]
    assert out.status is Status.ORANGE and out.error is None
    assert list(out.warnings) == ["⚠️ data issue", "Warning: missing file", "[s2] wArNiNg: odd value"]
    err, _ = lights["orange_stderr"]
    assert err.status is Status.ORANGE
    assert list(err.warnings) == ["WARNING: low memory", "⚠️ on stderr", "warning: lower case"]
    single, _ = lights["orange_single_stderr"]
    assert single.status is Status.ORANGE and list(single.warnings) == ["WARNING: only this"]
    rec = read_json(single.status_path)
    assert rec["status"] == "orange" and rec["warnings"] == ["WARNING: only this"]


def test_python_warnings_warn_is_orange(lights) -> None:
    result, _ = lights["python_warning"]
    assert result.status is Status.ORANGE
    assert len(result.warnings) == 1 and "UserWarning: careful with this" in result.warnings[0]


def test_warning_text_after_15_characters_stays_green(lights) -> None:
    result, _ = lights["green_late_warning"]
    assert result.status is Status.GREEN and result.warnings == ()
    assert "Processing data with warning: inside" in _log(result)


@pytest.mark.parametrize("case", ["os_exit", "sigkill"])
def test_dying_kernel_is_red_kernel_died_within_seconds(lights, case) -> None:
    result, seconds = lights[case]
    assert result.status is Status.RED and result.kernel_died
    assert not result.timed_out and not result.interrupted
    assert result.error is not None
    assert seconds < 30, f"took {seconds:.1f}s to notice the dead kernel"
    rec = read_json(result.status_path)
    assert rec["kernel_died"] is True and rec["state"] == "finished" and rec["status"] == "red"
    if case == "os_exit":
        assert result.error.cell_index == 2
        assert "about to die" in _log(result)


def test_timeout_kills_the_flow_and_its_children(lights) -> None:
    result, seconds = lights["timeout"]
    assert result.status is Status.RED and result.timed_out and not result.kernel_died
    assert result.error is not None and result.error.type == "Timeout"
    assert seconds < 20, f"a 3 s timeout took {seconds:.1f}s"
    rec = read_json(result.status_path)
    assert rec["timed_out"] is True and rec["status"] == "red"
    assert "sleeping" in _log(result)
    pid = int((result.execution_dir / "child.pid").read_text())
    _assert_gone(pid)


def test_no_framework_lines_in_captured_output_and_no_kernels_left(lights) -> None:
    for case, (result, _) in lights.items():
        log = _log(result)
        for marker in ("IPKernelApp", "Kernel is running over TCP", "papermill", "ductaflow.", "Executing"):
            assert marker not in log, f"{case}: framework text {marker!r} in the flow's log"
    assert my_kernels() == []


def test_analyze_execution_logs_gives_the_worst_light(lights, tmp_path: Path) -> None:
    tree = tmp_path / "tree"

    def place(case: str, *where: str) -> None:
        shutil.copytree(lights[case][0].execution_dir, tree.joinpath(*where))

    place("green_late_warning", "a")
    assert analyze_execution_logs(tree) is Status.GREEN
    place("orange_stdout", "b", "deep", "x")
    assert analyze_execution_logs(tree) is Status.ORANGE
    place("value_error", "c", "y")
    assert analyze_execution_logs(tree) is Status.RED
    assert analyze_execution_logs(tree / "b") is Status.ORANGE
    # a log with no status record beside it is judged by the warning rule alone
    bare = tmp_path / "bare" / "old"
    bare.mkdir(parents=True)
    (bare / "legacy_execution_output.txt").write_text("ok\nWARNING: from an older run\n")
    assert analyze_execution_logs(tmp_path / "bare") is Status.ORANGE
    with pytest.raises(DuctaflowError, match="not a directory"):  # no evidence is not green (issue 13)
        analyze_execution_logs(tmp_path / "empty_dir_that_does_not_exist")
    # the whole fixture tree: its worst is red
    assert analyze_execution_logs(lights["exit0"][0].execution_dir.parent) is Status.RED


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    pytest.fail(f"process {pid} started by the flow survived")


SIGNAL_RUNNER = """
import sys
from ductaflow import run_notebook
run_notebook(sys.argv[1], {}, sys.argv[2])
print("run_notebook returned", flush=True)
"""

SIGNAL_FLOW = """
# %%
import os
import time
from ipykernel import get_connection_file
from pathlib import Path
Path("connection.txt").write_text(get_connection_file())
Path("kernel.pid").write_text(str(os.getpid()))
"""


def test_sigint_and_sigterm_interrupt_record_red_and_leave_no_kernel(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    runner = tmp_path / "runner.py"
    runner.write_text(SIGNAL_RUNNER)
    # SIGINT: the flow also started a child, which must die with it
    write_flow(root, "long_child", SIGNAL_FLOW + CHILD + '\nprint("started", flush=True)\ntime.sleep(120)\n')
    write_flow(root, "long", SIGNAL_FLOW + '\nprint("started", flush=True)\ntime.sleep(120)\n')
    runs = {
        signal.SIGINT: ("long_child", root / "runs" / "sigint"),
        signal.SIGTERM: ("long", root / "runs" / "sigterm"),
    }
    procs = {
        sig: subprocess.Popen(
            [sys.executable, str(runner), str(root / "flows" / f"{flow}.py"), str(inst)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for sig, (flow, inst) in runs.items()
    }
    try:
        for sig, (flow, inst) in runs.items():
            log = inst / f"{flow}_execution_output.txt"
            deadline = time.monotonic() + 60
            while not (log.is_file() and "started" in log.read_text()):
                if time.monotonic() > deadline or procs[sig].poll() is not None:
                    pytest.fail(f"{sig.name}: the flow never started")
                time.sleep(0.1)
            procs[sig].send_signal(sig)
        outputs = {sig: proc.communicate(timeout=60)[0] for sig, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for sig, (flow, inst) in runs.items():
        proc = procs[sig]
        assert proc.returncode != 0, f"{sig.name}: {outputs[sig]}"
        assert "run_notebook returned" not in outputs[sig]
        rec = read_json(inst / f"{flow}_status.json")
        assert (rec["status"], rec["state"], rec["interrupted"]) == ("red", "finished", True), sig.name
        # SIGTERM (a batch system's walltime) is recorded as such, not as a Ctrl-C (issue 13)
        expected = "Terminated" if sig == signal.SIGTERM else "KeyboardInterrupt"
        assert expected in outputs[sig]
        assert rec["error"]["type"] == expected and rec["terminated"] is (sig == signal.SIGTERM)
        connection = (inst / "connection.txt").read_text()
        kernel_pid = int((inst / "kernel.pid").read_text())
        assert kernels_mentioning(connection) == [], f"{sig.name}: kernel survived"
        assert kernels_mentioning(str(inst)) == [], f"{sig.name}: kernel survived"
        _assert_gone(kernel_pid)
    _assert_gone(int((runs[signal.SIGINT][1] / "child.pid").read_text()))
    assert os.getpid() not in {p.ppid() for p in kernels_mentioning(str(root))}
