"""A/B variant weights that do not add up to 100, or a variant that never runs.

Weights are shares of leads; a total other than 100 usually means a variant was
added or removed without rebalancing, and a zero weight is a dead variant.

Fails:
    - {send: saas/case-study, variants: {a: 50, b: 30}}

Passes:
    - {send: saas/case-study, variants: {a: 50, b: 50}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL309"
NAME = "variant-weights"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        for step in seq.steps:
            if not step.variants:
                continue
            total = sum(w for _, w in step.variants)
            if total != 100:
                yield Finding(step.path + ("variants",), f"variant weights add up to {total}, not 100",
                              "rebalance them so they are shares of 100")
            for name, weight in step.variants:
                if weight == 0:
                    yield Finding(step.path + ("variants", name), f"variant `{name}` has weight 0 and never runs",
                                  "remove it or give it a share", key=True)
