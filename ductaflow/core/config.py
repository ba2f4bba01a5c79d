"""Configs: load JSON files, merge layers, check serialisability, find the project root.

Precedence, lowest first: a flow's default config file < the config given to the run
(a build's or a scenario's) < ``-p key=value`` overrides < ``_project_root`` (always set
by ductaflow). Later layers replace earlier ones key by key; nested dicts merge.

Limits, checked where configs are normalised (errors name the key path, before anything is
written): nesting to :data:`MAX_DEPTH` levels, integers to Python's int/str conversion limit
(``sys.get_int_max_str_digits``), floats finite, and no NUL character in a path.
"""

from __future__ import annotations

import json
import keyword
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ductaflow.errors import ConfigError, DuctaflowError, UnsafePath

PROJECT_MARKERS = ("pyproject.toml", ".git", "ductaflow.toml")
#: How deeply a config may nest. Depth counts containers, dicts and lists together: the config's
#: own dict is level 1 and every dict or list inside one is one level more, so ``{"a": [{"b": 1}]}``
#: is 3 levels deep. Deeper configs are refused: their injected ``config = {...}`` literal would
#: not compile in the kernel (~200 brackets) and walking them would exhaust Python's recursion.
MAX_DEPTH = 100
#: Integers of at most this many bits have at most 603 decimal digits: under any limit Python
#: allows (``sys.set_int_max_str_digits`` refuses 1..639), so they are never counted.
_SHORT_INT_BITS = 2_000
_LOG10_2 = math.log10(2)
_get_int_limit = getattr(sys, "get_int_max_str_digits", lambda: 0)  # Python >= 3.10.7 / 3.11


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; errors name the file and the line/column or key.

    Rejected beyond invalid JSON: a top level that is not an object, ``NaN``/``Infinity``
    (not JSON), a key given twice in one object (JSON would silently keep the last), lone
    surrogates (not writable as UTF-8) and top-level keys that are not Python names. A
    UTF-8 byte order mark, as Windows editors write, is accepted. So are the limits of the
    module docstring (depth, integer length, finite floats) and a path without NUL.
    """
    check_path(path, "config file", ConfigError)
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
    data = _parse_json(text, p)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a JSON object {{...}}, found {_json_kind(data)}")
    _check_loaded(data, f"config file {p}", "", 0)
    check_keys(data, f"config file {p}")
    return data


class _HookError(ValueError):
    """Raised by the JSON hooks below (any other ValueError of ``json.loads`` is Python's)."""


class _LongInt:
    """A JSON integer too long for Python to convert (parsed so only after such an error)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_json(text: str, p: Path) -> Any:
    """``json.loads`` with the hooks, every failure a ConfigError naming the file and the place."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {p} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except _HookError as exc:
        raise ConfigError(f"config file {p}: {exc}") from None
    except RecursionError:  # json gives up near 1,000 levels: say where level MAX_DEPTH + 1 opens
        line, column = _too_deep_at(text)
        raise ConfigError(
            f"config file {p}: nested deeper than {MAX_DEPTH} levels (level {MAX_DEPTH + 1} opens at "
            f"line {line}, column {column})"
        ) from None
    except ValueError as exc:  # an integer beyond int/str conversion: parse again to find its key
        try:
            data = json.loads(
                text, parse_int=_int_or_marker, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
            )
        except _HookError as hook:
            raise ConfigError(f"config file {p}: {hook}") from None
        except (ValueError, RecursionError):
            raise ConfigError(f"config file {p}: {exc}") from None
        _check_loaded(data, f"config file {p}", "", 0)
        raise ConfigError(f"config file {p}: {exc}") from None


def _int_or_marker(digits: str) -> int | _LongInt:
    count = len(digits.lstrip("-"))
    limit = _get_int_limit()
    return _LongInt(count) if limit and count > limit else int(digits)


def _too_deep_at(text: str) -> tuple[int, int]:
    """Line and column (1-based) of the bracket opening level ``MAX_DEPTH + 1`` of JSON ``text``."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)
        elif ch in "]}":
            depth -= 1
    return 1, 1


def _check_loaded(value: Any, where: str, path: str, depth: int) -> None:
    """Parsed JSON within the limits: depth, integer length, finite floats, text storable as UTF-8."""
    if isinstance(value, str):
        if not value.isascii():
            check_text(value, where, path)
    elif isinstance(value, dict):
        depth = _deeper(depth, where, path)
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if not k.isascii():
                check_text(k, where, f"{sub} (the key)")
            _check_loaded(v, where, sub, depth)
    elif isinstance(value, list):
        depth = _deeper(depth, where, path)
        for i, v in enumerate(value):
            _check_loaded(v, where, f"{path}[{i}]", depth)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(
                f"{_key(where, path)}: number too large for a float (JSON numbers beyond ±1.8e308 become infinity)"
            )
    elif isinstance(value, _LongInt):
        _int_too_long(value.digits, where, path)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _SHORT_INT_BITS:
        check_int(value, where, path)


def _key(where: str, path: str) -> str:
    """``config key a.b[0]``: the place named in a limit's message (a long path loses its middle)."""
    if not path:
        return where
    if not path.isprintable():
        path = repr(path)[1:-1]
    if len(path) > 160:
        path = f"{path[:80]} ... {path[-60:]}"
    return f"{where} key {path}"


def _deeper(depth: int, where: str, path: str) -> int:
    """``depth + 1``, the level of the container at ``path``; raise past :data:`MAX_DEPTH`."""
    if depth >= MAX_DEPTH:
        raise ConfigError(f"{_key(where, path)}: nested deeper than {MAX_DEPTH} levels")
    return depth + 1


def check_int(value: int, where: str = "config", path: str = "") -> None:
    """Raise when ``value`` has more decimal digits than Python converts (it could not be written).

    Counted from the bit length, without converting: cheap for any integer.
    """
    limit = _get_int_limit()
    n = abs(value)
    low = int((n.bit_length() - 1) * _LOG10_2) + 1  # the digits of 2 ** (bits - 1) <= n
    if not limit or low + 1 <= limit:
        return
    if low > 100_000:  # counting exactly would take a while: say "at least"
        _int_too_long(f"at least {low}", where, path)
    digits = low + (n >= 10**low)
    if digits > limit:
        _int_too_long(digits, where, path)


def _int_too_long(digits: int | str, where: str, path: str) -> None:
    raise ConfigError(
        f"{_key(where, path)}: integer with {digits} digits is longer than Python's limit of {_get_int_limit()}"
    )


def check_path(path: str | os.PathLike[str], what: str, error: type[DuctaflowError] = UnsafePath) -> None:
    """Raise ``error`` when ``path`` holds a NUL character, which no file system allows in a path."""
    text = os.fspath(path)
    if isinstance(text, str) and "\x00" in text:
        raise error(f"{what} {text!r} holds a NUL character (\\x00), which no file system allows in a path")


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (with Python's in brackets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false (bool)"
    kinds = {list: "an array (list)", str: "a string", int: "a number (int)", float: "a number (float)"}
    return kinds.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    raise _HookError(f"{name} is not JSON (JSON has no NaN or infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _HookError(f"key {key!r} appears twice in one object")
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


def check_text(value: str, where: str, path: str = "") -> None:
    """Raise when a string (key or value) holds a lone surrogate, which UTF-8 files cannot store."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            at = f" at {path!r}" if path else ""
            raise ConfigError(
                f"{where}{at} holds a lone surrogate {value[exc.start]!r} at character {exc.start}, "
                "which is not text UTF-8 can store"
            ) from None


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
    them into ``null`` would change a scenario's meaning. So are the limits: nesting deeper
    than :data:`MAX_DEPTH` (``value`` itself is level 1 when it is a dict, list or tuple; each
    one inside is one more) and integers longer than Python's int/str conversion limit.
    Errors name the place: ``where`` (``config``) and the key path below it.
    """
    return _jsonable(value, where, "", None, 0)


def _label(where: str, path: str) -> str:
    """``config.a[0]``: where a value sits, as the messages other than the limits spell it."""
    if not path:
        return where
    return f"{where}{path}" if path.startswith("[") else f"{where}.{path}"


def _join(parent: str, key: str | int | None) -> str:
    """The key path of ``parent``'s item ``key`` (``a.b[0]``); built only when needed, for speed."""
    if key is None:
        return parent
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _jsonable(value: Any, where: str, parent: str, key: str | int | None, depth: int) -> Any:
    """``value`` as a JSON type; it sits at item ``key`` of the container at key path ``parent``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isascii():
            check_text(value, _label(where, _join(parent, key)))
        return value
    if isinstance(value, int):
        value = int(value)
        if value.bit_length() > _SHORT_INT_BITS:
            check_int(value, where, _join(parent, key))
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{_label(where, _join(parent, key))} is {value!r}; JSON cannot hold NaN or infinity")
        return float(value)
    if isinstance(value, Mapping):
        path = _join(parent, key)
        return _jsonable_mapping(value, where, path, _deeper(depth, where, path))
    if isinstance(value, (list, tuple)):
        path = _join(parent, key)
        depth = _deeper(depth, where, path)
        return [_jsonable(v, where, path, i, depth) for i, v in enumerate(value)]
    return _jsonable_other(value, where, parent, key, depth)


def _jsonable_other(value: Any, where: str, parent: str, key: str | int | None, depth: int) -> Any:
    """Paths, dates and numpy values as JSON types; anything else is refused."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat") and callable(value.isoformat):  # datetime, pd.Timestamp
        if str(value) in ("NaT",):
            raise ConfigError(f"{_label(where, _join(parent, key))} is NaT (a missing timestamp)")
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _jsonable(value.item(), where, parent, key, depth)
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return _jsonable(value.tolist(), where, parent, key, depth)
    raise ConfigError(
        f"{_label(where, _join(parent, key))} has a value of type {type(value).__name__} "
        f"that JSON cannot hold: {value!r}"
    )


def _jsonable_mapping(value: Mapping[Any, Any], where: str, path: str, depth: int) -> dict[str, Any]:
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(f"{_label(where, path)} has a non-string key {k!r}")
        if not k.isascii():
            check_text(k, f"{_label(where, path)}: the key {k!r}")
        out[k] = _jsonable(v, where, path, k, depth)
    return out


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
    check_path(start, "path")
    p = Path(start).resolve()
    here = p if p.is_dir() else p.parent
    for candidate in (here, *here.parents):
        if any((candidate / m).exists() for m in PROJECT_MARKERS):
            return candidate
    if here.name in ("flows", "builds"):
        return here.parent
    return here
