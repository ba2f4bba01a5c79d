"""Recorded metric values as the report reads and prints them."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (not a bool, NaN or infinite), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt_metric(value: Any) -> str:
    """``12,345`` for large numbers, 4 significant digits otherwise; text as it is; empty for None."""
    num = number(value)
    if num is None:
        return "" if value is None else str(value)
    return f"{num:,.0f}" if abs(num) >= 1000 else f"{num:.4g}"
