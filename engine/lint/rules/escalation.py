"""An SLA escalation that cannot do what it says.

`handoff.STAGE.escalate` acts when no sales touch answers the SLA in time. `reassign:
true` gives the lead to the next rep of the handoff's own list, skipping the owner who let
the SLA pass: a list of one rep (an `owner:`, a round robin or a territory of one) has no
one else, and the lead stays where it is. `notify: [manager]` tells the manager of that
owner, found in `managers`: without the map, or with a rep missing from it, nobody is
told.

Fails:
    handoff:
      sql:
        assign: {owner: ana@acme.example}
        sla: 4h
        escalate: {notify: [manager], reassign: true}

Passes:
    handoff:
      sql:
        assign: {round_robin: [ana@acme.example, ben@acme.example]}
        sla: 4h
        escalate:
          notify: [manager]
          managers: {ana@acme.example: lisa@acme.example, ben@acme.example: lisa@acme.example}
          reassign: true
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

from ...model import Handoff
from .. import Finding
from ..context import Context

ID = "FNL510"
NAME = "escalation"
SEVERITY = "error"


def _pools(h: Handoff) -> List[Tuple[str, Tuple[str, ...]]]:
    """Each list of reps the handoff picks an owner from, with words for it."""
    a = h.assign
    if a.kind == "owner":
        return [("its owner", a.reps)]
    if a.kind == "round_robin":
        return [("its round robin", a.reps)]
    pools = [(f"territory `{value}`", reps) for value, reps in a.routes]
    return pools + ([("its default territory", a.default)] if a.default else [])


def check(ctx: Context) -> Iterator[Finding]:
    for h in ctx.funnel.handoff:
        e = h.escalate
        if e is None:
            continue
        pools = _pools(h)
        if e.reassign == "next":
            for words, reps in pools:
                if len({r.lower() for r in reps}) == 1:
                    yield Finding(e.path + ("reassign",),
                                  f"`reassign: true` has no other rep for `{h.stage}`: {words} is {reps[0]} alone, "
                                  "so an escalated lead stays with the rep who let the SLA pass",
                                  "add a rep to the list, or name who takes over: `reassign: {to: ADDRESS}`")
                    break
        managers = dict(e.managers)
        if "manager" in e.notify and not managers:
            yield Finding(e.path + ("notify", e.notify.index("manager")),
                          "`manager` is told of an escalation, but no `managers` map says who manages whom",
                          "add `managers: {REP: MANAGER}` beside `notify`")
        elif "manager" in e.notify:
            owners = dict.fromkeys(r for _, pool in pools for r in pool)
            if e.reassign == "to" and e.to is not None:
                owners.pop(e.to, None)  # the rep who takes over is not escalated from again
            for rep in owners:
                if rep not in managers:
                    yield Finding(e.path + ("managers",),
                                  f"`{rep}` has no manager in `managers`, so an SLA {rep} lets pass tells no manager",
                                  f"add `{rep}: MANAGER`", key=True)
