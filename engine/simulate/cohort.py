"""The synthetic leads of one run: who arrives, through which lead magnet or entry, when,
and with which profile.

Leads are numbered in the order of the behaviour model's arrivals, then by arrival time;
a lead's ID is `lead-<number>@<source>.sim.example`, so engine order within a minute (by
lead ID) is the same in every run. Each lead's days start at the simulation's start: day
d is [start + d·1440, start + (d+1)·1440) in the sender's timezone's wall clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import clock
from ..plan import Plan
from ..state import Event
from .behavior import DAY, Arrival, AttributeMix, Behavior
from .draws import Draws

MAX_ARRIVAL_DRAWS = 20_000_000


@dataclass(frozen=True)
class Lead:
    """One synthetic lead: its number, ID, the arrival it came through, when, and profile."""

    index: int
    id: str
    source: str
    arrives: int  # minute
    profile: Tuple[Tuple[str, Any], ...]

    def event(self, plan: Plan, kind: str) -> Event:
        """The event that creates this lead in the engine: an opt-in, or an entry's event."""
        profile = dict(self.profile)
        if kind == "magnet":
            return Event("optin", self.arrives, self.id, magnet=self.source, profile=profile)
        entry = next(e for e in plan.entries if e.name == self.source)
        if entry.on == "lead.imported":
            return Event("lead.imported", self.arrives, self.id, profile=profile, entry=entry.name)
        return Event(entry.on, self.arrives, self.id, profile=profile, entry=entry.name)


def lead_timezone(plan: Plan, profile: Mapping[str, Any]) -> str:
    """A lead's timezone as the engine reads it: its profile's timezone attribute, else the
    sender's."""
    return str(profile.get(plan.policies.timezone_attribute) or plan.policies.default_timezone)


def local_minute(start: int, day: int, minute_of_day: int, tz: str) -> int:
    """The minute at local wall time `minute_of_day` (0 to 1439) on day `day` after
    `start`'s local date. Days without a change of UTC offset (all but two a year, in
    zones that have them) take a cached start of day; the others work it out in full."""
    midnight, steady = _day_start(tz, local_ordinal(start, tz) + day)
    if steady and 0 <= minute_of_day < DAY:
        return midnight + minute_of_day
    first = clock.local(start, tz)
    wall = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day)
    return clock.to_minute(wall + timedelta(minutes=minute_of_day))


@lru_cache(maxsize=1 << 16)
def local_ordinal(minute: int, tz: str) -> int:
    """The local date of a minute in `tz`, as a proleptic Gregorian ordinal."""
    return clock.local(minute, tz).toordinal()


@lru_cache(maxsize=1 << 14)
def _day_start(tz: str, ordinal: int) -> Tuple[int, bool]:
    """(the minute of local midnight on that date, whether the UTC offset is the same all
    day long): a steady day's minute m is midnight + m."""
    zone = clock.zone(tz)
    try:
        midnight = datetime.fromordinal(ordinal).replace(tzinfo=zone)
        last = midnight.replace(hour=23, minute=59)
        return clock.to_minute(midnight), midnight.utcoffset() == last.utcoffset()
    except (OverflowError, ValueError):
        return 0, False


def scaled(behavior: Behavior, leads: Optional[int]) -> List[Tuple[Arrival, float]]:
    """Each arrival with the factor `--leads N` puts on it (all scaled together)."""
    if leads is None or behavior.expected_leads <= 0:
        return [(a, 1.0) for a in behavior.arrivals]
    factor = leads / behavior.expected_leads
    return [(a, factor) for a in behavior.arrivals]


def apportion(behavior: Behavior, leads: Optional[int]) -> Optional[List[int]]:
    """With `--leads N` and arrivals that are all counts: each arrival's share of exactly N
    (largest remainders); None otherwise (rates are scaled instead)."""
    if leads is None or any(a.leads is None for a in behavior.arrivals) or behavior.expected_leads <= 0:
        return None
    exact = [a.expected_leads * leads / behavior.expected_leads for a in behavior.arrivals]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:leads - sum(counts)]:
        counts[i] += 1
    return counts


