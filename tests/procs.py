"""Process-table checks shared by tests: which kernels are still alive, and waiting them out."""

from __future__ import annotations

import time

import psutil


def kernels_mentioning(text: str) -> list[psutil.Process]:
    """Kernel processes whose environment points into a directory (survivors of a dead parent)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "ipykernel" in " ".join(proc.info["cmdline"] or []) and text in str(proc.environ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_for_no_kernels(text: str, timeout: float = 20) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for kernels mentioning ``text`` to exit; return the survivors."""
    deadline = time.monotonic() + timeout
    alive = kernels_mentioning(text)
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = kernels_mentioning(text)
    return alive
