"""The traffic-light rule, in exactly one place.

red    -- the flow raised, its kernel died, it timed out or was interrupted;
orange -- it completed and a captured output line carries ``⚠`` or ``warning:``
          (any case) within its first 15 characters, or Python's ``warnings`` fired;
green  -- otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum


class Status(str, Enum):
    """The traffic light. Ordered so that ``max`` gives the worst."""

    GREEN = "green"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def emoji(self) -> str:
        return {"green": "🟢", "orange": "🟠", "red": "🔴"}[self.value]

    @classmethod
    def worst(cls, *statuses: Status | str | None) -> Status:
        """The worst of the given lights (green when none is given)."""
        present = [cls(s) for s in statuses if s]
        return max(present, key=lambda s: s.rank, default=cls.GREEN)

    def __str__(self) -> str:  # so f-strings print "green", not "Status.GREEN"
        return self.value


_RANK = {Status.GREEN: 0, Status.ORANGE: 1, Status.RED: 2}


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
