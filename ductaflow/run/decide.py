"""The run-or-skip decision for one instance, with every reason to run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductaflow.core.config import canonical_json, find_project_root
from ductaflow.core.deps import changes
from ductaflow.core.fingerprint import Fingerprint
from ductaflow.core.lights import Status
from ductaflow.core.params import flat_keys
from ductaflow.store.layout import artifact_path, artifact_paths
from ductaflow.store.records import read_status
from ductaflow.store.result import FlowResult, RunState

log = logging.getLogger(__name__)

_REQUIRED = ("notebook", "log", "config", "status")


@dataclass(frozen=True)
class Decision:
    """Run or skip, and the reasons to run (empty when up to date)."""

    run: bool
    reasons: tuple[str, ...]
    record: FlowResult | None = None  # the last record, as every reader sees it
    fingerprint: Fingerprint | None = None  # what the decision compared the record with

    @property
    def text(self) -> str:
        return "; ".join(self.reasons) if self.run else "up to date"


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted config keys added, removed or changed (framework ``_`` keys ignored)."""
    a = {k: v for k, v in flat_keys(old).items() if not k.startswith("_")}
    b = {k: v for k, v in flat_keys(new).items() if not k.startswith("_")}
    keys = sorted(k for k in a.keys() | b.keys() if canonical_json(a.get(k)) != canonical_json(b.get(k)))
    seeds = [k for k in ("_seed", "_replicate") if k in old and k in new and old[k] != new[k]]  # they count too
    return keys + seeds


def _failure_reason(rec: FlowResult) -> str:
    if rec.state == RunState.RUNNING:
        return f"last run did not finish (left running by pid {rec.pid} on {rec.host})"
    if rec.state == RunState.GONE:
        return f"last run did not finish (its process {rec.pid} on {rec.host} died without a final record)"
    if rec.terminated:
        return "last run was terminated"
    if rec.interrupted:
        return "last run was interrupted"
    if rec.timed_out:
        return "last run timed out"
    if rec.kernel_died:
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
    root: Path | None = None,
) -> Decision:
    """Whether ``flow_name`` must run in ``exec_dir``, and every reason why.

    Besides the fingerprint (code, config, upstream steps, flows named literally), every
    dependency the last run recorded (flows it ran, project modules, input files; relative
    paths are under ``root``) is compared with the disk.
    """
    paths = artifact_paths(exec_dir, flow_name)
    rec = read_status(paths["status"])
    if force:
        return Decision(True, ("forced",), rec, fp)
    if rec is None:
        return Decision(True, ("status record unreadable",) if os.path.lexists(paths["status"]) else ("new",), None, fp)
    if rec.state != RunState.FINISHED or rec.status is Status.RED:
        return Decision(True, (_failure_reason(rec),), rec, fp)
    if only_failed:
        return Decision(False, (), rec, fp)
    reasons, changed_flows = _fingerprint_reasons(rec, fp, cfg, paths["config"], flow_name)
    reasons += _dependency_reasons(rec, root, {flow_name, *changed_flows})
    wanted = list(_REQUIRED) + (["html"] if export_html or rec.html_exported else [])
    missing = [paths[k].name for k in wanted if not paths[k].exists()]
    if missing:
        reasons.append(f"artifacts missing: {', '.join(missing)}")
    return Decision(bool(reasons), tuple(reasons), rec, fp)


def _fingerprint_reasons(
    rec: FlowResult, fp: Fingerprint, cfg: Mapping[str, Any], config_path: Path, flow_name: str
) -> tuple[list[str], list[str]]:
    """What differs between the recorded fingerprint and ``fp``; and the flows named as changed."""
    reasons: list[str] = []
    old = rec.fingerprint_parts
    if not isinstance(old, dict) or not old:
        return ["no fingerprint recorded"], []
    new = fp.parts
    if old.get("major") != new["major"]:
        reasons.append(f"ductaflow major version changed ({old.get('major')} -> {new['major']})")
    changed_flows = [flow_name] if old.get("code") != new["code"] else []
    old_flows, new_flows = old.get("flows") or {}, new["flows"]
    changed_flows += sorted(n for n in old_flows.keys() | new_flows.keys() if old_flows.get(n) != new_flows.get(n))
    if changed_flows:
        reasons.append(f"flow code changed: {', '.join(changed_flows)}")
    if old.get("config") != new["config"]:
        keys = []
        try:
            keys = changed_keys(json.loads(config_path.read_text(encoding="utf-8")), cfg)
        except (OSError, ValueError):
            pass
        reasons.append(f"config keys changed: {', '.join(keys)}" if keys else "config changed")
    if list(old.get("upstream") or []) != new["upstream"]:
        reasons.append("upstream changed")
    return reasons, changed_flows


def _dependency_reasons(rec: FlowResult, root: Path | None, reported: set[str]) -> list[str]:
    """Why what the last run used is no longer there as it was; a flow the fingerprint already
    reported by name (in ``reported``) is not reported twice."""
    if rec.deps is None:
        return ["no record of what the last run used (written by an older ductaflow)"]
    base = root if root is not None else find_project_root(rec.execution_dir)
    changed = [d for d in rec.deps if not (d.kind == "flow" and Path(d.path).stem in reported)]
    return changes(changed, base)


def still_current(exec_dir: Path, flow_name: str, decision: Decision) -> bool:
    """True when the instance's record is still the one ``decision`` was made on.

    Another process (a second conductor on the same runs root) may have run the instance
    since: then its record differs and the decision must be made again, under the lock.
    """
    return read_status(artifact_path(exec_dir, flow_name, "status")) == decision.record
