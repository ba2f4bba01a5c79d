"""Hooks and tracker bindings without a kernel: loading, the failure record, the status record's
round trip, and the lifecycle's order (record, hooks, amended record, ledger)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ductaflow.core.context import RunContext
from ductaflow.core.lights import Status
from ductaflow.errors import ConfigError
from ductaflow.lifecycle.dispatch import Dispatcher
from ductaflow.lifecycle.events import RunEvent
from ductaflow.lifecycle.hooks import Hooks, spec_of
from ductaflow.run.recorder import Lifecycle
from ductaflow.store.records import read_status
from ductaflow.store.result import FlowResult, HookFailure, RunState, TrackerBinding
from ductaflow.trackers.noop import NoopTracker, read_events


class Boom:
    def on_flow_end(self, event: RunEvent) -> None:
        raise RuntimeError("no")


class Quiet:
    calls: list[str] = []

    def on_flow_start(self, event: RunEvent) -> None:
        Quiet.calls.append(f"start {event.result.state}")

    def on_flow_end(self, event: RunEvent) -> None:
        Quiet.calls.append(f"end {event.result.status.value}")


def _result(tmp_path: Path, status: Status = Status.GREEN, state: str = RunState.FINISHED.value) -> FlowResult:
    return FlowResult("f", tmp_path / "f.py", tmp_path, status, state, started="2026-12-04T00:00:00+00:00")


def test_a_hook_spec_names_an_importable_class_and_a_local_one_is_refused() -> None:
    assert spec_of(Boom) == f"{__name__}:Boom" and spec_of(Boom()) == f"{__name__}:Boom"
    assert spec_of("pkg.mod:Name") == "pkg.mod:Name"

    class Local:
        pass

    with pytest.raises(ConfigError, match="define it in a module"):
        spec_of(Local)
    for bad in ("nocolon", "a b:C", ":C", "m:"):
        with pytest.raises(ConfigError, match="package.module:Name"):
            spec_of(bad)
    with pytest.raises(ConfigError, match="hooks_fail='later'"):
        Hooks([], "later")


def test_the_project_declares_hooks_and_a_missing_one_names_where(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.ductaflow]\nhooks = ["{__name__}:Quiet"]\n')
    loaded = Hooks.load(tmp_path, [Boom()])
    assert loaded.specs == (f"{__name__}:Quiet", f"{__name__}:Boom")
    (tmp_path / "pyproject.toml").write_text('[tool.ductaflow]\nhooks = ["nowhere_at_all:Hook"]\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: tool.ductaflow.hooks entry 'nowhere_at_all:Hook'"):
        Hooks.load(tmp_path)


def test_a_module_beside_pyproject_is_found_at_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.ductaflow]\nhooks = ["local_hooks_for_test:H"]\n')
    (tmp_path / "local_hooks_for_test.py").write_text("class H:\n    pass\n")
    try:
        assert Hooks.load(tmp_path).specs == ("local_hooks_for_test:H",)
    finally:
        sys.modules.pop("local_hooks_for_test", None)
        sys.path.remove(str(tmp_path.resolve()))


def test_a_raising_hook_is_recorded_after_the_final_record_and_before_the_ledger(tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []
    after: Dispatcher[RunEvent] = Dispatcher()
    after.add("spy", lambda e: seen.append((e.result.status.value, len(e.result.hook_failures))))
    Quiet.calls = []
    life = Lifecycle(RunContext(), hooks=Hooks([("q", Quiet()), ("b", Boom())]), after=after)
    running = _result(tmp_path, Status.RED, RunState.RUNNING.value)
    life.started(running)
    final = life.ended(_result(tmp_path))
    assert Quiet.calls == ["start running", "end green"]
    assert final.status is Status.GREEN and [f.hook for f in final.hook_failures] == ["b"]
    [failure] = final.hook_failures
    assert failure.error == "RuntimeError: no" and "raise RuntimeError" in failure.traceback
    on_disk = read_status(tmp_path / "f_status.json")
    assert on_disk is not None and on_disk.hook_failures == final.hook_failures
    assert seen == [("red", 0), ("green", 1)]  # the ledger saw the amended record

    red = Lifecycle(RunContext(), hooks=Hooks([("b", Boom())], "red"), after=Dispatcher())
    red.started(running)
    final = red.ended(_result(tmp_path))
    assert final.status is Status.RED and final.error is not None and final.error.type == "HookFailed"


def test_hook_failures_and_tracker_bindings_round_trip_through_the_status_record(tmp_path: Path) -> None:
    failure = HookFailure("m:H", "on_flow_end", "ValueError: x", "tb", "2026-12-04T00:00:00+00:00")
    binding = TrackerBinding("noop", "abc", "proj", "b", "file:///x")
    rec = FlowResult(**{**_result(tmp_path).__dict__, "hook_failures": (failure,), "trackers": (binding,)})
    back = FlowResult.from_record(rec.to_record())
    assert back.hook_failures == (failure,) and back.trackers == (binding,)
    old = rec.to_record()
    del old["hook_failures"], old["trackers"]
    old["schema"] = 6
    assert FlowResult.from_record(old).hook_failures == () and FlowResult.from_record(old).trackers == ()


def test_the_noop_tracker_writes_every_event_with_a_utc_time(tmp_path: Path) -> None:
    tracker = NoopTracker(tmp_path)
    artifact = tmp_path / "a.txt"
    artifact.write_text("12345")
    handle = tracker.init_run(project="p", group="g1", tags={"t": "1"}, config={"a.b": 2}, notes=None,
                              offline=True, where=tmp_path / "inst", run_name="g1/inst")  # fmt: skip
    tracker.log(handle, {"m": 1.5}, step=3)
    tracker.log_artifact(handle, "a", artifact)
    tracker.finish(handle, exit_code=1)
    events = read_events(handle.extra["events"])
    assert [e["event"] for e in events] == ["init_run", "log", "log_artifact", "finish"]
    assert events[1] == {**events[1], "metrics": {"m": 1.5}, "step": 3} and events[2]["size_bytes"] == 5
    assert all(e["at"].endswith("+00:00") for e in events) and events[-1]["exit_code"] == 1
    assert [r.id for r in tracker.list_runs(project="p", group_prefix="g")] == [handle.id]
    assert tracker.list_runs(project="p", group_prefix="other") == []


def test_an_installed_package_declares_hooks_through_the_entry_point_group(tmp_path: Path) -> None:
    from ductaflow.lifecycle import hooks

    dist = tmp_path / "site" / "notify_hooks-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: notify-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[ductaflow.hooks]\nnotify = {__name__}:Quiet\n")
    sys.path.insert(0, str(tmp_path / "site"))
    hooks._entry_points.cache_clear()
    try:
        assert Hooks.load(tmp_path).specs == (f"{__name__}:Quiet",)
    finally:
        sys.path.remove(str(tmp_path / "site"))
        hooks._entry_points.cache_clear()
