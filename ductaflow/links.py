"""Which files the report may link to: relative URLs that never leave the runs root.

A link is dropped, not written, when its path is not lexically inside the root, has
``.``/``..`` parts, is not an existing file, or resolves outside the root through a
symlink: a dropped link is better than one that escapes or dangles. Strings, not pathlib:
a report checks ~20 links per instance, and pathlib's parsing was most of its cost.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote


def href(runs_root: Path, path: Path, anchor: str = "") -> str | None:
    """A URL for ``path`` relative to the report in ``runs_root``, or None (see above)."""
    full, root = os.fspath(path), os.fspath(runs_root).rstrip(os.sep) + os.sep
    if not full.startswith(root):
        return None
    parts = full[len(root):].split(os.sep)
    if any(p in ("", ".", "..") or "\\" in p for p in parts):
        return None
    if not _resolves_inside(root, full):
        return None
    url = "/".join(quote(p, safe="") for p in parts)
    return f"{url}#{quote(anchor, safe='')}" if anchor else url


def _resolves_inside(root: str, path: str) -> bool:
    """True when ``path`` is a file that, symlinks followed, is still below ``root``.

    Folders' real paths are cached for one report; only a file that is itself a symlink
    is resolved on its own.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        return os.path.isfile(real) and _within(real, _real(root))
    return stat.S_ISREG(st.st_mode) and _within(_real(os.path.dirname(path)), _real(root))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=16384)
def _real(folder: str) -> str:
    """A folder's real path, cached until :func:`forget_folders`: built
    from its parent's, so each folder costs one lstat instead of one per path component."""
    parent, name = os.path.split(folder)
    if not name or parent == folder or name in (".", ".."):
        return os.path.realpath(folder)
    candidate = os.path.join(_real(parent), name)
    try:
        if not stat.S_ISLNK(os.lstat(candidate).st_mode):
            return candidate
    except OSError:
        pass
    return os.path.realpath(candidate)


def inside(runs_root: Path, rel: Any) -> Path | None:
    """``runs_root / rel`` for a state file's relative ``dir``, or None if it would escape."""
    if not isinstance(rel, str) or not rel.strip():
        return None
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or ":" in rel or any(p in ("", ".", "..") for p in pure.parts):
        return None
    return runs_root.joinpath(*pure.parts)


def forget_folders() -> None:
    """Drop the cached real paths (a new report: symlinks may have changed)."""
    _real.cache_clear()
