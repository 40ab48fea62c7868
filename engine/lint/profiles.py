"""Enumerating the lead profiles that matter to a set of conditions.

To see whether segments overlap or leave leads out, each condition is evaluated over
every combination of the attribute values it can tell apart: all enum values, each
number it compares with and the numbers just beside it (plus the declared bounds),
both booleans, the strings it mentions plus one it does not, and "missing" for an
attribute a lead may leave empty.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .. import expr
from ..model import Funnel, Named

MAX_PROFILES = 20_000
MISSING = None


def _literals_for(tree: expr.Node, attribute: str) -> List[Any]:
    out: List[Any] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, expr.Binary):
            for a, b in ((node.left, node.right), (node.right, node.left)):
                if isinstance(a, expr.Name) and a.dotted == attribute:
                    items = b.items if isinstance(b, expr.ListExpr) else (b,)
                    out.extend(i.value for i in items if isinstance(i, expr.Literal))
            stack.extend((node.left, node.right))
        elif isinstance(node, expr.Unary):
            stack.append(node.operand)
        elif isinstance(node, expr.ListExpr):
            stack.extend(node.items)
    return out


def _values(funnel: Funnel, name: str, trees: Sequence[expr.Node]) -> List[Any]:
    attr = funnel.attribute(name)
    if attr is None:
        return []
    mentioned = [v for t in trees for v in _literals_for(t, name)]
    values: List[Any]
    if attr.enum is not None:
        values = list(attr.enum)
    elif attr.type == "boolean":
        values = [True, False]
    elif attr.type in ("integer", "number"):
        nums = {v for v in mentioned if isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = 1 if attr.type == "integer" else 0.5
        candidates: set = set()
        for n in nums:
            candidates.update((n - step, n, n + step))
        for bound in (attr.minimum, attr.maximum):
            if bound is not None:
                candidates.add(bound)
        if not candidates:
            candidates.add(attr.minimum if attr.minimum is not None else 0)
        lo = attr.minimum if attr.minimum is not None else float("-inf")
        hi = attr.maximum if attr.maximum is not None else float("inf")
        values = sorted(c for c in candidates if lo <= c <= hi)
    else:
        values = [*sorted({v for v in mentioned if isinstance(v, str)}), "\x00other"]
    if not attr.required:
        values.append(MISSING)
    return values


def profiles(funnel: Funnel, groups: Sequence[Named]) -> Optional[Tuple[List[str], Iterator[Dict[str, Any]]]]:
    """(attributes, iterator of profiles) covering every distinguishable case of the
    groups' conditions, or None when they read more than the profile (scores, events)
    or the combinations are too many to try."""
    trees = [g.when.tree for g in groups]
    names: List[str] = []
    for t in trees:
        if expr.calls(t):
            return None
        for n in expr.names(t):
            if funnel.attribute(n.dotted) is None:
                return None
            if n.dotted not in names:
                names.append(n.dotted)
    domains = [_values(funnel, n, trees) for n in names]
    total = 1
    for d in domains:
        total *= max(len(d), 1)
    if total > MAX_PROFILES:
        return None
    return names, (dict(zip(names, combo)) for combo in itertools.product(*domains))


def matches(group: Named, profile: Dict[str, Any]) -> bool:
    def lookup(name: str) -> Any:
        return profile.get(name)

    try:
        return bool(expr.evaluate(group.when.tree, lookup))
    except expr.Unknown:
        return False


def describe(profile: Dict[str, Any]) -> str:
    parts = []
    for k, v in profile.items():
        if v is MISSING:
            parts.append(f"{k} missing")
        elif v == "\x00other":
            parts.append(f"{k} something else")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts) if parts else "any lead"
