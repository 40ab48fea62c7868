"""Compile a validated, lint-clean funnel into a plan.

Everything the engine needs is resolved here, once: thresholds become constants in
conditions, names become attribute or engine references, each stage gets the
suppressions that hold in it, steps get stable IDs, and every template the plan sends
is pinned by the SHA-256 of its file (and of the partials it includes).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import List, Optional, Set, Tuple

from . import expr, model
from . import plan as p
from .lint.refs import split_event
from .templates import check_file

_INCLUDES = re.compile(rb"""{%-?\s*(?:include|extends|import|from)\s+["']([^"']+)["']""")


def compile_condition(cond: Optional[model.Condition], funnel: model.Funnel) -> Optional[p.Cond]:
    if cond is None:
        return None
    return p.Cond(cond.source, tree(cond.tree, funnel))


def tree(node: expr.Node, funnel: model.Funnel) -> p.Tree:
    """An expression AST as a plan tree, with names resolved."""
    if isinstance(node, expr.Literal):
        return {"lit": node.value}
    if isinstance(node, expr.Name):
        if node.parts[0] == "thresholds" and len(node.parts) == 2:
            return {"lit": funnel.scoring.threshold(node.parts[1])}
        if funnel.attribute(node.dotted) is not None:
            return {"attr": node.dotted}
        return {"var": node.dotted}
    if isinstance(node, expr.ListExpr):
        return {"list": [tree(i, funnel) for i in node.items]}
    if isinstance(node, expr.Call):
        return {"call": node.name, "args": [tree(a, funnel) for a in node.args],
                "kwargs": {k: tree(v, funnel) for k, v in node.kwargs}}
    if isinstance(node, expr.Unary):
        return {"op": "not" if node.op == "not" else "neg", "args": [tree(node.operand, funnel)]}
    return {"op": node.op, "args": [tree(node.left, funnel), tree(node.right, funnel)]}


def _template_hash(root: Path, name: str, seen: Optional[Set[str]] = None) -> str:
    """SHA-256 over a template file and, recursively, the partials it includes or
    extends, so a footer change changes the plan."""
    seen = seen if seen is not None else set()
    digest = hashlib.sha256()
    path = root / f"{name}.j2" if not name.endswith(".j2") else root / name
    if check_file(root, path) is not None:
        return "missing"
    try:
        data = path.read_bytes()
    except OSError:
        return "missing"
    digest.update(data)
    for ref in sorted(set(_INCLUDES.findall(data))):
        ref_name = ref.decode("utf-8", "replace")
        if ref_name not in seen:
            seen.add(ref_name)
            digest.update(ref_name.encode())
            digest.update(_template_hash(root, ref_name, seen).encode())
    return digest.hexdigest()


def _stages(funnel: model.Funnel) -> Tuple[p.Stage, ...]:
    """Stages in order. A handoff's suppression holds from its stage on, terminal
    stages included (customers get no prospect nurture); sales owns the lead from the
    first handoff stage until a terminal stage."""
    handoff_idx = [funnel.stage_index(h.stage) for h in funnel.handoff if funnel.stage_index(h.stage) >= 0]
    first = min(handoff_idx) if handoff_idx else None
    out = []
    for i, name in enumerate(funnel.stages):
        terminal = name in funnel.terminal_stages
        suppress: List[str] = []
        for h in funnel.handoff:
            if 0 <= funnel.stage_index(h.stage) <= i:
                suppress.extend(x for x in h.suppress if x not in suppress)
        out.append(p.Stage(name, i, terminal, first is not None and i >= first and not terminal,
                           tuple(sorted(suppress))))
    return tuple(out)


def _step(step: model.Step, funnel: model.Funnel) -> p.Step:
    action = "send" if step.send else "notify" if step.notify else "exit" if step.exit else "wait"
    return p.Step(
        id=step.id, index=step.index, wait_minutes=step.wait_minutes, at_minute=step.at, action=action,
        template=step.send, variants=tuple(p.Variant(n, w) for n, w in step.variants),
        when=compile_condition(step.when, funnel), unless=compile_condition(step.unless, funnel),
        notify_to=step.notify.to if step.notify else None, message=step.notify.message if step.notify else None)


def _sequence(seq: model.Sequence, funnel: model.Funnel) -> p.Sequence:
    exit_ = None
    if seq.exit:
        exit_ = p.Exit(seq.exit.stage_at_least, compile_condition(seq.exit.when, funnel), tuple(seq.exit.on))
    return p.Sequence(seq.name, seq.kind, seq.is_marketing, seq.stages, seq.segment, seq.persona,
                      compile_condition(seq.when, funnel), seq.on, seq.priority, exit_,
                      tuple(_step(s, funnel) for s in seq.steps))


def _points(event: str, points: int) -> p.Points:
    base, detail = split_event(event)
    return p.Points(event, base, detail, points)


def _escalation(e: Optional[model.Escalation]) -> Optional[p.Escalation]:
    return None if e is None else p.Escalation(e.notify, e.managers, e.reassign, e.to, e.sla_minutes)


def compile_funnel(funnel: model.Funnel) -> p.Plan:
    """The plan for a funnel. Pure apart from reading template files for their hashes."""
    sc = funnel.scoring
    decay = p.Decay(sc.decay.factor, sc.decay.every_minutes, sc.decay.window_minutes) if sc.decay else None
    sent = sorted({step.send for seq in funnel.sequences for step in seq.steps if step.send}
                  | {m.delivers for m in funnel.lead_magnets if m.delivers}
                  | {m.double_opt_in.confirm for m in funnel.lead_magnets if m.double_opt_in})
    pol = funnel.policies
    cap, quiet, bh = pol.frequency_cap, pol.quiet_hours, pol.business_hours
    plan = p.Plan(
        format_version=p.FORMAT_VERSION,
        funnel=funnel.name,
        content_hash="",
        sender=p.Sender(funnel.sender.from_, funnel.sender.reply_to, funnel.sender.postal_address,
                        funnel.sender.unsubscribe_url, funnel.sender.confirm_url),
        profile=tuple(p.Attribute(a.name, a.type, a.enum, a.minimum, a.maximum, a.required) for a in funnel.profile),
        personas=tuple(p.Group(g.name, compile_condition(g.when, funnel)) for g in funnel.personas),  # type: ignore[arg-type]
        segments=tuple(p.Group(g.name, compile_condition(g.when, funnel)) for g in funnel.segments),  # type: ignore[arg-type]
        fit=compile_condition(funnel.fit.when, funnel) if funnel.fit else None,
        stages=_stages(funnel),
        lead_magnets=tuple(p.Magnet(m.name, m.kind, m.consent or "", m.enters, m.score, m.delivers,
                                   p.DoubleOptIn(m.double_opt_in.confirm, m.double_opt_in.within_minutes)
                                   if m.double_opt_in else None)
                           for m in funnel.lead_magnets),
        entries=tuple(p.Entry(e.name, e.on, e.enters, e.basis, e.consent or "") for e in funnel.entries),
        crm_events=funnel.crm_events,
        scoring=p.Scoring(tuple(_points(e, n) for e, n in sc.events),
                          tuple(p.FitPoints(compile_condition(r.when, funnel), r.points) for r in sc.fit),  # type: ignore[arg-type]
                          decay, sc.thresholds, sc.count_repeats),
        transitions=tuple(p.Transition(f"t{t.index + 1}-{'-'.join(t.sources)}-to-{t.to}", t.sources, t.to,
                                       compile_condition(t.when, funnel), t.on) for t in funnel.transitions),
        sequences=tuple(_sequence(s, funnel) for s in funnel.sequences),
        handoff=tuple(p.Handoff(h.stage, p.Assignment(h.assign.kind, h.assign.reps, h.assign.by, h.assign.routes,
                                                      h.assign.default),
                                h.sla_minutes, h.notify, h.suppress, h.crm_stage, h.sla_clock, h.answered_by,
                                _escalation(h.escalate))
                for h in funnel.handoff),
        policies=p.Policies(cap.max if cap else None, cap.per_minutes if cap else None,
                            cap.applies_to if cap else (), quiet.start if quiet else None,
                            quiet.end if quiet else None, pol.timezone_attribute, funnel.sender.timezone,
                            pol.soft_bounce_limit, bh.days if bh else (), bh.start if bh else None,
                            bh.end if bh else None),
        templates=tuple(p.Template(name, _template_hash(funnel.template_dir, name)) for name in sent),
    )
    body = p.to_dict(plan)
    return p.Plan(**{**plan.__dict__, "content_hash": p.body_hash(body)})


def compile_json(funnel: model.Funnel) -> str:
    return p.dumps(compile_funnel(funnel))

