"""Why a run is red, in a few stable words, and when a red run is worth another attempt.

Every red record carries a :class:`FailureKind` (what went wrong) and a :class:`Phase` (when).
Kinds are stable strings: the report, ``ductaflow status``, the ledger and ``retry_on`` use them.
A :class:`RetryPolicy` says which kinds (or exception type names) earn another attempt and how
long to wait before it: infrastructure failures are retried, a user's own error never is unless
its exception type is named.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from ductaflow.errors import ConfigError


class FailureKind(str, Enum):
    """What made a run red."""

    USER_ERROR = "user_error"  # the flow's own code raised (or exited non-zero)
    TIMEOUT = "timeout"  # a cell or the run ran past its time limit
    KERNEL_DIED = "kernel_died"  # the kernel process died under the run (segfault, OOM kill, os._exit)
    WORKER_LOST = "worker_lost"  # the conductor's worker died or vanished mid-build
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM (a batch system's walltime), a stop asked for
    START_FAILED = "start_failed"  # the kernel or worker never started
    INFRASTRUCTURE = "infrastructure"  # the files are not where the conductor can read them, a disk error
    HOOK_FAILED = "hook_failed"  # a hook raised and the hook policy makes that red

    def __str__(self) -> str:
        return self.value


class Phase(str, Enum):
    """When in a run it failed."""

    PREPARE = "prepare"  # config, instance folder, notebook written: before any kernel
    START = "start"  # starting the kernel (or the worker)
    EXECUTE = "execute"  # the flow's cells
    FINALIZE = "finalize"  # after the last cell: outputs, records, hooks

    def __str__(self) -> str:
        return self.value


#: The kinds ``retry_on`` defaults to: failures of the machinery, not of the user's code.
INFRASTRUCTURE_KINDS: tuple[str, ...] = (
    FailureKind.KERNEL_DIED.value,
    FailureKind.WORKER_LOST.value,
    FailureKind.TIMEOUT.value,
    FailureKind.START_FAILED.value,
)
_KINDS = frozenset(k.value for k in FailureKind)


def kind_of(value: str | None) -> FailureKind | None:
    """``value`` as a kind, or None when it is none (an older record, or one not red)."""
    try:
        return FailureKind(value) if value else None
    except ValueError:
        return None


def check_retry_on(values: Iterable[str] | str, what: str = "retry_on") -> tuple[str, ...]:
    """``retry_on`` checked: failure kinds, or exception type names (``ValueError``,
    ``requests.ConnectionError``); anything else raises :class:`ConfigError` naming it."""
    items = (values,) if isinstance(values, str) else tuple(values)
    bad = [v for v in items if not isinstance(v, str) or not _is_type_name(v)]
    if bad:
        raise ConfigError(
            f"{what}: {bad!r} are neither failure kinds ({', '.join(sorted(_KINDS))}) nor exception type names"
        )
    return tuple(dict.fromkeys(items))


def _is_type_name(text: str) -> bool:
    return text in _KINDS or all(part.isidentifier() for part in text.split("."))


@dataclass(frozen=True)
class RetryPolicy:
    """How many more attempts a red run gets, for which failures, and the wait before each.

    The wait before attempt ``n + 1`` is ``backoff * 2 ** (n - 1)`` seconds, at most
    ``max_backoff``, times a random factor in [0.5, 1.5) so that retries of many scenarios
    that failed together do not all start together.
    """

    retries: int = 0
    retry_on: tuple[str, ...] = INFRASTRUCTURE_KINDS
    backoff: float = 1.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, not {self.retries!r}")
        if not isinstance(self.backoff, int | float) or self.backoff < 0:
            raise ConfigError(f"backoff must be a number of seconds >= 0, not {self.backoff!r}")
        object.__setattr__(self, "retry_on", check_retry_on(self.retry_on))

    @classmethod
    def of(
        cls, retries: int = 0, retry_on: Iterable[str] | str | None = None, backoff: float | None = None
    ) -> RetryPolicy:
        """A policy from a caller's arguments (None: the default)."""
        return cls(
            retries,
            INFRASTRUCTURE_KINDS if retry_on is None else check_retry_on(retry_on),
            1.0 if backoff is None else backoff,
        )

    def retries_for(self, kind: str | None, error_type: str | None) -> bool:
        """True when a failure of ``kind`` (raising ``error_type``) is one this policy retries."""
        if kind in self.retry_on:
            return True
        if kind not in (None, FailureKind.USER_ERROR.value) or not error_type:
            return False
        short = error_type.rsplit(".", 1)[-1]
        return any(item == error_type or item.rsplit(".", 1)[-1] == short for item in self.retry_on
                   if item not in _KINDS)  # fmt: skip

    def should_retry(self, attempt: int, kind: str | None, error_type: str | None) -> bool:
        """True when attempt number ``attempt`` (1 = the first) failed in a way worth another."""
        return attempt <= self.retries and self.retries_for(kind, error_type)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` failed, before the next one."""
        base = min(self.max_backoff, self.backoff * 2 ** max(0, attempt - 1))
        return base * (0.5 + (rng or random).random())


def derive_kind(
    *,
    terminated: bool = False,
    interrupted: bool = False,
    timed_out: bool = False,
    kernel_died: bool = False,
    gone: bool = False,
    error_type: str | None = None,
) -> FailureKind:
    """The kind of a red run from the flags its record has always carried (records before
    schema 8, and any red record written without one): what ``kind`` would have said."""
    if terminated or interrupted:
        return FailureKind.INTERRUPTED
    if timed_out:
        return FailureKind.TIMEOUT
    if kernel_died:
        return FailureKind.KERNEL_DIED
    if gone:
        return FailureKind.WORKER_LOST
    if error_type == HOOK_FAILED_ERROR:
        return FailureKind.HOOK_FAILED
    return FailureKind.USER_ERROR


#: The error type of a run that a hook's failure turned red (``ductaflow.run.recorder``).
HOOK_FAILED_ERROR = "HookFailed"
