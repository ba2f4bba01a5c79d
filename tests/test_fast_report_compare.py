"""What the report compares: settings, baseline deltas, charts that aggregate, Pareto fronts (no kernel)."""

from __future__ import annotations

import itertools
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_fixtures import _row, make_instance, write_state

from ductaflow.core.pareto import dominates, fronts
from ductaflow.errors import ConfigError
from ductaflow.report.charts import AGGREGATE_AT, results_view
from ductaflow.report.collect import collect_report
from ductaflow.report.page import render_report
from ductaflow.report.spec import ReportSpec, project_spec


# ---------------------------------------------------------------- settings
def test_settings_validate_and_name_the_bad_key() -> None:
    spec = ReportSpec.from_mapping(
        {"metrics": ["a", "b"], "minimize": ["a"], "maximize": ["c"], "baseline": "base"}, "here"
    )
    assert spec.charted == ("a", "b", "c") and spec.direction("a") == -1 and spec.direction("c") == 1
    assert spec.direction("b") == 0 and ReportSpec.from_mapping(spec.to_record(), "again") == spec
    bad: list[tuple[dict[str, Any], str]] = [
        ({"metric": ["a"]}, "unknown key(s) 'metric'"),
        ({"metrics": "a"}, "here.metrics must be a list of metric names"),
        ({"minimize": ["a"], "maximize": ["a"]}, "a cannot be both minimized and maximized"),
        ({"baseline": 3}, "here.baseline must be a scenario name"),
    ]
    for doc, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ReportSpec.from_mapping(doc, "here")
    assert ReportSpec.from_record({"metrics": 3}) is None and ReportSpec.from_record(None) is None


