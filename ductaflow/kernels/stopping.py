"""Stop requests for builds, by instance directory, for this process.

A Ctrl-C cannot reach a build that runs in a worker thread (Dask) and must not be raised
at an arbitrary point of a worker's main thread (an exception inside an import leaves
the import lock broken). Instead a stop is *requested* here: kernels already running for
that directory are interrupted by the engine, and one that starts afterwards is stopped
at once. Kept tiny and import-free so a signal handler can use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_REQUESTED: set[str] = set()


def _key(instance_dir: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(instance_dir))


def request(instance_dirs: Iterable[str | os.PathLike[str]]) -> set[str]:
    """Record that the builds in ``instance_dirs`` must stop; returns their keys."""
    keys = {_key(d) for d in instance_dirs}
    _REQUESTED.update(keys)
    return keys


def requested(instance_dir: str | os.PathLike[str] | None) -> bool:
    """True when a stop was requested for ``instance_dir`` and not yet forgotten."""
    return instance_dir is not None and _key(instance_dir) in _REQUESTED


def forget(instance_dir: str | os.PathLike[str]) -> None:
    """A new build of ``instance_dir`` starts: an older request no longer applies."""
    _REQUESTED.discard(_key(instance_dir))
