"""`fnl trace`: one lead's journey through the engine, event by event.

Events come from a JSON Lines file (untrusted input: bounded size, every bad line
reported with its line and column). The output is a timeline: each event, each
action it caused, the score after it and why each stage changed.
"""
from __future__ import annotations

import difflib
import json
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from .drive import Applied, drive, event_order
from .errors import Location, Problem
from .plan import Plan
from .score import shown
from .state import CLOCK, EVENT_FIELDS, Event, LeadState, Prospect, event_from_json, iso, unused_fields
from .terminal import escape, json_text

MAX_EVENTS_BYTES = 4 * 1024 ** 3  # counted while reading: devices and growing files report no size
MAX_LINE = 1024 * 1024
MAX_UNORDERED = 200_000  # events sorted in memory when a file is not in time order
MAX_PROBLEMS = 200
MAX_IGNORED_NAMES = 20  # field names the note lists one by one
DEFAULT_HORIZON = 120 * 1440
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Events:
    events: Tuple[Event, ...]
    problems: Tuple[Problem, ...]
    lines: Tuple[int, ...] = ()  # the line of each event in the file


@dataclass(frozen=True)
class Scan:
    """What a first pass over an events file found: its problems, how many events it
    holds, their last minute, and whether they come in time order (minute by minute)."""

    problems: Tuple[Problem, ...]
    count: int
    last_at: Optional[int]
    ordered: bool
    first_at: Optional[int] = None
    # (field fnl does not use, on how many lines), by name; a last (None, n) counts the
    # fields past the first MAX_IGNORED_NAMES names
    ignored: Tuple[Tuple[Optional[str], int], ...] = ()

    def ignored_note(self) -> str:
        """One line saying which fields the events carry that fnl ignored, or "". Field
        names come from the file: the caller escapes the line for the terminal."""
        if not self.ignored:
            return ""
        fields = ", ".join(f"other fields ({_lines(n)})" if name is None else
                           f"{_clip(name)} ({_lines(n)}{_meant(name)})" for name, n in self.ignored)
        return f"note: ignored fields not used by fnl: {fields}"


def _lines(n: int) -> str:
    return f"{n:,} line{'s' if n != 1 else ''}"


def _clip(name: str) -> str:
    return json.dumps(name, ensure_ascii=False) if not name.isprintable() or " " in name or not name else \
        name if len(name) <= 40 else name[:39] + "…"


def _meant(field: str) -> str:
    """`; did you mean template?` for an ignored field that misspells one fnl reads."""
    guess = difflib.get_close_matches(field, EVENT_FIELDS, n=1, cutoff=0.8)
    return f"; did you mean {guess[0]}?" if guess else ""


