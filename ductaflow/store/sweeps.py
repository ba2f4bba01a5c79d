"""The search state of one sweep: the one reader and writer of ``.ductaflow/sweeps/<sweep>.json``.

A conduct() call keeps, under its sweep id, every scenario it knows of as a node: the
initial table's rows and the follow-ups its results asked for, each with its parent (the
instance whose result proposed it), its priority and submission order, where it is
(queued, running, done, skipped, not run) and, once done, its light, failure kind, attempts
and metrics. The file is replaced atomically after every change, so it is whole at any
moment; a conductor killed with ``kill -9`` leaves the search exactly where it was, and
``conduct(..., resume=<sweep>)`` carries it on. ``ductaflow summary`` and the report read it
while the sweep runs.

Schema 1. Nodes are kept in submission order (``seq``); a follow-up whose parameters equal
an existing node's is not added (it is counted in ``duplicates``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ductaflow.errors import SweepNotFound
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import SWEEPS_DIR

log = logging.getLogger(__name__)

SWEEP_SCHEMA = 1
#: Where a node is. ``queued`` and ``running`` nodes run (again) when the sweep is resumed.
NODE_STATES = ("queued", "running", "done", "skipped", "not_run")
#: The ``note`` of nodes the run budget (``max_runs``) left unrun.
BUDGET = "budget"


@dataclass(frozen=True)
class SweepNode:
    """One scenario of a sweep: what it is, where it came from, and what became of it."""

    instance: str
    values: Mapping[str, Any]
    seq: int  # submission order: ties of priority run in this order
    parent: str | None = None  # the instance whose result proposed it (None: the initial table)
    priority: float | None = None  # lower runs first; None after every number
    state: str = "queued"
    status: str | None = None  # the light once done
    kind: str | None = None  # a red node's failure kind
    attempts: int = 0  # how many times it started (retries included)
    error: str | None = None
    note: str | None = None  # why a node was not run (``budget``, ``stopped``, ...)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    duration: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # the build's whole config: a resume runs it as it was
    followed: bool = False  # the follow-up has been asked about this node's result (a resume asks again if not)

    def to_record(self) -> dict[str, Any]:
        rec = {f.name: getattr(self, f.name) for f in fields(SweepNode)}
        rec["values"], rec["metrics"], rec["config"] = dict(self.values), dict(self.metrics), dict(self.config)
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> SweepNode:
        known = {f.name for f in fields(SweepNode)}
        return cls(**{k: v for k, v in rec.items() if k in known})

    @property
    def order(self) -> tuple[bool, float, int]:
        """The queue's sort key: by priority (lower first, none last), then submission order."""
        return (self.priority is None, self.priority or 0.0, self.seq)


