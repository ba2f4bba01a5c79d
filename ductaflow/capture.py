"""Live capture of a flow's stdout/stderr into ``<flow>_execution_output.txt``.

Only text the flow's own code writes reaches the sink, so framework messages can never
turn a flow orange. Each write is flushed at once so ``tail -f`` shows progress.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

from ductaflow.status import is_python_warning_line, is_warning_line


class OutputSink:
    """Append-only, flushed log of stream text, with the warning lines it has seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = open(path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._lock = threading.Lock()
        self._partial: dict[str, str] = {}
        self.warning_lines: list[str] = []
        self.python_warnings: list[str] = []

    def write(self, stream: str, text: str) -> None:
        """Record ``text`` from ``stream`` ("stdout" or "stderr")."""
        if not text:
            return
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.write(text)
                    self._fh.flush()
                except (OSError, ValueError):
                    self._fh = None  # a full disk must not kill the flow; status still records
            buf = self._partial.get(stream, "") + text
            *lines, rest = buf.split("\n")
            self._partial[stream] = rest
            for line in lines:
                self._scan(stream, line)

    def _scan(self, stream: str, line: str) -> None:
        line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
        if is_warning_line(line):
            self.warning_lines.append(line)
        elif stream == "stderr" and is_python_warning_line(line):
            self.python_warnings.append(line)

    @property
    def warnings(self) -> list[str]:
        """Every line that makes a completed flow orange, in order of kind."""
        return self.warning_lines + self.python_warnings

    def close(self) -> None:
        """Scan any unterminated last lines and close the file."""
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self._scan(stream, rest)
            self._partial.clear()
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
                self._fh = None
