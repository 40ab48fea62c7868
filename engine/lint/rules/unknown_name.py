"""A condition uses a name that is neither a profile attribute nor an engine name.

Conditions may read declared profile attributes, the engine's names (`score`, `stage`,
`fit`, `segment`, `persona`, `email`, `emails_sent`, `thresholds.<name>`) and call
the engine's predicates (`opened`, `clicked`, `replied`, `visited`, `downloaded`,
`attended`, `stage_at_least`, `days_since`).

Fails:
    profile: {employees: {type: integer}}
    fit: {when: "employes >= 50"}

Passes:
    fit: {when: "employees >= 50"}
"""
from __future__ import annotations

import difflib
from typing import Iterator, List

from ... import expr
from .. import Finding
from ..context import Context

ID = "FNL208"
NAME = "unknown-name"
SEVERITY = "error"

# Predicates that also read as booleans without a call: `replied` means `replied()`.
BARE_PREDICATES = ("opened", "clicked", "replied", "visited", "downloaded", "attended")


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    attributes = list(ctx.attribute_names)
    plain: List[str] = attributes + [n for n in expr.NAMES if n != "thresholds"] + list(BARE_PREDICATES)
    thresholds = [name for name, _ in f.scoring.thresholds]
    for cond in ctx.conditions:
        for name in expr.names(cond.tree):
            loc = ctx.location_in_condition(cond, name.offset)
            head = name.parts[0]
            if head == "thresholds":
                if len(name.parts) != 2 or name.parts[1] not in thresholds:
                    wanted = ".".join(name.parts[1:])
                    guess = difflib.get_close_matches(wanted, thresholds, n=1, cutoff=0.5)
                    help = f"did you mean `thresholds.{guess[0]}`?" if guess else (
                        f"defined thresholds: {', '.join(thresholds)}" if thresholds
                        else "define it under `scoring.thresholds`")
                    yield Finding(cond.path, f"`{name.dotted}` is not a defined threshold", help, location=loc)
                continue
            if len(name.parts) > 1 or head not in plain:
                guess = difflib.get_close_matches(head, plain, n=1, cutoff=0.6)
                if head in (s.name for s in f.segments):
                    help = f"segments are compared by name: `segment == '{head}'`"
                elif head in (p.name for p in f.personas):
                    help = f"personas are compared by name: `persona == '{head}'`"
                elif guess:
                    help = f"did you mean `{guess[0]}`?"
                else:
                    help = f"declare `{head}` under `profile:` or use an engine name (score, stage, fit, …)"
                yield Finding(cond.path, f"`{name.dotted}` is not a profile attribute or engine name", help,
                              location=loc)
        for call in expr.calls(cond.tree):
            if call.name not in expr.PREDICATES:
                guess = difflib.get_close_matches(call.name, list(expr.PREDICATES), n=1, cutoff=0.6)
                help = f"did you mean `{guess[0]}(…)`?" if guess else f"predicates: {', '.join(expr.PREDICATES)}"
                yield Finding(cond.path, f"`{call.name}(…)` is not an engine predicate", help,
                              location=ctx.location_in_condition(cond, call.offset))
            elif call.name in ("stage_at_least", "days_since") and len(call.args) != 1:
                yield Finding(cond.path, f"`{call.name}` takes exactly one argument", f"write `{call.name}('sql')`",
                              location=ctx.location_in_condition(cond, call.offset))
            elif call.kwargs and any(k != "since" for k, _ in call.kwargs):
                bad = next(k for k, _ in call.kwargs if k != "since")
                yield Finding(cond.path, f"`{call.name}` has no argument `{bad}`", "the only keyword is `since='<stage>'`",
                              location=ctx.location_in_condition(cond, call.offset))
