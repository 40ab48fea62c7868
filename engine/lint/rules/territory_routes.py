"""Territory routing by an attribute that does not exist, or values it never takes.

`territory.by` must be a profile attribute; with an enum, every route must be one of
its values, and every value needs a route or a `default`.

Fails:
    profile: {region: {enum: [na, emea, apac]}}
    assign: {territory: {by: region, routes: {na: [...], europe: [...]}}}

Passes:
    assign: {territory: {by: region, routes: {na: [...], emea: [...]}, default: [...]}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL507"
NAME = "territory-routes"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for h in f.handoff:
        a = h.assign
        if a.kind != "territory":
            continue
        base = a.path + ("territory",)
        attr = f.attribute(a.by or "")
        if attr is None:
            yield Finding(base + ("by",), f"`{a.by}` is not a profile attribute", "route by a declared attribute")
            continue
        if attr.enum is None:
            continue
        values = [str(v) for v in attr.enum]
        for value, _reps in a.routes:
            if value not in values:
                yield Finding(base + ("routes", value), f"`{attr.name}` is never `{value}`",
                              f"`{attr.name}` is one of: {', '.join(values)}", key=True)
        routed = {v for v, _ in a.routes}
        unrouted = [v for v in values if v not in routed]
        if unrouted and not a.default:
            yield Finding(base, f"leads with {attr.name} {', '.join(unrouted)} have no route and no default",
                          "add routes for them or a `default:` list", key=True)
