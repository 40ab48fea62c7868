"""`fnl plan`: what a change does, like `terraform plan`, said in the definition's words.

Two plans in, each with the definition it was compiled from when there is one (a plan
file has none), and a list of changes out. A change has a sign (+ added, - removed,
~ changed), a category the summary counts (send, wait, handoff, policy, …), what it is
(`handoff sql: sla`), and the value before and after as the definition writes it:
durations as `4h` or `7d`, clock times as `20:00`, decay as a half-life or a factor,
conditions and wording as their text. A long value that changed is shown by what changed
in it: a mapping by the sub-keys that changed, one line each; a long list by the items
added and removed; a long text by the part that differs, with a few words around it. The
part that changed is never cut short.

Where a plan came from a definition, each change points at its line: in the new
definition for what was added or changed, in the old one for what was removed (a git
revision's files are named as git names them, `REV:path`), else at the nearest enclosing
key that is still there. A template's change reads as the words that changed in each of
its blocks (subject, html, text) and in the files it includes, at their lines (from
plan files, which hold only hashes, as the hashes); a template the plan no longer sends
whose file is still there is "no longer sent", not removed.

A summary counts the changes by category, and an in-flight section says what happens to
leads already in sequences, using the runtime's own migration rule (`engine.migrate`).
Comparing two different funnels works, with a warning first.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence as Seq, Tuple, Union

from .errors import JsonPath, Location, json_path
from .migrate import stage_move, step_moves
from .model import BUILTIN_CRM_EVENTS, WEEKDAYS, Funnel
from .plan import Handoff, Plan, Sequence, Step
from .sources import display_path
from .terminal import escape
from .units import format_clock, format_duration, parse_duration

# 2: changes carry `subject`, values in the definition's words and a `location`; a diff
# carries `old_funnel` and `warnings`.
FORMAT_VERSION = 2
# A value longer than this (in characters, as shown) is shown by what changed in it.
LONG = 60
# How much unchanged text is kept on each side of the part of a long text that changed.
CONTEXT = 20


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a plan, and the definition it was compiled from (None
    for a plan file). `renames` turns file names as read into file names as shown:
    (prefix, replacement) pairs, e.g. a git revision's temporary copy into `REV:`."""

    plan: Plan
    funnel: Optional[Funnel] = None
    renames: Tuple[Tuple[str, str], ...] = ()
    # The text of every template file (`nurture/brief.j2`, `_partials/footer.html.j2`),
    # read while the files exist (a git revision's copy is gone by the time of the diff):
    # `read_templates`. None where there are none to read (a plan file).
    templates: Optional[Mapping[str, str]] = None

    def shown(self, file: str) -> str:
        for prefix, to in self.renames:
            if file.startswith(prefix):
                return to + file[len(prefix):]
        return file


@dataclass(frozen=True)
class Where:
    """Where a change is: a line of the new definition (`side` "new") or, for what was
    removed, of the old one; `path` is the definition path found there."""

    file: str
    line: int
    column: int
    side: str  # new | old
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Change:
    sign: str  # + - ~
    category: str  # what the summary counts: send, wait, handoff, policy, …
    entity: str  # the thing counted: `sql` for a handoff, `nurture-saas/capability` for a step
    whole: bool  # the change adds or removes the thing itself, not one of its keys
    path: str  # a stable key of the change, in the plan's terms
    subject: str  # what changed, in the definition's words: `handoff sql: sla`
    before: Optional[str]  # in the definition's words; None for something added
    after: Optional[str]  # None for something removed
    text: str  # the line a reviewer reads: `handoff sql: sla 4h → 2h`
    location: Optional[Where]


@dataclass(frozen=True)
class Diff:
    old_hash: str
    new_hash: str
    funnel: str
    changes: Tuple[Change, ...]
    in_flight: Tuple[str, ...]
    old_funnel: str = ""
    warnings: Tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def title(self) -> str:
        if self.old_funnel and self.old_funnel != self.funnel:
            return f"{self.old_funnel} → {self.funnel}"
        return self.funnel


# -- values in the definition's words ------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@/+:-]*\Z")
_NOT_A_NAME = re.compile(r"(true|false|null|none|yes|no|on|off|~|[-+]?[0-9][0-9_.eE+-]*)\Z", re.IGNORECASE)


def _quote(text: str) -> str:
    """Text as YAML writes it in double quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(value: Any) -> str:
    """A value as a definition writes it: names bare, free text quoted, lists in brackets."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if _BARE.match(value) and not _NOT_A_NAME.match(value) else _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_word(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_word(v)}" for k, v in value.items()) + "}"
    return _quote(str(value))


def _clock(minute: Optional[int]) -> str:
    return "none" if minute is None else format_clock(minute)


def _days(days: Seq[int]) -> List[str]:
    """Weekday numbers (0 = Monday) as the definition names them."""
    return [WEEKDAYS[n] if 0 <= n < len(WEEKDAYS) else str(n) for n in days]


def _texts(a: Optional[str], b: Optional[str], quote: bool = True) -> Tuple[str, str]:
    """Two free texts (conditions, consent wording, messages) side by side: whole when
    both are short (quoted, or only where the text needs it); otherwise the part that
    differs, with up to CONTEXT characters of what is the same around it (cut at
    spaces), the rest shown as `…`."""
    if a is None or b is None or (len(a) <= LONG and len(b) <= LONG):
        show = _quote if quote else _word
        return (_word(a) if a is None else show(a)), (_word(b) if b is None else show(b))
    la, lb = len(a), len(b)
    p = 0
    while p < min(la, lb) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(la, lb) - p and a[la - 1 - s] == b[lb - 1 - s]:
        s += 1
    # The same text around the change, cut at spaces; where the context holds no space
    # (`attended('q3-webinar')`), the word it cuts is shown whole if it is short.
    start = max(0, p - CONTEXT)
    if start:
        space = a.find(" ", start, p)
        if space >= 0:
            start = space + 1
        else:
            back = a.rfind(" ", 0, start) + 1
            start = back if start - back <= CONTEXT else start
    end = la - s + min(s, CONTEXT)  # in `a`: the first character not shown
    if end < la:
        space = a.rfind(" ", la - s, end + 1)
        if space > la - s:
            end = space
        else:
            ahead = a.find(" ", end)
            ahead = la if ahead < 0 else ahead
            end = ahead if ahead - end <= CONTEXT else end
    keep = end - (la - s)

    def cut(text: str) -> str:
        stop = len(text) - s + keep
        return _quote(("…" if start else "") + text[start:stop] + ("…" if stop < len(text) else ""))

    return cut(a), cut(b)


def _raw(side: Side, path: JsonPath) -> Any:
    """The value at `path` in the side's definition, as written (None without one)."""
    if side.funnel is None:
        return None
    node: Any = side.funnel.document.data
    for part in path:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _duration(side: Side, path: JsonPath, minutes: Optional[int]) -> str:
    """A duration as the definition writes it (`7d`, not `1w`), else in fnl's spelling."""
    if minutes is None:
        return "none"
    raw = _raw(side, path)
    if isinstance(raw, str) and parse_duration(raw) == minutes:
        return raw
    return format_duration(minutes)


