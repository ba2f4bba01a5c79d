"""Instance roll-ups kept on disk between ``ductaflow status`` calls (``.ductaflow/status_cache.json``).

Each process that lists a runs root would otherwise read every status record again: 40,000
files at 10,000 instances. An instance's row is kept with the paths its reading checked
(relative to the instance, shared by all instances laid out alike) and one hash of their
stat signatures (inode, size, mtime, ctime); a row is used again only while that hash is
unchanged, and never from a reading whose files were too young to trust (see
:mod:`ductaflow.report.instances`). The file is only a cache: unreadable, foreign or stale, it is
ignored; it is written only where ``.ductaflow`` already exists, never to make a folder a
runs root.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from ductaflow.report.instances import Reading, Snapshot, digest
from ductaflow.store.atomic import atomic_write_text
from ductaflow.store.layout import STATUS_CACHE

log = logging.getLogger(__name__)

#: Bumped when the rows kept change shape; the Python version is part of the key because the
#: signature hash is Python's own tuple hash.
_SCHEMA = [2, sys.version_info[:2]]  # 2: rows carry the build record's sweep


#: The columns of :func:`summary_row`, in the order of :meth:`Snapshot.rollup`.
STATUS_FIELDS = ("status", "state", "duration", "finished", "worst_flow", "error", "sweep")


def summary_row(snap: Snapshot) -> dict[str, Any]:
    """The roll-up of one instance as the columns ``status`` shows (before the lock check); the
    same from a settled snapshot (see :mod:`ductaflow.report.instances`) as from one just read."""
    return dict(zip(STATUS_FIELDS, snap.rollup(), strict=False))


class SummaryCache:
    """Rows of ``runs_root``'s instances from the last listing, valid while their files are unchanged."""

    def __init__(self, runs_root: Path, load: bool = True) -> None:
        self.path = runs_root / STATUS_CACHE
        self._layouts: list[tuple[str, ...]] = []
        self._old: dict[str, list[Any]] = {}
        self._new: dict[str, list[Any]] = {}
        self._index: dict[tuple[str, ...], int] = {}
        self._changed = False
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8")) if load else {}
            if doc.get("schema") == json.loads(json.dumps(_SCHEMA)):
                self._layouts = [tuple(x) for x in doc["layouts"]]
                self._old = dict(doc["rows"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            self._layouts, self._old = [], {}
        self._index = {x: i for i, x in enumerate(self._layouts)}

    def get(self, rel: str, instance_dir: str) -> dict[str, Any] | None:
        """The kept row of ``rel`` when none of the files it came from changed, else None."""
        hit = self._old.get(rel)
        try:
            if hit is not None and digest(instance_dir, self._layouts[hit[0]]) == hit[1]:
                self._new[rel] = hit
                return dict(hit[2])
        except (IndexError, TypeError):
            pass
        return None

    def put(self, rel: str, instance_dir: str, reading: Reading, row: dict[str, Any]) -> None:
        """Keep ``row`` as read in ``reading`` (not when that reading was too young to trust, nor
        while it holds a running record, whose process may die without a file changing)."""
        if reading.racy:
            return
        self._changed = True
        layout = reading.layout
        if layout not in self._index:
            self._index[layout] = len(self._layouts)
            self._layouts.append(layout)
        self._new[rel] = [self._index[layout], reading.digest, row]

    def save(self, keep_unseen: bool = False) -> None:
        """Write the rows of this listing, when anything changed and the runs root has ``.ductaflow``.

        ``keep_unseen``: rows of the file that this listing did not look at stay (a report that
        read only some instances); they are checked when next used, like every row."""
        rows = {**self._old, **self._new} if keep_unseen else self._new
        if not self._changed and rows.keys() == self._old.keys():
            return
        if not self.path.parent.is_dir():
            return
        used = sorted({v[0] for v in rows.values()})
        renumber = {old: new for new, old in enumerate(used)}
        doc = {
            "schema": _SCHEMA,
            "layouts": [self._layouts[i] for i in used],
            "rows": {k: [renumber[v[0]], v[1], v[2]] for k, v in rows.items()},
        }
        try:
            atomic_write_text(self.path, json.dumps(doc, separators=(",", ":")))
        except OSError as exc:  # a read-only runs root: no cache, same answers
            log.debug("could not keep the status cache %s: %s", self.path, exc)