def _raw_lines(path: Path) -> Iterator[Tuple[int, Optional[bytes]]]:
    """(line number, bytes) for each line of a file, split at LF only (a U+2028 inside a
    JSON string is not a line break); None for a line longer than MAX_LINE, which is
    skipped without being held in memory. Raises OSError, or ValueError for what is not
    a regular file or is larger than MAX_EVENTS_BYTES."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("is not a regular file (a device, pipe or socket): give a file of JSON Lines")
    if info.st_size > MAX_EVENTS_BYTES:  # at once; and counted while reading, for files that grow
        raise ValueError(f"is larger than {MAX_EVENTS_BYTES // 1024 ** 3} GiB: split it by day")
    total = 0
    number = 1
    pending = bytearray()
    overlong = False
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            total += len(chunk)
            if total > MAX_EVENTS_BYTES:
                raise ValueError(f"is larger than {MAX_EVENTS_BYTES // 1024 ** 3} GiB: split it by day")
            if not chunk:
                break
            start = 0
            while True:
                cut = chunk.find(b"\n", start)
                piece = chunk[start:] if cut < 0 else chunk[start:cut]
                if not overlong:
                    pending += piece
                    overlong = len(pending) > MAX_LINE
                    if overlong:
                        pending.clear()
                if cut < 0:
                    break
                yield number, None if overlong else _clean(bytes(pending), number)
                number += 1
                pending.clear()
                overlong = False
                start = cut + 1
    if pending or overlong:
        yield number, None if overlong else _clean(bytes(pending), number)


def _clean(raw: bytes, number: int) -> bytes:
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw[:-1] if raw.endswith(b"\r") else raw


def _parse(number: int, raw: Optional[bytes], display: str,
           ignored: Optional[Dict[Optional[str], int]] = None) -> Tuple[Optional[Event], Optional[Problem]]:
    """One line: an event, a problem, or neither (a blank line). Fields fnl does not
    use are counted in `ignored` (per field, the lines carrying it) when given."""
    where = Location(display, number, 1)
    if raw is None:
        return None, Problem("FNL602", "line is longer than 1 MiB", where,
                             help="one event per line, each a small JSON object")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
        return None, Problem("FNL601", "events file is not UTF-8", Location(display, number, column),
                             help="write events as UTF-8 JSON Lines (this byte is not)")
    if not line.strip():
        return None, None
    try:
        data = json.loads(line, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        return None, Problem("FNL602", f"invalid JSON: {exc.msg}", Location(display, number, exc.colno),
                             help="one JSON object per line", source_line=line[:200])
    except ValueError as exc:  # a duplicate key, or a number too long to convert
        what = "a number has thousands of digits" if "digits" in str(exc) else str(exc)[:120]
        return None, Problem("FNL602", f"invalid event: {what}", where,
                             help="give each field once, with ordinary numbers", source_line=line[:200])
    except RecursionError:
        return None, Problem("FNL602", "JSON nests too deeply", where, help="events are flat objects")
    try:
        event = event_from_json(data, "event")
    except ValueError as exc:
        return None, Problem("FNL603", str(exc).removeprefix("event: "), where,
                             help="see `fnl trace --help` for the event format", source_line=line[:200])
    if ignored is not None:
        for name in unused_fields(data):
            key = name if name in ignored or len(ignored) < MAX_IGNORED_NAMES else None  # None: any other
            ignored[key] = ignored.get(key, 0) + 1
    return replace(event, line=number), None


def _file_problem(display: str, message: str, help: str) -> Problem:
    return Problem("FNL601", message, Location(display), help=help)


def scan_events(path: Path, display: str, keep: Optional[List[Event]] = None) -> Scan:
    """A first pass: every malformed line located (none skipped silently; past
    MAX_PROBLEMS, one more problem says how many were left out), in memory bounded by
    one line, unless `keep` is given: then the events are appended to it."""
    problems: List[Problem] = []
    more = 0
    count = 0
    last: Optional[int] = None
    first: Optional[int] = None
    ordered = True
    same_minute = 0  # events in a row stamped with the latest minute
    ignored: Dict[Optional[str], int] = {}
    try:
        for number, raw in _raw_lines(path):
            event, problem = _parse(number, raw, display, ignored)
            if problem is not None:
                if len(problems) < MAX_PROBLEMS:
                    problems.append(problem)
                else:
                    more += 1
            if event is not None:
                count += 1
                if keep is not None:
                    keep.append(event)
                if last is not None and event.at < last:
                    ordered = False
                if event.at == last:
                    same_minute += 1
                elif last is None or event.at > last:
                    same_minute = 1
                last = event.at if last is None else max(last, event.at)
                first = event.at if first is None else min(first, event.at)
                if not ordered and count > MAX_UNORDERED or same_minute > MAX_UNORDERED:
                    break  # the file cannot be streamed: said below, without reading the rest
    except OSError as exc:
        return Scan((_file_problem(display, f"cannot read events: {exc.strerror or exc}", "check the path"),),
                    0, None, True)
    except ValueError as exc:
        return Scan((_file_problem(display, f"events file {exc}", "give a regular file of JSON Lines"),), 0, None,
                    True)
    if more:
        problems.append(_file_problem(display, f"{more} more problems in this file are not shown",
                                      "fix the ones above first"))
    if not count and not problems:
        problems.append(_file_problem(display, "events file holds no events",
                                      "write one JSON event per line, starting with an opt-in"))
    if not ordered and count > MAX_UNORDERED:
        problems.append(_file_problem(display, f"events are not in time order and there are more than "
                                               f"{MAX_UNORDERED:,} of them",
                                      "sort the file by `at` (fnl streams files in time order and sorts only "
                                      "smaller ones)"))
    elif same_minute > MAX_UNORDERED:
        problems.append(_file_problem(display, f"more than {MAX_UNORDERED:,} events are stamped with the same "
                                               "minute", "events of one minute are ordered in memory: give each "
                                                         "its real time (seconds count, minutes decide)"))
    others = ignored.pop(None, 0)
    named: Tuple[Tuple[Optional[str], int], ...] = tuple(sorted((str(k), n) for k, n in ignored.items()))
    return Scan(tuple(problems), count, last, ordered, first, named + (((None, others),) if others else ()))


def stream_events(path: Path, scan: Scan) -> Iterator[Event]:
    """The events of a file that `scan_events` found no problem in, in engine order
    (`drive.event_order`): a file in time order is read one minute at a time; a smaller
    file out of order is sorted in memory."""
    def parsed() -> Iterator[Event]:
        for number, raw in _raw_lines(path):
            event, _ = _parse(number, raw, "")
            if event is not None:
                yield event

    if not scan.ordered:
        yield from event_order(parsed())
        return
    minute: List[Event] = []
    for event in parsed():
        if minute and event.at != minute[0].at:
            yield from event_order(minute)
            minute = []
        minute.append(event)
    yield from event_order(minute)


def read_events(path: Path, display: str) -> Events:
    """All events of a (small) file in file order, and its problems."""
    events: List[Event] = []
    scan = scan_events(path, display, events)
    return Events(tuple(events), scan.problems, tuple(e.line for e in events))


def rejection(item: Applied, display: str) -> Optional[Problem]:
    """A located problem for an event of the file the engine rejected."""
    for a in item.result.actions:
        if a.type == "rejected" and item.event.line:
            return Problem("FNL603", f"event rejected: {a.get('reason')}", Location(display, item.event.line, 1),
                           help="fix the event, or the definition it does not fit")
    return None


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"field `{key}` is given twice")
        seen[key] = value
    return seen


# How each kind of action reads in the timeline (send, stage change, handoff and consent
# need more than one template and are written out below).
_PHRASES = {
    "ignored": "{reason}",
    "optin_pending": "{reason}",
    "optin_expired": "{reason}",
    "optin_cancelled": "{reason}",
    "not_moved": "not moved to {to}: {reason}",
    "not_scored": "not scored: {reason}",
    "recorded": "{reason}",
    "held": "{reason}",
    "applied": "applied {reason}",
    "suppressed": "suppressed: {reason}",
    "not_sent": "not sent: {template}: {reason}",
    "deferred": "deferred {template} from {from} to {to}: {reason}",
    "left_out": "{reason}",
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
        if d.get("kind") == "confirmation":
            return f"send {d['template']}  (confirmation of the opt-in to {d.get('magnet')}: transactional)"
        return f"send {d['template']}{variant}  ({d['kind']} {d['sequence']}, step {d['step']})"
    if a.type == "skipped":
        what = d["template"] if d.get("action") == "send" and d.get("template") else \
            f"notify {d['to']}" if d.get("action") == "notify" and d.get("to") else f"{d.get('action')} step"
        return f"skipped {what}  ({d['kind']} {d['sequence']}, step {d['step']}): {d['reason']}"
    if a.type == "handoff":
        sla = f", SLA until {d['sla_deadline']}" if d.get("sla_deadline") else ""
        dne = f"; do not email: {d['do_not_email']}" if d.get("do_not_email") else ""
        return f"hand off to {d['owner']}{sla}{dne}"
    if a.type == "sla_breached" and d.get("escalated"):
        return (f"SLA breached again: {d['owner']} did not follow up on {d['stage']} by {d['deadline']} after the "
                "escalation (not escalated again)")
    if a.type == "sla_met" and d.get("escalated"):
        return f"SLA met after the escalation: {d['by']} before {d['deadline']} ({d['owner']}, {d['stage']})"
    if a.type == "escalated":
        parts = [f"reassigned to {d['to']}" if d.get("to") else f"{d['owner']} keeps the lead"]
        if d.get("notify"):
            parts.append("told " + ", ".join(d["notify"]))
        parts.append(f"new SLA until {d['sla_deadline']}" if d.get("sla_deadline") else "no new SLA")
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"escalated {d['stage']}: {d['owner']} let the SLA of {d['deadline']} pass; {'; '.join(parts)}{why}"
    if a.type == "consent_recorded":
        basis = "" if d.get("basis", "consent") == "consent" else f" (basis: {d['basis']})"
        if basis and d.get("consent") in (None, "", d.get("basis")):
            return f"no consent needed from {d['magnet']}{basis}"
        confirmed = f" (opted in at {d['opted_in_at']}, confirmed at {d['confirmed_at']})" \
            if d.get("opted_in_at") else ""
        return f"consent recorded from {d['magnet']}: \"{d['consent']}\"{basis}{confirmed}"
    if a.type in _PHRASES:
        return _PHRASES[a.type].format_map(d)
    return f"{a.type} {d}"


def timeline(plan: Plan, events: Tuple[Event, ...], until: Optional[int] = None) -> List[Applied]:
    horizon = until if until is not None else (max((e.at for e in events), default=0) + DEFAULT_HORIZON)
    return list(drive(plan, events, horizon))


def run_file(plan: Plan, path: Path, scan: Scan, until: Optional[int] = None) -> Iterator[Applied]:
    """The timeline of an events file, streamed: memory bounded by the leads, not the events."""
    horizon = until if until is not None else (scan.last_at or 0) + DEFAULT_HORIZON
    return drive(plan, stream_events(path, scan), horizon, ordered=True)


def text_lines(steps: Iterable[Applied]) -> Iterator[str]:
    for item in steps:
        actions = item.result.actions
        if item.event.type == CLOCK and not actions:
            continue
        if not item.event.lead:  # the end of the trace at --until
            for a in actions:
                yield escape(f"{iso(item.event.at)}  --until: {_describe_action(a)}")
            continue
        state = item.result.state
        score = f"score {state.score:.1f}, {state.stage}" if isinstance(state, LeadState) else \
            f"not a lead yet: waiting for confirmation of {state.pending.magnet}" \
            if isinstance(state, Prospect) and state.pending is not None else "not a lead yet"
        head = item.event.summary()
        # Lead IDs, templates, pages and reasons come from the events file: escaped, so a
        # control character in them cannot act on the terminal.
        yield escape(f"{iso(item.event.at, item.event.second)}  {item.event.lead}  {head}  [{score}]")
        for a in actions:
            when = f" at {iso(a.at)}" if a.at != item.event.at else ""
            yield escape(f"    → {_describe_action(a)}{when}")


def json_lines(steps: Iterable[Applied]) -> Iterator[str]:
    for item in steps:
        state = item.result.state
        lead = state if isinstance(state, LeadState) else None
        yield json_text(json.dumps({
            "event": item.event.to_json(),
            "actions": [a.to_json() for a in item.result.actions],
            "score": shown(lead.score) if lead else None,
            "stage": lead.stage if lead else None,
            "unsubscribed": lead.unsubscribed if lead else None,
        }, sort_keys=True, ensure_ascii=False))


def render_text(steps: Iterable[Applied]) -> str:
    return "".join(line + "\n" for line in text_lines(steps)) or "\n"


def render_json(steps: Iterable[Applied]) -> str:
    return "".join(line + "\n" for line in json_lines(steps))