def _decay_words(side: Side) -> Dict[str, str]:
    """The decay as the definition says it: {half_life} or {factor, every}, and {window}."""
    decay = side.plan.scoring.decay
    if decay is None:
        return {}
    raw = _raw(side, ("scoring", "decay"))
    raw = raw if isinstance(raw, dict) else {}
    out: Dict[str, str] = {}
    half = raw.get("half_life")
    if (isinstance(half, str) and decay.every_minutes == 1440
            and _half_life_factor(parse_duration(half)) == decay.factor):
        out["half_life"] = half
    elif "factor" in raw and raw.get("factor") == decay.factor:
        out["factor"] = _word(raw["factor"])
        out["every"] = _duration(side, ("scoring", "decay", "every"), decay.every_minutes)
    else:
        out.update(_decay_from_plan(decay.factor, decay.every_minutes))
    if decay.window_minutes is not None:
        out["window"] = _duration(side, ("scoring", "decay", "window"), decay.window_minutes)
    return out


def _half_life_factor(minutes: int) -> float:
    return 0.5 ** (1440 / minutes) if minutes else 0.0  # as engine.model computes it


def _decay_from_plan(factor: float, every: int) -> Dict[str, str]:
    """A plan's daily factor as the half-life it was compiled from, when it is one."""
    if every == 1440 and 0 < factor < 1:
        half = round(1440 * math.log(0.5) / math.log(factor))
        if half > 0 and math.isclose(_half_life_factor(half), factor, rel_tol=1e-12):
            return {"half_life": format_duration(half)}
    return {"factor": _word(factor), "every": format_duration(every)}


_DECAY_KEYS = {"half_life": "half-life", "factor": "factor", "every": "every", "window": "window"}


def _absent(plan: Plan) -> bool:
    """The plan of a definition that does not exist (on one side of `fnl plan --base`)."""
    return plan.content_hash == "sha256:none" and not plan.stages


# -- collecting changes --------------------------------------------------------------------

Paths = Union[JsonPath, Seq[JsonPath], None]


class _Changes:
    """Changes in the order the definition reads, each located."""

    def __init__(self, old: Side, new: Side) -> None:
        self.old, self.new = old, new
        self.whole_plan = _absent(old.plan) or _absent(new.plan)
        self.out: List[Change] = []

    # Where things are.
    def _locate(self, side: Side, name: str, paths: Paths, nearest: bool = True) -> Optional[Where]:
        """The first of `paths` the side's definition has; else (if `nearest`) the nearest
        enclosing key of the first that it has."""
        if side.funnel is None or not paths:
            return None
        candidates: List[JsonPath] = ([paths] if isinstance(paths[0], (str, int))  # type: ignore[list-item]
                                      else list(paths))  # type: ignore[arg-type]
        doc = side.funnel.document

        def at(path: JsonPath) -> Optional[Where]:
            loc: Optional[Location] = doc.keys.get(path) or doc.values.get(path)
            if loc is None:
                return None
            return Where(side.shown(loc.file), loc.line, loc.column, name, json_path(path))

        for path in candidates:
            found = at(tuple(path))
            if found is not None:
                return found
        probe = tuple(candidates[0])
        while nearest and probe:
            probe = probe[:-1]
            found = at(probe)
            if found is not None:
                return found
        return None

    def _where(self, sign: str, at: Paths, old_at: Paths) -> Optional[Where]:
        """What was added or changed is where the new definition has it; what was removed,
        or changed to a default the new definition no longer spells out, where the old one
        had it; else at the nearest enclosing key in the new one."""
        if sign == "+":
            return self._locate(self.new, "new", at)
        exact = self._locate(self.new, "new", at, nearest=False) if sign == "~" else None
        return exact or self._locate(self.old, "old", old_at, nearest=False) or self._locate(self.new, "new", at)

    def add(self, sign: str, category: str, entity: str, path: str, subject: str, before: Optional[str],
            after: Optional[str], at: Paths = None, old_at: Paths = None, whole: bool = False,
            location: Optional[Where] = None, text: Optional[str] = None) -> None:
        """One change. `at` is the definition path in the new definition, `old_at` in the
        old one (the same as `at` unless given). A whole thing added or removed reads
        `subject: value`; a key of it `subject value`; a change `subject before → after`."""
        if text is not None:
            pass  # said in its own words
        elif sign == "~":
            text = f"{subject} {before} → {after}"
        else:
            value = after if sign == "+" else before
            text = subject if value is None else f"{subject}{':' if whole else ''} {value}"
        where = location or self._where(sign, at, at if old_at is None else old_at)
        self.out.append(Change(sign, category, entity, whole or self.whole_plan, path, subject, before, after, text,
                               where))

    def value(self, category: str, entity: str, path: str, subject: str, a: Any, b: Any, at: Paths,
              old_at: Paths = None, words: Any = _word, whole: bool = False) -> None:
        """A value: added (None before), removed (None after) or changed; nothing when equal."""
        if a == b:
            return
        if a is None:
            self.add("+", category, entity, path, subject, None, words(b), at, old_at, whole)
        elif b is None:
            self.add("-", category, entity, path, subject, words(a), None, at, old_at, whole)
        else:
            self.add("~", category, entity, path, subject, words(a), words(b), at, old_at, whole)

    def text(self, category: str, entity: str, path: str, subject: str, a: Optional[str], b: Optional[str],
             at: Paths, old_at: Paths = None, quote: bool = True) -> None:
        """Free text (a condition, consent wording, a message): long ones by what differs."""
        if a == b:
            return
        wa, wb = _texts(a, b, quote)
        sign = "+" if a is None else "-" if b is None else "~"
        self.add(sign, category, entity, path, subject, None if a is None else wa, None if b is None else wb, at,
                 old_at)

    def items(self, category: str, entity: str, path: str, subject: str, a: Seq[Any], b: Seq[Any], at: JsonPath,
              old_at: Optional[JsonPath] = None, empty: Optional[str] = None) -> None:
        """A list: whole when short, else each item added or removed on its own line. An
        empty list is a list added or removed, unless `empty` says what it means."""
        a, b = list(a), list(b)
        if a == b:
            return
        old_at = at if old_at is None else old_at
        if empty is None and not (a and b):  # a list that was not there, or is no longer
            self.value(category, entity, path, subject, _word(a) if a else None, _word(b) if b else None, at, old_at,
                       words=str)
            return
        wa, wb = (_word(a) if a else str(empty)), (_word(b) if b else str(empty))
        if not a or not b or (len(wa) <= LONG and len(wb) <= LONG):
            self.add("~", category, entity, path, subject, wa, wb, at, old_at)
            return
        in_a, in_b = set(map(_word, a)), set(map(_word, b))
        for i, item in enumerate(b):
            if _word(item) not in in_a:
                self.add("+", category, entity, f"{path}[{i}]", subject, None, _word(item), at + (i,))
        for i, item in enumerate(a):
            if _word(item) not in in_b:
                self.add("-", category, entity, f"{path}[{i}]", subject, _word(item), None, at, old_at + (i,))
        kept_a = [x for x in a if _word(x) in in_b]
        kept_b = [x for x in b if _word(x) in in_a]
        if kept_a != kept_b:
            self.add("~", category, entity, path, f"{subject} order", _word(kept_a), _word(kept_b), at, old_at)


def _by_name(items: Seq[Any], attr: str = "name") -> Dict[str, Any]:
    return {getattr(x, attr): x for x in items}


