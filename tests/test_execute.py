"""run_notebook / run_step_flow with real kernels: where things land, what is recorded."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from flowkit import all_files, make_project, my_kernels, read_json, write_flow

from ductaflow import FlowFailed, FlowResult, Status, run_notebook, run_step_flow

OUTPUTS = """
# %%
import os
import sys
from pathlib import Path
print("cwd=" + os.getcwd())
print("root=" + config["_project_root"])

# %%
print("out 1")
print("err 2", file=sys.stderr)
print("out 3")
print("err 4", file=sys.stderr)
print("out 5")
Path("out.txt").write_text(str(config["label"]))
"""

FAILING = """
# %%
import sys
print("before the failure")

# %% [markdown]
# a markdown cell, to check that cell indices count every cell of the flow file

# %%
x = 1
raise ValueError(f"bad value {x}")

# %%
print("never reached")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_green_run_records_everything_in_the_instance_dir(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flow = write_flow(project, "report_it", OUTPUTS)
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    before = all_files(project / "flows")
    config = {"label": "é-1", "nested": {"a": [1, 2.5, None], "b": {"deep": True}}, "n": 10**15}
    caplog.set_level(logging.DEBUG)

    result = run_notebook(flow, config, "rel/inst", export_html=True)

    exec_dir = (caller / "rel" / "inst").resolve()
    assert os.getcwd() == str(caller), "run_notebook must not chdir the calling process"
    assert all_files(project / "flows") == before, "nothing may be written next to the flow's source"
    assert sorted(p.name for p in caller.iterdir()) == ["rel"] and not (project / "out.txt").exists()
    assert isinstance(result, FlowResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = Status.RED  # type: ignore[misc]
    assert result.status is Status.GREEN and result.state == "finished" and result.ok
    assert result.execution_dir == exec_dir and result.execution_dir.is_absolute()
    for path in (result.notebook_path, result.log_path, result.config_path, result.status_path, result.html_path):
        assert path is not None and path.is_absolute() and path.parent == exec_dir and path.is_file()
    assert {p.name for p in exec_dir.iterdir() if not p.name.startswith(".")} == {
        "report_it.ipynb",
        "report_it_execution_output.txt",
        "report_it_config.json",
        "report_it_status.json",
        "report_it.html",
        "out.txt",
    }
    # the kernel ran in the instance dir: relative writes landed there
    assert (exec_dir / "out.txt").read_text() == "é-1"
    lines = _lines(result.log_path)
    assert lines[0] == f"cwd={exec_dir}"
    # _project_root is injected, absolute
    assert lines[1] == f"root={project.resolve()}" and Path(lines[1][5:]).is_absolute()
    # stdout and stderr lines, in the order the flow wrote them
    assert lines[2:] == ["out 1", "err 2", "out 3", "err 4", "out 5"]
    # the exact config, plus the injected root
    assert read_json(result.config_path) == {**config, "_project_root": str(project.resolve())}
    rec = read_json(result.status_path)
    assert rec["status"] == "green" and rec["state"] == "finished"
    assert rec["warnings"] == [] and rec["error"] is None
    assert rec["interrupted"] is rec["timed_out"] is rec["kernel_died"] is False
    started, finished = datetime.fromisoformat(rec["started"]), datetime.fromisoformat(rec["finished"])
    assert started < finished
    assert 0 < rec["duration"] <= (finished - started).total_seconds() + 0.5
    assert result.duration == rec["duration"] and result.started == rec["started"]
    assert rec["execution_dir"] == str(exec_dir) and rec["flow_path"] == str(flow.resolve())
    # the executed notebook holds the injected config and the outputs
    nb = nbformat.read(result.notebook_path, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "'label': 'é-1'" in injected[0].source
    assert "out 3" in json.dumps(nb.cells[-1].outputs)
    assert "out 5" in result.html_path.read_text(encoding="utf-8")
    # framework log lines go to logging, never into the flow's captured output
    framework = [r.getMessage() for r in caplog.records if r.name.startswith(("ductaflow", "papermill"))]
    assert framework, "expected ductaflow/papermill to log something at DEBUG level"
    log_text = result.log_path.read_text(encoding="utf-8")
    for message in framework:
        assert message.strip() not in log_text
    assert my_kernels() == []


def test_red_run_raises_flowfailed_and_keeps_the_evidence(project: Path) -> None:
    flow = write_flow(project, "fails", FAILING)
    exec_dir = project / "runs" / "fails" / "one"
    with pytest.raises(FlowFailed) as info:
        run_notebook(flow, {"k": 1}, exec_dir)
    result = info.value.result
    assert info.value.exit_code == 1
    assert result.status is Status.RED and not result.ok
    assert result.error is not None
    assert (result.error.type, result.error.message, result.error.cell_index) == ("ValueError", "bad value 1", 3)
    assert "ValueError" in result.error.traceback and 'raise ValueError(f"bad value {x}")' in result.error.traceback
    assert "\x1b[" not in result.error.traceback, "ANSI colour codes must be stripped"
    assert "fails" in str(info.value) and "cell 3" in str(info.value)
    # the partial notebook is written, with the error in it
    nb = nbformat.read(result.notebook_path, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ValueError"]
    assert _lines(result.log_path) == ["before the failure"]
    assert read_json(result.config_path) == {"k": 1, "_project_root": str(project.resolve())}
    rec = read_json(result.status_path)
    assert rec["status"] == "red" and rec["state"] == "finished"
    assert rec["error"]["type"] == "ValueError" and rec["error"]["cell_index"] == 3
    assert rec["error"]["message"] == "bad value 1" and "Traceback" in rec["error"]["traceback"]

    # raise_on_failure=False returns the result; kernel_name picks a named kernelspec instead of this interpreter
    again = run_notebook(flow, {"k": 2}, exec_dir, raise_on_failure=False, kernel_name="python3")
    assert nbformat.read(again.notebook_path, as_version=4).metadata.kernelspec.name == "python3"
    assert again.status is Status.RED and again.error is not None and again.error.type == "ValueError"
    assert read_json(again.config_path)["k"] == 2
    assert my_kernels() == []


def test_no_execute_prepares_and_runs_nothing(project: Path) -> None:
    flow = write_flow(project, "prep", '# %%\nfrom pathlib import Path\nPath("ran.txt").write_text("x")\n')
    exec_dir = project / "runs" / "prep" / "p1"
    result = run_notebook(flow, {"alpha": 0.5}, exec_dir, no_execute=True)
    assert result.state == "prepared"
    assert sorted(p.name for p in exec_dir.iterdir() if not p.name.startswith(".")) == [
        "prep.ipynb",
        "prep_config.json",
    ]
    assert read_json(exec_dir / "prep_config.json") == {"alpha": 0.5, "_project_root": str(project.resolve())}
    nb = nbformat.read(exec_dir / "prep.ipynb", as_version=4)
    assert [c.metadata.get("tags", []) for c in nb.cells[:2]] == [["parameters"], ["injected-parameters"]]
    assert "'alpha': 0.5" in nb.cells[1].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert not (exec_dir / "ran.txt").exists()
    # without an execution_dir, instance_name picks runs/<flow>/<instance>/ under the project root
    named = run_notebook(flow, {"alpha": 1}, instance_name="named", no_execute=True)
    assert named.execution_dir == project.resolve() / "runs" / "prep" / "named"
    assert read_json(named.config_path)["alpha"] == 1 and named.notebook_path.is_file()
    assert my_kernels() == []


def test_run_step_flow_uses_runs_step_instance_suffix(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = '# %%\nfrom pathlib import Path\nPath("o.txt").write_text(str(config["v"]))\n'
    flow = write_flow(project, "stepper", body)
    monkeypatch.chdir(tmp_path)  # somewhere else: the runs dir is under the project root, not the cwd
    result = run_step_flow(flow, "calibrate", "base", {"v": 7}, suffix="_s2")
    expected = project.resolve() / "runs" / "calibrate" / "base_s2"
    assert result.execution_dir == expected
    assert (expected / "o.txt").read_text() == "7"
    assert read_json(expected / "stepper_status.json")["instance"] == "base_s2"
    assert not (tmp_path / "runs").exists()


def test_two_threads_run_flows_concurrently_into_their_own_dirs(project: Path) -> None:
    flow = write_flow(
        project,
        "para",
        """
        # %%
        import time
        from pathlib import Path
        Path("started.txt").write_text(config["label"])
        time.sleep(1.5)
        print("label", config["label"])
        Path("out.txt").write_text(config["label"])
        """,
    )
    results: dict[str, FlowResult] = {}
    errors: list[BaseException] = []

    def work(label: str) -> None:
        try:
            results[label] = run_notebook(flow, {"label": label}, project / "runs" / "para" / label)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(label,)) for label in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for label in ("left", "right"):
        inst = project / "runs" / "para" / label
        assert (inst / "out.txt").read_text() == label
        assert (inst / "started.txt").read_text() == label
        assert _lines(inst / "para_execution_output.txt") == [f"label {label}"]
        assert results[label].status is Status.GREEN
    a, b = results["left"], results["right"]
    assert a.started < b.finished and b.started < a.finished, "the two flows did not overlap in time"
    assert not (project / "out.txt").exists() and not (project / "flows" / "out.txt").exists()
    assert my_kernels() == []


def test_the_executed_notebook_names_its_source_and_drops_stored_outputs(tmp_path: Path) -> None:
    """papermill keeps a copy of a notebook passed as an object in its metadata; ductaflow's
    executed notebook names the source by path, and a big output stored in the source (here
    2 MB) does not survive into it (issue 16)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    stored = nbformat.v4.new_output("display_data", data={"image/png": "A" * 2_000_000})
    old = nbformat.v4.new_code_cell("print('drawn again')", outputs=[stored], execution_count=7)
    nb.cells = [params, old, nbformat.v4.new_code_cell("print('hello')")]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    source = tmp_path / "stored.ipynb"
    nbformat.write(nb, source)
    result = run_notebook(source, {}, tmp_path / "out")
    executed = nbformat.read(result.notebook_path, as_version=4)
    assert executed.metadata["papermill"]["input_path"] == str(source.resolve())
    assert result.notebook_path.stat().st_size < 100_000, result.notebook_path.stat().st_size
    redrawn = next(c for c in executed.cells if "drawn again" in c.source)
    assert [o.get("text") for o in redrawn.outputs] == ["drawn again\n"]
