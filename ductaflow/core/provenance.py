"""Provenance: the code and environment a run was made with, collected when it starts.

A result is only as trustworthy as the record of what made it. :func:`collect` gathers the
interpreter (version, implementation, executable), the platform, ductaflow's version, the
installed distributions (as a hash; the list itself is kept once per environment by
:mod:`ductaflow.store.envs`), the project's git state (commit, branch, a dirty flag for
tracked files and a hash of their diff against HEAD) and who ran it where.

Costs are kept small by design: the distribution list is read once per process, kept in the
user's cache for the next one, and read again only when the distribution metadata on
``sys.path`` changed (a ``pip install`` adds or renames a ``.dist-info`` folder); git is
asked on every call, because code can change between two runs of one process, with one
``git status`` (plus one ``git diff`` when the tree is dirty), each with a timeout. Nothing
here raises: a failure is recorded in ``git_note`` and the run goes on.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import platform
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from ductaflow._version import __version__

log = logging.getLogger(__name__)

#: Seconds a git call may take before the git state is recorded as unknown.
GIT_TIMEOUT = 10.0
#: Length of the environment and diff hashes (hex digits of sha256).
HASH_LENGTH = 16
_NOT_NAME = re.compile(r"[-_.]+")
#: ``git_note`` of a project that is not in a git checkout.
NOT_A_CHECKOUT = "not a git checkout"


@dataclass(frozen=True)
class GitState:
    """Where the project's code stood in git when the run started."""

    commit: str | None  # None: a repository with no commit yet
    branch: str | None  # None: a detached HEAD
    dirty: bool  # tracked files differ from HEAD (staged or not); untracked files do not count
    diff_hash: str | None  # sha256 of ``git diff --binary HEAD`` (first 16 hex digits); None when clean

    @property
    def short(self) -> str:
        """``1a2b3c4`` or ``1a2b3c4*`` when dirty; ``(no commit)`` in a repository without one."""
        text = self.commit[:7] if self.commit else "(no commit)"
        return text + "*" if self.dirty else text


@dataclass(frozen=True)
class Environment:
    """The installed distributions a process imports from, as one hash and the sorted list."""

    hash: str
    distributions: tuple[str, ...]  # ``name==version``, names normalised (PEP 503), sorted
    python: str
    executable: str


@dataclass(frozen=True)
class Provenance:
    """What a run was made with; stored in its status record (schema 6) and ledger row."""

    python_version: str
    python_implementation: str
    platform: str
    executable: str
    ductaflow_version: str
    env_hash: str | None
    host: str
    user: str | None
    git: GitState | None  # None: no git state (see git_note)
    git_note: str | None = None  # why there is none: not a git checkout, git not installed, timed out

    @property
    def commit_text(self) -> str:
        """The commit as the report shows it (``1a2b3c4*`` when dirty), or why there is none."""
        if self.git is not None:
            return self.git.short
        return "no git" if self.git_note == NOT_A_CHECKOUT else "git unknown"

    @property
    def code_line(self) -> str:
        """One line: the full commit, branch and whether tracked files had uncommitted changes."""
        git = self.git
        if git is None:
            return f"no git state: {self.git_note or 'unknown'}"
        where = f"on {git.branch}" if git.branch else "detached HEAD"
        change = f"uncommitted changes to tracked files (diff {git.diff_hash})" if git.dirty else "clean"
        return f"commit {git.commit or '(none yet)'} {where}, {change}"

    @property
    def code_state(self) -> tuple[Any, ...]:
        """Equal for two runs made from the same code (same commit, same uncommitted diff)."""
        git = self.git
        return (git.commit, git.dirty, git.diff_hash) if git is not None else (None, None, self.git_note)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: Any) -> Provenance | None:
        """Read :meth:`to_record`'s output back; None for a missing or malformed value."""
        if not isinstance(rec, dict):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in rec.items() if k in known}
        git = values.get("git")
        try:
            values["git"] = GitState(**git) if isinstance(git, dict) else None
            return cls(**values)
        except TypeError:
            return None


