"""ductaflow's couplings to papermill, nbclient, jupyter_client, ipykernel and CPython.

Fast and kernel-free. Each test fails when a dependency changes a name or a contract that
ductaflow relies on (docs/compatibility.md lists them), when ductaflow starts editing other
libraries' modules again, or when an import is not declared in pyproject.toml.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

from ductaflow.kernels import adapters

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ductaflow"


def _python(code: str, cwd: Path | None = None, stdin: str | None = None, script: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter, or ``script``, or what ``stdin`` holds (``python -``)."""
    if script is not None:
        args = [sys.executable, str(script)]
    else:
        args = [sys.executable, "-c", textwrap.dedent(code)] if stdin is None else [sys.executable, "-"]
    proc = subprocess.run(args, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(PACKAGE.rglob("*.py"))]


# ---------------------------------------------------------------- no tricks on other modules
def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def test_no_module_in_ductaflow_edits_sys_modules_or_main() -> None:
    edits = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else []
            for target in targets:
                if isinstance(target, ast.Subscript) and _dotted(target.value) == "sys.modules":
                    edits.append(f"{path}:{node.lineno} sys.modules[...]")
                if isinstance(target, ast.Attribute) and target.attr in ("__file__", "__spec__"):
                    edits.append(f"{path}:{node.lineno} .{target.attr}")
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and _dotted(func.value) == "sys.modules" and func.attr != "get":
                edits.append(f"{path}:{node.lineno} sys.modules.{func.attr}")
    assert edits == []
    assert not (PACKAGE / "lean.py").exists()


def test_papermill_keeps_the_real_requests_after_the_engine_is_imported() -> None:
    out = _python("""
        import sys
        import ductaflow.kernels.engine
        import papermill.iorw
        import requests
        assert papermill.iorw.requests is sys.modules["requests"] is requests, papermill.iorw.requests
        assert requests.Session and papermill.iorw.HttpHandler
        from papermill.engines import papermill_engines
        print(papermill_engines.get_engine("ductaflow").__name__)
    """)
    assert out.split() == ["DuctaflowEngine"]


def test_jupytext_reads_myst_after_read_flow(tmp_path: Path) -> None:
    flow = tmp_path / "f.py"
    flow.write_text('# %% tags=["parameters"]\nconfig = {}\n\n# %%\nprint(config)\n', encoding="utf-8")
    out = _python(f"""
        from ductaflow.core.flowfile import read_flow
        import jupytext
        read_flow({str(flow)!r})
        myst = "---\\njupytext:\\n  text_representation:\\n    format_name: myst\\n---\\n\\n"
        myst += "```{{code-cell}}\\n1 + 1\\n```\\n"
        nb = jupytext.reads(myst, fmt="md:myst")
        print([c.cell_type for c in nb.cells])
    """)
    assert "code" in out


# ---------------------------------------------------------------- the documented seams
def test_the_engine_and_provisioners_are_entry_points_of_the_installed_package() -> None:
    engines = {ep.name: ep.value for ep in metadata.entry_points(group="papermill.engine")}
    assert engines.get("ductaflow") == "ductaflow.kernels.papermill_engine:DuctaflowEngine"
    provisioners = {ep.name: ep for ep in metadata.entry_points(group="jupyter_client.kernel_provisioners")}
    from ductaflow.kernels.provisioner import FORK_NAME, LOCAL_NAME, ForkProvisioner, QuickReapProvisioner

    assert provisioners[FORK_NAME].load() is ForkProvisioner
    assert provisioners[LOCAL_NAME].load() is QuickReapProvisioner
    # papermill alone finds the engine (no ductaflow import first), and nothing registers it by hand
    out = _python("""
        import papermill, sys
        from papermill.engines import papermill_engines
        print(papermill_engines.get_engine("ductaflow").__module__, "ductaflow.kernels.engine" in sys.modules)
    """)
    assert out.split() == ["ductaflow.kernels.papermill_engine", "False"]
    engine_source = (PACKAGE / "kernels" / "engine.py").read_text(encoding="utf-8")
    assert "papermill_engines.register(" not in engine_source and "_async_pre_start_kernel" not in engine_source


def _client(**traits: object) -> object:
    from ductaflow.kernels.engine import DuctaflowClient
    from ductaflow.kernels.papermill_engine import ThrottledSaves

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    return DuctaflowClient(ThrottledSaves(nb, progress_bar=False), **traits)


