"""Fabricate a runs dir shaped exactly like the conductor's (state file + status records), no kernels."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ductaflow.core.lights import Status
from ductaflow.report import instances, memory
from ductaflow.report.page import STATE_DIR
from ductaflow.store.result import ErrorInfo, FlowResult

SCRIPT_PAYLOAD = "<script>window.__pwned=1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.__pwned=1">'
FAILING_LOG = "starting summarize\nTraceback (most recent call last):\nValueError: boom: negative demand\n"
T0 = "2026-01-05T22:00:00+00:00"

#: The racy window of in-process report tests on a file system whose timestamps have
#: sub-second resolution. Linux stamps files from a clock that ticks every 1-10 ms, so 50 ms
#: still covers an edit within one tick; what the tests check does not depend on the length,
#: and the library's 1 s made sleeping a third of the fast lane.
SHORT_RACY_NS = 50_000_000
#: The library's own window, read before any test shortens it.
LIBRARY_RACY_NS = instances.RACY_NS


def shorten_racy_window(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Give this process's report a :data:`SHORT_RACY_NS` window where ``folder``'s file system
    keeps sub-second times (probed); elsewhere the library's window stays. A check made in
    another process always has the library's window: wait with ``age(real=True)``."""
    probe = folder / ".racy-probe"
    probe.write_text("")
    st = probe.stat()
    probe.unlink()
    if st.st_mtime_ns % 1_000_000_000 or st.st_ctime_ns % 1_000_000_000:
        monkeypatch.setattr(instances, "RACY_NS", SHORT_RACY_NS)
        monkeypatch.setattr(memory, "RACY_NS", SHORT_RACY_NS)  # imported by name there


def age(real: bool = False) -> None:
    """Wait until every file written so far is older than this process's racy window (``real``:
    the library's own, for a check made in another process)."""
    window = LIBRARY_RACY_NS if real else instances.RACY_NS
    time.sleep(window / 1e9 + 0.05)


