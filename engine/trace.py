"""`fnl trace`: one lead's journey through the engine, event by event.

Events come from a JSON Lines file (untrusted input: bounded size, every bad line
reported with its line and column). The output is a timeline: each event, each
action it caused, the score after it and why each stage changed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .drive import Applied, drive
from .errors import Location, Problem
from .plan import Plan
from .score import shown
from .state import Event, LeadState, event_from_json, iso

MAX_EVENTS_BYTES = 64 * 1024 * 1024
MAX_LINE = 1024 * 1024
DEFAULT_HORIZON = 120 * 1440


@dataclass(frozen=True)
class Events:
    events: Tuple[Event, ...]
    problems: Tuple[Problem, ...]
    lines: Tuple[int, ...] = ()  # the line of each event in the file


def read_events(path: Path, display: str) -> Events:
    """Events from a JSONL file; problems for every malformed line (none are skipped silently)."""
    problems: List[Problem] = []
    events: List[Event] = []
    try:
        size = path.stat().st_size
        if size > MAX_EVENTS_BYTES:
            return Events((), (Problem("FNL601", f"events file is {size // 1048576} MiB; the limit is 64 MiB",
                                       Location(display), help="split it by lead or by day"),))
        raw = path.read_bytes()
    except OSError as exc:
        return Events((), (Problem("FNL601", f"cannot read events: {exc.strerror or exc}", Location(display),
                                   help="check the path"),))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw.count(b"\n", 0, exc.start) + 1
        return Events((), (Problem("FNL601", "events file is not UTF-8", Location(display, bad_line, 1),
                                   help="write events as UTF-8 JSON Lines"),))
    numbers: List[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            problems.append(Problem("FNL602", "line is longer than 1 MiB", Location(display, n, 1),
                                    help="one event per line, each a small JSON object"))
            continue
        try:
            data = json.loads(line, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            problems.append(Problem("FNL602", f"invalid JSON: {exc.msg}", Location(display, n, exc.colno),
                                    help="one JSON object per line", source_line=line[:200]))
            continue
        except ValueError as exc:  # a duplicate key, or a number too long to convert
            what = "a number has thousands of digits" if "digits" in str(exc) else str(exc)[:120]
            problems.append(Problem("FNL602", f"invalid event: {what}", Location(display, n, 1),
                                    help="give each field once, with ordinary numbers", source_line=line[:200]))
            continue
        except RecursionError:
            problems.append(Problem("FNL602", "JSON nests too deeply", Location(display, n, 1),
                                    help="events are flat objects"))
            continue
        try:
            event = event_from_json(data, "event")
        except ValueError as exc:
            problems.append(Problem("FNL603", str(exc).removeprefix("event: "), Location(display, n, 1),
                                    help="see `fnl trace --help` for the event format", source_line=line[:200]))
            continue
        events.append(event)
        numbers.append(n)
    if not events and not problems:
        problems.append(Problem("FNL601", "events file holds no events", Location(display),
                                help="write one JSON event per line, starting with an opt-in"))
    return Events(tuple(events), tuple(problems), tuple(numbers))


def rejections(steps: List[Applied], loaded: Events, display: str) -> List[Problem]:
    """A located problem for every event of the file the engine rejected."""
    line_of = {id(e): n for e, n in zip(loaded.events, loaded.lines)}
    out = []
    for item in steps:
        for a in item.result.actions:
            if a.type == "rejected" and id(item.event) in line_of:
                out.append(Problem("FNL603", f"event rejected: {a.get('reason')}",
                                   Location(display, line_of[id(item.event)], 1),
                                   help="fix the event, or the definition it does not fit"))
    return out


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"field `{key}` is given twice")
        seen[key] = value
    return seen


def _describe_event(e: Event) -> str:
    extra = e.magnet or e.template or e.page
    return f"{e.type}" + (f" {extra}" if extra else "")


# How each kind of action reads in the timeline (send, stage change, handoff and consent
# need more than one template and are written out below).
_PHRASES = {
    "ignored": "{reason}",
    "not_moved": "not moved to {to}: {reason}",
    "not_scored": "not scored: {reason}",
    "recorded": "{reason}",
    "held": "{reason}",
    "applied": "applied {reason}",
    "suppressed": "suppressed: {reason}",
    "not_sent": "not sent: {template}: {reason}",
    "sla_breached": "SLA breached: {owner} did not follow up on {stage} by {deadline}",
    "sla_met": "SLA met: {by} before {deadline} ({owner}, {stage})",
    "sla_superseded": "SLA for {stage} ({owner}, until {deadline}) closed unanswered: {reason}",
    "notify": "notify {to}: {message}",
    "crm_update": "CRM stage → {stage}",
    "enter_sequence": "enter sequence {sequence}",
    "exit_sequence": "exit sequence {sequence} ({reason})",
    "rejected": "REJECTED: {reason}",
    "stage_changed": "stage {from} → {to}: {because}",
}


def _describe_action(a: Any) -> str:
    d = dict(a.detail)
    if a.type == "send_email":
        variant = f" variant {d['variant']}" if d.get("variant") else ""
        if d.get("kind") == "delivery":
            return f"send {d['template']}  (delivery of lead magnet {d.get('magnet')})"
        return f"send {d['template']}{variant}  ({d['kind']} {d['sequence']}, step {d['step']})"
    if a.type == "handoff":
        sla = f", SLA until {d['sla_deadline']}" if d.get("sla_deadline") else ""
        dne = f"; do not email: {d['do_not_email']}" if d.get("do_not_email") else ""
        return f"hand off to {d['owner']}{sla}{dne}"
    if a.type == "consent_recorded":
        basis = "" if d.get("basis", "consent") == "consent" else f" (basis: {d['basis']})"
        return f"consent recorded from {d['magnet']}: \"{d['consent']}\"{basis}"
    if a.type in _PHRASES:
        return _PHRASES[a.type].format_map(d)
    return f"{a.type} {d}"


def timeline(plan: Plan, events: Tuple[Event, ...], until: Optional[int] = None) -> List[Applied]:
    horizon = until if until is not None else (max((e.at for e in events), default=0) + DEFAULT_HORIZON)
    return list(drive(plan, events, horizon))


def render_text(steps: List[Applied]) -> str:
    lines: List[str] = []
    for item in steps:
        actions = item.result.actions
        if item.event.type == "tick" and not actions:
            continue
        state = item.result.state
        score = f"score {state.score:.1f}, {state.stage}" if isinstance(state, LeadState) else "not a lead yet"
        head = "clock" if item.event.type == "tick" else _describe_event(item.event)
        lines.append(f"{iso(item.event.at, item.event.second)}  {item.event.lead}  {head}  [{score}]")
        for a in actions:
            when = f" at {iso(a.at)}" if a.at != item.event.at else ""
            lines.append(f"    → {_describe_action(a)}{when}")
    return "\n".join(lines) + "\n"


def render_json(steps: List[Applied]) -> str:
    out = []
    for item in steps:
        state = item.result.state
        lead = state if isinstance(state, LeadState) else None
        out.append(json.dumps({
            "event": item.event.to_json(),
            "actions": [a.to_json() for a in item.result.actions],
            "score": shown(lead.score) if lead else None,
            "stage": lead.stage if lead else None,
            "unsubscribed": lead.unsubscribed if lead else None,
        }, sort_keys=True, ensure_ascii=False))
    return "\n".join(out) + ("\n" if out else "")
