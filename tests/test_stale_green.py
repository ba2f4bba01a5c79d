"""Never a stale green: what a run used is recorded as it runs, and a change to any of it re-runs it.

Real kernels throughout. Each test first runs something green, then changes one thing it
used (a flow run through a computed path, a project module, an input file, an upstream's
output) and checks that the next decision re-runs it and names the change; and that
nothing re-runs when nothing changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from flowkit import ductaflow_cmd, make_project, read_json, write_flow

from ductaflow import ConfigError, Status, WouldOverwrite, conduct, run_notebook

pytestmark = pytest.mark.kernel

COMPUTED_BUILD = """
# %%
from pathlib import Path
from ductaflow import step
names = ["us" + "e"]  # never a string literal a scan could find
for name in names:
    step(Path(config["_project_root"]) / "flows" / f"{name}.py", name, {"k": 1})
"""


def _rerun(flow: Path, cfg: dict, exec_dir: Path, root: Path):  # noqa: ANN202 - FlowResult
    return run_notebook(flow, cfg, exec_dir, root)


def _bump(path: Path, text: str) -> None:
    """Rewrite ``path`` with ``text`` and make sure its mtime moves (coarse clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_a_flow_a_build_runs_through_a_computed_path_is_tracked(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    use = write_flow(root, "use", '# %%\nprint("use v1", config["k"])\n')
    build = write_flow(root, "build", COMPUTED_BUILD)
    inst = root / "runs" / "build" / "b1"
    first = _rerun(build, {}, inst, root)
    assert first.status is Status.GREEN and not first.skipped
    assert any(d.kind == "flow" and d.path == "flows/use.py" for d in first.deps or ())
    assert _rerun(build, {}, inst, root).skipped  # nothing changed: nothing runs
    _bump(use, use.read_text().replace("use v1", "use v2"))
    again = _rerun(build, {}, inst, root)
    assert not again.skipped and "flow code changed: flows/use.py" in again.reasons
    assert "use v2" in (inst / "runs" / "use" / "use_execution_output.txt").read_text()


def test_an_input_file_named_by_the_config_or_declared_is_tracked(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "data").mkdir()
    zones, extra = root / "data" / "zones.csv", root / "data" / "extra.csv"
    zones.write_text("a,b\n1,2\n")
    extra.write_text("x\n1\n")
    flow = write_flow(
        root, "reader",
        '# %%\nimport ductaflow\nfrom pathlib import Path\n'
        'print(len(Path(config["_project_root"], config["zones_file"]).read_text()))\n'
        'print(ductaflow.inputs("data/extra.csv")[0].read_text())\n',
    )
    cfg, inst = {"zones_file": "data/zones.csv"}, root / "runs" / "reader" / "i"
    first = _rerun(flow, cfg, inst, root)
    assert first.status is Status.GREEN
    recorded = {(d.kind, d.path) for d in first.deps or ()}
    assert {("input", "data/zones.csv"), ("input", "data/extra.csv")} <= recorded
    os.utime(zones)  # touched, not changed: still up to date
    assert _rerun(flow, cfg, inst, root).skipped
    _bump(zones, "a,b\n1,3\n")
    again = _rerun(flow, cfg, inst, root)
    assert not again.skipped and again.reasons == ("input changed: data/zones.csv",)
    _bump(extra, "x\n2\n")
    third = _rerun(flow, cfg, inst, root)
    assert not third.skipped and third.reasons == ("input changed: data/extra.csv",)


def test_a_project_module_the_flow_imports_is_tracked(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    helper = root / "flows" / "helper.py"
    helper.write_text("VALUE = 1\n")
    flow = write_flow(root, "uses_helper", "# %%\nimport helper\nprint('value', helper.VALUE)\n")
    inst = root / "runs" / "uses_helper" / "i"
    first = _rerun(flow, {}, inst, root)
    assert first.status is Status.GREEN, first.error
    assert any(d.kind == "module" and d.path == "flows/helper.py" for d in first.deps or ())
    assert _rerun(flow, {}, inst, root).skipped
    _bump(helper, "VALUE = 2\n")
    again = _rerun(flow, {}, inst, root)
    assert not again.skipped and "module changed: flows/helper.py" in again.reasons
    assert "value 2" in again.log_path.read_text()


UPSTREAM_BUILD = """
# %%
from ductaflow import step
step("flows/a.py", "a")
step("flows/b.py", "b")
"""


def test_a_step_reruns_only_when_its_upstream_left_different_files(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    helper = root / "flows" / "shape.py"
    helper.write_text("def rows():\n    return 3\n")
    write_flow(root, "a", '# %%\nimport shape\nopen("out.csv", "w").write("n\\n" * shape.rows())\n')
    write_flow(root, "b", '# %%\nprint("b read", len(open("../a/out.csv").read()))\n')
    build = write_flow(root, "chain", UPSTREAM_BUILD)
    inst = root / "runs" / "chain" / "c"
    assert _rerun(build, {}, inst, root).status is Status.GREEN
    b_status = inst / "runs" / "b" / "b_status.json"
    first_b = read_json(b_status)["started"]
    _bump(helper, "def rows():\n    # same result, new code\n    return 3\n")
    assert not _rerun(build, {}, inst, root).skipped  # the build re-runs: a module of a step changed
    assert read_json(b_status)["started"] == first_b  # a re-ran, left the same file: b did not
    _bump(helper, "def rows():\n    return 4\n")
    _rerun(build, {}, inst, root)
    assert read_json(b_status)["started"] != first_b  # a's output changed: b re-ran
    assert "b read 8" in (inst / "runs" / "b" / "b_execution_output.txt").read_text()


def test_the_conductor_reruns_a_scenario_whose_input_changed(tmp_path: Path) -> None:
    import pandas as pd

    root = make_project(tmp_path)
    (root / "data").mkdir()
    data = root / "data" / "demand.csv"
    data.write_text("1\n")
    write_flow(root, "load", '# %%\nprint(open(config["_project_root"] + "/" + config["demand_file"]).read())\n',
               config={"demand_file": "data/demand.csv"})
    build = write_flow(root, "bld", '# %%\nfrom ductaflow import step\nstep("flows/load.py", "load")\n')
    table = pd.DataFrame({"name": ["s1", "s2"]})
    kw = {"runs_root": root / "runs", "project_root": root, "progress": False, "instance_column": "name"}
    conduct(table, build, **kw)
    explained = conduct(table, build, explain=True, **kw)
    assert list(explained["action"]) == ["skip", "skip"]
    _bump(data, "2\n")
    explained = conduct(table, build, explain=True, **kw)
    assert list(explained["action"]) == ["run", "run"]
    assert all("input changed: data/demand.csv" in r for r in explained["reasons"])


def test_a_keyboard_interrupt_raised_by_the_flow_is_red_and_the_loop_goes_on(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "stops", "# %%\nraise KeyboardInterrupt('the flow itself')\n")
    results = [run_notebook(flow, {}, root / "runs" / "stops" / f"i{k}", root, raise_on_failure=False)
               for k in range(2)]  # a KeyboardInterrupt escaping here would fail the test
    assert [r.status for r in results] == [Status.RED, Status.RED]
    assert not any(r.interrupted for r in results) and results[0].error and results[0].error.type == "KeyboardInterrupt"


def test_no_execute_refuses_to_replace_a_finished_run(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "keep", '# %%\nprint("kept")\n')
    assert ductaflow_cmd("run", "flows/keep.py", "--instance", "keep", cwd=root).returncode == 0
    inst = root / "runs" / "keep" / "keep"
    before = {p.name: p.read_bytes() for p in inst.iterdir() if p.is_file()}
    proc = ductaflow_cmd("run", "flows/keep.py", "--instance", "keep", "--no-execute", cwd=root)
    assert proc.returncode == 2 and "--force" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in inst.iterdir() if p.is_file()} == before
    with pytest.raises(WouldOverwrite):
        run_notebook(root / "flows" / "keep.py", {}, inst, root, no_execute=True)
    forced = ductaflow_cmd("run", "flows/keep.py", "--instance", "keep", "--no-execute", "--force", cwd=root)
    assert forced.returncode == 0 and not (inst / "keep_status.json").exists() and (inst / "keep.ipynb").exists()
    again = ductaflow_cmd("run", "flows/keep.py", "--instance", "keep", "--no-execute", cwd=root)
    assert again.returncode == 0, again.stderr  # only prepared before: nothing to lose


def test_a_config_key_never_moves_a_run_and_reserved_keys_are_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "f", '# %%\nprint(config["_project_root"])\n')
    elsewhere = tmp_path / "elsewhere"
    result = run_notebook(flow, {"_project_root": str(elsewhere)}, project_root=root, instance_name="i")
    assert result.execution_dir == root / "runs" / "f" / "i" and not elsewhere.exists()
    assert read_json(result.config_path)["_project_root"] == str(root.resolve())
    # a recorded config replayed lands where the arguments say, not where it was recorded
    moved = make_project(tmp_path, "moved")
    write_flow(moved, "f", '# %%\nprint(config["_project_root"])\n')
    replay = run_notebook(moved / "flows" / "f.py", result.config_path, project_root=moved, instance_name="i")
    assert replay.execution_dir == moved / "runs" / "f" / "i"
    with pytest.raises(ConfigError, match="_secret"):
        run_notebook(flow, {"_secret": 1}, project_root=root, instance_name="j")
    assert not (root / "runs" / "f" / "j").exists()


def test_step_fills_in_the_flow_defaults_and_a_missing_default_gets_a_hint(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "seeded", "# %%\nseed = config['seed']\nprint('seed', seed, config['n'])\n",
               config={"seed": 7, "n": 1})
    build = write_flow(root, "b", '# %%\nfrom ductaflow import step\nstep("flows/seeded.py", "s", {"n": 2})\n')
    result = run_notebook(build, {}, root / "runs" / "b" / "x", root)
    assert result.status is Status.GREEN
    assert read_json(root / "runs" / "b" / "x" / "runs" / "s" / "seeded_config.json")["seed"] == 7
    direct = run_notebook(root / "flows" / "seeded.py", {"n": 2}, root / "runs" / "seeded" / "d", root,
                          raise_on_failure=False)
    assert direct.status is Status.RED and direct.error is not None
    assert "config/flows/seeded.json" in direct.error.message and "step()" in direct.error.message


def test_records_without_dependencies_rerun_once(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "old", '# %%\nprint("x")\n')
    inst = root / "runs" / "old" / "i"
    first = _rerun(flow, {}, inst, root)
    doc = json.loads(first.status_path.read_text())
    doc["schema"], doc["deps"] = 2, None
    del doc["deps"]
    first.status_path.write_text(json.dumps(doc))
    again = _rerun(flow, {}, inst, root)
    assert not again.skipped and any("older ductaflow" in r for r in again.reasons)
    assert _rerun(flow, {}, inst, root).skipped
