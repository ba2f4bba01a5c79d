"""Plan a sweep: one build instance per scenario, every run-or-skip decision made up front.

:func:`plan_sweep` turns a table (rows checked by :mod:`.rows`) and a build into a
:class:`SweepPlan`: every flow the build names read, and for each instance the run-or-skip
decision, made here once; :func:`extend_plan` adds the follow-up rows a result proposes,
checked and decided the same way; :func:`build_tasks` turns the instances that run into the
workers' tasks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.conductor.columns import checked_names
from ductaflow.conductor.replicates import check_budget, check_options
from ductaflow.conductor.rows import (
    NAME_COLUMNS,
    RESERVED_COLUMNS,
    RESULT_COLUMNS,
    check_columns,
    plan_scenarios,
    slug,
)
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.tasks import BuildTask
from ductaflow.core.config import canonical_json, check_path, find_project_root, normalise_config
from ductaflow.core.context import RunContext
from ductaflow.core.fingerprint import fingerprint, referenced_flows
from ductaflow.core.flowfile import Flow, resolve_flow_path
from ductaflow.core.params import KnownNames, describe_unknown
from ductaflow.core.seeds import seed_counts
from ductaflow.errors import FlowFileError, ScenarioError
from ductaflow.kernels.options import KernelOptions, kernel_options
from ductaflow.lifecycle.hooks import Hooks, check_policy
from ductaflow.run.decide import Decision, decide
from ductaflow.run.tracking import Tracking
from ductaflow.store.flow_cache import FlowCache
from ductaflow.store.layout import SPOOL_DIR, contained_dir
from ductaflow.store.records import subdirs
from ductaflow.trackers.registry import check_names, make_tracker

__all__ = [
    "NAME_COLUMNS", "RESERVED_COLUMNS", "RESULT_COLUMNS", "ScenarioPlan", "SweepPlan", "build_tasks", "extend_plan",
    "plan_scenarios", "plan_sweep", "slug",
]


@dataclass(frozen=True)
class SweepPlan:
    """One conduct() call, decided before anything runs or is written: the build, the
    flows it names, where each scenario's instance goes and whether it runs, and why."""

    build: Flow
    project_root: Path
    runs_root: Path
    flows: tuple[Path, ...]  # the flow files the build names: workers must see them too
    scenarios: tuple[ScenarioPlan, ...]
    decisions: Mapping[str, Decision]  # by instance name
    kernel: KernelOptions
    columns: tuple[str, ...]  # the scenario table's columns, as text
    force: bool = False
    #: the sweep's hooks (the project's, the entry points', the caller's); their specs reach the builds
    hooks: Hooks = field(default_factory=lambda: Hooks([]), compare=False)
    trackers: tuple[str, ...] = ()  # tracker names the caller chose (the project's are read where builds run)
    #: the flows as parsed, kept for the next plan once this sweep has run (a dry run writes nothing)
    parsed: FlowCache | None = field(default=None, compare=False)
    #: how more rows (follow-ups) are planned like the first: the base config, what the flows
    #: know, the flows' code hashes and the table options
    rules: PlanRules | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.build.name

    @property
    def build_dir(self) -> Path:
        return self.runs_root / self.build.name

    def instance_dir(self, instance: str) -> Path:
        return self.build_dir / instance

    @property
    def to_run(self) -> list[ScenarioPlan]:
        """The scenarios that run, in table order (the rest are up to date)."""
        return [p for p in self.scenarios if self.decisions[p.instance].run]

    def context(self, scenario: ScenarioPlan) -> RunContext:
        """What the build of ``scenario`` and its flows label their records and ledger rows with."""
        return RunContext(
            project_root=str(self.project_root),
            runs_root=str(self.runs_root),
            build=self.name,
            scenario=scenario.values,
            ledger_spool=str(self.runs_root / SPOOL_DIR / self.name / scenario.instance),
            force=self.force,
            seed=scenario.config.get("_seed"),
            pass_seed=seed_counts(scenario.config),
            hooks=self.hooks.specs,
            hooks_fail=self.hooks.policy,
            trackers=self.trackers,
        )


@dataclass(frozen=True)
class PlanRules:
    """What planning the first rows settled, kept to plan more rows of the same sweep the same way."""

    base: Mapping[str, Any]
    known: KnownNames
    hashes: Mapping[str, str]  # flow name -> code hash, shared by every scenario's fingerprint
    instance_column: str | None = None
    only_failed: bool = False
    allow_unknown: bool = False
    replicates: int | None = None
    seed: int | None = None


