"""What a run used, without a kernel: stamps, digests, which config values are inputs, which modules count."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import ductaflow
from ductaflow.core import deps as D


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "runs" / "f" / "i").mkdir(parents=True)
    (root / "data" / "zones.csv").write_text("a\n1\n")
    (root / "data" / "sub" / "x.txt").write_text("x")
    return root


def _bump(path: Path, text: str) -> None:
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_changed_file_is_a_reason_a_touched_one_is_not(tmp_path: Path) -> None:
    root = _project(tmp_path)
    dep = D.snapshot("input", root / "data" / "zones.csv", root)
    assert dep.path == "data/zones.csv" and dep.digest and ":" in dep.stamp
    assert D.change(dep, root) is None
    os.utime(root / "data" / "zones.csv", ns=(1, 10**18))
    assert D.change(dep, root) is None  # new stamp, same bytes
    _bump(root / "data" / "zones.csv", "a\n2\n")
    assert D.change(dep, root) == "input changed: data/zones.csv"
    (root / "data" / "zones.csv").unlink()
    assert D.change(dep, root) == "input missing: data/zones.csv"


def test_a_folder_changes_when_a_file_in_it_does(tmp_path: Path) -> None:
    root = _project(tmp_path)
    dep = D.snapshot("input", root / "data", root)
    assert dep.stamp.startswith("dir:") and D.change(dep, root) is None
    (root / "data" / ".hidden").write_text("ignored")
    assert D.change(dep, root) is None
    (root / "data" / "sub" / "y.txt").write_text("new")
    assert D.change(dep, root) == "input changed: data"


def test_config_values_that_name_project_files_are_inputs(tmp_path: Path) -> None:
    root = _project(tmp_path)
    exec_dir = root / "runs" / "f" / "i"
    (exec_dir / "own.csv").write_text("mine")
    (root / "runs" / "f" / "up").mkdir()
    (root / "runs" / "f" / "up" / "out.csv").write_text("upstream")
    cfg = {
        "zones_file": "data/zones.csv",  # from the project root
        "nested": {"paths": ["data/sub", "no/such/file.csv"]},
        "upstream": "../up/out.csv",  # from the instance dir
        "own": "own.csv",  # the instance's own output: never an input
        "here": ".",  # the instance dir itself
        "everything": "..",  # a folder holding the instance
        "root": str(root),  # the project root itself
        "outside": str(tmp_path),
        "_project_root": "data/zones.csv",  # framework keys are not looked at
        "label": "baseline",
        "n": 3,
    }
    found = D.config_inputs(cfg, root, exec_dir)
    assert found == [root / "data" / "zones.csv", root / "data" / "sub", root / "runs" / "f" / "up" / "out.csv"]


def test_only_the_projects_own_modules_count(tmp_path: Path) -> None:
    root = _project(tmp_path)
    files = {}
    for rel in ("flows/helper.py", "mypkg/__init__.py", ".venv/lib/x.py", "runs/f/i/gen.py",
                "lib/site-packages/pkg/m.py", "flows/flow.py", "ext/native.so"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        files[rel] = str(path)
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr")
    listed = [*files.values(), str(Path(ductaflow.__file__)), "/usr/lib/python3/os.py"]
    found = D.project_modules(listed, root, root / "runs", exclude=(root / "flows" / "flow.py",))
    assert found == [root / "flows" / "helper.py", root / "mypkg" / "__init__.py"]


def test_a_report_round_trips_through_a_kernel_repr(tmp_path: Path) -> None:
    root = _project(tmp_path)
    text = D.report(str(Path(D.__file__).parents[2]))
    doc = D.parse_report(repr(text))  # a user expression's text/plain is the string's repr
    assert doc is not None and str(Path(D.__file__)) in doc["modules"]
    assert D.parse_report("'not json'") is None and D.parse_report(None) is None
    assert "report(" in D.report_expression(root) and str(root) in D.report_expression(root)
    imported = [
        alias.name if isinstance(node, ast.Import) else str(node.module)
        for node in ast.walk(ast.parse(D.report_source()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert sorted(set(imported)) == ["json", "os", "sys"]  # a kernel answers without importing ductaflow


def test_declared_inputs_are_hashed_when_declared(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    before = len(D._DECLARED)
    (path,) = D.inputs("data/zones.csv")
    assert path == root / "data" / "zones.csv"
    doc = json.loads(D.report(str(root)))
    item = doc["inputs"][-1]
    assert len(D._DECLARED) == before + 1 and item["path"] == str(path) and item["digest"]
    dep = D.from_report({"modules": [], "inputs": [item]}, root, None)[0]
    assert dep == D.snapshot("input", path, root)
    del D._DECLARED[before:]


def test_merge_keeps_one_entry_per_path_in_a_stable_order() -> None:
    a = D.Dep("module", "b.py", "1")
    b = D.Dep("input", "a.csv", "2")
    c = D.Dep("flow", "flows/x.py", "3")
    assert D.merge([a, b], [D.Dep("module", "b.py", "other"), c]) == (c, a, b)
    assert D.from_records(D.to_records([a, b])) == (a, b) and D.from_records(None) is None


def test_a_flow_edited_after_it_was_read_is_a_change(tmp_path: Path) -> None:
    from ductaflow.core.flowfile import read_flow
    from ductaflow.run.usage import config_deps

    root = _project(tmp_path)
    (root / "flows").mkdir()
    path = root / "flows" / "f.py"
    path.write_text('# %% tags=["parameters"]\nconfig = {}\n\n# %%\nprint(1)\n')
    flow = read_flow(path)  # what the run will execute
    _bump(path, path.read_text().replace("print(1)", "print(2)"))  # edited while it waits for its lock
    (own,) = config_deps({}, root, root / "runs" / "f" / "i", flow)
    assert own.kind == "flow" and own.digest == flow.code_hash()
    assert D.change(own, root) == "flow code changed: flows/f.py"
