"""The benchmarks themselves: each builds what it needs in a temporary directory, runs its
measurements (kernels always in child processes) and returns a :class:`Section` of rows.

Methods compared side by side are interleaved repeat by repeat, so a change in the
machine's load during the run hits them alike.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from dataclasses import dataclass

from common import (
    BIN,
    Row,
    Section,
    copy_example,
    make_project,
    measured_section,
    run_child,
    temp_dir,
    to_ipynb,
    wall,
)


@dataclass(frozen=True)
class Settings:
    """How big and how often: full run by default, ``quick()`` for a fast check."""

    flows: int = 20
    repeats: int = 3
    single_repeats: int = 5
    rerun_repeats: int = 3
    report_repeats: int = 2
    instances: int = 10_000
    rss_small: int = 100
    rss_large: int = 1_000
    #: table sizes of the scale benchmark, smallest first (the target compares the last with the first)
    scale: tuple[int, ...] = (100, 1_000, 10_000)
    workers: int = 2
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> Settings:
        """Small N, one repeat: minutes, not a quarter of an hour; figures are indicative only."""
        return cls(
            flows=4,
            repeats=1,
            single_repeats=1,
            rerun_repeats=1,
            report_repeats=1,
            instances=1_000,
            scale=(20, 200),
            quick=True,
        )


FLOW_LABELS = {
    "trivial": "trivial flow (parameters cell + 3 print cells)",
    "pandas_numpy": "pandas+numpy flow (imports both, 3 cells)",
}


def flows(kind: str, s: Settings) -> Section:
    """(a) papermill loop, (b) run_notebook loop and conductor on N workers, (c) python flow.py."""
    sec = Section(kind, f"{FLOW_LABELS[kind]}: {s.flows} flows per repeat, {s.repeats} repeat(s)")
    a = Row(f"{kind}.papermill", kind, "(a) papermill.execute_notebook loop, defaults", "flows/s")
    b0 = Row(f"{kind}.spawn", kind, "(b) run_notebook loop, spawn launcher", "flows/s", ref=a.key)
    b1 = Row(f"{kind}.run_notebook", kind, "(b) run_notebook loop, fork launcher", "flows/s", ref=a.key)
    b2 = Row(f"{kind}.conduct", kind, f"(b) conduct, {s.workers} workers, fork launcher", "flows/s", ref=a.key)
    c = Row(f"{kind}.script", kind, "(c) python flow.py per flow (process floor)", "flows/s", ref=a.key)
    sec.rows = [a, b0, b1, b2]
    loop = {"workload": "ductaflow_loop"}
    cond = {"workload": "conduct_flows", "workers": s.workers}
    plan = [
        (a, {"workload": "papermill_loop", "dir": "papermill"}),
        (b0, {**loop, "dir": "spawn", "launcher": "spawn"}),
        (b1, {**loop, "dir": "seq"}),
        (b2, {**cond, "dir": "cond"}),
    ]
    if kind == "pandas_numpy":  # the same flows with pandas and numpy imported once, by the template
        b3 = Row(f"{kind}.run_notebook_preload", kind, "(b) run_notebook loop, fork + preload", "flows/s", ref=a.key)
        b4 = Row(f"{kind}.conduct_preload", kind, f"(b) conduct, {s.workers} workers, fork + preload", "flows/s",
                 ref=a.key)
        sec.rows += [b3, b4]
        preload = ["numpy", "pandas"]
        plan += [(b3, {**loop, "dir": "seqp", "preload": preload}), (b4, {**cond, "dir": "condp", "preload": preload})]
    sec.rows.append(c)
    plan.append((c, {"workload": "script_loop", "dir": "script"}))
    cpu: dict[str, list[float]] = {r.key: [] for r in sec.rows}
    each: dict[str, list[float]] = {r.key: [] for r in sec.rows}
    with measured_section(sec), temp_dir(kind) as tmp:
        root = make_project(tmp)
        flow = root / "flows" / f"{kind}.py"
        notebook = to_ipynb(flow)
        common = {"n": s.flows, "project_root": str(root)}
        for rep in range(s.repeats):
            work = tmp / f"rep{rep}"
            for row, spec in plan:
                args = {k: v for k, v in spec.items() if k not in ("workload", "dir")}
                out = str(work / spec["dir"])
                args.update(notebook=str(notebook), out_dir=out, flow=str(flow), runs=out)
                res = run_child(spec["workload"], {**common, **args})
                row.samples.append(s.flows / res["seconds"])
                cpu[row.key].append(res["cpu"] / s.flows)
                each[row.key].extend(res["per_flow"])
    for row in sec.rows:
        row.note = f"{statistics.median(each[row.key]):.2f} s each, CPU {statistics.mean(cpu[row.key]):.2f} s/flow"
    sec.notes.append(
        "One flow file run N times into fresh output dirs, config {'i': k}. (a) converts it once with "
        "`jupytext --to ipynb --set-kernel python3` (not timed) and calls `papermill.execute_notebook` with "
        "default settings. (b) every flow gets a fresh kernel: 'spawn' launches a new interpreter per kernel "
        "(DUCTAFLOW_KERNEL_LAUNCHER=spawn), 'fork' (the default) forks it from a warm template that the loop "
        "or conductor starts inside the timed part; 'preload' has that template import numpy and pandas once "
        "(preload=[...]). Conductor: the flow itself is the build, one scenario row per flow, so N "
        "scenarios = N flows = N kernels; timed around `conduct()` (pool start, state file and report writes "
        "included). Each loop runs in a fresh interpreter; imports are not timed. Note: 'each' is the median "
        "wall time of one flow (for the conductor, the build's recorded duration inside its worker); CPU is "
        "user+system time of the loop's process and every process under it (kernels, pool workers), per flow."
    )
    return sec


def single(s: Settings) -> Section:
    """(d) one trivial flow as a CLI process: ``ductaflow run`` vs ``papermill in out``."""
    sec = Section("single", f"single trivial flow as a CLI process, wall clock, {s.single_repeats} repeat(s)")
    pm = Row("single.papermill", "single", "papermill in.ipynb out.ipynb", "s")
    df = Row("single.ductaflow", "single", "ductaflow run flows/trivial.py", "s", ref=pm.key)
    py = Row("single.script", "single", "python flows/trivial.py (process floor)", "s", ref=pm.key)
    sec.rows = [pm, df, py]
    with measured_section(sec), temp_dir("single") as tmp:
        root = make_project(tmp)
        notebook = to_ipynb(root / "flows" / "trivial.py")
        for rep in range(s.single_repeats):
            pm.samples.append(wall([str(BIN / "papermill"), str(notebook), f"pm_out{rep}.ipynb"], cwd=root))
            cmd = [str(BIN / "ductaflow"), "run", "flows/trivial.py", "--output-dir", f"single/r{rep}"]
            df.samples.append(wall(cmd, cwd=root))
            py.samples.append(wall([sys.executable, "flows/trivial.py"], cwd=root))
    sec.notes.append("Each a fresh process from the project root; `ductaflow run` into a new --output-dir each time.")
    return sec


def rerun(s: Settings) -> Section:
    """(e) the example conductor's no-op re-run as a fraction of its first run."""
    sec = Section("rerun", f"example conductor (9 scenarios x build + 3 flows), {s.rerun_repeats} no-op re-run(s)")
    first = Row("rerun.first", "rerun", "python conductor.py, first run", "s")
    noop = Row("rerun.noop", "rerun", "python conductor.py, no-op re-run", "s", ref=first.key, percent=True)
    sec.rows = [first, noop]
    with measured_section(sec), temp_dir("rerun") as tmp:
        work = copy_example(tmp)
        first.samples.append(wall([sys.executable, "conductor.py"], cwd=work, timeout=900))
        for _ in range(s.rerun_repeats):
            noop.samples.append(wall([sys.executable, "conductor.py"], cwd=work))
    sec.notes.append(
        "A copy of the example project in a temporary directory (the repo's runs/ is untouched); whole "
        "`python conductor.py` processes, so interpreter start and imports count. The no-op re-run finds "
        "every scenario up to date: no worker runs, no kernel starts."
    )
    return sec


