"""The timed bodies of the benchmark suite, each run in a fresh interpreter by ``run.py``.

    python bench/workloads.py NAME '{"json": "args"}'

Each workload imports what it needs first (not timed, as in a user's script), times only
the work, and prints one ``BENCH-RESULT {json}`` line on stdout. Not for running by hand.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped descendants (kernels, workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _loop(n: int, one: Callable[[int], None]) -> dict[str, Any]:
    """Call ``one(k)`` for k in range(n); wall time in total and per call, and CPU used."""
    per: list[float] = []
    cpu0, t0 = _cpu(), time.perf_counter()
    for k in range(n):
        t = time.perf_counter()
        one(k)
        per.append(time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    _stop_templates()
    return {"seconds": seconds, "per_flow": per, "cpu": _cpu() - cpu0}


def _stop_templates() -> None:
    """Stop (and reap) ductaflow's kernel templates, so the CPU of the kernels forked from
    them reaches this process's ``RUSAGE_CHILDREN``. Not timed."""
    fork = sys.modules.get("ductaflow.kernels.fork")
    if fork is not None:
        fork.stop_templates()


def _kernel_settings(args: dict[str, Any]) -> list[str] | None:
    """Apply the workload's launcher (before ductaflow is imported); return its preload."""
    import os

    if args.get("launcher"):
        os.environ["DUCTAFLOW_KERNEL_LAUNCHER"] = args["launcher"]
    return args.get("preload")


def papermill_loop(args: dict[str, Any]) -> dict[str, Any]:
    """What users do today: ``papermill.execute_notebook`` in a loop, default settings."""
    import papermill as pm

    out = Path(args["out_dir"])
    out.mkdir(parents=True, exist_ok=True)

    def one(k: int) -> None:
        pm.execute_notebook(args["notebook"], str(out / f"out{k}.ipynb"), parameters={"config": {"i": k}})

    return _loop(int(args["n"]), one)


def ductaflow_loop(args: dict[str, Any]) -> dict[str, Any]:
    """ductaflow's default engine, one ``run_notebook`` after another into fresh instance dirs."""
    preload = _kernel_settings(args)
    from ductaflow import run_notebook

    runs = Path(args["runs"])

    def one(k: int) -> None:
        run_notebook(args["flow"], {"i": k}, runs / f"r{k:05d}", project_root=args["project_root"], preload=preload)

    return _loop(int(args["n"]), one)


def conduct_flows(args: dict[str, Any]) -> dict[str, Any]:
    """The conductor with the flow itself as the build: one scenario = one flow = one kernel."""
    import pandas as pd

    preload = _kernel_settings(args)
    from ductaflow import conduct

    n = int(args["n"])
    table = pd.DataFrame({"scenario_name": [f"s{k:05d}" for k in range(n)], "i": list(range(n))})
    profiler = _profiler(args.get("profile"))
    own0 = _own_cpu()
    cpu0, t0 = _cpu(), time.perf_counter()
    out = conduct(
        table,
        args["flow"],
        runs_root=args["runs"],
        project_root=args["project_root"],
        max_parallel=int(args["workers"]),
        progress=False,
        raise_on_failure=False,
        preload=preload,
    )
    seconds = time.perf_counter() - t0
    own = _own_cpu() - own0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args["profile"])
    bad = out[out["status"] != "green"]
    if len(bad):
        raise RuntimeError(f"{len(bad)} scenario(s) not green: {bad[['instance', 'status', 'error']].to_string()}")
    _stop_forkserver()
    _stop_templates()
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu0,
        "parent_cpu": own,
        "per_flow": [float(d) for d in out["duration"]],
    }


def _own_cpu() -> float:
    """CPU seconds of this process alone (the conductor parent): its bookkeeping, no kernels."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _profiler(path: str | None) -> Any:
    """A running cProfile profiler when a stats file is asked for (profiling by hand), else None."""
    if not path:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _stop_forkserver() -> None:
    """Stop and reap multiprocessing's forkserver so the CPU of the pool's workers (and the
    kernels they reaped) reaches this process's ``RUSAGE_CHILDREN``; otherwise it is lost."""
    try:
        from multiprocessing import forkserver

        forkserver._forkserver._stop()  # private, but the only way to reap it before exit
    except Exception:  # noqa: BLE001 - only the CPU figure suffers
        pass


def script_loop(args: dict[str, Any]) -> dict[str, Any]:
    """The process floor: ``python flow.py`` per flow with its default parameters."""
    out = Path(args["out_dir"])

    def one(k: int) -> None:
        cwd = out / f"r{k:05d}"
        cwd.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, args["flow"]], cwd=cwd, check=True, capture_output=True)

    return _loop(int(args["n"]), one)