def plan_sweep(
    table: pd.DataFrame | None,
    build: str | Path,
    *,
    base_config: Mapping[str, Any] | str | Path | None = None,
    runs_root: str | Path = "runs",
    instance_column: str | None = None,
    project_root: str | Path | None = None,
    preload: Sequence[str] | None = None,
    force: bool = False,
    only_failed: bool = False,
    allow_unknown: bool = False,
    replicates: int | None = None,
    seed: int | None = None,
    max_runs: int | None = None,
    hooks: Sequence[object] = (),
    hooks_fail: str | None = None,
    trackers: Sequence[str] = (),
    scenarios: Sequence[ScenarioPlan] = (),
) -> SweepPlan:
    """Check the build, every flow it names and every row of ``table``, and decide for each
    instance whether it runs; raises before anything is written or started.

    Every scenario column and ``base_config`` key must be a parameter the build or one of its
    flows knows (:func:`~ductaflow.conductor.columns.checked_names`); ``allow_unknown`` only
    logs the others. ``replicates``/``seed``: see :func:`plan_scenarios`; a plan that would run
    more than ``max_runs`` builds is refused. ``scenarios`` planned before (a resumed sweep's)
    come first, decided again; ``table`` may then be None.
    """
    check_options(replicates, seed, max_runs)
    check_path(runs_root, "runs root")
    if project_root:
        check_path(project_root, "project root")
    build_path = _existing_flow(resolve_flow_path(build, project_root))
    root = Path(project_root).resolve() if project_root else find_project_root(build_path)
    runs = Path(runs_root)
    runs = (runs if runs.is_absolute() else root / runs).resolve()
    parsed = FlowCache(runs)
    build_flow = parsed.read(build_path)
    flows = _read_flows(build_flow, root, parsed)
    build_dir = runs / build_flow.name
    base = _base_config(build_flow, root, base_config)
    cols, name_col = check_columns(table, instance_column) if table is not None else ([], None)
    known = checked_names([c for c in cols if c != name_col], base, build_flow, root, flows.values(), build_dir,
                          allow_unknown=allow_unknown)  # fmt: skip
    rules = PlanRules(base, known, {path.stem: flow.code_hash() for path, flow in flows.items()}, instance_column,
                      only_failed, allow_unknown, replicates, seed)  # fmt: skip
    present = set(subdirs(build_dir)) if replicates is not None else set()  # replicates keep their padding
    planned = list(scenarios)
    if table is not None:
        planned += plan_scenarios(table, base, instance_column, known, replicates=replicates, seed=seed,
                                  existing=present, first_row=len(planned))  # fmt: skip
    loaded, names = _hooks_and_trackers(root, runs, hooks, hooks_fail, trackers)
    plan = SweepPlan(build_flow, root, runs, tuple(flows), (), {}, kernel_options(root, preload),
                     _columns(table, planned), force, loaded, names, parsed, rules)  # fmt: skip
    plan = _with_decided(plan, planned)
    check_budget(len(plan.to_run), max_runs, len(plan.scenarios))
    return plan


def _columns(table: pd.DataFrame | None, planned: Sequence[ScenarioPlan]) -> tuple[str, ...]:
    """The scenario columns: the table's, after those of scenarios planned before (a resumed sweep's)."""
    earlier = (k for p in planned for k in p.values)
    return tuple(dict.fromkeys([*earlier, *(str(c) for c in (table.columns if table is not None else ()))]))


def _with_decided(plan: SweepPlan, scenarios: Sequence[ScenarioPlan]) -> SweepPlan:
    """``plan`` with ``scenarios`` added, each with its run-or-skip decision (made here, once)."""
    assert plan.rules is not None
    for folder in [plan.build_dir, *(plan.instance_dir(p.instance) for p in scenarios)]:
        if os.path.lexists(folder):  # refused up front (exit 2), not as a red row from the worker
            contained_dir(folder, [plan.runs_root])
    decisions = dict(plan.decisions)
    for p in scenarios:
        decisions[p.instance] = decide(
            plan.instance_dir(p.instance),
            plan.build.name,
            fingerprint(plan.build, p.config, plan.project_root, flows=plan.rules.hashes),
            p.config,
            force=plan.force,
            only_failed=plan.rules.only_failed,
            root=plan.project_root,
        )
    return replace(plan, scenarios=(*plan.scenarios, *scenarios), decisions=decisions)


def scenario_key(config: Mapping[str, Any]) -> str:
    """What makes two scenarios the same: their config, less the name and the seed derived from it."""
    return canonical_json({k: v for k, v in config.items() if k not in ("_instance", "_seed")})


