"""Seeded generator of event streams for the reference funnel (1-4 leads per stream).

`generate(seed)` is deterministic (random.Random(seed)) and returns a `Stream`: the events
as the JSON objects `fnl trace --events` reads (leads interleaved, in non-decreasing time,
each lead starting with its opt-in, whole-minute timestamps) and the horizon `until`.

The mix is deliberate: the spec's daily pattern (engagement with each nurture email at or
after its due minute, website visits), events at exactly an email's due minute, at 23:59
and 00:00 (decay boundaries), bursts of many events in one minute (repeated opens and
clicks), engagement with emails not (yet) sent or that do not exist, replies before mql,
pricing visits in the minute a lead became mql and just after, and unsubscribes (at a due
minute, after hand-off, and followed by more activity). The targeted cases ask the oracle
model where a lead's mql entry and hand-off fall, so they land on the right minutes.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Dict, List, NamedTuple

from .reference_model import DAY, NURTURE, SALES, Event, run_lead

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
START = int((datetime(2026, 3, 1, tzinfo=timezone.utc) - EPOCH).total_seconds()) // 60
INDUSTRIES = (("saas", 45), ("manufacturing", 25), ("finance", 30))
NAMES = ("Ann", "Ben", "Chloé", "Dev", "Eun-ji", "Femi", "Gus")
REAL = [t for t, _ in NURTURE] + [t for t, _ in SALES]
BOGUS = ["nurture/day-3", "nurture/day-1", "sales/day-14", "promo/spring", "nurture/day-00"]
ENGAGE = ("email.opened", "email.clicked", "email.replied")


class Stream(NamedTuple):
    seed: int
    events: List[dict]   # JSON-ready, in file order
    until: str           # ISO time for --until


def iso(minute: int) -> str:
    return (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def minute_of(text: str) -> int:
    at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return int((at - EPOCH).total_seconds()) // 60


def to_jsonl(events: List[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


def model_events(events: List[dict]) -> Dict[str, List[Event]]:
    """Split a stream into the oracle's per-lead inputs, keeping file order."""
    out: Dict[str, List[Event]] = {}
    for e in events:
        industry = (e.get("profile") or {}).get("industry")
        out.setdefault(e["lead"], []).append(
            Event(e["type"], minute_of(e["at"]), e.get("template"), e.get("page"), industry))
    return out


# -- one lead -------------------------------------------------------------------------

def _ev(kind: str, minute: int, **fields) -> dict:
    return dict(type=kind, minute=minute, **fields)


def _insert(evs: List[dict], ev: dict, at_start: bool) -> None:
    """Insert at the start or the end of its minute; never before the opt-in."""
    m = ev["minute"]
    if at_start:
        i = next((k for k, e in enumerate(evs) if e["minute"] >= m), len(evs))
    else:
        i = next((k for k, e in enumerate(evs) if e["minute"] > m), len(evs))
    evs.insert(max(i, 1), ev)


def _model(evs: List[dict], industry: str):
    inputs = [Event(e["type"], e["minute"], e.get("template"), e.get("page"),
                    industry if e["type"] == "optin" else None) for e in evs]
    return run_lead(inputs, evs[-1]["minute"] + 30 * DAY)


