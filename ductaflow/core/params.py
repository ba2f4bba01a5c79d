"""Parameters: the names flows know (with did-you-mean for the others), and ``-p`` values.

A scenario column, a ``base_config`` key or a ``ductaflow run -p`` key that no flow knows is
almost always a typo (``growth_rat``) or a label (``name``) that would otherwise run green
with the default value. The names a flow *knows* are the key paths of its default config
file and of a literal ``config = {...}`` in its parameters cell.

Key paths are dotted (``prepare_zones.area_km``), as scenario columns spell nested keys.
Below a known key the rule is:

- a non-empty dict default lists what may go inside it: ``a.b`` is known only when ``b``
  is one of its keys (recursively);
- a ``None`` or empty-dict default says nothing about its contents (an optional or free-form
  mapping): every path below it is known;
- any other default (a number, a string, a list) has nothing inside: ``a.b`` is unknown.

Several sources are a union: a path is known when any source knows it.

:func:`parse_value` types a command-line ``-p`` value as papermill's ``-p`` does.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductaflow.core.config import MAX_DEPTH
from ductaflow.core.flowfile import Flow, read_flow
from ductaflow.errors import ConfigError, DuctaflowError

_WORDS: dict[str, Any] = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}


@dataclass(frozen=True)
class KnownNames:
    """Known key paths (``paths``) and the known paths below which anything goes (``open``)."""

    paths: frozenset[str] = frozenset()
    open: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        """Whether any source gave a name at all (without one, nothing can be checked)."""
        return bool(self.paths)

    def __or__(self, other: KnownNames) -> KnownNames:
        return KnownNames(self.paths | other.paths, self.open | other.open)

    def knows(self, path: str) -> bool:
        """Whether the dotted key ``path`` is known (itself, or below an open key)."""
        if path in self.paths:
            return True
        parts = path.split(".")
        return any(".".join(parts[:i]) in self.open for i in range(1, len(parts)))

    def unknown(self, paths: Iterable[str]) -> list[str]:
        """The paths not known, in the order given."""
        return [p for p in paths if not self.knows(p)]

    def nearest(self, path: str, n: int = 3) -> list[str]:
        """The known paths closest to ``path`` (difflib), best first: up to ``n`` of them, those
        nearly as close as the best (so ``a.bb`` suggests ``a.b``, not ``a`` as well)."""
        matches = difflib.get_close_matches(path, sorted(self.paths), n=n, cutoff=0.6)
        ratios = [difflib.SequenceMatcher(None, path, m).ratio() for m in matches]
        return [m for m, r in zip(matches, ratios, strict=True) if r >= ratios[0] - 0.1]


def names_of(mapping: Mapping[str, Any], prefix: str = "") -> KnownNames:
    """The key paths of ``mapping`` (``_`` keys left out: ductaflow's own)."""
    paths: set[str] = set()
    open_: set[str] = set()
    for key, value in mapping.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, Mapping) and value:
            inner = names_of(value, f"{path}.")
            paths |= inner.paths
            open_ |= inner.open
        elif value is None or isinstance(value, Mapping):
            open_.add(path)
    return KnownNames(frozenset(paths), frozenset(open_))


def flow_names(flow: Flow, root: Path) -> KnownNames:
    """What ``flow`` knows: its literal parameters-cell config, the other names its parameters cell
    assigns (papermill's convention), and its default config file.

    A default config that cannot be read adds nothing here (running the flow reports it).
    """
    known = names_of(flow.parameters_defaults()) | names_of(dict.fromkeys(flow.parameter_names()))
    with contextlib.suppress(DuctaflowError):
        known = known | names_of(flow.default_config(root))
    return known


def flows_names(flows: Iterable[Path | Flow], root: Path) -> KnownNames:
    """What the flows (read already, or at these paths) know together; a flow that cannot be
    read adds nothing."""
    known = KnownNames()
    for flow in flows:
        with contextlib.suppress(DuctaflowError, OSError):
            known = known | flow_names(flow if isinstance(flow, Flow) else read_flow(flow), root)
    return known


def flat_keys(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a nested config (an empty mapping is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_keys(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_paths(mapping: Mapping[str, Any], known: KnownNames, prefix: str = "") -> list[str]:
    """The key paths of ``mapping`` to check against ``known``: each key, and the keys inside
    a dict value as far as ``known`` lists them (below an open or unknown key, not further)."""
    out: list[str] = []
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if str(key).startswith("_"):
            continue
        out.append(path)
        if isinstance(value, Mapping) and path in known.paths and path not in known.open:
            out.extend(config_paths(value, known, f"{path}."))
    return out


def describe_unknown(what: str, unknown: Iterable[str], known: KnownNames) -> str:
    """``unknown scenario column 'growth_rat' (did you mean 'growth_rate'?)``, one per path, joined by '; '."""
    parts = []
    for path in unknown:
        near = known.nearest(path)
        hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
        parts.append(f"unknown {what} {path!r}{hint}")
    return "; ".join(parts)


def unknown_names(
    keys: Iterable[str], config: Mapping[str, Any], known: KnownNames, more: Callable[[], KnownNames] | None = None
) -> tuple[KnownNames, list[str], list[str]]:
    """The ``keys`` (dotted) and the key paths of ``config`` that ``known`` does not know.

    ``more`` gives further names, asked for only when something is unknown otherwise (it may
    be slow: reading earlier runs' records). Returns the names used, then the unknown keys,
    then the unknown config paths; both lists are empty when no source gave a name at all.
    """
    keys = list(keys)
    if more is not None and (known.unknown(keys) or known.unknown(config_paths(config, known))):
        known = known | more()
    if not known:
        return known, [], []
    return known, known.unknown(keys), known.unknown(config_paths(config, known))


def parse_value(raw: str, where: str) -> Any:
    """A ``-p`` value, typed as papermill types it: ``True``/``true``/``False``/``false`` are
    booleans, ``None``/``null`` is None, integers and floats are numbers, a JSON list or object
    (or a JSON-quoted string) is parsed; anything else stays the string it is. ``where`` names
    the option in errors (NaN, infinity, broken JSON)."""
    if raw in _WORDS:
        return _WORDS[raw]
    for number in (int, float):
        try:
            value = number(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{where}: a config cannot hold NaN or infinity; use -r KEY VALUE for the string")
        return value
    if raw.startswith(("[", "{")) or (len(raw) > 1 and raw[0] == raw[-1] == '"'):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc}); use -r KEY VALUE for a raw string") from None
        except RecursionError:
            raise ConfigError(f"{where}: value nested deeper than {MAX_DEPTH} levels") from None
    return raw


def nest(key: str, value: Any, where: str) -> dict[str, Any]:
    """``a.b`` and a value -> ``{"a": {"b": value}}``; an empty part is a ConfigError."""
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where} has an empty key in {key!r}")
    for part in reversed(key.split(".")):
        value = {part: value}
    return value
