"""Two steps of one sequence with the same explicit `id`.

Step IDs are how leads in flight find their place when a plan changes; two steps with
one ID make that ambiguous.

Fails:
    steps:
      - {id: intro, send: a}
      - {id: intro, wait: 2d, send: b}

Passes:
    steps:
      - {id: intro, send: a}
      - {id: follow-up, wait: 2d, send: b}
"""
from __future__ import annotations

from typing import Dict, Iterator

from .. import Finding
from ..context import Context

ID = "FNL310"
NAME = "duplicate-step-id"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        raw_steps = ctx.doc.data["sequences"][seq.name]["steps"]
        seen: Dict[str, int] = {}
        for i, raw in enumerate(raw_steps):
            sid = raw.get("id")
            if sid is None:
                continue
            if sid in seen:
                yield Finding(seq.path + ("steps", i, "id"), f"step ID `{sid}` is already used by step {seen[sid] + 1}",
                              "give every step its own ID")
            else:
                seen[sid] = i
