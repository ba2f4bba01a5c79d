"""Comparisons over a results table: deltas to a baseline, spread over replicates, Pareto fronts, sensitivity.

Replicates of a scenario (instances ``x__r1``, ``x__r2`` ...) are averaged per scenario before a
comparison, a front or a sensitivity: a scenario is one point. Red rows recorded no results and
are left out of fronts and sensitivities (a log line says how many).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ductaflow.analysis.table import SCENARIO, Table
from ductaflow.core.pareto import fronts
from ductaflow.errors import AnalysisError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _numeric(table: Table, metrics: list[str] | tuple[str, ...] | None) -> list[str]:
    names = table.require(list(metrics)) if metrics else list(table.metrics)
    numeric = [m for m in names if _is_number(table.frame[m])]
    if not numeric:
        raise AnalysisError(f"{table.path}: none of {', '.join(names) or 'its metrics'} holds numbers")
    return numeric


def _is_number(column: pd.Series) -> bool:
    # heavy: pandas, already loaded with the table
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column)) and not pd.api.types.is_bool_dtype(column)


def _by_scenario(table: Table, metrics: list[str], by: str | None, ok_only: bool = False) -> pd.DataFrame:
    """Per group (``by``, default the scenario): the mean of each metric and the group's size."""
    key = table.require([by], "column")[0] if by else SCENARIO
    frame = table.frame
    if ok_only:
        red = frame["status"].astype(str) == "red"
        if red.any():
            log.info("%d red row(s) of %s left out: they recorded no results", int(red.sum()), table.build)
        frame = frame[~red]
    grouped = frame.groupby(key, sort=False, dropna=False)
    out = grouped[metrics].mean().map(_settle)
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def _settle(value: float) -> float:
    """A mean to 12 significant digits: the mean of three equal numbers must equal them, or a
    last-bit difference would make one scenario 'better' than its twin."""
    return float(f"{value:.12g}") if value == value else value


def compare(table: Table, baseline: str, metrics: list[str] | None = None, by: str | None = None) -> pd.DataFrame:
    """Each scenario's metrics (means over replicates) with the absolute and percent delta to
    ``baseline`` (a scenario, an instance, or a value of ``by``). Percent is empty when the
    baseline's value is 0."""
    names = _numeric(table, metrics)
    key = by or SCENARIO
    means = _by_scenario(table, names, by)
    hits = means[means[key].astype(str) == str(baseline)]
    if hits.empty and not by:
        inst = table.frame[table.frame["instance"].astype(str) == str(baseline)]
        hits = means[means[key].isin(inst[SCENARIO])]
    if hits.empty:
        shown = ", ".join(map(str, means[key].tolist()[:10]))
        raise AnalysisError(f"{table.path}: baseline {baseline!r} is not a {key} of the table (e.g. {shown})")
    base = hits.iloc[0]
    out = means[[key, "n"]].copy()
    for m in names:
        out[m] = means[m]
        out[f"{m}_delta"] = means[m] - base[m]
        out[f"{m}_pct"] = (means[m] / base[m] - 1) * 100 if base[m] != 0 else float("nan")
    return out


