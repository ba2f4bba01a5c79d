"""Scenario tables: build one from dimensions (:func:`expand_grid`) or load one from a file."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.errors import ScenarioError


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
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])
