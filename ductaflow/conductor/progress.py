"""Conductor progress for people: a live rich bar on a terminal, one plain line per
finished build elsewhere (CI logs, notebooks). Failures are shown as they happen.

A reporter is given each finished scenario's row of the conductor state file (see
:func:`ductaflow.conductor.state.state_row`) and the light counts so far."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_LIGHT = {"green": "🟢", "orange": "🟠", "red": "🔴", None: "⚪"}


def scenario_line(row: Mapping[str, Any], done: int, total: int) -> str:
    """``🔴 red     g0.05_c1.5   12.3s  [4/9]  summarize: ValueError: boom``"""
    status = row.get("status")
    label = "up to date" if row.get("state") == "skipped" else (status or row.get("state") or "?")
    dur = f"{row['duration']:.1f}s" if row.get("duration") is not None else "-"
    line = f"{_LIGHT.get(status, '⚪')} {label:<7} {row['instance']}  {dur}  [{done}/{total}]"
    if row.get("error"):
        line += f"  {row['error']}"
    return line


class Reporter(Protocol):
    """What the conductor calls; any object with these methods will do."""

    def start(self, total: int, title: str) -> None: ...
    def finished(self, row: dict[str, Any], counts: dict[str, int]) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    """Says nothing."""

    def start(self, total: int, title: str) -> None: ...
    def finished(self, row: dict[str, Any], counts: dict[str, int]) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class LineReporter:
    """One plain line per finished build on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.total = 0
        self.done = 0

    def start(self, total: int, title: str) -> None:
        self.total, self.done = total, 0
        self.console.print(title, markup=False)

    def finished(self, row: dict[str, Any], counts: dict[str, int]) -> None:
        self.done += 1
        self.console.print(scenario_line(row, self.done, self.total), markup=False)

    def message(self, text: str) -> None:
        self.console.print(text, markup=False)

    def grow(self, more: int) -> None:
        """The sweep grew (follow-ups): ``more`` builds to run besides those counted at the start."""
        self.total += more

    def close(self) -> None: ...


class BarReporter(LineReporter):
    """A live bar with done/total and light counts; red builds are printed above it."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("🟢 {task.fields[green]} 🟠 {task.fields[orange]} 🔴 {task.fields[red]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task_id: Any = None

    def start(self, total: int, title: str) -> None:
        super().start(total, title)
        self.progress.start()
        self.task_id = self.progress.add_task("builds", total=total, green=0, orange=0, red=0)

    def finished(self, row: dict[str, Any], counts: dict[str, int]) -> None:
        self.done += 1
        if row.get("status") == "red":
            self.progress.console.print(scenario_line(row, self.done, self.total), markup=False)
        green, orange, red = (counts.get(k, 0) for k in ("green", "orange", "red"))
        self.progress.update(self.task_id, advance=1, green=green, orange=orange, red=red)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False)

    def grow(self, more: int) -> None:
        super().grow(more)
        self.progress.update(self.task_id, total=self.total)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(progress: bool | Reporter | None) -> Reporter:
    """None: a bar on a terminal, plain lines otherwise; True/False force bar/none."""
    if progress is None:
        return BarReporter() if sys.stderr.isatty() else LineReporter()
    if progress is True:
        return BarReporter()
    if progress is False:
        return NullReporter()
    return progress
