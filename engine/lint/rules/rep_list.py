"""A round-robin or territory list that is empty or names a rep twice.

An empty list hands leads to nobody; a repeated rep gets twice the share, which is
almost always a copy-and-paste slip (list the rep once and say so if intended).

Fails:
    assign: {round_robin: [ana@acme.example, ben@acme.example, ana@acme.example]}

Passes:
    assign: {round_robin: [ana@acme.example, ben@acme.example]}
"""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

from ...errors import JsonPath
from .. import Finding
from ..context import Context

ID = "FNL504"
NAME = "rep-list"
SEVERITY = "error"


def _check_list(reps: Tuple[str, ...], path: JsonPath, what: str) -> Iterator[Finding]:
    if not reps:
        yield Finding(path, f"{what} is empty, so these leads go to nobody", "list at least one rep")
        return
    seen: Dict[str, int] = {}
    for i, rep in enumerate(reps):
        key = rep.lower()
        if key in seen:
            yield Finding(path + (i,), f"`{rep}` is listed twice in {what}", "list each rep once")
        seen.setdefault(key, i)


def check(ctx: Context) -> Iterator[Finding]:
    for h in ctx.funnel.handoff:
        a = h.assign
        if a.kind == "round_robin":
            yield from _check_list(a.reps, a.path + ("round_robin",), f"the `{h.stage}` round robin")
        elif a.kind == "territory":
            for value, reps in a.routes:
                yield from _check_list(reps, a.path + ("territory", "routes", value), f"territory `{value}`")
            if a.default or ("default" in ctx.doc.data["handoff"][h.stage]["assign"]["territory"]):
                yield from _check_list(a.default, a.path + ("territory", "default"), "the default territory")
