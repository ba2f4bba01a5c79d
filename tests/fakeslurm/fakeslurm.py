"""A fake SLURM on one machine: ``sbatch``, ``squeue`` and ``scancel`` for the tests of ``--cluster slurm``.

Enough of SLURM for dask-jobqueue, which writes a job script to a temporary file, runs
``sbatch FILE`` and reads the job id from ``Submitted batch job N``, and later runs
``scancel N``. Standard library only; Linux (``/proc``).

State lives in ``$FAKESLURM_DIR`` (required): per job ``N.sh`` (the script as submitted,
which the tests read), ``N.out`` (its output) and ``N.json`` (name, state, times).

- ``sbatch FILE`` copies the script, starts a job supervisor in a session of its own (the
  job is nobody's child, as on a real node) and prints ``Submitted batch job N``.
- The supervisor (``fakeslurm.py _job N``) runs ``bash N.sh`` with ``SLURM_JOB_ID=N``, kills the
  job at its ``#SBATCH -t`` walltime, and when the script ends kills what it left behind.
- A job's processes are found as SLURM's cgroup would: every process whose environment
  holds ``FAKESLURM_JOB=<state dir>/N``, set by sbatch and inherited by every descendant
  (Dask's nanny, its worker, kernel templates and the kernels forked from them, which
  start sessions of their own).
- ``scancel N ...`` sends SIGTERM to all of them, SIGKILL after ``$FAKESLURM_KILL_WAIT``
  seconds (default 5), and returns once none is left (or fails after 30 s).
- ``squeue [-h] [-j N,...]`` lists the jobs that still have a live process.
- ``$FAKESLURM_REFUSE``, a regular expression: sbatch refuses scripts it matches (exit 1),
  as SLURM refuses an unknown account.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

MARKER = "FAKESLURM_JOB"
GONE_WITHIN_S = 30.0


def state_dir() -> Path:
    folder = os.environ.get("FAKESLURM_DIR")
    if not folder:
        sys.exit("fakeslurm: FAKESLURM_DIR is not set")
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def token(state: Path, job: str) -> str:
    return f"{state}/{job}"


def job_pids(prefix: str) -> list[int]:
    """Live processes whose environment holds ``FAKESLURM_JOB=<prefix>...`` (this process excluded)."""
    wanted = f"{MARKER}={prefix}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()  # empty for a zombie
        except OSError:
            continue
        if any(item.startswith(wanted) for item in environ.split(b"\0")):
            pids.append(int(entry.name))
    return pids


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_job(prefix: str, grace: float) -> list[int]:
    """SIGTERM every process of the job, SIGKILL what is left after ``grace`` seconds; returns
    the processes still alive after that (empty when the job is gone)."""
    _signal(job_pids(prefix), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while job_pids(prefix) and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := job_pids(prefix)) and time.monotonic() < deadline:
        _signal(left, signal.SIGKILL)
        time.sleep(0.1)
    return job_pids(prefix)


def _record(folder: Path, job: str, **fields: object) -> None:
    path = folder / f"{job}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"id": job}
    data.update(fields)
    tmp = path.with_name(f".{job}.json.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _next_id(state: Path) -> str:
    """A new job id (an exclusive create per id: concurrent sbatch calls never share one)."""
    n = 1000 + len(list(state.glob("*.sh")))
    while True:
        try:
            fd = os.open(state / f"{n}.sh", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return str(n)


def _directive(script: str, *flags: str) -> str | None:
    """The value of the last ``#SBATCH`` line giving one of ``flags`` (``-t 10``, ``--time=10``)."""
    value = None
    for line in script.splitlines():
        parts = line.split(None, 1)
        if len(parts) < 2 or parts[0] != "#SBATCH":
            continue
        option = parts[1].strip()
        for flag in flags:
            if option.startswith(flag + "=") or option.startswith(flag + " "):
                value = option[len(flag) + 1 :].strip()
    return value


