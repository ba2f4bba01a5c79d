"""``record()`` as a flow calls it: stored with the run (:mod:`ductaflow.store.metrics`), and
logged at once to the run's experiment-tracker runs when it has any (:mod:`ductaflow.trackers`)."""

from __future__ import annotations

from typing import Any

from ductaflow.run.tracking import log_live
from ductaflow.store import metrics


def record(**values: Any) -> dict[str, Any]:
    """Store scalar metrics for this flow run (numbers, strings, booleans); returns them all.

    ``<flow>_metrics.parquet`` in the instance folder holds one row (a later call adds or
    replaces columns); the conductor joins it onto the scenario's row. With a tracker on, these
    values are also logged to the flow's tracker runs now, as the next step."""
    current = metrics.record(**values)
    log_live({k: current[k] for k in values})
    return current
