"""Configs: load JSON files, merge layers, check serialisability, find the project root.

Precedence, lowest first: a flow's default config file < the config given to the run
(a build's or a scenario's) < ``-p key=value`` overrides < ``_project_root`` (always set
by ductaflow). Later layers replace earlier ones key by key; nested dicts merge.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ductaflow.errors import ConfigError

PROJECT_MARKERS = ("pyproject.toml", ".git", "ductaflow.toml")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; errors name the file, line and column."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {p} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a JSON object, found {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; nested mappings merge, everything else is replaced."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def to_jsonable(value: Any, where: str = "config") -> Any:
    """Convert numpy/pandas scalars, Paths and Timestamps to JSON types; reject the rest.

    NaN and infinities are rejected: JSON has no spelling for them and silently turning
    them into ``null`` would change a scenario's meaning.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} is {value!r}; JSON cannot hold NaN or infinity")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a non-string key {k!r}")
            out[k] = to_jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat") and callable(value.isoformat):  # datetime, pd.Timestamp
        if str(value) in ("NaT",):
            raise ConfigError(f"{where} is NaT (a missing timestamp)")
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_jsonable(value.item(), where)
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return to_jsonable(value.tolist(), where)
    raise ConfigError(f"{where} has a value of type {type(value).__name__} that JSON cannot hold: {value!r}")


def normalise_config(config: Mapping[str, Any] | str | Path | None, where: str = "config") -> dict[str, Any]:
    """A config given as a mapping, a JSON file path or None, as a plain JSON-safe dict."""
    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        return load_config_file(config)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must be a dict or a path to a JSON file, got {type(config).__name__}")
    return to_jsonable(config, where)


def canonical_json(data: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces) for hashing and comparison."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def find_project_root(start: str | Path) -> Path:
    """The nearest ancestor of ``start`` holding a project marker, else a sensible fallback.

    Fallback: for ``.../flows/x.py`` or ``.../builds/x.py`` the folder above; else ``start``.
    """
    p = Path(start).resolve()
    here = p if p.is_dir() else p.parent
    for candidate in (here, *here.parents):
        if any((candidate / m).exists() for m in PROJECT_MARKERS):
            return candidate
    if here.name in ("flows", "builds"):
        return here.parent
    return here
