"""Scenario columns must be parameters: what a build and its flows know, checked before planning.

A column (or ``base_config`` key) that no flow of the build knows is almost always a typo
(``growth_rat``) or a label (``name``) that would run green with the default value; planning
refuses it with the nearest known names. The rules for nested keys are those of
:mod:`ductaflow.core.params`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.core.flowfile import Flow
from ductaflow.core.params import KnownNames, describe_unknown, flow_names, flows_names, unknown_names
from ductaflow.errors import ScenarioError
from ductaflow.store.layout import artifact_path
from ductaflow.store.records import read_status, subdirs

log = logging.getLogger(__name__)


def checked_names(
    params: Sequence[str],
    base: Mapping[str, Any],
    build: Flow,
    root: Path,
    flows: Iterable[Path | Flow],
    build_dir: Path,
    *,
    allow_unknown: bool = False,
) -> KnownNames:
    """What the build knows, with the scenario columns ``params`` (the name column left out)
    and the keys of the base config checked against it: a :class:`ScenarioError` naming the
    unknown ones and the nearest known names, unless ``allow_unknown`` (then a log line).

    Known are the key paths of the default configs and literal parameters cells of the build,
    of the flows it names literally (``flows``) and, only when those leave a name unknown, of
    the flows its earlier instances under ``build_dir`` recorded running (``flow`` deps of
    their status records). When none of them names anything, nothing is checked (logged).
    """
    known, bad_cols, bad_keys = unknown_names(
        params,
        base,
        flow_names(build, root) | flows_names(flows, root),
        lambda: flows_names(recorded_flows(build_dir, build.name, root), root),
    )
    if not known:
        log.info(
            "build %s: no default config or literal parameters cell of it or its flows names a parameter; "
            "scenario columns not checked",
            build.name,
        )
    found = (describe_unknown("scenario column", bad_cols, known), describe_unknown("base_config key", bad_keys, known))
    problems = "; ".join(p for p in found if p)
    if problems and allow_unknown:
        log.warning("build %s: %s (run anyway: allow_unknown)", build.name, problems)
    elif problems:
        raise ScenarioError(
            f"build {build.name}: {problems}. No flow of the build knows these parameters (the keys of "
            "their default configs and literal parameters cells); name instances with instance_column, "
            "or pass allow_unknown=True (--allow-unknown) to run with them anyway"
        )
    return known


def recorded_flows(build_dir: Path, build: str, root: Path) -> list[Path]:
    """The flows earlier instances of the build recorded running (``flow`` deps), each once."""
    found: list[Path] = []
    for instance in subdirs(build_dir):
        rec = read_status(artifact_path(build_dir / instance, build, "status"))
        for dep in (rec.deps or ()) if rec is not None else ():
            if dep.kind == "flow" and dep.where(root) not in found:
                found.append(dep.where(root))
    return found
