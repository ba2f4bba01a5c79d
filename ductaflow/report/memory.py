"""What the last report of a runs root read and built, kept for the next one in this process.

The conductor rewrites the report while it runs: instances whose files have not changed are not
read again (:mod:`ductaflow.report.instances`), their rows are reused, and rows an earlier
process kept (:mod:`ductaflow.report.row_store`) are taken while nothing they came from changed.

Between reports it keeps the rows and what validates them (their files' layout and digest),
not the records they were built from: every object kept is walked by each full collection
of Python's garbage collector, which at 10,000 scenarios took as long as the rest of a rewrite.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ductaflow.report.charts import results_view
from ductaflow.report.instances import RACY_NS, InstanceCache, Sig, Snapshot, digest, signature
from ductaflow.report.lineage import search_tree
from ductaflow.report.links import inside_text
from ductaflow.report.row_store import RowStore, entry_key
from ductaflow.report.rows import live, scenario_row
from ductaflow.report.spec import ReportSpec
from ductaflow.store.sweep_state import journal_path, read_state

_row_tokens = itertools.count(1)
Check = int | tuple[tuple[str, ...], int] | None


class Memory:
    """What the last report of one runs root read and built, reused where nothing changed."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.instances = InstanceCache()
        # state file -> (signatures of its snapshot and journal, the document they make)
        self.states: dict[str, tuple[tuple[Sig, Sig], Any]] = {}
        # (section, index) -> (entry, columns, what validates it, row): its files' (layout, digest);
        # the snapshot's token when its records warned; None without an instance dir
        self.rows: dict[tuple[str, int], tuple[dict[str, Any], tuple[str, ...], Check, dict[str, Any]]] = {}
        self.results: dict[str, tuple[tuple[int, ...], Any]] = {}  # section -> (its rows' tokens, view)
        self.trees: dict[str, tuple[tuple[Any, ...], Any]] = {}  # section -> (its rows' tokens, search tree)
        self.dirs: dict[str, str | None] = {}  # a state file's relative dir -> instance dir or None
        self.used: set[Any] = set()
        self.shared = -1  # instances.reads when the status cache was last written
        self.store: RowStore | None = None  # rows kept between processes, read when first needed
        self.changed = True  # rows built, taken or forgotten since they were last kept
        self.kept_for: dict[str, str] | None = None  # the sections they were last kept for

    def state(self, path: Path) -> Any:
        """A state file's document (its journal replayed), read again only when the signature
        of the snapshot or of its journal changed."""
        key = str(path)
        self.used.add(key)
        sigs = (signature(key), signature(str(journal_path(path))))
        hit = self.states.get(key)
        if hit is not None and sigs[0] is not None and hit[0] == sigs:
            return hit[1]
        doc = read_state(path)
        settled = time.time_ns() - RACY_NS
        if sigs[0] is not None and all(s is None or max(s[2], s[3]) < settled for s in sigs):
            self.states[key] = (sigs, doc)
        return doc

    def instance(self, rel: Any, build: str, brief: bool = False) -> Snapshot | None:
        """The snapshot of the instance a state file names (None when the name would escape);
        with ``brief``, perhaps a settled one (:meth:`InstanceCache.peek`)."""
        folder = self._folder(rel)
        if folder is None:
            return None
        return self.instances.peek(folder, build) if brief else self.instances.read(folder, build)

    def row(
        self, skey: str, columns: list[str], entry: dict[str, Any], index: int, build: str, discovered: bool = False
    ) -> tuple[dict[str, Any], Snapshot | None]:
        """The row of one entry: the last report's when the entry and its instance are unchanged,
        else one kept by an earlier process (:mod:`ductaflow.report.row_store`), else built anew
        (with the snapshot it was built from, or whose warnings it shows)."""
        key = (skey, index)
        self.used.add(key)
        cols = tuple(columns)
        folder = self._folder(entry.get("dir"))
        hit = self.rows.get(key)
        if hit is None:
            kept = self._kept(skey, entry, index, build, cols, discovered, folder)
            if kept is not None:
                return kept, None
        same = hit is not None and hit[1] == cols and (hit[0] is entry or hit[0] == entry)
        if same and hit is not None and isinstance(hit[2], tuple) and folder is not None:
            layout, dig = hit[2]  # valid while the files it was built from are unchanged
            if digest(folder, layout) == dig:
                self.instances.keep(folder, build, dig)
                return hit[3], None
        snap = self.instances.read(folder, build) if folder is not None else None
        if same and hit is not None and hit[2] == (snap.token if snap is not None else None):
            return hit[3], snap  # no instance, or one whose records warned: checked by its snapshot
        return self._build(key, columns, entry, snap, folder, build, discovered), snap

    def _build(
        self, key: tuple[str, int], columns: list[str], entry: dict[str, Any], snap: Snapshot | None,
        folder: str | None, build: str, discovered: bool,
    ) -> dict[str, Any]:
        """A row built anew from ``snap``, kept for the next report unless it may go stale without
        a file changing (a running record, files too young to trust)."""
        row = scenario_row(Path(self.root), columns, entry, key[1], snap, discovered)
        row["_token"] = next(_row_tokens)
        cols = tuple(columns)
        reading = self.instances.reading(folder, build) if folder is not None else None
        self.changed = True
        if live(row) or (reading is not None and reading.racy):  # built anew each time
            self.rows.pop(key, None)
            return row
        check: Check = None
        if reading is not None and snap is not None:  # what its details are made from
            row["_ekey"] = entry_key(entry, cols, discovered)
            row["_ckey"] = f"{reading.digest}:{row['_ekey']}"
            # checked by its files' signatures; one whose records warned by its snapshot, which
            # is kept whole to show the warnings again
            check = snap.token if snap.warnings else (reading.layout, reading.digest)
        self.rows[key] = (entry, cols, check, row)
        return row

    def _folder(self, rel: Any) -> str | None:
        """The instance dir a state file names (None when the name would escape the runs root)."""
        if not isinstance(rel, str):
            return None
        if rel not in self.dirs:
            self.dirs[rel] = inside_text(self.root, rel)
        return self.dirs[rel]

    def _kept(
        self, skey: str, entry: dict[str, Any], index: int, build: str, cols: tuple[str, ...], discovered: bool,
        folder: str | None,
    ) -> dict[str, Any] | None:
        """The row an earlier process kept for this entry, when nothing it was built from changed."""
        if folder is None:
            return None
        if self.store is None:
            self.store = RowStore(self.root)
        ekey = entry_key(entry, cols, discovered)
        got = self.store.get(f"{skey.split(':', 1)[0]}:{build}:{entry.get('dir')}", folder, ekey)
        if got is None:
            return None
        row, layout, dig = got
        row["index"], row["_token"], row["_ekey"], row["_ckey"] = index, next(_row_tokens), ekey, f"{dig}:{ekey}"
        self.rows[(skey, index)] = (entry, cols, (layout, dig), row)
        self.changed = True
        return row

    def keep_rows(self, build_of: dict[str, str]) -> None:
        """Keep this report's settled rows for the next process (``build_of``: section key -> build),
        unless they are the rows kept last time."""
        if not self.changed and build_of == self.kept_for:
            return
        if self.store is None:
            self.store = RowStore(self.root)
        out: dict[str, tuple[tuple[str, ...], int, str, dict[str, Any]]] = {}
        for (skey, _), (entry, cols, check, row) in self.rows.items():
            build = build_of.get(skey)
            if build is None or not isinstance(check, tuple):  # no instance, or records that warned
                continue
            key = f"{skey.split(':', 1)[0]}:{build}:{entry.get('dir')}"
            out[key] = (check[0], check[1], row.get("_ekey") or entry_key(entry, cols, skey.startswith("found:")), row)
        self.store.save(out)
        self.changed, self.kept_for = False, dict(build_of)

    def section_results(self, skey: str, rows: list[dict[str, Any]], spec: ReportSpec) -> Any:
        """The results table and charts of a section, built again only when one of its rows (or
        the report settings) changed."""
        self.used.add(skey)
        return _cached(self.results, skey, rows, spec, results_view)

    def section_tree(self, skey: str, rows: list[dict[str, Any]], spec: ReportSpec) -> Any:
        """The search tree of a section (None without lineage: one pass over its rows), built again
        only when one of its rows (or the report settings) changed."""
        if not any(r.get("parent") for r in rows):
            return None
        return _cached(self.trees, skey, rows, spec, search_tree)

    def sweep(self) -> None:
        """Forget what this report did not use (deleted instances, rows, state files)."""
        self.instances.sweep()
        stores: tuple[dict[Any, Any], ...] = (self.rows, self.results, self.trees, self.states)
        for store in stores:
            for key in [k for k in store if k not in self.used]:
                del store[key]
                self.changed = self.changed or store is self.rows
        if len(self.dirs) > 4 * max(len(self.rows), 1024):
            self.dirs.clear()
        self.used = set()


REPORT_LOCK = threading.Lock()
_MEMORY: list[Memory] = []


def memory_of(root: Path) -> Memory:
    """The memory of ``root``'s reports (only the last runs root reported on is remembered)."""
    if not _MEMORY or _MEMORY[0].root != str(root):
        _MEMORY[:] = [Memory(str(root))]
    return _MEMORY[0]


# ---------------------------------------------------------------- sections


def _cached(
    store: dict[str, Any], skey: str, rows: list[dict[str, Any]], spec: ReportSpec,
    build: Callable[[list[dict[str, Any]], ReportSpec], Any],
) -> Any:  # fmt: skip
    """``build(rows, spec)``, kept in ``store`` under ``skey`` until a row's token or the spec changes."""
    tokens = (spec, *(r["_token"] for r in rows))
    hit = store.get(skey)
    if hit is not None and hit[0] == tokens:
        return hit[1]
    value = build(rows, spec)
    store[skey] = (tokens, value)
    return value
