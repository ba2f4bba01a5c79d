"""Scenario tables: build them (expand_grid), load them, and plan one build instance per row.

Instance names come from a chosen column, else a ``scenario_name``/``instance`` column,
else a readable slug of the row's values plus a short hash of all of them.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.config import canonical_json, deep_merge, to_jsonable
from ductaflow.errors import ConfigError, InvalidName, ScenarioError
from ductaflow.rundir import validate_name

NAME_COLUMNS = ("scenario_name", "instance")
#: Columns the conductor adds to the returned table; a scenario column may not use them.
RESULT_COLUMNS = ("instance", "status", "state", "duration", "instance_dir", "error", "worst_flow")
#: Scenario columns that would collide with what the conductor adds (``explain`` adds the last two).
RESERVED_COLUMNS = (*RESULT_COLUMNS[1:], "action", "reasons")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9.=+-]+")


def expand_grid(*frames: pd.DataFrame, **dimensions: Iterable[Any] | pd.DataFrame) -> pd.DataFrame:
    """Every combination of the given dimensions, one row each, in a stable order.

    A keyword with a list gives one column; a DataFrame (positional or keyword) contributes
    its columns row-wise, so linked parameters stay together.
    """
    parts: list[pd.DataFrame] = list(frames)
    for name, values in dimensions.items():
        if isinstance(values, pd.DataFrame):
            parts.append(values)
        elif isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ScenarioError(f"expand_grid: dimension '{name}' must be a list of values, got {values!r}")
        else:
            parts.append(pd.DataFrame({name: list(values)}))
    if not parts:
        raise ScenarioError("expand_grid needs at least one dimension")
    out = parts[0].reset_index(drop=True)
    for part in parts[1:]:
        clash = set(out.columns) & set(part.columns)
        if clash:
            raise ScenarioError(f"expand_grid: column(s) {sorted(clash)} given twice")
        out = out.merge(part.reset_index(drop=True), how="cross")
    return out


def load_scenarios(scenarios: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A scenario table from a DataFrame or a CSV/Parquet file."""
    if isinstance(scenarios, pd.DataFrame):
        return scenarios
    path = Path(scenarios)
    if not path.is_file():
        raise ScenarioError(f"scenario table not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            header = _csv_header(path)
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:  # pandas would silently rename the second one to 'name.1' (a nested key!)
                raise ScenarioError(f"scenario table {path}: column(s) {twice} appear more than once in the header")
            return pd.read_csv(path)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except ScenarioError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise ScenarioError(f"cannot read scenario table {path}: {exc}") from None
    raise ScenarioError(f"scenario table {path} must be .csv or .parquet")


def _csv_header(path: Path) -> list[str]:
    """The first row of a CSV file, as written (UTF-8, a byte order mark allowed)."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


@dataclass(frozen=True)
class ScenarioPlan:
    """One row of the table, ready to run: its name, its values and its full config.

    The config is the row over the base config, without the name column, plus
    ``_instance`` (the instance name) for flows that want to label their output.
    """

    row: int
    instance: str
    values: dict[str, Any]
    config: dict[str, Any]


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
    table: pd.DataFrame, base_config: Mapping[str, Any] | None = None, instance_column: str | None = None
) -> list[ScenarioPlan]:
    """Check every row and turn it into a :class:`ScenarioPlan`; all problems in one error."""
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
    problems: list[str] = []
    plans: list[ScenarioPlan] = []
    seen: dict[str, int] = {}
    cells = {col: table[col].tolist() for col in columns}  # Python objects, None kept apart from NaN
    for pos in range(len(table)):
        values: dict[str, Any] = {}
        for col in columns:
            raw_value = cells[col][pos]
            if raw_value is None or (pd.api.types.is_scalar(raw_value) and pd.isna(raw_value)):
                problems.append(f"row {pos}, column '{col}' is empty ({raw_value!r}): every row needs a value")
                continue
            try:
                values[col] = to_jsonable(raw_value, f"row {pos}, column '{col}'")
            except ConfigError as exc:
                problems.append(str(exc))
        if name_col is not None:
            if name_col not in values:  # its cell is empty or unusable: already reported
                continue
            raw = values[name_col]
            name = raw if isinstance(raw, str) else str(raw)
        else:
            name = slug({c: values.get(c) for c in columns})
        try:
            validate_name(name, f"instance name of row {pos}")
        except InvalidName as exc:
            problems.append(str(exc))
            continue
        key = name.lower()  # case-insensitive file systems would merge these
        if key in seen:
            problems.append(f"rows {seen[key]} and {pos} both name instance '{name}'")
            continue
        seen[key] = pos
        row_cfg = {k: v for k, v in values.items() if k != name_col}  # the name is not a parameter
        config = deep_merge(dict(base_config or {}), _nest(row_cfg))
        config["_instance"] = name
        plans.append(ScenarioPlan(pos, name, values, config))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ScenarioError(f"scenario table has {len(problems)} problem(s):\n  {shown}{more}")
    return plans

