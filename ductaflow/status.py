"""The traffic-light rule, in exactly one place.

red    -- the flow raised, its kernel died, it timed out or was interrupted;
orange -- it completed and a captured output line carries ``⚠`` or ``warning:``
          (any case) within its first 15 characters, or Python's ``warnings`` fired;
green  -- otherwise.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from ductaflow.models import Status

log = logging.getLogger(__name__)

WARNING_PREFIX_CHARS = 15
_WARNING_MARKERS = ("\u26a0", "warning:")
# The line format of warnings.formatwarning: "<file>:<lineno>: <Category>: <message>"
_PY_WARNING_RE = re.compile(r"^.*:\d+: (?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*Warning: ")


def is_warning_line(line: str) -> bool:
    """True when the line's first 15 characters hold a warning marker (case-insensitive)."""
    head = line[:WARNING_PREFIX_CHARS].lower()
    return any(marker in head for marker in _WARNING_MARKERS)


# IPython's own reaction to sys.exit() in a kernel; it is not the flow's warning.
_IPYTHON_EXIT_NOTICE = "To exit: use 'exit', 'quit', or Ctrl-D."


def is_python_warning_line(line: str) -> bool:
    """True for the first line of a message printed by ``warnings.warn``."""
    return bool(_PY_WARNING_RE.match(line)) and _IPYTHON_EXIT_NOTICE not in line


def warning_lines(lines: Iterable[str]) -> list[str]:
    """The lines that turn a completed flow orange under the prefix rule."""
    return [ln.rstrip("\r\n") for ln in lines if is_warning_line(ln)]


def classify(
    *,
    raised: bool = False,
    kernel_died: bool = False,
    timed_out: bool = False,
    interrupted: bool = False,
    warnings: Iterable[str] = (),
) -> Status:
    """Apply the rule to the facts of one execution."""
    if raised or kernel_died or timed_out or interrupted:
        return Status.RED
    if any(True for _ in warnings):
        return Status.ORANGE
    return Status.GREEN


def analyze_execution_logs(directory: str | Path) -> Status:
    """The worst light of every flow recorded below ``directory``.

    Status records are the truth; an ``*_execution_output.txt`` with no record beside it
    (an older or hand-made run) is judged by the warning rule alone.
    """
    root = Path(directory)
    lights: list[Status] = []
    recorded: set[Path] = set()
    for rec_path in root.rglob("*_status.json"):
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
            lights.append(Status(rec["status"]))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("skipping unreadable status record %s", rec_path)
            continue
        recorded.add(rec_path.with_name(rec_path.name[: -len("_status.json")]))
    for log_path in root.rglob("*_execution_output.txt"):
        if log_path.with_name(log_path.name[: -len("_execution_output.txt")]) in recorded:
            continue
        try:
            text = log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            log.warning("skipping unreadable log %s", log_path)
            continue
        lights.append(classify(warnings=warning_lines(text.splitlines())))
    return Status.worst(*lights)
