"""One planned scenario: the unit the planner, the replicate expansion and the state share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScenarioPlan:
    """One row of the table, ready to run: its name, its values and its full config.

    The config is the row over the base config, without the name column, plus
    ``_instance`` (the instance name) for flows that want to label their output. ``row`` is
    its position in the table, counted on through the follow-ups of a sweep.
    """

    row: int
    instance: str
    values: dict[str, Any]
    config: dict[str, Any]
    parent: str | None = None  # a follow-up: the instance whose result proposed it
