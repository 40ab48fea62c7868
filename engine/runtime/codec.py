"""A lead's engine state as JSON text, and back, exactly.

The runtime keeps every lead's state (`state.LeadState`, or `state.Prospect` for someone
seen before opting in) and the round-robin turns (`state.Shared`) in a database that
several processes share, so the stored form is plain JSON, never a pickle: reading a row
runs no code. `encode` writes one canonical text per state (sorted keys, no spaces), and
`decode(encode(s)) == s` for every state the engine makes: numbers keep their type (an
integer stays an integer, a float keeps every bit), tuples come back as tuples, held
events as the events they were. `decode` checks the shape of what it reads and raises
ValueError with what is wrong, so a damaged or hand-edited row is refused, not half-read.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Union

from ..state import Event, LeadState, Pending, Prospect, Running, Shared, event_from_json

FORMAT = 1
State = Union[LeadState, Prospect]
_SCALAR = (str, int, float, bool, type(None))


def encode(state: State) -> str:
    """The canonical JSON text of a lead's state."""
    if isinstance(state, LeadState):
        doc: Dict[str, Any] = {"format": FORMAT, "kind": "lead", **{
            "lead": state.lead, "profile": [list(kv) for kv in state.profile], "stage": state.stage,
            "entered": [list(kv) for kv in state.entered], "score": state.score, "score_at": state.score_at,
            "consent": state.consent, "consent_at": state.consent_at, "source": state.source, "basis": state.basis,
            "unsubscribed": state.unsubscribed, "unsubscribed_at": state.unsubscribed_at, "bounced": state.bounced,
            "soft_bounces": state.soft_bounces, "owner": state.owner, "sla_deadline": state.sla_deadline,
            "sla_stage": state.sla_stage, "facts": [list(kv) for kv in state.facts],
            "running": [[r.sequence, r.step_id, r.index, r.due, r.started, r.variant_seed] for r in state.running],
            "finished": list(state.finished), "sends": list(state.sends), "emails_sent": state.emails_sent,
            "last_at": state.last_at, "points": [list(p) for p in state.points]}}
        # Fields added later are written only when set, so every state without them keeps
        # the text it always had (and rows written before them still read).
        if state.opted_in_at is not None:
            doc["opted_in_at"] = state.opted_in_at
        if state.sla_escalated:
            doc["sla_escalated"] = True
    elif isinstance(state, Prospect):
        doc = {"format": FORMAT, "kind": "prospect", "lead": state.lead, "last_at": state.last_at,
               "held": [encode_event(e) for e in state.held]}
        if state.pending is not None:
            w = state.pending
            doc["pending"] = {"magnet": w.magnet, "consent": w.consent, "at": w.at, "expires": w.expires,
                              "profile": [list(kv) for kv in w.profile], "confirm_sent_at": w.confirm_sent_at}
        if state.unsubscribed_at is not None:
            doc["unsubscribed_at"] = state.unsubscribed_at
        if state.bounced:
            doc["bounced"] = True
    else:
        raise TypeError(f"not a lead's state: {type(state).__name__}")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_event(e: Event) -> Dict[str, Any]:
    """An event as stored: its JSON, with `at` as [minute, second] exactly."""
    out = e.to_json()
    out["at"] = [e.at, e.second]  # the minute and second exactly, not a rendering of them
    return out


