"""Adaptive sweeps: a finished scenario's result proposes the next scenarios, within a budget.

A :class:`Search` keeps one sweep's search state (:mod:`ductaflow.store.sweeps`) in step with
the conductor's rows, as a consumer of their events, and asks the sweep's follow-up function
about each result: ``follow_up(FinishedScenario) -> rows``. The rows (a DataFrame, a list of
dicts or one dict; an optional ``priority``, lower runs first) are checked and decided like the
first table (:func:`~ductaflow.conductor.plan.extend_plan`), carry their parent's instance as
lineage, and queue by priority, then submission order. ``max_runs`` caps the builds started
(retries and up-to-date scenarios are not counted); what the budget leaves is ``not_run: budget``.

An adaptive sweep (a follow-up, or retries) writes its state after every change, so ``kill -9``
loses nothing; a plain grid writes it when the conductor saves its state (at the start, on a
fail-fast or give-up, at the end): its rows' progress is in the conductor's state journal, and
its records on disk make a resumed or repeated run skip what finished.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ductaflow.conductor.plan import SweepPlan, extend_plan
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.core.clock import now_iso
from ductaflow.core.config import canonical_json, to_jsonable
from ductaflow.errors import ConfigError, ScenarioError
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.lifecycle.hooks import load_object
from ductaflow.store.sweeps import BUDGET, SweepNode, SweepState, write_sweep_state

log = logging.getLogger(__name__)

#: The column of follow-up rows that orders the queue (lower first); not a parameter.
PRIORITY = "priority"
_NODE_STATE = {
    EventKind.STARTED: "running",
    EventKind.FINISHED: "done",
    EventKind.FAILED: "done",
    EventKind.LOST: "done",
    EventKind.SKIPPED: "skipped",
}


@dataclass(frozen=True)
class FinishedScenario:
    """What a follow-up function is given: one scenario that ended, with its light and metrics."""

    instance: str
    status: str | None  # green, orange or red
    values: Mapping[str, Any]  # its row of the table (or of the follow-up that proposed it)
    config: Mapping[str, Any]  # the build's whole config
    metrics: Mapping[str, Any]  # what its flows record()ed
    instance_dir: Path
    parent: str | None = None  # the scenario whose result proposed it
    duration: float | None = None
    error: str | None = None
    kind: str | None = None  # a red one's failure kind
    attempts: int = 1
    #: the whole search so far (every node, with its values, light and metrics): a follow-up that
    #: derives the next scenarios from all results, not only this one, needs no state of its own
    search: SweepState | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status in ("green", "orange")


def follow_up_spec(follow_up: Any, project_root: Path) -> str | None:
    """``module:qualname`` of a follow-up another process can import again (a resume from the
    command line), or None for a lambda or a nested function. One defined in the script that
    runs (``python calibrate.py``) at the project root is ``calibrate:name``: importing that
    module does not run its ``if __name__ == "__main__"`` block."""
    if isinstance(follow_up, str):
        return follow_up
    module, name = getattr(follow_up, "__module__", None), getattr(follow_up, "__qualname__", None)
    if not module or not name or "<" in name:
        return None
    if module == "__main__":
        script = getattr(sys.modules.get("__main__"), "__file__", None)  # read only
        if not script or Path(script).resolve().parent != project_root or not Path(script).stem.isidentifier():
            return None
        module = Path(script).stem
    return f"{module}:{name}"


def resolve_follow_up(follow_up: Any, project_root: Path) -> Callable[[FinishedScenario], Any] | None:
    """The follow-up as a callable: given as one, or as ``module:function`` (looked for at the project root too)."""
    if follow_up is None or callable(follow_up):
        return follow_up
    if isinstance(follow_up, str):
        fn = load_object(follow_up, "follow_up", project_root)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    raise ConfigError(f"follow_up must be a function (or 'module:function'), not {follow_up!r}")


def proposed(returned: Any, parent: str) -> tuple[list[dict[str, Any]], list[float | None]]:
    """A follow-up's answer as rows and their priorities (None: unprioritised); a row repeated
    in it is kept once."""
    if returned is None:
        return [], []
    if isinstance(returned, pd.DataFrame):
        rows = [{str(k): v for k, v in r.items()} for r in returned.to_dict("records")]
    elif isinstance(returned, Mapping):
        rows = [dict(returned)]
    elif isinstance(returned, Iterable) and not isinstance(returned, str | bytes):
        rows = [dict(r) if isinstance(r, Mapping) else _not_a_row(r, parent) for r in returned]
    else:
        raise ScenarioError(f"follow_up of {parent} returned {type(returned).__name__}: "
                            "expected a DataFrame, a list of dicts, a dict or None")  # fmt: skip
    priorities = [_priority(r.pop(PRIORITY, None), parent) for r in rows]
    keys = [canonical_json(to_jsonable(r, f"follow_up of {parent}")) for r in rows]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a row given twice counts once, where first given
    keep = [i for i, k in enumerate(keys) if first[k] == i]
    return [rows[i] for i in keep], [priorities[i] for i in keep]


def _count(answer: Any) -> int:
    """How many rows a follow-up answered with."""
    if answer is None:
        return 0
    return 1 if isinstance(answer, Mapping) else len(answer)


def _not_a_row(item: Any, parent: str) -> dict[str, Any]:
    raise ScenarioError(f"follow_up of {parent} returned a row that is not a dict: {item!r}")


def _priority(value: Any, parent: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"follow_up of {parent}: priority must be a number, not {value!r}")
    return float(value)


class SweepRows(Protocol):
    """What a search needs of the conductor's bookkeeping (:class:`~ductaflow.conductor.state.ConductorRun`)."""

    state: str
    runs_root: Path
    bulk: bool
    plan: SweepPlan
    rows: dict[str, dict[str, Any]]

    def extend(self, plan: SweepPlan, added: Iterable[ScenarioPlan]) -> None: ...

    def fill_up_to_date(self, p: ScenarioPlan) -> None: ...