def walltime_seconds(text: str | None) -> float | None:
    """SLURM's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    if not text:
        return None
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = [int(p) for p in rest.split(":")]
    if "-" in text:
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts
    return float(int(days or 0) * 86400 + h * 3600 + m * 60 + s)


def sbatch(args: list[str]) -> int:
    files = [a for a in args if not a.startswith("-")]
    if len(files) != 1:
        print("fakeslurm sbatch: give exactly one job script", file=sys.stderr)
        return 1
    script = Path(files[0]).read_text()
    if not script.startswith("#!"):
        print("sbatch: error: This does not look like a batch script.", file=sys.stderr)
        return 1
    refuse = os.environ.get("FAKESLURM_REFUSE")  # a pattern: scripts that match are refused, as SLURM would
    if refuse and re.search(refuse, script, re.MULTILINE):
        print("sbatch: error: Batch job submission failed: Invalid account or account/partition combination "
              "specified", file=sys.stderr)  # fmt: skip
        return 1
    state = state_dir()
    job = _next_id(state)
    (state / f"{job}.sh").write_text(script)
    name = _directive(script, "-J", "--job-name") or Path(files[0]).name
    _record(state, job, name=name, state="RUNNING", submitted=time.time(), argv=args)
    env = {**os.environ, MARKER: token(state, job), "SLURM_JOB_ID": job, "SLURM_JOB_NAME": name}
    with open(state / f"{job}.out", "wb") as out:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_job", job],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    print(f"Submitted batch job {job}")
    return 0


def run_job(job: str) -> int:
    """The job's supervisor: run its script, enforce the walltime, clean up after it."""
    state = state_dir()
    script = (state / f"{job}.sh").read_text()
    limit = walltime_seconds(_directive(script, "-t", "--time"))
    proc = subprocess.Popen(["bash", str(state / f"{job}.sh")], stdin=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=limit)
        ending = "COMPLETED" if code == 0 else "FAILED"
    except subprocess.TimeoutExpired:
        print(f"fakeslurm: job {job} reached its walltime ({limit:.0f} s): killed", flush=True)
        ending = "TIMEOUT"
    grace = float(os.environ.get("FAKESLURM_KILL_WAIT", "5"))
    kill_job(token(state, job), grace)  # also the script, when the walltime ended it
    proc.wait()
    _record(state, job, state=ending, ended=time.time())
    return 0


def scancel(args: list[str]) -> int:
    state = state_dir()
    grace = float(os.environ.get("FAKESLURM_KILL_WAIT", "5"))
    status = 0
    for job in [a for a in args if not a.startswith("-")]:
        if not re.fullmatch(r"\d+", job) or not (state / f"{job}.json").is_file():
            print(f"scancel: error: Invalid job id specified: {job}", file=sys.stderr)
            status = 1
            continue
        if not job_pids(token(state, job)):
            continue  # ended already: nothing to cancel
        left = kill_job(token(state, job), grace)
        if left:
            print(f"scancel: error: job {job}: processes {left} survived SIGKILL", file=sys.stderr)
            status = 1
        else:
            _record(state, job, state="CANCELLED", ended=time.time())
    return status


def squeue(args: list[str]) -> int:
    state = state_dir()
    wanted: set[str] | None = None
    for i, arg in enumerate(args):
        if arg in ("-j", "--jobs") and i + 1 < len(args):
            wanted = set(args[i + 1].split(","))
        elif arg.startswith("--jobs="):
            wanted = set(arg.split("=", 1)[1].split(","))
    if "-h" not in args and "--noheader" not in args:
        print(f"{'JOBID':>8} {'NAME':<20} ST")
    for path in sorted(state.glob("*.json"), key=lambda p: int(p.stem)):
        job = path.stem
        if (wanted is None or job in wanted) and job_pids(token(state, job)):
            name = json.loads(path.read_text()).get("name", "")
            print(f"{job:>8} {name[:20]:<20} R")
    return 0


def main() -> int:
    command, args = Path(sys.argv[1]).name, sys.argv[2:]
    if command == "_job":
        return run_job(args[0])
    commands = {"sbatch": sbatch, "scancel": scancel, "squeue": squeue}
    if command not in commands:
        print(f"fakeslurm: unknown command {command}", file=sys.stderr)
        return 2
    return commands[command](args)


if __name__ == "__main__":
    sys.exit(main())