def _keys(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Names in the new order, then names only the old one has, in its order."""
    return list(new) + [k for k in old if k not in new]


def _attribute_words(a: Any) -> str:
    parts = [a.type]
    if a.enum is not None:
        parts.append(f"enum {_word(list(a.enum))}")
    if a.minimum is not None:
        parts.append(f"minimum {_word(a.minimum)}")
    if a.maximum is not None:
        parts.append(f"maximum {_word(a.maximum)}")
    if a.required:
        parts.append("required")
    return ", ".join(parts)


def _sender(c: _Changes) -> None:
    o = None if _absent(c.old.plan) else c.old.plan
    n = None if _absent(c.new.plan) else c.new.plan
    for key, attr in (("from", "from_"), ("reply_to", "reply_to"), ("postal_address", "postal_address"),
                      ("unsubscribe_url", "unsubscribe_url"), ("confirm_url", "confirm_url")):
        a = getattr(o.sender, attr) if o else None
        b = getattr(n.sender, attr) if n else None
        c.text("sender", "sender", f"sender.{key}", f"sender {key}", a, b, [("sender", key), ("sender",)],
               quote=False)
    c.value("sender", "sender", "sender.timezone", "sender timezone", o.policies.default_timezone if o else None,
            n.policies.default_timezone if n else None, [("sender", "timezone"), ("sender",)])


def _profile(c: _Changes) -> None:
    old, new = _by_name(c.old.plan.profile), _by_name(c.new.plan.profile)
    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        at: JsonPath = ("profile", name)
        if a is None or b is None:
            c.value("attribute", name, f"profile.{name}", f"profile {name}", a and _attribute_words(a),
                    b and _attribute_words(b), at, words=str, whole=True)
            continue
        c.value("attribute", name, f"profile.{name}.type", f"profile {name}: type", a.type, b.type,
                [at + ("type",), at + ("enum",)])
        c.items("attribute", name, f"profile.{name}.enum", f"profile {name}: enum", a.enum or (), b.enum or (),
                at + ("enum",))
        for key in ("minimum", "maximum"):
            c.value("attribute", name, f"profile.{name}.{key}", f"profile {name}: {key}", getattr(a, key),
                    getattr(b, key), at + (key,))
        c.value("attribute", name, f"profile.{name}.required", f"profile {name}: required", a.required, b.required,
                at + ("required",))


def _groups(c: _Changes, group: str, noun: str) -> None:
    old, new = _by_name(getattr(c.old.plan, group)), _by_name(getattr(c.new.plan, group))
    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        at: JsonPath = (group, name)
        if a is None or b is None:
            c.value(noun, name, f"{group}.{name}", f"{noun} {name}", a and f"when {_quote(a.when.source)}",
                    b and f"when {_quote(b.when.source)}", at, words=str, whole=True)
        else:
            c.text(noun, name, f"{group}.{name}.when", f"{noun} {name}: when", a.when.source, b.when.source,
                   at + ("when",))


def _fit(c: _Changes) -> None:
    a, b = c.old.plan.fit, c.new.plan.fit
    if a is None or b is None:
        c.value("fit", "fit", "fit", "fit", a and f"when {_quote(a.source)}", b and f"when {_quote(b.source)}",
                ("fit",), words=str, whole=True)
    else:
        c.text("fit", "fit", "fit.when", "fit when", a.source, b.source, ("fit", "when"))


def _stages(c: _Changes) -> None:
    old = [s.name for s in c.old.plan.stages]
    new = [s.name for s in c.new.plan.stages]
    in_old, in_new = set(old), set(new)
    for i, name in enumerate(new):
        if name not in in_old:
            c.add("+", "stage", name, f"stages.{name}", f"stage {name}", None, None, ("stages", i), whole=True)
    for i, name in enumerate(old):
        if name not in in_new:
            c.add("-", "stage", name, f"stages.{name}", f"stage {name}", None, None, ("stages",), ("stages", i),
                  whole=True)
    kept_old, kept_new = [s for s in old if s in in_new], [s for s in new if s in in_old]
    if kept_old != kept_new:
        c.add("~", "stage", "order", "stages", "stages in order", _word(kept_old), _word(kept_new), ("stages",))
    terminal_old = [s.name for s in c.old.plan.stages if s.terminal]
    terminal_new = [s.name for s in c.new.plan.stages if s.terminal]
    if old and new and set(terminal_old) != set(terminal_new):  # a set: its order is the stages' order
        c.items("stage", "terminal_stages", "terminal_stages", "terminal stages", terminal_old, terminal_new,
                ("terminal_stages",))


def _magnets(c: _Changes) -> None:
    old, new = _by_name(c.old.plan.lead_magnets), _by_name(c.new.plan.lead_magnets)

    def words(m: Any) -> str:
        parts = [m.kind, f"enters {m.enters}"]
        if m.score:
            parts.append(f"score {m.score}")
        if m.delivers:
            parts.append(f"delivers {m.delivers}")
        if m.double_opt_in:
            parts.append(f"double opt-in {double(m.double_opt_in)}")
        return ", ".join(parts)

    def double(d: Any) -> str:
        return f"confirm {d.confirm} within {format_duration(d.within_minutes)}"

    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        at: JsonPath = ("lead_magnets", name)
        if a is None or b is None:
            c.value("lead magnet", name, f"lead_magnets.{name}", f"lead magnet {name}", a and words(a),
                    b and words(b), at, words=str, whole=True)
            continue
        for key in ("kind", "enters", "score", "delivers"):
            c.value("lead magnet", name, f"lead_magnets.{name}.{key}", f"lead magnet {name}: {key}",
                    getattr(a, key), getattr(b, key), [at + (key,), at])
        c.value("lead magnet", name, f"lead_magnets.{name}.double_opt_in", f"lead magnet {name}: double opt-in",
                a.double_opt_in, b.double_opt_in, [at + ("double_opt_in",), at], words=double)
        c.text("lead magnet", name, f"lead_magnets.{name}.consent", f"lead magnet {name}: consent", a.consent or None,
               b.consent or None, [at + ("consent",), at])


def _entries(c: _Changes) -> None:
    old, new = _by_name(c.old.plan.entries), _by_name(c.new.plan.entries)
    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        at: JsonPath = ("entries", name)
        if a is None or b is None:
            c.value("entry", name, f"entries.{name}", f"entry {name}",
                    a and f"on {a.on}, enters {a.enters}, basis {a.basis}",
                    b and f"on {b.on}, enters {b.enters}, basis {b.basis}", at, words=str, whole=True)
            continue
        for key in ("on", "enters", "basis"):
            c.value("entry", name, f"entries.{name}.{key}", f"entry {name}: {key}", getattr(a, key), getattr(b, key),
                    [at + (key,), at])
        c.text("entry", name, f"entries.{name}.consent", f"entry {name}: consent", a.consent or None,
               b.consent or None, [at + ("consent",), at])


def _crm_events(c: _Changes) -> None:
    # The built-in events are in every plan; a definition declares only the others.
    old = [e for e in c.old.plan.crm_events if e not in BUILTIN_CRM_EVENTS]
    new = [e for e in c.new.plan.crm_events if e not in BUILTIN_CRM_EVENTS]
    in_old, in_new = set(old), set(new)

    def places(side: Side) -> Dict[str, JsonPath]:
        raw = _raw(side, ("crm", "events"))
        found: Dict[str, JsonPath] = {}
        for i, event in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(event, str):
                found.setdefault(event, ("crm", "events", i))
        return found

    where_new, where_old = places(c.new), places(c.old)
    for event in new:
        if event not in in_old:
            c.add("+", "crm event", event, f"crm_events.{event}", f"crm event {event}", None, None,
                  where_new.get(event, ("crm", "events")), whole=True)
    for event in old:
        if event not in in_new:
            c.add("-", "crm event", event, f"crm_events.{event}", f"crm event {event}", None, None,
                  ("crm", "events"), where_old.get(event, ("crm", "events")), whole=True)


def _scoring(c: _Changes) -> None:
    old_sc, new_sc = c.old.plan.scoring, c.new.plan.scoring
    old_points = {e.event: e.points for e in old_sc.events}
    new_points = {e.event: e.points for e in new_sc.events}
    for event in _keys(old_points, new_points):
        c.value("points", event, f"scoring.events.{event}", f"points for {event}", old_points.get(event),
                new_points.get(event), ("scoring", "events", event),
                whole=event not in old_points or event not in new_points)

    def fit_rules(rules: Seq[Any]) -> Dict[str, Tuple[int, int]]:
        out: Dict[str, Tuple[int, int]] = {}
        seen: Counter = Counter()
        for i, r in enumerate(rules):
            seen[r.when.source] += 1
            key = r.when.source if seen[r.when.source] == 1 else f"{r.when.source} #{seen[r.when.source]}"
            out[key] = (i, r.points)
        return out

    old_fit, new_fit = fit_rules(old_sc.fit), fit_rules(new_sc.fit)
    for when in _keys(old_fit, new_fit):
        a, b = old_fit.get(when), new_fit.get(when)
        subject = f"fit points for {_quote(when)}"
        if a is None or b is None:
            c.value("points", when, f"scoring.fit.{when}", subject, a and a[1], b and b[1],
                    ("scoring", "fit", b[0]) if b else ("scoring", "fit"), ("scoring", "fit", a[0]) if a else None,
                    whole=True)
        else:
            c.value("points", when, f"scoring.fit.{when}", subject, a[1], b[1], ("scoring", "fit", b[0], "points"),
                    ("scoring", "fit", a[0], "points"))
    _decay(c)
    old_t, new_t = dict(old_sc.thresholds), dict(new_sc.thresholds)
    for name in _keys(old_t, new_t):
        c.value("threshold", name, f"scoring.thresholds.{name}", f"{name.upper()} threshold", old_t.get(name),
                new_t.get(name), ("scoring", "thresholds", name), whole=True)
    if old_sc.count_repeats != new_sc.count_repeats:
        c.value("scoring", "count_repeats", "scoring.count_repeats", "scoring count_repeats", old_sc.count_repeats,
                new_sc.count_repeats, [("scoring", "count_repeats"), ("scoring",)])


def _decay(c: _Changes) -> None:
    od, nd = c.old.plan.scoring.decay, c.new.plan.scoring.decay
    if od == nd:
        return
    wa, wb = _decay_words(c.old), _decay_words(c.new)

    def says(words: Dict[str, str], keys: Seq[str]) -> str:
        main = " ".join(f"{_DECAY_KEYS[k]} {words[k]}" for k in keys if k in words and k != "window")
        window = f"window {words['window']}" if "window" in keys and "window" in words else ""
        return ", ".join(x for x in (main, window) if x)

    at: JsonPath = ("scoring", "decay")
    if od is None or nd is None:
        c.value("decay", "decay", "scoring.decay", "decay", od and says(wa, list(wa)), nd and says(wb, list(wb)),
                at, words=str, whole=True)
        return
    form_a = [k for k in wa if k != "window"]
    form_b = [k for k in wb if k != "window"]
    if form_a != form_b:
        c.add("~", "decay", "decay", "scoring.decay", "decay", says(wa, form_a), says(wb, form_b), at)
    else:
        for key in form_b:
            c.value("decay", "decay", f"scoring.decay.{key}", f"decay {_DECAY_KEYS[key]}", wa[key], wb[key],
                    [at + (key,), at], words=str)
    c.value("decay", "decay", "scoring.decay.window", "decay window", wa.get("window"), wb.get("window"),
            [at + ("window",), at], words=str)
    if wa == wb:  # the same words for different factors: say the factors
        c.add("~", "decay", "decay", "scoring.decay.factor", "decay factor", repr(od.factor), repr(nd.factor), at)


def _transitions(c: _Changes) -> None:
    def keyed(plan: Plan) -> Dict[str, Tuple[int, Any]]:
        out: Dict[str, Tuple[int, Any]] = {}
        seen: Counter = Counter()
        for i, t in enumerate(plan.transitions):
            label = f"{', '.join(t.sources)} → {t.to}"
            seen[label] += 1
            out[label if seen[label] == 1 else f"{label} (#{seen[label]})"] = (i, t)
        return out

    def words(t: Any) -> str:
        parts = []
        if t.on:
            parts.append(f"on {t.on}")
        if t.when is not None:
            parts.append(f"when {_quote(t.when.source)}")
        return ", ".join(parts)

    old, new = keyed(c.old.plan), keyed(c.new.plan)
    for label in _keys(old, new):
        a, b = old.get(label), new.get(label)
        path = f"transitions.{label}"
        subject = f"transition {label}"
        if a is None or b is None:
            c.value("transition", label, path, subject, a and words(a[1]), b and words(b[1]),
                    ("transitions", b[0]) if b else ("transitions",), ("transitions", a[0]) if a else None,
                    words=str, whole=True)
            continue
        at: JsonPath = ("transitions", b[0])
        old_at: JsonPath = ("transitions", a[0])
        c.value("transition", label, f"{path}.on", f"{subject}: on", a[1].on, b[1].on, [at + ("on",), at],
                [old_at + ("on",), old_at])
        c.text("transition", label, f"{path}.when", f"{subject}: when", a[1].when and a[1].when.source,
               b[1].when and b[1].when.source, [at + ("when",), at], [old_at + ("when",), old_at])
    kept_old = [k for k in old if k in new]
    kept_new = [k for k in new if k in old]
    if kept_old != kept_new:
        c.add("~", "transition", "order", "transitions", "transitions checked in order", _word(kept_old),
              _word(kept_new), ("transitions",))


def _step_words(side: Side, seq: str, s: Step) -> str:
    """A whole step as the definition says it: `send x after 3d at 09:00, when "…"`."""
    what = _action(s)
    at: JsonPath = ("sequences", seq, "steps", s.index)
    if s.wait_minutes:
        what += f" after {_duration(side, at + ('wait',), s.wait_minutes)}"
    if s.at_minute is not None:
        what += f" at {_clock(s.at_minute)}"
    parts = [what]
    if s.variants:
        parts.append(f"variants {_word({v.name: v.weight for v in s.variants})}")
    if s.when is not None:
        parts.append(f"when {_quote(s.when.source)}")
    if s.unless is not None:
        parts.append(f"unless {_quote(s.unless.source)}")
    if s.message is not None:
        parts.append(f"message {_quote(s.message)}")
    return ", ".join(parts)


def _action(s: Step) -> str:
    if s.action == "send":
        return f"send {s.template}"
    if s.action == "notify":
        return f"notify {s.notify_to}"
    return s.action


def _steps(c: _Changes, old: Sequence, new: Sequence) -> None:
    """Steps in the new order; a removed step where it was, before the next step kept."""
    name = new.name
    base = f"sequences.{name}.steps"
    old_by = {s.id: s for s in old.steps}
    new_by = {s.id: s for s in new.steps}
    removed = [s for s in old.steps if s.id not in new_by]

    def gone(before: int) -> None:
        while removed and removed[0].index < before:
            s = removed.pop(0)
            c.add("-", "send" if s.action == "send" else "step", f"{name}/{s.id}", f"{base}.{s.id}",
                  f"step {name}/{s.id}", _step_words(c.old, name, s), None, ("sequences", name, "steps"),
                  ("sequences", name, "steps", s.index), whole=True)

    for s in new.steps:
        o = old_by.get(s.id)
        if o is None:
            c.add("+", "send" if s.action == "send" else "step", f"{name}/{s.id}", f"{base}.{s.id}",
                  f"step {name}/{s.id}", None, _step_words(c.new, name, s), ("sequences", name, "steps", s.index),
                  whole=True)
            continue
        gone(o.index)
        _step(c, name, o, s)
    gone(len(old.steps))
    old_order = [s.id for s in old.steps if s.id in new_by]
    new_order = [s.id for s in new.steps if s.id in old_by]
    if old_order != new_order:
        c.add("~", "step", name, base, f"sequence {name}: steps in order", _word(old_order), _word(new_order),
              ("sequences", name, "steps"))


def _step(c: _Changes, name: str, o: Step, s: Step) -> None:
    """One step kept (same ID) from the old plan to the new: what changed in it."""
    at: JsonPath = ("sequences", name, "steps", s.index)
    old_at: JsonPath = ("sequences", name, "steps", o.index)
    entity = f"{name}/{s.id}"
    subject = f"step {entity}:"
    path = f"sequences.{name}.steps.{s.id}"
    if o.wait_minutes != s.wait_minutes:
        c.add("~", "wait", entity, f"{path}.wait", f"{subject} wait",
              _duration(c.old, old_at + ("wait",), o.wait_minutes), _duration(c.new, at + ("wait",), s.wait_minutes),
              [at + ("wait",), at], [old_at + ("wait",), old_at])
    if o.at_minute != s.at_minute:
        c.value("step", entity, f"{path}.at", f"{subject} at", o.at_minute, s.at_minute, [at + ("at",), at],
                [old_at + ("at",), old_at], words=_clock)
    if o.action != s.action:
        c.add("~", "step", entity, f"{path}.action", subject, _action(o), _action(s), at, old_at)
    elif o.template != s.template:
        c.add("~", "send", entity, f"{path}.template", f"{subject} send", o.template, s.template,
              [at + ("send",), at], [old_at + ("send",), old_at])
    elif o.notify_to != s.notify_to:
        c.add("~", "step", entity, f"{path}.notify.to", f"{subject} notify to", o.notify_to, s.notify_to,
              [at + ("notify", "to"), at], [old_at + ("notify", "to"), old_at])
    ov, nv = {v.name: v.weight for v in o.variants}, {v.name: v.weight for v in s.variants}
    if ov != nv:
        if not ov or not nv:
            c.value("variants", entity, f"{path}.variants", f"{subject} variants", ov or None, nv or None,
                    [at + ("variants",), at], [old_at + ("variants",), old_at])
        else:
            for v in _keys(ov, nv):
                c.value("variants", entity, f"{path}.variants.{v}", f"{subject} variant {v}", ov.get(v), nv.get(v),
                        [at + ("variants", v), at + ("variants",)], [old_at + ("variants", v), old_at + ("variants",)])
    for key in ("when", "unless"):
        a, b = getattr(o, key), getattr(s, key)
        c.text("step", entity, f"{path}.{key}", f"{subject} {key}", a and a.source, b and b.source,
               [at + (key,), at], [old_at + (key,), old_at])
    if o.action == s.action == "notify":
        c.text("step", entity, f"{path}.notify.message", f"{subject} notify message", o.message, s.message,
               [at + ("notify", "message"), at], [old_at + ("notify", "message"), old_at])


def _sequences(c: _Changes) -> None:
    old, new = _by_name(c.old.plan.sequences), _by_name(c.new.plan.sequences)
    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        at: JsonPath = ("sequences", name)
        if a is None or b is None:
            c.value("sequence", name, f"sequences.{name}", f"sequence {name}", a and _sequence_words(a),
                    b and _sequence_words(b), at, words=str, whole=True)
            continue
        subject = f"sequence {name}:"
        for key in ("kind", "segment", "persona", "on", "priority"):
            c.value("sequence", name, f"sequences.{name}.{key}", f"{subject} {key}", getattr(a, key), getattr(b, key),
                    [at + (key,), at])
        c.items("sequence", name, f"sequences.{name}.stage", f"{subject} stage", a.stages, b.stages, at + ("stage",))
        c.text("sequence", name, f"sequences.{name}.when", f"{subject} when", a.when and a.when.source,
               b.when and b.when.source, [at + ("when",), at])
        ex = at + ("exit",)
        if a.exit is None or b.exit is None:
            def exit_words(x: Any) -> Optional[str]:
                if x is None:
                    return None
                parts = [f"stage_at_least {x.stage_at_least}"] if x.stage_at_least else []
                parts += [f"when {_quote(x.when.source)}"] if x.when else []
                parts += [f"on {_word(list(x.on))}"] if x.on else []
                return ", ".join(parts)

            c.value("sequence", name, f"sequences.{name}.exit", f"{subject} exit", exit_words(a.exit),
                    exit_words(b.exit), [ex, at], words=str)
        else:
            c.value("sequence", name, f"sequences.{name}.exit.stage_at_least", f"{subject} exit stage_at_least",
                    a.exit.stage_at_least, b.exit.stage_at_least, [ex + ("stage_at_least",), ex])
            c.text("sequence", name, f"sequences.{name}.exit.when", f"{subject} exit when",
                   a.exit.when and a.exit.when.source, b.exit.when and b.exit.when.source, [ex + ("when",), ex])
            c.items("sequence", name, f"sequences.{name}.exit.on", f"{subject} exit on", a.exit.on, b.exit.on,
                    ex + ("on",))
        _steps(c, a, b)


def _sequence_words(s: Sequence) -> str:
    sends = sum(1 for x in s.steps if x.action == "send")
    return f"{s.kind}, {sends} email{'s' if sends != 1 else ''}"


def _assign_words(h: Handoff) -> str:
    a = h.assign
    if a.kind == "territory":
        return f"territory by {a.by}"
    if a.kind == "owner":
        return f"owner {a.reps[0] if a.reps else 'none'}"
    return f"{a.kind} {_word(list(a.reps))}"


def _escalate_words(side: Side, at: JsonPath, e: Any) -> str:
    """An escalation as one value: `notify [..], reassign next rep, sla 4h`."""
    parts = [f"notify {_word(list(e.notify))}"] if e.notify else []
    if e.managers:
        parts.append("managers " + ", ".join(f"{rep}: {boss}" for rep, boss in e.managers))
    if e.reassign != "none":
        parts.append(f"reassign to {e.to}" if e.reassign == "to" else "reassign to the next rep")
    if e.sla_minutes is not None:
        parts.append(f"sla {_duration(side, at + ('sla',), e.sla_minutes)}")
    return ", ".join(parts) or "no action"


def _handoff(c: _Changes) -> None:
    old, new = _by_name(c.old.plan.handoff, "stage"), _by_name(c.new.plan.handoff, "stage")

    def words(side: Side, h: Handoff) -> str:
        parts = [_assign_words(h)]
        if h.sla_minutes is not None:
            parts.append(f"sla {_duration(side, ('handoff', h.stage, 'sla'), h.sla_minutes)}")
        return ", ".join(parts)

    for stage in _keys(old, new):
        a, b = old.get(stage), new.get(stage)
        at: JsonPath = ("handoff", stage)
        if a is None or b is None:
            c.value("handoff", stage, f"handoff.{stage}", f"handoff {stage}", a and words(c.old, a),
                    b and words(c.new, b), at, words=str, whole=True)
            continue
        subject = f"handoff {stage}:"
        path = f"handoff.{stage}"
        assign = at + ("assign",)
        if a.assign.kind != b.assign.kind:
            c.add("-", "handoff", stage, f"{path}.assign.{a.assign.kind}", f"{subject} assign", _assign_words(a),
                  None, assign, assign + (a.assign.kind,))
            c.add("+", "handoff", stage, f"{path}.assign.{b.assign.kind}", f"{subject} assign", None,
                  _assign_words(b), assign + (b.assign.kind,))
        elif b.assign.kind == "round_robin":
            c.items("handoff", stage, f"{path}.assign.round_robin", f"{subject} round_robin", a.assign.reps,
                    b.assign.reps, assign + ("round_robin",))
        elif b.assign.kind == "owner":
            c.value("handoff", stage, f"{path}.assign.owner", f"{subject} owner", a.assign.reps[0] if a.assign.reps
                    else None, b.assign.reps[0] if b.assign.reps else None, [assign + ("owner",), assign])
        else:
            t = assign + ("territory",)
            c.value("handoff", stage, f"{path}.assign.territory.by", f"{subject} territory by", a.assign.by,
                    b.assign.by, [t + ("by",), t])
            ra, rb = dict(a.assign.routes), dict(b.assign.routes)
            for route in _keys(ra, rb):
                if route not in ra or route not in rb:
                    c.value("handoff", stage, f"{path}.assign.territory.routes.{route}", f"{subject} route {route}",
                            ra.get(route) and list(ra[route]), rb.get(route) and list(rb[route]),
                            [t + ("routes", route), t + ("routes",)])
                else:
                    c.items("handoff", stage, f"{path}.assign.territory.routes.{route}", f"{subject} route {route}",
                            ra[route], rb[route], t + ("routes", route))
            c.items("handoff", stage, f"{path}.assign.territory.default", f"{subject} territory default",
                    a.assign.default, b.assign.default, t + ("default",))
        c.value("handoff", stage, f"{path}.sla", f"{subject} sla",
                None if a.sla_minutes is None else _duration(c.old, at + ("sla",), a.sla_minutes),
                None if b.sla_minutes is None else _duration(c.new, at + ("sla",), b.sla_minutes), [at + ("sla",), at],
                words=str)
        c.value("handoff", stage, f"{path}.sla_clock", f"{subject} sla_clock", a.sla_clock, b.sla_clock,
                [at + ("sla_clock",), at])
        for key in ("answered_by", "notify", "suppress"):
            c.items("handoff", stage, f"{path}.{key}", f"{subject} {key}", getattr(a, key), getattr(b, key),
                    at + (key,), empty="any crm event" if key == "answered_by" else None)
        c.text("handoff", stage, f"{path}.crm_stage", f"{subject} crm_stage", a.crm_stage, b.crm_stage,
               [at + ("crm_stage",), at])
        c.value("handoff", stage, f"{path}.escalate", f"{subject} escalate",
                a.escalate and _escalate_words(c.old, at + ("escalate",), a.escalate),
                b.escalate and _escalate_words(c.new, at + ("escalate",), b.escalate), [at + ("escalate",), at],
                words=str)


def _policies(c: _Changes) -> None:
    absent_old, absent_new = _absent(c.old.plan), _absent(c.new.plan)
    a, b = c.old.plan.policies, c.new.plan.policies
    pol: JsonPath = ("policies",)
    # Frequency cap: `3 per 7d`, read as one.
    cap = pol + ("frequency_cap",)

    def cap_words(side: Side, p: Any) -> Optional[str]:
        if p.cap_max is None:
            return None
        words = f"{p.cap_max} per {_duration(side, cap + ('per',), p.cap_per_minutes)}"
        return words + (f", applies_to {_word(list(p.cap_applies_to))}" if p.cap_applies_to else "")

    if a.cap_max is None or b.cap_max is None:
        c.value("policy", "frequency_cap", "policies.frequency_cap", "frequency cap", cap_words(c.old, a),
                cap_words(c.new, b), cap, words=str, whole=True)
    else:
        if (a.cap_max, a.cap_per_minutes) != (b.cap_max, b.cap_per_minutes):
            changed = [k for k, x, y in (("max", a.cap_max, b.cap_max), ("per", a.cap_per_minutes, b.cap_per_minutes))
                       if x != y]
            here = cap + (changed[0],) if len(changed) == 1 else cap
            c.add("~", "policy", "frequency_cap", "policies.frequency_cap", "frequency cap",
                  f"{a.cap_max} per {_duration(c.old, cap + ('per',), a.cap_per_minutes)}",
                  f"{b.cap_max} per {_duration(c.new, cap + ('per',), b.cap_per_minutes)}", here)
        c.items("policy", "frequency_cap", "policies.frequency_cap.applies_to", "frequency cap applies_to",
                a.cap_applies_to, b.cap_applies_to, cap + ("applies_to",), empty="all")
    # Quiet hours and business hours: windows of the day.
    for key, noun, start, end in (("quiet_hours", "quiet hours", "quiet_from", "quiet_to"),
                                  ("business_hours", "business hours", "business_from", "business_to")):
        at = pol + (key,)
        sa, ea, sb, eb = getattr(a, start), getattr(a, end), getattr(b, start), getattr(b, end)
        if sa is None or sb is None:
            days = key == "business_hours"
            c.value("policy", key, f"policies.{key}", noun, _window(sa, ea, a.business_days if days else None),
                    _window(sb, eb, b.business_days if days else None), at, words=str, whole=True)
            continue
        c.value("policy", key, f"policies.{key}.from", f"{noun} from", sa, sb, [at + ("from",), at], words=_clock)
        c.value("policy", key, f"policies.{key}.to", f"{noun} to", ea, eb, [at + ("to",), at], words=_clock)
        if key == "business_hours":
            c.items("policy", key, f"policies.{key}.days", f"{noun} days", _days(a.business_days),
                    _days(b.business_days), at + ("days",))
    if not (absent_old or absent_new):
        c.value("policy", "timezone_attribute", "policies.timezone_attribute", "timezone attribute",
                a.timezone_attribute, b.timezone_attribute, [pol + ("timezone_attribute",), pol])
        c.value("policy", "soft_bounce_limit", "policies.soft_bounce_limit", "soft bounce limit", a.soft_bounce_limit,
                b.soft_bounce_limit, [pol + ("soft_bounce_limit",), pol])


def _window(start: Optional[int], end: Optional[int], days: Optional[Seq[int]]) -> Optional[str]:
    """Quiet or business hours: `from 20:00 to 08:00`, business hours with their days first."""
    if start is None:
        return None
    return ("" if days is None else f"{_word(_days(days))} ") + f"from {_clock(start)} to {_clock(end)}"


def _template_file(side: Side, name: str, where: str, line: int = 1) -> Optional[Where]:
    if side.funnel is None:
        return None
    path = side.funnel.template_dir / (name if name.endswith(".j2") else f"{name}.j2")
    return Where(side.shown(display_path(path)), line, 1, where, "templates")


# Reading a side's template files: bounded, as every file fnl reads from a pull request.
MAX_TEMPLATE_FILES = 2000
MAX_TEMPLATE_TEXT = 256 * 1024  # per file, as the template loader allows
# Changed lines shown per template file before the rest are counted; an added or removed
# run of lines longer than this many characters is cut, with how much was left out.
MAX_TEMPLATE_HUNKS = 8
MAX_ADDED_TEXT = 160
_INCLUDE = re.compile(r"""{%-?\s*(?:include|extends|import|from)\s+["']([^"']+)["']""")
_BLOCK = re.compile(r"{%-?\s*block\s+(\w+)\s*-?%}(.*?){%-?\s*endblock(?:\s+\w+)?\s*-?%}", re.S)


def read_templates(funnel: Optional[Funnel]) -> Optional[Dict[str, str]]:
    """The text of every `.j2` file in the definition's template folder, by its name
    there (`nurture/brief.j2`); links and files fnl would not render are left out."""
    if funnel is None:
        return None
    from .templates import check_file

    root = funnel.template_dir
    out: Dict[str, str] = {}
    if not root.is_dir():
        return out
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for file in sorted(files):
            if not file.endswith(".j2") or len(out) >= MAX_TEMPLATE_FILES:
                continue
            path = Path(folder) / file
            if check_file(root, path) is not None:
                continue
            try:
                with open(path, "rb") as fh:
                    raw = fh.read(MAX_TEMPLATE_TEXT + 1)
            except OSError:
                continue
            if len(raw) <= MAX_TEMPLATE_TEXT:
                out[path.relative_to(root).as_posix()] = raw.decode("utf-8", "replace")
    return out


def _parts(text: str) -> Dict[str, Tuple[int, List[str]]]:
    """A template's blocks (`subject`, `html`, `text`), each as (the line its text starts
    on, its lines); the text outside any block is the part named ""."""
    parts: Dict[str, Tuple[int, List[str]]] = {}
    outside = text
    for m in _BLOCK.finditer(text):
        parts.setdefault(m.group(1), (text.count("\n", 0, m.start(2)) + 1, m.group(2).split("\n")))
        span = text[m.start():m.end()]
        outside = outside.replace(span, "\n" * span.count("\n"), 1)  # keeps the lines where they are
    parts[""] = (1, outside.split("\n"))
    return parts


def _hunks(a: List[str], b: List[str]) -> Iterator[Tuple[int, int, Optional[str], Optional[str]]]:
    """(index in a, index in b, old words, new words) of each run of lines that changed,
    a line replaced by one line at a time; indentation does not count."""
    a, b = [x.strip() for x in a], [x.strip() for x in b]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                yield i1 + k, j1 + k, a[i1 + k], b[j1 + k]
            continue
        old = " ".join(x for x in a[i1:i2] if x)
        new = " ".join(x for x in b[j1:j2] if x)
        if old or new:
            yield i1, j1, old or None, new or None


def _cut(text: str) -> str:
    if len(text) <= MAX_ADDED_TEXT:
        return _quote(text)
    space = text.rfind(" ", 0, MAX_ADDED_TEXT)
    keep = space if space > MAX_ADDED_TEXT // 2 else MAX_ADDED_TEXT
    return _quote(text[:keep] + "…") + f" (and {len(text) - keep} more characters)"


def _file_edits(c: _Changes, name: str, file: str, subject: str) -> bool:
    """The changes of one template file (`file`, a name in the template folder) as lines
    of words, each located at its line; whether there were any."""
    old_text, new_text = c.old.templates.get(file), c.new.templates.get(file)  # type: ignore[union-attr]
    if old_text is None or new_text is None or old_text == new_text:
        return False
    old_parts, new_parts = _parts(old_text), _parts(new_text)
    found: List[Tuple[str, str, Optional[str], Optional[str], int, int]] = []
    for block in [*new_parts, *(b for b in old_parts if b not in new_parts)]:
        (a_line, a), (b_line, b) = old_parts.get(block, (1, [])), new_parts.get(block, (1, []))
        for i, j, before, after in _hunks(a, b):
            found.append((block, f"{subject}: {block}" if block else subject, before, after, a_line + i, b_line + j))
    for block, label, before, after, old_line, new_line in found[:MAX_TEMPLATE_HUNKS]:
        if before is not None and after is not None:
            wa, wb = _texts(before, after)
            c.add("~", "template", name, f"templates.{name}", label, wa, wb,
                  location=_template_file(c.new, file, "new", new_line))
        elif after is not None:
            c.add("+", "template", name, f"templates.{name}", label, None, _cut(after),
                  location=_template_file(c.new, file, "new", new_line))
        else:
            c.add("-", "template", name, f"templates.{name}", label, _cut(before or ""), None,
                  location=_template_file(c.old, file, "old", old_line))
    rest = found[MAX_TEMPLATE_HUNKS:]
    if rest:
        blocks = ", ".join(dict.fromkeys(b or "outside blocks" for b, *_ in rest))
        c.add("~", "template", name, f"templates.{name}", subject, None, None,
              location=_template_file(c.new, file, "new", rest[0][5]),
              text=f"{subject}: {len(rest)} more changed lines ({blocks})")
    return bool(found)


def _includes(side: Side, file: str) -> List[str]:
    """The files a template includes or extends, and theirs, in the order first named."""
    seen: List[str] = []
    todo = [file]
    while todo:
        text = (side.templates or {}).get(todo.pop(0), "")
        for ref in _INCLUDE.findall(text):
            if ref not in seen and ref != file:
                seen.append(ref)
                todo.append(ref)
    return seen


def _template_edits(c: _Changes, name: str, partials: set) -> bool:
    """A changed template by the words that changed in it and in the files it includes
    (a changed partial shown once, under the first template including it); False when
    the texts are not there to compare."""
    if c.old.templates is None or c.new.templates is None:
        return False
    file = f"{name}.j2"
    shown = _file_edits(c, name, file, f"template {name}")
    for ref in _includes(c.new, file):
        if c.old.templates.get(ref) == c.new.templates.get(ref):
            continue
        if ref in partials:
            c.add("~", "template", name, f"templates.{name}", f"template {name}", None, None,
                  location=_template_file(c.new, ref, "new"), text=f"template {name}: includes {ref}, changed above")
            shown = True
        else:
            partials.add(ref)
            shown = _file_edits(c, name, ref, f"template {name}: {ref}") or shown
    return shown


def _templates(c: _Changes) -> None:
    old = {t.name: t.sha256 for t in c.old.plan.templates}
    new = {t.name: t.sha256 for t in c.new.plan.templates}
    partials: set = set()
    for name in _keys(old, new):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is not None and b is not None:
            if not _template_edits(c, name, partials):
                c.add("~", "template", name, f"templates.{name}", f"template {name}: sha256", a[:12], b[:12],
                      location=_template_file(c.new, name, "new"))
        elif b is None and c.new.templates is not None and f"{name}.j2" in c.new.templates:
            # Still in the folder: the plan no longer sends it, nothing is deleted.
            c.add("~", "template", name, f"templates.{name}", f"template {name}", "sent", "no longer sent",
                  location=_template_file(c.new, name, "new"), text=f"template {name}: no longer sent (the file stays)")
        else:
            sign = "+" if a is None else "-"
            where = _template_file(c.new, name, "new") if sign == "+" else _template_file(c.old, name, "old")
            c.add(sign, "template", name, f"templates.{name}", f"template {name}", None, None, location=where,
                  whole=True)


def _sides(old: Union[Plan, Side], new: Union[Plan, Side]) -> Tuple[Side, Side]:
    return (old if isinstance(old, Side) else Side(old)), (new if isinstance(new, Side) else Side(new))


def diff(old: Union[Plan, Side], new: Union[Plan, Side]) -> Diff:
    """What changes from `old` to `new`, in the order the definition reads."""
    o, n = _sides(old, new)
    c = _Changes(o, n)
    _sender(c)
    _profile(c)
    _groups(c, "personas", "persona")
    _groups(c, "segments", "segment")
    _fit(c)
    _stages(c)
    _magnets(c)
    _entries(c)
    _crm_events(c)
    _scoring(c)
    _transitions(c)
    _sequences(c)
    _handoff(c)
    _policies(c)
    _templates(c)
    warnings: List[str] = []
    old_name, new_name = o.plan.funnel, n.plan.funnel
    if old_name != new_name and not (_absent(o.plan) or _absent(n.plan)):
        warnings.append(f"these are two different funnels: `{old_name}` (old) and `{new_name}` (new), so every "
                        f"difference between them is listed as a change; to see what a change to one funnel does, "
                        f"compare two versions of it")
    return Diff(o.plan.content_hash, n.plan.content_hash, new_name, tuple(c.out), tuple(_in_flight(o, n)),
                old_name, tuple(warnings))


def _in_flight(o: Side, n: Side) -> List[str]:
    old, new = o.plan, n.plan
    notes: List[str] = []
    if not new.stages and old.stages:
        return [f"the definition is removed: leads in {old.funnel} get nothing more from it"]
    if not old.stages:
        return []
    new_seqs = {s.name: s for s in new.sequences}
    for seq in old.sequences:
        new_seq = new_seqs.get(seq.name)
        if new_seq is None:
            notes.append(f"leads in {seq.name} leave it (the sequence is removed)")
            continue
        moves = step_moves(old, new, seq.name)
        for s in seq.steps:
            move = moves[s.id]
            if move.outcome == "resumes":
                notes.append(f"leads waiting on {seq.name}/{s.id} (removed) resume at {move.target} when it was due")
            elif move.outcome == "finishes":
                notes.append(f"leads waiting on {seq.name}/{s.id} (removed) finish {seq.name}: no later step remains")
        old_waits = {s.id: s.wait_minutes for s in seq.steps}
        for s in new_seq.steps:
            if s.id in old_waits and old_waits[s.id] != s.wait_minutes:
                wait = _duration(n, ("sequences", seq.name, "steps", s.index, "wait"), s.wait_minutes)
                notes.append(f"leads already waiting on {seq.name}/{s.id} keep their due time; "
                             f"leads reaching it later wait {wait}")
        old_ids = {x.id for x in seq.steps}
        # for each new step: does a step the lead may already be past come after it?
        kept_after = [False] * (len(new_seq.steps) + 1)
        for i in range(len(new_seq.steps) - 1, -1, -1):
            kept_after[i] = kept_after[i + 1] or new_seq.steps[i].id in old_ids
        for i, s in enumerate(new_seq.steps):
            if s.id not in old_ids:
                if kept_after[i + 1]:
                    notes.append(f"leads already past the place of new step {seq.name}/{s.id} do not get it; "
                                 f"leads before it do")
                else:
                    notes.append(f"leads still in {seq.name} get new step {s.id} after their current steps")
    new_stages = {st.name for st in new.stages}
    for st in old.stages:
        if st.name not in new_stages:
            notes.append(f"leads in stage {st.name} (removed) move to {stage_move(old, new, st.name)}")
    old_thresholds = dict(old.scoring.thresholds)
    for name, value in new.scoring.thresholds:
        before = old_thresholds.get(name)
        if before is not None and before != value:
            verb = "fewer" if value > before else "more"
            notes.append(f"leads already past `{name}` stay where they are; from now on {verb} leads cross it "
                         f"({before} → {value})")
    return notes


# -- output --------------------------------------------------------------------------------

# Category nouns: (one, many).
_NOUNS = {"points": ("scoring rule", "scoring rules"), "policy": ("policy", "policies"),
          "variants": ("variants change", "variants changes"), "decay": ("decay change", "decay changes"),
          "fit": ("fit change", "fit changes"), "lead magnet": ("lead magnet", "lead magnets"),
          "scoring": ("scoring setting", "scoring settings"), "sender": ("sender change", "sender changes"),
          "entry": ("entry", "entries")}


def summary(d: Diff) -> str:
    """The changes counted by category: each thing once, however many of its keys changed."""
    if not d.changes:
        return "No changes."
    things = {((c.sign if c.whole else "~"), c.category, c.entity) for c in d.changes if c.category != "threshold"}
    counts = Counter((sign, cat) for sign, cat, _ in things)
    parts = []
    for (sign, cat), n in sorted(counts.items(), key=lambda kv: ("+-~".index(kv[0][0]), kv[0][1])):
        one, many = _NOUNS.get(cat, (cat, cat + "s"))
        parts.append(f"{sign} {n} {one if n == 1 else many}")
    for c in d.changes:
        if c.category == "threshold":
            parts.append(f"{c.sign} {c.entity.upper()} threshold {c.before or 'none'} → {c.after or 'none'}")
    return ", ".join(parts)


def line(c: Change) -> str:
    """The line a reviewer reads for one change (before escaping): `~ handoff sql: sla 4h →
    2h  (funnels/acme/sales.yaml:15)`."""
    return f"{c.sign} {c.text}" + (f"  ({c.location})" if c.location else "")


def render_text(d: Diff) -> str:
    # Names, values, file names and conditions come from the plans: escaped for the terminal.
    lines = [f"warning: {escape(w)}" for w in d.warnings]
    lines.append(f"Plan for {escape(d.title)}: {escape(summary(d))}")
    if d.changes:
        lines.append("")
        lines.extend(f"  {escape(line(c))}" for c in d.changes)
    if d.in_flight:
        lines.append("")
        lines.append("Leads in flight:")
        lines.extend(f"  - {escape(n)}" for n in d.in_flight)
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return escape(text).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code that holds any text: a longer run of backticks than the text has."""
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{_md(text)}{pad}{ticks}"


def render_markdown(d: Diff) -> str:
    names = [d.old_funnel, d.funnel] if d.old_funnel and d.old_funnel != d.funnel else [d.funnel]
    lines = [f"### fnl plan: {' → '.join(_code(x) for x in names)}", ""]
    for w in d.warnings:
        lines += ["> [!WARNING]", f"> {_md(w)}", ""]
    lines += [f"**{_md(summary(d))}**", ""]
    if d.changes:
        lines += ["| | change | before | after | where |", "|---|---|---|---|---|"]
        for c in d.changes:
            before = "" if c.before is None else _code(c.before)
            after = "" if c.after is None else _code(c.after)
            where = "" if c.location is None else _code(str(c.location))
            lines.append(f"| {c.sign} | {_md(c.subject)} | {before} | {after} | {where} |")
        lines.append("")
    if d.in_flight:
        lines += ["**Leads in flight**", ""] + [f"- {_md(n)}" for n in d.in_flight] + [""]
    lines.append(f"<sub>{_md(d.old_hash[:19])} → {_md(d.new_hash[:19])}</sub>")
    return "\n".join(lines) + "\n"


def to_json(d: Diff) -> Dict[str, Any]:
    def where(w: Optional[Where]) -> Optional[Dict[str, Any]]:
        return None if w is None else {"file": w.file, "line": w.line, "column": w.column, "side": w.side,
                                       "path": w.path}

    return {"format_version": FORMAT_VERSION, "funnel": d.funnel, "old_funnel": d.old_funnel,
            "warnings": list(d.warnings), "old": d.old_hash, "new": d.new_hash, "summary": summary(d),
            "changed": d.changed,
            "changes": [{"sign": c.sign, "category": c.category, "path": c.path, "subject": c.subject,
                         "before": c.before, "after": c.after, "text": c.text, "location": where(c.location)}
                        for c in d.changes],
            "in_flight": list(d.in_flight)}