def report(s: Settings) -> Section:
    """(f) ``write_report`` and ``ductaflow status`` over N synthetic finished instances."""
    from synth import synthetic_runs

    n = s.instances
    sec = Section("report", f"report and status over {n:,} synthetic build instances")
    cold = Row("report.cold", "report", f"write_report, {n:,} instances, first call", "s")
    warm = Row("report.warm", "report", f"write_report, {n:,} instances, repeat calls", "s")
    collect = Row(
        "report.collect", "report", "  of which collect_report (read records)", "s", ref=warm.key, percent=True
    )
    render = Row("report.render", "report", "  of which render_report (template)", "s", ref=warm.key, percent=True)
    status = Row("report.status", "report", f"ductaflow status (CLI), {n:,} instances", "s")
    sec.rows = [cold, warm, collect, render, status]
    with measured_section(sec), temp_dir("report", memory=True) as tmp:
        runs = tmp / "runs"
        sec.extra["instances"] = n
        t0 = time.perf_counter()
        files = synthetic_runs(runs, n)
        made = time.perf_counter() - t0
        res = run_child("report", {"runs": str(runs), "repeats": 1 + s.report_repeats})
        sec.extra["mib"] = res["bytes"] / 2**20
        cold.samples.append(res["samples"][0])
        warm.samples.extend(res["samples"][1:])
        collect.samples.extend(res["stages"]["collect_report"][1:])
        render.samples.extend(res["stages"]["render_report"][1:])
        for _ in range(s.report_repeats):
            status.samples.append(wall([str(BIN / "ductaflow"), "status", str(runs)], cwd=tmp))
    sec.notes.append(
        f"Each instance is a build record plus 3 flow records (status, log, config, notebook each) and a step "
        f"list, as the example writes them; 85 % green, 10 % orange, 5 % red, with metrics; one conductor "
        f"state file names them all ({files:,} files in {tmp.parent}, written in {made:.1f} s, not timed; "
        f"freshly written files are read from the page cache on a disk just as on tmpfs). `write_report` runs "
        f"{1 + s.report_repeats} times in one fresh process: the first call also compiles the template. The report "
        f"is {res['bytes'] / 2**20:.1f} MiB; that process peaked at {res['rss_mib']:.0f} MiB. `ductaflow status` "
        f"prints through a pipe."
    )
    return sec


