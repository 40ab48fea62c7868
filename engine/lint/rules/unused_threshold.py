"""A score threshold no condition uses.

Thresholds take effect only through conditions such as `score >= thresholds.mql`; an
unused one is usually a transition that forgot it.

Fails:
    scoring: {thresholds: {mql: 40, sql: 90}}
    transitions: [{from: subscriber, to: mql, when: "score >= thresholds.mql"}]

Passes:
    transitions:
      - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
      - {from: mql, to: sql, when: "score >= thresholds.sql"}
"""
from __future__ import annotations

from typing import Iterator

from ... import expr
from .. import Finding
from ..context import Context

ID = "FNL506"
NAME = "unused-threshold"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    used = {n.parts[1] for c in ctx.conditions for n in expr.names(c.tree)
            if n.parts[0] == "thresholds" and len(n.parts) == 2}
    for name, _value in ctx.funnel.scoring.thresholds:
        if name not in used:
            yield Finding(("scoring", "thresholds", name), f"threshold `{name}` is not used by any condition",
                          f"use it (`score >= thresholds.{name}`) or remove it", key=True)
