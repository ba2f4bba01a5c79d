"""A build's results table as analysis reads it: one row per instance, its parameters and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ductaflow.errors import AnalysisError
from ductaflow.store.layout import RESULTS_NAME
from ductaflow.store.records import subdirs
from ductaflow.store.results import NOT_METRICS, read_results, scenario_of

if TYPE_CHECKING:
    import pandas as pd

#: The column naming each row's scenario (replicates share it).
SCENARIO = "scenario"


@dataclass(frozen=True)
class Table:
    """``runs/<build>/results.parquet`` with the names of its metric and parameter columns."""

    build: str
    path: Path
    frame: pd.DataFrame
    metrics: tuple[str, ...]
    params: tuple[str, ...]

    def require(self, names: list[str] | tuple[str, ...], what: str = "metric") -> list[str]:
        """``names`` checked against the table's columns of that kind; an error lists the known ones."""
        known = self.metrics if what == "metric" else tuple(self.frame.columns)
        missing = [n for n in names if n not in known]
        if missing:
            raise AnalysisError(
                f"{self.path}: no {'metric column' if what == 'metric' else what} {', '.join(map(repr, missing))}; "
                f"known: {', '.join(known) or '(none)'}"
            )
        return list(names)


def builds_with_results(runs_root: str | Path) -> list[str]:
    """The builds under ``runs_root`` that have a results table."""
    root = Path(runs_root)
    return [name for name in subdirs(root) if not name.startswith(".") and (root / name / RESULTS_NAME).is_file()]


def load(runs_root: str | Path, build: str | None = None) -> Table:
    """The results table of ``build`` (default: the only build with one) under ``runs_root``."""
    root = Path(runs_root)
    if build is None:
        found = builds_with_results(root)
        if len(found) != 1:
            which = f"several do: {', '.join(found)}" if found else "none has one yet: run the conductor first"
            raise AnalysisError(f"{root}: say which build to analyse (--build NAME); {which}")
        build = found[0]
    path = root / build / RESULTS_NAME
    frame, metrics = read_results(path)
    if frame is None:
        raise AnalysisError(f"{path}: no results table (run the conductor for build {build!r} first)")
    if SCENARIO not in frame.columns:  # written before replicates were grouped
        frame[SCENARIO] = [scenario_of(str(i)) for i in frame["instance"]]
    metrics = [m for m in metrics if m in frame.columns]
    naming = {c for c in frame.columns if c not in metrics and _names_rows(frame, c)}
    params = [c for c in frame.columns if c not in NOT_METRICS and c not in metrics and c not in naming]
    return Table(build, path, frame, tuple(metrics), tuple(params))


def _names_rows(frame: pd.DataFrame, column: str) -> bool:
    """True for a column holding each row's instance or scenario name (not a parameter)."""
    values = frame[column].astype(str)
    return bool((values == frame["instance"].astype(str)).all() or (values == frame[SCENARIO].astype(str)).all())
