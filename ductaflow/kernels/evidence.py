"""What a failed or stopped cell leaves in the executed notebook, as papermill leaves it for a
cell that raised: an ``error`` output, the cell's papermill status ``failed`` (and the
notebook's ``exception``), and papermill's banner (a note at the top, an anchor before the cell).

papermill does this only for a cell whose kernel sent an error output. Two cases it misses:

- the kernel replied with an error but sent no error output (IPython's ``UsageError``, e.g.
  an unknown ``%magic``, is printed on stderr): :func:`error_output_from_reply`, nbclient's
  ``on_cell_error`` hook, turns the reply's ``ename``/``evalue`` into the missing output;
- the run stopped in the middle of a cell (a timeout, Ctrl-C, SIGTERM, a stop from another
  thread, a dead kernel): :func:`record_stop` marks the cell that was running, after what it
  printed, and :func:`add_banner` writes papermill's banner once the notebook is complete.
"""

from __future__ import annotations

import logging
from typing import Any

import nbformat

log = logging.getLogger(__name__)


def error_output_from_reply(cell: Any, cell_index: int, execute_reply: Any) -> None:
    """nbclient's ``on_cell_error`` hook: give a cell whose error reply came without an error
    output one built from the reply, so that papermill reports the kernel's ``ename``/``evalue``."""
    content = (execute_reply or {}).get("content") or {}
    if not content.get("ename") or any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
        return
    cell.setdefault("outputs", []).append(nbformat.v4.new_output(
        "error", ename=str(content["ename"]), evalue=str(content.get("evalue") or ""),
        traceback=[str(line) for line in content.get("traceback") or []],
    ))  # fmt: skip


def describe_stop(exc: BaseException | None, handle: Any) -> tuple[str, str]:
    """``(ename, evalue)`` for a run stopped mid-cell by ``exc`` (None: stopped by ductaflow
    through ``handle``, whose kernel then answered with the interrupt)."""
    expired = bool(getattr(handle, "expired", False))
    if expired or type(exc).__name__ == "CellTimeoutError":
        limit = getattr(handle, "timeout", None)
        return "Timeout", f"flow exceeded its timeout of {limit}s" if limit else "the cell timed out"
    if getattr(handle, "stopped", False):
        return "KeyboardInterrupt", "interrupted: the run was stopped"
    if exc is None:
        return "KeyboardInterrupt", "interrupted"
    if isinstance(exc, KeyboardInterrupt):
        return type(exc).__name__, str(exc) or "interrupted"
    first = str(exc).strip().splitlines()
    return type(exc).__name__, first[0] if first else type(exc).__name__


def record_stop(nb_man: Any, exc: BaseException | None, handle: Any) -> None:
    """Mark the cell that was running when the run stopped: an error output naming the stop,
    after the outputs it had sent, and papermill's failed status. A cell that already holds
    the interrupt ductaflow sent to stop it gets the stop's name in front of that; a cell that
    raised an error of its own keeps it."""
    cells = nb_man.nb.cells
    started = [i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started or cells[started[-1]].get("cell_type") != "code":
        return
    index = started[-1]
    cell = cells[index]
    ename, evalue = describe_stop(exc, handle)
    output = nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])
    errors = [i for i, o in enumerate(cell.outputs) if o.get("output_type") == "error"]
    first = cell.outputs[errors[0]].get("ename") if errors else None
    if first is None:
        cell.outputs.append(output)
    elif first == "KeyboardInterrupt" and first != ename:  # the interrupt ductaflow sent to stop it
        cell.outputs.insert(errors[0], output)
    nb_man.cell_exception(cell, cell_index=index, exception=exc)


def add_banner(nb: Any, output_path: str | None) -> None:
    """papermill's banner for the failed cell of ``nb`` (none when no cell failed), written to
    ``output_path`` as papermill writes it after a cell raised."""
    # deferred: papermill.execute imports the engines, and this module is loaded by one
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors  # deferred with the line above

    try:
        raise_for_execution_errors(nb, output_path)
    except PapermillExecutionError:
        pass  # the banner is in: the caller raises the stop itself
    except Exception as exc:  # noqa: BLE001 - the evidence is a best effort; the stop must propagate
        log.warning("could not write the error banner into %s: %s", output_path, exc)
