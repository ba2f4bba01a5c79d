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
from collections.abc import Mapping
from pathlib import Path
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


class Folder:
    """The files one folder may link to, from a listing taken once (``{name: kind}``, see
    :data:`FILE`, :data:`LINK`, :data:`DIR`).

    Gives the URLs :func:`href` would give for the same paths, with the folder's part of the
    checks done once instead of once per file, and a subfolder's from its parent's.
    """

    def __init__(
        self,
        runs_root: Path | str,
        folder: str,
        files: Mapping[str, str],
        checked: tuple[str | None, str | None] | None = None,
    ) -> None:
        root = os.fspath(runs_root).rstrip(os.sep) + os.sep
        self.path, self._root, self._files = folder, root, files
        self._prefix: str | None = None  # the folder's URL ("a/b%20c/"), None when it may not be linked
        self._real: str | None = None  # its real path
        if checked is not None:  # a subfolder: its parent did the checks
            self._prefix, self._real = checked
        elif folder.startswith(root):
            parts = folder[len(root):].split(os.sep)
            if not any(p in ("", ".", "..") or "\\" in p for p in parts):
                self._prefix = "".join(_quote(p) + "/" for p in parts)
                self._real = _real(folder)
        self._inside = self._real is not None and _within(self._real, _real(root))

    @property
    def root(self) -> Path:
        """The runs root the report sits in."""
        return Path(self._root)

    def child(self, name: str, files: Mapping[str, str]) -> Folder:
        """The subfolder ``name`` (listed here as a folder or a symlink) with its listing ``files``."""
        kind = self._files.get(name)
        path = self.path + os.sep + name
        if self._prefix is None or self._real is None or kind not in (DIR, LINK) or not _plain(name):
            return Folder(self._root, path, files, (None, None))  # nothing in it may be linked
        real = self._real + os.sep + name if kind == DIR else os.path.realpath(path)
        return Folder(self._root, path, files, (self._prefix + _quote(name) + "/", real))

    def href(self, name: str, anchor: str = "") -> str | None:
        """A URL for ``<folder>/<name>``, or None when it is missing or not kept inside."""
        kind = self._files.get(name)
        if self._prefix is None or kind not in (FILE, LINK) or not _plain(name):
            return None
        if kind == LINK:  # only where it really leads counts
            real = os.path.realpath(os.path.join(self.path, name))
            if not (os.path.isfile(real) and _within(real, _real(self._root))):
                return None
        elif not self._inside:
            return None
        url = self._prefix + _quote(name)
        return f"{url}#{quote(anchor, safe='')}" if anchor else url

    def url(self) -> str | None:
        """The folder's own URL (``a/b%20c/``), or None when it may not be linked."""
        return self._prefix if self._prefix is not None and self._inside else None

    def entries(self) -> Mapping[str, str]:
        """The folder's listing as taken: ``{name: kind}``."""
        return self._files

    def size(self, name: str) -> int | None:
        """The size in bytes of ``<folder>/<name>`` (a symlink followed), or None when unknown."""
        try:
            return os.stat(os.path.join(self.path, name)).st_size
        except (OSError, ValueError):
            return None


#: Kinds of entry in a folder listing: a regular file, a symlink (to anything), a folder.
FILE, LINK, DIR = "f", "l", "d"


def _plain(name: str) -> bool:
    return name not in ("", ".", "..") and "\\" not in name and os.sep not in name


@functools.lru_cache(maxsize=65536)
def _quote(part: str) -> str:
    """One path part, percent-quoted for a URL (names repeat across instances: kept)."""
    return quote(part, safe="")


def inside(runs_root: Path, rel: Any) -> Path | None:
    """``runs_root / rel`` for a state file's relative ``dir``, or None if it would escape."""
    text = inside_text(os.fspath(runs_root), rel)
    return None if text is None else Path(text)


def inside_text(runs_root: str, rel: Any) -> str | None:
    """:func:`inside` as a string: 10,000 state entries a report go through it, and path objects
    cost several times as much as the string work."""
    if not isinstance(rel, str) or not rel.strip() or ":" in rel:
        return None
    text = rel.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]  # as a POSIX path reads them
    if text.startswith("/") or not parts or ".." in parts:
        return None
    return os.path.join(runs_root, *parts)


def forget_folders() -> None:
    """Drop the cached real paths (a new report: symlinks may have changed)."""
    _real.cache_clear()
