"""Configs: load JSON files, merge layers, check serialisability, find the project root.

Precedence, lowest first: a flow's default config file < the config given to the run
(a build's or a scenario's) < ``-p key=value`` overrides < ``_project_root`` (always set
by ductaflow). Later layers replace earlier ones key by key; nested dicts merge.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ductaflow.errors import ConfigError

PROJECT_MARKERS = ("pyproject.toml", ".git", "ductaflow.toml")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; errors name the file and the line/column or key.

    Rejected beyond invalid JSON: a top level that is not an object, ``NaN``/``Infinity``
    (not JSON), a key given twice in one object (JSON would silently keep the last), lone
    surrogates (not writable as UTF-8) and top-level keys that are not Python names. A
    UTF-8 byte order mark, as Windows editors write, is accepted.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"config file {p} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {column} "
            "(save it as UTF-8)"
        ) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {p} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except ValueError as exc:  # raised by the two hooks above
        raise ConfigError(f"config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a JSON object {{...}}, found {_json_kind(data)}")
    check_text(data, f"config file {p}")
    check_keys(data, f"config file {p}")
    return data


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (with Python's in brackets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false (bool)"
    kinds = {list: "an array (list)", str: "a string", int: "a number (int)", float: "a number (float)"}
    return kinds.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def check_keys(config: Mapping[str, Any], where: str = "config") -> None:
    """Top-level keys must be Python names: flows turn them into variables (``unpack_config``).

    Nested keys are data (zone ids, labels) and may be any string.
    """
    for key in config:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise ConfigError(
                f"{where}: key {key!r} is not a Python name (letters, digits and _, not starting "
                "with a digit, not a keyword); flows unpack top-level keys into variables, so rename it"
            )


def check_text(value: Any, where: str, path: str = "") -> None:
    """Raise when a string (key or value) holds a lone surrogate, which UTF-8 files cannot store."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                at = f" at {path!r}" if path else ""
                raise ConfigError(
                    f"{where}{at} holds a lone surrogate {value[exc.start]!r} at character {exc.start}, "
                    "which is not text UTF-8 can store"
                ) from None
    elif isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            check_text(k, where, f"{sub} (the key)")
            check_text(v, where, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_text(v, where, f"{path}[{i}]")


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
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        check_text(value, where)
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
            check_text(k, f"{where}: the key {k!r}")
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
    check_keys(config, where)
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
