"""Where a flow opened as a notebook works: which flow it is, which instance, never flows/ (no kernel).

The kernel side (the move itself, a real JupyterLab-style session) is tests/test_interactive_flow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ductaflow.core.lights import Status, is_warning_line
from ductaflow.errors import DuctaflowError, InvalidName
from ductaflow.inflow.interactive import (
    SESSION_ENV,
    FlowGuess,
    choose_workdir,
    describe,
    detect_flow,
    latest_instance,
)
from ductaflow.store.records import write_status
from ductaflow.store.result import FlowResult, RunState


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A project: marker, flows/a.py, flows/b.py, config/flows/a.json."""
    proj = tmp_path / "proj"
    (proj / "flows").mkdir(parents=True)
    (proj / "config" / "flows").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("")
    for name in ("a", "b"):
        (proj / "flows" / f"{name}.py").write_text('# %% tags=["parameters"]\nconfig = {}\n')
    (proj / "config" / "flows" / "a.json").write_text("{}")
    return proj


def _record(folder: Path, flow: str, finished: str | None, state: RunState = RunState.FINISHED) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_status(
        FlowResult(
            flow=flow, flow_path=Path(f"flows/{flow}.py"), execution_dir=folder, status=Status.GREEN,
            state=state.value, started=finished, finished=finished if state is RunState.FINISHED else None,
        )
    )


def test_flow_is_found_from_each_front_end_in_order(root: Path) -> None:
    flows = root / "flows"
    vsc = {"__vsc_ipynb_file__": str(flows / "a.py"), "__file__": str(flows / "b.py")}
    assert detect_flow(vsc, {}, flows) == FlowGuess("a", flows / "a.py", "VS Code's notebook path")
    assert detect_flow({"__file__": str(flows / "b.py")}, {}, root).name == "b"
    # JupyterLab: the path is relative to the server's root, here the project root above the kernel's cwd
    jlab = detect_flow({}, {SESSION_ENV: "flows/b.py"}, flows)
    assert (jlab.name, jlab.path) == ("b", flows / "b.py")
    assert detect_flow({"__session__": "proj/flows/a.py"}, {}, flows).path == flows / "a.py"
    # nbclient (jupytext --execute) says nothing: the default config's name, when a flow has it
    assert detect_flow({}, {}, flows, default_config_path="config/flows/a.json").path == flows / "a.py"
    assert detect_flow({}, {}, root / "config", default_config_path="config/flows/b.json").name == "b"
    assert detect_flow({}, {SESSION_ENV: "Console 1"}, flows, default_config_path="config/x.json").name is None
    # an explicit flow= wins over everything
    assert detect_flow(vsc, {SESSION_ENV: "flows/a.py"}, flows, flow="b").name == "b"
    with pytest.raises(InvalidName):
        detect_flow({}, {}, flows, flow="")


def test_default_is_runs_flow_interactive_and_choosing_again_does_not_nest(root: Path) -> None:
    guess = FlowGuess("a", root / "flows" / "a.py", "test")
    target = root / "runs" / "a" / "interactive"
    first = choose_workdir(guess, root, root / "flows", None)
    assert (first.path, first.new, first.recorded_config) == (target, True, None)
    assert not target.exists()  # choosing creates nothing
    target.mkdir(parents=True)
    assert choose_workdir(guess, root, target, None).path == target  # run twice: same place, not nested
    assert choose_workdir(guess, root, root, None).path == target  # VS Code's window starts at the root
    own = root / "runs" / "a" / "default"  # a notebook opened inside an instance of this flow stays there
    own.mkdir(parents=True)
    assert choose_workdir(guess, root, own, None).path == own
    # a kernel left in another flow's instance (VS Code's one shared window) moves to this flow's
    other = root / "runs" / "b" / "interactive"
    other.mkdir(parents=True)
    assert choose_workdir(guess, root, other, None).path == target
    # a kernel someone started outside the project (papermill --cwd) stays where it was put
    outside = root.parent / "elsewhere"
    outside.mkdir()
    assert choose_workdir(guess, root, outside, None).path == outside


def test_latest_is_the_newest_finished_record_anywhere_under_runs(root: Path) -> None:
    runs = root / "runs"
    _record(runs / "a" / "default", "a", "2026-01-01T10:00:00.000+00:00")
    in_build = runs / "build" / "s1" / "runs" / "a"
    _record(in_build, "a", "2026-01-02T10:00:00.000+00:00")
    _record(runs / "a" / "now", "a", "2026-01-03T10:00:00.000+00:00", RunState.RUNNING)  # still going: skipped
    _record(runs / "b" / "default", "b", "2026-01-04T10:00:00.000+00:00")
    (runs / ".ductaflow" / "a").mkdir(parents=True)
    assert latest_instance(runs, "a").execution_dir == in_build
    (in_build / "a_config.json").write_text(json.dumps({"x": 1}))
    work = choose_workdir(FlowGuess("a"), root, root / "flows", "latest")
    assert (work.path, work.recorded_config) == (in_build, in_build / "a_config.json")
    assert "latest recorded a, green 2026-01-02 10:00:00" in work.why
    with pytest.raises(DuctaflowError, match="no recorded instance of flow 'c'"):
        choose_workdir(FlowGuess("c"), root, root / "flows", "latest")


def test_an_instance_is_chosen_by_name_or_by_directory(root: Path) -> None:
    guess = FlowGuess("a")
    assert choose_workdir(guess, root, root / "flows", "try2").path == root / "runs" / "a" / "try2"
    with pytest.raises(InvalidName):
        choose_workdir(guess, root, root / "flows", "two words")
    folder = root / "runs" / "build" / "s1" / "runs" / "a"
    folder.mkdir(parents=True)
    # a directory, relative to the project root; it works without knowing the flow
    assert choose_workdir(FlowGuess(None), root, root / "flows", "runs/build/s1/runs/a").path == folder
    with pytest.raises(DuctaflowError, match="not found"):
        choose_workdir(guess, root, root / "flows", "runs/nope/x")


def test_printed_lines_say_where_and_how_and_never_turn_a_run_orange(root: Path) -> None:
    flows = root / "flows"
    guess = FlowGuess("a", flows / "a.py", "the Jupyter session path")
    lines = describe(choose_workdir(guess, root, flows, None), guess, flows)
    assert lines[0].startswith("interactive session: working in runs/a/interactive (new)")
    assert "not flows" in lines[0] and "ductaflow debug" in lines[1] and 'instance="latest"' in lines[1]
    unknown = describe(choose_workdir(FlowGuess(None), root, flows, None), FlowGuess(None), flows)
    assert len(unknown) == 1 and "staying in flows" in unknown[0] and 'flow="<flow name>"' in unknown[0]
    assert not any(is_warning_line(line) for line in [*lines, *unknown])
