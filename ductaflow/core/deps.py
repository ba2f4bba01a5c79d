"""What a run used, recorded while it ran, and whether any of it has changed since.

A run's dependencies are facts gathered at run time, not guesses from its source text:

- ``flow``: a flow file a build ran (however its path was computed), by code hash;
- ``module``: a project-local Python module the flow's process imported (a file under the
  project root, outside ``runs/``, virtual environments and ductaflow itself);
- ``input``: a data file or folder the config names (see :func:`config_inputs`) or the flow
  declared with :func:`inputs`.

Each is kept with its path (relative to the project root when under it), a content digest
and a *stamp* (``mtime_ns:size`` of a file, a digest of the listing of a folder). A later
decision stats the path: the same stamp means unchanged without reading it; a new stamp
means the content is hashed again, so a file that was only touched does not cause a re-run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductaflow.core import usage_report
from ductaflow.core.usage_report import _ductaflow_report

log = logging.getLogger(__name__)

KINDS = ("flow", "module", "input")
#: Config keys whose string values name a file or folder even where it does not exist yet.
PATH_KEY_SUFFIXES = ("_path", "_file", "_dir", "_folder")
_CHUNK = 1 << 20
_MAX_PATH_TEXT = 4096
#: Digests by (path, stamp): a stamp that changes invalidates its entry by itself.
_DIGESTS: dict[tuple[str, str], str] = {}
_DIGESTS_MAX = 100_000


@dataclass(frozen=True)
class Dep:
    """One thing a run used: its kind, where it is, what it held and how it looked on disk."""

    kind: str  # one of KINDS
    path: str  # POSIX, relative to the project root when under it, else absolute
    digest: str  # content hash ("" when the path did not exist)
    stamp: str = ""  # "mtime_ns:size" of a file, a listing digest of a folder

    def to_record(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "digest": self.digest, "stamp": self.stamp}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Dep:
        return cls(str(rec["kind"]), str(rec["path"]), str(rec.get("digest") or ""), str(rec.get("stamp") or ""))

    def where(self, root: Path) -> Path:
        """The dependency's absolute path under ``root``."""
        p = Path(self.path)
        return p if p.is_absolute() else root / p


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX) when it lies under it, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def stamp(path: Path) -> str:
    """How ``path`` looks on disk without reading it: "" when it does not exist."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return ""
    if not path.is_dir():
        return f"{st.st_mtime_ns}:{st.st_size}"
    h = hashlib.sha256()
    for f in _walk(path):
        try:
            fst = f.stat()
        except OSError:
            continue
        h.update(f"{f.relative_to(path).as_posix()}\0{fst.st_mtime_ns}\0{fst.st_size}\n".encode())
    return "dir:" + h.hexdigest()[:32]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_digest(path: Path, kind: str = "input", known_stamp: str | None = None) -> str:
    """What ``path`` holds: the code hash of a flow, the bytes of a file, the files of a
    folder (names and bytes, hidden ones skipped); "" when it does not exist."""
    st = stamp(path) if known_stamp is None else known_stamp
    if not st:
        return ""
    key = (f"{kind}:{path}", st)
    cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    try:
        if kind == "flow":
            from ductaflow.core.flowfile import read_flow  # deferred: reading a flow imports jupytext

            digest = read_flow(path).code_hash()
        elif path.is_dir():
            h = hashlib.sha256()
            for f in _walk(path):
                h.update(f"{f.relative_to(path).as_posix()}\0{_file_digest(f)}\n".encode())
            digest = h.hexdigest()
        else:
            digest = _file_digest(path)
    except Exception as exc:  # noqa: BLE001 - unreadable now: differs from any recorded digest
        return f"unreadable: {exc}"
    if len(_DIGESTS) >= _DIGESTS_MAX:
        _DIGESTS.clear()
    _DIGESTS[key] = digest
    return digest


def snapshot(kind: str, path: Path, root: Path, digest: str | None = None) -> Dep:
    """``path`` as it is now, as a dependency of ``kind`` (``digest`` when already known)."""
    path = Path(os.path.abspath(path))
    st = stamp(path)
    return Dep(kind, rel(path, root), digest if digest is not None else content_digest(path, kind, st), st)


def change(dep: Dep, root: Path) -> str | None:
    """Why ``dep`` is no longer what the run used, or None when it is."""
    path = dep.where(root)
    now = stamp(path)
    if now and now == dep.stamp:
        return None
    if not now:
        return None if not dep.digest else f"{dep.kind} missing: {dep.path}"
    if content_digest(path, dep.kind, now) == dep.digest:
        return None  # touched, not changed
    label = {"flow": "flow code changed", "module": "module changed", "input": "input changed"}.get(dep.kind, "changed")
    return f"{label}: {dep.path}"


def changes(deps: Iterable[Dep], root: Path) -> list[str]:
    """Every recorded dependency that changed, as reasons to re-run (in record order)."""
    return [reason for dep in deps if (reason := change(dep, root)) is not None]


def merge(*groups: Iterable[Dep]) -> tuple[Dep, ...]:
    """One entry per (kind, path), the first seen kept, in a stable order."""
    seen: dict[tuple[str, str], Dep] = {}
    for group in groups:
        for dep in group:
            seen.setdefault((dep.kind, dep.path), dep)
    return tuple(sorted(seen.values(), key=lambda d: (KINDS.index(d.kind) if d.kind in KINDS else 9, d.path)))


def to_records(deps: Iterable[Dep]) -> list[dict[str, str]]:
    return [d.to_record() for d in deps]


def from_records(records: Any) -> tuple[Dep, ...] | None:
    """Deps from a status record's ``deps`` list; None when none were recorded."""
    if not isinstance(records, list):
        return None
    out = []
    for rec in records:
        if isinstance(rec, Mapping) and "kind" in rec and "path" in rec:
            out.append(Dep.from_record(rec))
    return tuple(out)


