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
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ductaflow import liveness, stopping
from ductaflow.errors import DuctaflowError
from ductaflow.kernels import TEMPLATE_ENV
from ductaflow.models import Status

log = logging.getLogger(__name__)

#: The error text of a build whose worker died; the conductor's rows and records start with it.
WORKER_LOST = "worker_lost"
#: How often a worker checks that the conductor that started it is still alive.
_WATCH_INTERVAL_S = 1.0
#: How long an orphaned worker waits for its interrupted builds to record themselves.
_ORPHAN_GRACE_S = 30.0
_WATCH_LOCK = threading.Lock()
_RUNNING: set[str] = set()  # instance dirs of the builds this process is running now
_WATCHING: list[int] = []  # the conductor pid the watchdog of this process follows


def watch_conductor(conductor: Any) -> None:
    """Start (once per process) a thread that stops this worker's builds when its conductor dies.

    Only in a process the conductor started (a local pool worker, a LocalCluster worker): its
    pool outlives a SIGKILLed conductor, and would otherwise finish the builds unwatched, then
    wait forever for tasks, kernels and all. A worker elsewhere (another host) is left alone.
    """
    import psutil

    if not isinstance(conductor, dict) or conductor.get("pid") in (None, os.getpid()):
        return
    pid, created = int(conductor["pid"]), float(conductor.get("created") or 0)
    with _WATCH_LOCK:
        if _WATCHING:
            return
        try:
            ancestors = {(p.pid, p.create_time()) for p in psutil.Process().parents()}
        except psutil.Error:
            return
        if (pid, created) not in ancestors:
            return
        _WATCHING.append(pid)
    threading.Thread(target=_watchdog, args=(pid, created), name="ductaflow-conductor-watch", daemon=True).start()


def _watchdog(pid: int, created: float) -> None:
    """Wait for the conductor to die; then interrupt the running builds as Ctrl-C would, and exit."""
    from ductaflow.engine import stop_kernels

    while liveness.running(pid, created):
        time.sleep(_WATCH_INTERVAL_S)
    with _WATCH_LOCK:
        running = sorted(_RUNNING)
    log.warning("the conductor (pid %d) is gone; stopping %d build(s) and exiting", pid, len(running))
    stop_kernels(running)
    deadline = time.monotonic() + _ORPHAN_GRACE_S
    while time.monotonic() < deadline:
        with _WATCH_LOCK:
            if not _RUNNING:
                break
        time.sleep(0.2)
    os._exit(0)


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
    watch_conductor(task.get("conductor"))
    attempt_file = task.get("attempt_file")
    if attempt_file:
        attempt = claim_attempt(Path(attempt_file))
        allowed = 1 + int(task.get("lost_retries") or 0)
        if attempt > allowed:
            return lost_outcome(f"the worker running it died ({attempt - 1} attempt(s))")
    stopping.forget(exec_dir)  # a stop meant for an earlier build of this dir
    if task.get("kernel_template"):  # the conductor's warm kernel template (local workers)
        os.environ[TEMPLATE_ENV] = task["kernel_template"]
    mark_busy(str(exec_dir))
    with _WATCH_LOCK:
        _RUNNING.add(str(exec_dir))
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
            preload=task.get("preload"),
        )
        skipped, notes = result.skipped, result.notes
    except KeyboardInterrupt:
        interrupted = True
    except DuctaflowError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die
        error = f"{type(exc).__name__}: {exc}"
    finally:
        mark_busy(None)
    summary = summarize_instance(exec_dir, Path(task["build_path"]).stem)
    with _WATCH_LOCK:  # after the record is read back: an orphaned worker exits once this is empty
        _RUNNING.discard(str(exec_dir))
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


def finalize_lost(instance_dir: Path, detail: str, interrupted: bool = False) -> int:
    """Close every status record under a lost build instance that still says ``running``:
    red, ``WorkerLost`` (or ``interrupted`` when the worker went because of a Ctrl-C).
    Returns how many. Run by the conductor, never by a worker."""
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
        if interrupted:
            rec.update(interrupted=True, error={**rec["error"], "type": "KeyboardInterrupt", "message": "interrupted"})
        tmp = path.with_name(f".{path.name}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(rec, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, path)
            closed += 1
    return closed
