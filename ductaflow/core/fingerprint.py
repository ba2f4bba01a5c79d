"""Fingerprints: what a run depended on, so that a later run can tell what changed.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductaflow._version import __version__
from ductaflow.core.config import canonical_json
from ductaflow.core.flowfile import Flow, read_flow
from ductaflow.core.seeds import seed_counts

log = logging.getLogger(__name__)

MAJOR = __version__.split(".")[0]
#: ``step("flows/x.py", ...)``-style literals: how a build names the flows it runs.
_FLOW_LITERAL = re.compile(r"""(?:step|run_notebook|run_step_flow)\(\s*[rR]?["']([^"']+\.(?:py|ipynb))["']""")


def referenced_flows(flow: Flow, project_root: Path) -> list[Path]:
    """Flow files a build names as string literals in step()/run_notebook() calls."""
    found: list[Path] = []
    for src in flow.code_sources:
        for rel in _FLOW_LITERAL.findall(src):
            path = Path(rel) if Path(rel).is_absolute() else project_root / rel
            if path not in found:
                found.append(path)
    return found


#: Config keys ductaflow itself sets (the project root a flow sees, the conductor's instance
#: name, the run's seed and replicate number). Every other ``_``-prefixed key is refused: the
#: fingerprint leaves ``_`` keys out (but see :func:`config_hash`), so a change to one would
#: re-run nothing.
FRAMEWORK_KEYS = ("_project_root", "_instance", "_seed", "_replicate")


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Hash of the config a flow sees, framework keys (``_project_root`` ...) excluded.

    ``_replicate`` counts when present, ``_seed`` when it differs from the default derivation
    (:func:`~ductaflow.core.seeds.seed_counts`): without a study seed or replicates an
    instance's fingerprint is what it was before seeds existed."""
    visible = {k: v for k, v in cfg.items() if not str(k).startswith("_")}
    if "_replicate" in cfg:
        visible["_replicate"] = cfg["_replicate"]
    if seed_counts(cfg):
        visible["_seed"] = cfg["_seed"]
    return hashlib.sha256(canonical_json(visible).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What a run depended on; ``value`` changes when any part does."""

    code: str
    config: str
    upstream: tuple[str, ...] = ()
    flows: Mapping[str, str] = field(default_factory=dict)
    major: str = MAJOR
    #: a kernelspec asked for by name (``--kernel``); the one a flow declares is in ``code``
    kernel: str | None = None

    @property
    def parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {
            "major": self.major,
            "code": self.code,
            "config": self.config,
            "upstream": list(self.upstream),
            "flows": dict(sorted(self.flows.items())),
        }
        if self.kernel is not None:  # absent otherwise: fingerprints from before it existed hold
            parts["kernel"] = self.kernel
        return parts

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
    kernel: str | None = None,
) -> Fingerprint:
    """The fingerprint of running ``flow`` with ``cfg`` after ``upstream`` steps.

    ``flows`` are the build's flow hashes when the caller already has them (the conductor
    computes them once for all its scenarios instead of re-reading every flow per row).
    ``kernel`` is a kernelspec the run was asked to use instead of the flow's own.
    """
    hashes = dict(flows) if flows is not None else flow_hashes(flow, project_root)
    return Fingerprint(flow.code_hash(), config_hash(cfg), tuple(upstream), hashes, kernel=kernel)