def _lead(rng: random.Random) -> List[dict]:
    t0 = START + rng.randint(0, 29) * DAY + rng.choice(
        [rng.randrange(DAY), rng.randrange(DAY), 0, 1, DAY - 1, DAY - 2, 9 * 60])
    industry = rng.choices([i for i, _ in INDUSTRIES], [w for _, w in INDUSTRIES])[0]
    span = rng.randint(1, 60) * DAY
    end = t0 + span
    evs = [_ev("optin", t0, magnet="guide",
               profile={"first_name": rng.choice(NAMES), "industry": industry})]
    more: List[dict] = []

    def visit(m: int) -> dict:
        return _ev("site.visited", m, page="pricing" if rng.random() < 0.3 else rng.choice(["blog", "docs", "home"]))

    if rng.random() < 0.7:  # the spec's daily pattern
        p_open, p_visit = rng.uniform(0.3, 0.95), rng.uniform(0.02, 0.4)
        for template, day in NURTURE:
            due = t0 + day * DAY
            if due > end or rng.random() > p_open:
                continue
            m = due if rng.random() < 0.5 else due + rng.choice([1, 59, rng.randrange(3 * DAY)])
            more.append(_ev("email.opened", m, template=template))
            if rng.random() < 0.4:
                more.append(_ev("email.clicked", m + rng.choice([0, 0, 1, 30]), template=template))
            if rng.random() < 0.08:
                more.append(_ev("email.replied", m + rng.choice([0, 2, 600]), template=template))
        for day in range(span // DAY + 1):
            if rng.random() < p_visit:
                more.append(visit(t0 - t0 % DAY + day * DAY + rng.randrange(DAY)))
    if rng.random() < 0.4:  # decay boundaries: 23:59 and 00:00
        for _ in range(rng.randint(1, 4)):
            midnight = t0 - t0 % DAY + rng.randint(1, max(1, span // DAY)) * DAY
            for m in rng.sample([midnight - 1, midnight, midnight + 1], rng.randint(1, 3)):
                more.append(visit(m) if rng.random() < 0.6 else
                            _ev(rng.choice(ENGAGE[:2]), m, template="nurture/day-0"))
    if rng.random() < 0.3:  # a burst in one minute: repeated opens and clicks, visits
        day = rng.choice(NURTURE)[1]
        m = t0 + day * DAY + rng.choice([0, 0, 1, rng.randrange(DAY)])
        for _ in range(rng.randint(3, 9)):
            r = rng.random()
            if r < 0.6:
                more.append(_ev(rng.choice(ENGAGE[:2]), m, template=rng.choice(REAL[:3])))
            elif r < 0.9:
                more.append(visit(m))
            else:
                more.append(_ev("email.replied", m, template=rng.choice(REAL[:3])))
    if rng.random() < 0.4:  # engagement that cannot be true: not yet sent, or no such email
        for _ in range(rng.randint(1, 4)):
            template, day = rng.choice(NURTURE[1:])
            due = t0 + day * DAY
            m = rng.choice([due - 1, due - rng.randrange(1, DAY), t0 + rng.randrange(span)])
            tpl = rng.choice([template, template, rng.choice(BOGUS), rng.choice(REAL[6:])])
            more.append(_ev(rng.choice(ENGAGE), max(m, t0), template=tpl))
    if rng.random() < 0.15:  # a reply long before mql
        more.append(_ev("email.replied", t0 + rng.choice([0, 1, 120]), template="nurture/day-0"))

    more.sort(key=lambda e: e["minute"])  # stable: a burst keeps its order
    evs += [e for e in more if e["minute"] >= t0]

    # Pricing visits in the minute the lead became mql (does not count) and just after.
    if rng.random() < 0.5:
        mql = [m for m, _, to in _model(evs, industry).changes if to == "mql"]
        if mql:
            _insert(evs, _ev("site.visited", mql[0], page="pricing"), at_start=False)
            if rng.random() < 0.7:
                _insert(evs, _ev("site.visited", mql[0] + rng.choice([1, 1, 60, DAY]), page="pricing"),
                        at_start=rng.random() < 0.5)
    # Unsubscribes: at an email's due minute, after hand-off, anywhere; then more activity.
    if rng.random() < 0.35:
        result = _model(evs, industry)
        sql = [m for m, _, to in result.changes if to == "sql"]
        r = rng.random()
        if r < 0.4 and result.sends:
            m = rng.choice(result.sends)[0]
        elif r < 0.7 and sql:
            m = sql[0] + rng.choice([0, 1, 3 * DAY, rng.randrange(8 * DAY)])
        else:
            m = t0 + rng.randrange(span)
        tpl = rng.choice(REAL + BOGUS[:1])
        _insert(evs, _ev("email.unsubscribed", m, template=tpl), at_start=rng.random() < 0.5)
        for _ in range(rng.choice([0, 1, 3])):
            after = m + rng.choice([0, 1, DAY, rng.randrange(10 * DAY)])
            r = rng.random()
            ev = (visit(after) if r < 0.45 else _ev("email.unsubscribed", after, template=rng.choice(REAL))
                  if r < 0.55 else _ev(rng.choice(ENGAGE), after, template=rng.choice(REAL[:4])))
            _insert(evs, ev, at_start=False)
    return evs


def _due_minutes(evs: List[dict]) -> List[int]:
    """When the lead's nurture and (after a hand-off) sales emails fall due."""
    t0 = evs[0]["minute"]
    due = [t0 + day * DAY for _, day in NURTURE]
    sql = [m for m, _, to in _model(evs, evs[0]["profile"]["industry"]).changes if to == "sql"]
    return due + [sql[0] + day * DAY for _, day in SALES] if sql else due


# -- a stream -------------------------------------------------------------------------

def generate(seed: int) -> Stream:
    rng = random.Random(seed)
    leads = [_lead(rng) for _ in range(rng.randint(1, 4))]
    for n, evs in enumerate(leads, 1):
        for e in evs:
            e["lead"] = f"l{n}@s{seed}.example"
    # Interleave by time, keeping each lead's own order; ties between leads at random.
    merged: List[dict] = []
    heads = [0] * len(leads)
    while True:
        live = [n for n, evs in enumerate(leads) if heads[n] < len(evs)]
        if not live:
            break
        first = min(leads[n][heads[n]]["minute"] for n in live)
        n = rng.choice([n for n in live if leads[n][heads[n]]["minute"] == first])
        merged.append(leads[n][heads[n]])
        heads[n] += 1
    last = merged[-1]["minute"]
    r = rng.random()
    until = last + 30 * DAY if r < 0.6 else last if r < 0.75 else last + rng.randint(1, 10 * DAY)
    if r >= 0.9:  # exactly at an email's due minute (the first one due after the last event)
        due = [m for evs in leads for m in _due_minutes(evs) if m >= last]
        until = min(due) if due else until
    events = []
    for e in merged:
        out = {"type": e["type"], "at": iso(e["minute"]), "lead": e["lead"]}
        out.update({k: v for k, v in e.items() if k not in ("type", "minute", "lead")})
        events.append(out)
    return Stream(seed, events, iso(until))
