"""Attempts of one run: why a red one failed, what earlier attempts it follows, and retries.

A run's final record carries its failure kind and phase (:mod:`ductaflow.core.failures`); a
build whose step failed carries the failed step's, so a build whose step's kernel died reads
``kernel_died``, not the ``FlowFailed`` its own code saw. A run started as attempt n > 1 lists
the attempts its instance already recorded as its ``history``; :func:`retrying` runs attempts
until one is not red, or the :class:`~ductaflow.core.failures.RetryPolicy` says stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ductaflow.core.failures import FailureKind, RetryPolicy, derive_kind
from ductaflow.core.lights import Status
from ductaflow.store.records import earlier_attempts, failed_step
from ductaflow.store.result import Attempt, FlowResult, RunState

log = logging.getLogger(__name__)

#: The error type a build's own code sees when one of its steps ends red.
STEP_FAILED_ERROR = "FlowFailed"


def history(attempt: int, status_path: Path) -> tuple[Attempt, ...]:
    """What a run started as ``attempt`` follows: nothing for a first attempt (a re-run
    tomorrow starts clean), else the attempts recorded in its instance's last final record."""
    return earlier_attempts(status_path) if attempt > 1 else ()


def classified(result: FlowResult, kind: str | None = None, phase: str | None = None) -> FlowResult:
    """``result`` with its failure kind and phase: ``kind``/``phase`` when given, a failed step's
    when the run is a build that raised ``FlowFailed``, else derived from its flags. A record
    that is not a red final one carries neither."""
    if result.status is not Status.RED or result.state not in (RunState.FINISHED, RunState.GONE):
        return replace(result, kind=None, phase=None) if result.kind or result.phase else result
    if result.error is not None and result.error.type == STEP_FAILED_ERROR:
        step = failed_step(result.execution_dir)
        if step is not None and step.kind is not None:
            return replace(result, kind=step.kind, phase=step.phase)
    if kind is None:
        kind = result.kind or derive_kind(
            terminated=result.terminated, interrupted=result.interrupted, timed_out=result.timed_out,
            kernel_died=result.kernel_died, gone=result.state == RunState.GONE,
            error_type=result.error.type if result.error else None,
        ).value  # fmt: skip
        phase = phase or result.phase
    return replace(result, kind=kind, phase=phase)


def retry_facts(result: FlowResult) -> tuple[str | None, str | None]:
    """The failure kind and error type a retry policy judges ``result`` by: a build that raised
    ``FlowFailed`` is judged by its failed step's error type (``retry_on=("ConnectionError",)``
    retries a build whose step raised one), its kind being that step's already."""
    error_type = result.error.type if result.error else None
    if error_type == STEP_FAILED_ERROR and result.status is Status.RED:
        step = failed_step(result.execution_dir)
        if step is not None and step.error is not None:
            error_type = step.error.type
    return result.kind, error_type


def retrying(policy: RetryPolicy, run: Callable[[int], FlowResult], first: int = 1, what: str = "run") -> FlowResult:
    """Call ``run(attempt)`` for attempts ``first``, ``first + 1`` ... while the result is red
    with a failure ``policy`` retries (never an interrupt), waiting ``policy.delay`` between
    them; returns the last attempt's result (its light is the run's light)."""
    tries = 1
    while True:
        result = run(first + tries - 1)
        if result.status is not Status.RED or result.kind == FailureKind.INTERRUPTED or result.interrupted:
            return result
        if not policy.should_retry(tries, *retry_facts(result)):
            return result
        wait = policy.delay(tries)
        log.warning("%s: attempt %d failed (%s); attempt %d in %.1fs", what, first + tries - 1,
                    result.failure or result.reason, first + tries, wait)  # fmt: skip
        time.sleep(wait)
        tries += 1
