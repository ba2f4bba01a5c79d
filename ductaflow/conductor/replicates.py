"""Replicates and seeds of a scenario table: each row run N times, each run with its own seed.

Replicate ``k`` of scenario ``name`` is the instance ``name__r<k>`` (``k`` from 1, padded to
the width of N) with ``config["_replicate"] = k``; every instance's config carries
``_seed = derive_seed(study_seed, name, k)`` (``k = 0`` without replicates, see
:mod:`ductaflow.core.seeds`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import replace

from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.core.names import validate_name
from ductaflow.core.seeds import DEFAULT_STUDY_SEED, REPLICATE_SUFFIX, check_int, derive_seed, replicate_name
from ductaflow.errors import InvalidName, ScenarioError


def check_options(replicates: int | None, seed: int | None, max_runs: int | None) -> None:
    """Refuse a bad ``replicates``, ``seed`` or ``max_runs`` before anything is read or runs."""
    if replicates is not None:
        check_int(replicates, "replicates", 1)
    if seed is not None:
        check_int(seed, "seed")
    if max_runs is not None:
        check_int(max_runs, "max_runs", 1)


def with_seeds(
    plans: Sequence[ScenarioPlan], replicates: int | None, seed: int | None, existing: Container[str] = ()
) -> list[ScenarioPlan]:
    """Each scenario with its seed, or, with ``replicates``, its N replicates with theirs.

    ``existing`` holds the build's instance names already on disk: a replicate that exists
    under another padding (``x__r1`` from N=9, now N=10 would say ``x__r01``) keeps its
    instance, so raising N runs only the new replicates and no replicate is counted twice."""
    study = DEFAULT_STUDY_SEED if seed is None else seed
    if replicates is None:
        return [replace(p, config={**p.config, "_seed": derive_seed(study, p.instance, 0)}) for p in plans]
    ambiguous = [f"row {p.row} ('{p.instance}')" for p in plans if REPLICATE_SUFFIX.search(p.instance)]
    if ambiguous:
        raise ScenarioError(
            f"scenario name(s) ending in '__r<digits>' are ambiguous with replicates on: {', '.join(ambiguous)}; "
            "rename them (replicate k of scenario 'x' is the instance 'x__r<k>')"
        )
    out: list[ScenarioPlan] = []
    for p in plans:
        for k in range(1, replicates + 1):
            name = _replicate_instance(p.instance, k, replicates, existing)
            try:
                validate_name(name, f"replicate {k} of row {p.row}")
            except InvalidName as exc:  # a name at the length limit
                raise ScenarioError(str(exc)) from None
            config = {**p.config, "_instance": name, "_replicate": k, "_seed": derive_seed(study, p.instance, k)}
            out.append(replace(p, instance=name, config=config))
    return out


def _replicate_instance(name: str, k: int, replicates: int, existing: Container[str]) -> str:
    """``replicate_name``, unless replicate ``k`` of ``name`` is on disk under another padding."""
    canonical = replicate_name(name, k, replicates)
    if canonical in existing:
        return canonical
    for width in range(len(str(k)), _MAX_WIDTH + 1):
        other = f"{name}__r{k:0{width}d}"
        if other != canonical and other in existing:
            return other
    return canonical


_MAX_WIDTH = 7  # replicate numbers up to 9,999,999


def check_budget(to_run: int, max_runs: int | None, total: int) -> None:
    """Refuse a plan that would run more than ``max_runs`` builds (up-to-date ones not counted)."""
    if max_runs is not None and to_run > max_runs:
        raise ScenarioError(
            f"the plan would run {to_run} build(s) (of {total} instance(s); up-to-date ones are not counted), "
            f"more than max_runs={max_runs}; raise the budget or narrow the table"
        )
