"""unpack_config / display_config_summary, debug_flow and ``ductaflow debug`` on a failed instance."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from flowkit import ductaflow_cmd, make_project, my_kernels, read_json, write_flow
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ductaflow import DuctaflowError, Status, debug_flow, display_config_summary, run_notebook, unpack_config
from ductaflow.core.lights import is_warning_line

NESTED = {
    "growth_rate": 0.02,
    "model": {"alpha": 1, "inner": {"beta": [1, 2]}},
    "input_path": "data/zones.csv",
    "out_dir": "outputs",
    "name_folder": "f",
    "n_file": 3,
    "_project_root": "/somewhere",
    "_instance": "i1",
}


def test_unpack_flattens_nested_keys_and_converts_paths(capsys: pytest.CaptureFixture[str]) -> None:
    caller: dict[str, object] = {"untouched": True}
    values = unpack_config(NESTED, "Demo", caller)
    assert values == {
        "growth_rate": 0.02,
        "alpha": 1,
        "beta": [1, 2],
        "input_path": Path("data/zones.csv"),
        "out_dir": Path("outputs"),
        "name_folder": Path("f"),
        "n_file": 3,  # not a string: left alone
    }
    assert caller == {"untouched": True, **values}
    assert "_project_root" not in values and "_instance" not in values
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Config for Demo (7 keys)"
    assert "  model.inner.beta  [1, 2]" in out and "_project_root" not in out
    assert not any(is_warning_line(line) for line in out.splitlines())


def test_unpack_key_collisions_print_a_warning_and_keep_the_shallowest(capsys: pytest.CaptureFixture[str]) -> None:
    config = {"a": {"k": 1}, "b": {"k": 2}, "alpha": 0, "deep": {"x": {"alpha": 3}}}
    values = unpack_config(config)
    assert values == {"k": 1, "alpha": 0}
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if line.startswith("Warning:")]
    assert warnings == [  # shallower keys are settled first
        "Warning: config key 'k' appears as 'a.k' and 'b.k'; using 'a.k'",
        "Warning: config key 'alpha' appears as 'alpha' and 'deep.x.alpha'; using 'alpha'",
    ]
    assert all(is_warning_line(w) for w in warnings), "a collision must turn the run orange"


def test_display_config_summary_is_aligned_text_in_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    display_config_summary({"a": 1, "long.name": {"b": "x"}, "_hidden": 2}, "Flow X")
    assert capsys.readouterr().out.splitlines() == [
        "Config for Flow X (2 keys)",
        "  a            1",
        "  long.name.b  'x'",
    ]
    display_config_summary({})
    assert capsys.readouterr().out.splitlines() == ["Config (0 keys)"]


UNPACKING_FLOW = """
# %%
from ductaflow import flow_config, unpack_config
config = flow_config(config, "config/flows/unpacking.json")
vars().update(unpack_config(config, "Unpacking", locals()))

# %%
print("alpha", alpha, "beta", beta, type(input_path).__name__)
"""


def test_unpack_in_a_kernel_shows_a_table_and_a_collision_turns_orange(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "unpacking", UNPACKING_FLOW)
    config = {"alpha": 1, "m": {"beta": 2, "alpha": 9}, "input_path": "in.csv"}
    result = run_notebook(flow, config, root / "runs" / "u")
    assert result.status is Status.ORANGE
    assert result.warnings == ("Warning: config key 'alpha' appears as 'alpha' and 'm.alpha'; using 'alpha'",)
    assert result.log_path.read_text().splitlines()[-1] == "alpha 1 beta 2 PosixPath"
    nb = nbformat.read(result.notebook_path, as_version=4)
    markdown = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", []) if "data" in o]
    assert any("**Config for Unpacking** (4 keys)" in m and "| `m.beta` | `2` |" in m for m in markdown)


DEBUGGED = """
# %%
from ductaflow import flow_config
config = flow_config(config, "config/flows/divide.json")

