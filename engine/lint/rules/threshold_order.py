"""Thresholds named after stages must rise with the stages: MQL below SQL.

A lead reaches `mql` before `sql`; an SQL threshold at or below the MQL one means the
score says nothing about the difference.

Fails:
    scoring: {thresholds: {mql: 80, sql: 60}}

Passes:
    scoring: {thresholds: {mql: 40, sql: 90}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL502"
NAME = "threshold-order"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    staged = sorted(((f.stage_index(n), n, v) for n, v in f.scoring.thresholds if f.stage_index(n) >= 0))
    for (_, low_name, low), (_, high_name, high) in zip(staged, staged[1:]):
        if low >= high:
            yield Finding(("scoring", "thresholds", high_name),
                          f"`{high_name}` threshold {high} is not above the `{low_name}` threshold {low}",
                          f"raise `{high_name}` above {low}, or lower `{low_name}`")
