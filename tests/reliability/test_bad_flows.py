"""Files that are not usable flows, run directly or named by a build: exit 2 naming the file (and
cell/line), before any kernel starts. An ``.ipynb`` notebook is a supported flow: it runs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from relkit import PIPE, assert_rejected, cli, make_project, outcome, process, read_json, snapshot

SECTION = "Bad input: flows"

FLOW_CASES = {
    "two parameters cells": ("twoparams.py", ["twoparams.py", "2 cells tagged 'parameters' (cells [0, 1])"]),
    "syntax error": ("broken.py", ["broken.py", "syntax error in cell 2, line 1"]),
    "not UTF-8": ("latin1.py", ["latin1.py", "not UTF-8 text"]),
    "missing file": ("nope.py", ["nope.py"]),
    "notebook that is not JSON": ("garbage.ipynb", ["garbage.ipynb", "cannot read", "as a notebook"]),
}


def _notebook(tagged: bool = True) -> nbformat.NotebookNode:
    params = nbformat.v4.new_code_cell("config = {}")
    if tagged:
        params.metadata["tags"] = ["parameters"]
    body = (
        "import json\nfrom pathlib import Path\nfrom ductaflow import flow_config\n"
        'config = flow_config(config, "config/flows/nb.json")\n'
        'Path("seen.json").write_text(json.dumps(config))\nprint("n =", config["n"])'
    )
    md = nbformat.v4.new_markdown_cell("# A notebook flow")
    nb = nbformat.v4.new_notebook(cells=[md, params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    (root / "flows" / "latin1.py").write_bytes('# %% tags=["parameters"]\nconfig = {}\n# café\n'.encode("latin-1"))
    nbformat.write(_notebook(tagged=False), str(root / "flows" / "untagged.ipynb"))
    (root / "flows" / "garbage.ipynb").write_text("{not json")
    (root / "s.csv").write_text("scenario_name,n\na,1\n")
    return root


@pytest.mark.parametrize("key", list(FLOW_CASES))
def test_bad_flow(project: Path, case, key: str) -> None:
    file, culprits = FLOW_CASES[key]
    c = case(
        f"flow: {key}",
        f"ductaflow run flows/{file} --instance keep (an existing instance dir), and ductaflow conduct with a "
        f"build that steps flows/{file}",
    )
    (project / "builds" / "uses.py").write_text(
        f'# %% tags=["parameters"]\nconfig = {{}}\n{PIPE}'.replace('"flows/good.py", "good"', f'"flows/{file}", "x"')
    )
    before = snapshot(project)
    run = cli("run", f"flows/{file}", "--instance", "keep", cwd=project)
    assert_rejected(run, project, before, *culprits)
    conduct = cli("conduct", "s.csv", "--build", "builds/uses.py", cwd=project)
    assert_rejected(conduct, project, before, *culprits)
    c.outcome = f"both exit 2 before any kernel; run says: {run.message}"


@pytest.mark.parametrize("file", ["noparams.py", "empty.py"])
def test_a_flow_without_parameters_cell_runs_as_papermill_runs_it(project: Path, case, file: str) -> None:
    """Issue 16: no cell tagged ``parameters`` is no longer refused; given nothing, it runs unchanged."""
    c = case(f"flow without a parameters cell: {file}", f"ductaflow run flows/{file} --instance keep")
    run = cli("run", f"flows/{file}", "--instance", "keep", cwd=project)
    assert run.code == 0, (run.code, run.out, run.err)
    record = read_json(project / "runs" / Path(file).stem / "keep" / f"{Path(file).stem}_status.json")
    assert record["status"] == "green" and record["state"] == "finished", record
    c.outcome = "runs green, unchanged (no injected cell)"


def test_text_file_is_not_a_flow(project: Path, case) -> None:
    c = case("flow: a .txt file", "ductaflow run flows/notes.txt; ductaflow conduct s.csv --build flows/notes.txt")
    before = snapshot(project)
    run = cli("run", "flows/notes.txt", cwd=project)
    assert_rejected(run, project, before, "notes.txt is not a flow", ".py", ".ipynb")
    conduct = cli("conduct", "s.csv", "--build", "flows/notes.txt", cwd=project)
    assert_rejected(conduct, project, before, "notes.txt is not a flow")
    c.outcome = outcome(run)


@pytest.mark.timeout(120)
def test_ipynb_flow_is_supported(project: Path, case) -> None:
    c = case(
        "flow: an .ipynb notebook instead of .py",
        "python -m ductaflow run flows/nb.ipynb --instance one -p n=5 (a real kernel), then the same again",
    )
    source = project / "flows" / "nb.ipynb"
    nbformat.write(_notebook(), str(source))
    (project / "config" / "flows" / "nb.json").write_text('{"n": 1}')
    original = source.read_bytes()
    first = process("-m", "ductaflow", "run", "flows/nb.ipynb", "--instance", "one", "-p", "n=5", cwd=project)
    assert first.code == 0, first.err
    assert first.out.startswith("🟢 green  nb"), first.out
    inst = project / "runs" / "nb" / "one"
    assert read_json(inst / "seen.json")["n"] == 5
    executed = json.loads((inst / "nb.ipynb").read_text())
    tags = [c.get("metadata", {}).get("tags", []) for c in executed["cells"]]
    assert ["injected-parameters"] in tags and executed["cells"][0]["cell_type"] == "markdown"
    assert source.read_bytes() == original, "the source notebook was modified"
    second = cli("run", "flows/nb.ipynb", "--instance", "one", "-p", "n=5", cwd=project)
    assert second.code == 0 and "up to date: not re-run" in second.out, second.out
    c.outcome = (
        "supported: green, the kernel saw n=5, the executed copy has the injected cell, the source is untouched; "
        "the second call is 'up to date: not re-run'"
    )
