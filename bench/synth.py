"""Runs directories made without running kernels, for the report, status and RSS benchmarks.

``synthetic_runs`` writes N build instances shaped like the example's (a build record and
three flow records, each with its notebook, log and config, plus the build's step list)
and one conductor state file naming them all, as ``ductaflow/report.py`` and
``ductaflow/query.py`` read them. ``clone_instance`` copies one really-run instance under
other names so that each copy is up to date for the conductor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ductaflow.core.lights import Status
from ductaflow.report.page import STATE_DIR
from ductaflow.store.result import ErrorInfo, FlowResult

BUILD = "demand_model"
FLOWS = ("prepare_zones", "distribute_trips", "summarize")
T0 = "2026-01-05T22:00:00.000+00:00"
_NOTEBOOK = json.dumps(
    {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": 1}],
    }
)


def _light(k: int) -> str:
    """A realistic mix of lights: about 85 % green, 10 % orange, 5 % red."""
    return "red" if k % 20 == 7 else "orange" if k % 10 == 3 else "green"


def _template(flow: str, status: str) -> dict[str, Any]:
    """A finished status record for ``flow`` with the given light (paths filled in per instance)."""
    error = None
    warnings: tuple[str, ...] = ()
    if status == "red":
        error = ErrorInfo("ValueError", "negative demand in zone 12", "Traceback ...\nValueError: negative demand", 3)
    elif status == "orange":
        warnings = ("Warning: growth_rate 0.04 is outside the calibrated range",)
    result = FlowResult(
        flow=flow,
        flow_path=Path(f"/project/flows/{flow}.py"),
        execution_dir=Path("/placeholder"),
        status=Status(status),
        state="finished",
        started=T0,
        finished=T0,
        duration=2.5,
        warnings=warnings,
        error=error,
        instance=flow,
    )
    return result.to_record()


def _write_record(directory: Path, flow: str, record: dict[str, Any], instance: str) -> None:
    """One execution's four artifacts: status record, log, config and notebook."""
    directory.mkdir(parents=True, exist_ok=True)
    rec = {**record, "execution_dir": str(directory), "instance": instance}
    (directory / f"{flow}_status.json").write_text(json.dumps(rec), encoding="utf-8")
    log = "\n".join([f"starting {flow}", *rec["warnings"], f"done {flow}"]) + "\n"
    (directory / f"{flow}_execution_output.txt").write_text(log, encoding="utf-8")
    (directory / f"{flow}_config.json").write_text(json.dumps({"instance": instance}), encoding="utf-8")
    (directory / f"{flow}.ipynb").write_text(_NOTEBOOK, encoding="utf-8")


def synthetic_runs(runs: Path, n: int) -> int:
    """Write ``n`` finished build instances and their conductor state file; returns files written."""
    templates = {(f, s): _template(f, s) for f in (*FLOWS, BUILD) for s in ("green", "orange", "red")}
    rows = []
    files = 0
    for k in range(n):
        name = f"g{k % 7 / 100:.2f}_c{k % 5 / 10:.1f}_{k:05d}"
        light = _light(k)
        inst = runs / BUILD / name
        flow_lights = {"prepare_zones": "orange" if light == "orange" else "green", "distribute_trips": "green"}
        flow_lights["summarize"] = "red" if light == "red" else "green"
        for flow in FLOWS:
            _write_record(inst / "runs" / flow, flow, templates[(flow, flow_lights[flow])], flow)
        _write_record(inst, BUILD, templates[(BUILD, "red" if light == "red" else "green")], name)
        (inst / "runs" / ".steps.json").write_text(json.dumps(list(FLOWS)), encoding="utf-8")
        files += 4 * (len(FLOWS) + 1) + 1
        rows.append(
            {
                "instance": name,
                "dir": f"{BUILD}/{name}",
                "values": {"growth_rate": k % 7 / 100, "cost_sensitivity": k % 5 / 10, "seed": k},
                "state": "done",
                "status": light,
                "duration": 7.5,
                "error": "summarize: ValueError: negative demand in zone 12" if light == "red" else None,
                "worst_flow": "summarize" if light == "red" else "prepare_zones" if light == "orange" else None,
                "metrics": {} if light == "red" else {"mean_trip_length": 9.5 + k % 13 / 10, "total_trips": 200000 + k},
            }
        )
    doc = {
        "schema": 1,
        "build": BUILD,
        "build_path": f"/project/builds/{BUILD}.py",
        "runs_root": str(runs),
        "state": "finished",
        "started": T0,
        "updated": T0,
        "finished": T0,
        "columns": ["growth_rate", "cost_sensitivity", "seed"],
        "scenarios": rows,
    }
    state = runs / STATE_DIR / f"{BUILD}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(doc), encoding="utf-8")
    return files + 1


def clone_instance(source: Path, names: list[str]) -> None:
    """Copy a finished instance dir to sibling dirs named ``names``, renaming it inside its
    JSON files, so each copy is up to date for the conductor (its config has only ``_`` keys
    beyond the build's, which the fingerprint ignores)."""
    old = source.name
    for name in names:
        dest = source.parent / name
        shutil.copytree(source, dest)
        for path in dest.rglob("*.json"):
            text = path.read_text(encoding="utf-8")
            if old in text:
                path.write_text(text.replace(old, name), encoding="utf-8")
