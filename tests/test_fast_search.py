"""Adaptive sweeps without kernels: what a follow-up may answer, the sweep state file, and resuming it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from ductaflow.conductor.resume import Resumed
from ductaflow.conductor.search import follow_up_spec, proposed, resolve_follow_up
from ductaflow.errors import ConfigError, ScenarioError, SweepNotFound
from ductaflow.store.sweeps import SweepNode, SweepState, list_sweeps, read_sweep_state, write_sweep_state


def test_a_follow_up_may_answer_with_a_frame_a_list_a_dict_or_nothing() -> None:
    assert proposed(None, "p") == ([], [])
    assert proposed({"x": 1}, "p") == ([{"x": 1}], [None])
    rows, prio = proposed(pd.DataFrame({"x": [1, 2], "priority": [2.0, float("nan")]}), "p")
    assert rows == [{"x": 1}, {"x": 2}] and prio == [2.0, None]
    rows, prio = proposed([{"x": 1, "priority": 3}, {"x": 2}, {"x": 1, "priority": 0}], "p")
    assert rows == [{"x": 1}, {"x": 2}] and prio == [3.0, None]  # a repeat counts once, as first given


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (42, "follow_up of p returned int"),
        ("x=1", "follow_up of p returned str"),
        ([{"x": 1}, 7], "a row that is not a dict: 7"),
        ([{"x": 1, "priority": "high"}], "priority must be a number, not 'high'"),
        ([{"x": 1, "priority": True}], "priority must be a number"),
    ],
)
def test_answers_that_are_not_rows_are_refused_naming_the_parent(answer: object, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        proposed(answer, "p")


def _module_level(result: object) -> None:
    return None


def test_follow_up_specs_are_kept_only_for_what_another_process_can_import(tmp_path: Path) -> None:
    assert follow_up_spec("search:bisect", tmp_path) == "search:bisect"
    assert follow_up_spec(_module_level, tmp_path) == f"{__name__}:_module_level"
    assert follow_up_spec(lambda r: None, tmp_path) is None

    def nested(result: object) -> None:
        return None

    assert follow_up_spec(nested, tmp_path) is None
    with pytest.raises(ConfigError, match="follow_up must be a function"):
        resolve_follow_up(3, tmp_path)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        resolve_follow_up("no_such_module_here:f", tmp_path)
    (tmp_path / "my_search.py").write_text("def step(result):\n    return None\n")
    assert resolve_follow_up("my_search:step", tmp_path).__name__ == "step"  # found at the project root


def _state(**changes: object) -> SweepState:
    nodes = (
        SweepNode("a", {"x": 1}, 0, state="done", status="green", attempts=1, followed=True, config={"x": 1}),
        SweepNode("b", {"x": 2}, 1, parent="a", priority=2.0, state="running", attempts=1, config={"x": 2}),
        SweepNode("c", {"x": 3}, 2, parent="a", priority=1.0, state="not_run", note="budget", config={"x": 3}),
        SweepNode("d", {"x": 4}, 3, parent="b", state="skipped", status="orange"),
    )
    return SweepState(**{"sweep": "s", "build": "b", "build_path": "/p/b.py", "project_root": "/p",
                         "options": {"max_runs": 5, "timeout": 9.0}, "nodes": nodes, **changes})  # fmt: skip


def test_the_sweep_state_round_trips_and_reads_while_it_is_replaced(tmp_path: Path) -> None:
    state = _state()
    write_sweep_state(tmp_path, state)
    assert read_sweep_state(tmp_path, "s") == state
    assert [(d, n.instance) for d, n in state.walk()] == [(0, "a"), (1, "b"), (2, "d"), (1, "c")]
    assert state.counts() == {"green": 1, "running": 1, "not_run": 1, "orange": 1}
    assert min(state.children("a"), key=lambda n: n.order).instance == "c"  # priority 1 before 2
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            write_sweep_state(tmp_path, state)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(200):
            assert len(read_sweep_state(tmp_path, "s").nodes) == 4  # never a torn file
    finally:
        stop.set()
        writer.join(timeout=10)


def test_a_missing_or_foreign_sweep_state_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SweepNotFound, match="no sweep state under"):
        read_sweep_state(tmp_path)
    write_sweep_state(tmp_path, _state())
    with pytest.raises(SweepNotFound, match="no state for sweep 'other'.*known: s"):
        read_sweep_state(tmp_path, "other")
    (tmp_path / ".ductaflow" / "sweeps" / "new.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(SweepNotFound, match="schema 99"):
        read_sweep_state(tmp_path, "new")
    assert set(list_sweeps(tmp_path)) == {"s", "new"}


def test_a_resume_keeps_what_ended_and_the_settings_it_was_not_given() -> None:
    resumed = Resumed(_state())
    assert [p.instance for p in resumed.scenarios] == ["a", "b", "c", "d"]
    assert resumed.scenarios[1].parent == "a" and resumed.scenarios[1].config == {"x": 2}
    filled = resumed.fill({"max_runs": None, "timeout": 3.0, "retries": None, "seed": None})
    assert filled == {"max_runs": 5, "timeout": 3.0, "retries": None, "seed": None}


def test_walk_is_one_pass_and_keeps_orphans_as_roots() -> None:
    nodes = (SweepNode("a", {}, 0), SweepNode("b", {}, 1, parent="gone"), SweepNode("c", {}, 2, parent="b"))
    state = SweepState("s", "b", "/p/b.py", "/p", nodes=nodes)
    assert [(d, n.instance) for d, n in state.walk()] == [(0, "a"), (0, "b"), (1, "c")]
    chain = tuple(SweepNode(f"n{i}", {}, i, parent=f"n{i - 1}" if i else None) for i in range(20_000))
    assert sum(1 for _ in SweepState("s", "b", "/p/b.py", "/p", nodes=chain).walk()) == 20_000


def test_the_returned_table_takes_each_row_from_where_it_was_planned(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ductaflow.conductor.scenario import ScenarioPlan
    from ductaflow.conductor.sweep import _scenario_table

    table = pd.DataFrame({"x": [10, 20]})
    resumed = Resumed(_state())  # four nodes: a table given with the resume is planned after them
    old = [ScenarioPlan(i, n.instance, dict(n.values), {}, n.parent) for i, n in enumerate(resumed.state.nodes)]
    new = [ScenarioPlan(4 + i, f"n{i}", {"x": -1}, {}) for i in range(2)]  # values apart from the table's
    child = [ScenarioPlan(6, "kid", {"x": 99}, {}, "n0")]
    plan = SimpleNamespace(scenarios=(*old, *new, *child), instance_dir=lambda name: tmp_path / name)
    out = _scenario_table(table, plan, resumed)  # type: ignore[arg-type]
    assert list(out["x"]) == [1, 2, 3, 4, 10, 20, 99]
    assert list(out["parent"].fillna("-")) == ["-", "a", "a", "b", "-", "-", "n0"]
    plain = SimpleNamespace(scenarios=tuple(ScenarioPlan(i, f"r{i}", {"x": v}, {}) for i, v in enumerate((10, 20))),
                            instance_dir=lambda name: tmp_path / name)  # fmt: skip
    assert list(_scenario_table(table, plain)["x"]) == [10, 20]  # type: ignore[arg-type]
