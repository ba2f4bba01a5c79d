"""The client ductaflow runs flows with, and the kernels it must never lose.

A thin subclass of papermill's nbclient client that (1) streams the flow's stdout/stderr
into an :class:`~ductaflow.run.capture.OutputSink`, (2) starts the kernel with the current
interpreter unless a kernel name is asked for, so a fresh virtualenv needs no kernelspec,
and (3) records the kernel's process group so it can be killed on timeout, interrupt or
exit. Kernels run in their own session; a terminal's Ctrl-C does not reach them, we do.

Everything plugs in through the libraries' documented seams: papermill finds the engine
through its ``papermill.engine`` entry point (``papermill_engine.py``), the kernel manager
gets its kernel spec from a :class:`KernelSpecs` manager, whose spec names a kernel
provisioner registered through the ``jupyter_client.kernel_provisioners`` entry point
(``provisioner.py``), and the manager's ``client_class`` is ``kernels.client.ReadyClient``.

Outside the flow's cells the client sends two silent requests (``silent.py``): before the
first cell, the kernel's ``sys.path`` is made to start with its working directory (the
instance directory), the flow file's directory and the project root (``sys_path``); after
the last one (also when a cell raised) the kernel is asked which project modules it
imported and which inputs the flow declared (``report_root``), kept on the
:class:`KernelHandle` as ``report``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_core.utils import run_sync
from papermill.clientwrap import PapermillNotebookClient
from traitlets import Any as AnyTrait

from ductaflow.core.seeds import kernel_seed_code
from ductaflow.kernels import evidence, silent, stopping
from ductaflow.kernels import prestart as spares
from ductaflow.kernels.provisioner import START_ARGUMENTS, configure_manager, provisioners_installed
from ductaflow.store.layout import FLOWS_SUBDIR, STATUS_SUFFIX
from ductaflow.store.records import read_status
from ductaflow.store.result import RunState

log = logging.getLogger(__name__)

# papermill's name for papermill_engine.DuctaflowEngine: the ``papermill.engine`` entry point in
# pyproject.toml, so ductaflow must be installed (``pip install -e .`` for a checkout).
ENGINE_NAME = "ductaflow"


class _KnownKernelEnds(logging.Filter):
    """nbclient logs a dead or timed-out kernel as an error; the status record already says
    so (red, ``kernel died`` / ``timed out`` / ``interrupted``), so the terminal need not."""

    _NOISE = (
        "Kernel died while waiting for execute reply",
        "Timeout waiting for execute reply",
        "Error occurred while starting new kernel client",  # a kernel stopped while it booted
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._NOISE)


log.addFilter(_KnownKernelEnds())



class KernelHandle:
    """The one kernel of one flow execution: who it is and how to kill it."""

    def __init__(self, watch_dir: Path | None = None, timeout: float | None = None) -> None:
        self.watch_dir = watch_dir  # nested flows write their status records under here
        self.timeout = timeout  # the flow's time limit in seconds, named when it expires
        self.km: Any = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.expired = False  # set by the timeout watchdog before it kills
        self.stopped = False  # set when another thread asked this flow to stop (see stop_kernels)
        #: What the flow's process said it used after the last cell (``core.deps.report``,
        #: parsed), or None when it was not asked or could not answer.
        self.report: dict[str, Any] | None = None
        #: how far the run got (a ``core.failures.Phase`` value): ``start`` until the kernel has
        #: answered and is prepared, ``execute`` during the cells, ``finalize`` after the last
        self.phase = "start"
        self._peak: float | None = None
        self._lock = threading.Lock()

    def started(self, km: Any) -> None:
        prov = getattr(km, "provisioner", None)
        with self._lock:
            self.km = km
            self.pid = getattr(prov, "pid", None)
            self.pgid = getattr(prov, "pgid", None) or self.pid
        _LIVE.add(self)
        if self.expired:  # the deadline passed while the kernel was still booting
            self.kill()
        elif stopping.requested(self.watch_dir):  # asked to stop before its kernel was up
            self.stopped = True
            self.kill()

    def _tree(self) -> list[Any]:
        """The kernel and every live descendant (nested flow kernels live in other sessions)."""
        if not self.pid:
            return []
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return []

    def stop_gracefully(self, grace: float = 5.0) -> None:
        """Interrupt the running cell (SIGINT), give nested flows ``grace`` seconds to record
        their own interruption, then kill what is left."""
        import psutil

        tree = self._tree()
        if tree:
            try:
                os.kill(self.pid, signal.SIGINT)  # type: ignore[arg-type]
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    settled = not psutil.Process(self.pid).children(recursive=True)  # type: ignore[arg-type]
                except psutil.Error:
                    break
                if settled and not self._nested_running():
                    break
                time.sleep(0.1)
        self.kill()

    def peak_rss_mb(self) -> float | None:
        """The kernel's peak resident memory (Linux VmHWM) so far; remembered once it is gone."""
        if self.pid:
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                text = ""
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self._peak = max(self._peak or 0.0, round(int(line.split()[1]) / 1024, 1))
        return self._peak

    def _nested_running(self) -> bool:
        """True while a nested flow under ``watch_dir`` has not yet written its final record."""
        if self.watch_dir is None:
            return False
        records = (read_status(p) for p in self.watch_dir.glob(f"{FLOWS_SUBDIR}/**/*{STATUS_SUFFIX}"))
        return any(r is not None and r.state == RunState.RUNNING for r in records)

    def kill(self) -> None:
        """SIGKILL the kernel, its descendants and its process group."""
        with self._lock:
            pgid = self.pgid
        for proc in reversed(self._tree()):
            try:
                proc.kill()
            except Exception:  # noqa: BLE001 - already gone or not ours
                pass
        if pgid and hasattr(os, "killpg"):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def release(self) -> None:
        """Kill whatever is left of the kernel's group and forget it."""
        self.kill()
        if self.pid:
            try:  # reap the zombie if it was our child and nothing else waited for it
                os.waitpid(self.pid, os.WNOHANG)
            except (ChildProcessError, OSError):
                pass
        _LIVE.discard(self)

    def expire(self) -> None:
        """Called by the timeout watchdog: stop the flow, nested flows first."""
        self.expired = True
        log.info("flow timed out; stopping kernel pid %s", self.pid)
        self.stop_gracefully(grace=3.0)


