"""A flow opened as a notebook (JupyterLab with Jupytext, VS Code) works under runs/, never in flows/.

One real kernel for the first two tests, started as JupyterLab starts a document's kernel: working directory
the flow's folder, ``JPY_SESSION_NAME`` its path from the server's root. The flow is read as the
Jupytext contents manager reads it and executed cell by cell. The example project is copied into
tmp_path and its flows run first into a build instance's layout, so a downstream flow can be
pointed at its latest instance there. The last test runs ``jupytext --execute`` (its own kernel).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupytext
import pandas as pd
import pytest
from flowkit import all_files, ductaflow_cmd
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = ("flows", "builds", "config", "pyproject.toml")
FLOWS = ("prepare_zones", "distribute_trips", "summarize")
CELL_TIMEOUT = 120
#: What a ductaflow run or a Jupyter server outside this test could hand the kernel.
_CLEARED = ("DUCTAFLOW_RUN_CONTEXT", "DUCTAFLOW_PROJECT_ROOT", "DUCTAFLOW_INSTANCE", "JPY_SESSION_NAME")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example project with its flows recorded in runs/demand_model/base/runs/<flow>/."""
    root = tmp_path_factory.mktemp("interactive") / "proj"
    root.mkdir()
    for name in EXAMPLE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, root / name)
    # The build's layout, each flow run into its step's directory by `ductaflow run --output-dir`, one
    # process each. (Running builds/demand_model.py itself leaves a df-* kernel connection file behind
    # in the Jupyter runtime dir, which the suite's check fails on; the layout is what matters here.)
    for flow in FLOWS:
        out = f"runs/demand_model/base/runs/{flow}"
        done = ductaflow_cmd("run", f"flows/{flow}.py", "--output-dir", out, cwd=root, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def kernel(project: Path) -> Iterator[BlockingKernelClient]:
    """A kernel as JupyterLab starts one for flows/prepare_zones.py; always shut down."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["JPY_SESSION_NAME"] = "flows/prepare_zones.py"  # relative to the server's root, as Jupyter Server sets it
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(project / "flows"), env=env)
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        yield kc
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def _open_like_jupyterlab(root: Path, rel: str) -> Any:
    """The notebook JupyterLab's Jupytext contents manager hands the front end for a .py flow."""
    try:  # the contents manager itself needs jupyter_server (or notebook), which ductaflow does not install
        from jupytext.sync_contentsmanager import TextFileContentsManager
    except ImportError:
        return jupytext.read(root / rel)  # the same jupytext reader the contents manager's get() uses
    return TextFileContentsManager(root_dir=str(root)).get(rel)["content"]


def _run(kc: BlockingKernelClient, code: str) -> str:
    """Execute ``code`` as a notebook cell; its printed text, or the test fails with the error."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    reply = kc.execute_interactive(code, timeout=CELL_TIMEOUT, output_hook=hook)
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return text


def _run_cells(kc: BlockingKernelClient, nb: Any) -> str:
    return "".join(_run(kc, cell.source) for cell in nb.cells if cell.cell_type == "code")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_flow_opened_in_jupyterlab_writes_under_runs_not_flows(project: Path, kernel: BlockingKernelClient) -> None:
    flows_before = all_files(project / "flows")
    nb = _open_like_jupyterlab(project, "flows/prepare_zones.py")
    out = _run_cells(kernel, nb)
    work = project / "runs" / "prepare_zones" / "interactive"
    assert "interactive session: working in runs/prepare_zones/interactive (new)" in out, out
    assert "JPY_SESSION_NAME" in out and "not flows" in out and "ductaflow debug" in out
    assert all_files(project / "flows") == flows_before  # no zones.parquet (nor anything else) in flows/
    assert Path(_run(kernel, "import os; print(os.getcwd())").strip()) == work
    # the same default config as the build's step: the same zones as the recorded run
    built = pd.read_parquet(project / "runs" / "demand_model" / "base" / "runs" / "prepare_zones" / "zones.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(work / "zones.parquet"), built)
    # the parameters cell and the config cell run again: the same directory, not one nested in it
    _run(kernel, nb.cells[[c.cell_type for c in nb.cells].index("code")].source)
    again = _run(kernel, next(c.source for c in nb.cells if "flow_config(" in c.source))
    assert "working in runs/prepare_zones/interactive: the default" in again
    assert Path(_run(kernel, "print(os.getcwd())").strip()) == work and not (work / "runs").exists()


def test_downstream_flow_in_the_latest_build_instance_reads_its_upstream(
    project: Path, kernel: BlockingKernelClient
) -> None:
    instance = project / "runs" / "demand_model" / "base" / "runs" / "distribute_trips"
    recorded = {k: v for k, v in _digests(instance).items() if k.startswith("distribute_trips")}
    od_before = pd.read_parquet(instance / "od_matrix.parquet")
    flows_before = all_files(project / "flows")
    # VS Code's interactive window names the file a cell comes from in __file__; the instance is
    # chosen with the environment variable, here set in the kernel
    flow = project / "flows" / "distribute_trips.py"
    _run(kernel, f"__file__ = {str(flow)!r}\nos.environ['DUCTAFLOW_INSTANCE'] = 'latest'")
    try:
        out = _run_cells(kernel, _open_like_jupyterlab(project, "flows/distribute_trips.py"))
    finally:
        _run(kernel, "del os.environ['DUCTAFLOW_INSTANCE'], __file__")
    assert "working in runs/demand_model/base/runs/distribute_trips: latest recorded distribute_trips, green" in out
    assert "loaded the recorded config of that instance" in out, out
    assert "from ../prepare_zones/zones.parquet" in out  # the upstream read through its relative path
    assert Path(_run(kernel, "print(os.getcwd())").strip()) == instance
    assert all_files(project / "flows") == flows_before
    # the recorded run's own files are untouched; its output, rewritten with its own config, is the same
    assert {k: v for k, v in _digests(instance).items() if k.startswith("distribute_trips")} == recorded
    pd.testing.assert_frame_equal(pd.read_parquet(instance / "od_matrix.parquet"), od_before)


def test_jupytext_execute_runs_a_flow_under_runs(project: Path) -> None:
    """``jupytext --execute`` (nbconvert, a kernel that is told nothing): the flow is found from its
    default config's name; DUCTAFLOW_INSTANCE, from the shell, names the instance."""
    flows_before = all_files(project / "flows")
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["DUCTAFLOW_INSTANCE"] = "from_jupytext"
    cmd = [sys.executable, "-m", "jupytext", "--to", "ipynb", "--set-kernel", "python3", "--execute"]
    done = subprocess.run(
        [*cmd, "flows/prepare_zones.py"], cwd=project, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all_files(project / "flows") - flows_before == {"prepare_zones.ipynb"}  # jupytext's own output
    assert (project / "runs" / "prepare_zones" / "from_jupytext" / "zones.parquet").is_file()
    text = (project / "flows" / "prepare_zones.ipynb").read_text(encoding="utf-8")
    assert "working in runs/prepare_zones/from_jupytext (new): the instance you chose" in text
    assert "flow prepare_zones from the default config file's name" in text