def test_project_settings_come_from_pyproject(tmp_path: Path) -> None:
    assert project_spec(tmp_path) == ReportSpec()
    (tmp_path / "pyproject.toml").write_text('[tool.ductaflow.report]\nmetrics = ["x"]\nmaximize = ["x"]\n')
    assert project_spec(tmp_path) == ReportSpec(metrics=("x",), maximize=("x",))
    (tmp_path / "pyproject.toml").write_text('[tool.ductaflow.report]\nmetrics = "x"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: tool.ductaflow.report.metrics must be a list"):
        project_spec(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.ductaflow.report\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml: cannot read \[tool.ductaflow.report\]"):
        project_spec(tmp_path)


# ---------------------------------------------------------------- Pareto fronts
def _brute(points: list[tuple[float, ...]], senses: list[int]) -> list[int]:
    left, out, front = set(range(len(points))), [0] * len(points), 0
    while left:
        front += 1
        top = {i for i in left if not any(dominates(points[j], points[i], senses) for j in left if j != i)}
        for i in top:
            out[i] = front
        left -= top
    return out


def test_fronts_match_the_definition_on_random_points_with_ties() -> None:
    rng = random.Random(7)
    for _ in range(200):
        dims = rng.choice([2, 3])
        points = [tuple(float(rng.randint(0, 4)) for _ in range(dims)) for _ in range(rng.randint(0, 30))]
        senses = [rng.choice([1, -1]) for _ in range(dims)]
        assert fronts(points, senses) == _brute(points, senses)
        assert fronts(points, senses, limit=1) == [min(f, 2) for f in _brute(points, senses)]


def test_fronts_by_hand() -> None:
    points = [(1.0, 5.0), (2.0, 4.0), (3.0, 3.0), (2.0, 2.0), (1.0, 1.0), (3.0, 3.0)]
    assert fronts(points, [1, 1]) == [1, 1, 1, 2, 3, 1]  # equal points share a front
    assert fronts(points, [-1, -1]) == [2, 3, 3, 2, 1, 3]
    with pytest.raises(ValueError, match="senses"):
        fronts(points, [1, 0])


# ---------------------------------------------------------------- the results view
def _rows(values: dict[str, dict[str, Any]], lights: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [{"instance": name, "light": (lights or {}).get(name, "green"), "index": i, "metrics": m}
            for i, (name, m) in enumerate(values.items())]  # fmt: skip


def test_named_metrics_come_first_with_deltas_to_the_baseline() -> None:
    rows = _rows({
        "a": {"len": 11.0, "trips": 100.0, "other": 1},
        "base__r1": {"len": 8.0, "trips": 120.0}, "base__r2": {"len": 12.0, "trips": 80.0},
        "c": {"len": 5.0, "trips": 150.0},
    })  # fmt: skip
    spec = ReportSpec(metrics=("trips", "len"), minimize=("len",), baseline="base")
    view = results_view(rows, spec)
    assert view is not None and view["columns"] == ["trips", "len", "other"] and view["deltas"] == ["trips", "len"]
    base = {"len": statistics.fmean([8.0, 12.0]), "trips": statistics.fmean([120.0, 80.0])}  # replicates: their mean
    by = {r["instance"]: r for r in view["rows"]}
    assert by["c"]["deltas"][1] == {"text": f"{5.0 - base['len']:.4g} ({(5.0 / base['len'] - 1) * 100:+.1f}%)",
                                    "cls": "better"}  # fmt: skip
    assert by["a"]["deltas"][1]["cls"] == "worse" and by["a"]["deltas"][0]["cls"] == ""  # trips: no direction
    assert by["c"]["deltas"][0]["text"] == "+50 (+50.0%)"
    assert [c["metric"] for c in view["charts"]] == ["trips", "len"] and view["charts"][1]["caption"].endswith(
        "lower is better"
    )
    marked = [b["instance"] for b in view["charts"][0]["bars"] if b["base"]]
    assert marked == ["base__r1", "base__r2"] and view["notes"] == []


def test_missing_baseline_and_metrics_are_said_not_guessed() -> None:
    view = results_view(_rows({"a": {"x": 1.0}, "b": {"x": 2.0}}), ReportSpec(metrics=("y", "x"), baseline="zz"))
    assert view is not None and view["baseline"] is None and view["deltas"] == []
    assert any("'y'" in n for n in view["notes"]) and any("'zz'" in n for n in view["notes"])


def test_many_scenarios_are_a_histogram_not_a_bar_each() -> None:
    n = AGGREGATE_AT + 25
    rng = random.Random(3)
    values = [rng.uniform(-5.0, 20.0) for _ in range(n)]
    view = results_view(_rows({f"s{i}": {"x": v} for i, v in enumerate(values)}), ReportSpec(metrics=("x",)))
    (chart,) = view["charts"]  # type: ignore[index]
    assert chart["kind"] == "histogram" and sum(b["count"] for b in chart["bins"]) == n
    counts, _ = np.histogram(values, bins=len(chart["bins"]), range=(min(values), max(values)))
    assert [b["count"] for b in chart["bins"]] == counts.tolist()
    small = results_view(_rows({f"s{i}": {"x": float(i)} for i in range(AGGREGATE_AT)}), ReportSpec(metrics=("x",)))
    assert small["charts"][0]["kind"] == "bars"  # type: ignore[index]


def test_pareto_view_uses_the_two_directed_metrics_and_leaves_red_out() -> None:
    metrics = {"a": (1.0, 5.0), "b": (2.0, 4.0), "c": (3.0, 1.0), "d": (0.5, 0.5), "red": (0.1, 9.0)}
    rows = _rows({k: {"cost": x, "gain": y} for k, (x, y) in metrics.items()}, {"red": "red"})
    view = results_view(rows, ReportSpec(metrics=("cost", "gain"), minimize=("cost",), maximize=("gain",)))
    pareto = view["pareto"]  # type: ignore[index]
    on = {p["instance"] for p in pareto["front"]}
    assert on == {"a", "d"} and "red" not in {p["instance"] for p in pareto["points"]}
    assert results_view(rows, ReportSpec(metrics=("cost", "gain"), minimize=("cost",)))["pareto"] is None  # type: ignore[index]


# ---------------------------------------------------------------- settings reach the page
def _runs(tmp_path: Path, report: dict[str, Any] | None = None) -> Path:
    project = tmp_path / "project"
    runs = project / "runs"
    rows = []
    for name, g, length in (("a", 1, 10.0), ("b", 2, 8.0), ("c", 3, 12.0)):
        make_instance(runs, "m", name, [{"flow": "prep", "status": "green"}])
        rows.append(_row(name, {"g": g}, "done", "green", dir=f"m/{name}", metrics={"length": length}))
    state = write_state(runs, "m", rows, columns=["g"])
    doc = pd.read_json(state, typ="series").to_dict()
    if report is not None:
        doc["report"] = report
        state.write_text(pd.Series(doc).to_json())
    return runs


def test_the_project_s_settings_apply_unless_the_conduct_call_gave_its_own(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    (runs.parent / "pyproject.toml").write_text('[tool.ductaflow.report]\nmetrics = ["length"]\nbaseline = "b"\n')
    (runs.parent / "builds").mkdir()
    state = next((runs / ".ductaflow" / "conductor").glob("*.json"))
    text = state.read_text().replace('"/project/builds/m.py"', f'"{(runs.parent / "builds" / "m.py").as_posix()}"')
    state.write_text(text)
    section = collect_report(runs)["sections"][0]
    assert section["results"]["baseline"] == "b" and section["results"]["deltas"] == ["length"]
    page = render_report(collect_report(runs))
    assert "Δ length" in page and 'id="b0-data"' in page and "Compare two scenarios" in page
    own = _runs(tmp_path / "other", report={"metrics": ["length"], "minimize": ["length"], "baseline": "a"})
    section = collect_report(own)["sections"][0]
    assert section["results"]["baseline"] == "a" and section["spec"].direction("length") == -1


def test_unreadable_project_settings_are_a_notice_not_a_crash(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    (runs.parent / "pyproject.toml").write_text("[tool.ductaflow.report\n")
    (runs.parent / "builds").mkdir()
    state = next((runs / ".ductaflow" / "conductor").glob("*.json"))
    build = (runs.parent / "builds" / "m.py").as_posix()
    state.write_text(state.read_text().replace('"/project/builds/m.py"', f'"{build}"'))
    ctx = collect_report(runs)
    assert any(n.startswith("report settings ignored:") and "pyproject.toml" in n for n in ctx["notices"])
    assert ctx["sections"][0]["results"]["baseline"] is None


def test_compare_data_cannot_close_its_script_block() -> None:
    rows = _rows({"</script><b>x": {"v": 1.0}, "y": {"v": 2.0}})
    for r in rows:
        r.update(cells=[], dir="", state="done")
    view = results_view(rows, ReportSpec())
    from ductaflow.report.html import compare_data

    out = compare_data({"id": "b0", "columns": [], "rows": rows, "results": view})
    assert out.count("</script>") == 1 and "\\u003c/script>\\u003cb>x" in out


def test_every_pair_of_named_and_directed_metrics_is_validated_once() -> None:
    names = ["a", "b", "c"]
    for lo, hi in itertools.permutations(names, 2):
        spec = ReportSpec.from_mapping({"minimize": [lo], "maximize": [hi]}, "x")
        assert spec.charted == (lo, hi)
