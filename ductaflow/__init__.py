"""ductaflow: notebook-native pipelines. Flows are Jupytext .py notebooks; every run gets
its own instance directory with the executed notebook, its output, config and status.

The public API is :data:`__all__`. Light names are imported here; the names that pull in
heavy libraries (papermill and nbformat to run a flow, pandas for the conductor and metrics,
Jinja2 for the report, nbformat for ``flow_config`` and the other script-mode helpers,
importlib.metadata for the result types' provenance) are imported when first used (PEP 562):
every flow's kernel imports ``ductaflow`` and should not pay for what it does not use, and the
``ductaflow`` command starts its kernel template only after importing the package. The
``TYPE_CHECKING`` block names their homes for type checkers and IDEs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductaflow._version import __version__
from ductaflow.core.config import deep_merge, load_config_file
from ductaflow.core.lights import Status
from ductaflow.errors import (
    AnalysisError,
    ConductorFailed,
    ConfigError,
    DuctaflowError,
    FlowFailed,
    FlowFileError,
    InvalidName,
    MissingExtra,
    MissingParametersCell,
    ScenarioError,
    SharedFilesystemError,
    SweepNotFound,
    UnsafePath,
    WouldOverwrite,
)

if TYPE_CHECKING:
    from ductaflow.conductor.search import FinishedScenario
    from ductaflow.conductor.sweep import conduct
    from ductaflow.conductor.tables import expand_grid
    from ductaflow.core.deps import artifacts, inputs
    from ductaflow.core.seeds import reproducible_seed, seed
    from ductaflow.debug import debug_flow, prepare_debug_notebook
    from ductaflow.inflow.build import step
    from ductaflow.inflow.recording import record
    from ductaflow.inflow.script_mode import (
        display_config_summary,
        flow_config,
        is_notebook_execution,
        load_cli_config,
        unpack_config,
    )
    from ductaflow.report.page import generate_status_report, write_report
    from ductaflow.run.execute import run_notebook, run_step_flow
    from ductaflow.store.metrics import record_table
    from ductaflow.store.records import analyze_execution_logs
    from ductaflow.store.result import ErrorInfo, FlowResult
    from ductaflow.store.sweeps import read_sweep_state

#: Entry points imported on first use: name -> the module that defines it.
_ON_USE = {
    "ErrorInfo": "ductaflow.store.result",
    "FinishedScenario": "ductaflow.conductor.search",
    "FlowResult": "ductaflow.store.result",
    "analyze_execution_logs": "ductaflow.store.records",
    "artifacts": "ductaflow.core.deps",
    "conduct": "ductaflow.conductor.sweep",
    "debug_flow": "ductaflow.debug",
    "display_config_summary": "ductaflow.inflow.script_mode",
    "expand_grid": "ductaflow.conductor.tables",
    "flow_config": "ductaflow.inflow.script_mode",
    "generate_status_report": "ductaflow.report.page",
    "inputs": "ductaflow.core.deps",
    "is_notebook_execution": "ductaflow.inflow.script_mode",
    "load_cli_config": "ductaflow.inflow.script_mode",
    "prepare_debug_notebook": "ductaflow.debug",
    "record": "ductaflow.inflow.recording",
    "record_table": "ductaflow.store.metrics",
    "read_sweep_state": "ductaflow.store.sweeps",
    "reproducible_seed": "ductaflow.core.seeds",
    "run_notebook": "ductaflow.run.execute",
    "run_step_flow": "ductaflow.run.execute",
    "seed": "ductaflow.core.seeds",
    "step": "ductaflow.inflow.build",
    "unpack_config": "ductaflow.inflow.script_mode",
    "write_report": "ductaflow.report.page",
}


def ledger(runs_root: str | Path = "runs") -> Any:
    """Every run, skip and failure recorded under ``runs_root`` as a pandas DataFrame."""
    from ductaflow.store.ledger import read  # pandas: deferred until the ledger is read

    return read(runs_root)


def __getattr__(name: str) -> Any:
    if name in _ON_USE:
        value = getattr(importlib.import_module(_ON_USE[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'ductaflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_USE))


__all__ = [
    "AnalysisError",
    "ConductorFailed",
    "ConfigError",
    "DuctaflowError",
    "ErrorInfo",
    "FinishedScenario",
    "FlowFailed",
    "FlowFileError",
    "FlowResult",
    "InvalidName",
    "MissingExtra",
    "MissingParametersCell",
    "ScenarioError",
    "SharedFilesystemError",
    "Status",
    "SweepNotFound",
    "UnsafePath",
    "WouldOverwrite",
    "__version__",
    "analyze_execution_logs",
    "artifacts",
    "conduct",
    "debug_flow",
    "deep_merge",
    "display_config_summary",
    "expand_grid",
    "flow_config",
    "generate_status_report",
    "inputs",
    "is_notebook_execution",
    "ledger",
    "load_cli_config",
    "load_config_file",
    "prepare_debug_notebook",
    "read_sweep_state",
    "record",
    "record_table",
    "reproducible_seed",
    "run_notebook",
    "run_step_flow",
    "seed",
    "step",
    "unpack_config",
    "write_report",
]
