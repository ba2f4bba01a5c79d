"""Re-run only what changed: fingerprints, the run-or-skip decision and its reasons, locks.

A flow instance's fingerprint covers its code cells (markdown and trailing whitespace do
not count), its config (canonical JSON, ``_``-prefixed framework keys excluded), the
fingerprints of the steps it ran after in the same build, and, for a build, the code of
the flows it names. The parts are stored in the status record so a later run can say
*why* it re-runs, not only *that* it does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductaflow import __version__
from ductaflow.config import canonical_json
from ductaflow.flow import Flow, read_flow
from ductaflow.rundir import artifact_paths

log = logging.getLogger(__name__)

MAJOR = __version__.split(".")[0]
#: ``step("flows/x.py", ...)``-style literals: how a build names the flows it runs.
_FLOW_LITERAL = re.compile(r"""(?:step|run_notebook|run_step_flow)\(\s*[rR]?["']([^"']+\.(?:py|ipynb))["']""")
_REQUIRED = ("notebook", "log", "config", "status")


def referenced_flows(flow: Flow, project_root: Path) -> list[Path]:
    """Flow files a build names as string literals in step()/run_notebook() calls."""
    found: list[Path] = []
    for src in flow.code_sources:
        for rel in _FLOW_LITERAL.findall(src):
            path = Path(rel) if Path(rel).is_absolute() else project_root / rel
            if path not in found:
                found.append(path)
    return found


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Hash of the config a flow sees, framework keys (``_project_root`` ...) excluded."""
    visible = {k: v for k, v in cfg.items() if not str(k).startswith("_")}
    return hashlib.sha256(canonical_json(visible).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What a run depended on; ``value`` changes when any part does."""

    code: str
    config: str
    upstream: tuple[str, ...] = ()
    flows: Mapping[str, str] = field(default_factory=dict)
    major: str = MAJOR

    @property
    def parts(self) -> dict[str, Any]:
        return {
            "major": self.major,
            "code": self.code,
            "config": self.config,
            "upstream": list(self.upstream),
            "flows": dict(sorted(self.flows.items())),
        }

    @property
    def value(self) -> str:
        return hashlib.sha256(json.dumps(self.parts, sort_keys=True).encode()).hexdigest()[:32]


def flow_hashes(flow: Flow, project_root: Path) -> dict[str, str]:
    """Code hashes of the flows a build names (``missing`` for one that cannot be read)."""
    hashes: dict[str, str] = {}
    for path in referenced_flows(flow, project_root):
        try:
            hashes[path.stem] = read_flow(path).code_hash()
        except Exception:  # noqa: BLE001 - a missing flow fails the build itself, loudly
            hashes[path.stem] = "missing"
    return hashes


def fingerprint(
    flow: Flow,
    cfg: Mapping[str, Any],
    project_root: Path,
    upstream: Sequence[str] = (),
    flows: Mapping[str, str] | None = None,
) -> Fingerprint:
    """The fingerprint of running ``flow`` with ``cfg`` after ``upstream`` steps.

    ``flows`` are the build's flow hashes when the caller already has them (the conductor
    computes them once for all its scenarios instead of re-reading every flow per row).
    """
    hashes = dict(flows) if flows is not None else flow_hashes(flow, project_root)
    return Fingerprint(flow.code_hash(), config_hash(cfg), tuple(upstream), hashes)


@dataclass(frozen=True)
class Decision:
    """Run or skip, and the reasons to run (empty when up to date)."""

    run: bool
    reasons: tuple[str, ...]
    record: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "; ".join(self.reasons) if self.run else "up to date"


def read_record(path: Path) -> dict[str, Any] | None:
    """A status record as a dict; None when absent; ``{}`` when unreadable (logged)."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable status record %s: %s", path, exc)
        return {}
    return rec if isinstance(rec, dict) else {}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted config keys added, removed or changed (framework ``_`` keys ignored)."""
    a = {k: v for k, v in _flatten(old).items() if not k.startswith("_")}
    b = {k: v for k, v in _flatten(new).items() if not k.startswith("_")}
    return sorted(k for k in a.keys() | b.keys() if canonical_json(a.get(k)) != canonical_json(b.get(k)))


def _failure_reason(rec: Mapping[str, Any]) -> str:
    if rec.get("state") == "running":
        return f"last run did not finish (left running by pid {rec.get('pid')} on {rec.get('host')})"
    if rec.get("interrupted"):
        return "last run was interrupted"
    if rec.get("timed_out"):
        return "last run timed out"
    if rec.get("kernel_died"):
        return "last run's kernel died"
    return "last run failed"


def decide(
    exec_dir: Path,
    flow_name: str,
    fp: Fingerprint,
    cfg: Mapping[str, Any],
    *,
    force: bool = False,
    only_failed: bool = False,
    export_html: bool = False,
) -> Decision:
    """Whether ``flow_name`` must run in ``exec_dir``, and every reason why."""
    paths = artifact_paths(exec_dir, flow_name)
    rec = read_record(paths["status"])
    if force:
        return Decision(True, ("forced",), rec)
    if rec is None:
        return Decision(True, ("new",), None)
    if not rec:
        return Decision(True, ("status record unreadable",), None)
    if rec.get("state") != "finished" or rec.get("status") not in ("green", "orange"):
        return Decision(True, (_failure_reason(rec),), rec)
    if only_failed:
        return Decision(False, (), rec)
    reasons: list[str] = []
    old = rec.get("fingerprint_parts")
    if not isinstance(old, dict):
        reasons.append("no fingerprint recorded")
        old = {}
    new = fp.parts
    if old and old.get("major") != new["major"]:
        reasons.append(f"ductaflow major version changed ({old.get('major')} -> {new['major']})")
    if old and old.get("code") != new["code"]:
        reasons.append(f"flow code changed: {flow_name}")
    old_flows = old.get("flows") or {}
    changed_flows = sorted(n for n in old_flows.keys() | new["flows"].keys() if old_flows.get(n) != new["flows"].get(n))
    if old and changed_flows:
        reasons.append(f"flow code changed: {', '.join(changed_flows)}")
    if old and old.get("config") != new["config"]:
        keys = []
        try:
            keys = changed_keys(json.loads(paths["config"].read_text(encoding="utf-8")), cfg)
        except (OSError, ValueError):
            pass
        reasons.append(f"config keys changed: {', '.join(keys)}" if keys else "config changed")
    if old and list(old.get("upstream") or []) != new["upstream"]:
        reasons.append("upstream changed")
    wanted = list(_REQUIRED) + (["html"] if export_html or rec.get("html_exported") else [])
    missing = [paths[k].name for k in wanted if not paths[k].exists()]
    if missing:
        reasons.append(f"artifacts missing: {', '.join(missing)}")
    return Decision(bool(reasons), tuple(reasons), rec)


@contextmanager
def instance_lock(exec_dir: Path, flow_name: str, waited: list[bool] | None = None) -> Any:
    """Hold ``<exec_dir>/.<flow>.lock`` while a flow runs there; wait (and say so) if taken."""
    from filelock import FileLock, Timeout

    from ductaflow.errors import DuctaflowError

    lock = FileLock(str(exec_dir / f".{flow_name}.lock"))
    try:
        exec_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # (a subclass of OSError) another process runs this instance
            log.warning("%s in %s is being run by another process; waiting for it", flow_name, exec_dir)
            if waited is not None:
                waited.append(True)
            lock.acquire()
    except Timeout:
        raise
    except OSError as exc:  # a read-only or full disk: one clear line, not a bare OSError
        raise DuctaflowError(f"cannot write to instance directory {exec_dir}: {exc.strerror or exc}") from None
    try:
        yield lock
    finally:
        lock.release()


def is_held(exec_dir: Path, flow_name: str) -> bool:
    """True when some live process holds the instance lock (a 'running' record is real)."""
    from filelock import FileLock, Timeout

    path = exec_dir / f".{flow_name}.lock"
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
