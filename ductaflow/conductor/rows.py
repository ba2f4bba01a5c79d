"""The rows of a scenario table, checked and turned into :class:`ScenarioPlan` values.

Instance names come from a chosen column, else a ``scenario_name``/``instance`` column,
else a readable slug of the row's values plus a short hash of all of them. Used for the
table a sweep starts with and for the follow-up rows its results propose.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Container, Mapping
from typing import Any

import pandas as pd

from ductaflow.conductor.replicates import check_options, with_seeds
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.core.config import canonical_json, deep_merge, to_jsonable
from ductaflow.core.names import validate_name
from ductaflow.core.params import KnownNames
from ductaflow.errors import ConfigError, InvalidName, ScenarioError

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
    first_row: int = 0,
    parent: str | None = None,
) -> list[ScenarioPlan]:
    """Check every row and turn it into a :class:`ScenarioPlan`; all problems in one error.

    The name column is not a parameter, unless ``known`` (what the build's flows know) has a
    key of that name: then it is passed too. Every plan's config gets its ``_seed``; with
    ``replicates`` each row becomes that many plans (:mod:`ductaflow.conductor.replicates`).
    """
    check_options(replicates, seed, None)
    columns, name_col = check_columns(table, instance_column)
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
        plans.append(ScenarioPlan(first_row + pos, name, values, config, parent))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ScenarioError(f"scenario table has {len(problems)} problem(s):\n  {shown}{more}")
    return with_seeds(plans, replicates, seed, existing)


def check_columns(table: pd.DataFrame, instance_column: str | None) -> tuple[list[str], str | None]:
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
