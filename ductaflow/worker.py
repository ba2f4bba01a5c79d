"""The conductor's worker side: run one build instance and return plain data.

Whatever executes it (a local process, this process, a Dask worker on another machine),
the wrapper stays thin: the build and its flows run in their own kernels. It never
raises and never spawns ``multiprocessing`` children (Dask workers are daemonic).

A worker that dies mid-build leaves its attempt file behind; when a scheduler such as
Dask re-runs the task elsewhere, the new attempt sees it and, past the allowed retries,
reports the build as lost instead of running it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ductaflow.errors import DuctaflowError
from ductaflow.models import Status

#: The error text of a build whose worker died; the conductor's rows and records start with it.
WORKER_LOST = "worker_lost"


def claim_attempt(path: Path) -> int:
    """Count this start of a task in its attempt file; returns the attempt number (1 = first)."""
    try:
        seen = int(json.loads(path.read_text(encoding="utf-8")).get("attempts", 0))
    except (OSError, ValueError, AttributeError):
        seen = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"attempts": seen + 1, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)
    return seen + 1


def run_build(task: dict[str, Any]) -> dict[str, Any]:
    """Run one build instance described by ``task``; always return plain data, never raise."""
    from ductaflow.execute import run_notebook
    from ductaflow.executors import mark_busy
    from ductaflow.records import summarize_instance

    exec_dir = Path(task["instance_dir"])
    attempt_file = task.get("attempt_file")
    if attempt_file:
        attempt = claim_attempt(Path(attempt_file))
        allowed = 1 + int(task.get("lost_retries") or 0)
        if attempt > allowed:
            return lost_outcome(f"the worker running it died ({attempt - 1} attempt(s))")
    mark_busy(True)
    interrupted = False
    error: str | None = None
    t0 = time.monotonic()
    skipped, notes = False, ()
    try:
        result = run_notebook(
            task["build_path"],
            task["config"],
            execution_dir=exec_dir,
            project_root=task["project_root"],
            instance_name=task["instance"],
            timeout=task.get("timeout"),
            raise_on_failure=False,
            force=task.get("force", False),
            context=task.get("context"),
        )
        skipped, notes = result.skipped, result.notes
    except KeyboardInterrupt:
        interrupted = True
    except DuctaflowError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die
        error = f"{type(exc).__name__}: {exc}"
    finally:
        mark_busy(False)
    summary = summarize_instance(exec_dir, Path(task["build_path"]).stem)
    return {
        "instance": task["instance"],
        "status": (summary.status or Status.RED).value if not error else Status.RED.value,
        "duration": summary.build.duration if summary.build and summary.build.duration else time.monotonic() - t0,
        "error": error or summary.error or ("interrupted" if interrupted else None),
        "worst_flow": summary.worst_flow,
        "interrupted": interrupted,
        "skipped": skipped,
        "notes": list(notes),
    }


def lost_outcome(detail: str) -> dict[str, Any]:
    """The plain-data outcome of a build whose worker was lost."""
    return {"status": Status.RED.value, "error": f"{WORKER_LOST}: {detail}", "lost": True}


def finalize_lost(instance_dir: Path, detail: str) -> int:
    """Close every status record under a lost build instance that still says ``running``:
    red, ``WorkerLost``. Returns how many. Run by the conductor, never by a worker."""
    from datetime import datetime, timezone

    closed = 0
    for path in [*instance_dir.glob("*_status.json"), *instance_dir.glob("runs/*/*_status.json")]:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or rec.get("state") != "running":
            continue
        rec.update(
            state="finished",
            status=Status.RED.value,
            finished=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            error={"type": "WorkerLost", "message": f"{WORKER_LOST}: {detail}", "traceback": "", "cell_index": None},
        )
        tmp = path.with_name(f".{path.name}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(rec, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, path)
            closed += 1
    return closed
