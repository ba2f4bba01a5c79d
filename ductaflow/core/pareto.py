"""Pareto fronts: which scenarios no other beats on every metric at once.

Pure Python, shared by the report's Pareto chart and ``ductaflow analyze pareto``. A point
dominates another when it is at least as good on every metric and better on one ("good" per
metric: ``sense`` 1 = higher is better, -1 = lower is better). Front 1 is the points nothing
dominates; front k the points nothing outside fronts 1..k-1 dominates (peeled in turn).
Equal points share a front.
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[int]) -> bool:
    """True when ``a`` is at least as good as ``b`` on every metric and better on at least one."""
    better = False
    for x, y, s in zip(a, b, senses, strict=True):
        if s * x < s * y:
            return False
        better = better or s * x > s * y
    return better


def fronts(points: Sequence[Sequence[float]], senses: Sequence[int], limit: int | None = None) -> list[int]:
    """The front number (from 1) of each point, in the order given; with ``limit``, only the first
    ``limit`` fronts are peeled and every point behind them gets ``limit + 1``.

    Points are visited best-first in lexicographic order (a later point cannot dominate an
    earlier one), and each is compared only with the members of the front being built: one
    that an earlier non-member dominates is dominated by a member too (dominance is transitive).
    """
    if any(s not in (1, -1) for s in senses):
        raise ValueError(f"senses must be 1 (maximize) or -1 (minimize), not {list(senses)}")
    order = sorted(range(len(points)), key=lambda i: tuple(s * v for s, v in zip(senses, points[i], strict=True)),
                   reverse=True)  # fmt: skip
    out = [0] * len(points)
    front = 0
    while order:
        front += 1
        if limit is not None and front > limit:
            for i in order:
                out[i] = front
            break
        members: list[int] = []
        rest: list[int] = []
        for i in order:
            if any(dominates(points[j], points[i], senses) for j in members):
                rest.append(i)
            else:
                members.append(i)
                out[i] = front
        order = rest
    return out
