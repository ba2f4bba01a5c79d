"""The conductor state file: the one reader and writer of its format (schema 2).

A conduct() call keeps two files in ``<runs root>/.ductaflow/conductor/``:

- ``<build>.json``, the snapshot: the whole document (build, state, times, one row per
  scenario), replaced atomically; its ``journal`` field names the journal that goes with it.
- ``<build>.journal.jsonl``, the journal: one JSON line per row change since that snapshot,
  ``{"j": <journal id>, "at": <time>, "row": {...the row...}}``, appended.

Each row also carries ``sweep``, the id of the conduct() call that last ran it; rows of
earlier sweeps whose instances the new call does not name are carried on
(:func:`earlier_rows`), so the state (and the report) holds every scenario of the build.

Recording a finished scenario then costs one appended line, not a rewrite of every row.
Every ``rows // ROWS_PER_LINE``-th change writes a new snapshot instead (with a new id; the
old journal is removed): a snapshot costs its rows of JSON, so each change costs at most
:data:`ROWS_PER_LINE` rows of JSON on average whatever the table's size, and the journal a
reader replays stays under one line per that many rows. A table of fewer than twice that
many rows writes its snapshot on every change, so there the snapshot alone is current, as
it was before the journal. The conductor writes a snapshot at the end, too.

A reader replays the journal's lines that carry the snapshot's id: a journal of an older
snapshot (the writer died between writing a snapshot and removing the old journal) or of
another writer is ignored, and a line counts only once its newline is written, so the torn
last line of a killed writer is ignored too.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import STATE_DIR, STATE_JOURNAL_SUFFIX

log = logging.getLogger(__name__)

#: 1: the snapshot alone; 2: the snapshot names a journal (``journal``) replayed over it.
SCHEMA = 2
#: The journal is folded into a new snapshot once it holds one line per this many rows.
ROWS_PER_LINE = 8


def state_path(runs_root: Path, build: str) -> Path:
    """The snapshot of ``build``'s conductor state under ``runs_root``."""
    return runs_root / STATE_DIR / f"{build}.json"


def journal_path(snapshot: Path) -> Path:
    """The journal beside a snapshot (its name must not end in ``.json``: readers glob those)."""
    name = snapshot.name.removesuffix(".json")
    return snapshot.with_name(name + STATE_JOURNAL_SUFFIX)


def lines_per_snapshot(rows: int) -> int:
    """How many journal lines a snapshot of ``rows`` rows waits for (at least one)."""
    return max(1, rows // ROWS_PER_LINE)


class StateWriter:
    """Writes one conductor state: snapshots, and journal lines between them (one process only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = journal_path(path)
        self.journal_id: str | None = None  # None until the first snapshot: changes then snapshot
        self.lines = 0  # lines appended since the last snapshot
        self.rows = 0  # rows in the last snapshot

    def snapshot(self, document: Mapping[str, Any]) -> None:
        """Write ``document`` as the new snapshot, with a new journal id; the old journal goes."""
        journal_id = uuid.uuid4().hex[:16]
        atomic_write_json(self.path, {**document, "schema": SCHEMA, "journal": journal_id})
        # Everything the old journal said is in the snapshot now. Dying before this unlink
        # leaves lines of another id, which readers ignore.
        self.journal.unlink(missing_ok=True)
        self.journal_id, self.lines = journal_id, 0
        rows = document.get("scenarios")
        self.rows = len(rows) if isinstance(rows, list) else 0

    def change(self, row: Mapping[str, Any], at: str, document: Callable[[], Mapping[str, Any]]) -> bool:
        """Record one row as it now is: a journal line, or a new snapshot (``document()``) when
        one is due. Returns True when a snapshot was written."""
        if self.journal_id is None or self.lines + 1 >= lines_per_snapshot(self.rows):
            self.snapshot(document())
            return True
        line = json.dumps({"j": self.journal_id, "at": at, "row": dict(row)}, ensure_ascii=False, allow_nan=False)
        _append(self.journal, (line + "\n").encode("utf-8"))
        self.lines += 1
        return False


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` in one write where the system allows (O_APPEND)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def read_state(path: Path) -> Any:
    """The document of the snapshot at ``path`` with its journal replayed.

    Raises OSError when the snapshot cannot be read and ValueError when it is not JSON; a
    document that is not a schema-2 state (an older one, or not a state at all) comes back
    as it is, for the caller to judge.
    """
    try:  # the journal first: a snapshot written meanwhile has a new id, and then the lines are moot
        journal = journal_path(path).read_bytes()
    except OSError:
        journal = b""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return replay(doc, journal)


def replay(doc: Any, journal: bytes) -> Any:
    """``doc`` with the complete lines of ``journal`` that carry its journal id applied, in order."""
    if not (isinstance(doc, dict) and doc.get("schema") == SCHEMA and isinstance(doc.get("journal"), str)):
        return doc
    scenarios = doc.get("scenarios")
    if not isinstance(scenarios, list) or not journal:
        return doc
    journal_id = doc["journal"]
    scenarios = list(scenarios)
    index = {row.get("instance"): i for i, row in enumerate(scenarios) if isinstance(row, dict)}
    updated = doc.get("updated")
    complete = journal[: journal.rfind(b"\n") + 1]  # after the last newline: a line still being written
    for raw in complete.splitlines():
        entry = _entry(raw, journal_id)
        if entry is None:
            continue
        row = entry["row"]
        at = index.get(row.get("instance"))
        if at is None:
            continue  # a row the snapshot does not have: nothing to update
        scenarios[at] = {**scenarios[at], **row}
        if isinstance(entry.get("at"), str):
            updated = entry["at"]
    return {**doc, "scenarios": scenarios, "updated": updated}


def _entry(raw: bytes, journal_id: str) -> dict[str, Any] | None:
    """One journal line, or None when it is unreadable or belongs to another snapshot."""
    try:
        entry = json.loads(raw)
    except ValueError:
        log.debug("skipping an unreadable conductor journal line: %.80r", raw)
        return None
    if not isinstance(entry, dict) or entry.get("j") != journal_id or not isinstance(entry.get("row"), dict):
        return None
    return entry


def earlier_rows(path: Path, runs_root: Path, current: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows (and columns) of earlier sweeps in the state file at ``path`` whose instances are
    not in ``current`` and still on disk: kept, so that the report shows every sweep's scenarios."""
    try:
        doc = read_state(path)
    except FileNotFoundError:
        return [], []
    except (OSError, ValueError) as exc:
        log.warning("could not read the earlier conductor state %s (its rows are not carried on): %s", path, exc)
        return [], []
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        return [], []
    skip = set(current)
    rows = []
    for row in doc["scenarios"]:
        if not isinstance(row, dict) or row.get("instance") in skip or not isinstance(row.get("dir"), str):
            continue
        if not (runs_root / row["dir"]).is_dir():
            continue
        if row.get("state") == "pending":  # its conductor ended without starting it
            row = {**row, "state": "cancelled"}
        elif row.get("state") == "running":  # its conductor was killed: the record decides the light
            row = {**row, "state": "done", "status": None}
        rows.append(row)
    columns = [str(c) for c in doc.get("columns") or [] if isinstance(c, str)]
    return rows, columns

