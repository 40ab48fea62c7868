"""Transitions that form a cycle, so a lead can loop between stages forever.

Each pass around the loop re-enters stages, restarting their sequences and handoffs.
Recycling a lead (for example a lost deal back to nurture) is done by moving it to an
earlier stage through a terminal-free path that does not lead straight back.

Fails:
    transitions:
      - {from: mql, to: sql, when: "replied"}
      - {from: sql, to: mql, when: "score < 40"}

Passes:
    transitions:
      - {from: mql, to: sql, when: "replied"}
      - {from: sql, to: disqualified, on: crm.deal_lost}
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Set

from .. import Finding
from ..context import Context

ID = "FNL303"
NAME = "transition-cycle"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    edges: Dict[str, List[int]] = {}
    for t in f.transitions:
        for s in t.sources:
            edges.setdefault(s, []).append(t.index)
    reported: Set[frozenset] = set()
    done: Set[str] = set()
    # One depth-first search in stage order. Every cycle has a transition back to a stage
    # still on the search path, so reporting those finds every looping set of stages in
    # time linear in the transitions; listing every simple path (or every loop) instead
    # is exponential, and a funnel whose stages can skip ahead would never finish.
    for root in f.stages:
        if root in done:
            continue
        trail: List[str] = [root]
        pending: List[Iterator[int]] = [iter(edges.get(root, []))]
        while pending:
            ti = next(pending[-1], None)
            if ti is None:
                done.add(trail.pop())
                pending.pop()
                continue
            nxt = f.transitions[ti].to
            if nxt in trail:
                loop = trail[trail.index(nxt):]
                cycle = frozenset(loop)
                if cycle not in reported:
                    reported.add(cycle)
                    yield Finding(f.transitions[ti].path, f"transitions form a cycle: {' → '.join(loop + [nxt])}",
                                  "remove one of these transitions, or send the lead to a terminal stage")
            elif nxt not in done and nxt in f.stages:
                trail.append(nxt)
                pending.append(iter(edges.get(nxt, [])))
