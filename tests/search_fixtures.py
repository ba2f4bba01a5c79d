"""Fabricate an adaptive sweep's runs root (conductor state rows with lineage, records with failure
kinds, the sweep's search state) for the report's and ``ductaflow summary``'s tests; no kernels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from report_fixtures import SCRIPT_PAYLOAD, make_instance, write_state
from report_fixtures import _row as state_row

from ductaflow.store.result import FlowResult
from ductaflow.store.sweeps import SweepNode, SweepState, write_sweep_state

BUILD = "demand_model"
EVIL = "evil<script>window.__pwned=1</script>"
METRIC = "mean_trip_length"


def _with_kind(inst: Path, kind: str, phase: str, attempt: int) -> None:
    """Rewrite the build record of ``inst`` as a red schema-8 record of ``kind`` in ``phase``."""
    path = inst / f"{BUILD}_status.json"
    rec = FlowResult.from_record(json.loads(path.read_text(encoding="utf-8")))
    assert rec is not None
    path.write_text(json.dumps(replace(rec, kind=kind, phase=phase, attempt=attempt).to_record()), encoding="utf-8")


def make_search(runs_root: Path) -> dict[str, Any]:
    """A calibration search: two roots; g0.02 (green after 2 retries) proposed by g0.01 proposed
    g0.015 (red, user_error) and the hostile-named one; one scenario left queued, one unrun by the
    budget; g0.05 red kernel_died after 1 retry (phase execute from its record)."""
    ok = {"flow": "model", "status": "green"}
    for name in ("g0.01", "g0.02", "g0.03"):
        make_instance(runs_root, BUILD, name, [ok])
    make_instance(runs_root, BUILD, "g0.015", [{"flow": "model", "status": "red", "error": ("ValueError", "bad")}])
    make_instance(runs_root, BUILD, "g0.05", [{"flow": "model", "status": "red", "error": ("DeadKernelError", "x")}])
    _with_kind(runs_root / BUILD / "g0.05", "kernel_died", "execute", 2)
    rows = [
        state_row("g0.01", {"growth_rate": 0.01}, "done", "green", metrics={METRIC: 12.5}, attempts=1),
        state_row("g0.05", {"growth_rate": 0.05}, "done", "red", metrics={}, attempts=2, kind="kernel_died",
                  error="model: DeadKernelError: x"),
        state_row("g0.02", {"growth_rate": 0.02}, "done", "green", metrics={METRIC: 10.25}, attempts=3,
                  parent="g0.01"),
        state_row("g0.015", {"growth_rate": 0.015}, "done", "red", metrics={}, attempts=1, kind="user_error",
                  parent="g0.02", error="model: ValueError: bad"),
        state_row(EVIL, {"growth_rate": SCRIPT_PAYLOAD}, "pending", parent="g0.02", dir=f"{BUILD}/missing"),
        state_row("g0.03", {"growth_rate": 0.03}, "done", "green", metrics={METRIC: 9.75}, attempts=1,
                  parent="g0.02"),
        state_row("g0.04", {"growth_rate": 0.04}, "cancelled", parent="g0.03", error="not_run: budget"),
    ]
    path = write_state(runs_root, BUILD, rows, columns=["growth_rate"])
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["report"] = {"metrics": [METRIC], "minimize": [METRIC]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return {"build": BUILD, "rows": rows}


def node(instance: str, seq: int, parent: str | None = None, **kw: Any) -> SweepNode:
    """A sweep node; ``values`` default to ``{"g": seq}``."""
    kw.setdefault("values", {"g": seq})
    return SweepNode(instance=instance, seq=seq, parent=parent, **kw)


def search_state(sweep: str = "s1", nodes: tuple[SweepNode, ...] | None = None, **kw: Any) -> SweepState:
    """A hand-written search: two roots, follow-ups two deep, every state and light, two failure kinds."""
    if nodes is None:
        nodes = (
            node("a", 0, state="done", status="green", attempts=1, metrics={METRIC: 12.0, "trips": 5}),
            node("b", 1, state="done", status="red", kind="kernel_died", attempts=2, error="dead"),
            node("a1", 2, "a", state="done", status="green", attempts=3, metrics={METRIC: 10.0}),
            node("a2", 3, "a", state="done", status="orange", attempts=1, metrics={METRIC: 11.0}),
            node("a1x", 4, "a1", state="done", status="red", kind="user_error", attempts=1, metrics={METRIC: 1.0}),
            node("a1y", 5, "a1", state="done", status="green", attempts=1, metrics={METRIC: 10.0}),
            node("a1z", 6, "a1", state="running", attempts=1),
            node("a2q", 7, "a2", state="queued", priority=1.0),
            node("a2n", 8, "a2", state="not_run", note="budget"),
            node("c", 9, state="done", status="red", kind="kernel_died", attempts=1),
        )
    kw.setdefault("max_runs", 8)
    return SweepState(sweep=sweep, build=BUILD, build_path="/project/builds/demand_model.py",
                      project_root="/nonexistent-project", state="running", started="2026-01-05T22:00:00+00:00",
                      runs=7, duplicates=2, follow_up="calib:propose", nodes=nodes, **kw)  # fmt: skip


def write_search(runs_root: Path, state: SweepState | None = None) -> SweepState:
    """Write ``state`` (default :func:`search_state`) as the sweep's state file under ``runs_root``."""
    state = state or search_state()
    write_sweep_state(runs_root, state)
    return state