_LIVE: set[KernelHandle] = set()


def stop_kernels(instance_dirs: Iterable[str | Path], grace: float = 5.0) -> int:
    """Stop, as a Ctrl-C would, the running flows of this process whose instance directory
    is one of ``instance_dirs``; returns how many. For executors whose builds run in threads
    (a Dask worker, a thread pool), where no signal can reach the build."""
    wanted = stopping.request(instance_dirs)  # also stops a kernel that starts later
    hits = [h for h in list(_LIVE) if h.watch_dir is not None and os.path.realpath(h.watch_dir) in wanted]
    for handle in hits:
        handle.stopped = True
        threading.Thread(target=handle.stop_gracefully, args=(grace,), daemon=True).start()
    return len(hits)


def kill_all_kernels() -> None:
    """Kill every kernel this process started and has not released (exit, SIGTERM)."""
    for handle in list(_LIVE):
        handle.release()
    spares.discard_all()


atexit.register(kill_all_kernels)




def _is_ipykernel(km: Any) -> bool:
    """Whether ``km`` launches IPython's kernel (whose options ductaflow passes at start-up)."""
    try:
        argv = [str(a) for a in km.kernel_spec.argv]
    except Exception:  # noqa: BLE001 - no such kernelspec: starting it will say so
        return False
    return any(a in ("ipykernel_launcher", "ipykernel") for a in argv)