def rss(s: Settings) -> Section:
    """(g) the conductor parent's peak RSS at a small vs a large table, no kernels in the measurement."""
    from synth import clone_instance

    small, large = s.rss_small, s.rss_large
    sec = Section("rss", f"conductor parent peak RSS, {small:,} vs {large:,} scenarios")
    up_s = Row("rss.uptodate.small", "rss", f"conduct, {small:,} up-to-date scenarios", "MiB")
    up_l = Row("rss.uptodate.large", "rss", f"conduct, {large:,} up-to-date scenarios", "MiB", ref=up_s.key)
    ex_s = Row("rss.explain.small", "rss", f"conduct(explain=True), {small:,} scenarios", "MiB")
    ex_l = Row("rss.explain.large", "rss", f"conduct(explain=True), {large:,} scenarios", "MiB", ref=ex_s.key)
    sec.rows = [up_s, up_l, ex_s, ex_l]
    with measured_section(sec), temp_dir("rss") as tmp:
        root = make_project(tmp)
        runs = tmp / "runs"
        common = {"build": str(root / "builds" / "step_build.py"), "project_root": str(root), "runs": str(runs)}
        seed = run_child("conduct_rss", {**common, "n": 1, "mode": "uptodate"})
        if seed["counts"] != {"done": 1}:
            raise RuntimeError(f"the seed scenario did not run: {seed['counts']}")
        clone_instance(runs / "step_build" / "s00000", [f"s{k:05d}" for k in range(1, large)])
        timings = []
        for row, n, mode in (
            (ex_s, small, "explain"),
            (ex_l, large, "explain"),
            (up_s, small, "uptodate"),
            (up_l, large, "uptodate"),
        ):
            res = run_child("conduct_rss", {**common, "n": n, "mode": mode})
            expected = {"skip": n} if mode == "explain" else {"skipped": n}
            if res["counts"] != expected:
                raise RuntimeError(f"{mode} at {n}: expected {expected}, got {res['counts']}")
            row.samples.append(res["rss_mib"])
            row.note = f"after imports {res['baseline_mib']:.0f} MiB; conduct() took {res['seconds']:.2f} s"
            timings.append(res["seconds"])
    sec.notes.append(
        "`ru_maxrss` of a fresh child process that imports ductaflow and pandas and calls `conduct` once. "
        "Up-to-date: one scenario of a build running one trivial step was really run, then its instance "
        "dir copied under the other names, so the conductor decides, rolls up, logs skips to the ledger, "
        "writes its state file, report and results.parquet for every row, and starts no build or kernel; "
        "what it does not exercise is the loop over running builds. Explain: planning and run/skip "
        "decisions only."
    )
    return sec


