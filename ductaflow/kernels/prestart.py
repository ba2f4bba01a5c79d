"""Pre-started kernels: while one flow runs, the next flow's kernel is already booting.

A process that has started two forked kernels (a loop over flows, a conductor worker; not a
build's kernel, whose few steps would mostly waste it) keeps one *spare*: a fresh kernel
forked ahead of need, in a neutral working directory. The next flow takes it, and before its
first cell the kernel is given that flow's working directory, ``sys.path[0]`` and
environment. A spare serves exactly one flow and is never reused; one that died waiting is
dropped. A spare is stopped after 30 s without a flow, when its process exits, and (being
forked) when its requester dies.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from ductaflow.core.session import is_notebook_execution
from ductaflow.kernels.provisioner import START_ARGUMENTS, configure_manager, provisioners_installed

log = logging.getLogger(__name__)

NEUTRAL_CWD = "/"
PRESTART_ENV = "DUCTAFLOW_KERNEL_PRESTART"  # "0": no spares
IDLE_S = 30.0  # a spare no flow took in this long is stopped


@dataclass
class Spare:
    """A started kernel manager waiting for its flow, and the launch it was started with."""

    km: Any
    env: dict[str, str]
    cwd: str


_SPARES: dict[tuple[Any, ...], Spare] = {}
_STARTS: dict[tuple[Any, ...], int] = {}
_LOCK = threading.Lock()


def key_for(preload: tuple[str, ...]) -> tuple[Any, ...]:
    """Spares are per thread (a kernel manager belongs to its thread's event loop) and template."""
    return (threading.get_ident(), preload)


def take(key: tuple[Any, ...]) -> Spare | None:
    """The spare for ``key``, removed from the registry (the caller checks that it lives)."""
    with _LOCK:
        return _SPARES.pop(key, None)


def wanted(key: tuple[Any, ...]) -> bool:
    """Count a kernel start; a spare is worth keeping from the second start on."""
    if os.environ.get(PRESTART_ENV, "1") == "0" or _in_kernel():
        return False
    with _LOCK:
        _STARTS[key] = _STARTS.get(key, 0) + 1
        return _STARTS[key] >= 2 and key not in _SPARES


def _in_kernel() -> bool:
    """A build's kernel runs a few steps and then ends: a spare there would mostly be wasted
    (one per build, booted for nothing on a busy machine), so only other processes keep one."""
    return is_notebook_execution()


def keep(key: tuple[Any, ...], spare: Spare) -> None:
    """Hold ``spare`` for the next flow of ``key``; it is killed if no flow comes for a while."""
    with _LOCK:
        old = _SPARES.pop(key, None)
        _SPARES[key] = spare
    if old is not None:
        discard(old)
    timer = threading.Timer(IDLE_S, _expire, (key, spare))
    timer.daemon = True
    timer.start()


def _expire(key: tuple[Any, ...], spare: Spare) -> None:
    with _LOCK:
        if _SPARES.get(key) is not spare:
            return  # taken by a flow, or replaced
        del _SPARES[key]
    log.debug("pre-started kernel idle for %s s; stopping it", IDLE_S)
    discard(spare)


def discard(spare: Spare) -> None:
    """Kill a spare nobody will use (see :func:`release`)."""
    release(spare.km)


def release(km: Any) -> None:
    """Kill the kernel of a manager nobody will use (a spare, or one whose start failed) and
    free what it holds, synchronously: no event loop needed.

    Its zmq context is destroyed here, while its sockets are still reachable. Left to the
    garbage collector, a context and a socket that died together (one whose connect raised)
    deadlock it: the socket's weak reference is cleared first, so the context's finalizer
    cannot close it and waits for it forever.
    """
    prov = getattr(km, "provisioner", None)
    proc = getattr(prov, "process", None)
    try:
        if proc is not None:
            proc.kill()
    except OSError:
        pass
    try:
        km.cleanup_connection_file()
        km.cleanup_ipc_files()
    except Exception:  # noqa: BLE001 - best effort: the files are in the runtime dir
        pass
    try:
        km.context.destroy(linger=0)  # its own: jupyter_client makes one per manager
    except Exception:  # noqa: BLE001 - already closed, or never made
        pass


def discard_all() -> None:
    """Kill every spare of this process (at exit)."""
    with _LOCK:
        spares = list(_SPARES.values())
        _SPARES.clear()
    for spare in spares:
        discard(spare)


def assignment(spare: Spare, cwd: str, env: dict[str, str]) -> str:
    """Code run silently in a spare before the flow's first cell: the flow's working directory,
    ``sys.path[0]`` and environment (keys the kernel set itself at start-up are kept)."""
    args = json.dumps([spare.cwd, cwd, sorted(set(spare.env) - set(env)), env])
    return (
        "def _ductaflow_assign(old_cwd, cwd, gone, env):\n"
        "    import os, sys\n"
        "    for key in gone:\n"
        "        os.environ.pop(key, None)\n"
        "    os.environ.update(env)\n"
        "    os.chdir(cwd)\n"
        "    if sys.path and sys.path[0] == old_cwd:\n"
        "        sys.path[0] = cwd\n"
        "    shell = get_ipython()\n"
        "    if shell is not None and isinstance(shell.user_ns.get('_dh'), list):\n"
        "        shell.user_ns['_dh'][:] = [cwd]\n"
        "import json as _ductaflow_json\n"
        f"_ductaflow_assign(*_ductaflow_json.loads({args!r}))\n"
        "del _ductaflow_assign, _ductaflow_json\n"
    )


_EARLY: list[bool] = []  # set once this process has started its first flow's kernel early


def start_early(preload: tuple[str, ...], env: dict[str, str]) -> None:
    """Fork the first flow's kernel of this process now, before the flow's runner imports
    papermill: the kernel boots (~0.4 s) while the import runs (~0.4 s) instead of after it.

    The first flow takes it as it takes any spare (its directory and environment handed over
    before cell one). Only once per process: later flows have the usual spares. A failure
    only means the flow starts its own kernel, as it would have.
    """
    if _EARLY or os.environ.get(PRESTART_ENV, "1") == "0":
        return
    _EARLY.append(True)
    if not provisioners_installed():
        return
    km = configure_manager(AsyncKernelManager(kernel_name="python3"), preload)
    try:
        run_sync(km.start_kernel)(extra_arguments=list(START_ARGUMENTS), cwd=NEUTRAL_CWD, env=env)
    except Exception as exc:  # noqa: BLE001 - the flow starts its own kernel
        log.info("could not start the first kernel early: %s", exc)
        release(km)
        return
    keep(key_for(preload), Spare(km, env, NEUTRAL_CWD))
