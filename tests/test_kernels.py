"""The forking kernel launcher: every flow still gets a fresh, isolated kernel.

Real kernels forked from a real template (Linux); nothing is mocked. Each test proves one
thing a fork could break: module state, ``sys.modules``, environment, working directory,
random seeds, subprocesses, timeouts, kernel death, template death, owner death, Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from flowkit import ductaflow_cmd, is_forked_kernel, is_spare, make_project, my_kernels, read_json, write_flow
from procs import run_or_dump, wait_for_no_kernels

from ductaflow import run_notebook
from ductaflow.errors import ConfigError
from ductaflow.kernels import fork
from ductaflow.kernels.options import kernel_options
from ductaflow.kernels.provisioner import IPC_PATH_MAX

pytestmark = pytest.mark.skipif(not fork.supported(), reason="fork launching is Linux-only")


def _facts(result_dir: Path, flow: str) -> dict:
    """The JSON line a probe flow printed last in its execution log."""
    lines = (result_dir / f"{flow}_execution_output.txt").read_text(encoding="utf-8").splitlines()
    return json.loads([line for line in lines if line.startswith("{")][-1])


PROBE = '''
# %%
import json, os, random, sys
import psutil
facts = {
    "pid": os.getpid(),
    # seconds since boot when this process started (same clock as /proc/uptime below)
    "started": int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK"),
    "forked": "ductaflow/kernels/scripts/template.py" in " ".join(psutil.Process().cmdline()),
    "cwd": os.getcwd(),
    "exec_dir": json.loads(os.environ.get("DUCTAFLOW_RUN_CONTEXT", "{}")).get("execution_dir"),
    "late": os.environ.get("DF_TEST_LATE"),
    "leaked_env": os.environ.get("DF_TEST_LEAK"),
    "colorsys_preloaded": "colorsys" in sys.modules,
    "leaked_module": "df_test_leak" in sys.modules,
    "sys_path0": sys.path[0],
    "random": random.random(),
}
import colorsys
facts["leaked_attr"] = hasattr(colorsys, "DF_TEST_LEAK")
import numpy
facts["numpy_random"] = float(numpy.random.random())
facts["blas"] = float((numpy.ones((300, 300)) @ numpy.ones((300, 300)))[0, 0])  # BLAS threads after fork

# %%
import subprocess, types
facts["subprocess_rc"] = subprocess.run([sys.executable, "-c", "pass"]).returncode
# now leave every kind of state behind for the next flow to (not) see
colorsys.DF_TEST_LEAK = 1
sys.modules["df_test_leak"] = types.ModuleType("df_test_leak")
os.environ["DF_TEST_LEAK"] = "1"
os.chdir("/")
facts["ended"] = float(open("/proc/uptime").read().split()[0])
print(json.dumps(facts))
'''


def test_each_flow_gets_a_fresh_forked_kernel_and_sees_no_state_of_the_last(tmp_path: Path) -> None:
    """Three flows in a row: the first two forked on demand, the third pre-started while the
    second ran (a spare) and handed its flow's directory and environment before cell one."""
    root = make_project(tmp_path)
    write_flow(root, "probe", PROBE)
    earlier = {p.pid for p in psutil.Process().children(recursive=True) if is_spare(p)}  # other tests'
    seen = []
    try:
        for k in range(3):
            if k == 2:
                os.environ["DF_TEST_LATE"] = "set just before this flow"
            res = run_notebook(root / "flows" / "probe.py", {}, execution_dir=root / "runs" / f"p{k}",
                               preload=["colorsys", "numpy"])
            assert res.status.value == "green", res.error
            seen.append(_facts(res.execution_dir, "probe"))
    finally:
        os.environ.pop("DF_TEST_LATE", None)
    for k, facts in enumerate(seen):
        exec_dir = str((root / "runs" / f"p{k}").resolve())
        assert facts["forked"], "the default launcher forks on Linux"
        assert facts["cwd"] == facts["exec_dir"] == exec_dir
        assert facts["sys_path0"] == exec_dir  # as `python -m ipykernel_launcher` run there
        assert facts["late"] == ("set just before this flow" if k == 2 else None)  # env comes per flow
        assert facts["colorsys_preloaded"]
        assert facts["subprocess_rc"] == 0  # SIGCHLD is not inherited ignored
        assert facts["blas"] == 300.0
        assert not facts["leaked_env"] and not facts["leaked_module"] and not facts["leaked_attr"]
    assert seen[1]["started"] > seen[0]["ended"], "the second kernel was forked on demand"
    assert seen[2]["started"] < seen[1]["ended"], "the third kernel was pre-started while the second flow ran"
    assert len({f["pid"] for f in seen}) == 3
    assert len({f["random"] for f in seen}) == 3 and len({f["numpy_random"] for f in seen}) == 3
    for facts in seen:
        assert not psutil.pid_exists(facts["pid"]) or psutil.Process(facts["pid"]).status() == psutil.STATUS_ZOMBIE
    assert my_kernels() == []
    spare = [p for p in psutil.Process().children(recursive=True) if is_spare(p) and p.pid not in earlier]
    assert len(spare) == 1, "one kernel waits for the next flow"