def decode(text: Union[str, bytes]) -> State:
    """The state `encode` wrote; ValueError if the text is not one."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a lead's state of format {FORMAT}")
    kind = doc.get("kind")
    if kind == "prospect":
        _keys(doc, {"format", "kind", "lead", "last_at", "held"}, {"pending", "unsubscribed_at", "bounced"})
        held = tuple(decode_event(e, f"held[{i}]") for i, e in enumerate(_list(doc, "held")))
        pending = None
        if "pending" in doc:
            w = _of(doc, "pending", dict, "an object")
            _keys(w, {"magnet", "consent", "at", "expires", "profile", "confirm_sent_at"})
            pending = Pending(_str(w, "magnet"), _str(w, "consent"), _int(w, "at"), _int(w, "expires"),
                              _pairs(w, "profile", _SCALAR), _opt_int(w, "confirm_sent_at"))
        if "bounced" in doc and doc["bounced"] is not True:
            raise ValueError("`bounced` is written only when true")
        return Prospect(_str(doc, "lead"), held, _int(doc, "last_at"), pending, _set_int(doc, "unsubscribed_at"),
                        "bounced" in doc)
    if kind != "lead":
        raise ValueError(f"`kind` must be lead or prospect, not {str(kind)[:40]!r}")
    _keys(doc, {"format", "kind", "lead", "profile", "stage", "entered", "score", "score_at", "consent", "consent_at",
                "source", "basis", "unsubscribed", "unsubscribed_at", "bounced", "soft_bounces", "owner",
                "sla_deadline", "sla_stage", "facts", "running", "finished", "sends", "emails_sent", "last_at",
                "points"}, {"opted_in_at", "sla_escalated"})
    if "sla_escalated" in doc and doc["sla_escalated"] is not True:
        raise ValueError("`sla_escalated` is written only when true")
    score = doc.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise ValueError("`score` must be a number")
    running = []
    for i, r in enumerate(_list(doc, "running")):
        if not (isinstance(r, list) and len(r) == 6 and all(isinstance(x, str) for x in (r[0], r[1], r[5]))
                and all(_is_int(x) for x in r[2:5])):
            raise ValueError(f"running[{i}] must be [sequence, step, index, due, started, variant seed]")
        running.append(Running(r[0], r[1], r[2], r[3], r[4], r[5]))
    return LeadState(
        lead=_str(doc, "lead"), profile=_pairs(doc, "profile", _SCALAR), stage=_str(doc, "stage"),
        entered=_pairs(doc, "entered", (int,)), score=float(score) if isinstance(score, int) else score,
        score_at=_int(doc, "score_at"), consent=_str(doc, "consent"), consent_at=_int(doc, "consent_at"),
        source=_str(doc, "source"), basis=_str(doc, "basis"), unsubscribed=_bool(doc, "unsubscribed"),
        unsubscribed_at=_opt_int(doc, "unsubscribed_at"), bounced=_bool(doc, "bounced"),
        soft_bounces=_int(doc, "soft_bounces"), owner=_opt_str(doc, "owner"),
        sla_deadline=_opt_int(doc, "sla_deadline"), sla_stage=_opt_str(doc, "sla_stage"),
        facts=_pairs(doc, "facts", (int,)), running=tuple(running),
        finished=tuple(_strs(doc, "finished")), sends=tuple(_ints(doc, "sends")),
        emails_sent=_int(doc, "emails_sent"), last_at=_int(doc, "last_at"),
        points=tuple((_want_int(p[0], "points"), _want_number(p[1], "points")) for p in _list(doc, "points")
                     if _is_pair(p, "points")),
        opted_in_at=_set_int(doc, "opted_in_at"), sla_escalated="sla_escalated" in doc)


def encode_shared(shared: Shared) -> str:
    return json.dumps({"format": FORMAT, "turns": [list(t) for t in shared.turns]}, sort_keys=True,
                      separators=(",", ":"))


def decode_shared(text: Union[str, bytes]) -> Shared:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not the shared state of format {FORMAT}")
    return Shared(_pairs(doc, "turns", (int,)))


# -- checking what was read ------------------------------------------------------------------

def _keys(doc: Dict[str, Any], expected: set, optional: Union[set, frozenset] = frozenset()) -> None:
    """The keys are `expected`, and any of `optional` (written only when set)."""
    if not expected <= set(doc) <= expected | optional:
        missing, extra = sorted(expected - set(doc)), sorted(set(doc) - expected - optional)
        raise ValueError("keys " + ", ".join(x for x in (f"missing {missing}" if missing else "",
                                                         f"unknown {extra}" if extra else "") if x))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _want_int(x: Any, where: str) -> int:
    if not _is_int(x):
        raise ValueError(f"`{where}` holds {str(x)[:40]!r} where a whole number belongs")
    return int(x)


def _want_number(x: Any, where: str) -> float:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise ValueError(f"`{where}` holds {str(x)[:40]!r} where a number belongs")
    return x


def _int(doc: Dict[str, Any], key: str) -> int:
    return _want_int(doc.get(key), key)


def _opt_int(doc: Dict[str, Any], key: str) -> Optional[int]:
    return None if doc.get(key) is None else _int(doc, key)


def _set_int(doc: Dict[str, Any], key: str) -> Optional[int]:
    """A whole number written only when set: absent is None, present must be a number."""
    return _int(doc, key) if key in doc else None


def _of(doc: Dict[str, Any], key: str, kind: type, words: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"`{key}` must be {words}")
    return value


def _str(doc: Dict[str, Any], key: str) -> str:
    return str(_of(doc, key, str, "a string"))


def _opt_str(doc: Dict[str, Any], key: str) -> Optional[str]:
    return None if doc.get(key) is None else _str(doc, key)


def _bool(doc: Dict[str, Any], key: str) -> bool:
    return bool(_of(doc, key, bool, "true or false"))


def _list(doc: Dict[str, Any], key: str) -> List[Any]:
    return list(_of(doc, key, list, "a list"))


def _strs(doc: Dict[str, Any], key: str) -> List[str]:
    items = _list(doc, key)
    if not all(isinstance(x, str) for x in items):
        raise ValueError(f"`{key}` must be a list of strings")
    return items


def _ints(doc: Dict[str, Any], key: str) -> List[int]:
    return [_want_int(x, key) for x in _list(doc, key)]


def _is_pair(p: Any, where: str) -> bool:
    if not (isinstance(p, list) and len(p) == 2):
        raise ValueError(f"`{where}` must be a list of pairs")
    return True


def _pairs(doc: Dict[str, Any], key: str, types: tuple) -> Tuple[Tuple[str, Any], ...]:
    out = []
    for p in _list(doc, key):
        _is_pair(p, key)
        name, value = p
        if not isinstance(name, str) or not isinstance(value, types) or (int in types and float not in types
                                                                         and isinstance(value, bool)):
            raise ValueError(f"`{key}` holds a pair of the wrong types: {str(p)[:60]}")
        out.append((name, value))
    return tuple(out)


def decode_event(data: Any, where: str) -> Event:
    """An event `encode_event` stored; ValueError (naming `where`) if it is not one."""
    if not isinstance(data, dict) or not (isinstance(data.get("at"), list) and len(data["at"]) == 2
                                          and all(_is_int(x) for x in data["at"])):
        raise ValueError(f"{where} must be an event with `at` as [minute, second]")
    minute, second = data["at"]
    from ..state import iso

    event = event_from_json({**data, "at": iso(minute, second)}, where)
    if (event.at, event.second) != (minute, second):
        raise ValueError(f"{where}: `at` out of range")
    return event
