"""Which kernel a flow runs in (``ductaflow.kernels.kernelspecs``), and what a failed or stopped
cell leaves in the notebook (``ductaflow.kernels.evidence``), without a kernel (issue 16)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from ductaflow.core.flowfile import read_flow
from ductaflow.errors import DuctaflowError, KernelNotFound
from ductaflow.kernels.engine import KernelHandle
from ductaflow.kernels.evidence import describe_stop, error_output_from_reply, record_stop
from ductaflow.kernels.kernelspecs import choose_kernel
from ductaflow.kernels.papermill_engine import ThrottledSaves


def _flow(tmp_path: Path, kernelspec: dict | None, name: str = "nb") -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1")]
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def kernels_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A second real kernelspec, ``altpy``, found through ``JUPYTER_PATH``."""
    spec = tmp_path / "jupyter" / "kernels" / "altpy"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Alt Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return spec


def test_python3_or_no_kernelspec_is_ductaflows_own_kernel_another_one_is_that_kernelspec(
    tmp_path: Path, kernels_dir: Path
) -> None:
    assert choose_kernel(read_flow(_flow(tmp_path, None))) is None
    python3 = {"name": "python3", "language": "python", "display_name": "Python 3"}
    assert choose_kernel(read_flow(_flow(tmp_path, python3))) is None
    declared = read_flow(_flow(tmp_path, {"name": "altpy", "language": "python", "display_name": "x"}))
    assert choose_kernel(declared) == {"name": "altpy", "display_name": "Alt Python", "language": "python"}
    assert choose_kernel(declared, "python3")["name"] == "python3", "a name asked for is taken literally"


def test_a_kernelspec_that_is_not_installed_is_one_clear_error_listing_the_installed_ones(
    tmp_path: Path, kernels_dir: Path
) -> None:
    r_flow = read_flow(_flow(tmp_path, {"name": "ir", "language": "R", "display_name": "R"}))
    with pytest.raises(KernelNotFound) as info:
        choose_kernel(r_flow)
    message = str(info.value)
    assert "'ir' that nb.ipynb declares is not installed" in message and "\n" not in message
    assert "installed kernelspecs: altpy, python3" in message and "--kernel NAME" in message
    assert isinstance(info.value, DuctaflowError) and info.value.exit_code == 2
    assert choose_kernel(r_flow, "altpy")["name"] == "altpy"
    with pytest.raises(KernelNotFound, match=r"'nope' asked for with --kernel"):
        choose_kernel(r_flow, "nope")
    nameless = read_flow(_flow(tmp_path, None, "nameless"))
    nameless.notebook.metadata["language_info"] = {"name": "R"}
    with pytest.raises(KernelNotFound, match=r"an? r notebook that names no kernelspec"):
        choose_kernel(nameless)


def _manager(tmp_path: Path, outputs: list) -> ThrottledSaves:
    """papermill's execution manager over a two-cell notebook whose second cell is running."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("import time; time.sleep(9)")]
    nb_man = ThrottledSaves(nb, output_path=str(tmp_path / "out.ipynb"), progress_bar=False)
    nb_man.notebook_start()
    for i, cell in enumerate(nb_man.nb.cells):
        nb_man.cell_start(cell, i)
    nb_man.nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="before\n"), *outputs]
    return nb_man


def test_a_stopped_cell_keeps_what_it_printed_and_gets_an_error_naming_the_stop(tmp_path: Path) -> None:
    handle = KernelHandle(timeout=1.5)
    handle.expired = True
    nb_man = _manager(tmp_path, [])
    record_stop(nb_man, KeyboardInterrupt(), handle)
    cell = nb_man.nb.cells[1]
    assert [o.output_type for o in cell.outputs] == ["stream", "error"]
    assert (cell.outputs[1].ename, cell.outputs[1].evalue) == ("Timeout", "flow exceeded its timeout of 1.5s")
    assert cell.metadata.papermill["status"] == "failed" and nb_man.nb.metadata.papermill["exception"] is True
    # the kernel answered the interrupt ductaflow sent: the stop is named in front of it
    interrupt = nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])
    answered = _manager(tmp_path, [interrupt])
    record_stop(answered, None, handle)
    assert [o.get("ename") for o in answered.nb.cells[1].outputs] == [None, "Timeout", "KeyboardInterrupt"]
    # an error of the cell's own is kept as it is
    own = _manager(tmp_path, [nbformat.v4.new_output("error", ename="ValueError", evalue="v", traceback=[])])
    record_stop(own, RuntimeError("Kernel died"), KernelHandle())
    assert [o.get("ename") for o in own.nb.cells[1].outputs] == [None, "ValueError"]
    assert describe_stop(KeyboardInterrupt(), KernelHandle()) == ("KeyboardInterrupt", "interrupted")


def test_an_error_reply_without_an_error_output_gets_one_from_the_reply() -> None:
    cell = nbformat.v4.new_code_cell("%nosuchmagic")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="UsageError: nope\n")]
    reply = {"content": {"status": "error", "ename": "UsageError", "evalue": "nope", "traceback": []}}
    error_output_from_reply(cell, 0, reply)
    error_output_from_reply(cell, 0, reply)  # once only
    assert [(o.output_type, o.get("ename"), o.get("evalue")) for o in cell.outputs][1:] == [
        ("error", "UsageError", "nope")
    ]
    silent = nbformat.v4.new_code_cell("x")
    error_output_from_reply(silent, 0, {"content": {"status": "error"}})
    assert silent.outputs == [], "no ename: nothing to report"
