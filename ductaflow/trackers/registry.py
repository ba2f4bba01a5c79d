"""Tracker names: ``noop`` (always there), ``mlflow`` and ``wandb`` (optional extras), and any
adapter an installed package names in the ``ductaflow.trackers`` entry-point group."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ductaflow.errors import ConfigError, MissingExtra
from ductaflow.trackers.base import TrackerAdapter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ductaflow.trackers"
#: Built-in adapters: name -> (module, class, extra, the module the extra installs).
BUILT_IN = {
    "noop": ("ductaflow.trackers.noop", "NoopTracker", None, None),
    "mlflow": ("ductaflow.trackers.mlflow", "MlflowTracker", "mlflow", "mlflow"),
    "wandb": ("ductaflow.trackers.wandb", "WandbTracker", "wandb", "wandb"),
}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points  # deferred: scanning installed packages costs ~10 ms

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every tracker name this installation knows."""
    return sorted({*BUILT_IN, *_entry_points()})


def check_names(given: list[str] | tuple[str, ...], where: str) -> tuple[str, ...]:
    """``given`` when every name is known, else a :class:`ConfigError` with the nearest names."""
    if all(name in BUILT_IN for name in given):  # (no scan of the installed packages for these)
        return tuple(dict.fromkeys(given))
    known = names()
    for name in given:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"{where}: unknown tracker {name!r}{hint}; known: {', '.join(known)}")
    return tuple(dict.fromkeys(given))


@contextlib.contextmanager
def quiet(what: str) -> Iterator[None]:
    """Keep what a tracker library prints or warns (on import, on a call) out of the flow's output,
    where a ``Warning`` line would turn the run orange; it goes to ductaflow's log instead."""
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):  # fmt: skip
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("%s warned: %s: %s", what, w.category.__name__, w.message)
    if out.getvalue().strip():
        log.debug("%s printed: %s", what, out.getvalue().strip())


def make_tracker(name: str, runs_root: str | Path | None) -> TrackerAdapter:
    """The adapter called ``name``; :class:`MissingExtra` (exit 2) when its extra is not installed."""
    with quiet(f"tracker {name}"):
        return _make(name, runs_root)


def _make(name: str, runs_root: str | Path | None) -> TrackerAdapter:
    if name in BUILT_IN:
        module, cls_name, extra, needs = BUILT_IN[name]
        if needs is not None and importlib.util.find_spec(needs) is None:
            raise MissingExtra(f"the {name} tracker", str(extra), needs)
        cls = getattr(importlib.import_module(module), cls_name)
    elif name in _entry_points():
        module, _, attr = _entry_points()[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        raise ConfigError(f"unknown tracker {name!r}; known: {', '.join(names())}")
    return cls(runs_root)