def arrivals(plan: Plan, behavior: Behavior, draws: Draws, start: int, leads: Optional[int] = None,
             horizon: Optional[int] = None) -> List[Tuple[Lead, str]]:
    """Every lead that arrives before the horizon, with its arrival's kind (magnet or entry),
    in arrival order."""
    end_of_run = start + (horizon if horizon is not None else behavior.horizon_minutes)
    tz = plan.policies.default_timezone
    out: List[Tuple[int, int, int, str, Arrival]] = []  # (minute, arrival no., n, source, arrival)
    counts = apportion(behavior, leads)
    for no, (arrival, factor) in enumerate(scaled(behavior, leads)):
        times: List[int] = []
        span = max(1, arrival.end - arrival.start)
        if arrival.leads is not None:
            count = counts[no] if counts is not None else int(round(arrival.leads * factor))
            for n in range(count):
                times.append(arrival.start + int(draws.u("arrival", arrival.source, n) * span))
        else:
            rate = (arrival.per_day or 0.0) * factor / DAY  # per minute
            t = float(arrival.start)
            n = 0
            while rate > 0 and n < MAX_ARRIVAL_DRAWS:
                t += -math.log1p(-draws.u("arrival", arrival.source, n)) / rate
                if t >= arrival.end:
                    break
                times.append(int(t))
                n += 1
        for n, offset in enumerate(times):
            out.append((offset, no, n, arrival.source, arrival))
    out.sort(key=lambda item: (item[0], item[1], item[2]))
    leads_out: List[Tuple[Lead, str]] = []
    for index, (offset, _no, n, source, arrival) in enumerate(out):
        lead_id = f"lead-{index + 1:07d}@{source}.sim.example"
        profile = draw_profile(behavior, arrival, draws, lead_id)
        lead_tz = lead_timezone(plan, profile)
        day = offset // DAY
        if behavior.timing.same_minute:
            minute = local_minute(start, day, behavior.timing.at, tz)
        else:
            hours = behavior.timing.hours
            within = hours.start + int(draws.u(lead_id, "arrives") * hours.minutes)
            minute = local_minute(start, day, within % DAY, lead_tz) + (DAY if within >= DAY else 0)
        if minute >= end_of_run:
            continue
        leads_out.append((Lead(index, lead_id, source, minute, tuple(sorted(profile.items()))), arrival.kind))
    return leads_out


def draw_profile(behavior: Behavior, arrival: Arrival, draws: Draws, lead: str) -> Dict[str, Any]:
    profile: Dict[str, Any] = {}
    names = [m.name for m in behavior.profile] + [m.name for m in arrival.profile
                                                   if m.name not in {x.name for x in behavior.profile}]
    for name in names:
        mix = behavior.attribute(name, arrival)
        if mix is None:
            continue
        value = draw_value(mix, draws, lead)
        if value is not None:
            profile[name] = value
    return profile


def draw_value(mix: AttributeMix, draws: Draws, lead: str) -> Optional[Any]:
    if mix.missing > 0 and draws.u(lead, "missing", mix.name) < mix.missing:
        return None
    x = draws.u(lead, "profile", mix.name)
    if mix.kind == "choice":
        total = 0.0
        for value, share in mix.values:
            total += share
            if x < total:
                return value
        return mix.values[-1][0] if mix.values else None
    if mix.kind in ("uniform", "log_uniform"):
        low, high = float(mix.low or 0), float(mix.high or 0)
        if mix.kind == "log_uniform" and low > 0:
            value = math.exp(math.log(low) + x * (math.log(high) - math.log(low)))
        else:
            value = low + x * (high - low)
        if mix.integer:
            return min(int(high), max(int(math.ceil(low)), int(math.floor(value))))
        return value
    return f"{mix.name.replace('_', ' ').title()} {lead.split('@')[0].split('-')[-1].lstrip('0') or '0'}"
