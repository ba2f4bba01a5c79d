"""Timestamps as stored in records: UTC, ISO 8601, milliseconds."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    """UTC timestamp with milliseconds, as stored in status records."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
