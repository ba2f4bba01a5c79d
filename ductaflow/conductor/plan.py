"""Plan one build instance per row of a scenario table (built and loaded by :mod:`.tables`).

Instance names come from a chosen column, else a ``scenario_name``/``instance`` column,
else a readable slug of the row's values plus a short hash of all of them.

:func:`plan_sweep` turns a table and a build into a :class:`SweepPlan`: every row checked,
every flow the build names read, and for each instance the run-or-skip decision, made
here once; :func:`build_tasks` turns the instances that run into the workers' tasks.
"""

from __future__ import annotations

import hashlib
import keyword
import os
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.conductor.columns import checked_names
from ductaflow.conductor.replicates import check_budget, check_options, with_seeds
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.tasks import BuildTask
from ductaflow.core.config import (
    canonical_json,
    check_path,
    deep_merge,
    find_project_root,
    normalise_config,
    to_jsonable,
)
from ductaflow.core.context import RunContext
from ductaflow.core.fingerprint import fingerprint, referenced_flows
from ductaflow.core.flowfile import Flow, resolve_flow_path
from ductaflow.core.names import validate_name
from ductaflow.core.params import KnownNames
from ductaflow.core.seeds import seed_counts
from ductaflow.errors import ConfigError, FlowFileError, InvalidName, ScenarioError
from ductaflow.kernels.options import KernelOptions, kernel_options
from ductaflow.lifecycle.hooks import Hooks, check_policy
from ductaflow.run.decide import Decision, decide
from ductaflow.run.tracking import Tracking
from ductaflow.store.flow_cache import FlowCache
from ductaflow.store.layout import SPOOL_DIR, contained_dir
from ductaflow.store.records import subdirs
from ductaflow.trackers.registry import check_names, make_tracker

NAME_COLUMNS = ("scenario_name", "instance")
#: Columns the conductor adds to the returned table; a scenario column may not use them.
RESULT_COLUMNS = ("instance", "status", "state", "duration", "instance_dir", "error", "worst_flow")
#: Scenario columns that would collide with what the conductor adds (``explain`` adds the last two).
RESERVED_COLUMNS = (*RESULT_COLUMNS[1:], "action", "reasons")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9.=+-]+")


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Columns named ``a.b`` set nested keys, so a table can reach into a build's config."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        out = deep_merge(out, nested)
    return out


def slug(values: Mapping[str, Any]) -> str:
    """A readable, safe, unique-enough name for a row: its values joined, plus a hash."""
    digest = hashlib.sha1(canonical_json(values).encode()).hexdigest()[:6]
    text = "_".join(_SLUG_UNSAFE.sub("-", str(v)).strip("-.") or "x" for v in values.values())
    return f"{text[:80].strip('_-.') or 'scenario'}-{digest}"


def _check_parameter_columns(columns: list[str]) -> None:
    """Column names must say which config key they set: ``a`` or ``a.b`` (key b inside a)."""
    for col in columns:
        parts = col.split(".")
        head = parts[0]
        if not head.isidentifier() or keyword.iskeyword(head):
            raise ScenarioError(
                f"scenario column {col!r} is not a parameter name: '{head}' must be a Python name "
                "(letters, digits and _, not starting with a digit); 'a.b' sets key b inside a"
            )
        if not all(parts):
            raise ScenarioError(f"scenario column {col!r} has an empty part between dots")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in columns:
                raise ScenarioError(
                    f"scenario columns {prefix!r} and {col!r} both set '{prefix}': one replaces it, "
                    "the other reaches inside it; keep one"
                )


def plan_scenarios(
    table: pd.DataFrame,
    base_config: Mapping[str, Any] | None = None,
    instance_column: str | None = None,
    known: KnownNames | None = None,
    *,
    replicates: int | None = None,
    seed: int | None = None,
    existing: Container[str] = (),
) -> list[ScenarioPlan]:
    """Check every row and turn it into a :class:`ScenarioPlan`; all problems in one error.

    The name column is not a parameter, unless ``known`` (what the build's flows know) has a
    key of that name: then it is passed too. Every plan's config gets its ``_seed``; with
    ``replicates`` each row becomes that many plans (:mod:`ductaflow.conductor.replicates`).
    """
    check_options(replicates, seed, None)
    columns, name_col = _check_columns(table, instance_column)
    keep_name = known is not None and name_col is not None and known.knows(name_col)
    problems: list[str] = []
    plans: list[ScenarioPlan] = []
    seen: dict[str, int] = {}
    cells = {col: table[col].tolist() for col in columns}  # Python objects, None kept apart from NaN
    for pos in range(len(table)):
        values = _row_values(cells, pos, problems)
        name = _instance_name(values, columns, name_col, pos, problems)
        if name is None:
            continue
        key = name.lower()  # case-insensitive file systems would merge these
        if key in seen:
            problems.append(f"rows {seen[key]} and {pos} both name instance '{name}'")
            continue
        seen[key] = pos
        row_cfg = {k: v for k, v in values.items() if k != name_col or keep_name}
        config = deep_merge(dict(base_config or {}), _nest(row_cfg))
        config["_instance"] = name
        plans.append(ScenarioPlan(pos, name, values, config))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ScenarioError(f"scenario table has {len(problems)} problem(s):\n  {shown}{more}")
    return with_seeds(plans, replicates, seed, existing)


