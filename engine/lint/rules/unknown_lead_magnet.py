"""A condition or event names a lead magnet that is not defined.

`downloaded('x')` and the event `magnet.downloaded.x` must name an entry of
`lead_magnets`.

Fails:
    lead_magnets: {whitepaper: {kind: whitepaper, consent: "...", enters: subscriber}}
    transitions:
      - {from: subscriber, to: mql, when: "downloaded('roi-calc')"}

Passes:
    transitions:
      - {from: subscriber, to: mql, when: "downloaded('whitepaper')"}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import calls_with_literal, event_mentions, split_event

ID = "FNL205"
NAME = "unknown-lead-magnet"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    known = sorted(m.name for m in ctx.funnel.lead_magnets)

    def bad(name: str) -> str:
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        return f"did you mean `{guess[0]}`?" if guess else (
            f"lead magnets are: {', '.join(known)}" if known else "define it under `lead_magnets:`")

    for _call, cond, arg in calls_with_literal(ctx, ("downloaded",)):
        if arg.value not in known:
            yield Finding(cond.path, f"lead magnet `{arg.value}` is not defined", bad(str(arg.value)),
                          location=ctx.location_in_condition(cond, arg.offset))
    for event, path, is_key in event_mentions(ctx):
        base, detail = split_event(event)
        if base == "magnet.downloaded" and detail and detail not in known:
            yield Finding(path, f"lead magnet `{detail}` is not defined", bad(detail), key=is_key)