def report(args: dict[str, Any]) -> dict[str, Any]:
    """``write_report`` over a synthetic runs dir, ``repeats`` times in one process (first is cold).

    Its two stages are timed on the way through (reading the records vs rendering the
    template) by wrapping the module functions ``write_report`` calls, not by copying it.
    """
    from ductaflow.report import page as rep

    stages: dict[str, list[float]] = {"collect_report": [], "render_report": []}

    def timed(name: str) -> Callable[..., Any]:
        real = getattr(rep, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                stages[name].append(time.perf_counter() - t0)

        return wrapper

    for name in stages:
        setattr(rep, name, timed(name))
    samples = []
    path = None
    for _ in range(int(args["repeats"])):
        t0 = time.perf_counter()
        path = rep.write_report(args["runs"])
        samples.append(time.perf_counter() - t0)
    size = path.stat().st_size if path else 0
    return {"samples": samples, "stages": stages, "bytes": size, "rss_mib": _rss_mib()}


def conduct_rss(args: dict[str, Any]) -> dict[str, Any]:
    """The conductor parent's peak RSS over ``n`` scenarios that need no kernel.

    ``mode`` "uptodate": every instance was pre-created up to date, so ``conduct`` runs its
    whole parent path (decide, roll-ups, ledger, report, results) and starts no build;
    ``mode`` "explain": ``conduct(explain=True)`` plans and decides only.
    """
    import pandas as pd

    from ductaflow import conduct

    n = int(args["n"])
    table = pd.DataFrame({"scenario_name": [f"s{k:05d}" for k in range(n)]})
    baseline = _rss_mib()
    t0 = time.perf_counter()
    out = conduct(
        table,
        args["build"],
        runs_root=args["runs"],
        project_root=args["project_root"],
        max_parallel=2,
        progress=False,
        raise_on_failure=False,
        explain=args["mode"] == "explain",
    )
    seconds = time.perf_counter() - t0
    column = "action" if args["mode"] == "explain" else "state"
    return {
        "rss_mib": _rss_mib(),
        "baseline_mib": baseline,
        "seconds": seconds,
        "counts": {str(k): int(v) for k, v in out[column].value_counts().items()},
    }


def _kernel_once(cells: list[str], graceful: bool, forked: bool = False) -> dict[str, float]:
    """One bare jupyter_client kernel: spawn, ready, run ``cells``, shut down; seconds of each.
    ``forked``: ductaflow's kernel manager forking it from a warm template (started untimed)."""
    if forked:
        from jupyter_client.manager import KernelManager

        from ductaflow.kernels.fork import template_for
        from ductaflow.kernels.provisioner import KernelSpecs, kernel_spec

        template_for(())  # started and ready before the clock starts
        # jupyter_client's blocking manager; the spec names ductaflow's fork provisioner
        km = KernelManager(kernel_name="ductaflow", kernel_spec_manager=KernelSpecs(current=kernel_spec(())))
    else:
        from jupyter_client.manager import KernelManager

        km = KernelManager(kernel_name="python3")
    t0 = time.perf_counter()
    km.start_kernel()
    t1 = time.perf_counter()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    t2 = time.perf_counter()
    for code in cells:
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code!r}")
    t3 = time.perf_counter()
    kc.stop_channels()
    km.shutdown_kernel(now=not graceful)
    t4 = time.perf_counter()
    return {"spawn": t1 - t0, "ready": t2 - t1, "execute": t3 - t2, "shutdown": t4 - t3, "total": t4 - t0}


def anatomy(args: dict[str, Any]) -> dict[str, Any]:
    """Where one flow's time goes: bare kernel phases, and ductaflow's skip (bookkeeping) path."""
    from ductaflow import run_notebook

    repeats = int(args["repeats"])
    trivial = ['config = {"i": 0}', 'print("flow", config["i"])', 'print("second cell")', 'print("third cell")']
    pandas = ['config = {"i": 0}', "import numpy as np\nimport pandas as pd", "print(np.arange(3).sum())", "print(1)"]
    phases: dict[str, list[dict[str, float]]] = {
        "trivial_immediate": [],
        "trivial_graceful": [],
        "pandas_immediate": [],
        "trivial_forked": [],
    }
    for _ in range(repeats):
        phases["trivial_immediate"].append(_kernel_once(trivial, graceful=False))
        phases["trivial_graceful"].append(_kernel_once(trivial, graceful=True))
        phases["pandas_immediate"].append(_kernel_once(pandas, graceful=False))
        phases["trivial_forked"].append(_kernel_once(trivial, graceful=False, forked=True))
    exec_dir = Path(args["runs"]) / "skip"
    run_notebook(args["flow"], {"i": 0}, exec_dir, project_root=args["project_root"])
    skips = []
    for _ in range(int(args["skips"])):
        t0 = time.perf_counter()
        result = run_notebook(args["flow"], {"i": 0}, exec_dir, project_root=args["project_root"])
        skips.append(time.perf_counter() - t0)
        if not result.skipped:
            raise RuntimeError("expected an up-to-date skip")
    return {"phases": phases, "skip": skips}


WORKLOADS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "papermill_loop": papermill_loop,
    "ductaflow_loop": ductaflow_loop,
    "conduct_flows": conduct_flows,
    "script_loop": script_loop,
    "report": report,
    "conduct_rss": conduct_rss,
    "anatomy": anatomy,
}


def main() -> None:
    """Run the workload named on the command line and print its result line."""
    name, raw = sys.argv[1], sys.argv[2]
    result = WORKLOADS[name](json.loads(raw))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