# %%
from pathlib import Path
Path("numerator.txt").write_text(str(config["numerator"]))
print("dividing", config["numerator"], "by", config["divisor"])

# %%
value = int(Path("numerator.txt").read_text()) / config["divisor"]
Path("value.txt").write_text(str(value))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "divide", DEBUGGED, config={"numerator": 10, "divisor": 2})
    return root


def test_debug_flow_prepares_a_launcher_for_absolute_and_relative_dirs(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # absolute directory, explicit config
    target = tmp_path / "dbg_abs"
    launcher = debug_flow(project / "flows" / "divide.py", target, config={"numerator": 9, "divisor": 3})
    assert launcher == target / "debug_divide.py" and launcher.is_file()
    assert read_json(target / "divide_debug_config.json") == {
        "numerator": 9,
        "divisor": 3,
        "_project_root": str(project.resolve()),
    }
    proc = subprocess.run([sys.executable, str(launcher)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (target / "value.txt").read_text() == "3.0", "the launcher runs the flow in the debug dir"
    rec = read_json(target / "divide_status.json")
    assert rec["status"] == "green" and rec["mode"] == "script"
    assert rec["flow_path"] == str((project / "flows" / "divide.py").resolve())

    # not empty: refused unless forced
    with pytest.raises(DuctaflowError, match="not empty"):
        debug_flow(project / "flows" / "divide.py", target)
    assert debug_flow(project / "flows" / "divide.py", target, force=True) == launcher
    assert read_json(target / "divide_debug_config.json")["numerator"] == 10, "default config when none given"

    # relative directory (and relative flow path), resolved against the current directory
    monkeypatch.chdir(tmp_path)
    rel = debug_flow(Path(os.path.relpath(project, tmp_path)) / "flows" / "divide.py", "rel/dbg")
    assert rel == (tmp_path / "rel" / "dbg" / "debug_divide.py") and rel.is_absolute()
    cfg = read_json(tmp_path / "rel" / "dbg" / "divide_debug_config.json")
    assert cfg == {"numerator": 10, "divisor": 2, "_project_root": str(project.resolve())}
    assert str(tmp_path / "rel" / "dbg") in rel.read_text()


def test_ductaflow_debug_reproduces_a_failed_instance(project: Path) -> None:
    inst = project / "runs" / "divide" / "zero"
    failed = run_notebook(project / "flows" / "divide.py", {"numerator": 7, "divisor": 0}, inst, raise_on_failure=False)
    assert failed.status is Status.RED and failed.error is not None
    assert (failed.error.type, failed.error.cell_index) == ("ZeroDivisionError", 3)
    evidence = failed.notebook_path.read_bytes()

    proc = ductaflow_cmd("debug", str(inst), cwd=project.parent)
    assert proc.returncode == 0, proc.stderr
    debug_nb = inst / "divide_debug.ipynb"
    assert str(debug_nb) in proc.stdout and debug_nb.is_file()
    assert failed.notebook_path.read_bytes() == evidence, "the executed notebook is evidence: never touched"

    nb = nbformat.read(debug_nb, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    namespace: dict[str, object] = {}
    exec(compile(ast.parse(injected[0].source), "injected", "exec"), namespace)
    assert namespace["config"] == read_json(inst / "divide_config.json")
    assert namespace["config"] == {"numerator": 7, "divisor": 0, "_project_root": str(project.resolve())}

    # executing it with the instance dir as working directory reproduces the failure
    (inst / "numerator.txt").unlink()
    client = NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(inst)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "ZeroDivisionError"
    assert (inst / "numerator.txt").read_text() == "7", "the debug notebook ran in the instance dir"
    assert my_kernels() == []

    # a second debug notebook is refused without --force, replaced with it
    again = ductaflow_cmd("debug", str(inst), cwd=project)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    forced = ductaflow_cmd("debug", str(inst), "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(debug_nb.read_text())["cells"]
