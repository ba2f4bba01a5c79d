"""Starting a sweep's search state, new or resumed from its file after a crash.

A resumed sweep keeps its id, its nodes and their lineage: nodes that ended (done, or up to
date) are not run again whatever their light, queued ones keep their priority and submission
order, and ones that were running (or given up, or left by the budget) are queued again. The
settings a resume does not give again (base config, follow-up, budget, retries) are the ones
the sweep was started with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.plan import SweepPlan
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.search import node_of
from ductaflow.core.clock import now_iso
from ductaflow.core.config import find_project_root
from ductaflow.core.liveness import gone
from ductaflow.errors import ScenarioError
from ductaflow.run.decide import Decision
from ductaflow.store.sweeps import SweepState, read_sweep_state

#: Node states a resume does not run again.
ENDED = ("done", "skipped")
#: The conduct() settings kept with a sweep, and used again by a resume that does not give them.
RESUMED_OPTIONS = ("base_config", "instance_column", "max_runs", "retries", "retry_on", "backoff", "timeout",
                   "replicates", "seed")  # fmt: skip


@dataclass(frozen=True)
class Resumed:
    """A sweep being resumed: its state as the file had it, and the settings it was started with."""

    state: SweepState

    @property
    def scenarios(self) -> list[ScenarioPlan]:
        """Every node as a planned scenario, as it was planned (its config kept whole)."""
        return [ScenarioPlan(n.seq, n.instance, dict(n.values), dict(n.config), n.parent) for n in self.state.nodes]

    def fill(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The settings ``given``, each one not given (None) taken from the sweep's own."""
        return {k: self.state.options.get(k) if v is None and k in RESUMED_OPTIONS else v for k, v in given.items()}

    def keep_ended(self, plan: SweepPlan) -> SweepPlan:
        """``plan`` with every node that ended decided "skip": it is not run again, whatever its light."""
        ended = {n.instance for n in self.state.nodes if n.state in ENDED}
        decisions = {k: (Decision(False, ()) if k in ended else d) for k, d in plan.decisions.items()}
        return replace(plan, decisions=decisions)


def load_resumed(
    sweep: str, build: str | Path | None, runs_root: str | Path, project_root: str | Path | None
) -> Resumed:
    """The state of ``sweep``, once it is known that no live conductor is running it."""
    root = Path(project_root).resolve() if project_root else _root_of(build)
    runs = Path(runs_root)
    state = read_sweep_state(runs if runs.is_absolute() else root / runs, sweep)
    owner = state.owner
    if state.state == "running" and owner and owner.get("pid") != os.getpid() and not gone(dict(owner)):
        raise ScenarioError(
            f"sweep {sweep} is still being run by the conductor pid {owner.get('pid')} on {owner.get('host')} "
            "(or one this machine cannot check); let it finish or stop it before resuming"
        )
    return Resumed(state)


def _root_of(build: str | Path | None) -> Path:
    """The project root a resume looks for the runs root in: the build's, else the current directory's."""
    if build is not None and Path(build).is_file():
        return find_project_root(Path(build).resolve())
    return find_project_root(Path.cwd())


def start_state(
    plan: SweepPlan,
    sweep: str,
    owner: Mapping[str, Any],
    *,
    max_runs: int | None,
    follow_up: str | None,
    options: Mapping[str, Any],
    resumed: Resumed | None = None,
) -> SweepState:
    """The search state a sweep starts from: one queued node per planned scenario, or the resumed
    sweep's nodes (those that did not end queued again) plus any scenario new to it."""
    if resumed is None:
        return SweepState(sweep, plan.name, str(plan.build.path), str(plan.project_root), started=now_iso(),
                          owner=dict(owner), max_runs=max_runs, follow_up=follow_up, options=dict(options),
                          nodes=tuple(node_of(p, i) for i, p in enumerate(plan.scenarios)))  # fmt: skip
    old = resumed.state
    nodes = [n if n.state in ENDED else replace(n, state="queued", note=None) for n in old.nodes]
    known = {n.instance for n in nodes}
    nodes += [node_of(p, len(nodes) + i) for i, p in enumerate(p for p in plan.scenarios if p.instance not in known)]
    return replace(old, state="running", owner=dict(owner), max_runs=max_runs, follow_up=follow_up or old.follow_up,
                   options={**old.options, **options}, nodes=tuple(nodes))  # fmt: skip
