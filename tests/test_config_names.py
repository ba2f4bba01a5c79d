"""Bad input to ``ductaflow run``: exit 2, one line naming the culprit, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowkit import all_files, ductaflow_cmd, make_project, read_json, write_flow

from ductaflow import InvalidName, run_notebook
from ductaflow.cli import main

GOOD = """
# %%
from pathlib import Path
Path("ran.txt").write_text("x")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "good", GOOD, config={"n": 1})
    noparams = "# %%\nx = 1\n\n# %%\nprint('label is', globals().get('label', 'unset'))\n"
    (root / "flows" / "noparams.py").write_text(noparams)
    (root / "flows" / "twoparams.py").write_text(
        '# %% tags=["parameters"]\nconfig = {}\n\n# %% tags=["parameters"]\nx = 1\n\n# %%\nprint(x)\n'
    )
    bad = root / "bad_configs"
    bad.mkdir()
    (bad / "syntax.json").write_text('{\n  "n": 1,\n  "m": tru\n}\n')
    (bad / "list.json").write_text("[1, 2]\n")
    (bad / "null.json").write_text("null\n")
    # an earlier run that must survive untouched
    keep = root / "runs" / "good" / "keep"
    keep.mkdir(parents=True)
    (keep / "good_status.json").write_text('{"status": "green"}')
    return root


def _assert_rejected(proc, project: Path, before: set[str], *culprits: str) -> None:
    __tracebackhide__ = True
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ductaflow: error: "), lines[0]
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert all_files(project) == before, "bad input must not write anything"


@pytest.mark.parametrize(
    ("args", "culprits"),
    [
        (["flows/nope.py"], ["flow file not found", "flows/nope.py"]),
        (["flows/good.py", "--config", "missing.json"], ["config file not found", "missing.json"]),
        (["flows/good.py", "--config", "bad_configs/syntax.json"], ["syntax.json", "line 3, column 8"]),
        (["flows/good.py", "--config", "bad_configs/list.json"], ["list.json", "JSON object", "list"]),
        (["flows/good.py", "--config", "bad_configs/null.json"], ["null.json", "JSON object"]),
        (["flows/twoparams.py"], ["twoparams.py", "2 cells tagged 'parameters'"]),
        (["flows/good.py", "-p", "novalue"], ["key=value", "novalue"]),
    ],
    ids=["missing-flow", "missing-config", "invalid-json", "json-list", "json-null", "two-params", "-p"],
)
def test_bad_flow_or_config_exits_2(project: Path, args: list[str], culprits: list[str]) -> None:
    before = all_files(project)
    _assert_rejected(ductaflow_cmd("run", *args, cwd=project), project, before, *culprits)


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "a/b", "..", " space", "x" * 300, "CON"],
    ids=["empty", "absolute", "slash", "dotdot", "space", "300-chars", "CON"],
)
def test_unsafe_instance_names_exit_2(project: Path, name: str) -> None:
    before = all_files(project)
    proc = ductaflow_cmd("run", "flows/good.py", "--instance", name, cwd=project)
    _assert_rejected(proc, project, before, "instance name", repr(name))


def test_nul_in_instance_name(project: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    # argv cannot carry a NUL byte, so this one goes through the CLI entry point in-process
    monkeypatch.chdir(project)
    before = all_files(project)
    with pytest.raises(SystemExit) as info:
        main(["run", "flows/good.py", "--instance", "a\x00b"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ductaflow: error: instance name 'a\\x00b'"), err
    assert all_files(project) == before
    with pytest.raises(InvalidName):
        run_notebook(project / "flows" / "good.py", {}, instance_name="a\x00b")
    assert all_files(project) == before


def test_instance_and_output_dir_together_are_a_usage_error(project: Path) -> None:
    before = all_files(project)
    proc = ductaflow_cmd("run", "flows/good.py", "--instance", "a", "--output-dir", "d", cwd=project)
    assert proc.returncode == 2 and "not both" in proc.stderr and "Traceback" not in proc.stderr
    assert all_files(project) == before


def test_a_notebook_without_parameters_cell_runs_and_takes_parameters_at_the_top(project: Path) -> None:
    """As papermill does: with nothing given it runs unchanged; given parameters go into a cell at
    the top, with a note in the record and on the command's output (issue 16)."""
    plain = ductaflow_cmd("run", "flows/noparams.py", "--instance", "plain", cwd=project)
    assert plain.returncode == 0, plain.stderr
    log = (project / "runs" / "noparams" / "plain" / "noparams_execution_output.txt").read_text()
    assert log.strip() == "label is unset"
    given = ductaflow_cmd("run", "flows/noparams.py", "--instance", "given", "-p", "label=x", cwd=project)
    assert given.returncode == 0, given.stderr
    assert "no cell is tagged 'parameters'" in given.stderr, given.stderr
    given_log = (project / "runs" / "noparams" / "given" / "noparams_execution_output.txt").read_text()
    assert given_log.strip() == "label is x", "the given value must reach the notebook, as with papermill"
    record = read_json(project / "runs" / "noparams" / "given" / "noparams_status.json")
    assert any("injected at the top" in n for n in record["notes"]), record


def test_the_failing_cell_is_named_in_the_flow_whatever_was_injected(project: Path) -> None:
    (project / "flows" / "fails.py").write_text("# %%\nx = 1\n\n# %%\nraise ValueError('boom')\n")
    for args, instance in (([], "plain"), (["-p", "a=1"], "given")):  # no injected cell / one at the top
        proc = ductaflow_cmd("run", "flows/fails.py", "--instance", instance, *args, cwd=project)
        assert proc.returncode == 1, proc.stderr
        record = read_json(project / "runs" / "fails" / instance / "fails_status.json")
        assert record["error"]["type"] == "ValueError" and record["error"]["cell_index"] == 1, record["error"]


def test_a_papermill_style_parameters_cell_gets_its_values(project: Path) -> None:
    """``msg = None`` in the parameters cell and ``-p msg=Hello``: the notebook prints Hello, as
    papermill's would (it used to print None, green)."""
    (project / "flows" / "pm.py").write_text('# %% tags=["parameters"]\nmsg = None\n\n# %%\nprint("msg is", msg)\n')
    proc = ductaflow_cmd("run", "flows/pm.py", "--instance", "hello", "-p", "msg=Hello", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "runs" / "pm" / "hello" / "pm_execution_output.txt").read_text().strip() == "msg is Hello"
    assert "not known" not in proc.stderr, proc.stderr
