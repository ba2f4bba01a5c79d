"""Process-table checks shared by tests: which kernels are still alive, and waiting them out."""

from __future__ import annotations

import time

import psutil


def kernels_mentioning(text: str) -> list[psutil.Process]:
    """Kernel processes whose environment or working directory points into a directory
    (survivors of a dead parent). A forked kernel shows its template's command line and
    start-up environment, but works in its flow's instance directory."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            launched = "ipykernel" in cmdline and text in str(proc.environ())
            forked = "ductaflow/kernels/template.py" in cmdline and text in proc.cwd()
            if launched or forked:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def templates_owned_by(pid: int) -> list[psutil.Process]:
    """Kernel template processes started by ``pid`` (the template's own pid excluded)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["ppid"] == pid and any(part.endswith("ductaflow/kernels/template.py") for part in cmdline):
            found.append(proc)
    return found


def wait_for_no_kernels(text: str, timeout: float = 20) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for kernels mentioning ``text`` to exit; return the survivors."""
    deadline = time.monotonic() + timeout
    alive = kernels_mentioning(text)
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = kernels_mentioning(text)
    return alive
