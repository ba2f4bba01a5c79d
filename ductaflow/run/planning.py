"""What a run is planned with besides its flow: its context (what the caller gave over what the
parent run handed down), its seed, and the config keys reserved for ductaflow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ductaflow.core.context import RunContext
from ductaflow.core.fingerprint import FRAMEWORK_KEYS
from ductaflow.core.seeds import check_run_seed, run_seed
from ductaflow.errors import ConfigError

log = logging.getLogger(__name__)


def seeded(ctx: RunContext, cfg: dict[str, Any], instance: str) -> RunContext:
    """The context with this run's seed; in a study with a seed or replicates a step records it as ``_seed``."""
    if "_seed" in cfg:  # given (or in the default config): it must be the seed the kernel gets
        check_run_seed(cfg["_seed"], "config")
    value = run_seed(cfg, ctx.seed, instance)
    if ctx.pass_seed and "_seed" not in cfg:
        cfg["_seed"] = value
    return ctx.child(seed=value)


def check_reserved_keys(cfg: Mapping[str, Any], root: Path) -> None:
    """Refuse ``_`` keys ductaflow does not set; a given ``_project_root`` is replaced by the
    real one (a replayed recorded config must not move the run), with a warning if it differed."""
    reserved = sorted(str(k) for k in cfg if str(k).startswith("_") and k not in FRAMEWORK_KEYS)
    if reserved:
        raise ConfigError(
            f"config key(s) {', '.join(reserved)}: names starting with '_' are reserved for ductaflow "
            "(they are left out of the fingerprint, so changing one would re-run nothing); rename them"
        )
    given = cfg.get("_project_root")
    if given is not None and Path(str(given)).resolve() != root:
        log.warning("config key _project_root=%s ignored: runs land under the project root %s", given, root)


def run_context(
    given: Mapping[str, Any] | RunContext | None, inherited: RunContext | None, root: Path, force: bool | None
) -> RunContext:
    """This run's context: what the caller gave over what the parent run handed down."""
    ctx = inherited or RunContext()
    if isinstance(given, RunContext):
        ctx = given
    elif given:
        known = {k: v for k, v in given.items() if k in RunContext.__dataclass_fields__}
        ctx = ctx.child(**known)
    return ctx.child(
        project_root=str(root),
        runs_root=ctx.runs_root or str(root / "runs"),
        force=ctx.force if force is None else bool(force),
    )
