"""The earlier ductaflow's names, kept with their meaning for projects written against it.

``from ductaflow import run_notebook`` keeps working (the package re-exports these); this
module names them in one place so that the set a user relies on is explicit and tested.
"""

from __future__ import annotations

from ductaflow.debug import debug_flow
from ductaflow.inflow.script_mode import display_config_summary, is_notebook_execution, load_cli_config, unpack_config
from ductaflow.report.page import generate_status_report
from ductaflow.run.execute import run_notebook, run_step_flow
from ductaflow.store.records import analyze_execution_logs

__all__ = [
    "analyze_execution_logs",
    "debug_flow",
    "display_config_summary",
    "generate_status_report",
    "is_notebook_execution",
    "load_cli_config",
    "run_notebook",
    "run_step_flow",
    "unpack_config",
]
