"""One import behaviour in every mode, and the flow's process saying what it used (issue 14).

A flow imports ``helper`` (``flows/helper.py``, beside it) and ``mypkg`` (a package at the
project root) the same way under ``run_notebook`` with a forked, a launched and a pre-started
kernel, and as a script (``python flows/x.py --config c.json --output-dir d``). The kernel's
``sys.path`` starts with the instance directory, the flow's directory, the project root; a
script's with the flow's directory, the project root. After the last cell the process reports
the project modules it imported and the inputs it declared (``Outcome.report``, and the
record's ``deps``). Real kernels, real subprocesses; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flowkit import make_project, read_json, write_flow
from procs import wait_for_no_kernels

from ductaflow import run_notebook
from ductaflow.core.flowfile import parameterise
from ductaflow.kernels import fork
from ductaflow.run.execute import make_plan
from ductaflow.run.notebook import Execution, Outcome, execute
from ductaflow.store.layout import artifact_paths
from ductaflow.store.result import FlowResult

pytestmark = pytest.mark.kernel
linux_fork = pytest.mark.skipif(not fork.supported(), reason="fork launching is Linux-only")

FLOW = """
# %%
from ductaflow import flow_config
config = flow_config(config)

# %%
import json, os, sys, time
import psutil
import helper
import mypkg
from ductaflow.core.deps import inputs
inputs("data/table.csv")
time.sleep(config.get("nap", 0))
print(json.dumps({
    "sys_path": sys.path[:3], "cwd": os.getcwd(), "helper": helper.WHO, "mypkg": mypkg.WHO,
    "created": psutil.Process().create_time(), "ended": time.time(),
}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose flow ``uses`` imports a helper beside it and a package at the root."""
    root = make_project(tmp_path)
    (root / "flows" / "helper.py").write_text("WHO = 'helper'\n", encoding="utf-8")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("WHO = 'mypkg'\n", encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    write_flow(root, "uses", FLOW)
    return root.resolve()


def _facts(exec_dir: Path) -> dict[str, Any]:
    """The JSON line the flow printed in its execution log."""
    lines = (exec_dir / "uses_execution_output.txt").read_text(encoding="utf-8").splitlines()
    return json.loads([line for line in lines if line.startswith("{")][-1])


def _check_imports(root: Path, exec_dir: Path) -> dict[str, Any]:
    facts = _facts(exec_dir)
    assert facts["helper"] == "helper" and facts["mypkg"] == "mypkg"
    real = str(exec_dir.resolve())
    assert facts["cwd"] == real
    assert facts["sys_path"] == [real, str(root / "flows"), str(root)]
    return facts


def _used(result: FlowResult) -> set[tuple[str, str]]:
    return {(d.kind, d.path) for d in result.deps or ()}


def _check_usage(result: FlowResult) -> None:
    used = _used(result)
    assert {("module", "flows/helper.py"), ("module", "mypkg/__init__.py"), ("input", "data/table.csv")} <= used
    assert ("module", "flows/uses.py") not in used  # the flow itself is its code, not a module


@linux_fork
def test_a_forked_kernel_imports_the_helper_and_the_project_package(project: Path) -> None:
    res = run_notebook(project / "flows" / "uses.py", {}, execution_dir=project / "runs" / "uses" / "fork")
    assert res.status.value == "green", res.error
    _check_imports(project, res.execution_dir)
    _check_usage(res)
    assert wait_for_no_kernels(str(project)) == []


def test_a_launched_kernel_imports_them_too(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUCTAFLOW_KERNEL_LAUNCHER", "spawn")
    res = run_notebook(project / "flows" / "uses.py", {}, execution_dir=project / "runs" / "uses" / "spawn")
    assert res.status.value == "green", res.error
    _check_imports(project, res.execution_dir)
    _check_usage(res)
    assert wait_for_no_kernels(str(project)) == []


@linux_fork
def test_a_pre_started_kernel_imports_them_too(project: Path) -> None:
    """Flows in a loop: from the third on, each kernel was forked while the last flow ran
    (a spare, handed its flow's directory before cell one)."""
    seen = []
    for k in range(3):
        res = run_notebook(
            project / "flows" / "uses.py",
            {"nap": 0.3},
            execution_dir=project / "runs" / "uses" / f"loop{k}",
            preload=["colorsys"],
        )
        assert res.status.value == "green", res.error
        seen.append(_check_imports(project, res.execution_dir))
        _check_usage(res)
    assert seen[2]["created"] < seen[1]["ended"], "the third flow's kernel was a spare, started while the second ran"
    assert wait_for_no_kernels(str(project)) == []


def test_script_mode_imports_them_and_records_what_it_used(project: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"label": "script"}), encoding="utf-8")
    out_dir = project / "runs" / "uses" / "script"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, str(project / "flows" / "uses.py"), "--config", str(cfg), "--output-dir", str(out_dir)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = _facts(out_dir)
    assert facts["helper"] == "helper" and facts["mypkg"] == "mypkg"
    assert facts["cwd"] == str(out_dir)
    assert facts["sys_path"][:2] == [str(project / "flows"), str(project)]
    rec = read_json(artifact_paths(out_dir, "uses")["status"])
    assert rec["status"] == "green"
    used = {(d["kind"], d["path"]) for d in rec.get("deps") or []}
    assert {("module", "flows/helper.py"), ("module", "mypkg/__init__.py"), ("input", "data/table.csv")} <= used
    assert ("module", "flows/uses.py") not in used


def _execute(root: Path, instance: str, timeout: float | None = None, flow: str = "uses") -> Outcome:
    """``run.notebook.execute`` as ``run_notebook`` calls it, to see the Outcome itself."""
    plan = make_plan(root / "flows" / f"{flow}.py", {}, root / "runs" / flow / instance, root)
    plan.exec_dir.mkdir(parents=True, exist_ok=True)
    ctx = plan.context.child(flow=plan.flow.name, execution_dir=str(plan.exec_dir))
    return execute(
        Execution(
            plan.flow,
            parameterise(plan.flow, plan.cfg, None),
            plan.exec_dir,
            artifact_paths(plan.exec_dir, plan.flow.name),
            None,
            timeout,
            ctx.env(),
            plan.kernel,
            sys_path=(str(plan.flow.path.parent.resolve()), str(plan.root)),
            report_root=plan.root,
        )
    )


def test_the_outcome_holds_the_modules_imported_and_the_inputs_declared(project: Path) -> None:
    outcome = _execute(project, "direct")
    assert outcome.status.value == "green", outcome.error
    assert outcome.report is not None
    modules = set(outcome.report["modules"])
    assert {str(project / "flows" / "helper.py"), str(project / "mypkg" / "__init__.py")} <= modules
    declared = [item["path"] for item in outcome.report["inputs"]]
    assert declared == [str(project / "data" / "table.csv")]


def test_a_flow_whose_cell_raised_still_reports(project: Path) -> None:
    write_flow(project, "raises", "# %%\nimport helper\n\n# %%\nraise RuntimeError('on purpose')\n")
    outcome = _execute(project, "red", flow="raises")
    assert outcome.status.value == "red" and outcome.error is not None and outcome.error.type == "RuntimeError"
    assert outcome.report is not None and str(project / "flows" / "helper.py") in outcome.report["modules"]
    assert wait_for_no_kernels(str(project)) == []


ANSWERS_NOT = {
    # the report lists the declared inputs: one it cannot write as JSON, or cannot even list
    "error": "from ductaflow.core import deps\ndeps._DECLARED.append(object())\n",
    "hang": (
        "from ductaflow.core import deps\n"
        "class _Slow(list):\n"
        "    def __iter__(self):\n"
        "        import time\n"
        "        time.sleep(60)\n"
        "        return iter(())\n"
        "deps._DECLARED = _Slow([1])\n"
    ),
}


@pytest.mark.parametrize("how", sorted(ANSWERS_NOT))
def test_a_kernel_that_cannot_answer_leaves_no_report_and_the_run_green(
    project: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ductaflow.kernels import silent

    monkeypatch.setattr(silent, "REPORT_TIMEOUT_S", 0.5)
    flow = project / "flows" / "uses.py"
    flow.write_text(flow.read_text(encoding="utf-8") + "\n# %%\n" + ANSWERS_NOT[how], encoding="utf-8")
    t0 = time.monotonic()
    outcome = _execute(project, f"mute-{how}")
    assert outcome.status.value == "green", outcome.error
    assert outcome.report is None
    assert time.monotonic() - t0 < 20
    res = run_notebook(flow, {}, execution_dir=project / "runs" / "uses" / f"rec-{how}")
    assert res.status.value == "green" and any("did not say" in note for note in res.notes)
    assert ("input", "data/table.csv") not in _used(res)  # the declaration came with the report
    assert wait_for_no_kernels(str(project)) == []
