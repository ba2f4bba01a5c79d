"""Dual mode: the same flow file run as ``python flows/x.py [--config] [--output-dir] [--no-execute]``
and under papermill, with the reference two-line pattern and the ``flow_config`` one-liner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flowkit import all_files, make_project, read_json, write_flow

from ductaflow import Status, analyze_execution_logs, run_notebook
from ductaflow.run.capture import OutputSink
from ductaflow.store.records import read_status

HEADERS = {
    "twoline": """
        # %%
        from ductaflow import is_notebook_execution, load_cli_config
        if not is_notebook_execution():
            config = load_cli_config("config/flows/twoline.json", description="Two-line pattern flow")
        """,
    "oneliner": """
        # %%
        from ductaflow import flow_config, is_notebook_execution
        config = flow_config(config, "config/flows/oneliner.json")
        """,
}

BODY = """
# %%
import sys
from pathlib import Path
print("notebook mode:", is_notebook_execution())
print("label:", config["label"])
print("to stderr", file=sys.stderr)
print("back on stdout")
Path("result.txt").write_text(config["label"])
if config.get("fail"):
    raise RuntimeError("asked to fail")
"""

FLOWS = sorted(HEADERS)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    for name, header in HEADERS.items():
        write_flow(root, name, textwrap.dedent(header) + BODY, config={"label": "default"})
    return root


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory outside the project."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def _script(project: Path, flow: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(project / "flows" / f"{flow}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


@pytest.mark.kernel
@pytest.mark.parametrize("flow", FLOWS)
def test_script_with_config_and_output_dir_records_the_run(project: Path, elsewhere: Path, flow: str) -> None:
    cfg = elsewhere / "c.json"
    cfg.write_text(json.dumps({"label": "from-file", "extra": [1, 2]}))
    proc = _script(project, flow, "--config", "c.json", "--output-dir", "out/d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    d = elsewhere / "out" / "d"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["result.txt", f"{flow}_execution_output.txt", f"{flow}_config.json", f"{flow}_status.json"]
    )
    assert (d / "result.txt").read_text() == "from-file", "relative outputs land in the output dir"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["c.json", "out"]
    # also printed to the terminal
    assert "label: from-file" in proc.stdout and "back on stdout" in proc.stdout
    assert "to stderr" in proc.stderr
    lines = (d / f"{flow}_execution_output.txt").read_text().splitlines()
    assert lines == ["notebook mode: False", "label: from-file", "to stderr", "back on stdout"]
    assert read_json(d / f"{flow}_config.json") == {
        "label": "from-file",
        "extra": [1, 2],
        "_project_root": str(project.resolve()),
    }
    rec = read_json(d / f"{flow}_status.json")
    assert (rec["status"], rec["state"], rec["mode"], rec["flow"]) == ("green", "finished", "script", flow)
    assert rec["execution_dir"] == str(d.resolve()) and rec["error"] is None


@pytest.mark.kernel
@pytest.mark.parametrize("flow", FLOWS)
def test_failing_script_exits_nonzero_and_records_red(project: Path, elsewhere: Path, flow: str) -> None:
    (elsewhere / "bad.json").write_text(json.dumps({"label": "x", "fail": True}))
    proc = _script(project, flow, "--config", "bad.json", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 1
    assert "RuntimeError: asked to fail" in proc.stderr
    rec = read_json(elsewhere / "d" / f"{flow}_status.json")
    assert rec["status"] == "red" and rec["error"]["type"] == "RuntimeError"
    assert rec["error"]["message"] == "asked to fail" and "Traceback" in rec["error"]["traceback"]


@pytest.mark.kernel
@pytest.mark.parametrize("flow", FLOWS)
def test_no_execute_stops_before_the_body(project: Path, elsewhere: Path, flow: str) -> None:
    proc = _script(project, flow, "--output-dir", "d", "--no-execute", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "--no-execute" in proc.stdout and "label:" not in proc.stdout
    d = elsewhere / "d"
    assert sorted(p.name for p in d.iterdir()) == [f"{flow}_config.json"]
    assert read_json(d / f"{flow}_config.json")["label"] == "default"


@pytest.mark.kernel
@pytest.mark.parametrize("flow", FLOWS)
def test_no_arguments_use_the_default_config_from_the_project_root(project: Path, elsewhere: Path, flow: str) -> None:
    before = all_files(project)
    proc = _script(project, flow, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "label: default" in proc.stdout
    # without --output-dir nothing is recorded; the flow's own relative output lands in the cwd
    assert sorted(p.name for p in elsewhere.iterdir()) == ["result.txt"]
    assert all_files(project) == before


@pytest.mark.kernel
def test_help_exits_zero_and_names_the_options(project: Path, elsewhere: Path) -> None:
    for flow, description in (("twoline", "Two-line pattern flow"), ("oneliner", "Run the flow oneliner")):
        proc = _script(project, flow, "-h", cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr
        for text in ("--config", "--output-dir", "--no-execute", description, "config/flows/"):
            assert text in proc.stdout, (flow, text)
        assert "label:" not in proc.stdout
    assert list(elsewhere.iterdir()) == []


@pytest.mark.kernel
def test_missing_config_file_exits_2_with_one_line(project: Path, elsewhere: Path) -> None:
    proc = _script(project, "oneliner", "--config", "nope.json", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.json" in proc.stderr
    assert "Traceback" not in proc.stderr and not (elsewhere / "d").exists()


@pytest.mark.kernel
def test_same_files_run_under_papermill_see_notebook_mode_and_injected_config(project: Path) -> None:
    def run(flow: str):
        return run_notebook(project / "flows" / f"{flow}.py", {"label": f"injected-{flow}"}, project / "runs" / flow)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(FLOWS, pool.map(run, FLOWS), strict=True))
    for flow, result in results.items():
        assert result.status is Status.GREEN
        lines = result.log_path.read_text().splitlines()
        assert lines == ["notebook mode: True", f"label: injected-{flow}", "to stderr", "back on stdout"]
        assert (result.execution_dir / "result.txt").read_text() == f"injected-{flow}"
        assert read_json(result.status_path)["mode"] == "papermill"


# ---------------------------------------------------------------- how a recorded script run ends
# Real processes running real flow files; every wait has a timeout.

HEAD = """
# %%
import os, subprocess, sys, time
from ductaflow import load_cli_config
config = load_cli_config()
"""


def _flow(project: Path, name: str, body: str) -> Path:
    return write_flow(project, name, HEAD + textwrap.dedent(body))


def _record(d: Path, flow: str) -> dict:
    return read_json(d / f"{flow}_status.json")


def _log(d: Path, flow: str) -> str:
    return (d / f"{flow}_execution_output.txt").read_bytes().decode("utf-8")  # "\r" kept


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        assert proc.poll() is None, f"the flow ended early with {proc.returncode}"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{text!r} did not reach {path} within {timeout} s")


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("ending", "status", "message"),
    [
        ("raise SystemExit(3)", 3, "3"),
        ("exit(1)", 1, "1"),
        ("quit(2)", 2, "2"),
        ('sys.exit("stop here")', 1, "stop here"),
    ],
)
def test_system_exit_with_a_code_is_red_and_keeps_the_exit_status(
    project: Path, elsewhere: Path, ending: str, status: int, message: str
) -> None:
    _flow(project, "quits", f'print("before")\n{ending}\nprint("never")\n')
    proc = _script(project, "quits", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == status, proc.stderr
    d = elsewhere / "d"
    rec = _record(d, "quits")
    assert (rec["status"], rec["state"], rec["exit_code"]) == ("red", "finished", status)
    assert (rec["error"]["type"], rec["error"]["message"]) == ("SystemExit", message)
    assert "never" not in proc.stdout and "never" not in _log(d, "quits")
    if not message.isdigit():  # the interpreter's report of a non-integer code: on stderr and in the log
        assert message in proc.stderr and message in _log(d, "quits")


@pytest.mark.kernel
@pytest.mark.parametrize("ending", ["sys.exit(0)", "raise SystemExit(None)", "pass  # falls off the end"])
def test_a_normal_end_is_green_with_exit_status_0(project: Path, elsewhere: Path, ending: str) -> None:
    _flow(project, "ends", f'print("done")\n{ending}\n')
    proc = _script(project, "ends", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    rec = _record(elsewhere / "d", "ends")
    assert (rec["status"], rec["state"], rec["exit_code"], rec["error"]) == ("green", "finished", 0, None)


@pytest.mark.kernel
def test_sigterm_records_terminated_before_the_process_ends_and_exits_143(project: Path, elsewhere: Path) -> None:
    _flow(project, "sleeper", 'print("ready in", os.getpid(), flush=True)\ntime.sleep(60)\nprint("never")\n')
    d = elsewhere / "d"
    proc = subprocess.Popen(
        [sys.executable, str(project / "flows" / "sleeper.py"), "--output-dir", str(d)],
        cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # the flow runs in the process started (no re-exec: a debugger or profiler sees it)
        _wait_for(d / "sleeper_execution_output.txt", f"ready in {proc.pid}", proc)
        running = _record(d, "sleeper")  # written before the flow's code ran, naming this process
        assert (running["state"], running["status"], running["mode"]) == ("running", "red", "script")
        assert running["pid"] == proc.pid and running["host"] and running["owner_created"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    rec = _record(d, "sleeper")
    assert (rec["status"], rec["state"], rec["terminated"], rec["exit_code"]) == ("red", "finished", True, 143)
    assert rec["error"]["type"] == "Terminated" and "never" not in _log(d, "sleeper")


@pytest.mark.kernel
def test_a_process_ended_by_os_exit_leaves_its_running_record_which_reads_as_gone(
    project: Path, elsewhere: Path
) -> None:
    _flow(project, "vanishes", 'print("bye", flush=True)\nos._exit(0)\n')
    proc = _script(project, "vanishes", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    d = elsewhere / "d"
    assert _record(d, "vanishes")["state"] == "running", "the record written at the start is left"
    result = read_status(d / "vanishes_status.json")
    assert result is not None and result.state == "gone" and result.status is Status.RED
    assert analyze_execution_logs(d) is Status.RED


@pytest.mark.kernel
def test_output_of_subprocesses_os_system_and_raw_fds_is_logged_in_order(project: Path, elsewhere: Path) -> None:
    _flow(
        project,
        "noisy",
        """
        print("py out 1")
        subprocess.run([sys.executable, "-c", "print('sub out')"], check=True)
        os.system("echo system out")
        os.write(1, b"fd out\\n")
        print("py err", file=sys.stderr)
        os.write(2, b"fd err\\n")
        os.system("echo system err >&2")
        print("py out 2")
        """,
    )
    proc = _script(project, "noisy", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    out = ["py out 1", "sub out", "system out", "fd out"]
    err = ["py err", "fd err", "system err"]
    assert _log(elsewhere / "d", "noisy").splitlines() == [*out, *err, "py out 2"]
    assert proc.stdout.splitlines() == [*out, "py out 2"] and proc.stderr.splitlines() == err
    assert _record(elsewhere / "d", "noisy")["status"] == "green"


@pytest.mark.kernel
def test_a_warning_line_from_a_subprocess_turns_the_run_orange(project: Path, elsewhere: Path) -> None:
    _flow(project, "warns", 'subprocess.run(["sh", "-c", "echo \'Warning: disk nearly full\' >&2"], check=True)\n')
    proc = _script(project, "warns", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    rec = _record(elsewhere / "d", "warns")
    assert (rec["status"], rec["warnings"]) == ("orange", ["Warning: disk nearly full"])


@pytest.mark.kernel
def test_many_carriage_return_updates_are_logged_in_linear_time(project: Path, elsewhere: Path) -> None:
    _flow(project, "progress", 'for i in range(60_000):\n    print(f"\\r{i}", end="")\nprint("\\rwarning: last")\n')
    proc = _script(project, "progress", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    rec = _record(elsewhere / "d", "progress")
    # a regression guard for quadratic work per write (25 s before), not a speed target
    assert rec["duration"] < 5, rec["duration"]
    assert (rec["status"], rec["warnings"]) == ("orange", ["warning: last"])
    assert _log(elsewhere / "d", "progress").endswith("\r59999\rwarning: last\n")


@pytest.mark.kernel
def test_no_execute_leaves_a_finished_run_as_it_is(project: Path, elsewhere: Path) -> None:
    assert _script(project, "oneliner", "--output-dir", "d", cwd=elsewhere).returncode == 0
    d = elsewhere / "d"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in d.iterdir()}
    proc = _script(project, "oneliner", "--output-dir", "d", "--no-execute", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "already holds a finished run" in proc.stdout and "label:" not in proc.stdout
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in d.iterdir()} == before


def test_sink_applies_the_warning_rule_to_lines_as_displayed() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = OutputSink(Path(tmp) / "log.txt")
        for text in ("50%\r", "Warning: over", "written\r\n", "a\rwarn", "ing: split\n", "ok\r\n"):
            sink.write("stdout", text)
        sink.write("stderr", "x.py:3: UserWarning: careful\n")
        sink.write("stdout", "\rwarning: unterminated")
        sink.close()
        assert sink.warning_lines == ["Warning: overwritten", "warning: split", "warning: unterminated"]
        assert sink.python_warnings == ["x.py:3: UserWarning: careful"]


def test_sink_takes_linear_time_for_carriage_return_updates() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = OutputSink(Path(tmp) / "log.txt")
        t0 = time.monotonic()
        for i in range(150_000):
            sink.write("stdout", f"\r{i}")
        sink.write("stdout", "\rWarning: done\n")
        took = time.monotonic() - t0
        sink.close()
        # a regression guard for work quadratic in the line's length (~40 s before, under 1 s now)
        assert took < 5, f"{took:.1f} s for 150,000 updates of one line"
        assert sink.warnings == ["Warning: done"]
