"""The conductor itself under faults, with real processes, kernels and files: SIGKILLed at chosen
points, Ctrl-C'd, run four at a time on one runs dir, fed corrupt records, denied its disk.

Kill points are hit for real: ``strace --inject`` kills the conductor at exactly the ``rename``
that commits a file (its temporary copy stays behind, as after a crash there), and seeded random
delays place the other kills and Ctrl-Cs. Every process a conductor starts carries a tag in its
environment, so the process table says whether any worker or kernel outlived it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from procs import wait_for_no_kernels
from relkit import cli, process, write_csv

from ductaflow.store.ledger import ledger_dir
from ductaflow.store.ledger import read as read_ledger

SECTION = "Conductor faults"
TAG = "DUCTAFLOW_FAULT_TAG"
STRACE = shutil.which("strace")
RENAMES = "rename,renameat,renameat2"

FLOW = """# %% tags=["parameters"]
config = {}

# %%
import time
from pathlib import Path
print("working on", config["label"])
time.sleep(config["sleep"])
Path("out.txt").write_text(config["label"])
"""

BUILD = """# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")

# %%
step("flows/work.py", "work", {"label": config["label"], "sleep": config["sleep"]})
"""


def make_project(base: Path, name: str = "proj") -> Path:
    """One build (``pipe``) running one trivial flow (``work``) that sleeps ``sleep`` seconds."""
    root = base / name
    for sub in ("flows", "builds", "config/builds"):
        (root / sub).mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "work.py").write_text(FLOW)
    (root / "builds" / "pipe.py").write_text(BUILD)
    (root / "config" / "builds" / "pipe.json").write_text('{"label": "x", "sleep": 0}')
    return root


def table(root: Path, name: str, rows: list[tuple[str, float]]) -> Path:
    return write_csv(root / f"{name}.csv", ["scenario_name", "label", "sleep"], [[s, s, t] for s, t in rows])


def conduct_argv(csv: Path, parallel: int = 2, runs: str = "runs") -> list[str]:
    return [sys.executable, "-m", "ductaflow", "conduct", str(csv), "--build", "builds/pipe.py",
            "--parallel", str(parallel), "--runs-root", runs]  # fmt: skip


def start(argv: list[str], cwd: Path, tag: str) -> subprocess.Popen[str]:
    """A conductor in its own session (like a terminal job), every descendant tagged by ``tag``."""
    env = {**os.environ, TAG: tag, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes (conductor, pool workers, forkserver, kernels) that carry ``tag``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(TAG) == tag:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_untagged(tag: str, timeout: float = 20) -> tuple[list[str], float]:
    """Wait for every tagged process to exit; (survivors' command lines, seconds waited)."""
    t0 = time.monotonic()
    alive = tagged(tag)
    while alive and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        alive = tagged(tag)
    names = []
    for p in alive:
        try:
            names.append(" ".join(p.cmdline())[:80])
        except psutil.Error:
            continue
    return names, time.monotonic() - t0


def record(root: Path, instance: str, flow: str = "pipe") -> dict[str, Any] | None:
    inst = root / "runs" / "pipe" / instance
    path = inst / "pipe_status.json" if flow == "pipe" else inst / "runs" / flow / f"{flow}_status.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finished_green(root: Path, instances: list[str]) -> dict[str, str]:
    """Instances whose build record says finished green, with their ``started`` timestamps."""
    out = {}
    for inst in instances:
        rec = record(root, inst)
        if rec and rec.get("state") == "finished" and rec.get("status") == "green":
            out[inst] = rec["started"]
    return out


def tools_work(root: Path, runs: str = "runs") -> list[str]:
    """``status``, ``report`` and ``query`` over the runs dir: each exits 0 without a traceback."""
    outs = []
    for args in (("status", runs), ("report", runs), ("query", "select count(*) as n from runs", runs)):
        ran = cli(*args, cwd=root)
        assert ran.code == 0 and "Traceback" not in ran.err + ran.out, (args, ran.code, ran.err, ran.out)
        outs.append(ran.out)
    return outs


def run_events(root: Path) -> dict[tuple[str, str], list[str]]:
    """(kind, instance) -> statuses of its ledger ``run`` events, in order."""
    df = read_ledger(root / "runs")
    out: dict[tuple[str, str], list[str]] = {}
    for row in df[df["event"] == "run"].itertuples():
        inst = str(row.instance_dir).split("/")[1]
        out.setdefault((row.kind, inst), []).append(row.status)
    return out


def stray_tmp(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern)) if folder.is_dir() else []