# -- inputs named by a config ---------------------------------------------------------------


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not str(k).startswith("_"):
                yield from _strings(v, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str) and 0 < len(value) <= _MAX_PATH_TEXT and "\0" not in value and "\n" not in value:
        yield key, value


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def config_inputs(cfg: Mapping[str, Any], root: Path, exec_dir: Path) -> list[Path]:
    """Files and folders ``cfg`` names that exist under the project root.

    A string value counts when it resolves, relative to the instance directory (the
    kernel's working directory) or else to the project root, to an existing path under the
    project root; keys ending ``_path``, ``_file``, ``_dir`` or ``_folder`` are tried first.
    Never counted: the instance's own directory and anything in it (its outputs), a folder
    that contains it, and the project root itself (``_``-prefixed keys are skipped).
    """
    found: dict[Path, None] = {}
    pairs = sorted(_strings(cfg), key=lambda kv: not kv[0].endswith(PATH_KEY_SUFFIXES))
    texts = dict.fromkeys(text for _key, text in pairs)
    bases = (str(exec_dir), str(root))
    for text in texts:  # each distinct string once: a table of 60,000 records repeats most of its values
        for base in bases:
            try:
                full = os.path.abspath(os.path.join(base, os.path.expanduser(text)))
                exists = os.path.exists(full)  # plain os.path: this loop may see 100,000s of strings
            except (OSError, ValueError):
                break
            if not exists:
                continue
            candidate = Path(full)
            if (
                _under(candidate, root) and candidate != root and not _under(candidate, exec_dir)
                and not _under(exec_dir, candidate)
            ):
                found.setdefault(candidate)
            break
    return list(found)


# -- modules a process imported -------------------------------------------------------------


def _in_environment(path: Path, root: Path) -> bool:
    """A file of an installed package or a virtual environment inside the project."""
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return False
        if (parent / "pyvenv.cfg").is_file():
            return True
    return False


