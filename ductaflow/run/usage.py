"""What a finished run used, attached to its record: the one place that builds ``deps`` and ``outputs``.

Every way of running a flow (a kernel through papermill, script mode) calls
:func:`config_deps` before the flow starts and :func:`with_usage` on its final result. The
run-or-skip decision (:mod:`ductaflow.run.decide`) later compares each recorded dependency
with the disk. See :mod:`ductaflow.core.deps` for the kinds and how changes are detected.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.core import deps as D
from ductaflow.core.flowfile import Flow
from ductaflow.core.lights import Status
from ductaflow.store.layout import ARTIFACT_SUFFIXES, FLOWS_SUBDIR
from ductaflow.store.records import flow_records
from ductaflow.store.result import FlowResult

log = logging.getLogger(__name__)


def config_deps(cfg: Mapping[str, Any], root: Path, exec_dir: Path, flow: Flow | None = None) -> tuple[D.Dep, ...]:
    """Taken before the flow starts: the flow file itself (``flow``, as read: its code hash and
    stamp, so an edit during the run is seen next time) and the files and folders the config names."""
    own = (D.Dep("flow", D.rel(flow.path, root), flow.code_hash(), flow.stamp),) if flow is not None else ()
    return own + tuple(D.snapshot("input", p, root) for p in D.config_inputs(cfg, root, exec_dir))


def with_usage(
    result: FlowResult,
    *,
    root: Path,
    runs_root: Path | None,
    start: Sequence[D.Dep] = (),
    report: Mapping[str, Any] | None = None,
) -> FlowResult:
    """``result`` with what the run used (``deps``) and a digest of what it left (``outputs``).

    Only a green or orange run needs them (a red one is always run again). ``report`` is the
    flow's process's own account (:func:`ductaflow.core.deps.report`); without one (a kernel
    that could not answer) the modules are unknown and a note says so. A build's record also
    lists the flows its steps ran (however their paths were computed) and everything they used.
    """
    if result.status is Status.RED:
        return result
    notes = list(result.notes)
    found: list[D.Dep] = list(start)
    if report is not None:
        found += D.from_report(report, root, runs_root, exclude=(result.flow_path,))
    else:
        notes.append("the flow's process did not say which project modules it imported: not tracked for this run")
    found += step_deps(result.execution_dir, root)
    try:
        outputs = outputs_digest(result.execution_dir, result.flow)
    except OSError as exc:
        log.warning("cannot hash the outputs of %s: %s", result.execution_dir, exc)
        outputs = None
    return replace(result, deps=D.merge(found), outputs=outputs, notes=tuple(notes))


def step_deps(exec_dir: Path, root: Path) -> list[D.Dep]:
    """For a build: each step's flow file (by the code hash its record holds) and its deps."""
    found: list[D.Dep] = []
    for rec in flow_records(exec_dir):
        path = D.rel(Path(os.path.abspath(rec.flow_path)), root)
        if not any(d.kind == "flow" and d.path == path for d in rec.deps or ()):
            # a record that does not list its own flow: its code hash, with no stamp (always re-read)
            parts = rec.fingerprint_parts if isinstance(rec.fingerprint_parts, dict) else {}
            found.append(D.Dep("flow", path, str(parts.get("code") or "")))
        found += rec.deps or ()
    return found


def _output_files(exec_dir: Path, flow: str) -> Iterable[Path]:
    own = {f"{flow}{suffix}" for suffix in ARTIFACT_SUFFIXES}
    for dirpath, dirnames, filenames in os.walk(exec_dir):
        here = Path(dirpath)
        if here == exec_dir:
            dirnames[:] = [d for d in dirnames if d != FLOWS_SUBDIR]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or (here == exec_dir and name in own):
                continue
            yield here / name


def outputs_digest(exec_dir: Path, flow: str) -> str:
    """A digest of the files a run left in its instance directory (names and bytes), its own
    notebook, log, config and status excepted: a downstream step re-runs when this changes."""
    h = hashlib.sha256()
    for path in _output_files(exec_dir, flow):
        h.update(f"{path.relative_to(exec_dir).as_posix()}\0{D.content_digest(path)}\n".encode())
    return h.hexdigest()[:32]
