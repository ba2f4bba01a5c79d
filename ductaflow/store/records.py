"""Status records: the ONE reader and the ONE writer of ``<flow>_status.json``.

A run writes a ``running`` record before its first cell (with its pid, host and start
time) and exactly one final record when it ends, each atomically. Every reader goes
through :func:`read_status`, which shows a ``running`` record whose process on this host
is dead as ``gone`` (red): a run killed by SIGKILL, ``os._exit`` or a power cut is never
mistaken for a live one, nor for a green one. Also here: a build's step list, a build
instance rolled up from its records, and :func:`analyze_execution_logs`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ductaflow.core import liveness
from ductaflow.core.clock import now_iso
from ductaflow.core.failures import FailureKind
from ductaflow.core.lights import Status, classify, warning_lines
from ductaflow.errors import DuctaflowError
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import FLOWS_SUBDIR, LOG_SUFFIX, STATUS_SUFFIX, artifact_path, flow_of_artifact, steps_path
from ductaflow.store.result import Attempt, ErrorInfo, FlowResult, RunState

log = logging.getLogger(__name__)

_HOST = socket.gethostname()


def write_status(result: FlowResult) -> None:
    """Write ``result`` as its instance's status record, atomically (running or final)."""
    atomic_write_json(result.status_path, result.to_record())


def owner_facts() -> dict[str, Any]:
    """Who owns a run started now: this process (pid, start time, host)."""
    me = liveness.identity()
    return {"pid": me["pid"], "owner_created": me["created"], "host": me["host"]}


def _gone(result: FlowResult) -> FlowResult:
    """A ``running`` record whose owner on this host is dead, as the red ``gone`` it is."""
    if result.state != RunState.RUNNING or result.pid is None or result.host != _HOST:
        return result
    # a schema-1 record has no start time: the pid alone (a reused pid keeps it "running", never green)
    if liveness.running(int(result.pid), result.owner_created):
        return result
    what = f"process {result.pid} on {result.host} ended without a final record (killed: SIGKILL, os._exit, power loss)"
    error = result.error or ErrorInfo("Gone", what)
    lost = FailureKind.WORKER_LOST.value
    return replace(result, state=RunState.GONE.value, status=Status.RED, error=error, kind=lost)


def read_status(path: Path | str, execution_dir: Path | None = None, drop: tuple[str, ...] = ()) -> FlowResult | None:
    """The record at ``path`` as a FlowResult, or None (with a warning) when absent or unreadable.

    ``execution_dir`` defaults to the record's folder (pass it when already at hand); the
    fields named in ``drop`` are left out (a reader that keeps thousands of records). A
    ``running`` record whose process is dead comes back ``gone`` and red.
    """
    rec = _load(path)
    if rec is None:
        return None
    for key in drop:
        rec.pop(key, None)
    try:
        result = FlowResult.from_record(rec, execution_dir=execution_dir or Path(path).parent)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping unreadable status record %s: %s", path, exc)
        return None
    return _gone(result)


def _load(path: Path | str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            rec = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable status record %s: %s", path, exc)
        return None
    if not isinstance(rec, dict):  # null, a list, a string: JSON, but no record
        log.warning("skipping unreadable status record %s: not a JSON object but %s", path, type(rec).__name__)
        return None
    return rec


def close_unfinished(
    path: Path, error: ErrorInfo, *, interrupted: bool = False, finished: str | None = None, kind: str | None = None
) -> FlowResult | None:
    """Turn a ``running`` (or ``gone``) record into a final red one, its duration taken from its
    start; returns the closed record, or None when it was final already (or unreadable).

    For a run whose owner cannot write its own final record (a lost worker): called by the
    process that knows why. ``kind`` defaults to ``interrupted`` or ``worker_lost``; the phase
    is left unknown (the record cannot say how far the run got).
    """
    result = read_status(path)
    if result is None or result.state not in (RunState.RUNNING, RunState.GONE):
        return None
    end = finished or now_iso()
    final = replace(
        result,
        state=RunState.FINISHED.value,
        status=Status.RED,
        finished=end,
        duration=result.duration if result.duration is not None else _seconds_between(result.started, end),
        error=error,
        interrupted=interrupted,
        kind=kind or (FailureKind.INTERRUPTED if interrupted else FailureKind.WORKER_LOST).value,
        phase=None,
    )
    try:
        write_status(final)
    except OSError as exc:
        log.warning("could not close %s: %s", path, exc)
        return None
    return final


def earlier_attempts(path: Path | str) -> tuple[Attempt, ...]:
    """The attempts a retry of the run recorded at ``path`` follows: that record's own history,
    then the record itself; nothing when there is no final (or gone) record there."""
    previous = read_status(path)
    if previous is None or previous.state not in (RunState.FINISHED, RunState.GONE):
        return ()
    return (*previous.history, previous.summary())


def failed_step(instance_dir: Path) -> FlowResult | None:
    """The red step of a build instance that made its build red (the last red one of its steps
    in start order), or None: a build's record takes its kind and phase from it."""
    red = [r for r in flow_records(instance_dir) if r.status is Status.RED and r.state in _FINAL]
    return red[-1] if red else None


def _seconds_between(start: str | None, end: str) -> float | None:
    """Seconds from one record timestamp to another (None when the start is missing or unreadable)."""
    try:
        a, b = (datetime.fromisoformat(t) for t in (start or "", end))
    except ValueError:
        return None
    a, b = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (a, b))  # naive: UTC, as written
    return round((b - a).total_seconds(), 3)


