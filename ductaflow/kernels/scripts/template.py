"""A warm template that forks one fresh IPython kernel per flow (run as a script, never imported).

Usage: ``python template.py SOCKET OWNER_PID [MODULE ...]``. It imports ipykernel and the
preload modules once, then serves requests on the Unix socket ``SOCKET``: each request
carries a kernel's argv, environment, working directory, the requester's pid and its
stdout/stderr (as file descriptors). The template forks; the child becomes that kernel,
in its own session, and the template replies with the child's pid. A kernel's exit is a
normal interpreter exit, as for a launched kernel.

What a fork would otherwise share, the child resets: environment, working directory,
``sys.path[0]``, signal dispositions and the ``random`` and ``numpy.random`` seeds. Exit
handlers that preloaded modules registered are kept and run when the kernel exits, as they
would had the kernel imported those modules itself. The template starts no Python thread
and no zmq context (native libraries' pools, such as OpenBLAS's, handle fork themselves).
A child kills its own process group when its requester exits; the template exits when its
owner does. This file is run by path and imports only the standard library, ipykernel, numpy
(when installed: each kernel imports it anyway, to seed it before the first cell) and the
preload.
"""

import json
import os
import select
import signal
import socket
import struct
import sys
import threading

# Run by path, Python put this folder first on sys.path; a kernel must not see it.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

_HEADER = struct.Struct("!I")
# Modules an IPython kernel imports on its way to ready (measured: ipykernel 7, IPython 9);
# importing them here starts no thread.
_KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.extensions.storemagic",
    "sqlite3",
    "tornado.platform.asyncio",
    "tornado.queues",
    "tornado.locks",
    "tornado.gen",
    "psutil",
    "faulthandler",
)
_MAX_REQUEST = 64 * 1024 * 1024


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(min(size - got, 1 << 20))
        if not chunk:
            raise ConnectionError("requester hung up")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _reply(conn: socket.socket, doc: dict) -> None:
    body = json.dumps(doc).encode()
    conn.sendall(_HEADER.pack(len(body)) + body)


def _watch(pid: int) -> None:
    """Kill this kernel's process group once ``pid`` (its requester) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        fd = None
    if fd is None:  # already gone, or no pidfd: fall back to polling
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            threading.Event().wait(0.5)
    else:
        select.select([fd], [], [])
    os.killpg(0, signal.SIGKILL)


def _become_kernel(request: dict, fds: list, listener: socket.socket, conn: socket.socket) -> None:
    """In the forked child: turn into the requested kernel, then exit without returning.

    The kernel ends as a launched one does, by leaving the interpreter (``SystemExit``):
    exit handlers run and the streams are flushed. ``main`` lets that exception through
    in a child, and does not touch the template's socket."""
    code = 1
    try:
        os.setsid()
        listener.close()
        conn.close()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for target, fd in zip((1, 2), fds, strict=False):
            os.dup2(fd, target)
            os.close(fd)
        cwd = request["cwd"]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(request["requester"])  # as jupyter_client sets it
        # A kernel started with ``python -m ipykernel_launcher`` has its cwd first on sys.path.
        sys.path.insert(0, cwd)
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={request['requester']}"]
        sys.argv = [sys.executable, *argv]
        import random

        random.seed()
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()
        threading.Thread(target=_watch, args=(request["requester"],), daemon=True).start()
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(argv)
        # ipykernel's poller (the app's public ``poller``, created by initialize, started by
        # start) ends the kernel when its parent, the template, goes; the kernel belongs to
        # its requester instead, which _watch follows.
        app.poller = None
        app.start()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - report whatever stopped the kernel, then exit
        import traceback

        traceback.print_exc()
    raise SystemExit(code)


def _reap(signum: int, frame: object) -> None:
    """Collect every kernel that has exited (no zombies; their rusage passes up the tree)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve(listener: socket.socket, owner: int) -> None:
    try:
        owner_fd = os.pidfd_open(owner)
    except ProcessLookupError:
        return
    while True:
        ready, _, _ = select.select([listener, owner_fd], [], [])  # type: ignore[type-var]  # socket and fd
        if owner_fd in ready:
            return
        conn, _ = listener.accept()
        with conn:
            try:
                head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 2)
                if len(head) < _HEADER.size:
                    head += _recv_exact(conn, _HEADER.size - len(head))
                (size,) = _HEADER.unpack(head)
                if size > _MAX_REQUEST:
                    raise ValueError(f"request of {size} bytes")
                request = json.loads(_recv_exact(conn, size))
                pid = os.fork()
                if pid == 0:
                    _become_kernel(request, fds, listener, conn)
                for fd in fds:
                    os.close(fd)
                _reply(conn, {"pid": pid})
            except Exception as exc:  # noqa: BLE001 - one bad request must not end the template
                try:
                    _reply(conn, {"error": f"{type(exc).__name__}: {exc}"})
                except OSError:
                    pass


def _import_numpy_if_installed() -> None:
    """numpy and numpy.random, when installed: every flow's kernel seeds numpy's global random
    state before its first cell (ductaflow/core/seeds.py), which imports both in each kernel;
    imported here once, a forked kernel has them for free (numpy cost ~0.06 s of every trivial
    flow; numpy.random, which numpy 2 loads only on first use, another ~0.015 s)."""
    import importlib.util

    try:
        if importlib.util.find_spec("numpy") is not None:
            __import__("numpy.random")
    except Exception:  # noqa: BLE001 - a broken numpy: the seed code in the kernel says so itself
        pass


def main(argv: list) -> int:
    path, owner, preload = argv[0], int(argv[1]), argv[2:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the owner to handle
    signal.signal(signal.SIGCHLD, _reap)  # reaped here, so their CPU time reaches the owner's rusage
    # Listen before the slow imports: a requester that comes early waits in the backlog.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    for name in _KERNEL_MODULES:  # what a kernel imports while it initialises: ~0.45 s
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - another ipykernel version: the kernel imports it itself
            pass
    _import_numpy_if_installed()
    failed = {}
    for name in preload:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - a flow that needs it will say so itself
            failed[name] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write(json.dumps({"ready": os.getpid(), "failed": failed}) + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # nobody reads the start-up pipe any more
    os.close(devnull)
    template = os.getpid()
    try:
        _serve(listener, owner)
    finally:
        if os.getpid() == template:  # not in a kernel leaving through here (see _become_kernel)
            listener.close()
            # The socket and the private folder its owner made for it: an owner that ended
            # without its exit handlers (SIGKILL, os._exit) cannot remove them itself.
            for remove, target in ((os.unlink, path), (os.rmdir, os.path.dirname(path))):
                try:
                    remove(target)
                except OSError:  # gone already, or not empty: left as it is
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
