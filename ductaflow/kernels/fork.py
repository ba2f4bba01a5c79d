"""The forking kernel launcher: flows get a fresh kernel forked from a warm template.

A template (``template.py``, a child of the process that first needs it) has imported
ipykernel and the preload modules; each kernel is a fork of it, so a flow pays neither the
interpreter's start-up nor those imports, and still runs in a process of its own that no
other flow has touched. ``provisioner.py`` plugs this into jupyter_client. This module
needs only the standard library, so a command can start its template before heavy imports.

Kernels started inside a flow's kernel (a build's steps) reach the same template through
``DUCTAFLOW_KERNEL_TEMPLATE``. A forked kernel is the template's child, not its requester's:
it is tracked through a pidfd and kills its own process group when its requester exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

#: Set in a forked kernel's environment: the socket of the template that forked it (a build's
#: kernel forks its steps' kernels from the same template).
TEMPLATE_ENV = "DUCTAFLOW_KERNEL_TEMPLATE"


log = logging.getLogger(__name__)

_SCRIPT = Path(__file__).with_name("scripts") / "template.py"
_HEADER = struct.Struct("!I")
_START_TIMEOUT_S = 120.0
#: Private socket folders of templates, in the temp dir: ``ductaflow-kt-<owner pid>-<random>``.
TEMPLATE_DIR_PREFIX = "ductaflow-kt-"


def supported() -> bool:
    """Fork launching needs fork, pidfds and descriptor passing: Linux."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


class Template:
    """One running template process and the socket it serves on."""

    def __init__(self, preload: tuple[str, ...]) -> None:
        self.preload = preload
        # 0700: only this user may connect. The owner's pid in the name lets a later sweep
        # (provisioner.remove_leftovers) remove it when owner and template were both SIGKILLed.
        self._dir = tempfile.mkdtemp(prefix=f"{TEMPLATE_DIR_PREFIX}{os.getpid()}-")
        self.socket_path = os.path.join(self._dir, "s")
        cmd = [sys.executable, str(_SCRIPT), self.socket_path, str(os.getpid()), *preload]
        env = {k: v for k, v in os.environ.items() if k != TEMPLATE_ENV}
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # pydevd's import-time notice, as in kernels
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd="/", start_new_session=True
        )
        self.failed: dict[str, str] = {}
        self._ready = threading.Event()
        self._error: str | None = None
        threading.Thread(target=self._await_ready, daemon=True).start()

    def _await_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        try:
            doc = json.loads(line)
            self.failed = doc.get("failed", {})
        except ValueError:
            self._error = f"kernel template exited during start-up (code {self.proc.poll()})"
        else:
            for name, why in self.failed.items():
                log.warning("preload %s failed in the kernel template: %s", name, why)
        self._ready.set()

    def wait_ready(self, timeout: float = _START_TIMEOUT_S) -> None:
        if not self._ready.wait(timeout):
            raise OSError(f"kernel template not ready after {timeout:.0f} s")
        if self._error:
            raise OSError(self._error)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for remove, path in ((os.unlink, self.socket_path), (os.rmdir, self._dir)):
            try:
                remove(path)
            except OSError:
                pass


def _fd(stream: object, default: int) -> int:
    """The descriptor behind one of the interpreter's original streams (None when it had none)."""
    fileno = getattr(stream, "fileno", None)
    return int(fileno()) if fileno is not None else default


def fork_kernel(socket_path: str, argv: list[str], env: dict[str, str], cwd: str) -> int:
    """Ask the template at ``socket_path`` for a kernel; returns its pid."""
    body = json.dumps({"argv": argv, "env": env, "cwd": cwd, "requester": os.getpid()}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_START_TIMEOUT_S)  # a template still importing its preload answers late
        conn.connect(socket_path)
        socket.send_fds(conn, [_HEADER.pack(len(body))], [_fd(sys.__stdout__, 1), _fd(sys.__stderr__, 2)])
        conn.sendall(body)
        head = _recv_exact(conn, _HEADER.size)
        reply = json.loads(_recv_exact(conn, _HEADER.unpack(head)[0]))
    if "pid" not in reply:
        raise OSError(f"kernel template refused: {reply.get('error')}")
    return int(reply["pid"])


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("kernel template hung up")
        data += chunk
    return data


_TEMPLATES: dict[tuple[str, ...], Template] = {}
_LOCK = threading.Lock()


def template_for(preload: tuple[str, ...], wait: bool = True) -> Template:
    """This process's template for ``preload``, started (or restarted if it died) on demand;
    ``wait=False`` returns at once (requests made before it is ready wait for it)."""
    with _LOCK:
        current = _TEMPLATES.get(preload)
        if current is None or not current.alive():
            if current is not None:
                log.warning("kernel template (pid %s) died; starting another", current.proc.pid)
                current.stop()
            current = _TEMPLATES[preload] = Template(preload)
    if wait:
        current.wait_ready()
    return current


def stop_templates() -> None:
    """Stop every template this process started (at exit)."""
    with _LOCK:
        for template in _TEMPLATES.values():
            template.stop()
        _TEMPLATES.clear()


atexit.register(stop_templates)


class ForkedProcess:
    """The part of ``subprocess.Popen`` jupyter_client uses, for a kernel that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._fd, self.returncode = None, -signal.SIGKILL

    def poll(self) -> int | None:
        if self.returncode is None and self._fd is not None and select.select([self._fd], [], [], 0)[0]:
            self._gone()
        return self.returncode

    def _gone(self) -> None:
        # Not our child: its exit status went to the template. Report it as killed.
        self.returncode = -signal.SIGKILL
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["kernel"], timeout or 0)
            select.select([self._fd], [], [], left)  # type: ignore[type-var]  # a pidfd is an int here
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            signal.pidfd_send_signal(self._fd, signum)  # type: ignore[arg-type]

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)
