"""`fnl plan`: what a change does, like `terraform plan`.

Two plans in, a list of changes out: each with a sign (+ added, - removed, ~ changed),
a category (send, wait, sequence, threshold, …), the path it lives at, and before and
after. A summary counts them by category, and an in-flight section says what happens
to leads already in sequences, using the runtime's own migration rule.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .migrate import step_move
from .model import format_duration
from .plan import Plan, Sequence, Step
from .terminal import escape

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Change:
    sign: str  # + - ~
    category: str
    path: str
    before: Any
    after: Any
    text: str


@dataclass(frozen=True)
class Diff:
    old_hash: str
    new_hash: str
    funnel: str
    changes: Tuple[Change, ...]
    in_flight: Tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _dur(minutes: Optional[int]) -> str:
    return "none" if minutes is None else format_duration(minutes)


def _cond(c: Any) -> Optional[str]:
    return c.source if c is not None else None


def _step_fields(s: Step) -> Dict[str, Any]:
    return {"template": s.template, "action": s.action, "variants": {v.name: v.weight for v in s.variants} or None,
            "when": _cond(s.when), "unless": _cond(s.unless), "at": s.at_minute, "notify": s.message}


def _steps(out: List[Change], old: Sequence, new: Sequence) -> None:
    base = f"sequences.{new.name}.steps"
    old_by = {s.id: s for s in old.steps}
    new_by = {s.id: s for s in new.steps}
    for s in new.steps:
        if s.id not in old_by:
            what = f"send {s.template}" if s.action == "send" else s.action
            out.append(Change("+", "send" if s.action == "send" else "step", f"{base}.{s.id}", None, what,
                              f"{new.name}: new step {s.id} ({what}, after {_dur(s.wait_minutes)})"))
    for s in old.steps:
        if s.id not in new_by:
            what = f"send {s.template}" if s.action == "send" else s.action
            out.append(Change("-", "send" if s.action == "send" else "step", f"{base}.{s.id}", what, None,
                              f"{new.name}: step {s.id} removed ({what})"))
    for s in new.steps:
        o = old_by.get(s.id)
        if o is None:
            continue
        if o.wait_minutes != s.wait_minutes:
            out.append(Change("~", "wait", f"{base}.{s.id}.wait", _dur(o.wait_minutes), _dur(s.wait_minutes),
                              f"{new.name}: wait before {s.id} {_dur(o.wait_minutes)} → {_dur(s.wait_minutes)}"))
        of, nf = _step_fields(o), _step_fields(s)
        for key in of:
            if of[key] != nf[key]:
                cat = "send" if key == "template" else "variants" if key == "variants" else "step"
                out.append(Change("~", cat, f"{base}.{s.id}.{key}", of[key], nf[key],
                                  f"{new.name}: {s.id} {key} {_short(of[key])} → {_short(nf[key])}"))
    old_order = [s.id for s in old.steps if s.id in new_by]
    new_order = [s.id for s in new.steps if s.id in old_by]
    if old_order != new_order:
        out.append(Change("~", "step", f"{base}", old_order, new_order, f"{new.name}: steps reordered"))


def _sequence_fields(s: Sequence) -> Dict[str, Any]:
    x = s.exit
    return {"kind": s.kind, "stage": list(s.stages), "segment": s.segment, "persona": s.persona,
            "when": _cond(s.when), "on": s.on, "priority": s.priority,
            "exit": None if x is None else {"stage_at_least": x.stage_at_least, "when": _cond(x.when), "on": list(x.on)}}


def _keyed(out: List[Change], category: str, path: str, old: Dict[str, Any], new: Dict[str, Any],
           label: str) -> None:
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(Change("+", category, f"{path}.{key}", None, new[key], f"new {label} {key}"))
        elif key not in new:
            out.append(Change("-", category, f"{path}.{key}", old[key], None, f"{label} {key} removed"))
        elif old[key] != new[key]:
            out.append(Change("~", category, f"{path}.{key}", old[key], new[key],
                              f"{label} {key} {_short(old[key])} → {_short(new[key])}"))


def _sign(before: Any, after: Any) -> str:
    return "+" if before is None else "-" if after is None else "~"


def _short(value: Any) -> str:
    if value is None:
        return "none"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"


def diff(old: Plan, new: Plan) -> Diff:
    out: List[Change] = []
    # Sequences.
    old_seqs = {s.name: s for s in old.sequences}
    new_seqs = {s.name: s for s in new.sequences}
    for name, s in new_seqs.items():
        if name not in old_seqs:
            sends = sum(1 for x in s.steps if x.action == "send")
            out.append(Change("+", "sequence", f"sequences.{name}", None, s.kind,
                              f"new {s.kind} sequence {name} ({sends} emails)"))
    for name, s in old_seqs.items():
        if name not in new_seqs:
            out.append(Change("-", "sequence", f"sequences.{name}", s.kind, None, f"{s.kind} sequence {name} removed"))
    for name, s in new_seqs.items():
        o = old_seqs.get(name)
        if o is None:
            continue
        of, nf = _sequence_fields(o), _sequence_fields(s)
        for key in of:
            if of[key] != nf[key]:
                out.append(Change("~", "sequence", f"sequences.{name}.{key}", of[key], nf[key],
                                  f"{name}: {key} {_short(of[key])} → {_short(nf[key])}"))
        _steps(out, o, s)
    # Scoring.
    for name in sorted(set(dict(old.scoring.thresholds)) | set(dict(new.scoring.thresholds))):
        a, b = dict(old.scoring.thresholds).get(name), dict(new.scoring.thresholds).get(name)
        if a != b:
            sign = "+" if a is None else "-" if b is None else "~"
            out.append(Change(sign, "threshold", f"scoring.thresholds.{name}", a, b,
                              f"{name.upper()} threshold {a if a is not None else 'none'} → {b if b is not None else 'none'}"))
    _keyed(out, "points", "scoring.events", {e.event: e.points for e in old.scoring.events},
           {e.event: e.points for e in new.scoring.events}, "points for")
    _keyed(out, "points", "scoring.fit", {f.when.source: f.points for f in old.scoring.fit},
           {f.when.source: f.points for f in new.scoring.fit}, "fit points for")
    od, nd = old.scoring.decay, new.scoring.decay
    if od != nd:
        before = "none" if od is None else f"×{round(od.factor, 4)}"
        after = "none" if nd is None else f"×{round(nd.factor, 4)}"
        out.append(Change(_sign(od, nd), "decay", "scoring.decay", od and od.factor, nd and nd.factor,
                          f"decay {before} → {after} per period"))
    # Stages and transitions.
    _keyed(out, "stage", "stages", {s.name: s.index for s in old.stages}, {s.name: s.index for s in new.stages},
           "stage")
    _keyed(out, "transition", "transitions",
           {f"{'|'.join(t.sources)}->{t.to}" + (f" on {t.on}" if t.on else ""): _cond(t.when) for t in old.transitions},
           {f"{'|'.join(t.sources)}->{t.to}" + (f" on {t.on}" if t.on else ""): _cond(t.when) for t in new.transitions},
           "transition")
    _keyed(out, "segment", "segments", {g.name: g.when.source for g in old.segments},
           {g.name: g.when.source for g in new.segments}, "segment")
    _keyed(out, "persona", "personas", {g.name: g.when.source for g in old.personas},
           {g.name: g.when.source for g in new.personas}, "persona")
    if _cond(old.fit) != _cond(new.fit):
        out.append(Change(_sign(old.fit, new.fit), "fit", "fit", _cond(old.fit), _cond(new.fit),
                          f"fit {_cond(old.fit) or 'none'} → {_cond(new.fit) or 'none'}"))
    # Handoff, magnets, policies, templates.
    def handoff(h: Any) -> Dict[str, Any]:
        a = h.assign
        return {"assign": a.kind, "reps": list(a.reps), "routes": {k: list(v) for k, v in a.routes},
                "sla": _dur(h.sla_minutes), "sla_clock": h.sla_clock, "answered_by": list(h.answered_by),
                "notify": list(h.notify), "suppress": list(h.suppress)}

    _keyed(out, "handoff", "handoff", {h.stage: handoff(h) for h in old.handoff},
           {h.stage: handoff(h) for h in new.handoff}, "handoff for")
    _keyed(out, "lead magnet", "lead_magnets",
           {m.name: {"enters": m.enters, "score": m.score, "consent": m.consent, "delivers": m.delivers}
            for m in old.lead_magnets},
           {m.name: {"enters": m.enters, "score": m.score, "consent": m.consent, "delivers": m.delivers}
            for m in new.lead_magnets}, "lead magnet")
    _keyed(out, "entry", "entries",
           {e.name: {"on": e.on, "enters": e.enters, "basis": e.basis, "consent": e.consent} for e in old.entries},
           {e.name: {"on": e.on, "enters": e.enters, "basis": e.basis, "consent": e.consent} for e in new.entries},
           "entry")
    if old.scoring.count_repeats != new.scoring.count_repeats:
        out.append(Change("~", "points", "scoring.count_repeats", old.scoring.count_repeats,
                          new.scoring.count_repeats, f"count repeats {old.scoring.count_repeats} → "
                          f"{new.scoring.count_repeats}"))
    _keyed(out, "policy", "policies",
           {k.rstrip("_"): v for k, v in old.policies.__dict__.items()},
           {k.rstrip("_"): v for k, v in new.policies.__dict__.items()}, "policy")
    _keyed(out, "template", "templates", {t.name: t.sha256[:12] for t in old.templates},
           {t.name: t.sha256[:12] for t in new.templates}, "template")
    return Diff(old.content_hash, new.content_hash, new.funnel, tuple(out), tuple(_in_flight(old, new)))


def _in_flight(old: Plan, new: Plan) -> List[str]:
    notes: List[str] = []
    if not new.stages and old.stages:
        return [f"the definition is removed: leads in {old.funnel} get nothing more from it"]
    if not old.stages:
        return []
    for seq in old.sequences:
        new_seq = new.sequence(seq.name)
        if new_seq is None:
            notes.append(f"leads in {seq.name} leave it (the sequence is removed)")
            continue
        for s in seq.steps:
            move = step_move(old, new, seq.name, s.id)
            if move.outcome == "resumes":
                notes.append(f"leads waiting on {seq.name}/{s.id} (removed) resume at {move.target} when it was due")
            elif move.outcome == "finishes":
                notes.append(f"leads waiting on {seq.name}/{s.id} (removed) finish {seq.name}: no later step remains")
        old_waits = {s.id: s.wait_minutes for s in seq.steps}
        for s in new_seq.steps:
            if s.id in old_waits and old_waits[s.id] != s.wait_minutes:
                notes.append(f"leads already waiting on {seq.name}/{s.id} keep their due time; "
                             f"leads reaching it later wait {_dur(s.wait_minutes)}")
        old_ids = [x.id for x in seq.steps]
        for i, s in enumerate(new_seq.steps):
            if s.id not in old_ids:
                later = [x.id for x in new_seq.steps[i + 1:] if x.id in old_ids]
                if later:
                    notes.append(f"leads already past the place of new step {seq.name}/{s.id} do not get it; "
                                 f"leads before it do")
                else:
                    notes.append(f"leads still in {seq.name} get new step {s.id} after their current steps")
    for st in old.stages:
        if new.stage(st.name) is None:
            from .migrate import stage_move

            notes.append(f"leads in stage {st.name} (removed) move to {stage_move(old, new, st.name)}")
    old_thresholds = dict(old.scoring.thresholds)
    for name, value in new.scoring.thresholds:
        before = old_thresholds.get(name)
        if before is not None and before != value:
            verb = "fewer" if value > before else "more"
            notes.append(f"leads already past `{name}` stay where they are; from now on {verb} leads cross it "
                         f"({before} → {value})")
    return notes


# Categories whose plural is not the noun plus "s".
_PLURAL = {"points": "points", "policy": "policies", "variants": "variants", "decay": "decay changes",
           "fit": "fit changes", "lead magnet": "lead magnets"}


def summary(d: Diff) -> str:
    if not d.changes:
        return "No changes."
    counts = Counter((c.sign, c.category) for c in d.changes if c.category != "threshold")
    parts = []
    for (sign, cat), n in sorted(counts.items(), key=lambda kv: ("+-~".index(kv[0][0]), kv[0][1])):
        noun = cat if n == 1 else _PLURAL.get(cat, cat + "s")
        parts.append(f"{sign} {n} {noun}")
    for c in d.changes:
        if c.category == "threshold":
            parts.append(f"{c.sign} {c.path.split('.')[-1].upper()} threshold "
                         f"{c.before if c.before is not None else 'none'} → {c.after if c.after is not None else 'none'}")
    return ", ".join(parts)


def render_text(d: Diff) -> str:
    # Names, paths and conditions come from the plans: escaped for the terminal.
    lines = [f"Plan for {escape(d.funnel)}: {escape(summary(d))}"]
    if d.changes:
        lines.append("")
        for c in d.changes:
            lines.append(f"  {c.sign} {escape(c.path)}")
            lines.append(f"      {escape(c.text)}")
    if d.in_flight:
        lines.append("")
        lines.append("Leads in flight:")
        lines.extend(f"  - {escape(n)}" for n in d.in_flight)
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return escape(text).replace("|", "\\|")


def render_markdown(d: Diff) -> str:
    lines = [f"### fnl plan: `{_md(d.funnel)}`", "", f"**{_md(summary(d))}**", ""]
    if d.changes:
        lines += ["| | path | before | after |", "|---|---|---|---|"]
        for c in d.changes:
            before = "" if c.before is None else f"`{_md(_short(c.before))}`"
            after = "" if c.after is None else f"`{_md(_short(c.after))}`"
            lines.append(f"| {c.sign} | `{_md(c.path)}` | {before} | {after} |")
        lines.append("")
    if d.in_flight:
        lines += ["**Leads in flight**", ""] + [f"- {_md(n)}" for n in d.in_flight] + [""]
    lines.append(f"<sub>{_md(d.old_hash[:19])} → {_md(d.new_hash[:19])}</sub>")
    return "\n".join(lines) + "\n"


def to_json(d: Diff) -> Dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "funnel": d.funnel, "old": d.old_hash, "new": d.new_hash,
            "summary": summary(d), "changed": d.changed,
            "changes": [{"sign": c.sign, "category": c.category, "path": c.path, "before": c.before,
                         "after": c.after, "text": c.text} for c in d.changes],
            "in_flight": list(d.in_flight)}
