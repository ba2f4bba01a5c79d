"""The ``ductaflow`` command: a click group whose commands live one family per module.

Importing this package registers every command on :data:`cli`; ``entry`` is the console script.
"""

from ductaflow.cli import (
    analyze_cmd,
    conduct_cmd,
    html_cmd,
    init_cmd,
    provenance_cmd,
    run_cmds,
    store_cmds,
    summary_cmd,
    sync_cmd,
)
from ductaflow.cli.app import EXIT_INTERRUPTED, EXIT_TERMINATED, cli, entry, main
from ductaflow.cli.common import _parse_override, result_line

__all__ = [
    "EXIT_INTERRUPTED", "EXIT_TERMINATED", "_parse_override", "analyze_cmd", "cli", "conduct_cmd", "entry", "html_cmd",
    "init_cmd", "main", "provenance_cmd", "result_line", "run_cmds", "store_cmds", "summary_cmd", "sync_cmd",
]
