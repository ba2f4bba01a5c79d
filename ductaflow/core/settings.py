"""The project's own settings: tables under ``[tool.ductaflow]`` of its ``pyproject.toml``.

One reader for every part of ductaflow that takes settings from the project (kernel preload,
the cluster, the report), cached per file version; a file that cannot be read or a table
that is not a table is a :class:`~ductaflow.errors.ConfigError` naming the file and key.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from ductaflow.errors import ConfigError

PYPROJECT = "pyproject.toml"


def tool_table(project_root: str | Path | None, *keys: str) -> dict[str, Any]:
    """``[tool.ductaflow.<keys...>]`` of the project's pyproject.toml; empty when there is none."""
    if project_root is None:
        return {}
    path = Path(project_root) / PYPROJECT
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    where = ".".join(("tool.ductaflow", *keys))
    try:
        doc = _read(path, stamp)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: cannot read [{where}]: {exc}") from None
    table: Any = doc.get("tool", {}).get("ductaflow", {})
    where = "tool.ductaflow"
    for key in keys:
        if not isinstance(table, dict):
            break
        table, where = table.get(key, {}), f"{where}.{key}"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    return table


@lru_cache(maxsize=32)
def _read(path: Path, mtime_ns: int) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib  # deferred: only projects with settings read TOML
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # deferred with the line above
    return tomllib.loads(path.read_text(encoding="utf-8"))
