"""Parsed flows kept between processes: ``<runs root>/.ductaflow/flows.json``.

Planning a sweep reads the build and every flow it names; parsing them with Jupytext (and
importing it) was a third of a no-op re-run of the example. A flow whose file has not changed
since it was parsed (same inode, size, mtime and ctime, the test git's index uses) is taken
from here instead. Only a flow that parsed cleanly is kept, and only once its file is older
than :data:`RACY_NS`, so that an edit within the file system's timestamp granularity is never
mistaken for no edit. Entries written by another ductaflow version are ignored.

This module is the file's only reader and writer. Schema 1:
``{"schema", "ductaflow", "flows": {"<absolute path>": {"sig", "parameters_index", "notebook"}}}``.
A damaged or missing file only costs a parse.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import nbformat

from ductaflow._version import __version__
from ductaflow.core.flowfile import Flow, read_flow
from ductaflow.store.atomic import atomic_write_json, read_json
from ductaflow.store.layout import FLOW_CACHE

log = logging.getLogger(__name__)

FLOW_CACHE_SCHEMA = 1
#: A file changed this recently (mtime or ctime) is parsed every time: its stamp cannot yet
#: tell one edit from the next (file systems that keep whole seconds).
RACY_NS = 2_000_000_000


def _sig(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class FlowCache:
    """The parsed flows of one runs root: :meth:`read` parses only what changed, :meth:`save`
    keeps what was parsed for the next process."""

    def __init__(self, runs_root: str | Path) -> None:
        self.path = Path(runs_root) / FLOW_CACHE
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            try:
                doc = read_json(self.path)
            except FileNotFoundError:
                return self._entries
            except (OSError, ValueError) as exc:
                log.debug("flow cache %s unreadable (%s): flows are parsed", self.path, exc)
                return self._entries
            if isinstance(doc, dict) and doc.get("schema") == FLOW_CACHE_SCHEMA and doc.get("ductaflow") == __version__:
                flows = doc.get("flows")
                self._entries = flows if isinstance(flows, dict) else {}
        return self._entries

    def read(self, path: str | Path) -> Flow:
        """The flow at ``path``, as :func:`~ductaflow.core.flowfile.read_flow` would parse it now."""
        key = str(Path(path).resolve())
        sig = _sig(Path(key))
        entry = self._load().get(key)
        if sig is not None and isinstance(entry, dict) and entry.get("sig") == sig:
            try:
                return Flow(
                    path=Path(key),
                    notebook=nbformat.from_dict(entry["notebook"]),
                    parameters_index=entry["parameters_index"],
                    stamp=f"{sig[2]}:{sig[1]}",
                )
            except (KeyError, TypeError, ValueError):
                log.debug("flow cache entry for %s unusable: parsed again", key)
        flow = read_flow(path)
        after = _sig(Path(key))
        if after is not None and after == sig and time.time_ns() - max(after[2], after[3]) > RACY_NS:
            copy = nbformat.from_dict(flow.notebook)  # the caller's notebook may be changed before save()
            self._load()[key] = {"sig": after, "parameters_index": flow.parameters_index, "notebook": copy}
            self._dirty = True
        return flow

    def save(self) -> None:
        """Keep the flows parsed since this cache was opened (entries of deleted files dropped);
        a runs root that cannot be written to only costs the next process a parse."""
        if not self._dirty or self._entries is None:
            return
        flows = {k: v for k, v in self._entries.items() if os.path.exists(k)}
        try:
            atomic_write_json(self.path, {"schema": FLOW_CACHE_SCHEMA, "ductaflow": __version__, "flows": flows})
        except OSError as exc:
            log.debug("flow cache %s not written: %s", self.path, exc)
        self._dirty = False