def collect(project_root: str | Path | None) -> Provenance:
    """The provenance of a run of the project at ``project_root`` starting now, in this process."""
    env = environment()
    git, note = git_state(project_root) if project_root else (None, "no project root")
    return Provenance(
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        platform=platform.platform(),
        executable=sys.executable,
        ductaflow_version=__version__,
        env_hash=env.hash if env is not None else None,
        host=socket.gethostname(),
        user=_user(),
        git=git,
        git_note=note,
    )


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER (some containers)
        return None


# ---------------------------------------------------------------- installed distributions
#: What the installed distributions depend on, per ``sys.path`` entry (see :func:`_path_signature`).
PathSignature = tuple[tuple[str, Any], ...]
_env_lock = threading.Lock()
_env_cache: tuple[PathSignature, Environment] | None = None


#: Entries of a ``sys.path`` folder that make it hold a distribution (what importlib.metadata reads).
_METADATA_SUFFIXES = (".dist-info", ".egg-info")
#: A folder's listing is not reused while its mtime is this recent (a coarse clock may not have moved).
_FRESH_NS = 2_000_000_000
#: Folder -> (mtime_ns, names of its distribution metadata): listed again only when the mtime moves.
_listed: dict[str, tuple[int, tuple[str, ...] | None]] = {}


def _path_signature() -> PathSignature:
    """Each ``sys.path`` entry with the names of the distribution metadata in it (a zip or a
    missing entry: its mtime or None). An install or upgrade adds or renames a ``.dist-info``;
    other files do not count, so a project folder on ``sys.path`` gaining ``runs/`` keeps the
    signature (its mtime did not: each new mtime was a new cache file and a 60-100 ms listing
    in every conductor worker)."""
    out: list[tuple[str, Any]] = []
    for entry in sys.path:
        folder = os.path.abspath(entry or ".")
        try:
            st = os.stat(folder)
        except OSError:
            out.append((entry, None))
            continue
        if not stat.S_ISDIR(st.st_mode):
            out.append((entry, st.st_mtime_ns))
            continue
        memo = _listed.get(folder)
        if memo is None or memo[0] != st.st_mtime_ns:
            try:
                listing = os.listdir(folder)
                names: tuple[str, ...] | None = tuple(sorted(n for n in listing if n.endswith(_METADATA_SUFFIXES)))
            except OSError:
                names = None
            memo = (st.st_mtime_ns, names)
            if time.time_ns() - st.st_mtime_ns > _FRESH_NS:
                _listed[folder] = memo
        out.append((entry, memo[1]))
    return tuple(out)


def environment() -> Environment | None:
    """The distributions this process imports from; cached until a ``sys.path`` folder changes.
    None when they cannot be listed (recorded as an unknown environment, never an error)."""
    global _env_cache
    signature = _path_signature()
    with _env_lock:
        if _env_cache is not None and _env_cache[0] == signature:
            return _env_cache[1]
        kept = _cache_file(signature)
        found = _read_kept(kept)
        if found is None:
            try:
                found = _distributions()
            except Exception:  # noqa: BLE001 - a broken dist-info must not stop a run
                log.warning("cannot list the installed distributions", exc_info=True)
                return None
            _keep(kept, found)
        digest = hashlib.sha256("\n".join(found).encode()).hexdigest()[:HASH_LENGTH]
        env = Environment(digest, found, platform.python_version(), sys.executable)
        _env_cache = (signature, env)
        return env