def test_the_first_flow_of_a_process_gets_its_kernel_started_before_papermill_is_imported(tmp_path: Path) -> None:
    """A fresh process forks its first flow's kernel before it imports papermill (so the two
    overlap); the kernel is then handed that flow's directory, sys.path and environment."""
    root = make_project(tmp_path)
    write_flow(root, "probe", PROBE)
    script = tmp_path / "first.py"
    script.write_text(
        "import os, sys\n"
        "from ductaflow import run_notebook\n"
        "from ductaflow.kernels import prestart\n"
        "os.environ['DF_TEST_LATE'] = 'set before the first flow'\n"
        f"res = run_notebook({str(root / 'flows' / 'probe.py')!r}, {{}},\n"
        f"                   execution_dir={str(root / 'runs' / 'first')!r})\n"
        "print(res.status.value, bool(prestart._EARLY), 'papermill' in sys.modules)\n",
        encoding="utf-8",
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.stdout.split() == ["green", "True", "True"], out.stderr[-2000:]
    facts = _facts(root / "runs" / "first", "probe")
    exec_dir = str((root / "runs" / "first").resolve())
    assert facts["forked"] and facts["cwd"] == facts["exec_dir"] == facts["sys_path0"] == exec_dir
    assert facts["late"] == "set before the first flow"
    assert not psutil.pid_exists(facts["pid"]) or psutil.Process(facts["pid"]).status() == psutil.STATUS_ZOMBIE


def test_spawn_launcher_and_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path)
    write_flow(root, "probe", PROBE)
    monkeypatch.setenv("DUCTAFLOW_KERNEL_LAUNCHER", "spawn")
    res = run_notebook(root / "flows" / "probe.py", {}, execution_dir=root / "runs" / "s")
    facts = _facts(res.execution_dir, "probe")
    assert not facts["forked"] and facts["cwd"] == str(res.execution_dir.resolve())
    assert not facts["colorsys_preloaded"]
    monkeypatch.setenv("DUCTAFLOW_KERNEL_LAUNCHER", "vfork")
    with pytest.raises(ConfigError, match="vfork"):
        run_notebook(root / "flows" / "probe.py", {}, execution_dir=root / "runs" / "bad")
    assert not (root / "runs" / "bad").exists()
    monkeypatch.delenv("DUCTAFLOW_KERNEL_LAUNCHER")
    (root / "pyproject.toml").write_text('[tool.ductaflow]\npreload = ["pandas", "not a module"]\n')
    with pytest.raises(ConfigError, match="pyproject.toml.*not a module"):
        kernel_options(root)
    (root / "pyproject.toml").write_text('[tool.ductaflow]\npreload = ["pandas"]\nkernel_launcher = "spawn"\n')
    assert kernel_options(root).preload == ("pandas",) and kernel_options(root).launcher == "spawn"
    assert kernel_options(root, preload=["numpy"]).preload == ("numpy",)  # the argument wins