def stability(table: Table, by: str | None = None, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per group (default: a scenario's replicates) and metric: n, mean, sample std, cv (std/mean,
    empty when the mean is 0), min and max."""
    names = _numeric(table, metrics)
    key = table.require([by], "column")[0] if by else SCENARIO
    rows = []
    for group, part in table.frame.groupby(key, sort=False, dropna=False):
        for m in names:
            values = part[m].dropna()
            mean = values.mean() if len(values) else float("nan")
            std = values.std(ddof=1) if len(values) > 1 else float("nan")
            rows.append({key: group, "metric": m, "n": len(values), "mean": mean, "std": std,
                         "cv": std / mean if mean else float("nan"),
                         "min": values.min(), "max": values.max()})  # fmt: skip
    return _frame(rows, [key, "metric", "n", "mean", "std", "cv", "min", "max"])


def pareto(table: Table, maximize: list[str] | None = None, minimize: list[str] | None = None) -> pd.DataFrame:
    """Every scenario (means over replicates, red ones left out) with its front: 1 for those no
    other beats on every metric at once, 2 for those only front 1 beats, and so on."""
    up, down = list(maximize or []), list(minimize or [])
    both = sorted(set(up) & set(down))
    if both:
        raise AnalysisError(f"{', '.join(both)}: a metric cannot be both maximized and minimized")
    names = _numeric(table, up + down) if up + down else []
    if len(names) < 2:
        raise AnalysisError("a Pareto front needs two or more metrics (--maximize A --minimize B)")
    means = _by_scenario(table, names, None, ok_only=True).dropna(subset=names)
    senses = [1 if m in up else -1 for m in names]
    means["front"] = fronts(means[names].to_numpy().tolist(), senses) if len(means) else []
    return means.sort_values(["front", SCENARIO], kind="stable").reset_index(drop=True)


def sensitivity(table: Table, metrics: list[str] | None = None) -> pd.DataFrame:
    """For each numeric parameter and metric, how much the metric moves with it, ranked.

    ``oat``: where the table holds scenarios that differ in this parameter alone, the mean of
    (metric at its highest value - metric at its lowest) over those groups. Otherwise
    ``spearman`` (rank correlation) and ``src`` (the standardised regression coefficient of a
    least-squares fit on all numeric parameters); ``effect`` is the OAT delta or the SRC."""
    names = _numeric(table, metrics)
    means = _by_scenario_params(table, names)
    params = [p for p in table.params if _is_number(means[p]) and means[p].nunique() > 1]
    if not params:
        raise AnalysisError(f"{table.path}: no numeric scenario parameter varies")
    src = _src(means, params, names)
    rows = []
    for m in names:
        for p in params:
            oat = _oat(means, p, [q for q in params if q != p], m)
            rho = means[p].rank().corr(means[m].rank())
            rows.append({"parameter": p, "metric": m, "method": "oat" if oat is not None else "spearman+src",
                         "effect": oat if oat is not None else src[m][p], "spearman": rho, "src": src[m][p],
                         "oat_delta": oat, "n": int(means[[p, m]].dropna().shape[0])})  # fmt: skip
    out = _frame(rows, ["parameter", "metric", "method", "effect", "spearman", "src", "oat_delta", "n"])
    out["rank"] = out.groupby(["metric", "method"])["effect"].transform(lambda s: s.abs().rank(ascending=False))
    return out.sort_values(["metric", "method", "rank"], kind="stable").reset_index(drop=True)


def _by_scenario_params(table: Table, metrics: list[str]) -> pd.DataFrame:
    """One row per scenario (red ones left out): its parameters and the means of its metrics."""
    frame = table.frame[table.frame["status"].astype(str) != "red"]
    grouped = frame.groupby(SCENARIO, sort=False)
    return grouped[list(table.params)].first().join(grouped[metrics].mean()).reset_index()


def _oat(means: pd.DataFrame, param: str, others: list[str], metric: str) -> float | None:
    """The mean high-minus-low change of ``metric`` over groups where only ``param`` varies."""
    deltas = []
    groups = means.groupby(others, dropna=False) if others else [(None, means)]
    for _, part in groups:
        part = part.dropna(subset=[param, metric])
        if part[param].nunique() > 1:
            lo, hi = part.loc[part[param].idxmin(), metric], part.loc[part[param].idxmax(), metric]
            deltas.append(hi - lo)
    return float(sum(deltas) / len(deltas)) if deltas else None


def _src(means: pd.DataFrame, params: list[str], metrics: list[str]) -> dict[str, dict[str, float]]:
    """Standardised regression coefficients: least squares of z(metric) on the z(parameters)."""
    # heavy: numpy, already loaded with pandas
    import numpy as np

    out: dict[str, dict[str, float]] = {}
    full = [p for p in params if means[p].notna().all()]  # a parameter some scenarios lack is not fitted
    for m in metrics:
        part = means[[*full, m]].dropna()
        fit = [p for p in full if part[p].nunique() > 1]  # constant here: no effect to fit (z would be 0/0)
        x, y = part[fit].to_numpy(float), part[m].to_numpy(float)
        out[m] = dict.fromkeys(params, float("nan"))
        if not fit or len(part) <= len(fit) or y.std() == 0:
            continue
        zx = (x - x.mean(axis=0)) / x.std(axis=0)
        coef, *_ = np.linalg.lstsq(zx, (y - y.mean()) / y.std(), rcond=None)
        out[m].update({p: float(c) for p, c in zip(fit, coef, strict=True)})
    return out


def _frame(rows: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
    # heavy: pandas, already loaded with the table
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)
