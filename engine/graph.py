"""`fnl graph`: the funnel as a picture for pull requests.

Mermaid (which GitHub renders inside a PR comment) or Graphviz dot, drawn from the
plan: lead magnets into their stages, stages and the transitions between them with
their conditions, the sequences that run in each stage (per segment), and the handoff
where sales takes over.
"""
from __future__ import annotations

import re
from typing import Dict, List

from .model import format_duration
from .plan import Plan

_KIND_SHAPE = {"nurture": "nurture", "broadcast": "broadcast", "sales": "sales", "onboarding": "post-sale",
               "retention": "post-sale", "expansion": "post-sale"}


class _Ids:
    """Stable, collision-free node IDs from names."""

    def __init__(self) -> None:
        self.ids: Dict[str, str] = {}

    def __call__(self, prefix: str, name: str) -> str:
        key = f"{prefix}:{name}"
        if key not in self.ids:
            base = prefix + "_" + re.sub(r"[^A-Za-z0-9]", "_", name)
            candidate, n = base, 2
            while candidate in self.ids.values():
                candidate, n = f"{base}_{n}", n + 1
            self.ids[key] = candidate
        return self.ids[key]


def _m(text: str, limit: int = 80) -> str:
    """A Mermaid label: quoted, with the characters Mermaid treats specially escaped."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return f'"{text}"'


def _d(text: str, limit: int = 80) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _assignment(plan: Plan, stage: str) -> str:
    h = plan.handoff_for(stage)
    if h is None:
        return ""
    a = h.assign
    who = {"round_robin": "round robin: " + ", ".join(r.split("@")[0] for r in a.reps),
           "owner": "owner: " + (a.reps[0].split("@")[0] if a.reps else "?"),
           "territory": f"territory by {a.by}"}[a.kind]
    sla = f" · SLA {format_duration(h.sla_minutes)}" if h.sla_minutes is not None else ""
    stop = f" · stops {', '.join(h.suppress)}" if h.suppress else ""
    return f"handoff {who}{sla}{stop}"


def _sequence_label(seq) -> str:  # type: ignore[no-untyped-def]
    sends = sum(1 for s in seq.steps if s.action == "send")
    scope = " · ".join(x for x in (seq.segment, seq.persona) if x)
    start = f"on {seq.on}" if seq.on else ""
    parts = [f"{seq.name}", f"{seq.kind}, {sends} email{'s' if sends != 1 else ''}"]
    if scope:
        parts.append(scope)
    if start:
        parts.append(start)
    return " · ".join(parts)


def mermaid(plan: Plan) -> str:
    ids = _Ids()
    out: List[str] = ["flowchart LR"]
    out.append(f"  %% fnl plan {plan.funnel} {plan.content_hash[:19]}")
    out.append("  subgraph lifecycle[" + _m("Lifecycle stages") + "]")
    out.append("    direction LR")
    for st in plan.stages:
        shape = ("([", "])") if st.terminal else ("[", "]")
        out.append(f"    {ids('stage', st.name)}{shape[0]}{_m(st.name)}{shape[1]}")
    out.append("  end")
    for m in plan.lead_magnets:
        out.append(f"  {ids('magnet', m.name)}[/{_m(m.name + ' (' + m.kind + ')')}/] --> {ids('stage', m.enters)}")
    for t in plan.transitions:
        label = t.when.source if t.when else ""
        if t.on:
            label = f"on {t.on}" + (f" and {label}" if label else "")
        for src in t.sources:
            out.append(f"  {ids('stage', src)} -->|{_m(label, 60)}| {ids('stage', t.to)}")
    for h in plan.handoff:
        node = ids("handoff", h.stage)
        out.append(f"  {node}{{{{{_m(_assignment(plan, h.stage))}}}}}")
        out.append(f"  {ids('stage', h.stage)} --- {node}")
    for seq in plan.sequences:
        node = ids("seq", seq.name)
        out.append(f"  {node}[[{_m(_sequence_label(seq))}]]")
        for stage in seq.stages:
            out.append(f"  {ids('stage', stage)} -.-> {node}")
        if not seq.stages and seq.on:
            out.append(f"  {ids('event', seq.on)}>{_m(seq.on)}] -.-> {node}")
    out.append("  classDef nurture fill:#e8f4ff,stroke:#3b82f6")
    out.append("  classDef sales fill:#fff4e5,stroke:#f59e0b")
    out.append("  classDef postsale fill:#eafbea,stroke:#22c55e")
    for seq in plan.sequences:
        cls = {"nurture": "nurture", "broadcast": "nurture", "sales": "sales"}.get(seq.kind, "postsale")
        out.append(f"  class {ids('seq', seq.name)} {cls}")
    return "\n".join(out) + "\n"


def dot(plan: Plan) -> str:
    ids = _Ids()
    out: List[str] = [f"digraph {_d(plan.funnel)} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    out.append("  subgraph cluster_lifecycle {")
    out.append('    label="Lifecycle stages";')
    for st in plan.stages:
        shape = "doublecircle" if st.terminal else "box"
        out.append(f"    {ids('stage', st.name)} [label={_d(st.name)}, shape={shape}];")
    out.append("  }")
    for m in plan.lead_magnets:
        node = ids("magnet", m.name)
        out.append(f"  {node} [label={_d(m.name + ' (' + m.kind + ')')}, shape=parallelogram];")
        out.append(f"  {node} -> {ids('stage', m.enters)};")
    for t in plan.transitions:
        label = t.when.source if t.when else ""
        if t.on:
            label = f"on {t.on}" + (f" and {label}" if label else "")
        for src in t.sources:
            out.append(f"  {ids('stage', src)} -> {ids('stage', t.to)} [label={_d(label, 60)}];")
    for h in plan.handoff:
        node = ids("handoff", h.stage)
        out.append(f"  {node} [label={_d(_assignment(plan, h.stage))}, shape=hexagon];")
        out.append(f"  {ids('stage', h.stage)} -> {node} [arrowhead=none];")
    for seq in plan.sequences:
        node = ids("seq", seq.name)
        out.append(f"  {node} [label={_d(_sequence_label(seq))}, shape=component];")
        for stage in seq.stages:
            out.append(f"  {ids('stage', stage)} -> {node} [style=dashed];")
        if not seq.stages and seq.on:
            ev = ids("event", seq.on)
            out.append(f"  {ev} [label={_d(seq.on)}, shape=cds];")
            out.append(f"  {ev} -> {node} [style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"
