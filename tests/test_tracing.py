"""OpenTelemetry spans of a sweep, checked with the SDK's in-memory exporter: sweep -> scenario ->
flow -> cell, with their attributes, and each flow's trace id in its status record."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flowkit import make_project, read_json, write_flow

pytest.importorskip("opentelemetry.sdk")

SCRIPT = """
import json, sys
import pandas as pd
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ductaflow import conduct

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

table = pd.DataFrame({"name": ["ok", "bad"], "x": [1, 0]})
conduct(table, "builds/b.py", instance_column="name", executor="serial", raise_on_failure=False, progress=False)
spans = [{"name": s.name, "id": f"{s.context.span_id:016x}", "trace": f"{s.context.trace_id:032x}",
          "parent": f"{s.parent.span_id:016x}" if s.parent else None, "attrs": dict(s.attributes),
          "error": s.status.status_code.name == "ERROR"} for s in exporter.get_finished_spans()]
print(json.dumps(spans))
"""


def test_a_sweep_is_one_trace_of_sweep_scenario_flow_and_cell_spans(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "calc", "# %%\nprint(1 / config['x'])", params='config = {"x": 1}')
    (root / "builds").mkdir()
    build = '# %% tags=["parameters"]\nconfig = {"x": 1}\n\n# %%\nfrom ductaflow import step\n\n# %%\n'
    build += textwrap.dedent('step("flows/calc.py", config={"x": config["x"]})\n')
    (root / "builds" / "b.py").write_text(build, encoding="utf-8")
    (root / "trace.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "trace.py"], cwd=root, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans = json.loads(proc.stdout.strip().splitlines()[-1])
    by_name = {s["name"]: s for s in spans}
    sweep = by_name["sweep b"]
    assert sweep["parent"] is None and sweep["attrs"]["ductaflow.scenarios"] == 2
    assert sweep["attrs"]["ductaflow.green"] == 1 and sweep["attrs"]["ductaflow.red"] == 1
    assert {s["trace"] for s in spans} == {sweep["trace"]}  # one sweep, one trace
    for name, light in (("ok", "green"), ("bad", "red")):
        scenario = by_name[f"scenario {name}"]
        assert scenario["parent"] == sweep["id"] and scenario["attrs"]["ductaflow.light"] == light
        assert scenario["attrs"]["ductaflow.attempt"] == 1
        assert scenario["error"] is (light == "red")
        [flow] = [s for s in spans if s["name"] == "flow b" and s["parent"] == scenario["id"]]
        assert flow["attrs"]["ductaflow.instance"] == name and flow["attrs"]["ductaflow.light"] == light
        assert flow["attrs"]["ductaflow.duration_s"] > 0
        cells = [s for s in spans if s["name"].startswith("cell ") and s["parent"] == flow["id"]]
        assert [c["attrs"]["cell.index"] for c in cells] == sorted(c["attrs"]["cell.index"] for c in cells)
        assert len(cells) >= 3  # the build's code cells (and ductaflow's injected one)
        assert cells[-1]["error"] is (light == "red")  # the step() cell raised for the red one
        record = read_json(root / "runs" / "b" / name / "b_status.json")
        assert record["trace_id"] == sweep["trace"]
        step = read_json(root / "runs" / "b" / name / "runs" / "calc" / "calc_status.json")
        assert step["trace_id"] == sweep["trace"]  # the step's kernel joined the trace (no exporter there)
    report = (root / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    assert f'trace <span class="mono">{sweep["trace"]}</span>' in report


def test_without_a_tracer_provider_nothing_is_traced(tmp_path: Path) -> None:
    from ductaflow import run_notebook

    root = make_project(tmp_path)
    write_flow(root, "calc", "# %%\nprint(config['x'])", params='config = {"x": 1}')
    result = run_notebook(root / "flows" / "calc.py", {"x": 2}, project_root=root, instance_name="i")
    assert result.trace_id is None and read_json(result.status_path)["trace_id"] is None
