"""jupyter_client's side of ductaflow's kernels: two kernel provisioners, and the kernel
specs that select them.

Both provisioners are registered through jupyter_client's ``jupyter_client.kernel_provisioners`` entry
point (see pyproject.toml) and chosen by the kernel spec (:func:`kernel_spec`), whose
``metadata.kernel_provisioner`` names one and carries its configuration::

    {"kernel_provisioner": {"provisioner_name": "ductaflow-fork", "config": {"preload": ["pandas"]}}}

``ductaflow-local`` launches kernels as jupyter_client's local provisioner does;
``ductaflow-fork`` forks them from a warm template (see ``fork.py``). nbclient and
papermill drive both exactly as launched kernels.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import tempfile
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Instance, List, Unicode

from ductaflow.kernels.fork import TEMPLATE_DIR_PREFIX, TEMPLATE_ENV, ForkedProcess, fork_kernel, template_for

log = logging.getLogger(__name__)

LOCAL_NAME = "ductaflow-local"
FORK_NAME = "ductaflow-fork"
#: How long ``kill`` waits for the killed kernel to be gone (it is, within milliseconds).
_REAP_S = 1.0


def _forkable(cmd: list[str]) -> bool:
    return len(cmd) > 3 and cmd[0] == sys.executable and cmd[1:3] == ["-m", "ipykernel_launcher"]


class QuickReapProvisioner(LocalProvisioner):  # type: ignore[misc]
    """jupyter_client's local provisioner, except that ``kill`` returns once the kernel is
    gone. The kernel manager then finds it dead at its first check, instead of checking
    again every 0.1 s: ~0.1 s less per flow."""

    async def kill(self, restart: bool = False) -> None:
        await super().kill(restart=restart)
        delay, deadline = 0.002, time.monotonic() + _REAP_S
        while await self.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


class ForkProvisioner(QuickReapProvisioner):
    """The local provisioner, except that the kernel is forked from a template that has
    imported ``preload`` (the kernel spec's provisioner config).

    Falls back to a normal launch (with a warning) when the command is not this
    interpreter's ipykernel or the template cannot serve."""

    preload = List(Unicode(), help="Modules the kernel template imports once for every kernel.").tag(config=True)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        if not _forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            pid = self._fork(cmd[3:], env, cwd)
        except OSError as exc:
            log.warning("forking a kernel failed (%s); launching one normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        # LocalProvisioner's public state: the process it polls, signals and kills.
        self.process = ForkedProcess(pid)  # type: ignore[assignment]  # the Popen subset it uses
        self.pid = self.pgid = pid
        self.cwd = cwd
        return self.connection_info

    def _fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        shared = os.environ.get(TEMPLATE_ENV)
        if shared:  # inside a flow's kernel: use the template that forked it
            try:
                env[TEMPLATE_ENV] = shared
                return fork_kernel(shared, argv, env, cwd)
            except OSError as exc:
                log.info("shared kernel template at %s unusable (%s); starting one", shared, exc)
        preload = tuple(self.preload)
        for attempt in (1, 2):
            template = template_for(preload)
            env[TEMPLATE_ENV] = template.socket_path
            try:
                return fork_kernel(template.socket_path, argv, env, cwd)
            except OSError:
                if attempt == 2 or template.alive():
                    raise
        raise AssertionError("unreachable")


@lru_cache(maxsize=1)
def provisioners_installed() -> bool:
    """Whether jupyter_client finds ductaflow's provisioners (entry points of the installed
    package); without them kernels are launched by jupyter_client's default provisioner."""
    names = KernelProvisionerFactory.instance().get_provisioner_entries()
    if FORK_NAME in names and LOCAL_NAME in names:
        return True
    log.warning("ductaflow's kernel provisioners are not installed (pip install -e .?): kernels are not forked")
    return False


def kernel_spec(preload: tuple[str, ...] | None = None) -> KernelSpec:
    """This interpreter's ipykernel, forked from a template that has imported ``preload``
    or, when it is ``None``, launched."""
    metadata: dict[str, Any] = {"debugger": False}
    if provisioners_installed():
        name, config = (LOCAL_NAME, {}) if preload is None else (FORK_NAME, {"preload": list(preload)})
        metadata["kernel_provisioner"] = {"provisioner_name": name, "config": config}
    return KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=f"Python {sys.version_info.major} (ductaflow)",
        language="python",
        metadata=metadata,
    )


class KernelSpecs(KernelSpecManager):
    """The kernel specs a flow's kernel manager sees: ``current`` whatever the name, when
    set; otherwise the installed spec, reaped quickly by ``ductaflow-local`` unless it names
    a provisioner of its own."""

    current = Instance(KernelSpec, allow_none=True)

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if self.current is not None:
            return self.current
        spec = super().get_kernel_spec(kernel_name)
        if "kernel_provisioner" not in spec.metadata and provisioners_installed():
            local = {"provisioner_name": LOCAL_NAME, "config": {}}
            spec.metadata = {**spec.metadata, "kernel_provisioner": local}
        return spec


#: A kernel's start-up chatter (e.g. the TCP notice) is not the flow's output; the start-up
#: file keeps the flow's stdout and stderr lines in the order it wrote them.
START_ARGUMENTS = (
    "--IPKernelApp.log_level=ERROR",
    f"--IPKernelApp.exec_files={Path(__file__).with_name('scripts') / 'kernel_startup.py'}",
)
# Kernel channels over Unix domain sockets where the platform has them.
_IPC = sys.platform != "win32" and os.environ.get("DUCTAFLOW_KERNEL_TRANSPORT", "ipc") == "ipc"
#: The longest path a Unix socket may have (``sun_path`` less its NUL: 108 bytes on Linux, 104 on macOS).
IPC_PATH_MAX = 103 if sys.platform == "darwin" else 107


#: The names of the connection files and sockets of ductaflow's kernels: ``df-<owner pid>-<id>``.
LEFTOVER_PREFIX = "df-"


def remove_leftovers(runtime: Path | None = None, temp: Path | None = None) -> int:
    """Remove what kernels and kernel templates of gone owner processes left: connection files
    and sockets in the Jupyter runtime dir, template socket folders in the temp dir (pool and
    cluster workers end without exit handlers, a SIGKILL skips them); returns how many."""
    alive: dict[int, bool] = {}
    return remove_kernel_files(runtime, alive) + remove_template_dirs(temp, alive)


def remove_kernel_files(runtime: Path | None = None, alive: dict[int, bool] | None = None) -> int:
    """The connection files and sockets of gone owners' kernels in the Jupyter runtime dir."""
    seen: dict[int, bool] = {} if alive is None else alive
    removed = 0
    for name, path in _owned(runtime or Path(jupyter_runtime_dir()), LEFTOVER_PREFIX):
        if not _owner_alive(name, LEFTOVER_PREFIX, seen):
            removed += _remove(path)
    return removed


def remove_template_dirs(temp: Path | None = None, alive: dict[int, bool] | None = None) -> int:
    """The socket folders of gone owners' kernel templates in the temp dir (a shared temp dir
    can hold thousands of entries: listing it costs milliseconds, so callers that run many
    flows sweep it once, see :func:`remove_template_dirs_once`)."""
    seen: dict[int, bool] = {} if alive is None else alive
    removed = 0
    for name, path in _owned(temp or Path(tempfile.gettempdir()), TEMPLATE_DIR_PREFIX):
        if path.is_dir() and not _owner_alive(name, TEMPLATE_DIR_PREFIX, seen):
            _remove(path / "s")  # the socket of a template that was killed along with its owner
            removed += _remove(path)
    return removed


@functools.cache
def remove_template_dirs_once() -> int:
    """:func:`remove_template_dirs`, the first time a process asks: a template folder is made
    once per process, so what gone owners left is found by one sweep (the conductor sweeps again
    when its sweep ends)."""
    return remove_template_dirs()


def _owned(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    """Entries of ``folder`` named ``<prefix><pid>-...`` (an older name without a pid is left alone)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [(n, folder / n) for n in names if n.startswith(prefix) and n[len(prefix):].split("-", 1)[0].isdigit()]


def _owner_alive(name: str, prefix: str, seen: dict[int, bool]) -> bool:
    pid = int(name[len(prefix):].split("-", 1)[0])
    if pid not in seen:
        seen[pid] = _pid_alive(pid)
    return seen[pid]


def _remove(path: Path) -> int:
    """Unlink a file or socket, or remove an empty folder; 1 when it went, 0 otherwise."""
    try:
        path.rmdir() if path.is_dir() else path.unlink()
    except OSError:  # gone already, or a folder not empty: left as it is
        return 0
    return 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def configure_manager(km: Any, preload: tuple[str, ...] | None, current_python: bool = True) -> Any:
    """Set up a flow's kernel manager: this interpreter's kernel (forked from the template
    of ``preload``, or launched when it is None), Unix-socket channels, ductaflow's client."""
    specs = KernelSpecs(parent=km)
    if current_python:
        specs.current = kernel_spec(preload)
    km.kernel_spec_manager = specs
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    # Named after this process, in the runtime dir (not a mkstemp file in /tmp): what a process
    # that ended without its exit handlers (a pool worker) left is found and removed by the
    # next sweep of leftovers.
    name = f"{LEFTOVER_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}"
    km.connection_file = str(runtime / f"{name}.json")
    sockets = str(runtime / name)
    if _IPC and len(os.fsencode(sockets)) + len("-5") <= IPC_PATH_MAX:
        # Unix sockets, not TCP ports: a free port picked here can be taken by another
        # process before the kernel binds it ("Address already in use") on a busy machine.
        km.transport = "ipc"
        km.ip = sockets  # the kernel binds <ip>-1 ... <ip>-5
    elif _IPC:
        # A runtime dir this deep makes socket paths the kernel cannot bind: it died at start
        # and the run waited for it forever. TCP on localhost instead, as Jupyter's default.
        log.info("Jupyter runtime dir %s is too deep for Unix sockets; this kernel uses TCP", runtime)
    km.client_class = "ductaflow.kernels.client.ReadyClient"
    return km
