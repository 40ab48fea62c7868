"""Where a definition names other things: templates, stages, segments, events.

Reference rules and unused-thing rules share these walks so both agree on what counts
as a mention.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

from .. import expr
from ..errors import JsonPath, Location
from ..model import Condition
from .context import Context

TEMPLATE_PREDICATES = ("opened", "clicked", "replied")
EMAIL_EVENTS = ("email.delivered", "email.opened", "email.clicked", "email.replied", "email.bounced",
                "email.unsubscribed", "email.complained")


def suggest(name: str, known: List[str], what: str, section: str, cutoff: float = 0.6) -> str:
    """Help for a name that is not defined: the close match, else what exists."""
    import difflib

    guess = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    if guess:
        return f"did you mean `{guess[0]}`?"
    return f"defined {what}: {', '.join(known)}" if known else f"define it under `{section}:`"


def group_mentions(ctx: Context, kind: str) -> Iterator[Tuple[str, JsonPath, Optional[Location]]]:
    """(name, path, exact location or None) wherever a segment or persona is named:
    `segment:`/`persona:` on sequences (and `segment:` on lead magnets), and in
    conditions as `segment == 'x'`."""
    f = ctx.funnel
    for seq in f.sequences:
        value = seq.segment if kind == "segment" else seq.persona
        if value:
            yield value, seq.path + (kind,), None
    if kind == "segment":
        for m in f.lead_magnets:
            if m.segment:
                yield m.segment, m.path + ("segment",), None
    for cond in ctx.conditions:
        for lit in compared_literals(cond.tree, kind):
            yield str(lit.value), cond.path, ctx.location_in_condition(cond, lit.offset)


def _literal_arg(call: expr.Call, index: int = 0) -> Optional[expr.Literal]:
    arg = call.args[index] if len(call.args) > index else None
    return arg if isinstance(arg, expr.Literal) and isinstance(arg.value, str) else None


def _kwarg(call: expr.Call, name: str) -> Optional[expr.Literal]:
    for key, value in call.kwargs:
        if key == name and isinstance(value, expr.Literal) and isinstance(value.value, str):
            return value
    return None


def calls_with_literal(ctx: Context, names: Tuple[str, ...]) -> Iterator[Tuple[str, Condition, expr.Literal]]:
    """(call name, condition, literal first argument) for calls like `clicked('x')`."""
    for cond in ctx.conditions:
        for call in expr.calls(cond.tree):
            arg = _literal_arg(call)
            if call.name in names and arg is not None:
                yield call.name, cond, arg


def _event_split(event: str) -> Tuple[str, str]:
    """`email.clicked.saas/x` -> (`email.clicked`, `saas/x`); `crm.demo_booked` -> (`crm.demo_booked`, '')."""
    for base in EMAIL_EVENTS + ("site.visited", "magnet.downloaded", "webinar.registered", "webinar.attended"):
        if event == base:
            return base, ""
        if event.startswith(base + "."):
            return base, event[len(base) + 1:]
    parts = event.split(".", 2)
    return ".".join(parts[:2]), parts[2] if len(parts) > 2 else ""


def event_mentions(ctx: Context) -> Iterator[Tuple[str, JsonPath, bool]]:
    """(event name, path, is_key) for every event the definition names."""
    f = ctx.funnel
    for event, _points in f.scoring.events:
        yield event, ("scoring", "events", event), True
    for t in f.transitions:
        if t.on:
            yield t.on, t.path + ("on",), False
    for seq in f.sequences:
        if seq.on:
            yield seq.on, seq.path + ("on",), False
        if seq.exit:
            for i, event in enumerate(seq.exit.on):
                yield event, seq.exit.path + ("on", i), False
    for entry in f.entries:
        if entry.on.startswith("crm."):
            yield entry.on, entry.path + ("on",), False
    for h in f.handoff:
        for i, event in enumerate(h.answered_by):
            yield event, h.path + ("answered_by", i), False


def split_event(event: str) -> Tuple[str, str]:
    return _event_split(event)


def template_mentions(ctx: Context) -> Iterator[Tuple[str, JsonPath, Optional[Location]]]:
    """(template, path, exact location or None) for every template reference."""
    for name, path, _purpose in ctx.sends:
        yield name, path, None
    for _call, cond, arg in calls_with_literal(ctx, TEMPLATE_PREDICATES):
        yield arg.value, cond.path, ctx.location_in_condition(cond, arg.offset)  # type: ignore[misc]
    for event, path, is_key in event_mentions(ctx):
        base, detail = _event_split(event)
        if base in EMAIL_EVENTS and detail:
            yield detail, path, ctx.doc.locate(path, key=is_key)


def stage_mentions(ctx: Context) -> Iterator[Tuple[str, JsonPath, Optional[Location]]]:
    """(stage, path, exact location or None) for every place a stage is named."""
    f = ctx.funnel
    for i, stage in enumerate(f.terminal_stages):
        if ("terminal_stages",) in ctx.doc.values:
            yield stage, ("terminal_stages", i), None
    for m in f.lead_magnets:
        yield m.enters, m.path + ("enters",), None
    for entry in f.entries:
        yield entry.enters, entry.path + ("enters",), None
    for t in f.transitions:
        raw_from = ctx.doc.data["transitions"][t.index]["from"]
        for i, stage in enumerate(t.sources):
            yield stage, t.path + (("from", i) if isinstance(raw_from, list) else ("from",)), None
        yield t.to, t.path + ("to",), None
    for seq in f.sequences:
        raw_stage = ctx.doc.data["sequences"][seq.name].get("stage")
        for i, stage in enumerate(seq.stages):
            yield stage, seq.path + (("stage", i) if isinstance(raw_stage, list) else ("stage",)), None
        if seq.exit and seq.exit.stage_at_least:
            yield seq.exit.stage_at_least, seq.exit.path + ("stage_at_least",), None
    for cond in ctx.conditions:
        for call in expr.calls(cond.tree):
            arg = _literal_arg(call) if call.name == "stage_at_least" else _kwarg(call, "since")
            if arg is not None and not (call.name == "days_since" and arg.value in ("optin", "last_email")):
                yield arg.value, cond.path, ctx.location_in_condition(cond, arg.offset)  # type: ignore[misc]
        for lit in compared_literals(cond.tree, "stage"):
            yield lit.value, cond.path, ctx.location_in_condition(cond, lit.offset)  # type: ignore[misc]


def compared_literals(tree: expr.Node, name: str) -> List[expr.Literal]:
    """String literals compared with a name: `stage == 'mql'`, `segment in ['a', 'b']`."""
    out: List[expr.Literal] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, expr.Binary):
            if node.op in ("==", "!=", "in", "not in"):
                sides = [(node.left, node.right), (node.right, node.left)] if node.op in ("==", "!=") \
                    else [(node.left, node.right)]
                for a, b in sides:
                    if isinstance(a, expr.Name) and a.dotted == name:
                        items = b.items if isinstance(b, expr.ListExpr) else (b,)
                        out.extend(i for i in items if isinstance(i, expr.Literal))
            stack.extend((node.left, node.right))
        elif isinstance(node, expr.Unary):
            stack.append(node.operand)
        elif isinstance(node, expr.Call):
            stack.extend(node.args)
            stack.extend(v for _, v in node.kwargs)
        elif isinstance(node, expr.ListExpr):
            stack.extend(node.items)
    return out
