"""What ductaflow asks of a flow's kernel outside the flow's cells: silent execute requests
(``silent=True, store_history=False``: no output, no history, no execution count).

- Before the first cell, :func:`sys_path_code` makes the kernel's ``sys.path`` start with

  1. its working directory (the instance directory),
  2. the flow file's directory (``import helper`` finds ``flows/helper.py``, as
     ``python flows/x.py`` and a notebook opened in ``flows/`` do),
  3. the project root (``import mypkg`` finds ``mypkg/`` there),

  each once (an entry naming the same directory further down is removed). Forked, launched
  and pre-started kernels alike: the engine sends it (after a spare's hand-over, see
  :func:`ductaflow.kernels.prestart.assignment`) in one request.
- After the last cell, :func:`ask_report` sends the report's definition
  (:mod:`ductaflow.core.usage_report`: standard library only, so the kernel imports
  nothing to answer) and one user expression calling it: the project modules the process
  imported and the inputs the flow declared. A kernel that cannot answer within
  :data:`REPORT_TIMEOUT_S` (busy, stopped, dead) or answers with an error (no ductaflow
  importable there) gives ``None``; nothing here raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async

from ductaflow.core.deps import parse_report, report_expression, report_source

log = logging.getLogger(__name__)

#: How long the report may take; a kernel still silent then is interrupted and not waited for.
REPORT_TIMEOUT_S = 3.0
#: How long to wait for the (error) reply of an interrupted report request.
_AFTER_INTERRUPT_S = 1.0
_POLL_S = 0.1
REPORT_KEY = "ductaflow_deps"


def sys_path_code(dirs: Sequence[str]) -> str:
    """Code that makes ``sys.path`` start with the working directory, then ``dirs`` (in order;
    one entry per directory, compared by real path), the rest of it kept in its order."""
    return (
        "def _ductaflow_sys_path(dirs):\n"
        "    import os, sys\n"
        "    head, seen = [], set()\n"
        "    for entry in [os.getcwd(), *dirs]:\n"
        "        if os.path.realpath(entry) not in seen:\n"
        "            head.append(entry)\n"
        "            seen.add(os.path.realpath(entry))\n"
        "    rest = [p for p in sys.path if not (isinstance(p, str) and p and os.path.realpath(p) in seen)]\n"
        "    sys.path[:] = head + rest\n"
        f"_ductaflow_sys_path({[str(d) for d in dirs]!r})\n"
        "del _ductaflow_sys_path\n"
    )


def speaks_python(km: Any) -> bool:
    """Whether the kernel of ``km`` runs Python (its spec's language; unknown counts as Python)."""
    try:
        language = getattr(km.kernel_spec, "language", None)
    except Exception:  # noqa: BLE001 - no spec to read: ductaflow's own kernels are Python
        return True
    return not language or str(language).lower() == "python"


async def reply_within(kc: Any, msg_id: str, timeout: float) -> dict[str, Any] | None:
    """The shell reply to ``msg_id`` within ``timeout`` seconds, else None (also when the
    kernel is gone). Other shell messages are dropped, as nbclient drops them."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg: dict[str, Any] = await ensure_async(kc.shell_channel.get_msg(timeout=min(_POLL_S, left)))
        except Empty:
            if not await ensure_async(kc.is_alive()):
                return None
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return msg
    return None


def report_from_reply(reply: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parsed report in an execute reply, or None when the kernel did not give one."""
    content = (reply or {}).get("content") or {}
    if content.get("status") != "ok":
        return None
    answer = (content.get("user_expressions") or {}).get(REPORT_KEY) or {}
    if not isinstance(answer, Mapping) or answer.get("status") != "ok":
        return None
    return parse_report((answer.get("data") or {}).get("text/plain"))


async def ask_report(km: Any, kc: Any, root: Path) -> dict[str, Any] | None:
    """Ask the kernel, after the flow's last cell, what it used under ``root``; None if it
    cannot say. A kernel that does not answer in time is interrupted (its idle state is
    what the rest of the run expects) and its answer, if any, is not waited for long."""
    try:
        msg_id = kc.execute(
            report_source(), silent=True, store_history=False, allow_stdin=False, stop_on_error=False,
            user_expressions={REPORT_KEY: report_expression(root)},
        )  # fmt: skip
        reply = await reply_within(kc, msg_id, REPORT_TIMEOUT_S)
        if reply is None and await ensure_async(kc.is_alive()):
            log.info("the flow's kernel did not say what it used within %s s; interrupting it", REPORT_TIMEOUT_S)
            await ensure_async(km.interrupt_kernel())
            await reply_within(kc, msg_id, _AFTER_INTERRUPT_S)
            return None
        return report_from_reply(reply)
    except Exception as exc:  # noqa: BLE001 - the report is optional
        log.info("could not ask the flow's kernel what it used: %s", exc)
        return None