@pytest.mark.parametrize("launcher", ["fork", "spawn"])
def test_the_kernel_spec_selects_ductaflows_provisioner_with_its_preload(launcher: str) -> None:
    from jupyter_client.provisioning import KernelProvisionerFactory

    from ductaflow.kernels.fork import supported
    from ductaflow.kernels.options import KernelOptions
    from ductaflow.kernels.provisioner import FORK_NAME, LOCAL_NAME, ForkProvisioner, QuickReapProvisioner

    client = _client(kernel_options=KernelOptions(launcher, ("colorsys",)))
    km = client.create_kernel_manager()  # type: ignore[attr-defined]
    spec = km.kernel_spec
    assert spec.argv[:3] == [sys.executable, "-m", "ipykernel_launcher"]
    forks = launcher == "fork" and supported()
    stanza = spec.metadata["kernel_provisioner"]
    expected = (FORK_NAME, {"preload": ["colorsys"]}) if forks else (LOCAL_NAME, {})
    assert (stanza["provisioner_name"], stanza["config"]) == expected
    prov = KernelProvisionerFactory.instance().create_provisioner_instance("k", spec, parent=km)
    assert type(prov) is (ForkProvisioner if forks else QuickReapProvisioner)
    if forks:
        assert tuple(prov.preload) == ("colorsys",)
    assert km.client_class == "ductaflow.kernels.client.ReadyClient"


def test_a_named_kernel_keeps_its_spec_and_gets_the_quick_reaper() -> None:
    from ductaflow.kernels.provisioner import LOCAL_NAME

    km = _client(use_current_python=False, kernel_name="python3").create_kernel_manager()  # type: ignore[attr-defined]
    assert km.kernel_name == "python3"
    assert km.kernel_spec.metadata["kernel_provisioner"]["provisioner_name"] == LOCAL_NAME


def test_saves_are_throttled_between_the_first_and_the_last(tmp_path: Path) -> None:
    from ductaflow.kernels.papermill_engine import ThrottledSaves

    out = tmp_path / "out.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata["papermill"] = {}
    man = ThrottledSaves(nb, output_path=str(out), progress_bar=False)
    man.notebook_start()
    first = out.read_text(encoding="utf-8")
    man.throttle = True
    man.cell_start(nb.cells[0], 0)  # within a second of the first save: not written
    assert out.read_text(encoding="utf-8") == first
    man.throttle = False
    man.notebook_complete()
    assert json.loads(out.read_text(encoding="utf-8"))["metadata"]["papermill"]["end_time"]


def test_the_ready_client_adapts_to_an_older_protocol_as_jupyter_client_does() -> None:
    from jupyter_client.session import Session

    from ductaflow.kernels.client import ReadyClient

    client = ReadyClient(session=Session())
    client._adapt_protocol({"content": {"protocol_version": "5.3"}})
    assert client.session.adapt_version == 0
    client._adapt_protocol({"content": {"protocol_version": "4.1"}})
    assert client.session.adapt_version == 4


@pytest.mark.parametrize("forked", [False, True])
def test_kill_returns_once_the_kernel_process_is_gone(forked: bool) -> None:
    """LocalProvisioner's public state (``process``, ``pid``, ``pgid``) is what ForkProvisioner
    sets; ForkedProcess is the part of Popen that LocalProvisioner calls."""
    from ductaflow.kernels.fork import ForkedProcess, supported
    from ductaflow.kernels.provisioner import QuickReapProvisioner, kernel_spec

    if forked and not supported():
        pytest.skip("pidfds are Linux-only")
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        prov = QuickReapProvisioner(kernel_id="k", kernel_spec=kernel_spec(), parent=None)
        prov.process = ForkedProcess(child.pid) if forked else child
        prov.pid = prov.pgid = child.pid
        assert asyncio.run(prov.poll()) is None
        t0 = time.monotonic()
        asyncio.run(prov.kill())
        assert time.monotonic() - t0 < 0.5
        assert asyncio.run(prov.poll()) is not None
        asyncio.run(prov.wait())
    finally:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- the private names left
def test_the_executor_privates_that_adapters_reads_still_exist() -> None:
    with ThreadPoolExecutor(max_workers=3) as threads:
        assert isinstance(threads._max_workers, int)
        assert adapters.pool_size(threads) == 3
        assert adapters.pool_processes(threads) == []
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        assert isinstance(pool._processes, dict) and adapters.pool_size(pool) == 1
        pid = pool.submit(_getpid).result(timeout=60)
        procs = adapters.pool_processes(pool)
        assert [p.pid for p in procs] == [pid] and all(p.is_alive() for p in procs)
    finally:
        pool.shutdown(wait=True)
    for proc in procs:
        proc.join(5)