@dataclass(frozen=True)
class SweepState:
    """A sweep's whole search: its settings, its nodes, and whether it is still going."""

    sweep: str
    build: str
    build_path: str  # the build's flow file (resolved) the sweep was started with
    project_root: str
    state: str = "running"  # then finished, stopped, interrupted
    started: str | None = None
    updated: str | None = None
    owner: Mapping[str, Any] | None = None  # the conductor process (pid, host, created) writing it
    max_runs: int | None = None
    runs: int = 0  # builds started so far, retries not counted: what ``max_runs`` caps
    duplicates: int = 0  # follow-ups not added because an equal scenario was there
    follow_up: str | None = None  # ``module:function`` of the follow-up, when it can be imported again
    options: Mapping[str, Any] = field(default_factory=dict)  # the conduct() settings a resume reuses
    nodes: tuple[SweepNode, ...] = ()

    def to_record(self) -> dict[str, Any]:
        rec = {f.name: getattr(self, f.name) for f in fields(SweepState) if f.name != "nodes"}
        rec["owner"] = None if self.owner is None else dict(self.owner)
        rec["options"] = dict(self.options)
        rec["nodes"] = [n.to_record() for n in self.nodes]
        return {"schema": SWEEP_SCHEMA, **rec}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> SweepState:
        known = {f.name for f in fields(SweepState)} - {"nodes"}
        nodes = tuple(SweepNode.from_record(n) for n in rec.get("nodes") or ())
        return cls(**{k: v for k, v in rec.items() if k in known}, nodes=nodes)

    def node(self, instance: str) -> SweepNode | None:
        return next((n for n in self.nodes if n.instance == instance), None)

    def children(self, instance: str | None) -> list[SweepNode]:
        """The nodes ``instance`` proposed (``None``: the initial table's), in submission order."""
        return [n for n in self.nodes if n.parent == instance]

    def walk(self) -> Iterator[tuple[int, SweepNode]]:
        """Every node with its depth in the lineage tree, parents before their children, in one
        pass; a node whose parent is not in the sweep is a root (depth 0), and nothing is lost."""
        known = {n.instance for n in self.nodes}
        kids: dict[str | None, list[SweepNode]] = {}
        for n in self.nodes:
            kids.setdefault(n.parent if n.parent in known else None, []).append(n)
        stack = [(0, n) for n in reversed(kids.get(None, []))]
        seen: set[str] = set()
        while stack:
            depth, node = stack.pop()
            if node.instance in seen:
                continue
            seen.add(node.instance)
            yield depth, node
            stack.extend((depth + 1, c) for c in reversed(kids.get(node.instance, [])))

    def counts(self) -> dict[str, int]:
        """How many nodes are in each state, and how many done ones have each light."""
        out: dict[str, int] = {}
        for n in self.nodes:
            key = n.status if n.state in ("done", "skipped") and n.status else n.state
            out[key] = out.get(key, 0) + 1
        return out

    def with_node(self, node: SweepNode) -> SweepState:
        """This state with ``node`` replaced (by instance) or added at the end."""
        nodes = list(self.nodes)
        for i, n in enumerate(nodes):
            if n.instance == node.instance:
                nodes[i] = node
                return replace(self, nodes=tuple(nodes))
        return replace(self, nodes=(*nodes, node))


def sweep_state_path(runs_root: Path, sweep: str) -> Path:
    """The state file of sweep ``sweep`` under ``runs_root``."""
    return runs_root / SWEEPS_DIR / f"{sweep}.json"


def write_sweep_state(runs_root: Path, state: SweepState) -> None:
    """Replace the sweep's state file atomically (readers see the old one or the new one)."""
    atomic_write_json(sweep_state_path(runs_root, state.sweep), state.to_record())


def list_sweeps(runs_root: str | Path) -> list[str]:
    """The ids of the sweeps with a state file under ``runs_root``, oldest change first."""
    folder = Path(runs_root) / SWEEPS_DIR
    try:
        files = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
    except OSError:
        return []
    return [p.stem for p in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))]


def read_sweep_state(runs_root: str | Path = "runs", sweep: str | None = None) -> SweepState:
    """The search state of ``sweep`` (default: the sweep changed last) under ``runs_root``.

    Safe while the sweep runs: the file is only ever replaced whole. Raises
    :class:`~ductaflow.errors.SweepNotFound` when there is no such state (or none at all).
    """
    root = Path(runs_root)
    if sweep is None:
        known = list_sweeps(root)
        if not known:
            raise SweepNotFound(f"no sweep state under {root / SWEEPS_DIR} (run conduct() first)")
        sweep = known[-1]
    path = sweep_state_path(root, sweep)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = list_sweeps(root)
        hint = f"; known: {', '.join(known[-10:])}" if known else ""
        raise SweepNotFound(f"no state for sweep '{sweep}' at {path}{hint}") from None
    except (OSError, ValueError) as exc:
        raise SweepNotFound(f"cannot read the state of sweep '{sweep}' at {path}: {exc}") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, int) or schema > SWEEP_SCHEMA:
        raise SweepNotFound(f"{path} is not a sweep state this ductaflow can read (schema {schema!r})")
    return SweepState.from_record(doc)
