"""What the report compares: the metrics to chart (in order), which way is better, and the baseline.

Set in the project's ``pyproject.toml``::

    [tool.ductaflow.report]
    metrics = ["mean_trip_length", "total_trips"]   # charted in this order
    minimize = ["mean_trip_length"]                 # lower is better
    maximize = ["total_trips"]                      # higher is better
    baseline = "g0.02_c0.10"                        # a scenario (or instance) name

or per call with ``conduct(report={...})`` (kept in the conductor's state file, so a later
``ductaflow report`` draws the same). Without any, the report charts the first metrics that
differ between scenarios, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductaflow.core.settings import tool_table
from ductaflow.errors import ConfigError

_KEYS = ("metrics", "minimize", "maximize", "baseline")


@dataclass(frozen=True)
class ReportSpec:
    """The report's comparison settings (all optional)."""

    metrics: tuple[str, ...] = ()
    minimize: tuple[str, ...] = ()
    maximize: tuple[str, ...] = ()
    baseline: str | None = None

    @property
    def charted(self) -> tuple[str, ...]:
        """The metrics to chart, in order: those named, then any only given a direction."""
        return tuple(dict.fromkeys([*self.metrics, *self.minimize, *self.maximize]))

    def direction(self, metric: str) -> int:
        """-1: lower is better, 1: higher is better, 0: not said."""
        return -1 if metric in self.minimize else 1 if metric in self.maximize else 0

    @property
    def empty(self) -> bool:
        return not (self.charted or self.baseline)

    def to_record(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "minimize": list(self.minimize), "maximize": list(self.maximize),
                "baseline": self.baseline}  # fmt: skip

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any] | ReportSpec | None, where: str) -> ReportSpec:
        """Validate ``doc`` (``where`` names its source in errors: a file and key, or an argument)."""
        if doc is None:
            return cls()
        if isinstance(doc, ReportSpec):
            return doc
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{where} must be a table (a dict) with keys {', '.join(_KEYS)}")
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(_KEYS)}")
        lists = {k: _names(doc.get(k), f"{where}.{k}") for k in ("metrics", "minimize", "maximize")}
        both = sorted(set(lists["minimize"]) & set(lists["maximize"]))
        if both:
            raise ConfigError(f"{where}: {', '.join(both)} cannot be both minimized and maximized")
        baseline = doc.get("baseline")
        if baseline is not None and (not isinstance(baseline, str) or not baseline):
            raise ConfigError(f"{where}.baseline must be a scenario name (a non-empty string), not {baseline!r}")
        return cls(lists["metrics"], lists["minimize"], lists["maximize"], baseline)

    @classmethod
    def from_record(cls, doc: Any) -> ReportSpec | None:
        """A spec kept in a state file, or None (absent or not valid: the project's settings apply)."""
        try:
            return cls.from_mapping(doc, "report") if isinstance(doc, Mapping) else None
        except ConfigError:
            return None


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and v for v in value
    ):
        raise ConfigError(f"{where} must be a list of metric names, not {value!r}")
    return tuple(dict.fromkeys(value))


def project_spec(project_root: str | Path | None) -> ReportSpec:
    """``[tool.ductaflow.report]`` of the project at ``project_root`` (empty without one)."""
    root = Path(project_root) if project_root is not None else None
    table = tool_table(root, "report")
    where = f"{root / 'pyproject.toml'}: tool.ductaflow.report" if root is not None else "tool.ductaflow.report"
    return ReportSpec.from_mapping(table, where) if table else ReportSpec()
