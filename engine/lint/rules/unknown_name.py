"""A condition uses a name that is neither a profile attribute nor an engine name.

Conditions may read declared profile attributes, the engine's names (`score`, `stage`,
`fit`, `segment`, `persona`, `email`, `emails_sent`, `thresholds.<name>`) and call
the engine's predicates (`opened`, `clicked`, `replied`, `visited`, `downloaded`,
`attended`, `registered`, `stage_at_least`, `days_since`).

Fails:
    profile: {employees: {type: integer}}
    fit: {when: "employes >= 50"}

Passes:
    fit: {when: "employees >= 50"}
"""
from __future__ import annotations

import difflib
from typing import Iterator, List, Optional, Tuple

from ... import expr
from .. import Finding
from ..context import Context

ID = "FNL208"
NAME = "unknown-name"
SEVERITY = "error"

# Predicates that also read as booleans without a call: `replied` means `replied()`.
BARE_PREDICATES = ("opened", "clicked", "replied", "visited", "downloaded", "attended", "registered")


# Predicate -> (least and most positional arguments, whether `since=` is allowed).
SIGNATURES = {
    "opened": (0, 1, True), "clicked": (0, 1, True), "replied": (0, 1, True), "visited": (0, 1, True),
    "downloaded": (0, 1, True), "attended": (0, 1, True), "registered": (0, 1, True),
    "stage_at_least": (1, 1, False),
    "days_since": (1, 1, False),
}


def _signature_problem(call: expr.Call) -> Optional[Tuple[str, str]]:
    least, most, since = SIGNATURES[call.name]
    example = {"stage_at_least": "stage_at_least('sql')", "days_since": "days_since('optin')"}.get(
        call.name, f"{call.name}('name')")
    if not least <= len(call.args) <= most:
        count = "no arguments" if most == 0 else ("one argument" if least == 1 else "at most one argument")
        return f"`{call.name}` takes {count}, not {len(call.args)}", f"write `{example}`"
    for arg in call.args:
        if not (isinstance(arg, expr.Literal) and isinstance(arg.value, str)):
            return f"`{call.name}` takes a quoted name", f"write `{example}`"
    keys = [k for k, _ in call.kwargs]
    if len(keys) != len(set(keys)):
        return f"`{call.name}` gives `since=` twice", "keep one `since='<stage>'`"
    if any(k != "since" for k in keys) or (keys and not since) or len(keys) != len(set(keys)):
        return f"`{call.name}` does not take {', '.join(f'`{k}=`' for k in keys)}", (
            "the only keyword is `since='<stage>'`" if since else f"write `{example}`")
    return None


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
            else:
                problem = _signature_problem(call)
                if problem:
                    yield Finding(cond.path, problem[0], problem[1], location=ctx.location_in_condition(cond, call.offset))
