"""The settings a run hands to the runs nested in it, as one typed, explicitly serialised value.

A build's kernel runs its steps with ``run_notebook``; those nested runs need to know the
project root, the runs root and ledger spool, which build and scenario they belong to, and
whether the build was forced. The parent passes a :class:`RunContext` to the kernel in one
environment variable, as JSON; :meth:`RunContext.inherited` reads it back. Nothing else
travels through the environment between ductaflow processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: The one environment variable a flow's process is given by the run that started it.
CONTEXT_ENV = "DUCTAFLOW_RUN_CONTEXT"
_SCHEMA = 1


@dataclass(frozen=True)
class RunContext:
    """Who a run belongs to and the settings its nested runs inherit."""

    project_root: str | None = None
    runs_root: str | None = None
    build: str | None = None  # the build this run is part of (None for a lone flow)
    scenario: Mapping[str, Any] | None = field(default=None, compare=False)  # the conductor's row values
    ledger_spool: str | None = None  # a conductor's build: ledger records wait here to be ingested
    force: bool = False  # a forced parent forces its nested runs
    flow: str | None = None  # the flow this process runs (set for the flow's own kernel)
    execution_dir: str | None = None
    sweep: str | None = None  # the conduct call this run is part of (its id)
    seed: int | None = None  # this run's seed (core/seeds.py); ductaflow.seed() in its kernel returns it
    pass_seed: bool = False  # nested runs get ``seed`` as their ``_seed`` (a study seed or replicates asked for)
    #: hooks the caller named (``package.module:Name``), besides the project's and entry points'
    hooks: tuple[str, ...] = ()
    hooks_fail: str = "record"  # what a raising hook does to a run: record, red or stop
    trackers: tuple[str, ...] = ()  # tracker names the caller chose, besides the project's
    #: ``backend:run id`` of the tracker runs of the build this run is a step of (nested under them)
    tracker_parents: tuple[str, ...] = ()
    trace_parent: str | None = None  # W3C traceparent of the span this run's span goes under (tracing)
    #: which attempt of a retried run this is (1: the first); a run with attempt > 1 records the
    #: earlier attempts its instance holds as its ``history``; nested runs inherit it
    attempt: int = 1

    def to_json(self) -> str:
        """The context as JSON (the scenario's values are JSON already)."""
        return json.dumps({"schema": _SCHEMA, **asdict(self)}, default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RunContext:
        """Read :meth:`to_json`'s output; unknown keys (a newer writer) are ignored."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("a run context must be a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["force"] = bool(values.get("force"))
        values["pass_seed"] = bool(values.get("pass_seed"))
        values["hooks"] = tuple(str(h) for h in values.get("hooks") or ())
        values["hooks_fail"] = str(values.get("hooks_fail") or "record")
        values["trackers"] = tuple(str(t) for t in values.get("trackers") or ())
        values["tracker_parents"] = tuple(str(t) for t in values.get("tracker_parents") or ())
        attempt = values.get("attempt")
        values["attempt"] = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt > 0 else 1
        return cls(**values)

    @classmethod
    def inherited(cls) -> RunContext | None:
        """The context this process was started with, or None (not started by ductaflow)."""
        raw = os.environ.get(CONTEXT_ENV)
        if not raw:
            return None
        try:
            return cls.from_json(raw)
        except (ValueError, TypeError):
            return None

    def child(self, **changes: Any) -> RunContext:
        """A copy with ``changes`` applied: what this run hands to the process it starts."""
        return replace(self, **changes)

    def env(self) -> dict[str, str]:
        """The environment entry that hands this context to a flow's process."""
        return {CONTEXT_ENV: self.to_json()}

    def ledger_fields(self) -> dict[str, Any]:
        """The fields the ledger labels a record with."""
        return {
            "build": self.build,
            "scenario": self.scenario,
            "runs_root": self.runs_root,
            "project_root": self.project_root,
            "ledger_spool": self.ledger_spool,
            "sweep": self.sweep,
        }
