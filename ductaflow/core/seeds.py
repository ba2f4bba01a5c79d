"""Seeds: one deterministic seed per run, derived from the study seed, the scenario and the replicate.

``derive_seed(study, name, k)`` is the first 4 bytes (big-endian) of
``sha256(f"{study}\\x00{name}\\x00{k}")``: an int in ``0 .. 2**32 - 1`` (numpy's legacy
seed range), the same on every machine and Python. Replicate ``k`` of scenario ``name``
runs as instance ``name__r<k>`` (``k`` from 1, zero-padded to the width of the count);
without replicates ``k`` is 0. Nothing here imports numpy at import time.
"""

from __future__ import annotations

import hashlib
import importlib
import numbers
import os
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ductaflow.core.context import RunContext
from ductaflow.errors import ConfigError, ScenarioError

#: The study seed when none is given.
DEFAULT_STUDY_SEED = 0
#: A replicate's instance name: the scenario's, then ``__r`` and the replicate number.
REPLICATE_SUFFIX = re.compile(r"__r\d+$")


def derive_seed(study_seed: int, name: str, replicate: int = 0) -> int:
    """The seed of replicate ``replicate`` of scenario ``name`` in a study seeded ``study_seed``.

    First 4 bytes, big-endian, of sha256 over ``f"{study_seed}\\x00{name}\\x00{replicate}"``.
    """
    digest = hashlib.sha256(f"{study_seed}\x00{name}\x00{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def check_int(value: Any, what: str, minimum: int | None = None) -> int:
    """``value`` as an int (bool refused), at least ``minimum``; else a ScenarioError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers too
        raise ScenarioError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{what} must be at least {minimum}, got {value}")
    return int(value)


#: A run's seed is in numpy's legacy range, 0 .. 2**32 - 1 (``random`` takes any int).
SEED_LIMIT = 2**32


def check_run_seed(value: Any, where: str) -> None:
    """Refuse a ``_seed`` the kernel could not be seeded with exactly (a string, a float, a bool,
    a negative or too large number): it would otherwise be ignored while the config records it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) < SEED_LIMIT:
        raise ConfigError(f"{where}: _seed must be an integer from 0 to {SEED_LIMIT - 1}, not {value!r}")


def replicate_name(name: str, replicate: int, replicates: int) -> str:
    """Instance name of replicate ``replicate`` (1-based) of ``name``, padded to the width of ``replicates``."""
    return f"{name}__r{replicate:0{len(str(replicates))}d}"


def default_seed(config: Mapping[str, Any]) -> int | None:
    """The seed a run gets with no study seed and no replicates (None without an ``_instance``)."""
    name = config.get("_instance")
    return derive_seed(DEFAULT_STUDY_SEED, str(name), 0) if name is not None else None


def seed_counts(config: Mapping[str, Any]) -> bool:
    """Whether ``_seed`` belongs in the fingerprint: when it differs from the default derivation
    (a study seed or replicates were asked for), so existing instances keep their fingerprint."""
    if "_seed" not in config:
        return False
    return "_replicate" in config or config["_seed"] != default_seed(config)


def run_seed(config: Mapping[str, Any], parent_seed: int | None, instance: str) -> int:
    """The seed a run's kernel is seeded with: its config's ``_seed``, else one derived from the
    seed of the run that started it (a build's step) or from the default study seed, and its instance name."""
    given = config.get("_seed")
    if isinstance(given, numbers.Integral) and not isinstance(given, bool):  # numpy integers too
        return int(given)
    return derive_seed(DEFAULT_STUDY_SEED if parent_seed is None else parent_seed, instance, 0)


def seed(config: Mapping[str, Any] | None = None) -> int:
    """This run's seed: ``config["_seed"]`` when a config is given and holds one, else the seed
    ductaflow started this process's run with (a flow's kernel; script mode and interactive
    sessions set it in ``flow_config``), else ``derive_seed(0, <working directory name>, 0)``."""
    given = config.get("_seed") if config is not None else None
    if isinstance(given, numbers.Integral) and not isinstance(given, bool):
        return int(given)
    ctx = RunContext.inherited()  # a flow's kernel is started with its run's seed
    if ctx is not None and ctx.seed is not None:
        return int(ctx.seed)
    return derive_seed(DEFAULT_STUDY_SEED, os.path.basename(os.getcwd()), 0)


def seed_globals(value: int) -> None:
    """Seed ``random`` and, when installed, numpy's legacy global state with ``value``."""
    random.seed(value)
    np = _numpy()
    if np is not None:
        np.random.seed(value)


def _numpy() -> Any:
    """numpy, imported if installed (seeding its global state needs it), else None."""
    try:  # lazy: numpy is heavy and not a dependency of ductaflow; imported only to seed it
        return importlib.import_module("numpy")
    except ImportError:
        return None


@contextmanager
def reproducible_seed(value: int) -> Iterator[int]:
    """Seed ``random`` and numpy's legacy global state for the block, then restore both."""
    saved = random.getstate()
    np = _numpy()
    saved_np = np.random.get_state() if np is not None else None
    seed_globals(value)
    try:
        yield value
    finally:
        random.setstate(saved)
        if np is not None:
            np.random.set_state(saved_np)


def kernel_seed_code(value: int) -> str:
    """Code a flow's kernel runs before its first cell: seed its global random states."""
    return (
        "def _ductaflow_seed(value):\n"
        "    import importlib.util, random\n"
        "    random.seed(value)\n"
        "    if importlib.util.find_spec('numpy') is not None:\n"
        "        import numpy\n"
        "        numpy.random.seed(value)\n"
        f"_ductaflow_seed({int(value)})\n"
        "del _ductaflow_seed\n"
    )

