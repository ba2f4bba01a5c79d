"""Read status records back from disk: one flow, a build instance and its flows, roll-ups.

Pure reading (no execution), shared by the conductor, the report and the CLI. A record
that cannot be parsed is skipped with a warning naming the file, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ductaflow.models import FlowResult, Status

log = logging.getLogger(__name__)

STATUS_SUFFIX = "_status.json"
FLOWS_SUBDIR = "runs"
#: The steps a build's latest run reached, in order (written by ``step``): older step
#: directories left by an earlier run that went further are not part of this run.
STEPS_FILE = ".steps.json"


def subdirs(folder: Path) -> list[str]:
    """Names of the folders (or symlinks to folders) in ``folder``, sorted."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_dir())
    except OSError:
        return []


def current_steps(instance_dir: Path) -> list[str] | None:
    """Step names of the build's latest run, or None when no manifest exists."""
    return read_steps(instance_dir / FLOWS_SUBDIR / STEPS_FILE)


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


def read_status(path: Path | str, execution_dir: Path | None = None, drop: tuple[str, ...] = ()) -> FlowResult | None:
    """The record at ``path`` as a FlowResult, or None (with a warning) when unreadable.

    ``execution_dir`` defaults to the record's folder (pass it when already at hand); the
    fields named in ``drop`` are left out (a reader that keeps thousands of records).
    """
    try:
        with open(path, "rb") as fh:
            rec = json.loads(fh.read())
        if not isinstance(rec, dict):  # null, a list, a string: JSON, but no record
            raise ValueError(f"not a JSON object but {type(rec).__name__}")
        for key in drop:
            rec.pop(key, None)
        return FlowResult.from_record(rec, execution_dir=execution_dir or Path(path).parent)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping unreadable status record %s: %s", path, exc)
        return None


def status_files(instance_dir: Path) -> list[Path]:
    """``runs/<flow instance>/*_status.json`` of a build, sorted by path (what a glob would give).

    One ``os.scandir`` per folder: pathlib's glob cost most of a 10,000-instance report.
    """
    base = os.path.join(os.fspath(instance_dir), FLOWS_SUBDIR)
    try:
        subdirs = sorted(e.name for e in os.scandir(base) if e.is_dir())
    except OSError:
        return []
    found = []
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
        return self.build is not None and self.build.state == "running"


def summarize_instance(instance_dir: Path, build_name: str) -> InstanceSummary:
    """Roll a build instance up: its status is the worst of the build and its flows."""
    build = read_status(instance_dir / f"{build_name}{STATUS_SUFFIX}")
    return roll_up(instance_dir, build, tuple(flow_records(instance_dir)))


def roll_up(instance_dir: Path, build: FlowResult | None, flows: tuple[FlowResult, ...]) -> InstanceSummary:
    """The summary of records already read: the worst light of the build and its flows.

    The "worst flow" is the first red flow, else the first orange one.
    """
    finished = [f for f in flows if f.state == "finished"]
    lights = [f.status for f in finished]
    if build is not None and build.state == "finished":
        lights.append(build.status)
    status = Status.worst(*lights) if lights else None
    if build is not None and build.state == "running" and status is not Status.RED:
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
    elif build is not None and build.status is Status.RED and build.state == "finished":
        error = build.reason
    return InstanceSummary(
        instance_dir=instance_dir,
        build=build,
        flows=flows,
        status=status,
        worst_flow=worst.flow if worst else None,
        error=error,
    )
