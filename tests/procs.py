"""Process-table checks shared by tests: which kernels are alive, whose they are, waiting them out.

Kernels are found by what they are and whose they are, not by a path written into this file:

- a *launched* kernel (``DUCTAFLOW_KERNEL_LAUNCHER=spawn``, or jupyter_client's own launch)
  runs ``python -m ipykernel_launcher -f CONNECTION_FILE``; jupyter_client gives it
  ``JPY_PARENT_PID``, the pid of the process that started it;
- a *forked* kernel is a fork of a kernel template (``ductaflow.kernels.fork``), so its command
  line is the template's: ``python TEMPLATE SOCKET OWNER_PID [MODULE ...]``, ``TEMPLATE`` being
  :data:`ductaflow.kernels.fork._SCRIPT` wherever the package keeps it, ``OWNER_PID`` the process
  that started the template. The kernel calls ``setsid``: it is the template's child, not its
  requester's, and once the template is gone it is nobody's descendant. Its environment as
  ``/proc`` shows it is the template's start-up environment (the kernel sets its own later,
  which ``/proc/PID/environ`` does not show), so ownership comes from ``OWNER_PID`` instead;
- the *template* itself has the same command line, and its parent is its owner.

``tests/test_procs.py`` checks that these helpers see each kind while it runs and nothing after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any

import psutil

from ductaflow.kernels.fork import _SCRIPT
from ductaflow.kernels.prestart import NEUTRAL_CWD

TEMPLATE_SCRIPT = os.path.realpath(_SCRIPT)
assert os.path.isfile(TEMPLATE_SCRIPT), f"the kernel template is not at {TEMPLATE_SCRIPT}"

LAUNCHED, FORKED, TEMPLATE = "launched", "forked", "template"
_KERNEL_MODULES = ("ipykernel_launcher", "ipykernel")


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _template_cmdline(cmdline: list[str]) -> bool:
    """``python TEMPLATE SOCKET OWNER_PID ...`` with this package's template script."""
    return len(cmdline) >= 4 and os.path.realpath(cmdline[1]) == TEMPLATE_SCRIPT and cmdline[3].isdigit()


def _launched_cmdline(cmdline: list[str]) -> bool:
    """``python -m ipykernel_launcher ...`` (or ``-m ipykernel``)."""
    return any(a == "-m" and b in _KERNEL_MODULES for a, b in zip(cmdline, cmdline[1:], strict=False))


def kind(proc: psutil.Process) -> str | None:
    """``"launched"``, ``"forked"``, ``"template"`` or None (not a kernel process, or gone)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
        if _template_cmdline(cmdline):
            # The template's parent is the owner named on its command line; a kernel's parent is the
            # template (or, once the template is gone, whoever adopted it).
            return TEMPLATE if proc.ppid() == int(cmdline[3]) else FORKED
        if _launched_cmdline(cmdline):
            return LAUNCHED
    except psutil.Error:
        pass
    return None


def owner(proc: psutil.Process) -> int | None:
    """The pid a kernel or template belongs to: a forked kernel's or template's OWNER_PID, a
    launched kernel's ``JPY_PARENT_PID``."""
    what = kind(proc)
    try:
        if what in (FORKED, TEMPLATE):
            return int(proc.cmdline()[3])
        if what == LAUNCHED:
            value = proc.environ().get("JPY_PARENT_PID", "")
            return int(value) if value.isdigit() else None
    except psutil.Error:
        pass
    return None


def all_kernels() -> list[psutil.Process]:
    """Every live kernel process this user can see, launched or forked (templates excluded)."""
    return [p for p in psutil.process_iter() if kind(p) in (LAUNCHED, FORKED)]


def _mentions(proc: psutil.Process, text: str) -> bool:
    """A forked kernel works in its flow's instance directory; a launched one also carries the
    flow's directories in its environment and its connection file on its command line."""
    try:
        if text in proc.cwd():
            return True
        if kind(proc) == LAUNCHED:
            return text in " ".join(proc.cmdline()) or any(text in v for v in proc.environ().values())
    except psutil.Error:
        pass
    return False


def kernels_mentioning(text: str) -> list[psutil.Process]:
    """Live kernels whose working directory (any kernel) or command line or environment (a
    launched kernel) mentions ``text``: survivors of a run in that directory, whoever owns them."""
    return [p for p in all_kernels() if _mentions(p, text)]


def kernels_owned_by(pid: int) -> list[psutil.Process]:
    """Live kernels started for process ``pid``, also after their template died and they were
    adopted by another process."""
    return [p for p in all_kernels() if owner(p) == pid]


def templates_owned_by(pid: int) -> list[psutil.Process]:
    """Kernel template processes started by ``pid``."""
    return [p for p in psutil.Process(pid).children() if kind(p) == TEMPLATE]


def is_forked_kernel(proc: psutil.Process) -> bool:
    """A kernel forked from a template (a spare waiting for its flow included)."""
    return kind(proc) == FORKED


def is_spare(proc: psutil.Process) -> bool:
    """A kernel forked ahead of need that no flow has taken yet (it waits in the neutral folder)."""
    try:
        return is_forked_kernel(proc) and proc.cwd() == NEUTRAL_CWD
    except psutil.Error:
        return False


def my_kernels() -> list[psutil.Process]:
    """Kernels of this test process: its descendants that are kernels, and kernels it owns that
    are no longer its descendants (their template died), except a pre-started spare waiting for
    the next flow (it is not any flow's kernel)."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True) if kind(p) in (LAUNCHED, FORKED)}
    found.update({p.pid: p for p in kernels_owned_by(me.pid)})
    return [p for pid, p in sorted(found.items()) if not is_spare(p)]


def wait_for_no_kernels(text: str, timeout: float = 20) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for kernels mentioning ``text`` to exit; return the survivors."""
    deadline = time.monotonic() + timeout
    alive = kernels_mentioning(text)
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = kernels_mentioning(text)
    return alive


def run_or_dump(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)``, but a Python command that hangs
    past ``timeout`` is sent SIGABRT with ``PYTHONFAULTHANDLER`` set, so the failure shows where
    each of its threads stood; its children are killed too."""
    env = {**(kwargs.pop("env", None) or os.environ), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        proc.send_signal(signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=30)
        for child in family:
            with contextlib.suppress(psutil.Error):
                child.kill()
        where = f"{args} hung for {timeout} s; its threads then:\n{err[-20000:]}\nstdout:\n{out[-4000:]}"
        raise AssertionError(where) from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