def subdirs(folder: Path) -> list[str]:
    """Names of the folders (or symlinks to folders) in ``folder``, sorted."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_dir())
    except OSError:
        return []


def current_steps(instance_dir: Path) -> list[str] | None:
    """Step names of the build's latest run, or None when no manifest exists."""
    return read_steps(steps_path(instance_dir))


def read_steps(path: Path | str) -> list[str] | None:
    """The step list at ``path`` (see :data:`STEPS_FILE`), or None when absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            steps = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable step list %s: %s", path, exc)
        return None
    return [str(s) for s in steps] if isinstance(steps, list) else None


def status_files(instance_dir: Path) -> list[Path]:
    """``runs/<flow instance>/*_status.json`` of a build, sorted by path (what a glob would give).

    One ``os.scandir`` per folder: pathlib's glob cost most of a 10,000-instance report.
    """
    base = os.path.join(os.fspath(instance_dir), FLOWS_SUBDIR)
    try:
        subdirs = sorted(e.name for e in os.scandir(base) if e.is_dir())
    except OSError:
        return []
    found: list[Path] = []
    for name in subdirs:
        folder = os.path.join(base, name)
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(STATUS_SUFFIX))
        except OSError:
            continue
        found.extend(Path(folder, n) for n in names)
    return found


def flow_records(instance_dir: Path) -> list[FlowResult]:
    """Records of the flows a build ran in ``instance_dir/runs/<flow instance>/``, in start order."""
    steps = current_steps(instance_dir)
    found = []
    for path in status_files(instance_dir):
        if steps is not None and path.parent.name not in steps:
            continue
        rec = read_status(path)
        if rec is not None:
            found.append(rec)
    return sort_flows(found)


def sort_flows(records: list[FlowResult]) -> list[FlowResult]:
    """Flow records in start order (ties by their folder's name)."""
    return sorted(records, key=lambda r: (r.started or "", r.execution_dir.name))


@dataclass(frozen=True)
class InstanceSummary:
    """A build instance rolled up: the worst light of the build and of its flows."""

    instance_dir: Path
    build: FlowResult | None
    flows: tuple[FlowResult, ...]
    status: Status | None  # None when nothing has finished yet
    worst_flow: str | None
    error: str | None

    @property
    def running(self) -> bool:
        return self.build is not None and self.build.state == RunState.RUNNING


def summarize_instance(instance_dir: Path, build_name: str) -> InstanceSummary:
    """Roll a build instance up: its status is the worst of the build and its flows."""
    build = read_status(artifact_path(instance_dir, build_name, "status"))
    return roll_up(instance_dir, build, tuple(flow_records(instance_dir)))


_FINAL = (RunState.FINISHED.value, RunState.GONE.value)


def roll_up(instance_dir: Path, build: FlowResult | None, flows: tuple[FlowResult, ...]) -> InstanceSummary:
    """The summary of records already read: the worst light of the build and its flows.

    The "worst flow" is the first red flow, else the first orange one.
    """
    finished = [f for f in flows if f.state in _FINAL]
    lights = [f.status for f in finished]
    if build is not None and build.state in _FINAL:
        lights.append(build.status)
    status = Status.worst(*lights) if lights else None
    if build is not None and build.state == RunState.RUNNING and status is not Status.RED:
        status = None
    worst = None
    for light in (Status.RED, Status.ORANGE):
        hit = next((f for f in finished if f.status is light), None)
        if hit is not None:
            worst = hit
            break
    error = None
    if worst is not None and worst.status is Status.RED:
        error = f"{worst.flow}: {worst.reason}"
    elif build is not None and build.status is Status.RED and build.state in _FINAL:
        error = build.reason
    return InstanceSummary(
        instance_dir=instance_dir,
        build=build,
        flows=flows,
        status=status,
        worst_flow=worst.flow if worst else None,
        error=error,
    )


def analyze_execution_logs(directory: str | Path) -> Status:
    """The worst light of every flow recorded below ``directory``.

    Status records are the truth (a run still ``running`` or ``gone`` counts red: it is not
    known to be clean); an execution log with no record beside it (an older or hand-made
    run) is judged by the warning rule alone. A directory that does not exist, or holds
    neither, raises :class:`~ductaflow.errors.DuctaflowError`: no evidence is not green.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DuctaflowError(f"{root} is not a directory: there are no runs to analyze")
    lights: list[Status] = []
    recorded: set[tuple[Path, str]] = set()
    for rec_path in root.rglob(f"*{STATUS_SUFFIX}"):
        result = read_status(rec_path)
        flow = flow_of_artifact(rec_path.name, "status")
        if result is None or flow is None:
            lights.append(Status.RED)  # a record that cannot be read proves nothing clean
            continue
        lights.append(result.status if result.state in _FINAL else Status.RED)
        recorded.add((rec_path.parent, flow))
    for log_path in root.rglob(f"*{LOG_SUFFIX}"):
        flow = flow_of_artifact(log_path.name, "log")
        if flow is None or (log_path.parent, flow) in recorded:
            continue
        try:
            text = log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            log.warning("skipping unreadable log %s", log_path)
            continue
        lights.append(classify(warnings=warning_lines(text.splitlines())))
    if not lights:
        raise DuctaflowError(f"no status records or execution logs below {root}: nothing to analyze")
    return Status.worst(*lights)
