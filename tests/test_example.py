"""The example project, end to end with real kernels: each flow from a shell and through
run_notebook, the demand_model build green and red, and `python conductor.py` over the
3 x 3 grid. Everything runs in a copy of the example under tmp_path, never in the repo."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ductaflow import FlowFailed, Status, load_config_file, run_notebook

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = ("flows", "builds", "config", "conductor.py", "pyproject.toml")
FLOWS = ("prepare_zones", "distribute_trips", "summarize")
OUTPUTS = {
    "prepare_zones": ("zones.parquet",),
    "distribute_trips": ("od_matrix.parquet",),
    "summarize": ("kpis.csv", "trip_length.png"),
}
KPIS = {
    "zones",
    "population",
    "jobs",
    "total_trips",
    "person_km",
    "mean_trip_length",
    "median_trip_length",
    "intrazonal_share",
    "long_trip_share",
    "max_row_error",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WARNING_LINE = "Warning: growth_rate 0.040/yr is outside the calibrated range"


def _copy_example(dest: Path) -> Path:
    """A copy of the example project (no runs/, no ductaflow/: the installed package runs it)."""
    dest.mkdir(parents=True)
    for name in EXAMPLE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _env() -> dict[str, str]:
    """The environment for child processes, without a project root inherited from elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _status(instance_dir: Path, flow: str) -> dict:
    return json.loads((instance_dir / f"{flow}_status.json").read_text(encoding="utf-8"))


def _kpis(instance_dir: Path) -> pd.Series:
    return pd.read_csv(instance_dir / "kpis.csv").set_index("kpi")["value"]