class DuctaflowClient(PapermillNotebookClient):
    """papermill's client plus live capture and kernel tracking."""

    sink = AnyTrait(default_value=None, allow_none=True)
    handle = AnyTrait(default_value=None, allow_none=True)
    use_current_python = AnyTrait(default_value=True)
    kernel_env = AnyTrait(default_value=None, allow_none=True)
    kernel_options = AnyTrait(default_value=None, allow_none=True)  # a kernels.KernelOptions
    #: Directories to put on the kernel's ``sys.path`` right after its working directory, in
    #: order (the flow's directory, the project root); None leaves ``sys.path`` alone.
    sys_path = AnyTrait(default_value=None, allow_none=True)
    #: The project root to ask the kernel about after the last cell (see ``silent.ask_report``).
    report_root = AnyTrait(default_value=None, allow_none=True)
    #: The run's seed: ``random`` and numpy's legacy global state are seeded with it before the first cell.
    seed = AnyTrait(default_value=None, allow_none=True)
    _assignment: str | None = None  # code that hands a pre-started kernel to this flow

    def __init__(self, nb_man: Any, **kwargs: Any) -> None:
        # nbclient's documented hook: an error reply without an error output still names its error
        kwargs.setdefault("on_cell_error", evidence.error_output_from_reply)
        super().__init__(nb_man, **kwargs)

    def fork_preload(self) -> tuple[str, ...] | None:
        """The template's modules when this flow's kernel is forked, else ``None``."""
        options = self.kernel_options
        if self.use_current_python and options is not None and options.forks and provisioners_installed():
            return tuple(options.preload)
        return None

    def create_kernel_manager(self) -> Any:
        return configure_manager(super().create_kernel_manager(), self.fork_preload(), bool(self.use_current_python))

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        # The kernel's own start-up chatter (e.g. the TCP notice) is not the flow's output.
        arguments: list[str] = list(getattr(self, "extra_arguments", []))  # nbclient's List trait, untyped
        if START_ARGUMENTS[0] not in arguments and _is_ipykernel(getattr(self, "km", None)):
            self.extra_arguments = [*arguments, *START_ARGUMENTS]
        if self.kernel_env is not None and "env" not in kwargs:
            kwargs["env"] = self.kernel_env
        preload = self.fork_preload()
        key = spares.key_for(preload) if preload is not None else None
        spare = spares.take(key) if key is not None else None
        if spare is not None and await spare.km.is_alive():
            self.km = spare.km  # booted while the last flow ran; gets this flow's cwd and env below
            cwd = self.resources.get("metadata", {}).get("path") or os.getcwd()
            self._assignment = spares.assignment(spare, str(cwd), dict(kwargs.get("env") or os.environ))
        else:
            if spare is not None:
                spares.discard(spare)
            try:
                await super().async_start_new_kernel(**kwargs)
            except BaseException:  # nbclient leaves a manager whose start failed as it is
                if self.km is not None:
                    spares.release(self.km)
                raise
        if self.handle is not None:
            self.handle.started(self.km)
        if key is not None and spares.wanted(key):
            await self._start_spare(key, dict(kwargs.get("env") or os.environ))

    async def _start_spare(self, key: Any, env: dict[str, str]) -> None:
        """Fork the next flow's kernel now, so it boots while this flow runs."""
        current = self.km
        try:
            km = self.create_kernel_manager()
        finally:
            self.km = current
        try:
            await km.start_kernel(extra_arguments=self.extra_arguments, cwd=spares.NEUTRAL_CWD, env=env)
        except Exception as exc:  # noqa: BLE001 - no spare: the next flow starts its own kernel
            log.info("could not pre-start a kernel: %s", exc)
            spares.release(km)
            return
        spares.keep(key, spares.Spare(km, env, spares.NEUTRAL_CWD))

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        code = self._prelude()
        if code:  # one silent request before the first cell
            msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
            reply = await self.async_wait_for_reply(msg_id)
            if (reply or {}).get("content", {}).get("status") != "ok":
                raise RuntimeError(f"could not prepare the kernel for the flow: {reply}")
        if self.handle is not None:
            self.handle.phase = "execute"
        return kc

    def _prelude(self) -> str:
        """What the kernel runs before the first cell: a pre-started kernel's hand-over (this
        flow's working directory and environment), then this flow's ``sys.path``, then its seed."""
        code, self._assignment = self._assignment or "", None
        if self.sys_path is not None and silent.speaks_python(self.km):
            code += silent.sys_path_code([str(d) for d in self.sys_path])
        if self.seed is not None and silent.speaks_python(self.km):
            code += kernel_seed_code(int(self.seed))
        return code

    def papermill_execute_cells(self) -> None:
        """papermill's cell loop (a cell that raised ends it normally), then ask the kernel
        what the flow used. Not after a dead kernel, a timeout or an interrupt: those raise,
        after the cell that was running is marked failed, as papermill marks a cell that raised."""
        try:
            super().papermill_execute_cells()
        except BaseException as exc:
            evidence.record_stop(self.nb_man, exc, self.handle)
            raise
        if self.handle is not None:
            self.handle.phase = "finalize"
        if self.handle is not None and (self.handle.expired or self.handle.stopped):
            evidence.record_stop(self.nb_man, None, self.handle)  # its kernel answered our interrupt
        if self.report_root is None or self.kc is None or not silent.speaks_python(self.km):
            return
        report = self.ask_report()
        if self.handle is not None:
            self.handle.report = report

    async def async_ask_report(self) -> dict[str, Any] | None:
        return await silent.ask_report(self.km, self.kc, Path(self.report_root))

    # nbclient's blocking methods (papermill's client calls them) wrap the coroutines they
    # were defined with: wrap ours the same way, with the same public helper.
    start_new_kernel = run_sync(async_start_new_kernel)
    start_new_kernel_client = run_sync(async_start_new_kernel_client)
    ask_report = run_sync(async_ask_report)

    @contextmanager
    def setup_kernel(self, **kwargs: Any) -> Iterator[None]:
        """nbclient's kernel context, plus: on Ctrl-C interrupt the kernel before it is
        killed, so a build's nested flows can record their interruption and reap their
        own kernels; and read the kernel's memory high-water mark while it still exists."""
        with super().setup_kernel(**kwargs):
            try:
                yield
            except KeyboardInterrupt:
                if self.handle is not None:
                    self.handle.stop_gracefully()
                raise
            finally:
                if self.handle is not None:
                    self.handle.peak_rss_mb()

    def process_message(self, *args: Any, **kwargs: Any) -> Any:
        output = super().process_message(*args, **kwargs)
        if output is not None and self.sink is not None and output.get("output_type") == "stream":
            text = output.get("text", "")
            self.sink.write(output.get("name", "stdout"), "".join(text) if isinstance(text, list) else text)
        return output