def anatomy(s: Settings) -> Section:
    """(h) where one flow's time goes: interpreter and imports, bare kernel phases, skip path."""
    sec = Section("anatomy", "where one flow's time goes (seconds, medians)")
    repeats = max(3, s.repeats)
    rows = {
        "py": Row("anatomy.python", "anatomy", "python -c pass", "s"),
        "pm": Row("anatomy.import_papermill", "anatomy", "python -c 'import papermill'", "s"),
        "df": Row("anatomy.import_ductaflow", "anatomy", "python -c 'import ductaflow.run.execute'", "s"),
        "np": Row("anatomy.import_pandas", "anatomy", "python -c 'import numpy, pandas'", "s"),
    }
    codes = {"py": "pass", "pm": "import papermill", "df": "import ductaflow.run.execute", "np": "import numpy, pandas"}
    with measured_section(sec), temp_dir("anatomy") as tmp:
        root = make_project(tmp)
        for _ in range(repeats):
            for key, code in codes.items():
                rows[key].samples.append(wall([sys.executable, "-c", code], cwd=tmp))
        res = run_child(
            "anatomy",
            {
                "repeats": repeats,
                "skips": 20,
                "runs": str(tmp / "runs"),
                "project_root": str(root),
                "flow": str(root / "flows" / "trivial.py"),
            },
        )
    phases = res["phases"]

    def phase_row(key: str, label: str, variant: str, phase: str) -> Row:
        return Row(f"anatomy.{key}", "anatomy", label, "s", [p[phase] for p in phases[variant]])

    sec.rows = [
        *rows.values(),
        phase_row("spawn", "kernel: Popen (start_kernel)", "trivial_immediate", "spawn"),
        phase_row("ready", "kernel: spawned -> wait_for_ready", "trivial_immediate", "ready"),
        phase_row("execute", "kernel: run 4 trivial cells", "trivial_immediate", "execute"),
        phase_row("shutdown_now", "kernel: shutdown_kernel(now=True)", "trivial_immediate", "shutdown"),
        phase_row("shutdown_graceful", "kernel: shutdown_kernel(now=False)", "trivial_graceful", "shutdown"),
        phase_row("total", "kernel: whole life, trivial, immediate", "trivial_immediate", "total"),
        phase_row("pandas_execute", "kernel: run cells importing numpy+pandas", "pandas_immediate", "execute"),
        phase_row("fork_start", "forked kernel: start_kernel (fork request)", "trivial_forked", "spawn"),
        phase_row("fork_ready", "forked kernel: forked -> wait_for_ready", "trivial_forked", "ready"),
        phase_row("fork_total", "forked kernel: whole life, trivial, immediate", "trivial_forked", "total"),
        Row("anatomy.skip", "anatomy", "run_notebook, instance up to date (skip)", "s", res["skip"]),
    ]
    sec.notes.append(
        f"Bare jupyter_client kernels (python3 kernelspec, default TCP transport) in one fresh process, "
        f"{repeats} of each; 'forked kernel' rows: ductaflow's kernel manager with the fork launcher (template "
        "started and ready before timing, TCP as above, jupyter_client's own wait_for_ready); the skip path "
        "is 20 calls of `run_notebook` on an up-to-date instance: "
        "ductaflow's bookkeeping (read flow, fingerprint, lock, decide, ledger record) without a kernel."
    )
    return sec


def scale(s: Settings) -> Section:
    """(i) per-scenario overhead of the conductor as the table grows: N trivial flows on the local pool."""
    sizes = sorted(s.scale)
    sec = Section("scale", f"conductor scaling: trivial flow as the build, {s.workers} workers, one run per size")
    rows = []
    for k, n in enumerate(sizes):
        key = "scale.small" if k == 0 else "scale.large" if k == len(sizes) - 1 else f"scale.n{n}"
        ref = None if k == 0 else "scale.small"
        rows.append(Row(key, "scale", f"conduct {n:,} trivial scenarios, wall / N", "ms", ref=ref))
    sec.rows = rows
    sec.extra["sizes"] = sizes
    with measured_section(sec), temp_dir("scale") as tmp:
        root = make_project(tmp)
        flow = root / "flows" / "trivial.py"
        for row, n in zip(rows, sizes, strict=True):
            runs = tmp / f"runs{n}"
            args = {"n": n, "project_root": str(root), "flow": str(flow), "runs": str(runs), "workers": s.workers}
            res = run_child("conduct_flows", args, timeout=max(1800, 1.0 * n))
            row.samples.append(res["seconds"] / n * 1000)
            inside = statistics.median(res["per_flow"])
            row.note = (
                f"{res['seconds']:.0f} s in all; conductor process CPU {res['parent_cpu'] / n * 1000:.1f} ms/scenario; "
                f"build inside its worker {inside * 1000:.0f} ms (median)"
            )
            shutil.rmtree(runs, ignore_errors=True)
    sec.notes.append(
        "One table of N rows, the trivial flow itself as the build (one scenario = one flow = one forked kernel), "
        "on the local process pool, in a fresh interpreter per N; timed around `conduct()` (pool start, planning, "
        "state file, live and final report, ledger, results.parquet included). Per-scenario overhead = wall "
        "seconds / N. Conductor process CPU is that interpreter's own user+system time (planning and bookkeeping, "
        "no kernels or workers) per scenario. Instance folders on the disk, removed after each size."
    )
    return sec


SUITES = {
    "trivial": lambda s: flows("trivial", s),
    "pandas": lambda s: flows("pandas_numpy", s),
    "single": single,
    "rerun": rerun,
    "report": report,
    "rss": rss,
    "anatomy": anatomy,
    "scale": scale,
}
