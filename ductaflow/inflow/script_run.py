"""A flow run as a script with ``--output-dir``, recorded exactly as ``run_notebook`` records one.

``python flows/x.py --output-dir D`` reaches ``load_cli_config`` at the top of the flow. That
call prepares ``D`` (the config, then a ``running`` status record naming this process), moves
into ``D``, captures file descriptors 1 and 2 into the execution log (still shown on the
terminal) and runs the flow file again, in this same process, with :func:`runpy.run_path`
(``__name__ == "__main__"``); the nested ``load_cli_config`` call returns the config. So the
flow ends here, whichever way it ends: normally, ``SystemExit`` with its code, an exception,
Ctrl-C or SIGTERM (raised as :class:`~ductaflow.run.signals.Terminated`) are all seen
exactly, without replacing an interpreter hook. The final record is written and the process
exits with the status the flow would have exited with (SIGTERM: 143, Ctrl-C: 130).

Like a kernel's, the record says what the run used (:func:`ductaflow.run.usage.with_usage`):
the files and folders the config names, taken before the flow's code runs, and what the
process itself reports when the flow has ended green or orange
(:func:`ductaflow.core.deps.report`): the project modules it imported (the flow file itself
excepted) and the inputs it declared with ``inputs(...)``. ``sys.path`` holds the flow's
directory, then the project root (see :func:`ductaflow.inflow.script_mode.put_on_sys_path`).

Consequences: the lines above the ``load_cli_config`` call (normally imports) run twice, and
the calling module never continues past that call. The record is final when the flow's code
ends: what its leftover threads or ``atexit`` handlers print later is shown, not logged. A
process that ends without unwinding (``os._exit``, SIGKILL, power loss) leaves its
``running`` record, which every reader shows as ``gone``: red. Debuggers, profilers and
coverage see the flow: it runs in their process.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from ductaflow.core import deps
from ductaflow.core.clock import now_iso
from ductaflow.core.context import RunContext
from ductaflow.core.failures import FailureKind, Phase
from ductaflow.core.lights import Status, classify
from ductaflow.run.attempts import history
from ductaflow.run.capture import FdCapture, OutputSink
from ductaflow.run.recorder import Lifecycle, running_record
from ductaflow.run.signals import Terminated, sigterm_raises
from ductaflow.run.usage import config_deps, with_usage
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import artifact_path, artifact_paths, clear_artifacts
from ductaflow.store.records import read_status
from ductaflow.store.result import ErrorInfo, FlowResult, RunState

log = logging.getLogger(__name__)

#: Exit statuses of a flow ended by a signal, as a shell reports them (128 + the signal).
TERMINATED_STATUS = 128 + signal.SIGTERM
INTERRUPTED_STATUS = 128 + signal.SIGINT

_active: ScriptRun | None = None


def active_config() -> dict[str, Any] | None:
    """The config of the run this process is recording (for the flow's nested call), else None."""
    return None if _active is None else _active.cfg


def in_worker_process() -> bool:
    """True in a ``multiprocessing`` worker (spawn, forkserver) re-importing the flow: never record there."""
    mp = sys.modules.get("multiprocessing")
    return mp is not None and mp.parent_process() is not None


def prepare_only(exec_dir: Path, flow: str, cfg: dict[str, Any]) -> str | None:
    """``--no-execute``: write the config, run nothing. A directory already holding a run's
    status record is left exactly as it is: returns that record's state (else None)."""
    status = artifact_path(exec_dir, flow, "status")
    existing = read_status(status) if status.exists() else None
    if existing is not None:
        return str(existing.state)
    exec_dir.mkdir(parents=True, exist_ok=True)
    clear_artifacts(exec_dir, flow)
    atomic_write_json(artifact_path(exec_dir, flow, "config"), cfg)
    return None


@dataclass(frozen=True)
class _Ending:
    """How the flow's code ended, and the exit status the process gives for it."""

    status: int
    error: ErrorInfo | None = None
    interrupted: bool = False
    terminated: bool = False
    kind: str | None = None  # red: why (a FailureKind value; None: from the flags)
    phase: str = Phase.EXECUTE.value


class ScriptRun:
    """One recorded script-mode run: :meth:`begin` writes its first records, :meth:`run` the rest."""

    def __init__(self, exec_dir: Path, flow_path: Path, cfg: dict[str, Any], project_root: Path) -> None:
        self.exec_dir, self.flow_path, self.cfg = exec_dir, Path(os.path.realpath(flow_path)), cfg
        self.root = project_root
        self.name = flow_path.stem
        self.start: tuple[deps.Dep, ...] = ()  # the config's inputs as they were before the flow ran
        self.paths = artifact_paths(exec_dir, self.name)
        inherited = RunContext.inherited()  # a retry started by ductaflow says which attempt this is
        context = RunContext(project_root=str(project_root), flow=self.name, execution_dir=str(exec_dir),
                             attempt=inherited.attempt if inherited else 1)  # fmt: skip
        self.lifecycle = Lifecycle(context)  # no runs root known: no ledger row, as before
        self.running: FlowResult | None = None
        self.pid = os.getpid()

    def begin(self) -> None:
        """Clear an earlier run's files (status first), write the config and the running record."""
        self.exec_dir.mkdir(parents=True, exist_ok=True)
        attempt = self.lifecycle.context.attempt
        earlier = history(attempt, self.paths["status"])
        clear_artifacts(self.exec_dir, self.name)
        atomic_write_json(self.paths["config"], self.cfg)
        base = FlowResult(
            flow=self.name, flow_path=self.flow_path, execution_dir=self.exec_dir, status=Status.RED,
            state=RunState.RUNNING.value, started=now_iso(), instance=self.exec_dir.name, attempt=attempt,
            history=earlier,
        )  # fmt: skip
        self.running = running_record(base, mode="script", project_root=self.root)
        self.lifecycle.started(self.running)

    def run(self, script: str) -> int:
        """Run the flow file ``script`` here, captured, in the instance dir; record the end.

        Returns the exit status the process should end with.
        """
        global _active
        t0 = time.monotonic()
        sink = OutputSink(self.paths["log"])
        capture = FdCapture(sink)
        _active = self
        try:
            self.start = config_deps(self.cfg, self.root, self.exec_dir)
            os.chdir(self.exec_dir)  # the flow's own process: relative outputs land in the instance dir
            capture.start()
            ending = _run_flow(script)
        except Exception as exc:  # the run could not start: still a final record
            error = ErrorInfo(type(exc).__name__, str(exc), traceback.format_exc())
            ending = _Ending(1, error, kind=FailureKind.INFRASTRUCTURE.value, phase=Phase.PREPARE.value)
        finally:
            capture.stop()
            sink.close()
        if os.getpid() == self.pid:  # not a forked child that fell through: its parent records
            report = self._report() if ending.error is None else None
            self._end(ending, sink.warnings, time.monotonic() - t0, report)
        return ending.status

    def _report(self) -> dict[str, Any] | None:
        """What this process used (it ran the flow): :func:`ductaflow.core.deps.report`,
        the flow file itself left out whatever path it was imported by."""
        try:
            doc = deps.parse_report(deps.report(str(self.root)))
        except Exception as exc:  # noqa: BLE001 - no report: the record says the modules are unknown
            log.warning("could not list what %s used: %s", self.name, exc)
            return None
        if doc is not None:
            doc["modules"] = [m for m in doc["modules"] if os.path.realpath(str(m)) != str(self.flow_path)]
        return doc

    def _end(self, ending: _Ending, warnings: list[str], duration: float, report: dict[str, Any] | None) -> None:
        assert self.running is not None
        status = classify(
            raised=ending.error is not None and not ending.interrupted, interrupted=ending.interrupted,
            warnings=warnings,
        )  # fmt: skip
        result = replace(
            self.running, status=status, state=RunState.FINISHED.value, finished=now_iso(),
            duration=round(duration, 3), warnings=tuple(warnings), error=ending.error,
            interrupted=ending.interrupted, terminated=ending.terminated, exit_code=ending.status,
        )  # fmt: skip
        if status is Status.RED:  # the kind from the flags unless the ending said (Lifecycle.ended derives it)
            result = replace(result, kind=ending.kind, phase=ending.phase)
        try:
            result = with_usage(result, root=self.root, runs_root=self.root / "runs", start=self.start, report=report)
            self.lifecycle.marked = tuple(str(p) for p in (report or {}).get("artifacts") or ())
        except Exception:  # a bug of ours must still end in a final record
            log.exception("could not record what %s used", self.name)
        try:
            self.lifecycle.ended(result)
        except OSError as exc:
            log.error("could not write the final status record of %s in %s: %s", self.name, self.exec_dir, exc)


def _run_flow(script: str) -> _Ending:
    """Execute the flow file as ``__main__``; SIGTERM raises Terminated inside it."""
    try:
        with sigterm_raises():
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        return _exited(exc.code)
    except BaseException as exc:  # noqa: BLE001 - every way out is recorded, then reported as Python would
        return _raised(exc, script)
    return _Ending(0)


def _exited(code: Any) -> _Ending:
    """``SystemExit(code)``: 0 or None is a normal end; any other code is red, as its exit status says."""
    if code is None or (isinstance(code, int) and code == 0):
        return _Ending(0)
    if isinstance(code, int):
        return _Ending(code & 0xFF, ErrorInfo("SystemExit", str(code)))
    sys.stderr.write(f"{code}\n")  # as the interpreter reports a non-integer code (it exits 1)
    sys.stderr.flush()
    return _Ending(1, ErrorInfo("SystemExit", str(code)))


def _raised(exc: BaseException, script: str) -> _Ending:
    """An exception left the flow: report it as Python would (while still captured), then record it."""
    tb = _from_flow(exc.__traceback__, script)
    exc.with_traceback(tb)  # what a hook shows (it ignores a traceback passed beside one the exception holds)
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        sys.excepthook(type(exc), exc, tb)  # the flow's own hook, if it set one
    except Exception:  # noqa: BLE001 - a broken hook must not hide the error
        sys.stderr.write(text)
    sys.stderr.flush()
    if isinstance(exc, Terminated):
        return _Ending(TERMINATED_STATUS, ErrorInfo("Terminated", "SIGTERM", text), interrupted=True, terminated=True)
    if isinstance(exc, KeyboardInterrupt):
        return _Ending(INTERRUPTED_STATUS, ErrorInfo("KeyboardInterrupt", "interrupted", text), interrupted=True)
    return _Ending(1, ErrorInfo(type(exc).__name__, str(exc), text))


def _from_flow(tb: TracebackType | None, script: str) -> TracebackType | None:
    """The traceback from the flow's own first frame on (ductaflow's and runpy's frames left out)."""
    t = tb
    while t is not None and t.tb_frame.f_code.co_filename != script:
        t = t.tb_next
    return t or tb
