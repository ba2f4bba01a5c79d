"""Instance directories: safe names, artifact file names, atomic writes, stale clean-up."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ductaflow.errors import InvalidName, UnsafePath

log = logging.getLogger(__name__)

#: Names are 1-128 characters from this set and start with a letter or digit.
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")
SAFE_NAME_DOC = "1-128 characters from A-Z a-z 0-9 . _ = + -, starting with a letter or digit"
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
#: The runs root's own folder (ledger, conductor state): marks a directory as a runs root.
RUNS_MARKER = ".ductaflow"

#: JSON longer than this is written without indentation (the indenting encoder is pure Python).
_INDENT_LIMIT = 1_000_000

ARTIFACT_SUFFIXES = (
    ".ipynb",
    ".html",
    "_execution_output.txt",
    "_config.json",
    "_status.json",
)


def validate_name(name: object, what: str = "instance name") -> str:
    """Return ``name`` if it is a safe single directory name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if name != name.strip() or not name:
        raise InvalidName(f"{what} {name!r} is empty or has surrounding whitespace")
    if "/" in name or "\\" in name or os.sep in name or name.startswith(".."):
        raise InvalidName(f"{what} {name!r} must be a single directory name ({SAFE_NAME_DOC})")
    if ".." in name:
        raise InvalidName(f"{what} {name!r} must not contain '..'")
    if not SAFE_NAME_RE.match(name):
        raise InvalidName(f"{what} {name!r} is not allowed: use {SAFE_NAME_DOC}")
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise InvalidName(f"{what} {name!r} is a reserved device name on Windows")
    if name.endswith("."):
        raise InvalidName(f"{what} {name!r} ends with '.', which Windows drops (clashing with {name.rstrip('.')!r})")
    return name


def check_component(name: object, what: str = "name") -> str:
    """``name`` if it is usable as one path component (any characters but ``/``, ``\\`` and NUL).

    For flow and build names, which come from file names and may hold spaces and accents;
    instance names must pass the stricter :func:`validate_name`.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InvalidName(f"{what} {name!r} is not a single file name")
    return name


def _runs_roots_above(path: Path) -> list[Path]:
    """Ancestors of ``path`` that hold a runs root's ``.ductaflow`` folder, nearest first."""
    return [p for p in path.parents if (p / RUNS_MARKER).is_dir()]


def contained_dir(path: str | Path, runs_roots: Iterable[str | Path | None] = ()) -> Path:
    """``path`` resolved, refusing one that sits in a runs root but leads out of it by a symlink.

    A runs root is one of ``runs_roots`` or any ancestor holding ``.ductaflow``. A directory
    lexically inside one must resolve inside it (the root itself may be a symlink, say to a
    bigger disk): ductaflow deletes and writes in instance directories, and a link planted
    there must not make it delete or overwrite files elsewhere. Paths outside every runs
    root (an ``--output-dir`` the user chose) are taken as given.
    """
    lexical = Path(os.path.abspath(path))
    resolved = lexical.resolve()
    roots = [Path(os.path.abspath(r)) for r in runs_roots if r] + _runs_roots_above(lexical)
    for root in roots:
        if root != lexical and root not in lexical.parents:
            continue
        real_root = root.resolve()
        if resolved != real_root and real_root not in resolved.parents:
            raise UnsafePath(
                f"{lexical} is inside the runs root {root} but leads to {resolved} through a symlink; "
                "ductaflow does not write or delete outside the runs root (remove the link)"
            )
    return resolved


def artifact_paths(execution_dir: Path, flow: str) -> dict[str, Path]:
    """The files ductaflow owns for one flow in one instance directory."""
    return {
        "notebook": execution_dir / f"{flow}.ipynb",
        "html": execution_dir / f"{flow}.html",
        "log": execution_dir / f"{flow}_execution_output.txt",
        "config": execution_dir / f"{flow}_config.json",
        "status": execution_dir / f"{flow}_status.json",
    }


def clear_artifacts(execution_dir: Path, flow: str) -> None:
    """Remove an earlier run's artifacts so none of them survives beside the new ones.

    The status record goes first: a crash part-way leaves no record claiming completion.
    Only names inside ``execution_dir`` are removed: a symlink among them is removed itself
    (its target is never touched), and nothing is removed through a symlinked sub-folder.
    """
    paths = artifact_paths(execution_dir, flow)
    home = execution_dir.resolve()
    # Also the results the earlier run recorded (record / record_table) and a build's list of
    # the steps its last run reached (this run writes its own).
    extra = [execution_dir / "runs" / ".steps.json", execution_dir / f"{flow}_metrics.parquet"]
    victims = [paths[k] for k in ("status", "notebook", "html", "log", "config")]
    for path in [*victims, *extra, *execution_dir.glob(f"{flow}_table_*.parquet")]:
        parent = path.parent.resolve()
        if parent != home and home not in parent.parents:
            log.warning("not removing %s: its folder leads out of %s", path, execution_dir)
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _umask() -> int:
    """The process umask (read by setting it, so set it straight back; once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a report or record is meant to be read by
        # whoever may read the folder, as any file this user creates (0666 minus the umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as UTF-8 JSON: indented, unless it is large (then compact, 10x faster)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    if len(text) < _INDENT_LIMIT:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))
