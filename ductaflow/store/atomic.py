"""Atomic file writes: readers see the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: JSON longer than this is written without indentation (the indenting encoder is pure Python).
_INDENT_LIMIT = 1_000_000


def _umask() -> int:
    """The process umask (read by setting it, so set it straight back; once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as UTF-8 JSON: indented, unless it is large (then compact, 10x faster)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    if len(text) < _INDENT_LIMIT:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (Parquet, DuckDB);
    it replaces ``path`` when the block ends cleanly and is removed when it does not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); a report or record is meant to be read by
        # whoever may read the folder, as any file this user creates (0666 minus the umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