def extend_plan(plan: SweepPlan, rows: Sequence[Mapping[str, Any]], parent: str | None) -> tuple[SweepPlan, int]:
    """``plan`` with ``rows`` (proposed by ``parent``'s result) planned and decided like the first
    table; rows equal to a scenario already planned are dropped. Returns the plan and how many
    were dropped; bad rows raise :class:`ScenarioError` naming ``parent``."""
    rules = plan.rules
    assert rules is not None
    who = f"follow-up rows of {parent}" if parent else "added rows"
    table = pd.DataFrame([dict(r) for r in rows])
    try:
        cols, name_col = check_columns(table, rules.instance_column)
        bad = rules.known.unknown([c for c in cols if c != name_col]) if rules.known and not rules.allow_unknown else []
        if bad:
            raise ScenarioError(describe_unknown("column", bad, rules.known))
        new = plan_scenarios(table, rules.base, rules.instance_column, rules.known, replicates=rules.replicates,
                             seed=rules.seed, first_row=len(plan.scenarios), parent=parent)  # fmt: skip
    except ScenarioError as exc:
        raise ScenarioError(f"{who}: {exc}") from None
    seen = {scenario_key(p.config): p.instance for p in plan.scenarios}
    names = {p.instance.lower(): p for p in plan.scenarios}
    fresh: list[ScenarioPlan] = []
    for p in new:
        key = scenario_key(p.config)
        if key in seen:
            continue
        clash = names.get(p.instance.lower())
        if clash is not None:
            raise ScenarioError(f"{who}: instance '{p.instance}' is already a scenario of this sweep, "
                                f"with other values ({clash.values} against {p.values})")  # fmt: skip
        seen[key] = p.instance
        names[p.instance.lower()] = p
        fresh.append(p)
    columns = tuple(dict.fromkeys([*plan.columns, *(str(c) for c in table.columns)]))
    return _with_decided(replace(plan, columns=columns), fresh), len(new) - len(fresh)


def _hooks_and_trackers(
    root: Path, runs: Path, hooks: Sequence[object], hooks_fail: str | None, trackers: Sequence[str]
) -> tuple[Hooks, tuple[str, ...]]:
    """The sweep's hooks, loaded, and the tracker names the caller chose; a hook that cannot be
    loaded, or a tracker that is unknown or not installed, refuses the sweep here (exit 2)."""
    loaded = Hooks.load(root, hooks, check_policy(hooks_fail or "record"))
    names = check_names(list(trackers), "trackers")
    for name in Tracking(RunContext(project_root=str(root), trackers=names)).names:
        make_tracker(name, runs)
    return loaded, names


def _existing_flow(path: Path) -> Path:
    """``path``, resolved, once it is known to be a flow file that exists (the runs root and the
    flow cache are found from it before it is parsed)."""
    check_path(path, "flow file", FlowFileError)
    if not path.is_file():
        raise FlowFileError(f"flow file not found: {path}")
    return path.resolve()


def _read_flows(build: Flow, root: Path, parsed: FlowCache) -> dict[Path, Flow]:
    """Every flow the build names, read (and checked to exist) once."""
    flows: dict[Path, Flow] = {}
    for path in referenced_flows(build, root):
        if not path.is_file():
            raise FlowFileError(f"build {build.path.name} runs {path}, which does not exist")
        flows[path] = parsed.read(path)
    return flows


def _base_config(build: Flow, root: Path, given: Mapping[str, Any] | str | Path | None) -> dict[str, Any]:
    """The config every row is merged over: the one given, else the build's default config."""
    if given is not None:
        return normalise_config(given, "base_config")
    default = build.default_config_path(root)
    return normalise_config(default) if default else {}


def build_tasks(
    plan: SweepPlan,
    *,
    attempts: Path,
    conductor: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    lost_retries: int = 0,
    kernel_template: str | None = None,
    html: str = "failed",
    scenarios: Sequence[ScenarioPlan] | None = None,
) -> list[BuildTask]:
    """One worker task per scenario that runs (of ``scenarios``, default all), carrying the
    decision made for it here.

    ``attempts`` is the folder of their attempt files; ``conductor`` the identity of the
    conductor process (workers it started stop their builds if it dies); ``html`` which of
    a build's notebooks the worker renders as pages once the build has ended.
    """
    return [
        BuildTask(
            build_path=plan.build.path,
            config=p.config,
            instance_dir=plan.instance_dir(p.instance),
            project_root=plan.project_root,
            instance=p.instance,
            context=plan.context(p),
            decision=plan.decisions[p.instance],
            timeout=timeout,
            force=plan.force,
            attempt_file=attempts / f"{p.instance}.json",
            lost_retries=lost_retries,
            conductor=conductor,
            preload=plan.kernel.preload,
            kernel_template=kernel_template,
            html=html,
        )
        for p in (plan.to_run if scenarios is None else scenarios)
    ]
