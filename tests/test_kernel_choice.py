"""The notebook's kernel and the error details of a run, with real kernels (issue 16, items 4-5).

- a flow runs in the kernelspec it declares (a second real kernelspec, found through
  ``JUPYTER_PATH``, whose ``env`` the flow prints), ``--kernel`` overrides, a missing one is
  one clear error (exit 2);
- the failing cell and the kernel's ``ename``/``evalue`` are reported whatever papermill
  marker cells the source holds, also for a ``UsageError`` the kernel prints;
- a timeout or a stop leaves papermill's evidence in the executed notebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from flowkit import make_project, my_kernels, read_json
from procs import wait_for_no_kernels

from ductaflow import Status, run_notebook
from ductaflow.kernels.engine import stop_kernels

pytestmark = pytest.mark.kernel

MARKER = "papermill-error-cell-tag"
HEADER = """# ---
# jupyter:
#   kernelspec:
#     display_name: {display}
#     language: {language}
#     name: {name}
# ---

# %% tags=["parameters"]
config = {{}}

# %%
import os
print("kernel=" + str(os.environ.get("WHICH_KERNEL")), "cwd=" + os.getcwd())
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a flow declaring ``altpy`` (installed below) and one declaring ``ir`` (not)."""
    root = make_project(tmp_path_factory.mktemp("kernelspecs"))
    spec = root.parent / "jupyter" / "kernels" / "altpy"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Alt Python", "language": "python", "env": {"WHICH_KERNEL": "altpy"}}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    (root / "flows" / "alt.py").write_text(HEADER.format(display="Alt Python", language="python", name="altpy"))
    (root / "flows" / "rnb.py").write_text(HEADER.format(display="R", language="R", name="ir"))
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ductaflow run`` in a fresh interpreter that finds the project's kernelspec."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "JUPYTER_PATH": str(root.parent / "jupyter")}
    command = [sys.executable, "-m", "ductaflow", "run", *args]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120, env=env)


def test_a_flow_runs_in_the_kernelspec_its_jupytext_header_declares(project: Path) -> None:
    res = _run(project, "flows/alt.py")
    assert res.returncode == 0, res.stderr
    out = project / "runs" / "alt" / "default"
    assert (out / "alt_execution_output.txt").read_text().split() == ["kernel=altpy", f"cwd={out}"]
    assert nbformat.read(out / "alt.ipynb", as_version=4).metadata.kernelspec.name == "altpy"
    assert wait_for_no_kernels(str(out), timeout=10) == []
    prov = json.loads((out / "alt_status.json").read_text())["provenance"]
    assert prov["executable"] == "kernelspec altpy" and prov["env_hash"] is None  # not ductaflow's interpreter


def test_a_missing_kernelspec_is_one_clear_error_and_kernel_overrides_it(project: Path) -> None:
    res = _run(project, "flows/rnb.py")
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "'ir'" in res.stderr, res.stderr
    assert "installed kernelspecs: altpy, python3" in res.stderr and "--kernel NAME" in res.stderr
    assert not (project / "runs" / "rnb").exists(), "nothing is written for a kernel that is not there"
    res = _run(project, "flows/rnb.py", "--kernel", "python3")
    assert res.returncode == 0, res.stderr
    out = project / "runs" / "rnb" / "default"
    assert (out / "rnb_execution_output.txt").read_text().split()[0] == "kernel=None"
    assert nbformat.read(out / "rnb.ipynb", as_version=4).metadata.kernelspec.name == "python3"


def _marked_notebook(path: Path) -> Path:
    """A notebook as papermill leaves a failed one: a banner on top, an anchor before the failure."""
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_markdown_cell("<span>An Exception was encountered at In [3]</span>")]
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    cells += [params, nbformat.v4.new_markdown_cell("# Notes"), nbformat.v4.new_code_cell("x = 1")]
    cells += [nbformat.v4.new_markdown_cell('<span id="papermill-error-cell">stopped here</span>')]
    cells += [nbformat.v4.new_code_cell("raise ValueError(f'bad x {x}')")]
    for i in (0, 4):
        cells[i].metadata["tags"] = [MARKER]
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def test_error_details_name_the_flows_cell_and_the_kernels_error(tmp_path: Path) -> None:
    marked = run_notebook(_marked_notebook(tmp_path / "marked.ipynb"), {}, tmp_path / "m", raise_on_failure=False)
    assert marked.error is not None
    assert (marked.error.type, marked.error.message, marked.error.cell_index) == ("ValueError", "bad x 1", 3)
    assert read_json(marked.status_path)["error"]["cell_index"] == 3
    magic = tmp_path / "magic.py"
    magic.write_text('# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n\n# %%\n%nosuchmagic\n')
    usage = run_notebook(magic, {}, tmp_path / "u", raise_on_failure=False).error
    assert usage is not None
    assert (usage.type, usage.cell_index) == ("UsageError", 2)
    assert usage.message == "Line magic function `%nosuchmagic` not found."
    assert my_kernels() == []


SLEEPY = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nimport time\nprint("asleep", flush=True)\ntime.sleep(60)\n'


def _stopped_cell(notebook: Path) -> tuple[nbformat.NotebookNode, int]:
    """The executed notebook and the index of its failed cell, checked to follow papermill's anchor."""
    nb = nbformat.read(notebook, as_version=4)
    failed = [i for i, c in enumerate(nb.cells) if c.metadata.get("papermill", {}).get("status") == "failed"]
    assert len(failed) == 1, [c.metadata.get("papermill") for c in nb.cells]
    assert MARKER in nb.cells[0].metadata.get("tags", []) and "In [" in nb.cells[0].source
    anchor = nb.cells[failed[0] - 1]
    assert MARKER in anchor.metadata.get("tags", []) and 'id="papermill-error-cell"' in anchor.source
    assert nb.metadata.papermill["exception"] is True and nb.cells[failed[0]].metadata.papermill["exception"] is True
    return nb, failed[0]


def test_a_timeout_or_a_stop_leaves_papermills_evidence_in_the_notebook(tmp_path: Path) -> None:
    flow = tmp_path / "sleepy.py"
    flow.write_text(SLEEPY)
    t0 = time.monotonic()
    slow = run_notebook(flow, {}, tmp_path / "t", timeout=1.5, raise_on_failure=False)
    assert slow.timed_out and slow.status is Status.RED and time.monotonic() - t0 < 15
    nb, at = _stopped_cell(slow.notebook_path)
    outputs = nb.cells[at].outputs
    assert outputs[0].text == "asleep\n" and (outputs[1].ename, outputs[1].evalue) == (
        "Timeout", "flow exceeded its timeout of 1.5s")
    assert slow.error is not None and slow.error.cell_index == 1
    assert my_kernels() == []

    interrupted: list[bool] = []

    def run() -> None:
        try:
            run_notebook(flow, {}, tmp_path / "s", raise_on_failure=False)
        except KeyboardInterrupt:  # what run_notebook raises for a run that was stopped
            interrupted.append(True)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    log = tmp_path / "s" / "sleepy_execution_output.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "asleep" in log.read_text()):
        time.sleep(0.05)
    assert stop_kernels([tmp_path / "s"]) == 1
    runner.join(timeout=30)
    assert interrupted and read_json(tmp_path / "s" / "sleepy_status.json")["interrupted"] is True
    nb, at = _stopped_cell(tmp_path / "s" / "sleepy.ipynb")
    assert nb.cells[at].outputs[0].text == "asleep\n"
    assert [o.get("ename") for o in nb.cells[at].outputs[1:]][0] == "KeyboardInterrupt"
    assert my_kernels() == []
