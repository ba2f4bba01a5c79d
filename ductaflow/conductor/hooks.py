"""The sweep's hooks in the conductor process: sweep and scenario events, and what a hook that
raised does to the scenario's row (see :mod:`ductaflow.lifecycle.hooks` for the contract).

Each scenario row carries ``hook_failures``: the hooks that raised on its flows (read from their
status records when the build ends) and on the scenario's own events, each with its traceback;
the report shows them. With ``hooks_fail="red"`` or ``"stop"`` such a row is red; with
``"stop"`` the conductor then starts no further scenario.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.lifecycle.hooks import Hooks, SweepEvent
from ductaflow.store.result import FlowResult, HookFailure

#: The error a row gets when a hook that raised makes it red.
HOOK_FAILED = "hook_failed"


def failure_rows(failures: Iterable[HookFailure], flow: str | None = None) -> list[dict[str, Any]]:
    """Hook failures as they are kept in a state row (``flow``: the flow whose hook raised)."""
    return [{**f.to_record(), "flow": flow} for f in failures]


def flow_failures(records: Iterable[FlowResult | None]) -> list[dict[str, Any]]:
    """The hook failures recorded in a build's and its flows' status records."""
    out: list[dict[str, Any]] = []
    for rec in records:
        if rec is not None and rec.hook_failures:
            out += failure_rows(rec.hook_failures, rec.flow)
    return out


def mark(row: dict[str, Any], failures: list[dict[str, Any]], policy: str) -> None:
    """Add ``failures`` to ``row``; red (``hook_failed: ...``) when the policy says so."""
    if not failures:
        return
    row["hook_failures"] = [*row.get("hook_failures", []), *failures]
    if policy != "record" and row.get("status") in ("green", "orange"):
        first = failures[0]
        row["status"] = "red"
        row["error"] = f"{HOOK_FAILED}: {first['hook']}.{first['method']} raised {first['error']}"


class SweepHooks:
    """The hooks of one conduct() call and the failures of its sweep-level events."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.sweep_failures: list[dict[str, Any]] = []

    @property
    def stops(self) -> bool:
        return self.hooks.policy == "stop"

    def scenario(self, event: ScenarioEvent, row: dict[str, Any]) -> bool:
        """Call the scenario's hooks; a failure is added to ``row``. Returns whether the row changed."""
        # A scenario cancelled before it started (fail-fast) is no error of its own.
        never_started = event.kind is EventKind.CANCELLED and row.get("status") is None and not row.get("error")
        # A retry starts the build again, not the scenario: its hooks see one start and one end.
        retry = event.kind is EventKind.STARTED and int(row.get("attempts") or 1) > 1
        if not self.hooks or never_started or retry:
            return False
        failures = failure_rows(self.hooks.scenario(event))
        mark(row, failures, self.hooks.policy)
        return bool(failures)

    def sweep(self, kind: str, run: Any) -> bool:
        """``on_sweep_<kind>`` for a :class:`~ductaflow.conductor.state.ConductorRun`; whether a hook raised."""
        if not self.hooks:
            return False
        plan = run.plan
        event = SweepEvent(kind, plan.name, run.sweep, str(run.runs_root), len(plan.scenarios), len(plan.to_run),
                           run.state, MappingProxyType(run.counts()))  # fmt: skip
        failures = failure_rows(self.hooks.sweep(event))
        self.sweep_failures += failures
        return bool(failures)