def test_timeout_and_kernel_death_leave_no_kernel_and_the_template_serves_on(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "sleepy", "# %%\nimport time\ntime.sleep(60)\n")
    write_flow(root, "suicide", "# %%\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    write_flow(root, "fine", "# %%\nprint('fine')\n")
    t0 = time.monotonic()
    slow = run_notebook(root / "flows" / "sleepy.py", {}, execution_dir=root / "runs" / "t", timeout=3,
                        raise_on_failure=False)
    assert slow.status.value == "red" and slow.timed_out and time.monotonic() - t0 < 30
    dead = run_notebook(root / "flows" / "suicide.py", {}, execution_dir=root / "runs" / "d", raise_on_failure=False)
    assert dead.status.value == "red" and dead.kernel_died
    assert wait_for_no_kernels(str(root)) == []
    template = fork.template_for(())
    template.proc.kill()  # a dead template is replaced on the next request
    template.proc.wait()
    ok = run_notebook(root / "flows" / "fine.py", {}, execution_dir=root / "runs" / "f")
    assert ok.status.value == "green"
    assert fork.template_for(()).proc.pid != template.proc.pid
    assert my_kernels() == []


def test_the_template_has_numpy_random_loaded_so_seeding_a_forked_kernel_imports_nothing(tmp_path: Path) -> None:
    # every kernel seeds numpy's global state before its first cell; numpy 2 loads numpy.random
    # on first use (~15 ms of every forked kernel, measured), so the template loads it once
    pytest.importorskip("numpy")
    root = make_project(tmp_path)
    write_flow(root, "fine", "# %%\nprint('fine')\n")
    assert run_notebook(root / "flows" / "fine.py", {}, execution_dir=root / "runs" / "f").status.value == "green"
    maps = Path(f"/proc/{fork.template_for(()).proc.pid}/maps").read_text(encoding="utf-8")
    assert "/numpy/random/_mt19937" in maps  # the extension module numpy.random.seed uses


def test_nested_flows_fork_from_the_template_that_forked_their_build(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "leaf", "# %%\nimport os, psutil\nprint('PARENT', psutil.Process().ppid())\n")
    (root / "builds").mkdir()
    (root / "builds" / "b.py").write_text(
        '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nimport os, psutil\nfrom ductaflow import run_step_flow\n'
        'print("PARENT", psutil.Process().ppid())\nrun_step_flow("flows/leaf.py", "leaf", "one", {})\n',
        encoding="utf-8",
    )
    res = run_notebook(root / "builds" / "b.py", {}, execution_dir=root / "runs" / "b" / "one")
    assert res.status.value == "green", res.error
    build_log = (res.execution_dir / "b_execution_output.txt").read_text()
    leaf_log = next((root / "runs").rglob("leaf_execution_output.txt")).read_text()
    template_pid = fork.template_for(()).proc.pid
    assert f"PARENT {template_pid}" in build_log
    assert f"PARENT {template_pid}" in leaf_log  # not a second template in the build kernel


_OWNER = """
import sys
from ductaflow import run_notebook
run_notebook(sys.argv[1], {}, execution_dir=sys.argv[2])
"""


def test_a_killed_owner_takes_its_template_and_kernels_with_it(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "sleepy", "# %%\nimport time\nprint('asleep', flush=True)\ntime.sleep(120)\n")
    exec_dir = root / "runs" / "owned"
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(root / "flows" / "sleepy.py"), str(exec_dir)])
    log = exec_dir / "sleepy_execution_output.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "asleep" in log.read_text()):
        time.sleep(0.1)
    kids = psutil.Process(owner.pid).children(recursive=True)
    assert any(is_forked_kernel(p) for p in kids), "the flow ran in a forked kernel"
    # the template and the kernels forked from it share its command line: script, socket, owner
    dirs = {Path(c[i + 1]).parent for c in (p.cmdline() for p in kids) for i, a in enumerate(c)
            if a.endswith("template.py")}
    (socket_dir,) = dirs
    assert socket_dir.name.startswith("ductaflow-kt-") and socket_dir.is_dir()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    assert not socket_dir.exists(), "the template's private folder was left in the temp dir"