def write_record(
    exec_dir: Path,
    flow: str,
    status: str = "green",
    *,
    state: str = "finished",
    duration: float | None = 1.5,
    warnings: tuple[str, ...] = (),
    error: tuple[str, str] | None = None,
    html: bool = False,
    started: str = T0,
    log_text: str | None = None,
) -> FlowResult:
    """Write a flow's (or build's) artifacts into ``exec_dir``; return the record written."""
    exec_dir.mkdir(parents=True, exist_ok=True)
    err = None
    if error:
        err = ErrorInfo(error[0], error[1], f"Traceback (most recent call last):\n{error[0]}: {error[1]}", 3)
    result = FlowResult(
        flow=flow,
        flow_path=Path(f"/project/flows/{flow}.py"),
        execution_dir=exec_dir,
        status=Status(status),
        state=state,
        started=started,
        finished=None if state == "running" else started,
        duration=None if state == "running" else duration,
        warnings=tuple(warnings),
        error=err,
        instance=exec_dir.name,
        html_exported=html,
    )
    cells = [{"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": 1}]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    (exec_dir / f"{flow}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    text = log_text if log_text is not None else "\n".join([f"starting {flow}", *warnings, f"done {flow}"]) + "\n"
    (exec_dir / f"{flow}_execution_output.txt").write_text(text, encoding="utf-8")
    (exec_dir / f"{flow}_config.json").write_text(json.dumps({"flow": flow}), encoding="utf-8")
    if html:
        anchor = '<span id="papermill-error-cell">the exception happened here</span>' if status == "red" else ""
        (exec_dir / f"{flow}.html").write_text(f"<html><body><h1>{flow}</h1>{anchor}</body></html>", encoding="utf-8")
    if state != "absent":
        (exec_dir / f"{flow}_status.json").write_text(json.dumps(result.to_record()), encoding="utf-8")
    return result


def make_instance(
    runs_root: Path,
    build: str,
    instance: str,
    flows: list[dict[str, Any]],
    *,
    build_status: str | None = None,
    build_state: str = "finished",
    build_started: str = T0,
) -> Path:
    """A build instance dir with its own record and ``runs/<flow>/`` records (flows: write_record kwargs)."""
    inst = runs_root / build / instance
    for i, spec in enumerate(flows):
        spec = dict(spec)
        name = spec.pop("flow")
        spec.setdefault("started", f"2026-01-05T22:0{i}:00+00:00")
        write_record(inst / "runs" / spec.pop("instance", name), name, **spec)
    if build_status is None:
        lights = [f.get("status", "green") for f in flows if f.get("state", "finished") == "finished"]
        build_status = "red" if "red" in lights else "green"
    error = ("FlowFailed", "a flow failed") if build_status == "red" else None
    write_record(inst, build, build_status, state=build_state, duration=9.0, error=error, started=build_started)
    return inst


def write_state(
    runs_root: Path, build: str, scenarios: list[dict[str, Any]], *, state: str = "finished", columns: list[str]
) -> Path:
    """The conductor state file, as the conductor writes it."""
    doc = {
        "schema": 1,
        "build": build,
        "build_path": f"/project/builds/{build}.py",
        "runs_root": str(runs_root),
        "state": state,
        "started": T0,
        "updated": "2026-01-05T22:10:00+00:00",
        "finished": None if state == "running" else "2026-01-05T22:10:00+00:00",
        "columns": columns,
        "scenarios": scenarios,
    }
    path = runs_root / STATE_DIR / f"{build}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _row(instance: str, values: dict[str, Any], state: str, status: str | None = None, **kw: Any) -> dict[str, Any]:
    row = {
        "instance": instance,
        "dir": f"demand_model/{instance}",
        "values": values,
        "state": state,
        "status": status,
        "duration": None,
        "error": None,
        "worst_flow": None,
    }
    row.update(kw)
    return row


def make_demo(runs_root: Path, *, live: bool = False) -> dict[str, Any]:
    """Seven scenarios: green, orange, red, red with hostile text, running, pending, cancelled."""
    build, ok = "demand_model", {"status": "green"}
    make_instance(
        runs_root, build, "g0.01_c1.0", [{"flow": "prep", **ok}, {"flow": "model", **ok}, {"flow": "summarize", **ok}]
    )
    make_instance(
        runs_root,
        build,
        "g0.02_c1.0",
        [
            {"flow": "prep", **ok},
            {"flow": "model", "status": "orange", "warnings": ("Warning: low memory", "⚠️ 3 zones empty")},
            {"flow": "summarize", **ok},
        ],
    )
    make_instance(
        runs_root,
        build,
        "g0.03_c1.5",
        [
            {"flow": "prep", **ok},
            {"flow": "model", **ok},
            {
                "flow": "summarize",
                "status": "red",
                "error": ("ValueError", "boom: negative demand"),
                "html": True,
                "log_text": FAILING_LOG,
            },
        ],
    )
    make_instance(
        runs_root,
        build,
        "evil",
        [
            {"flow": "prep", **ok},
            {"flow": "model", "status": "red", "error": ("RuntimeError", IMG_PAYLOAD)},
        ],
    )
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    make_instance(
        runs_root,
        build,
        "g0.04_c1.0",
        [{"flow": "prep", **ok}, {"flow": "model", "state": "running", "started": now}],
        build_state="running",
        build_started=now,
    )
    scenarios = [
        _row(
            "g0.01_c1.0",
            {"growth_rate": 0.01, "cost_sensitivity": 1.0, "label": "base"},
            "done",
            "green",
            duration=12.3,
        ),
        _row(
            "g0.02_c1.0",
            {"growth_rate": 0.02, "cost_sensitivity": 1.0, "label": "warm"},
            "done",
            "orange",
            duration=14.0,
            worst_flow="model",
        ),
        _row(
            "g0.03_c1.5",
            {"growth_rate": 0.03, "cost_sensitivity": 1.5, "label": "hot"},
            "done",
            "red",
            duration=8.2,
            error="summarize: ValueError: boom: negative demand",
            worst_flow="summarize",
        ),
        _row(
            "evil",
            {"growth_rate": 0.05, "cost_sensitivity": 2.0, "label": SCRIPT_PAYLOAD},
            "done",
            "red",
            duration=3.1,
            error=f"model: RuntimeError: {IMG_PAYLOAD}",
            worst_flow="model",
        ),
        _row("g0.04_c1.0", {"growth_rate": 0.04, "cost_sensitivity": 1.0, "label": "running"}, "running"),
        _row("g0.05_c1.0", {"growth_rate": 0.05, "cost_sensitivity": 1.0, "label": "later"}, "pending"),
        _row("g0.06_c1.0", {"growth_rate": 0.06, "cost_sensitivity": 1.0, "label": "never"}, "cancelled"),
    ]
    columns = ["growth_rate", "cost_sensitivity", "label"]
    write_state(runs_root, build, scenarios, state="running" if live else "finished", columns=columns)
    return {"build": build, "scenarios": scenarios, "columns": columns}
