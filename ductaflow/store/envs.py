"""The environments runs were made in: ``<runs root>/.ductaflow/envs/<hash>.json``, one per environment.

A status record carries only its environment's hash (:mod:`ductaflow.core.provenance`); the
exact ``name==version`` list is written here once, by the first run made in it, and never
rewritten (same hash, same list). This module is that file's only reader and writer.
Schema 1: ``{"schema", "hash", "python", "executable", "distributions": [...]}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ductaflow.core.provenance import Environment
from ductaflow.store.atomic import atomic_write_json, read_json
from ductaflow.store.layout import ENVS_DIR

log = logging.getLogger(__name__)

ENV_SCHEMA = 1


def env_path(runs_root: str | Path, env_hash: str) -> Path:
    """Where the distribution list of environment ``env_hash`` is kept under ``runs_root``."""
    if not env_hash.isalnum():
        raise ValueError(f"not an environment hash: {env_hash!r}")
    return Path(runs_root) / ENVS_DIR / f"{env_hash}.json"


def write_environment(runs_root: str | Path, env: Environment) -> Path:
    """Keep ``env``'s list under ``runs_root`` unless it is there already; returns the file."""
    path = env_path(runs_root, env.hash)
    if not path.exists():
        atomic_write_json(path, {
            "schema": ENV_SCHEMA, "hash": env.hash, "python": env.python, "executable": env.executable,
            "distributions": list(env.distributions),
        })  # fmt: skip
    return path


@dataclass(frozen=True)
class StoredEnvironment:
    """An environment as read back from its file."""

    hash: str
    python: str | None
    executable: str | None
    distributions: tuple[str, ...]
    path: Path


def read_environment(runs_root: str | Path, env_hash: str) -> StoredEnvironment | None:
    """The stored list of environment ``env_hash``, or None when it was never stored here or is unreadable."""
    path = env_path(runs_root, env_hash)
    try:
        doc = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read the environment file %s: %s", path, exc)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("distributions"), list):
        log.warning("%s is not an environment file; ignored", path)
        return None
    return StoredEnvironment(
        env_hash, doc.get("python"), doc.get("executable"), tuple(str(d) for d in doc["distributions"]), path
    )
