"""`fnl graph`: the funnel as a picture for pull requests.

Mermaid (which GitHub renders inside a PR comment) or Graphviz dot, drawn from the
plan: lead magnets into their stages, stages and the transitions between them with
their conditions, the sequences that run in each stage (per segment), and the handoff
where sales takes over.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

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


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    shape: str  # stage | terminal | magnet | handoff | sequence | event
    group: str = ""  # a sequence's colour class: nurture | sales | postsale


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    style: str = "flow"  # flow | runs (a sequence in a stage) | rule (a handoff beside its stage)


def _transition_label(t) -> str:  # type: ignore[no-untyped-def]
    label = t.when.source if t.when else ""
    if t.on:
        label = f"on {t.on}" + (f" and {label}" if label else "")
    return label


def layout(plan: Plan) -> Tuple[List[Node], List[Node], List[Edge]]:
    """(stages, other nodes, edges): the one walk over the plan both formats draw."""
    ids = _Ids()
    stages = [Node(ids("stage", st.name), st.name, "terminal" if st.terminal else "stage") for st in plan.stages]
    nodes: List[Node] = []
    edges: List[Edge] = []
    for m in plan.lead_magnets:
        nodes.append(Node(ids("magnet", m.name), f"{m.name} ({m.kind})", "magnet"))
        edges.append(Edge(ids("magnet", m.name), ids("stage", m.enters)))
    for e in plan.entries:
        nodes.append(Node(ids("entry", e.name), f"{e.name} ({e.on}, {e.basis.replace('_', ' ')})", "magnet"))
        edges.append(Edge(ids("entry", e.name), ids("stage", e.enters)))
    for t in plan.transitions:
        for src in t.sources:
            edges.append(Edge(ids("stage", src), ids("stage", t.to), _transition_label(t)))
    for h in plan.handoff:
        nodes.append(Node(ids("handoff", h.stage), _assignment(plan, h.stage), "handoff"))
        edges.append(Edge(ids("stage", h.stage), ids("handoff", h.stage), style="rule"))
    events = set()
    for seq in plan.sequences:
        group = {"nurture": "nurture", "broadcast": "nurture", "sales": "sales"}.get(seq.kind, "postsale")
        nodes.append(Node(ids("seq", seq.name), _sequence_label(seq), "sequence", group))
        for stage in seq.stages:
            edges.append(Edge(ids("stage", stage), ids("seq", seq.name), style="runs"))
        if not seq.stages and seq.on:
            if seq.on not in events:
                events.add(seq.on)
                nodes.append(Node(ids("event", seq.on), seq.on, "event"))
            edges.append(Edge(ids("event", seq.on), ids("seq", seq.name), style="runs"))
    return stages, nodes, edges


_MERMAID_SHAPE = {"stage": ("[", "]"), "terminal": ("([", "])"), "magnet": ("[/", "/]"), "handoff": ("{{", "}}"),
                  "sequence": ("[[", "]]"), "event": (">", "]")}
_MERMAID_ARROW = {"flow": "-->", "runs": "-.->", "rule": "---"}


def mermaid(plan: Plan) -> str:
    stages, nodes, edges = layout(plan)
    out: List[str] = ["flowchart LR", f"  %% fnl plan {plan.funnel} {plan.content_hash[:19]}",
                      "  subgraph lifecycle[" + _m("Lifecycle stages") + "]", "    direction LR"]
    for n in stages:
        open_, close = _MERMAID_SHAPE[n.shape]
        out.append(f"    {n.id}{open_}{_m(n.label)}{close}")
    out.append("  end")
    for n in nodes:
        open_, close = _MERMAID_SHAPE[n.shape]
        out.append(f"  {n.id}{open_}{_m(n.label)}{close}")
    for e in edges:
        label = f"|{_m(e.label, 60)}|" if e.label else ""
        out.append(f"  {e.source} {_MERMAID_ARROW[e.style]}{label} {e.target}")
    out.append("  classDef nurture fill:#e8f4ff,stroke:#3b82f6")
    out.append("  classDef sales fill:#fff4e5,stroke:#f59e0b")
    out.append("  classDef postsale fill:#eafbea,stroke:#22c55e")
    out.extend(f"  class {n.id} {n.group}" for n in nodes if n.group)
    return "\n".join(out) + "\n"


_DOT_SHAPE = {"stage": "box", "terminal": "doublecircle", "magnet": "parallelogram", "handoff": "hexagon",
              "sequence": "component", "event": "cds"}
_DOT_STYLE = {"flow": "", "runs": " [style=dashed]", "rule": " [arrowhead=none]"}


def dot(plan: Plan) -> str:
    stages, nodes, edges = layout(plan)
    out: List[str] = [f"digraph {_d(plan.funnel)} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];',
                      "  subgraph cluster_lifecycle {", '    label="Lifecycle stages";']
    out.extend(f"    {n.id} [label={_d(n.label)}, shape={_DOT_SHAPE[n.shape]}];" for n in stages)
    out.append("  }")
    out.extend(f"  {n.id} [label={_d(n.label)}, shape={_DOT_SHAPE[n.shape]}];" for n in nodes)
    for e in edges:
        attrs = f" [label={_d(e.label, 60)}]" if e.label else _DOT_STYLE[e.style]
        out.append(f"  {e.source} -> {e.target}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"
