"""ductaflow: notebook-native pipelines. Flows are Jupytext .py notebooks; every run gets
its own instance directory with the executed notebook, its output, config and status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from ductaflow.config import deep_merge, load_config_file  # noqa: E402
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
from ductaflow.models import ErrorInfo, FlowResult, Status  # noqa: E402
from ductaflow.script import (  # noqa: E402
    display_config_summary,
    flow_config,
    is_notebook_execution,
    load_cli_config,
    unpack_config,
)
from ductaflow.status import analyze_execution_logs, classify, is_warning_line  # noqa: E402

# Loaded on first use: running flows pulls in papermill and nbformat (~0.2 s even before
# papermill), the conductor pandas, the report Jinja2. A flow kernel that only calls
# flow_config pays for none of them.
_LAZY = {
    "step": "ductaflow.build",
    "run_notebook": "ductaflow.execute",
    "run_step_flow": "ductaflow.execute",
    "debug_flow": "ductaflow.debug",
    "prepare_debug_notebook": "ductaflow.debug",
    "conduct": "ductaflow.conductor",
    "expand_grid": "ductaflow.scenarios",
    "generate_status_report": "ductaflow.report",
    "write_report": "ductaflow.report",
    "record": "ductaflow.results",
    "record_table": "ductaflow.results",
}


# The submodule first: importing it later would rebind ``ductaflow.ledger`` to the module.
import ductaflow.ledger  # noqa: E402, F401, I001


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