def project_modules(
    files: Iterable[str], root: Path, runs_root: Path | None, exclude: Sequence[Path] = ()
) -> list[Path]:
    """The module files in ``files`` that belong to the project: under ``root``, outside the
    runs root, virtual environments and ductaflow's own package, and not in ``exclude``."""
    own = Path(__file__).resolve().parents[1]
    skip = {Path(os.path.abspath(p)) for p in exclude}
    out: list[Path] = []
    for text in files:
        path = Path(os.path.abspath(text))
        if path in skip or not _under(path, root) or _under(path, own) or path.suffix not in (".py", ".pyw"):
            continue
        if (runs_root is not None and _under(path, runs_root)) or _in_environment(path, root):
            continue
        if path.is_file() and path not in out:
            out.append(path)
    return out


# -- what the flow's own process reports ----------------------------------------------------

_DECLARED: list[dict[str, str]] = []


def inputs(*paths: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Declare files or folders this flow reads, so that a change to them re-runs it.

    Call it in the flow before reading them. Relative paths are taken from the working
    directory (the instance directory under ductaflow), else from the project root. Each is
    hashed now, as the run reads it. Returns the resolved paths. Outside a ductaflow run (a
    notebook being debugged) it only resolves them.
    """
    from ductaflow.core.context import RunContext  # deferred: context is only needed here

    ctx = RunContext.inherited()
    root = Path(ctx.project_root) if ctx and ctx.project_root else None
    resolved = []
    for p in paths:
        path = Path(os.path.abspath(os.fspath(p)))
        if not path.exists() and root is not None and not Path(os.fspath(p)).is_absolute():
            path = Path(os.path.abspath(root / os.fspath(p)))
        resolved.append(path)
        if not path.exists():
            log.warning("declared input %s does not exist", path)
        st = stamp(path)
        _DECLARED.append({"path": str(path), "digest": content_digest(path, "input", st), "stamp": st})
    return tuple(resolved)


_ARTIFACTS: list[str] = []


def artifacts(*paths: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Mark files this flow made as worth keeping with its experiment-tracker runs
    (:mod:`ductaflow.trackers`): each tracker logs them as artifacts when the flow ends, beside
    the executed notebook and log. Relative paths are from the working directory (the instance
    directory under ductaflow). Returns the resolved paths; without a tracker it does nothing else."""
    resolved = tuple(Path(os.path.abspath(os.fspath(p))) for p in paths)
    _ARTIFACTS.extend(str(p) for p in resolved if str(p) not in _ARTIFACTS)
    return resolved


def report(root: str) -> str:
    """JSON this process hands back when the flow ends: the module files under ``root`` it
    imported and the inputs it declared (:mod:`ductaflow.core.usage_report`)."""
    return str(_ductaflow_report(root))


def report_source() -> str:
    """The report function's source, which a silent request defines in a flow's kernel."""
    return Path(usage_report.__file__).read_text(encoding="utf-8")


def report_expression(root: Path) -> str:
    """The user expression that calls the report in a kernel where :func:`report_source` ran."""
    return f"_ductaflow_report({str(root)!r})"


def parse_report(text: Any) -> dict[str, Any] | None:
    """:func:`report`'s JSON (possibly as a Python repr of the string), or None if unusable."""
    if isinstance(text, str) and text[:1] in ("'", '"'):
        import ast

        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("modules"), list):
        return None
    return doc


def from_report(doc: Mapping[str, Any], root: Path, runs_root: Path | None, exclude: Sequence[Path] = ()) -> list[Dep]:
    """The module and declared-input dependencies in a process's :func:`report`."""
    found = [snapshot("module", p, root) for p in project_modules(doc.get("modules") or [], root, runs_root, exclude)]
    for item in doc.get("inputs") or []:
        if isinstance(item, Mapping) and item.get("path"):
            path = Path(str(item["path"]))
            found.append(Dep("input", rel(path, root), str(item.get("digest") or ""), str(item.get("stamp") or "")))
    return found
