"""ductaflow: notebook-native pipelines. Flows are Jupytext .py notebooks; every run gets
its own instance directory with the executed notebook, its output, config and status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from ductaflow.build import step  # noqa: E402
from ductaflow.config import deep_merge, load_config_file  # noqa: E402
from ductaflow.debug import debug_flow, prepare_debug_notebook  # noqa: E402
from ductaflow.errors import (  # noqa: E402
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
    UnsafePath,
)
from ductaflow.execute import run_notebook, run_step_flow  # noqa: E402
from ductaflow.models import ErrorInfo, FlowResult, Status  # noqa: E402
from ductaflow.script import (  # noqa: E402
    display_config_summary,
    flow_config,
    is_notebook_execution,
    load_cli_config,
    unpack_config,
)
from ductaflow.status import analyze_execution_logs, classify, is_warning_line  # noqa: E402

# Loaded on first use: the conductor pulls in pandas, the report Jinja2.
_LAZY = {
    "conduct": "ductaflow.conductor",
    "expand_grid": "ductaflow.scenarios",
    "generate_status_report": "ductaflow.report",
    "write_report": "ductaflow.report",
    "record": "ductaflow.results",
    "record_table": "ductaflow.results",
}


def ledger(runs_root: str | Path = "runs") -> Any:
    """Every run, skip and failure recorded under ``runs_root`` as a pandas DataFrame."""
    from ductaflow.ledger import read

    return read(runs_root)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ductaflow' has no attribute {name!r}")


__all__ = [
    "ledger",
    "record",
    "record_table",
    "ConductorFailed",
    "ConfigError",
    "DuctaflowError",
    "ErrorInfo",
    "FlowFailed",
    "FlowFileError",
    "FlowResult",
    "InvalidName",
    "MissingExtra",
    "MissingParametersCell",
    "ScenarioError",
    "SharedFilesystemError",
    "Status",
    "UnsafePath",
    "__version__",
    "analyze_execution_logs",
    "classify",
    "conduct",
    "debug_flow",
    "deep_merge",
    "display_config_summary",
    "expand_grid",
    "flow_config",
    "generate_status_report",
    "is_notebook_execution",
    "is_warning_line",
    "load_cli_config",
    "load_config_file",
    "prepare_debug_notebook",
    "run_notebook",
    "run_step_flow",
    "step",
    "unpack_config",
    "write_report",
]