def test_ctrl_c_on_the_cli_stops_a_forked_kernel_and_its_template(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "sleepy", "# %%\nimport time\nprint('asleep', flush=True)\ntime.sleep(120)\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "run", "flows/sleepy.py", "--output-dir", str(out)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    log = out / "sleepy_execution_output.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "asleep" in log.read_text()):
        time.sleep(0.1)
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert read_json(out / "sleepy_status.json")["interrupted"] is True
    _, alive = psutil.wait_procs(kids, timeout=10)
    assert alive == []


def test_fd_level_output_and_a_closed_stdout_reach_the_log(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write_flow(root, "fd", "# %%\nimport os\nos.write(1, b'from-fd-1\\n')\nprint('from-print')\n")
    res = ductaflow_cmd("run", "flows/fd.py", "--output-dir", str(tmp_path / "o"), cwd=root)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "o" / "fd_execution_output.txt").read_text()
    assert "from-print" in text
    assert "from-fd-1" in text or "from-fd-1" in res.stdout  # ipykernel forwards fd 1 when it can


def test_a_runtime_dir_too_deep_for_unix_sockets_runs_the_flow_over_tcp(tmp_path: Path) -> None:
    """Socket paths over the Unix limit (107 bytes on Linux) made the kernel die at start-up
    and the run wait for it forever; such a kernel now talks TCP and the run ends green."""
    root = make_project(tmp_path)
    write_flow(root, "deep", "# %%\nprint('reached')\n")
    runtime = tmp_path / ("r" * max(1, IPC_PATH_MAX - len(str(tmp_path)) - 20))
    assert len(str(runtime / "df-1234567-0123456789abcdef-5")) > IPC_PATH_MAX
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    res = run_or_dump([sys.executable, "-m", "ductaflow", "run", "flows/deep.py"], 120, cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_json(root / "runs" / "deep" / "default" / "deep_status.json")["status"] == "green"
    assert "reached" in (root / "runs" / "deep" / "default" / "deep_execution_output.txt").read_text()
    assert not runtime.exists() or list(runtime.iterdir()) == []


FAILED_START = """
import gc, os, sys
import ductaflow.kernels.provisioner as provisioner
provisioner.IPC_PATH_MAX = 10_000  # no TCP fallback: the client's connect fails, as any failed start
from ductaflow import run_notebook
from ductaflow.kernels import prestart
prestart.start_early((), dict(os.environ))  # the failed early kernel is dropped ...
gc.collect()  # ... and collecting it must not wait forever
print("collected", flush=True)
result = run_notebook(sys.argv[1], execution_dir=sys.argv[2], project_root=sys.argv[3], raise_on_failure=False)
gc.collect()
print("ended", result.status, flush=True)
"""


def test_a_kernel_that_fails_to_start_ends_the_run_red_and_leaves_nothing(tmp_path: Path) -> None:
    """A kernel manager whose start failed (here: its client could not connect) was dropped
    with its zmq context and a socket; the garbage collector then deadlocked on them and the
    run waited forever (seen under a runtime dir too deep for Unix sockets). Now the manager
    is released at once: the run ends red, and no kernel or kernel file is left."""
    root = make_project(tmp_path)
    flow = write_flow(root, "nostart", "# %%\nprint('never')\n")
    runtime = tmp_path / ("r" * max(1, IPC_PATH_MAX - len(str(tmp_path)) - 20))
    script = tmp_path / "failed_start.py"
    script.write_text(FAILED_START)
    out = tmp_path / "out"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    res = run_or_dump([sys.executable, str(script), str(flow), str(out), str(root)], 120, cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "collected" in res.stdout and "ended red" in res.stdout, res.stdout + res.stderr
    record = read_json(out / "nostart_status.json")
    assert record["status"] == "red" and "File name too long" in record["error"]["message"]
    assert wait_for_no_kernels(str(out)) == [] and wait_for_no_kernels(str(runtime)) == []
    assert not runtime.exists() or list(runtime.iterdir()) == []
