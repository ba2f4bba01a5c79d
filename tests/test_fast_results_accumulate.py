"""``<build>/results.parquet`` accumulating across sweeps, and replicate statistics: no kernel."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from report_fixtures import _row, make_instance, write_state

from ductaflow.report.page import collect_report, write_report
from ductaflow.store.layout import RESULTS_NAME, STATE_DIR
from ductaflow.store.results import (
    BY_SCENARIO_NAME,
    METRICS_KEY,
    SCHEMA_KEY,
    merge_results,
    read_results,
    replicate_stats,
    scenario_of,
    with_groups,
    write_results,
)


def _table(instances: list[str], sweep: str, **columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"instance": instances, "status": ["green"] * len(instances), "sweep": sweep, **columns})


def test_merge_replaces_same_instances_keeps_others_and_unions_columns() -> None:
    old = _table(["a", "b", "c"], "s1", growth=[0.1, 0.2, 0.3], trips=[1.0, 2.0, 3.0])
    new = _table(["b", "d"], "s2", cost=[5, 6], trips=[20.0, 40.0])
    merged = merge_results(old, new)
    assert list(merged["instance"]) == ["a", "b", "c", "d"]  # earlier order kept, new ones after
    assert list(merged["sweep"]) == ["s1", "s2", "s1", "s2"]
    assert list(merged["trips"]) == [1.0, 20.0, 3.0, 40.0]
    assert {"growth", "cost"} <= set(merged.columns)
    assert merged.loc[merged["instance"] == "d", "growth"].isna().all()  # a column of another sweep
    assert merged.loc[merged["instance"] == "a", "cost"].isna().all()


def test_merge_without_previous_is_the_current_table() -> None:
    new = _table(["x"], "s1", trips=[1.0])
    assert merge_results(None, new).equals(new)


def test_write_accumulates_across_calls_with_schema_and_metrics(tmp_path: Path) -> None:
    write_results(_table(["a", "b"], "s1", trips=[1.0, 2.0]), tmp_path, ["trips"])
    write_results(_table(["c"], "s2", km=[9.5]), tmp_path, ["km"])
    path = tmp_path / RESULTS_NAME
    got = pd.read_parquet(path)
    assert sorted(zip(got["instance"], got["sweep"], strict=True)) == [("a", "s1"), ("b", "s1"), ("c", "s2")]
    meta = pq.read_schema(path).metadata
    assert meta[SCHEMA_KEY] == b"1"
    assert sorted(json.loads(meta[METRICS_KEY])) == ["km", "trips"]
    assert (tmp_path / BY_SCENARIO_NAME).exists()


def test_corrupt_previous_file_is_kept_aside_not_overwritten(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / RESULTS_NAME
    path.write_bytes(b"not parquet at all")
    write_results(_table(["a"], "s1", trips=[1.0]), tmp_path, ["trips"])
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{RESULTS_NAME}.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"not parquet at all"
    assert list(pd.read_parquet(path)["instance"]) == ["a"]
    assert "kept it as" in caplog.text


def test_read_results_of_a_missing_file() -> None:
    assert read_results(Path("/nonexistent/results.parquet")) == (None, [])


def test_scenario_of_strips_only_a_trailing_replicate_suffix() -> None:
    assert scenario_of("base__r01") == "base"
    assert scenario_of("base__r1x") == "base__r1x"
    assert scenario_of("a__r2__r10") == "a__r2"
    assert scenario_of("plain") == "plain"


def test_replicate_stats_match_a_hand_computation() -> None:
    trips = [10.0, 12.0, 17.0, 0.0, 0.0, 3.0, 5.0]
    table = _table(
        ["base__r1", "base__r2", "base__r3", "zero__r1", "zero__r2", "single", "x__r9"],
        "s1",
        growth=[0.1] * 7,
        trips=trips,
        zeros=[1.0, -1.0, 0.0, 2.0, -2.0, 4.0, 1.0],
    )
    grouped = with_groups(table, [1, 2, 3, 1, 2, None, None])
    assert list(grouped["scenario"]) == ["base", "base", "base", "zero", "zero", "single", "x__r9"]
    stats = replicate_stats(grouped, ["trips", "zeros"]).set_index("scenario")
    assert list(stats.index) == ["base", "zero"]  # rows without _replicate are not grouped
    assert "growth_mean" not in stats.columns  # a scenario value, not a recorded metric
    base = pd.Series([10.0, 12.0, 17.0])
    assert stats.loc["base", "n"] == 3
    assert stats.loc["base", "trips_mean"] == pytest.approx(base.mean())
    assert stats.loc["base", "trips_std"] == pytest.approx(math.sqrt(((base - 13.0) ** 2).sum() / 2))
    assert stats.loc["base", "trips_cv"] == pytest.approx(base.std(ddof=1) / 13.0)
    assert (stats.loc["base", "trips_min"], stats.loc["base", "trips_max"]) == (10.0, 17.0)
    assert stats.loc["base", "zeros_mean"] == 0.0 and math.isnan(stats.loc["base", "zeros_cv"])  # mean 0: NaN
    assert stats.loc["zero", "trips_std"] == 0.0 and math.isnan(stats.loc["zero", "trips_cv"])


def test_replicate_stats_without_replicates_is_empty() -> None:
    stats = replicate_stats(with_groups(_table(["a", "b"], "s1", trips=[1.0, 2.0]), [None, None]))
    assert stats.empty and "scenario" in stats.columns


def test_report_groups_replicates_under_one_row_with_their_statistics(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / STATE_DIR).mkdir(parents=True)
    rows = []
    for name, rep, trips, sweep in (("base__r1", 1, 10.0, "s1"), ("base__r2", 2, 12.0, "s1"),
                                    ("base__r3", 3, 17.0, "s2"), ("solo", None, 5.0, "s2")):
        make_instance(runs, "demand_model", name, [{"flow": "model", "status": "green"}])
        rows.append({**_row(name, {"g": 1}, "done", "green", metrics={"trips": trips}, sweep=sweep),
                     "replicate": rep})
    write_state(runs, "demand_model", rows, columns=["g"])
    page = (write_report(runs)).read_text()
    group = re.search(r'<details class="scn grp l-green"[^>]*data-instance="base"[^>]*>(.*?)</div></div></details>',
                      page, re.S)
    assert group is not None, "the replicates are one group item"
    inner = group.group(1)
    assert all(f'data-instance="base__r{k}"' in inner for k in (1, 2, 3)) and 'data-instance="solo"' not in inner
    std = pd.Series([10.0, 12.0, 17.0]).std(ddof=1)
    cells = re.search(r'<td class="mono">trips</td><td class="num">3</td>(.*?)</tr>', inner).group(1)  # type: ignore[union-attr]
    assert re.findall(r">([^<]*)</td>", cells) == [f"{13.0:.4g}", f"{std:.4g}", f"{std / 13.0:.4g}", "10", "17"]
    assert page.count('data-instance="solo"') == 1  # a row without _replicate stays a row of its own
    narrowed = collect_report(runs, "s2")["sections"][0]
    assert [r["instance"] for r in narrowed["rows"]] == ["base__r3", "solo"]
    assert narrowed["groups"]["base"]["n"] == 1


def test_a_scenario_column_named_scenario_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    table = _table(["a__r1"], "s1", scenario=["mine"])
    assert with_groups(table, [1]).equals(table) and "hide the replicate grouping" in caplog.text


def test_an_unchanged_table_is_not_rewritten_and_any_changed_value_is(tmp_path: Path) -> None:
    table = _table(["a", "b"], "s1", trips=[1.0, float("nan")], note=["x", None], n=[1, 2])
    write_results(table, tmp_path, ["trips"])
    files = [tmp_path / RESULTS_NAME, tmp_path / BY_SCENARIO_NAME]
    stamps = [f.stat().st_mtime_ns for f in files]
    write_results(table.copy(), tmp_path, ["trips"])  # what a no-op re-run hands over
    assert [f.stat().st_mtime_ns for f in files] == stamps

    for change in ({"trips": [1.0, 2.0]}, {"note": ["x", "y"]}, {"status": ["green", "red"]}):
        changed = table.assign(**change)
        write_results(changed, tmp_path, ["trips"])
        back, _ = read_results(tmp_path / RESULTS_NAME)
        column = next(iter(change))
        assert back[column].tolist() == change[column]
    write_results(table, tmp_path, ["trips", "n"])  # a new metric column: the metadata changes
    assert json.loads(pq.read_schema(tmp_path / RESULTS_NAME).metadata[METRICS_KEY]) == ["trips", "n"]