def _cache_file(signature: PathSignature, kind: str | None = None) -> Path | None:
    """Where the list of this interpreter with this ``sys.path`` (its distribution metadata) is kept for the
    next process: listing 128 distributions took ~0.07 s of every ``ductaflow run``. A per-user
    cache (``$XDG_CACHE_HOME`` or ``~/.cache``); changed metadata is another file. ``kind`` names
    another list kept the same way (``entry_points``), in a file of its own."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    what = (sys.executable, signature) if kind is None else (sys.executable, signature, kind)
    key = hashlib.sha256(repr(what).encode()).hexdigest()[:32]
    return Path(base) / "ductaflow" / "environments" / f"{key}.json"


def _read_kept(path: Path | None) -> tuple[str, ...] | None:
    if path is None:
        return None
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(listed, list) or not all(isinstance(d, str) and "==" in d for d in listed):
        return None
    return tuple(listed)


def _keep(path: Path | None, found: tuple[Any, ...]) -> None:
    """Write the list atomically; a cache that cannot be written costs only the next listing."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(list(found)), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not keep the distribution list in %s: %s", path, exc)
        return
    _prune(path.parent)


#: The cache folder keeps this many lists (the newest); pruned when it holds twice as many.
KEEP_LISTS = 256


def _prune(folder: Path) -> None:
    """Remove the oldest kept lists once there are over ``2 * KEEP_LISTS``: one per environment
    and kind is all that is read, and a removed list costs only one listing."""
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json")]
        if len(names) <= 2 * KEEP_LISTS:
            return
        aged = sorted(names, key=lambda n: _mtime(folder / n))
        for name in aged[: len(aged) - KEEP_LISTS]:
            (folder / name).unlink(missing_ok=True)
    except OSError as exc:
        log.debug("could not prune %s: %s", folder, exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def entry_points_in(group: str) -> tuple[tuple[str, str], ...]:
    """``(value, name)`` of the installed distributions' entry points in ``group``, kept in the
    user's cache like the distribution list (until a ``sys.path`` folder changes): scanning every
    installed package's metadata took ~6 ms of every ``ductaflow run`` (for its hooks)."""
    kept = _cache_file(_path_signature(), f"entry_points {group}")
    try:
        listed = json.loads(kept.read_text(encoding="utf-8")) if kept is not None else None
    except (OSError, ValueError):
        listed = None
    if isinstance(listed, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in listed
    ):
        return tuple((value, name) for value, name in listed)
    found = tuple((ep.value, ep.name) for ep in metadata.entry_points(group=group))
    _keep(kept, found)
    return found


def _distributions() -> tuple[str, ...]:
    """``name==version`` of every importable distribution: the first of a name on ``sys.path`` wins."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = _NOT_NAME.sub("-", name).lower()
        seen.setdefault(key, f"{key}=={dist.version}")
    return tuple(sorted(seen.values()))


# ---------------------------------------------------------------- git
def git_state(project_root: str | Path) -> tuple[GitState | None, str | None]:
    """The git state of the checkout holding ``project_root``, or None and why there is none."""
    status = _git(project_root, "--no-optional-locks", "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if isinstance(status, str):
        return None, status
    if status.returncode != 0:
        return None, _git_failure(status.stderr)
    commit = branch = None
    dirty = False
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    diff_hash = None
    if dirty and commit is not None:
        diff = _git(project_root, "diff", "--binary", "HEAD", text=False)
        if isinstance(diff, str) or diff.returncode != 0:
            return None, diff if isinstance(diff, str) else _git_failure(diff.stderr)
        diff_hash = hashlib.sha256(diff.stdout).hexdigest()[:HASH_LENGTH]
    return GitState(commit, branch, dirty, diff_hash), None


def _git(root: str | Path, *args: str, text: bool = True) -> subprocess.CompletedProcess[Any] | str:
    """Run git in ``root``; a string says why it could not run."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=text, timeout=GIT_TIMEOUT,
            check=False, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except FileNotFoundError:
        return "git is not installed"
    except subprocess.TimeoutExpired:
        log.warning("git in %s took over %s s; the run's git state is recorded as unknown", root, GIT_TIMEOUT)
        return f"git timed out after {GIT_TIMEOUT:g} s"
    except OSError as exc:
        return f"git could not run: {exc.strerror or exc}"


def _git_failure(stderr: str | bytes) -> str:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    if "not a git repository" in text:
        return NOT_A_CHECKOUT
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return f"git failed: {first[:200]}"
