"""Dual mode: the same flow file run as ``python flows/x.py [--config] [--output-dir] [--no-execute]``
and under papermill, with the reference two-line pattern and the ``flow_config`` one-liner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flowkit import all_files, make_project, read_json, write_flow

from ductaflow import Status, run_notebook

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


@pytest.mark.parametrize("flow", FLOWS)
def test_failing_script_exits_nonzero_and_records_red(project: Path, elsewhere: Path, flow: str) -> None:
    (elsewhere / "bad.json").write_text(json.dumps({"label": "x", "fail": True}))
    proc = _script(project, flow, "--config", "bad.json", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 1
    assert "RuntimeError: asked to fail" in proc.stderr
    rec = read_json(elsewhere / "d" / f"{flow}_status.json")
    assert rec["status"] == "red" and rec["error"]["type"] == "RuntimeError"
    assert rec["error"]["message"] == "asked to fail" and "Traceback" in rec["error"]["traceback"]


@pytest.mark.parametrize("flow", FLOWS)
def test_no_execute_stops_before_the_body(project: Path, elsewhere: Path, flow: str) -> None:
    proc = _script(project, flow, "--output-dir", "d", "--no-execute", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "--no-execute" in proc.stdout and "label:" not in proc.stdout
    d = elsewhere / "d"
    assert sorted(p.name for p in d.iterdir()) == [f"{flow}_config.json"]
    assert read_json(d / f"{flow}_config.json")["label"] == "default"


@pytest.mark.parametrize("flow", FLOWS)
def test_no_arguments_use_the_default_config_from_the_project_root(project: Path, elsewhere: Path, flow: str) -> None:
    before = all_files(project)
    proc = _script(project, flow, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "label: default" in proc.stdout
    # without --output-dir nothing is recorded; the flow's own relative output lands in the cwd
    assert sorted(p.name for p in elsewhere.iterdir()) == ["result.txt"]
    assert all_files(project) == before


def test_help_exits_zero_and_names_the_options(project: Path, elsewhere: Path) -> None:
    for flow, description in (("twoline", "Two-line pattern flow"), ("oneliner", "Run the flow oneliner")):
        proc = _script(project, flow, "-h", cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr
        for text in ("--config", "--output-dir", "--no-execute", description, "config/flows/"):
            assert text in proc.stdout, (flow, text)
        assert "label:" not in proc.stdout
    assert list(elsewhere.iterdir()) == []


def test_missing_config_file_exits_2_with_one_line(project: Path, elsewhere: Path) -> None:
    proc = _script(project, "oneliner", "--config", "nope.json", "--output-dir", "d", cwd=elsewhere)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.json" in proc.stderr
    assert "Traceback" not in proc.stderr and not (elsewhere / "d").exists()


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
