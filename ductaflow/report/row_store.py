"""Report rows kept between processes (``.ductaflow/report_rows.json``): a fresh ``ductaflow report``
over 10,000 unchanged instances does not read their 40,000 records again.

A row is kept with what it was built from: the layout and digest of its instance's files (the
stat signatures :mod:`ductaflow.report.instances` checks; see :mod:`ductaflow.report.status_cache`
for the same idea behind ``ductaflow status``) and a fingerprint of its state-file entry and
columns. It is used again only while both are unchanged; rows read from files too young to
trust, rows with a running record and rows whose records could not all be read are never kept.
Written only with a report that is not live. The file is only a cache: unreadable, foreign or
from another version of ductaflow or Python, it is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ductaflow._version import __version__
from ductaflow.report.instances import digest
from ductaflow.report.rows import EMPTY
from ductaflow.store.atomic import atomic_write_text
from ductaflow.store.layout import RUNS_MARKER

log = logging.getLogger(__name__)

ROW_STORE = Path(RUNS_MARKER) / "report_rows.json"
#: Bumped when rows change shape (2: lineage and attempts); ductaflow's and Python's versions are part of the key (the
#: digest is Python's own tuple hash, the row shape is this version's).
_SCHEMA = [2, __version__, list(sys.version_info[:2])]


def entry_key(entry: dict[str, Any], columns: tuple[str, ...], discovered: bool) -> str:
    """A fingerprint of what a row is built from besides its files: its state-file entry and columns."""
    text = json.dumps([entry, columns, discovered], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


_LISTS = ("warnings", "notes", "links", "outputs")  # a record's lists


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The row as kept: no rendered fragments, tokens or derived lookups."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "flows"}


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    """A kept row as the report uses it: its flows looked up by instance again, its empty lists
    the one all rows share (:data:`ductaflow.report.rows.EMPTY`)."""
    for rec in row["records"]:
        for k in _LISTS:
            if rec.get(k) == []:
                rec[k] = EMPTY
    for k in ("cells", "records"):
        if row.get(k) == []:
            row[k] = EMPTY
    row["flows"] = {r["instance"]: r for r in row["records"] if r["role"] == "flow"}
    return row


class RowStore:
    """The kept rows of one runs root: ``get`` those still valid, ``save`` a report's rows."""

    def __init__(self, runs_root: str | Path) -> None:
        self.path = Path(runs_root) / ROW_STORE
        self.layouts: list[tuple[str, ...]] = []
        self.old: dict[str, Sequence[Any]] = {}  # key -> [layout, digest, entry key(, row until handed over)]
        self.changed = False
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("schema") == json.loads(json.dumps(_SCHEMA)):
                self.layouts = [tuple(x) for x in doc["layouts"]]
                self.old = dict(doc["rows"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.debug("ignoring the report's row store %s: %s", self.path, exc)
            self.layouts, self.old = [], {}

    def get(self, key: str, instance_dir: str, ekey: str) -> tuple[dict[str, Any], tuple[str, ...], int] | None:
        """The kept row of ``key`` with its layout and digest, when neither its files nor its entry changed.
        The row is handed over: the store keeps only what validates it (the report holds the row)."""
        hit = self.old.get(key)
        try:
            if hit is None or hit[2] != ekey or len(hit) < 4:
                return None
            layout = self.layouts[hit[0]]
            if digest(instance_dir, layout) != hit[1]:
                return None
            row = _revive(dict(hit[3]))
        except (IndexError, TypeError, ValueError, KeyError):
            return None
        self.old[key] = (hit[0], hit[1], hit[2])  # atomic: untracked by the garbage collector
        return row, layout, hit[1]

    def save(self, rows: dict[str, tuple[tuple[str, ...], int, str, dict[str, Any]]]) -> None:
        """Keep ``rows`` (key -> layout, digest, entry key, row): the rows of the report just written,
        if the runs root has ``.ductaflow`` and anything differs from what is kept. Only what
        validates each row stays in memory: the report holds the rows."""
        layouts: dict[tuple[str, ...], int] = {}
        kept: dict[str, Sequence[Any]] = {}
        for key, (layout, dig, ekey, _) in rows.items():
            old = self.old.get(key)
            try:
                same = old is not None and old[1] == dig and old[2] == ekey and self.layouts[old[0]] == layout
            except (IndexError, TypeError):
                same = False
            kept[key] = (layouts.setdefault(layout, len(layouts)), dig, ekey)
            self.changed = self.changed or not same
        if not self.changed and kept.keys() == self.old.keys():
            self.layouts, self.old = list(layouts), kept
            return
        if not self.path.parent.is_dir():
            return
        out = {key: [*k, _plain(rows[key][3])] for key, k in kept.items()}
        doc = {"schema": _SCHEMA, "layouts": list(layouts), "rows": out}
        try:
            atomic_write_text(self.path, json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
        except (OSError, TypeError, ValueError) as exc:  # a read-only runs root, a value JSON cannot hold
            log.debug("could not keep the report's rows in %s: %s", self.path, exc)
            return
        self.layouts, self.old, self.changed = list(layouts), kept, False
