"""The whole suite's plugin: the two lanes, the leak guard of the fast lane, the tracked-files check
and the check that no kernel files are left behind.

Lanes. ``python -m pytest -m "not kernel"`` is the fast lane: pure logic, no Jupyter kernel,
no browser, no Dask and no subprocess that runs flows (under 30 s). Every other test carries the
``kernel`` marker, given here: whole modules listed in :data:`KERNEL_MODULES` (a module may also
say ``pytestmark = pytest.mark.kernel`` itself), and any test using a fixture of
:data:`KERNEL_FIXTURES`. A module in neither :data:`KERNEL_MODULES` nor :data:`FAST_MODULES`,
nor named ``test_fast_*.py``, is put in the kernel lane with a warning: a new module is slow until
someone says otherwise. A fast-lane test that leaves a new child process behind (a kernel
template, a cluster, a server) fails: it belongs to the kernel lane.

Processes. The suite runs under pytest-xdist (``-n auto --dist loadfile`` in pyproject.toml):
each module runs whole in one worker, so module fixtures (a browser, a Dask cluster) start
once; :func:`pytest_xdist_auto_num_workers` caps the workers at :data:`MAX_WORKERS`. ``-n 0``
runs everything in this process, as does ``--write-reliability``. The checks of a whole
session (tracked files, kernel files) run once, in the process that started the session,
after every worker has ended.

Tracked files. No test may change a file git tracks (``RELIABILITY.md`` is written only on
request: ``--write-reliability``). The session records the content hash of every tracked file at
its start and, at its end, fails the run and names each tracked file whose content changed, and
whether this pytest process itself opened it for writing (known only with ``-n 0``: workers
are other processes). Another person editing the working tree during the run shows up too:
the message says so.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_core.paths import jupyter_runtime_dir

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WRITE_RELIABILITY_ENV = "DUCTAFLOW_WRITE_RELIABILITY"

#: Test modules (relative to tests/, "/" separated) that start kernels, browsers, Dask or
#: subprocesses running flows. A directory ending in "/" covers every module below it.
KERNEL_MODULES = frozenset({
    "reliability/",
    "test_cli_run.py",
    "test_conductor.py",
    "test_hooks.py",
    "test_tracing.py",
    "test_config_limits_cli.py",
    "test_config_names.py",
    "test_dask.py",
    "test_debug_unpack.py",
    "test_example.py",
    "test_execute.py",
    "test_imports_and_usage.py",
    "test_incremental.py",
    "test_kernel_choice.py",
    "test_report_paged.py",
    "test_report_row_store.py",
    "test_kernels.py",
    "test_lights.py",
    "test_procs.py",
    "test_report_browser.py",
    "test_scenario_columns.py",
    "test_script_mode.py",
    "test_slurm.py",
    "test_stale_green.py",
})  # fmt: skip
#: Modules of pure logic whose names do not start with ``test_fast_``.
FAST_MODULES = frozenset({"test_adapters.py", "test_layers.py", "test_report.py", "test_report_cache.py"})
#: Fixtures that start a kernel, a browser or a cluster: a test using one is in the kernel lane.
KERNEL_FIXTURES = frozenset({"browser", "client", "page", "report_url", "unicode_run"})
#: At most this many xdist workers for ``-n auto``: the kernel tests are CPU-bound, and several
#: check timings (a heartbeat, a Ctrl-C) that a crowded machine would only blur.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use, at most :data:`MAX_WORKERS`; none
    (all in this process) when RELIABILITY.md is to be written from what one process saw."""
    if write_reliability(config):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _in_worker(config: pytest.Config) -> bool:
    """True in an xdist worker (the session's own checks run in the process that started it)."""
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if write_reliability(config) and getattr(config.option, "numprocesses", None) and not _in_worker(config):
        raise pytest.UsageError(
            "--write-reliability writes RELIABILITY.md from the outcomes one process saw: drop -n or give -n 0"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, one per test module (``browserkit.chromium``); skipped without it."""
    from browserkit import chromium  # beside this file: the browser tests' own helpers

    yield from chromium()


def _module_key(item: pytest.Item) -> str:
    try:
        return Path(str(item.path)).resolve().relative_to(HERE).as_posix()
    except ValueError:
        return Path(str(item.path)).name


def lane(module: str) -> str | None:
    """``"kernel"``, ``"fast"`` or None (unclassified) for a module path relative to tests/."""
    if module in KERNEL_MODULES or any(module.startswith(d) for d in KERNEL_MODULES if d.endswith("/")):
        return "kernel"
    if module in FAST_MODULES or Path(module).name.startswith("test_fast_"):
        return "fast"
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-reliability",
        action="store_true",
        default=False,
        help="after a full run of tests/reliability, rewrite RELIABILITY.md from its outcomes "
        f"(also: {WRITE_RELIABILITY_ENV}=1); without it no test writes a tracked file",
    )


def write_reliability(config: pytest.Config) -> bool:
    """Whether this run was asked to regenerate RELIABILITY.md."""
    return bool(config.getoption("write_reliability", False)) or os.environ.get(WRITE_RELIABILITY_ENV) == "1"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    kernel = pytest.mark.kernel
    unclassified: set[str] = set()
    for item in items:
        module = _module_key(item)
        which = lane(module)
        if which is None and item.get_closest_marker("kernel") is not None:
            which = "kernel"  # the module says so itself: pytestmark = pytest.mark.kernel
        if which is None:
            unclassified.add(module)
        slow = which != "fast" or KERNEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        if slow and item.get_closest_marker("kernel") is None:
            item.add_marker(kernel)
    if unclassified:
        warnings.warn(
            pytest.PytestWarning(
                f"test module(s) {sorted(unclassified)} are in no lane of tests/conftest.py: run as kernel tests; "
                "add each to FAST_MODULES or KERNEL_MODULES (or name it test_fast_*.py)"
            ),
            stacklevel=2,
        )


# ---------------------------------------------------------------- the fast lane's leak guard
def _live_children() -> dict[int, str]:
    out = {}
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out[child.pid] = " ".join(child.cmdline())[:120]
        except psutil.Error:
            continue
    return out


#: Child processes alive when the last fast-lane test ended; None after a kernel-lane test.
_CHILDREN_AFTER_LAST: set[int] | None = None


@pytest.fixture(autouse=True)
def _fast_tests_leave_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test outside the kernel lane must not leave a child process running (a kernel template,
    a spawned kernel, a Dask cluster): that test belongs to the kernel lane."""
    global _CHILDREN_AFTER_LAST
    if request.node.get_closest_marker("kernel") is not None:
        _CHILDREN_AFTER_LAST = None  # a kernel test may keep a module's cluster or browser running
        yield
        return
    before = _CHILDREN_AFTER_LAST if _CHILDREN_AFTER_LAST is not None else set(_live_children())
    yield
    after = _live_children()
    _CHILDREN_AFTER_LAST = set(after)  # the next fast test's "before": one scan of /proc a test
    left = {pid: cmd for pid, cmd in after.items() if pid not in before}
    if left:
        pytest.fail(f"a fast-lane test left child process(es) running: {left}; mark it kernel", pytrace=False)


# ---------------------------------------------------------------- no test writes a tracked file
_TRACKED = pytest.StashKey[dict[str, str]]()
_WRITTEN: set[str] = set()


def _tracked_files() -> list[str] | None:
    """Files git tracks in this checkout (relative paths); None outside a git work tree."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return [p for p in out.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "absent"


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Remember files this process opens for writing or renames onto (the in-process evidence)."""
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
    elif event == "os.rename" and len(args) >= 2:
        path, writes = args[1], True
    else:
        return
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        _WRITTEN.add(os.path.abspath(os.fsdecode(path)))


# ---------------------------------------------------------------- no kernel files left behind
_KERNEL_FILES = pytest.StashKey[set[Path]]()


def _kernel_files() -> set[Path]:
    """Kernel connection files and sockets in the Jupyter runtime dir, and kernel-template
    folders in the temp dir: what a run, a conduct or a test may not leave behind."""
    found: set[Path] = set()
    places = ((Path(jupyter_runtime_dir()), ("df-", "kernel-")), (Path(tempfile.gettempdir()), ("ductaflow-kt-",)))
    for folder, prefixes in places:
        try:
            found |= {folder / n for n in os.listdir(folder) if n.startswith(prefixes)}
        except OSError:
            pass
    return found


def _owner_gone(path: Path) -> bool:
    """True unless the name carries the pid of a live process (ductaflow's ``df-<pid>-``,
    ``ductaflow-kt-<pid>-``): a live owner, e.g. this pytest process, cleans up at its exit."""
    pid = path.name.split("-")[2 if path.name.startswith("ductaflow-kt-") else 1]
    return not pid.isdigit() or not psutil.pid_exists(int(pid))


def _check_kernel_files(session: pytest.Session) -> None:
    before = session.config.stash.get(_KERNEL_FILES, None)
    if before is None:
        return
    left = sorted(str(p) for p in _kernel_files() - before if _owner_gone(p))
    if not left:
        return
    shown = "\n".join(f"  {p}" for p in left[:20]) + (f"\n  ... and {len(left) - 20} more" if len(left) > 20 else "")
    sys.stderr.write(
        "\nERROR: kernel connection files, sockets or template folders of gone processes were left by this "
        f"test run ({len(left)}; another program starting kernels meanwhile shows here too):\n{shown}\n"
    )
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_sessionstart(session: pytest.Session) -> None:
    if _in_worker(session.config):
        return
    session.config.stash[_KERNEL_FILES] = _kernel_files()
    tracked = _tracked_files()
    if tracked is None:
        return
    session.config.stash[_TRACKED] = {rel: _digest(REPO / rel) for rel in tracked}
    sys.addaudithook(_audit)


@pytest.hookimpl(trylast=True)  # after tests/reliability/conftest.py may have written RELIABILITY.md
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _check_kernel_files(session)
    before = session.config.stash.get(_TRACKED, None)
    if before is None:
        return
    allowed = {"RELIABILITY.md"} if write_reliability(session.config) else set()
    changed = sorted(rel for rel, digest in before.items() if rel not in allowed and _digest(REPO / rel) != digest)
    if not changed:
        return
    lines = []
    for rel in changed:
        ours = str(REPO / rel) in _WRITTEN
        lines.append(f"  {rel}" + (" (opened for writing by this pytest process)" if ours else ""))
    sys.stderr.write(
        "\nERROR: tracked file(s) changed during this test run (no test may write one; if someone was "
        "editing the working tree meanwhile, their edits show here too):\n" + "\n".join(lines) + "\n"
    )
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
