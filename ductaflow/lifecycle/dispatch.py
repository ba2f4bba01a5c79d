"""One small in-process dispatcher: hands each event to its consumers, in order.

A consumer is any callable taking the event (a :class:`~ductaflow.lifecycle.events.RunEvent`
where the flow runs, a :class:`~ductaflow.lifecycle.events.ScenarioEvent` in the conductor). A
*required* consumer (the status record) may raise and stop the caller: a run whose record
cannot be written must not pretend to have one. Any other consumer that raises is logged
and listed in the returned failures; it cannot change the record or the events the
consumers after it receive. Hooks, trackers and retries are added as further consumers.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ductaflow.lifecycle.events import EventKind

log = logging.getLogger(__name__)


class Event(Protocol):
    """What a dispatcher needs of an event: its kind and what it is about."""

    @property
    def kind(self) -> EventKind: ...

    @property
    def subject(self) -> str: ...


E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class ConsumerFailure:
    """A consumer that raised on an event: which, on what, and its traceback."""

    consumer: str
    event: str
    error: str
    traceback: str


@dataclass(frozen=True)
class _Registration(Generic[E]):
    name: str
    fn: Callable[[E], None]
    required: bool


class Dispatcher(Generic[E]):
    """An ordered list of consumers; :meth:`emit` calls each with the event."""

    def __init__(self) -> None:
        self._consumers: list[_Registration[E]] = []

    def add(self, name: str, fn: Callable[[E], None], *, required: bool = False) -> Dispatcher[E]:
        """Append a consumer (called after those added before it); returns self."""
        if any(r.name == name for r in self._consumers):
            raise ValueError(f"a consumer named {name!r} is already registered")
        self._consumers.append(_Registration(name, fn, required))
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._consumers)

    def emit(self, event: E) -> tuple[ConsumerFailure, ...]:
        """Hand ``event`` to every consumer in order; returns the optional ones that raised."""
        failures = []
        for reg in self._consumers:
            try:
                reg.fn(event)
            except Exception as exc:
                if reg.required:
                    raise
                log.warning("%s failed on %s of %s: %s", reg.name, event.kind, event.subject, exc)
                failures.append(
                    ConsumerFailure(reg.name, str(event.kind), f"{type(exc).__name__}: {exc}", traceback.format_exc())
                )
        return tuple(failures)
