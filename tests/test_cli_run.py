"""``ductaflow run`` in a subprocess with real kernels: the result line, exit codes, -p, --html, re-runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flowkit import ductaflow_cmd, make_project, read_json, write_flow

MODEL = """
# %%
from ductaflow import flow_config
config = flow_config(config, "config/flows/model.json")

# %%
import time
from pathlib import Path
print("n =", config["n"])
if config.get("warn"):
    print("Warning: n is outside the calibrated range")
time.sleep(config.get("sleep", 0))
if config.get("fail"):
    raise ValueError("model failed")
Path("n.txt").write_text(str(config["n"]))
"""

DEFAULTS = {"n": 1, "nested": {"k": 0, "keep": "me"}, "warn": False, "fail": False, "sleep": 0}
LINE = re.compile(
    r"^(?P<emoji>\S+) (?P<light>green|orange|red)\s+model\s+(?P<dur>\d+\.\d)s\s+(?P<dir>/\S.*?)(?:  \((?P<why>.*)\))?$"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "model", MODEL, config=DEFAULTS)
    return root


def _result_line(stdout: str) -> re.Match[str]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    m = LINE.match(lines[0])
    assert m, lines[0]
    return m


def test_green_run_with_instance_params_html_then_rerun_without_html(project: Path) -> None:
    first = ductaflow_cmd(
        "run", "flows/model.py", "--instance", "try1", "-p", "n=5", "-p", "nested.k=2", "-p", "bogus=1", "--html",
        "--allow-unknown", cwd=project,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    inst = project / "runs" / "model" / "try1"
    m = _result_line(first.stdout)
    assert (m["emoji"], m["light"], m["dir"], m["why"]) == ("🟢", "green", str(inst.resolve()), None)
    assert (inst / "n.txt").read_text() == "5"
    assert (inst / "model.html").is_file()
    cfg = read_json(inst / "model_config.json")
    assert cfg["n"] == 5 and cfg["nested"] == {"k": 2, "keep": "me"} and cfg["bogus"] == 1
    # an undeclared key (let through by --allow-unknown): a warning line on stderr and a note in the
    # record, and the flow still ran
    note = "config keys not known to flow 'model': bogus"
    assert note in first.stderr and "Traceback" not in first.stderr
    rec1 = read_json(inst / "model_status.json")
    assert rec1["status"] == "green" and rec1["notes"] == [note] and rec1["html_exported"] is True
    assert note not in (inst / "model_execution_output.txt").read_text()

    second = ductaflow_cmd("run", "flows/model.py", "--instance", "try1", "-p", "n=6", cwd=project)
    assert second.returncode == 0, second.stderr
    assert _result_line(second.stdout)["light"] == "green"
    assert not (inst / "model.html").exists(), "a stale HTML export survived the re-run"
    rec2 = read_json(inst / "model_status.json")
    assert rec2["started"] > rec1["started"] and rec2["html_exported"] is False and rec2["notes"] == []
    assert read_json(inst / "model_config.json")["n"] == 6 and (inst / "n.txt").read_text() == "6"
    assert (inst / "model_execution_output.txt").read_text() == "n = 6\n"


def test_orange_run_into_an_output_dir_exits_zero(project: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "warned.json"
    cfg.write_text(json.dumps({**DEFAULTS, "warn": True}))
    proc = ductaflow_cmd("run", "flows/model.py", "--config", str(cfg), "--output-dir", "../out/o1", cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = (tmp_path / "out" / "o1").resolve()
    m = _result_line(proc.stdout)
    assert (m["emoji"], m["light"], m["dir"], m["why"]) == ("🟠", "orange", str(out), "1 warning line(s)")
    assert (out / "n.txt").read_text() == "1"
    assert read_json(out / "model_status.json")["warnings"] == ["Warning: n is outside the calibrated range"]
    assert not (project / "runs" / "model").exists(), "--output-dir replaces runs/<flow>/<instance>"


def test_red_runs_exit_one(project: Path) -> None:
    failed = ductaflow_cmd("run", "flows/model.py", "--instance", "bad", "-p", "fail=true", cwd=project)
    assert failed.returncode == 1
    m = _result_line(failed.stdout)
    assert (m["emoji"], m["light"], m["why"]) == ("🔴", "red", "ValueError: model failed")
    assert "ValueError: model failed" in failed.stderr and "Traceback" not in failed.stderr

    slow = ductaflow_cmd("run", "flows/model.py", "--instance", "slow", "-p", "sleep=60", "--timeout", "2", cwd=project)
    assert slow.returncode == 1, slow.stderr
    m = _result_line(slow.stdout)
    assert (m["light"], m["why"]) == ("red", "timed out")
    assert float(m["dur"]) < 15
    rec = read_json(project / "runs" / "model" / "slow" / "model_status.json")
    assert rec["timed_out"] is True and rec["interrupted"] is False