def _getpid() -> int:
    import os

    return os.getpid()


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_the_public_seams_keep_the_shape_ductaflow_subclasses() -> None:
    import ipykernel.kernelapp
    import nbclient
    import papermill.engines
    from jupyter_client import protocol_version_info
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner
    from jupyter_client.session import Session

    engine = papermill.engines.Engine
    assert _params(engine.execute_notebook)[:7] == [
        "nb", "kernel_name", "output_path", "progress_bar", "log_output", "autosave_cell_every", "kwargs"
    ]  # fmt: skip
    assert _params(papermill.engines.NotebookExecutionManager)[:5] == [
        "nb", "output_path", "log_output", "progress_bar", "autosave_cell_every"
    ]  # fmt: skip
    for name in ("save", "notebook_start", "notebook_complete", "cleanup_pbar", "cell_start", "cell_complete"):
        assert callable(getattr(papermill.engines.NotebookExecutionManager, name)), name
    assert '"papermill.engine"' in inspect.getsource(papermill.engines.PapermillEngines.register_entry_points)
    # nbclient's blocking setup_kernel calls the blocking wrappers that DuctaflowClient re-binds
    setup = inspect.getsource(nbclient.NotebookClient.setup_kernel)
    assert "self.start_new_kernel(" in setup and "self.start_new_kernel_client(" in setup
    for name in ("async_start_new_kernel", "async_start_new_kernel_client", "create_kernel_manager", "process_message"):
        assert inspect.isfunction(getattr(nbclient.NotebookClient, name)), name
    assert KernelProvisionerFactory.GROUP_NAME == "jupyter_client.kernel_provisioners"
    assert callable(KernelProvisionerFactory.get_provisioner_entries)
    assert {"process", "pid", "pgid", "cwd"} <= set(vars(LocalProvisioner))
    assert {"kernel_spec_manager", "client_class", "transport", "ip"} <= set(AsyncKernelManager.class_trait_names())
    assert "adapt_version" in Session.class_trait_names() and protocol_version_info[0] == 5
    app = ipykernel.kernelapp.IPKernelApp
    assert {"poller", "parent_handle", "exec_files", "log_level"} <= set(app.class_trait_names())


# ---------------------------------------------------------------- __main__ is left alone
_POOL_SCRIPT = """\
import __main__, sys, threading, time
from ductaflow.conductor.executors.local import LocalBackend

seen, done = set(), threading.Event()


def watch():
    while not done.is_set():
        seen.add(getattr(__main__, "__file__", "<deleted>"))
        time.sleep(0.0005)


if __name__ == "__main__":
    before = getattr(__main__, "__file__", "<none>")
    watcher = threading.Thread(target=watch)
    watcher.start()
    backend = LocalBackend(2)
    results = [f.result(timeout=60) for f in [backend.submit(dict, {"n": n}) for n in range(2)]]
    backend.shutdown()
    done.set()
    watcher.join()
    print(results, sorted(seen) == [before], getattr(__main__, "__file__", "<none>") == before)
"""


def test_worker_pools_leave_main_file_alone(tmp_path: Path) -> None:
    script = tmp_path / "conductor.py"
    script.write_text(_POOL_SCRIPT, encoding="utf-8")
    expected = "[{'n': 0}, {'n': 1}] True True"
    assert _python("", cwd=tmp_path, script=script).strip() == expected
    # read from stdin: workers cannot re-run the script, and still start
    assert _python("", cwd=tmp_path, stdin=_POOL_SCRIPT).strip() == expected


# ---------------------------------------------------------------- declared dependencies
def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_dependency_is_bounded_and_the_installed_version_is_within() -> None:
    for text in _pyproject()["project"]["dependencies"]:
        req = Requirement(text)
        ops = {spec.operator for spec in req.specifier}
        assert ">=" in ops and "<" in ops, f"{text}: needs a lower and an upper bound"
        if req.marker is not None and not req.marker.evaluate():
            continue
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {text}"


def _extra_distributions(req: Requirement) -> set[str]:
    """The distributions a requirement brings in through its extras (``dask[distributed]``)."""
    names = set()
    for extra in req.extras:
        for dep in metadata.requires(req.name) or []:
            inner = Requirement(dep)
            if inner.marker is not None and inner.marker.evaluate({"extra": extra}):
                names.add(inner.name)
    return names


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_third_party_import_is_declared() -> None:
    project = _pyproject()["project"]
    required = {_norm(Requirement(t).name) for t in project["dependencies"]}
    optional = set()
    for texts in project.get("optional-dependencies", {}).values():
        for text in texts:
            req = Requirement(text)
            optional |= {_norm(req.name)} | {_norm(n) for n in _extra_distributions(req)}
    owners = metadata.packages_distributions()
    undeclared = {}
    for path, tree in _sources():
        for node in ast.walk(tree):  # in functions too
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ductaflow", "__future__"):
                    continue
                dists = {_norm(d) for d in owners.get(top, [top])}
                if not dists & (required | optional):
                    undeclared[top] = str(path.relative_to(REPO))
    assert undeclared == {}
