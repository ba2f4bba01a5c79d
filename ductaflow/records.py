"""Read status records back from disk: one flow, a build instance and its flows, roll-ups.

Pure reading (no execution), shared by the conductor, the report and the CLI. A record
that cannot be parsed is skipped with a warning naming the file, never a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ductaflow.models import FlowResult, Status

log = logging.getLogger(__name__)

STATUS_SUFFIX = "_status.json"
FLOWS_SUBDIR = "runs"
#: The steps a build's latest run reached, in order (written by ``step``): older step
#: directories left by an earlier run that went further are not part of this run.
STEPS_FILE = ".steps.json"


def current_steps(instance_dir: Path) -> list[str] | None:
    """Step names of the build's latest run, or None when no manifest exists."""
    try:
        steps = json.loads((instance_dir / FLOWS_SUBDIR / STEPS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable step list %s: %s", instance_dir / FLOWS_SUBDIR / STEPS_FILE, exc)
        return None
    return [str(s) for s in steps] if isinstance(steps, list) else None


def read_status(path: Path) -> FlowResult | None:
    """The record at ``path`` as a FlowResult, or None (with a warning) when unreadable."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rec, dict):  # null, a list, a string: JSON, but no record
            raise ValueError(f"not a JSON object but {type(rec).__name__}")
        return FlowResult.from_record(rec, execution_dir=path.parent)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping unreadable status record %s: %s", path, exc)
        return None


def flow_records(instance_dir: Path) -> list[FlowResult]:
    """Records of the flows a build ran in ``instance_dir/runs/<flow instance>/``, in start order."""
    found = []
    base = instance_dir / FLOWS_SUBDIR
    steps = current_steps(instance_dir)
    if base.is_dir():
        for path in sorted(base.glob(f"*/*{STATUS_SUFFIX}")):
            if steps is not None and path.parent.name not in steps:
                continue
            rec = read_status(path)
            if rec is not None:
                found.append(rec)
    return sorted(found, key=lambda r: (r.started or "", r.execution_dir.name))


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
    """Roll a build instance up: its status is the worst of the build and its flows.

    The "worst flow" is the first red flow, else the first orange one.
    """
    build = read_status(instance_dir / f"{build_name}{STATUS_SUFFIX}")
    flows = tuple(flow_records(instance_dir))
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
