"""A condition compares an attribute with a value it can never have.

Comparing an `enum` attribute with a value outside the enum, or a numeric attribute
with a string (or the reverse), is always false: usually a typo that silently empties
a segment.

Fails:
    profile: {industry: {enum: [saas, manufacturing, finance]}}
    segments: {saas: {when: "industry == 'sass'"}}

Passes:
    segments: {saas: {when: "industry == 'saas'"}}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from ... import expr
from .. import Finding
from ..context import Context

ID = "FNL213"
NAME = "impossible-value"
SEVERITY = "error"

_NUMERIC = ("integer", "number")


def _comparisons(tree: expr.Node) -> Iterator[expr.Binary]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, expr.Binary):
            if node.op in ("==", "!=", "in", "not in", "<", "<=", ">", ">="):
                yield node
            stack.extend((node.left, node.right))
        elif isinstance(node, expr.Unary):
            stack.append(node.operand)
        elif isinstance(node, expr.Call):
            stack.extend(node.args)
        elif isinstance(node, expr.ListExpr):
            stack.extend(node.items)


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for cond in ctx.conditions:
        for node in _comparisons(cond.tree):
            pairs = [(node.left, node.right)]
            if node.op in ("==", "!="):
                pairs.append((node.right, node.left))
            for name, other in pairs:
                if not isinstance(name, expr.Name) or len(name.parts) != 1:
                    continue
                attr = f.attribute(name.parts[0])
                if attr is None:
                    continue
                values = other.items if isinstance(other, expr.ListExpr) and node.op in ("in", "not in") else (other,)
                for lit in values:
                    if not isinstance(lit, expr.Literal) or lit.value is None:
                        continue
                    loc = ctx.location_in_condition(cond, lit.offset)
                    v = lit.value
                    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
                    if attr.enum is not None and node.op in ("==", "!=", "in", "not in") and v not in attr.enum:
                        guess = difflib.get_close_matches(str(v), [str(e) for e in attr.enum], n=1, cutoff=0.5)
                        help = f"did you mean '{guess[0]}'?" if guess else \
                            f"`{attr.name}` is one of: {', '.join(str(e) for e in attr.enum)}"
                        yield Finding(cond.path, f"`{attr.name}` can never be {v!r}", help, location=loc)
                    elif attr.type in _NUMERIC and isinstance(v, str):
                        yield Finding(cond.path, f"`{attr.name}` is a number but is compared with the string {v!r}",
                                      f"remove the quotes: {v}" if v.lstrip("-").isdigit() else
                                      "compare it with a number", location=loc)
                    elif attr.type == "string" and attr.enum is None and is_num:
                        yield Finding(cond.path, f"`{attr.name}` is a string but is compared with the number {v}",
                                      f"quote it: '{v}'", location=loc)