def _check_columns(table: pd.DataFrame, instance_column: str | None) -> tuple[list[str], str | None]:
    """The table's column names, checked, and the column that names instances (if any)."""
    if len(table) == 0:
        raise ScenarioError("the scenario table is empty")
    labels = list(table.columns)
    odd = [c for c in labels if not isinstance(c, str)]
    if odd:
        raise ScenarioError(f"scenario column names must be text; found {odd!r} (give the table a header row)")
    columns = [str(c) for c in labels]
    bad_cols = [c for c in columns if c.startswith("_") or c in RESERVED_COLUMNS]
    if bad_cols:
        raise ScenarioError(
            f"scenario column(s) {bad_cols} clash with names ductaflow uses "
            f"(columns starting with '_' and {list(RESERVED_COLUMNS)}); rename them"
        )
    if len(set(columns)) != len(columns):
        raise ScenarioError(f"scenario table has duplicate column names: {columns}")
    name_col = instance_column or next((c for c in NAME_COLUMNS if c in columns), None)
    if instance_column and instance_column not in columns:
        raise ScenarioError(f"instance_column '{instance_column}' is not a column of the table ({columns})")
    if "instance" in columns and name_col != "instance":
        raise ScenarioError(
            f"scenario column 'instance' would be overwritten by the instance names (they come from '{name_col}'); "
            "rename it, or pass instance_column='instance' to name instances by it"
        )
    _check_parameter_columns([c for c in columns if c != name_col])
    return columns, name_col


def _row_values(cells: Mapping[str, list[Any]], pos: int, problems: list[str]) -> dict[str, Any]:
    """Row ``pos`` as JSON-safe values; an empty or unusable cell is left out and reported."""
    values: dict[str, Any] = {}
    for col, column in cells.items():
        raw_value = column[pos]
        if raw_value is None or (pd.api.types.is_scalar(raw_value) and pd.isna(raw_value)):
            problems.append(f"row {pos}, column '{col}' is empty ({raw_value!r}): every row needs a value")
            continue
        try:
            values[col] = to_jsonable(raw_value, f"row {pos}, column '{col}'")
        except ConfigError as exc:
            problems.append(str(exc))
    return values


def _instance_name(
    values: Mapping[str, Any], columns: list[str], name_col: str | None, pos: int, problems: list[str]
) -> str | None:
    """Row ``pos``'s instance name, or None when it has no valid one (reported)."""
    if name_col is not None:
        if name_col not in values:  # its cell is empty or unusable: already reported
            return None
        raw = values[name_col]
        name = raw if isinstance(raw, str) else str(raw)
    else:
        name = slug({c: values.get(c) for c in columns})
    try:
        validate_name(name, f"instance name of row {pos}")
    except InvalidName as exc:
        problems.append(str(exc))
        return None
    return name


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


def plan_sweep(
    table: pd.DataFrame,
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
) -> SweepPlan:
    """Check the build, every flow it names and every row of ``table``, and decide for each
    instance whether it runs; raises before anything is written or started.

    Every scenario column and ``base_config`` key must be a parameter the build or one of its
    flows knows (:func:`~ductaflow.conductor.columns.checked_names`); ``allow_unknown`` only
    logs the others. ``replicates``/``seed``: see :func:`plan_scenarios`; a plan that would run
    more than ``max_runs`` builds is refused.
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
    hashes = {path.stem: flow.code_hash() for path, flow in flows.items()}  # shared by every scenario's fingerprint
    build_dir = runs / build_flow.name
    base = _base_config(build_flow, root, base_config)
    cols, name_col = _check_columns(table, instance_column)  # the name column is not a parameter
    known = checked_names([c for c in cols if c != name_col], base, build_flow, root, flows.values(), build_dir,
                          allow_unknown=allow_unknown)
    present = set(subdirs(build_dir)) if replicates is not None else set()  # replicates keep their padding
    scenarios = plan_scenarios(table, base, instance_column, known, replicates=replicates, seed=seed, existing=present)
    kernel = kernel_options(root, preload)
    for folder in [build_dir, *(build_dir / p.instance for p in scenarios)]:
        if os.path.lexists(folder):  # refused up front (exit 2), not as a red row from the worker
            contained_dir(folder, [runs])
    decisions = {
        p.instance: decide(
            build_dir / p.instance,
            build_flow.name,
            fingerprint(build_flow, p.config, root, flows=hashes),
            p.config,
            force=force,
            only_failed=only_failed,
            root=root,
        )
        for p in scenarios
    }
    check_budget(sum(d.run for d in decisions.values()), max_runs, len(scenarios))
    columns = tuple(str(c) for c in table.columns)
    loaded, names = _hooks_and_trackers(root, runs, hooks, hooks_fail, trackers)
    return SweepPlan(build_flow, root, runs, tuple(flows), tuple(scenarios), decisions, kernel, columns, force,
                     loaded, names, parsed)


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
) -> list[BuildTask]:
    """One worker task per scenario that runs, carrying the decision made for it here.

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
        for p in plan.to_run
    ]
