"""Builds on SLURM: a ``dask_jobqueue.SLURMCluster`` built from ``[tool.ductaflow.cluster]``.

The project's ``pyproject.toml`` says what one batch job asks for (``cores``, ``memory``,
``walltime``, ``queue``, ``account`` ...: :data:`KEYS`); the cluster scales adaptively
between ``minimum_jobs`` and ``maximum_jobs`` jobs, submitting them with ``sbatch`` and
cancelling them with ``scancel``. The scheduler runs in the conductor's process, on a port
the OS gives. Builds run as in :class:`~ductaflow.conductor.executors.dask.DaskBackend`; only
the number handed to Dask differs (:meth:`SlurmBackend.slots`). dask-jobqueue is the optional
``jobqueue`` extra.
"""

from __future__ import annotations

import difflib
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.executors.dask import DaskBackend
from ductaflow.core.settings import PYPROJECT, tool_table
from ductaflow.errors import ConfigError, DuctaflowError, MissingExtra

log = logging.getLogger(__name__)

TABLE = "tool.ductaflow.cluster"
#: What adaptive scaling aims at. Far below any build's length, so that every build waiting in
#: the Dask queue asks for a worker thread of its own (up to ``maximum_jobs``).
TARGET_DURATION = "100ms"
#: Names SLURM or dask-jobqueue users reach for first, and the key ductaflow calls them.
ALIASES = {
    "partition": "queue", "time": "walltime", "mem": "memory", "cpus": "cores", "cpus_per_task": "cores",
    "ncpus": "cores", "project": "account", "job_extra": "job_extra_directives", "extra": "job_extra_directives",
    "sbatch": "job_extra_directives", "env_extra": "job_script_prologue", "prologue": "job_script_prologue",
    "n_workers": "minimum_jobs", "jobs": "maximum_jobs", "max_jobs": "maximum_jobs", "min_jobs": "minimum_jobs",
    "name": "job_name", "worker_processes": "processes",
}  # fmt: skip
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*[kmgtp]i?b?$", re.IGNORECASE)  # what dask.utils.parse_bytes reads, unit required
_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # minutes, [D-]HH:MM:SS and the forms between