class Search:
    """One sweep's search: its nodes (in the sweep state file), the follow-up and the budget."""

    def __init__(self, run: SweepRows, state: SweepState, follow_up: Callable[[FinishedScenario], Any] | None,
                 adaptive: bool) -> None:  # fmt: skip
        self.run = run
        self.head = replace(state, nodes=())  # the sweep's settings and counters; the nodes are kept apart
        self.nodes = {n.instance: n for n in state.nodes}  # by instance, in submission order: O(1) a change
        self.follow_up = follow_up
        self.adaptive = adaptive  # write after every change (else at saves)
        self.failure: ScenarioError | None = None  # a follow-up that raised or proposed bad rows

    @property
    def budget_left(self) -> bool:
        """True while ``max_runs`` allows another build to start."""
        return self.head.max_runs is None or self.head.runs < self.head.max_runs

    @property
    def state(self) -> SweepState:
        """The whole search as it stands (a snapshot: later changes do not reach it)."""
        return replace(self.head, nodes=tuple(self.nodes.values()))

    def may_start(self, instance: str) -> bool:
        """Whether ``instance`` may start: the budget allows one more, or it started before (a resume)."""
        node = self.nodes.get(instance)
        return self.budget_left or (node is not None and node.attempts > 0)

    def order(self, instance: str) -> tuple[bool, float, int]:
        """The queue key of a scenario: priority (lower first, none last), then submission order."""
        node = self.nodes.get(instance)
        return node.order if node else (True, 0.0, 0)

    def save(self) -> None:
        """Write the search state (atomically); a failure to write is logged, the sweep goes on."""
        if self.follow_up is None and all(n.state == "skipped" for n in self.nodes.values()):
            return  # a re-run with everything up to date: no search to keep (and no file per no-op)
        self.head = replace(self.head, updated=now_iso(), state=self.run.state)
        try:
            write_sweep_state(self.run.runs_root, self.state)
        except (OSError, ValueError) as exc:
            log.warning("could not write the sweep state of %s: %s", self.head.sweep, exc)

    def on_event(self, event: ScenarioEvent) -> None:
        """Consumer: a scenario's node follows its row (and the file, in an adaptive sweep)."""
        node = self.nodes.get(event.instance)
        if node is None:
            return
        row = event.row
        if event.kind is EventKind.CANCELLED:
            new = replace(node, state="not_run" if row.get("state") == "cancelled" else "done",
                          note=_note(row.get("error")), status=row.get("status"))  # fmt: skip
        elif event.kind is EventKind.SKIPPED and node.state in ("done", "skipped"):  # ended before (a resume)
            new = replace(node, status=row.get("status") or node.status, metrics=dict(row.get("metrics") or {}))
        else:
            new = replace(node, state=_NODE_STATE.get(event.kind, node.state), status=row.get("status"),
                          kind=row.get("kind"), error=row.get("error"), duration=row.get("duration"),
                          metrics=dict(row.get("metrics") or {}), attempts=int(row.get("attempts") or 0))  # fmt: skip
        if event.kind is EventKind.STARTED and node.attempts == 0:
            self.head = replace(self.head, runs=self.head.runs + 1)
        self.nodes[new.instance] = new
        if self.adaptive and not self.run.bulk:
            self.save()

    def expand(self, instance: str) -> list[ScenarioPlan]:
        """Ask the follow-up about a scenario that ended with a light; returns the new scenarios
        that are due to run (up-to-date ones are filled in and asked about in turn)."""
        due: list[ScenarioPlan] = []
        pending = [instance]
        while pending and self.follow_up is not None and self.failure is None:
            node = self.nodes.get(pending.pop(0))
            if node is None or node.followed or node.status not in ("green", "orange", "red"):
                continue
            for p in self._ask(node):
                if self.run.plan.decisions[p.instance].run:
                    due.append(p)
                else:  # up to date: its light is known now, so its own follow-ups are asked for too
                    self.run.fill_up_to_date(p)
                    pending.append(p.instance)
        return due

    def _ask(self, node: SweepNode) -> list[ScenarioPlan]:
        """The follow-up's answer about ``node``, planned and added as nodes and rows."""
        assert self.follow_up is not None
        plan = self.run.plan
        try:
            answer = self.follow_up(self._finished(node, plan))
            rows, priorities = proposed(answer, node.instance)
            before = len(plan.scenarios)
            extended, dropped = extend_plan(plan, rows, node.instance) if rows else (plan, 0)
            dropped += _count(answer) - len(rows)
        except Exception as exc:  # noqa: BLE001 - the user's function: the sweep stops launching, and says why
            what = str(exc) if isinstance(exc, ScenarioError) else f"{type(exc).__name__}: {exc}"
            self.failure = ScenarioError(f"follow_up on {node.instance} failed: {what}")
            log.error("%s", self.failure)
            return []
        added = list(extended.scenarios[before:])
        first = len(plan.scenarios)
        self.run.extend(extended, added)
        self.nodes[node.instance] = replace(node, followed=True)
        self.head = replace(self.head, duplicates=self.head.duplicates + dropped)
        seq = len(self.nodes)
        for i, p in enumerate(added):
            prio = priorities[p.row - first] if p.row - first < len(priorities) else None
            self.nodes[p.instance] = node_of(p, seq + i, prio)
        if dropped:
            log.info("follow_up of %s: %d proposed scenario(s) already in the sweep, not run twice", node.instance,
                     dropped)  # fmt: skip
        if self.adaptive:
            self.save()
        return added

    def _finished(self, node: SweepNode, plan: SweepPlan) -> FinishedScenario:
        row = self.run.rows[node.instance]
        return FinishedScenario(
            instance=node.instance, status=row.get("status"), values=dict(node.values), config=dict(node.config),
            metrics=dict(row.get("metrics") or {}), instance_dir=plan.instance_dir(node.instance),
            parent=node.parent, duration=row.get("duration"), error=row.get("error"), kind=row.get("kind"),
            attempts=int(row.get("attempts") or 1), search=self.state,
        )  # fmt: skip


def node_of(p: ScenarioPlan, seq: int, priority: float | None = None) -> SweepNode:
    """A new, queued node for a planned scenario."""
    return SweepNode(p.instance, dict(p.values), seq, parent=p.parent, priority=priority, config=dict(p.config))


def _note(error: Any) -> str | None:
    """Why a node was not run, from its row's error (``not_run: budget`` -> ``budget``)."""
    text = str(error or "")
    return text.split(": ", 1)[1] if text.startswith("not_run: ") else (text or None)


__all__ = ["BUDGET", "PRIORITY", "FinishedScenario", "Search", "follow_up_spec", "node_of", "resolve_follow_up"]