def strace_kill(argv: list[str], when: int, calls: str = RENAMES, path: Path | None = None) -> list[str]:
    """``argv`` under strace, SIGKILLed at its ``when``-th call of ``calls`` (on ``path`` only, if given)."""
    assert STRACE
    filt = ["-P", str(path)] if path else []
    return [STRACE, "-qq", "-o", "/dev/null", *filt, "-e", f"trace={calls}",
            "-e", f"inject={calls}:signal=KILL:when={when}", *argv]  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


SCENARIOS = [("s1", 0), ("s2", 0), ("s3", 2), ("s4", 2)]
NAMES = [s for s, _ in SCENARIOS]


@pytest.mark.skipif(STRACE is None, reason="needs strace to kill the conductor at an exact file commit")
def test_conductor_sigkilled_at_four_points_then_rerun(tmp_path: Path, case) -> None:
    seed = 1207
    rng = random.Random(seed)
    cases = [
        case("conductor SIGKILLed before the first build",
             "strace kills `ductaflow conduct` (4 scenarios, --parallel 2) at its first rename: the state file commit"),
        case("conductor SIGKILLed mid-build",
             f"SIGKILL once one build is green and another's flow runs, after a random 0-1 s delay (seed {seed})"),
        case("conductor SIGKILLed while writing the report",
             "re-run, strace kills it as its 2nd report write begins (the mkdir of the runs root that "
             "atomic_write_text makes after rendering; strace -P matches only a rename's random source name)"),
        case("conductor SIGKILLed while writing a ledger file",
             "re-run, strace kills it at its first rename: the ledger file of the up-to-date rows"),
        case("re-run after four kills",
             "the same conduct once more, to the end; then started timestamps and ledger run events are compared"),
    ]  # fmt: skip
    root = make_project(tmp_path)
    csv = table(root, "scenarios", SCENARIOS)
    runs = root / "runs"
    argv = conduct_argv(csv)
    tag = uuid.uuid4().hex
    seen: dict[str, str] = {}  # instance -> started of its green run, once it had one

    def after_kill(proc: subprocess.Popen[str], evidence: Any = None) -> str:
        """Checks after every kill; ``evidence()`` looks at the files first, before the tools rewrite any."""
        t0 = time.monotonic()
        finish(proc)  # also waits for the workers, which share its stdout pipe
        assert proc.returncode != 0, "the conductor was not killed"
        survivors, _ = wait_untagged(tag)
        waited = time.monotonic() - t0
        assert survivors == [], f"processes outlived the killed conductor: {survivors}"
        assert wait_for_no_kernels(str(root), timeout=1) == []
        for inst, started in seen.items():  # a completed instance is never lost or re-run
            assert finished_green(root, [inst]).get(inst) == started, f"{inst} was re-run or lost"
        seen.update(finished_green(root, NAMES))
        running = [i for i in NAMES if (record(root, i) or {}).get("state") == "running"]
        assert running == [], f"records left saying running: {running}"
        if evidence is not None:
            evidence()
        tools_work(root)
        return f"{len(seen)} green so far, workers and kernels gone {waited:.1f} s after the kill"

    # 1. before the first build: the state file's commit is the conductor's first rename in the
    # runs root. Caches outside it (the user's entry-point and distribution lists) are written on
    # first use on a fresh machine: a dry run, which writes nothing in the runs root, warms them.
    warm = start([*argv, "--dry-run"], root, tag)
    assert warm.wait(timeout=120) == 0 and not runs.exists(), finish(warm)
    proc = start(strace_kill(argv, 1), root, tag)
    note = after_kill(proc)
    tmp = stray_tmp(runs / ".ductaflow" / "conductor", ".pipe.json.*.tmp")
    assert tmp and not (runs / "pipe").exists(), (tmp, list(runs.rglob("*")))
    cases[0].outcome = f"killed with {tmp[0]} left uncommitted, no instance dir yet; status/report/query exit 0; {note}"

    # 2. mid-build, after a seeded delay.
    proc = start(argv, root, tag)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        green = finished_green(root, NAMES)
        flows = [i for i in NAMES if i not in green and (record(root, i, "work") or {}).get("state") == "running"]
        if green and flows:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("never saw one build green and another running: " + finish(proc))
    delay = rng.uniform(0, 1.0)
    time.sleep(delay)
    proc.kill()
    note = after_kill(proc)
    red = [i for i in NAMES if ((record(root, i) or {}).get("error") or {}).get("message") == "interrupted"]
    cases[1].outcome = f"killed {delay:.2f} s after {sorted(green)} went green; {red} recorded red interrupted; {note}"

    # 3. while writing the report: the 2nd report write of this run (after its first build finished).
    report = runs / "conductor_status_report.html"
    state_path = runs / ".ductaflow" / "conductor" / "pipe.json"
    done: list[str] = []

    def report_behind_state() -> None:
        state = json.loads(state_path.read_text())
        done.extend(s["instance"] for s in state["scenarios"] if s["state"] == "done")
        assert done and report.stat().st_mtime_ns < state_path.stat().st_mtime_ns, done

    proc = start(strace_kill(argv, 2, "mkdir", runs.resolve()), root, tag)
    note = after_kill(proc, report_behind_state)
    cases[2].outcome = (
        f"killed after the state file recorded {done} done, before the report said so: the previous report stays "
        f"whole; {note}"
    )

    # 4. while writing a ledger file: the first rename of a re-run with up-to-date rows.
    before = len(read_ledger(runs))
    proc = start(strace_kill(argv, 1), root, tag)
    note = after_kill(proc)
    tmp = stray_tmp(ledger_dir(runs), ".*.parquet.*.tmp")
    assert tmp, list(ledger_dir(runs).iterdir())
    assert len(read_ledger(runs)) >= before
    cases[3].outcome = f"killed with ledger file {tmp[0]} written but not renamed; the ledger reads as before; {note}"

    # 5. the same conduct, to the end.
    proc = start(argv, root, tag)
    out = finish(proc)
    assert proc.returncode == 0 and "4 green, 0 orange, 0 red" in out, out
    assert wait_untagged(tag)[0] == []
    final = finished_green(root, NAMES)
    assert set(final) == set(NAMES) and all(final[i] == s for i, s in seen.items()), (final, seen)
    events = run_events(root)
    for inst in NAMES:
        for kind in ("build", "flow"):
            greens = [s for s in events.get((kind, inst), []) if s == "green"]
            assert len(greens) == 1, f"{kind} {inst}: run events {events.get((kind, inst))}"
    n = tools_work(root)[2]
    total = len(read_ledger(runs))
    assert str(total) in n, (n, total)
    state = json.loads((runs / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "finished" and all(s["status"] == "green" for s in state["scenarios"])
    reruns = sum(len(v) for v in events.values()) - 2 * len(NAMES)
    cases[4].outcome = (
        f"exit 0, 4 green; {len(seen)} instance(s) completed before kept their started timestamps; each build and "
        f"flow has exactly one green run event ({reruns} earlier red interrupted runs); query counts {total} records"
    )


def test_ctrl_c_at_random_points(tmp_path: Path, case) -> None:
    seed = 4242
    rng = random.Random(seed)
    delays = [rng.uniform(0.0, 0.4), rng.uniform(1.5, 3.0), rng.uniform(3.5, 6.0)]
    c = case(
        "Ctrl-C at random points",
        f"SIGINT to the conductor's process group {', '.join(f'{d:.2f}' for d in delays)} s after its state file "
        f"appears (seed {seed}), three runs of 3 scenarios (sleep 3 s), --parallel 2",
    )
    root = make_project(tmp_path)
    csv = table(root, "scenarios", [("c1", 3), ("c2", 3), ("c3", 3)])
    runs = root / "runs"
    state_path = runs / ".ductaflow" / "conductor" / "pipe.json"
    seen = []
    for delay in delays:
        tag = uuid.uuid4().hex
        old = state_path.read_text() if state_path.exists() else None
        proc = start(conduct_argv(csv), root, tag)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not state_path.exists() or state_path.read_text() == old):
            time.sleep(0.02)
        time.sleep(delay)
        t_int = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        out = finish(proc, 90)
        assert proc.returncode == 130, (delay, proc.returncode, out)
        survivors, waited = wait_untagged(tag)
        assert survivors == [], f"left after Ctrl-C: {survivors}"
        state = json.loads(state_path.read_text())
        assert state["state"] == "interrupted", state["state"]
        report = runs / "conductor_status_report.html"
        assert report.stat().st_mtime >= t_int - 0.01, "the report was not written after the interrupt"
        assert 'http-equiv="refresh"' not in report.read_text(), "the final report still refreshes"
        running = [s["instance"] for s in state["scenarios"] if s["state"] == "running"]
        assert running == [] and all(s["state"] in ("done", "cancelled", "skipped") for s in state["scenarios"])
        stale = [i for i in ("c1", "c2", "c3") if (record(root, i) or {}).get("state") == "running"]
        assert stale == [], stale
        states = sorted(f"{s['state']}/{s['status']}" for s in state["scenarios"])
        seen.append(f"{delay:.2f} s: exit 130, {', '.join(states)}, 0 processes left after {waited:.1f} s")
    c.outcome = "; ".join(seen) + "; each time the report was rewritten and stopped refreshing"


def _ran_once(root: Path, instances: list[str]) -> dict[str, int]:
    """Instance -> its ledger build run events (each must be 1) ; all records green."""
    events = run_events(root)
    runs = {i: len(events.get(("build", i), [])) for i in instances}
    flows = {i: len(events.get(("flow", i), [])) for i in instances}
    assert all(v == 1 for v in runs.values()) and all(v == 1 for v in flows.values()), (runs, flows)
    assert set(finished_green(root, instances)) == set(instances)
    return runs


@pytest.mark.parametrize("n", [2, 4])
def test_conductors_at_once_on_one_runs_dir(tmp_path: Path, n: int, case) -> None:
    names = [f"t{i}" for i in range(1, n + 1)]
    tables = [["shared", names[i], names[(i + 1) % n]] for i in range(n)]
    parallel = 2 if n == 2 else 1
    c = case(
        f"{n} conductors on one runs dir at once",
        f"{n} `ductaflow conduct` processes started together (--parallel {parallel}), overlapping tables "
        f"{' / '.join('+'.join(t) for t in tables)}",
    )
    root = make_project(tmp_path)
    tag = uuid.uuid4().hex
    procs = []
    for i, rows in enumerate(tables):
        csv = table(root, f"table{i}", [(s, 1) for s in rows])
        procs.append(start(conduct_argv(csv, parallel), root, tag))
    outs = [finish(p, 150) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, outs
    assert wait_untagged(tag)[0] == []
    instances = ["shared", *names]
    _ran_once(root, instances)
    df = read_ledger(root / "runs")
    skips = int(((df["event"] == "skip") & (df["kind"] == "build")).sum())
    assert skips == sum(len(t) for t in tables) - len(instances), skips
    state = json.loads((root / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    assert state["state"] == "finished" and all(s["status"] == "green" for s in state["scenarios"]), state
    status_out = tools_work(root)[0]
    assert f"{len(instances)} instance(s): {len(instances)} green" in status_out, status_out
    report = (root / "runs" / "conductor_status_report.html").read_text()
    assert 'http-equiv="refresh"' not in report and "</html>" in report
    c.outcome = (
        f"all {n} exit 0; each of the {len(instances)} instances ran once (one build and one flow run event in the "
        f"ledger, {skips} skip events for the others' waits); state file finished, report final, status all green"
    )


def test_corrupt_ledger_and_records_are_skipped_with_warnings(tmp_path: Path, case) -> None:
    c = case(
        "ledger, status and spool files corrupted by hand",
        "after a 2-scenario run: a ledger file truncated to half, a ledger file of random bytes, a build status "
        "record truncated, a flow status record `null`, a spool file of garbage, the conductor state file of "
        "garbage; then status, report, query and a new conduct",
    )
    root = make_project(tmp_path)
    csv = table(root, "scenarios", [("k1", 0), ("k2", 0)])
    first = process(*conduct_argv(csv)[1:], cwd=root, timeout=120)
    assert first.code == 0, first.err
    runs = root / "runs"
    ledger_files = sorted(ledger_dir(runs).glob("*.parquet"))
    assert ledger_files
    good_ledger = len(read_ledger(runs))
    half = ledger_files[0]
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    noise = ledger_dir(runs) / "20990101T000000-1-garbage.parquet"
    noise.write_bytes(random.Random(99).randbytes(3000))
    build_rec = runs / "pipe" / "k1" / "pipe_status.json"
    build_rec.write_text(build_rec.read_text()[:100])
    flow_rec = runs / "pipe" / "k2" / "runs" / "work" / "work_status.json"
    flow_rec.write_text("null")
    spool = runs / ".ductaflow" / "spool" / "pipe" / "k2"
    spool.mkdir(parents=True)
    (spool / "20990101T000000-1-x.json").write_bytes(b"\xff{not json")
    state = runs / ".ductaflow" / "conductor" / "pipe.json"
    state.write_bytes(b"\x00\x01garbage")
    rel = {p: str(p.relative_to(runs)) for p in (half, noise, build_rec, flow_rec, state)}

    def tool(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "ductaflow", *args], cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    procs = {"status": tool("status", "runs"), "report": tool("report", "runs"),
             "query": tool("query", "select count(*) as n from runs", "runs")}  # fmt: skip
    got = {k: p.communicate(timeout=120) for k, p in procs.items()}
    for name, p in procs.items():
        out, err = got[name]
        assert p.returncode == 0 and "Traceback" not in err, (name, p.returncode, err)
    assert rel[build_rec] in got["status"][1] and rel[flow_rec] in got["status"][1], got["status"][1]
    assert rel[half] in got["query"][1] and rel[noise] in got["query"][1], got["query"][1]
    assert rel[state] in got["report"][1], got["report"][1]
    count = int(got["query"][0].split()[-1])
    assert 0 < count < good_ledger, (count, good_ledger)
    again = process(*conduct_argv(csv)[1:], cwd=root, timeout=120)
    assert again.code == 0 and "Traceback" not in again.err, again.err
    assert rel[build_rec] in again.err and "20990101T000000-1-x.json" in again.err, again.err
    assert "2 green" in again.out, again.out
    k1 = json.loads(build_rec.read_text())
    assert k1["state"] == "finished" and k1["status"] == "green"
    c.outcome = (
        f"status, report and query exit 0, each warning with the file's name (query counts the {count} readable of "
        f"{good_ledger} records); the new conduct exits 0: k1 re-run (its record was unreadable), k2 up to date, "
        "the garbage spool file left in place with a warning"
    )


def _can_mount() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                           timeout=10)  # fmt: skip
    return None if probe.returncode == 0 else f"cannot mount in a new namespace: {probe.stderr.decode()[:80]}"


NO_MOUNT = _can_mount()


@pytest.mark.skipif(NO_MOUNT is not None, reason=str(NO_MOUNT))
def test_read_only_and_full_disks(tmp_path: Path, case) -> None:
    cases = [
        case("runs root read-only", "conduct into a runs root bind-mounted read-only (unshare -m)"),
        case("instance directory read-only", "one of two instance dirs bind-mounted read-only, the rest writable"),
        case("runs root full", "conduct into a 64 kB tmpfs runs root (unshare -m, mount -t tmpfs -o size=64k)"),
    ]
    root = make_project(tmp_path)
    csv = table(root, "scenarios", [("d1", 0), ("d2", 0)])
    argv = " ".join(f"'{a}'" for a in conduct_argv(csv)[:-2])

    def in_namespace(setup: str, runs: str) -> subprocess.CompletedProcess[str]:
        script = f"{setup} && exec {argv} --runs-root '{runs}'"
        return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=root, capture_output=True, text=True,
                              timeout=150)  # fmt: skip

    (root / "ro" / ".ductaflow").mkdir(parents=True)
    ro = in_namespace("mount --bind ro ro && mount -o remount,bind,ro ro", "ro")
    assert ro.returncode == 2, (ro.returncode, ro.stdout, ro.stderr)
    assert "Traceback" not in ro.stderr and "Read-only file system" in ro.stderr and "ro/.ductaflow" in ro.stderr
    cases[0].outcome = f"exit 2: {ro.stderr.strip().splitlines()[-1]}"

    (root / "runs" / "pipe" / "d1").mkdir(parents=True)
    inst = in_namespace("mount --bind runs/pipe/d1 runs/pipe/d1 && mount -o remount,bind,ro runs/pipe/d1", "runs")
    assert inst.returncode == 1, (inst.returncode, inst.stdout, inst.stderr)
    assert "1 green, 0 orange, 1 red" in inst.stdout and "Traceback" not in inst.stderr
    state = json.loads((root / "runs" / ".ductaflow" / "conductor" / "pipe.json").read_text())
    d1 = next(s for s in state["scenarios"] if s["instance"] == "d1")
    assert d1["status"] == "red" and "Read-only file system" in d1["error"] and "pipe/d1" in d1["error"], d1
    cases[1].outcome = f"exit 1, d2 green, d1 red in the state file and report: {d1['error']}"

    (root / "tiny").mkdir()
    full = in_namespace("mount -t tmpfs -o size=64k tmpfs tiny", "tiny")
    assert full.returncode in (1, 2), (full.returncode, full.stdout, full.stderr)
    assert "Traceback" not in full.stderr and "No space left on device" in full.stdout + full.stderr
    assert "2 green" not in full.stdout, "a full disk must not end in success"
    last = (full.stderr.strip().splitlines() or full.stdout.strip().splitlines())[-1]
    cases[2].outcome = f"exit {full.returncode}, no traceback: {last}"
