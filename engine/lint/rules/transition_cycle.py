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
    # Depth-first search that records the path of stages; a back edge closes a cycle.
    for start in f.stages:
        stack = [(start, [start], [])]
        while stack:
            stage, trail, via = stack.pop()
            for ti in edges.get(stage, []):
                nxt = f.transitions[ti].to
                if nxt == start:
                    cycle = frozenset(trail)
                    if cycle not in reported:
                        reported.add(cycle)
                        loop = " → ".join(trail + [start])
                        yield Finding(f.transitions[ti].path, f"transitions form a cycle: {loop}",
                                      "remove one of these transitions, or send the lead to a terminal stage")
                elif nxt not in trail and nxt in f.stages and len(trail) < len(f.stages):
                    stack.append((nxt, trail + [nxt], via + [ti]))