@pytest.fixture(autouse=True)
def _no_inherited_root(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("DUCTAFLOW_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _copy_example(tmp_path / "example project")  # a space in the path, on purpose


def _check_chain(runs: Path, mode: str) -> None:
    """The three flows in sibling dirs under ``runs``: outputs present, consistent, recorded green."""
    for flow in FLOWS:
        rec = _status(runs / flow, flow)
        assert (rec["status"], rec["state"], rec["mode"]) == ("green", "finished", mode), rec
        assert rec["error"] is None and rec["warnings"] == []
        for name in OUTPUTS[flow]:
            assert (runs / flow / name).is_file(), f"{flow} did not write {name}"
    zones = pd.read_parquet(runs / "prepare_zones" / "zones.parquet")
    od = pd.read_parquet(runs / "distribute_trips" / "od_matrix.parquet")
    assert len(zones) == 40 and len(od) == 40 * 40
    # distribute_trips really read the sibling zones file: its rows add up to their productions
    row_sums = od.groupby("origin")["trips"].sum().reindex(zones["zone"]).to_numpy()
    assert row_sums == pytest.approx(zones["productions"].to_numpy(), rel=1e-5)
    kpis = _kpis(runs / "summarize")
    assert set(kpis.index) == KPIS
    assert kpis["zones"] == 40
    assert kpis["total_trips"] == pytest.approx(zones["productions"].sum(), rel=1e-6)
    assert kpis["max_row_error"] < 1e-5
    assert (runs / "summarize" / "trip_length.png").read_bytes()[:8] == PNG_MAGIC


def test_flows_run_from_a_shell_with_upstream_read_through_relative_paths(project: Path) -> None:
    runs = project / "runs" / "shell"
    for flow in FLOWS:
        proc = subprocess.run(
            [
                sys.executable,
                f"flows/{flow}.py",
                "--config",
                f"config/flows/{flow}.json",
                "--output-dir",
                f"runs/shell/{flow}",
            ],
            cwd=project,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{flow} failed:\n{proc.stdout}\n{proc.stderr}"
        # the terminal sees the flow's output and the log file records the same lines
        log = (runs / flow / f"{flow}_execution_output.txt").read_text(encoding="utf-8")
        last = proc.stdout.strip().splitlines()[-1]
        assert "wrote " in last and last.endswith(OUTPUTS[flow][-1]), proc.stdout
        assert last in log
    # the downstream configs hold relative paths, and nothing but the relative path found the file
    assert load_config_file(runs / "summarize" / "summarize_config.json")["od_path"] == (
        "../distribute_trips/od_matrix.parquet"
    )
    _check_chain(runs, "script")


def test_flow_run_from_a_shell_without_its_upstream_is_red_with_the_reason(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "flows/summarize.py", "--output-dir", "runs/lonely/summarize"],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "FileNotFoundError" in proc.stderr and "run the upstream flows first" in proc.stderr
    rec = _status(project / "runs" / "lonely" / "summarize", "summarize")
    assert rec["status"] == "red" and rec["error"]["type"] == "FileNotFoundError"
    assert not (project / "runs" / "lonely" / "summarize" / "kpis.csv").exists()


def test_flows_run_with_run_notebook_give_the_same_results_as_from_a_shell(project: Path) -> None:
    runs = project / "runs" / "nb"
    for flow in FLOWS:
        config = load_config_file(project / "config" / "flows" / f"{flow}.json")
        result = run_notebook(project / "flows" / f"{flow}.py", config, runs / flow)
        assert result.status is Status.GREEN, result.reason
        assert result.notebook_path.is_file()
        assert result.execution_dir == (runs / flow).resolve()
    _check_chain(runs, "papermill")
    # the executed notebook of the last flow shows its chart inline
    nb = json.loads((runs / "summarize" / "summarize.ipynb").read_text(encoding="utf-8"))
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)

    # the same seed and config give the same numbers in either mode
    shell = project / "runs" / "shell"
    for flow in FLOWS:
        cmd = [sys.executable, f"flows/{flow}.py", "--output-dir", f"runs/shell/{flow}"]
        subprocess.run(cmd, cwd=project, env=_env(), capture_output=True, check=True, timeout=120)
    pd.testing.assert_frame_equal(
        pd.read_parquet(shell / "distribute_trips" / "od_matrix.parquet"),
        pd.read_parquet(runs / "distribute_trips" / "od_matrix.parquet"),
    )
    pd.testing.assert_series_equal(_kpis(shell / "summarize"), _kpis(runs / "summarize"))


def _build_config(project: Path, **changes: object) -> dict:
    return {**load_config_file(project / "config" / "builds" / "demand_model.json"), **changes}


def test_build_runs_its_flows_into_its_own_runs_dir(project: Path) -> None:
    instance = project / "runs" / "demand_model" / "base"
    result = run_notebook(project / "builds" / "demand_model.py", _build_config(project), instance)
    assert result.status is Status.GREEN, result.reason
    assert sorted(p.name for p in (instance / "runs").iterdir() if p.is_dir()) == sorted(FLOWS)
    for flow in FLOWS:
        rec = _status(instance / "runs" / flow, flow)
        assert rec["status"] == "green", rec
        assert rec["execution_dir"] == str((instance / "runs" / flow).resolve())
        for name in OUTPUTS[flow]:
            assert (instance / "runs" / flow / name).is_file()
        cfg = load_config_file(instance / "runs" / flow / f"{flow}_config.json")
        assert cfg["_project_root"] == str(project.resolve())
    assert load_config_file(instance / "runs" / "summarize" / "summarize_config.json")["zones_path"] == (
        "../prepare_zones/zones.parquet"
    )
    kpis_first = _kpis(instance / "runs" / "summarize")
    assert kpis_first["zones"] == 40
    log = (instance / "demand_model_execution_output.txt").read_text(encoding="utf-8")
    for flow in FLOWS:
        assert f"🟢 {flow}: green (ok)" in log
    assert "mean_trip_length" in log  # the build's last cell printed the KPIs it read back
    # nothing was written next to the sources
    assert not (project / "flows" / "zones.parquet").exists() and not (project / "runs" / "prepare_zones").exists()

    # again with only a summarize setting changed: the upstream steps are up to date, summarize re-runs
    before = {f: _status(instance / "runs" / f, f)["started"] for f in FLOWS}
    changed = _build_config(project, summarize={"long_trip_km": 5.0, "trip_length_bin_km": 2.0})
    again = run_notebook(project / "builds" / "demand_model.py", changed, instance)
    assert again.status is Status.GREEN and not again.skipped, again.reason
    after = {f: _status(instance / "runs" / f, f)["started"] for f in FLOWS}
    assert [after[f] == before[f] for f in FLOWS] == [True, True, False]
    log = (instance / "demand_model_execution_output.txt").read_text(encoding="utf-8")
    assert "🟢 prepare_zones: green, up to date: not re-run" in log
    assert "🟢 distribute_trips: green, up to date: not re-run" in log
    assert "🟢 summarize: green (ok)" in log
    assert _kpis(instance / "runs" / "summarize")["long_trip_share"] > kpis_first["long_trip_share"]


def test_build_with_fail_at_is_red_and_stops_before_summarize(project: Path) -> None:
    instance = project / "runs" / "demand_model" / "broken"
    config = _build_config(project, fail_at="distribute_trips")
    with pytest.raises(FlowFailed) as info:
        run_notebook(project / "builds" / "demand_model.py", config, instance)
    build = info.value.result
    assert build.status is Status.RED
    assert build.error is not None and build.error.type == "FlowFailed"
    assert "distribute_trips" in build.error.message
    assert _status(instance, "demand_model")["status"] == "red"

    assert _status(instance / "runs" / "prepare_zones", "prepare_zones")["status"] == "green"
    failed = _status(instance / "runs" / "distribute_trips", "distribute_trips")
    assert failed["status"] == "red" and failed["state"] == "finished"
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "deliberate failure requested by scenario"
    assert "deliberate failure" in failed["error"]["traceback"]
    assert not (instance / "runs" / "distribute_trips" / "od_matrix.parquet").exists()

    assert not (instance / "runs" / "summarize").exists(), "summarize ran after a red flow"
    log = (instance / "demand_model_execution_output.txt").read_text(encoding="utf-8")
    assert "prepare_zones: green" in log and "summarize" not in log.split("fail_at:", 1)[1]


def test_conduct_command_runs_the_shipped_scenario_csv(project: Path) -> None:
    """The README's `ductaflow conduct config/scenarios.csv ...`: a dotted column reaches a nested key."""
    command = [str(Path(sys.executable).with_name("ductaflow")), "conduct", "config/scenarios.csv"]
    command += ["--build", "builds/demand_model.py"]
    dry = subprocess.run([*command, "--dry-run"], cwd=project, env=_env(), capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "dry run OK: 3 scenario(s) would run" in dry.stdout
    assert not (project / "runs").exists(), "a dry run wrote something"

    proc = subprocess.run(
        [*command, "--parallel", "2"], cwd=project, env=_env(), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "3 scenario(s): 2 green, 1 orange, 0 red" in proc.stdout
    runs = project / "runs" / "demand_model"
    lights = {
        n: _status(runs / n / "runs" / "prepare_zones", "prepare_zones")["status"]
        for n in ("base", "high_growth", "high_growth_recalibrated")
    }
    assert lights == {"base": "green", "high_growth": "orange", "high_growth_recalibrated": "green"}
    config = load_config_file(runs / "high_growth_recalibrated" / "demand_model_config.json")
    assert config["prepare_zones"] == {"area_km": 30.0, "max_calibrated_growth": 0.05, "trips_per_person": 1.2}
    assert (project / "runs" / "conductor_status_report.html").is_file()


# ----------------------------------------------------------------- python conductor.py, once
@pytest.fixture(scope="module")
def conducted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = _copy_example(tmp_path_factory.mktemp("conductor") / "example project")
    proc = subprocess.run(
        [sys.executable, "conductor.py"],
        cwd=project,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return project, proc


def _grid() -> list[tuple[str, float, float]]:
    return [(f"g{g:.2f}_c{c:.2f}", g, c) for g in (0.01, 0.02, 0.04) for c in (0.05, 0.1, 0.2)]


def _report_rows(report: str) -> dict[str, tuple[str, str]]:
    """instance -> (light class, the row's HTML) for every scenario row of the report."""
    rows = {}
    for m in re.finditer(r'<details class="scn l-(\w+)"[^>]*data-instance="([^"]+)".*?</details>', report, re.S):
        rows[html.unescape(m.group(2))] = (m.group(1), m.group(0))
    return rows


def test_conductor_exits_0_and_leaves_nine_instances_and_the_report(conducted) -> None:
    project, proc = conducted
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    runs = project / "runs"
    assert (runs / "conductor_status_report.html").is_file()
    instances = sorted(p.name for p in (runs / "demand_model").iterdir() if p.is_dir())
    assert instances == sorted(name for name, _, _ in _grid())
    state = json.loads((runs / ".ductaflow" / "conductor" / "demand_model.json").read_text(encoding="utf-8"))
    assert state["state"] == "finished"
    assert [s["state"] for s in state["scenarios"]] == ["done"] * 9


def test_conductor_gives_six_green_and_the_three_4_percent_scenarios_orange(conducted) -> None:
    project, proc = conducted
    lights = {}
    for name, growth, _ in _grid():
        inst = project / "runs" / "demand_model" / name
        flows = {f: _status(inst / "runs" / f, f)["status"] for f in FLOWS}
        build = _status(inst, "demand_model")["status"]
        lights[name] = max([build, *flows.values()], key=["green", "orange", "red"].index)
        if growth == 0.04:  # only prepare_zones warns; the build itself ran clean
            assert flows == {"prepare_zones": "orange", "distribute_trips": "green", "summarize": "green"}
            assert build == "green"
    assert sorted(lights.values()) == ["green"] * 6 + ["orange"] * 3
    assert {n for n, light in lights.items() if light == "orange"} == {n for n, g, _ in _grid() if g == 0.04}

    report = (project / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    rows = _report_rows(report)
    assert {n: light for n, (light, _) in rows.items()} == lights
    assert 'http-equiv="refresh"' not in report  # the run is over: the page stopped reloading

    table = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if re.match(r"\s*g0\.", line)}
    assert {n: cols[0] for n, cols in table.items()} == lights
    # the KPIs summarize record()s come back as columns of the table conduct returns
    header = next(line.split() for line in proc.stdout.splitlines() if line.lstrip().startswith("scenario_name"))
    lengths = {n: float(cols[header.index("mean_trip_length") - 1]) for n, cols in table.items()}
    for name, _, _ in _grid():
        kpi = _kpis(project / "runs" / "demand_model" / name / "runs" / "summarize")["mean_trip_length"]
        assert lengths[name] == pytest.approx(kpi, rel=1e-5)


def test_the_example_report_charts_mean_trip_length_against_its_baseline(conducted) -> None:
    """pyproject.toml's [tool.ductaflow.report]: the headline metric is charted first, with the
    baseline marked, a delta column per named metric and the Pareto chart of the two directed ones."""
    project, _ = conducted
    report = (project / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", report)
    assert captions[0].startswith("Pareto front: mean_trip_length vs total_trips"), captions
    assert captions[1] == "mean_trip_length · lower is better", captions
    assert "Δ mean_trip_length" in report and "baseline <span class=\"mono\">g0.02_c0.10</span>" in report
    assert '<rect class="bar l-green base"' in report  # the baseline's bar is marked
    results = pd.read_parquet(project / "runs" / "demand_model" / "results.parquet").set_index("instance")
    base = results.loc["g0.02_c0.10", "mean_trip_length"]
    best = results["mean_trip_length"].min()
    want = f"{best - base:.4g} ({(best / base - 1) * 100:+.1f}%)"
    assert f'<td class="delta better">{want}</td>' in report, want


def test_orange_scenarios_name_their_warning_line(conducted) -> None:
    project, _ = conducted
    report = (project / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    rows = _report_rows(report)
    for name, growth, _ in _grid():
        rec = _status(project / "runs" / "demand_model" / name / "runs" / "prepare_zones", "prepare_zones")
        row_html = html.unescape(rows[name][1])
        if growth == 0.04:
            assert len(rec["warnings"]) == 1 and rec["warnings"][0].startswith(WARNING_LINE), rec["warnings"]
            assert WARNING_LINE in row_html
            assert "prepare_zones" in row_html
        else:
            assert rec["warnings"] == []
            assert "Warning:" not in row_html


def test_conductor_scenarios_really_differ(conducted) -> None:
    """Each instance ran its own row: dearer travel gives shorter trips, faster growth more people."""
    project, _ = conducted
    kpis = {name: _kpis(project / "runs" / "demand_model" / name / "runs" / "summarize") for name, _, _ in _grid()}
    for g in ("0.01", "0.02", "0.04"):
        lengths = [kpis[f"g{g}_c{c}"]["mean_trip_length"] for c in ("0.05", "0.10", "0.20")]
        assert lengths[0] > lengths[1] > lengths[2], (g, lengths)
    for c in ("0.05", "0.10", "0.20"):
        people = [kpis[f"g{g}_c{c}"]["population"] for g in ("0.01", "0.02", "0.04")]
        assert people[0] < people[1] < people[2], (c, people)
    config = load_config_file(project / "runs" / "demand_model" / "g0.04_c0.20" / "demand_model_config.json")
    assert (config["growth_rate"], config["cost_sensitivity"], config["_instance"]) == (0.04, 0.2, "g0.04_c0.20")
    assert "scenario_name" not in config


# Runs last in this module: it re-runs the conductor in the shared project (nothing changes there).
_MODULES_LOADED = (
    "import runpy, sys; runpy.run_path('conductor.py', run_name='__main__'); "
    "heavy = ('jupytext', 'jupyter_client', 'papermill', 'nbclient', 'zmq', 'multiprocessing.pool'); "
    "print('LOADED', sorted(m for m in sys.modules if m in heavy))"
)


def test_a_no_op_re_run_loads_no_kernel_machinery_and_rewrites_no_results(conducted) -> None:
    """Every scenario up to date: the rows come back from disk with the same lights and KPIs, and
    the process starts no pool or kernel, parses no flow with Jupytext (the flows of the plan come
    from the flow cache once they are older than its racy window) and, from the second no-op on,
    leaves results.parquet as it was (the first turns each row's state from done to skipped)."""
    project, first = conducted
    results = project / "runs" / "demand_model" / "results.parquet"
    sweeps = project / "runs" / ".ductaflow" / "sweeps"
    searches = sorted(p.name for p in sweeps.glob("*.json"))
    runs, stamps = [], []
    for _ in range(2):  # the first no-op may still parse flows copied moments before the first run
        proc = subprocess.run([sys.executable, "-c", _MODULES_LOADED], cwd=project, env=_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        assert "9 scenario(s) up to date" in proc.stderr
        runs.append(proc)
        stamps.append(results.stat().st_mtime_ns)
    assert "LOADED []" in runs[1].stdout, runs[1].stdout
    table = [line for line in runs[1].stdout.splitlines() if re.match(r"\s*g0\.", line)]
    assert table == [line for line in first.stdout.splitlines() if re.match(r"\s*g0\.", line)]
    assert stamps[1] == stamps[0]
    assert set(pd.read_parquet(results)["state"]) == {"skipped"}
    assert sorted(p.name for p in sweeps.glob("*.json")) == searches  # a no-op keeps no search state
