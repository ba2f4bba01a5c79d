"""The test suite's own rules (tests/conftest.py, tests/reliability/conftest.py): every module is in a
lane, the ``kernel`` marker is registered strictly, no run writes a tracked file (RELIABILITY.md only
on request), and a changed tracked file fails the session."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _load(path: Path, name: str) -> ModuleType:
    """A private copy of a conftest module (pytest's own copy keeps its state)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def root_conftest() -> Iterator[ModuleType]:
    yield _load(TESTS / "conftest.py", "_root_conftest_under_test")
    sys.modules.pop("_root_conftest_under_test", None)


@pytest.fixture
def reliability_conftest() -> Iterator[ModuleType]:
    yield _load(TESTS / "reliability" / "conftest.py", "_reliability_conftest_under_test")
    sys.modules.pop("_reliability_conftest_under_test", None)


def _declares_kernel(path: Path) -> bool:
    """``pytestmark = pytest.mark.kernel`` (or a list holding it) at module level."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return "mark.kernel" in ast.unparse(node.value)
    return False


# ---------------------------------------------------------------- lanes
def test_the_kernel_marker_is_registered_and_markers_are_strict() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in options["addopts"].split()
    assert any(m.split(":")[0].strip() == "kernel" for m in options["markers"])


def test_every_test_module_is_in_a_lane_and_the_lists_name_real_modules(root_conftest: ModuleType) -> None:
    modules = sorted(p.relative_to(TESTS).as_posix() for p in TESTS.rglob("test_*.py"))
    unclassified = [m for m in modules if root_conftest.lane(m) is None and not _declares_kernel(TESTS / m)]
    assert not unclassified, "put each in FAST_MODULES or KERNEL_MODULES of tests/conftest.py, or mark it kernel"
    listed = root_conftest.KERNEL_MODULES | root_conftest.FAST_MODULES
    stale = sorted(m for m in listed if not (TESTS / m).exists())
    assert not stale, f"tests/conftest.py lists modules that do not exist: {stale}"
    assert root_conftest.lane("reliability/test_kernel_faults.py") == "kernel"
    assert root_conftest.lane("test_fast_anything.py") == "fast" and root_conftest.lane("test_new.py") is None
    assert not root_conftest.KERNEL_MODULES & root_conftest.FAST_MODULES


def test_fast_tests_are_checked_for_leftover_processes(root_conftest: ModuleType) -> None:
    """The guard compares this process's live children before and after a fast test."""
    import subprocess

    before = set(root_conftest._live_children())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert set(root_conftest._live_children()) - before == {child.pid}
    finally:
        child.kill()
        child.wait(10)
    assert child.pid not in root_conftest._live_children()


# ---------------------------------------------------------------- RELIABILITY.md only on request
def _reliability_session(reliability_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         option: bool) -> SimpleNamespace:  # fmt: skip
    output = tmp_path / "RELIABILITY.md"
    monkeypatch.setattr(reliability_conftest, "OUTPUT", output)
    monkeypatch.setattr(reliability_conftest, "_complete", lambda session: None)  # a full run of the directory
    item = SimpleNamespace(stash=pytest.Stash(), module=SimpleNamespace(SECTION="Kernel faults"), name="t",
                           nodeid="tests/reliability/test_x.py::t")  # fmt: skip
    monkeypatch.setattr(reliability_conftest._STATE, "items", [item])
    config = SimpleNamespace(getoption=lambda name, default=None: option if name == "write_reliability" else default,
                             option=SimpleNamespace(verbose=0))  # fmt: skip
    return SimpleNamespace(config=config, output=output)


def test_a_full_reliability_run_does_not_write_reliability_md_unless_asked(
    reliability_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(reliability_conftest.WRITE_ENV, raising=False)
    session = _reliability_session(reliability_conftest, tmp_path, monkeypatch, option=False)
    reliability_conftest.pytest_sessionfinish(session, 0)
    assert not session.output.exists(), "a plain test run wrote the tracked RELIABILITY.md"


@pytest.mark.parametrize("how", ["option", "env"])
def test_reliability_md_is_written_when_asked(
    reliability_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv(reliability_conftest.WRITE_ENV, "1")
    else:
        monkeypatch.delenv(reliability_conftest.WRITE_ENV, raising=False)
    session = _reliability_session(reliability_conftest, tmp_path, monkeypatch, option=how == "option")
    reliability_conftest.pytest_sessionfinish(session, 0)
    text = session.output.read_text(encoding="utf-8")
    assert "`python -m pytest tests/reliability --write-reliability`" in text
    assert "| t | (did not start) |" in text and "| pass |" in text


# ---------------------------------------------------------------- no test run changes a tracked file
def _tracked_session(root_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     files: dict[str, str], write_reliability: bool = False) -> Any:  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(root_conftest, "REPO", tmp_path)
    monkeypatch.setattr(root_conftest, "_tracked_files", lambda: sorted(files))
    monkeypatch.setattr(sys, "addaudithook", lambda hook: None)  # not a second hook in this process
    config = SimpleNamespace(stash=pytest.Stash(), getoption=lambda name, default=None: write_reliability)
    session = SimpleNamespace(config=config, exitstatus=pytest.ExitCode.OK)
    root_conftest.pytest_sessionstart(session)
    return session


def test_a_run_that_changes_a_tracked_file_fails_and_names_it(
    root_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _tracked_session(root_conftest, tmp_path, monkeypatch, {"a.md": "one", "b.md": "two", "c.md": "3"})
    (tmp_path / "a.md").write_text("changed")
    root_conftest._audit("open", (str(tmp_path / "a.md"), "w", 0))
    (tmp_path / "c.md").touch()  # a new mtime, the same content: not a change
    root_conftest.pytest_sessionfinish(session, 0)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    err = capsys.readouterr().err
    assert "tracked file(s) changed during this test run" in err
    assert "  a.md (opened for writing by this pytest process)" in err
    assert "b.md" not in err and "c.md" not in err


def test_an_unchanged_tree_passes_and_reliability_md_may_change_only_on_request(
    root_conftest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _tracked_session(root_conftest, tmp_path, monkeypatch, {"a.md": "one"})
    root_conftest.pytest_sessionfinish(session, 0)
    assert session.exitstatus == pytest.ExitCode.OK and capsys.readouterr().err == ""
    asked = _tracked_session(root_conftest, tmp_path, monkeypatch, {"RELIABILITY.md": "old"}, write_reliability=True)
    (tmp_path / "RELIABILITY.md").write_text("regenerated")
    root_conftest.pytest_sessionfinish(asked, 0)
    assert asked.exitstatus == pytest.ExitCode.OK
    plain = _tracked_session(root_conftest, tmp_path, monkeypatch, {"RELIABILITY.md": "old"})
    (tmp_path / "RELIABILITY.md").write_text("regenerated")
    root_conftest.pytest_sessionfinish(plain, 0)
    assert plain.exitstatus == pytest.ExitCode.TESTS_FAILED and "RELIABILITY.md" in capsys.readouterr().err