@dataclass(frozen=True)
class SlurmSettings:
    """One SLURM job's request and the adaptive range, as ``[tool.ductaflow.cluster]`` gives them."""

    cores: int = 1
    processes: int = 1  # Dask worker processes per job, cores shared out among them as threads
    memory: str = "4GB"
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_name: str = "ductaflow"
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    interface: str | None = None
    python: str | None = None  # None: the conductor's own interpreter
    local_directory: str | None = None
    log_directory: str | None = None
    minimum_jobs: int = 0
    maximum_jobs: int = 10
    dashboard_address: str = ":8787"
    source: str = field(default="defaults", compare=False)  # where they were read: named in errors

    @property
    def threads_per_job(self) -> int:
        """Builds one job runs at once: its Dask worker threads (``cores``; processes divide it)."""
        return self.processes * (self.cores // self.processes)

    def cluster_kwargs(self) -> dict[str, Any]:
        """The ``SLURMCluster`` arguments: a scheduler on a free port; unset keys left to dask-jobqueue."""
        kwargs: dict[str, Any] = {
            "cores": self.cores,
            "processes": self.processes,
            "memory": self.memory,
            "walltime": self.walltime,
            "job_name": self.job_name,
            "job_extra_directives": list(self.job_extra_directives),
            "job_script_prologue": list(self.job_script_prologue),
            "scheduler_options": {"port": 0, "dashboard_address": self.dashboard_address},
        }
        for key in ("queue", "account", "interface", "python", "local_directory", "log_directory"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        return kwargs

    def adapt_kwargs(self) -> dict[str, Any]:
        """``cluster.adapt(...)`` arguments."""
        return {"minimum_jobs": self.minimum_jobs, "maximum_jobs": self.maximum_jobs,
                "target_duration": TARGET_DURATION}  # fmt: skip


# ---------------------------------------------------------------- reading and checking the table
def _whole(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"a whole number >= {minimum}")
        return value

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("a list of non-empty strings")
    return tuple(value)


def _memory(value: Any) -> str:
    if not isinstance(value, str) or not _MEMORY.match(value.strip()):
        raise ValueError('an amount with its unit, such as "16GB" or "500MiB"')
    return value.strip()


def _walltime(value: Any) -> str:
    if not isinstance(value, str) or not _WALLTIME.match(value.strip()):
        raise ValueError('a SLURM time limit such as "04:00:00", "90" (minutes) or "2-00:00:00"')
    return value.strip()


def _directives(value: Any) -> tuple[str, ...]:
    lines = _texts(value)
    for line in lines:
        if line.lstrip().upper().startswith("#SBATCH"):
            raise ValueError(f"options without '#SBATCH' (dask-jobqueue adds it): {line.split(None, 1)[-1]!r}")
    return lines


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "cores": _whole(1), "processes": _whole(1), "memory": _memory, "walltime": _walltime, "queue": _text,
    "account": _text, "job_name": _text, "job_extra_directives": _directives, "job_script_prologue": _texts,
    "interface": _text, "python": _text, "local_directory": _text, "log_directory": _text,
    "minimum_jobs": _whole(0), "maximum_jobs": _whole(1), "dashboard_address": _text,
}  # fmt: skip
KEYS = tuple(_CHECKS)


def _unknown(key: str) -> str:
    near = [ALIASES[key.lower()]] if key.lower() in ALIASES else difflib.get_close_matches(key, KEYS, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
    return f"unknown key {key!r}{hint}; the keys are {', '.join(KEYS)}"


def slurm_settings(table: Mapping[str, Any], source: str = "defaults", root: Path | None = None) -> SlurmSettings:
    """Settings from a ``[tool.ductaflow.cluster]`` table read from ``source``; every key checked.
    A relative ``log_directory`` is taken from ``root`` (the project root)."""
    unknown = [str(k) for k in table if k not in _CHECKS]
    if unknown:
        raise ConfigError(f"{source}: [{TABLE}]: {'; '.join(_unknown(k) for k in unknown)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        try:
            values[key] = _CHECKS[key](value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {TABLE}.{key} must be {exc}, got {value!r}") from None
    settings = SlurmSettings(**values, source=source)
    if settings.cores % settings.processes:
        raise ConfigError(
            f"{source}: {TABLE}.cores ({settings.cores}) must be a multiple of processes ({settings.processes}): "
            "each Dask worker process of a job gets the same number of threads"
        )
    if settings.minimum_jobs > settings.maximum_jobs:
        raise ConfigError(
            f"{source}: {TABLE}.minimum_jobs ({settings.minimum_jobs}) is above maximum_jobs ({settings.maximum_jobs})"
        )
    if root is not None and settings.log_directory and not Path(settings.log_directory).is_absolute():
        settings = replace(settings, log_directory=str(root / settings.log_directory))
    return settings


def read_settings(project_root: Path) -> SlurmSettings:
    """``[tool.ductaflow.cluster]`` of ``project_root/pyproject.toml``; defaults where the file or
    the table is absent."""
    pyproject = project_root / PYPROJECT
    if not pyproject.is_file():
        log.info("no %s: SLURM jobs with the default settings", pyproject)
        return SlurmSettings()
    table = tool_table(project_root, "cluster")
    if not table:
        log.info("%s has no [%s]: SLURM jobs with the default settings", pyproject, TABLE)
        return SlurmSettings(source=str(pyproject))
    return slurm_settings(table, str(pyproject), project_root)


# ---------------------------------------------------------------- adaptive scaling, in whole jobs
@dataclass(frozen=True)
class JobOf:
    """The job a Dask worker belongs to, from its name (``SLURMCluster-3``, or ``SLURMCluster-3-1``
    for the second worker process of a job): the scheduler groups workers with it."""

    per_job: int

    def __call__(self, worker: Any) -> str:
        return self.job(str(worker.name))

    def job(self, name: str) -> str:
        return name.rsplit("-", 1)[0] if self.per_job > 1 else name


def job_adaptive(distributed: Any, settings: SlurmSettings) -> type:
    """distributed's ``Adaptive``, counted in whole jobs, never closing a job that runs a build.

    Three changes to distributed's own: the target is rounded up to whole jobs (else a job is
    submitted, cancelled, submitted again) and, before any worker is connected, counted in
    jobs' threads rather than one worker per build; only jobs whose workers are all idle are
    closed (distributed's picks busy workers too once the idle ones are counted, and a build
    there would be lost); a job of several worker processes whose workers are all gone (its
    walltime, a lost node) is forgotten, so that another is submitted (distributed does that
    for jobs of one worker process only).
    """
    per_job = settings.processes
    threads_per_worker = settings.cores // per_job
    job_of = JobOf(per_job)
    import dask.config  # deferred: heavy, and only installed with the jobqueue (or dask) extra
    import dask.utils  # deferred with the line above

    lost_after = dask.utils.parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))

    class JobAdaptive(distributed.deploy.Adaptive):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seen: set[str] = set()  # jobs some worker of which has connected
            self.missing: dict[str, float] = {}  # job -> since when none of its workers is connected

        async def target(self) -> int:
            wanted = int(await super().target())
            if not self.observed:  # no worker yet: the scheduler asked for one per build waiting
                wanted = -(-wanted // threads_per_worker)
            return -(-wanted // per_job) * per_job

        async def recommendations(self, target: int) -> dict[str, Any]:
            if per_job > 1:
                await self.forget_lost_jobs()
            return dict(await super().recommendations(target))

        async def forget_lost_jobs(self) -> None:
            live = {job_of.job(str(name)) for name in self.observed}
            self.seen |= live
            now = time.monotonic()
            for job in sorted(self.seen - live):
                if now - self.missing.setdefault(job, now) < lost_after:
                    continue
                self.seen.discard(job)
                del self.missing[job]
                gone = self.cluster.workers.pop(job, None)
                if gone is not None:  # as distributed does for a job of one worker: the cluster starts it again
                    log.warning("the Dask workers of %s are all gone (its walltime, or its node lost)", job)
                    await gone.close()
            for job in live:
                self.missing.pop(job, None)

        async def workers_to_close(self, target: int) -> list[str]:
            # without n or target, the scheduler suggests idle groups only
            idle = await self.scheduler.workers_to_close(key=distributed.protocol.pickle.dumps(job_of),
                                                         attribute="name")  # fmt: skip
            return whole_jobs(idle, len(self.observed) - target, job_of)

    return JobAdaptive


def whole_jobs(idle: list[str], excess: int, job_of: JobOf) -> list[str]:
    """Of the idle workers ``idle`` (whole jobs, in the scheduler's order), those of the first
    jobs that together make at most ``excess`` workers."""
    jobs: dict[str, list[str]] = {}
    for name in idle:
        jobs.setdefault(job_of.job(str(name)), []).append(name)
    chosen: list[str] = []
    for names in jobs.values():
        if len(chosen) + len(names) > excess:
            break
        chosen += names
    return chosen


def noting_refusals(jobqueue: Any, distributed: Any, failures: list[str]) -> type:
    """dask-jobqueue's SLURM job, which also notes in ``failures`` why ``sbatch`` refused it and
    marks itself failed (closing the cluster then goes through; the conductor names the reason
    while it waits for a worker)."""

    class SlurmJob(jobqueue.SLURMCluster.job_cls):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                text = str(exc)
                why = text.split("stderr:", 1)[-1].strip() or text
                failures.append(why.splitlines()[-1] if why else type(exc).__name__)
                log.error("SLURM did not take a job: %s", why)
                self.status = distributed.core.Status.failed
                raise

    return SlurmJob


# ---------------------------------------------------------------- the backend
def _jobqueue() -> tuple[Any, Any]:
    """``dask_jobqueue`` and ``distributed``, or MissingExtra naming the install command.

    dask-jobqueue 0.9.0 sets its own SIGINT handler when imported (``sys.exit()``, for its
    runners; dask/dask-jobqueue#696): Ctrl-C would then end the conductor without its orderly
    stop. The handler this process had is put back.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue  # deferred: heavy, and only installed with the jobqueue extra
    except ImportError:
        raise MissingExtra("--cluster slurm", "jobqueue", "dask_jobqueue") from None
    except ValueError as exc:  # its handler cannot be set outside the main thread
        raise DuctaflowError(f"--cluster slurm: dask_jobqueue cannot be imported in this thread ({exc}); "
                             "start the sweep from the main thread") from None  # fmt: skip
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    try:
        import distributed  # deferred: heavy, and only installed with the jobqueue (or dask) extra
    except ImportError:
        raise MissingExtra("--cluster slurm", "jobqueue", "distributed") from None
    return dask_jobqueue, distributed


class SlurmBackend(DaskBackend):
    """A :class:`DaskBackend` on an adaptive ``SLURMCluster`` that this process starts and closes.

    Adaptive scaling asks SLURM for jobs when tasks wait in the Dask queue, so builds are
    handed to Dask up to what the cluster may grow to (``maximum_jobs`` x ``cores``, capped
    by ``max_workers``), not only as many as the jobs running now have threads: those
    waiting are what brings the next jobs. Dask starts each as a worker thread frees up.
    """

    name = "slurm"

    def __init__(
        self, client: Any, max_workers: int | None, *, cluster: Any, settings: SlurmSettings,
        worker_wait: float | None = None, failures: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.failures = [] if failures is None else failures  # why sbatch refused jobs, as the jobs noted it
        ceiling = settings.maximum_jobs * settings.threads_per_job
        self.ceiling = min(ceiling, max_workers) if max_workers else ceiling
        super().__init__(client, max_workers, owned=True, cluster=cluster, worker_wait=worker_wait)

    @classmethod
    def start(
        cls, max_workers: int | None, *, project_root: Path | None = None, worker_wait: float | None = None
    ) -> SlurmBackend:
        """Read the settings, start the cluster with adaptive scaling, connect to it."""
        settings = read_settings(project_root or Path.cwd())
        jobqueue, distributed = _jobqueue()
        failures: list[str] = []
        job_cls = noting_refusals(jobqueue, distributed, failures)
        try:
            cluster = jobqueue.SLURMCluster(job_cls=job_cls, **settings.cluster_kwargs())
        except ValueError as exc:  # an interface that does not exist, memory dask cannot read ...
            raise ConfigError(f"{settings.source}: [{TABLE}]: dask-jobqueue cannot use it: {exc}") from None
        try:
            log.info("SLURM job script (one per job):\n%s", cluster.job_script())
            adaptive = job_adaptive(distributed, settings)
            cluster.adapt(Adaptive=adaptive, **settings.adapt_kwargs())
            client = distributed.Client(cluster)
            return cls(client, max_workers, cluster=cluster, settings=settings, worker_wait=worker_wait,
                       failures=failures)  # fmt: skip
        except BaseException:
            cluster.close()
            raise

    def slots(self) -> int:
        now = super().slots()
        if getattr(self.client, "status", "running") != "running":
            return now  # reconnecting or lost: nothing new goes to the scheduler
        return max(now, self.ceiling)

    def why_idle(self) -> str:
        idle = super().why_idle()
        return f"{idle} (sbatch failed: {self.failures[-1]})" if self.failures else idle

    def describe(self) -> str:
        s = self.settings
        where = ", ".join(f"{k} {v}" for k, v in (("queue", s.queue), ("account", s.account)) if v)
        jobs = f"{s.minimum_jobs}-{s.maximum_jobs} SLURM job(s) of {s.cores} core(s), {s.memory}, {s.walltime}"
        link = getattr(self.client, "dashboard_link", None)
        return (f"up to {self.ceiling} build(s) at once on {jobs}" + (f" ({where})" if where else "")
                + (f"; dashboard: {link}" if link else ""))  # fmt: skip
