"""The conductor's OpenTelemetry spans: one per sweep and one per scenario that runs, the build's
flow span going under its scenario's in the worker (:mod:`ductaflow.lifecycle.tracing`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ductaflow.lifecycle import tracing


class SweepSpans:
    """The open spans of one conduct() call (all None while tracing is off)."""

    def __init__(self) -> None:
        self.sweep: Any = None
        self.scenarios: dict[str, Any] = {}

    def start_sweep(self, build: str, sweep: str | None, scenarios: int, to_run: int) -> None:
        self.sweep = tracing.start(f"sweep {build}", None, {
            "ductaflow.build": build, "ductaflow.sweep": sweep, "ductaflow.scenarios": scenarios,
            "ductaflow.to_run": to_run})  # fmt: skip

    def start_scenario(self, instance: str, build: str, sweep: str | None) -> str | None:
        """The scenario's span, started now; its ``traceparent`` for the worker (None: tracing off)."""
        if self.sweep is None:
            return None
        span = tracing.start(f"scenario {instance}", self.sweep, {
            "ductaflow.instance": instance, "ductaflow.build": build, "ductaflow.sweep": sweep})  # fmt: skip
        self.scenarios[instance] = span
        return tracing.traceparent(span)

    def end_scenario(self, row: Mapping[str, Any], attempt: int | None = None) -> None:
        """End the scenario's span with its light, duration, worst flow and attempt (1 unless a
        lost worker's build was run again)."""
        span = self.scenarios.pop(str(row["instance"]), None)
        light = row.get("status")
        tracing.end(span, {"ductaflow.light": light, "ductaflow.duration_s": row.get("duration"),
                           "ductaflow.worst_flow": row.get("worst_flow"), "ductaflow.attempt": attempt},
                    str(row.get("error") or "red") if light == "red" else None)  # fmt: skip

    def end_sweep(self, state: str, counts: Mapping[str, int]) -> None:
        for instance in list(self.scenarios):  # builds that never reported back (an interrupt)
            tracing.end(self.scenarios.pop(instance), {"ductaflow.state": "unfinished"}, "unfinished")
        tracing.end(self.sweep, {"ductaflow.state": state, **{f"ductaflow.{k}": v for k, v in counts.items()}},
                    None if state == "finished" else state)  # fmt: skip
        self.sweep = None
