"""Two steps of one sequence with the same `id`, or a repeated email without its own `id`.

Step IDs are how leads in flight find their place when a plan changes. A step's ID
defaults to its template name, so a template sent twice in one sequence needs an
explicit `id` on the repeat: numbering repeats by position would rename them whenever
a step is inserted before them, and move leads in flight to the wrong place.

Fails:
    steps:
      - {id: intro, send: a}
      - {id: intro, wait: 2d, send: b}
      - {wait: 7d, send: a}                  # second `a` without an id

Passes:
    steps:
      - {id: intro, send: a}
      - {id: follow-up, wait: 2d, send: b}
      - {id: reminder, wait: 7d, send: a}
"""
from __future__ import annotations

from typing import Any, Dict, Iterator

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
                default = seq.steps[i].id
                if default != _default_id(raw):
                    yield Finding(seq.path + ("steps", i), f"step {i + 1} repeats `{_default_id(raw)}` without "
                                  "its own `id`", f"add an `id:` such as `id: {_default_id(raw)}-again`, so leads "
                                  "in flight keep their place when steps move")
                seen.setdefault(default, i)
                continue
            if sid in seen:
                yield Finding(seq.path + ("steps", i, "id"), f"step ID `{sid}` is already used by step {seen[sid] + 1}",
                              "give every step its own ID")
            else:
                seen[sid] = i


def _default_id(raw: Dict[str, Any]) -> str:
    """The ID a step gets when it has none (see engine.model)."""
    send = raw.get("send")
    if send:
        return str(send).rsplit("/", 1)[-1]
    return "notify" if raw.get("notify") else "exit" if raw.get("exit") else "wait"
