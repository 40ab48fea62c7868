"""The synthetic leads of one run: who arrives, through which lead magnet or entry, when,
and with which profile.

Leads are numbered by arrival time (then the behaviour model's order of arrivals); a
lead's ID is `lead-<number>@<source>.sim.example`, so engine order within a minute (by
lead ID) is the same in every run. Each lead's days start at the simulation's start: day
d is [start + d·1440, start + (d+1)·1440) in the sender's timezone's wall clock.

`cohort` draws a run's leads as columns (NumPy arrays: numbers, arrival minutes, sources,
profile attributes), the form the vectorised simulator takes; `arrivals` gives the same
leads one at a time, the form the per-lead simulator takes. Every draw is keyed by the
lead's number (`draws`), so the two are the same leads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import clock
from ..plan import Plan
from ..state import Event
from .behavior import DAY, Arrival, AttributeMix, Behavior
from .draws import BLOCK, Draws

MAX_ARRIVAL_DRAWS = 20_000_000
SYNTHETIC = -2


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


@dataclass(frozen=True)
class Column:
    """One profile attribute of a cohort: `values[codes]` per lead, -1 where it is missing
    (a choice's values are its choices; a number's, one per lead); `SYNTHETIC` for a
    made-up text, made from the lead's number when asked for."""

    name: str
    kind: str
    codes: np.ndarray
    values: Tuple[Any, ...]

    def value(self, row: int, index: int) -> Optional[Any]:
        code = int(self.codes[row])
        if code == SYNTHETIC:
            return f"{self.name.replace('_', ' ').title()} {index + 1}"
        return None if code < 0 else self.values[code]


@dataclass(frozen=True)
class Cohort:
    """A run's leads as columns, in lead-number order: `index` (gaps where a lead would
    arrive at or after the horizon), `arrives` (minute), `source` (into `sources`, with
    each source's `kinds`: magnet or entry) and the drawn profile attributes."""

    index: np.ndarray
    arrives: np.ndarray
    source: np.ndarray
    sources: Tuple[str, ...]
    kinds: Tuple[str, ...]
    profile: Tuple[Column, ...]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def lead_id(self, row: int) -> str:
        return lead_id(int(self.index[row]), self.sources[int(self.source[row])])

    def profile_of(self, row: int) -> Dict[str, Any]:
        index = int(self.index[row])
        out = {}
        for column in self.profile:
            value = column.value(row, index)
            if value is not None:
                out[column.name] = value
        return out

    def take(self, rows: np.ndarray) -> "Cohort":
        return Cohort(self.index[rows], self.arrives[rows], self.source[rows], self.sources, self.kinds,
                      tuple(Column(c.name, c.kind, c.codes[rows], c.values) for c in self.profile))


def lead_id(index: int, source: str) -> str:
    return f"lead-{index + 1:07d}@{source}.sim.example"


def cohort(plan: Plan, behavior: Behavior, draws: Draws, start: int, leads: Optional[int] = None,
           horizon: Optional[int] = None) -> Cohort:
    """Every lead that arrives before the horizon, as columns, in arrival order."""
    end_of_run = start + (horizon if horizon is not None else behavior.horizon_minutes)
    offsets: List[np.ndarray] = []
    nos: List[np.ndarray] = []
    counts = apportion(behavior, leads)
    for no, (arrival, factor) in enumerate(scaled(behavior, leads)):
        span = max(1, arrival.end - arrival.start)
        if arrival.leads is not None:
            count = counts[no] if counts is not None else int(round(arrival.leads * factor))
            times = np.empty(count, dtype=np.int64)
            for first in range(0, count, BLOCK):  # a block at a time: memory for the result only
                last = min(count, first + BLOCK)
                u = draws.column(("arrival", arrival.source), np.arange(first, last, dtype=np.int64))
                times[first:last] = arrival.start + (u * span).astype(np.int64)
        else:
            rate = (arrival.per_day or 0.0) * factor / DAY  # per minute
            found: List[int] = []
            t = float(arrival.start)
            while rate > 0 and len(found) < MAX_ARRIVAL_DRAWS:
                t += -math.log1p(-draws.u("arrival", arrival.source, len(found))) / rate
                if t >= arrival.end:
                    break
                found.append(int(t))
            times = np.asarray(found, dtype=np.int64)
        offsets.append(times)
        nos.append(np.full(times.shape[0], no, dtype=np.int16))
    offset = (offsets[0] if len(offsets) == 1 else np.concatenate(offsets)) if offsets else np.zeros(0, np.int64)
    no_of = (nos[0] if len(nos) == 1 else np.concatenate(nos)) if nos else np.zeros(0, dtype=np.int16)
    del offsets, nos
    # By time, then arrival, then draw: the arrivals' draws are concatenated in that order
    # and a stable sort keeps it among equal times (a radix sort when the times span less
    # than 2**16 minutes, as a 30-day window does).
    low = int(offset.min()) if offset.shape[0] else 0
    if offset.shape[0] and int(offset.max()) - low < 1 << 16:
        order = np.argsort((offset - low).astype(np.uint16), kind="stable")
    else:
        order = np.argsort(offset, kind="stable")
    offset = offset[order]
    if len(behavior.arrivals) > 1:
        no_of = no_of[order]
    del order
    index = np.arange(offset.shape[0], dtype=np.int32)
    columns = _profile(behavior, draws, index, no_of)
    arrives = _arrival_minutes(plan, behavior, draws, start, index, offset, columns)
    keep = arrives < end_of_run
    sources = tuple(a.source for a in behavior.arrivals)
    kinds = tuple(a.kind for a in behavior.arrivals)
    whole = Cohort(index, arrives, no_of, sources, kinds, columns)
    return whole if keep.all() else whole.take(np.nonzero(keep)[0])


def _profile(behavior: Behavior, draws: Draws, index: np.ndarray, no_of: np.ndarray) -> Tuple[Column, ...]:
    """Each attribute any arrival draws, for every lead (-1 for the leads of an arrival that
    does not draw it, or that miss it)."""
    names: List[str] = [m.name for m in behavior.profile]
    for arrival in behavior.arrivals:
        names += [m.name for m in arrival.profile if m.name not in names]
    out = []
    for name in names:
        codes = np.full(index.shape[0], -1, dtype=np.int32)
        values: List[Any] = []
        kind = ""
        for no, arrival in enumerate(behavior.arrivals):
            mix = behavior.attribute(name, arrival)
            if mix is None:
                continue
            kind = kind or mix.kind
            if len(behavior.arrivals) == 1:
                codes, values = _draw(mix, draws, index, 0)
                continue
            rows = np.nonzero(no_of == no)[0]
            if rows.shape[0] == 0:
                continue
            got, new = _draw(mix, draws, index[rows], len(values))
            codes[rows] = got
            values += new
        out.append(Column(name, kind or "choice", codes, tuple(values)))
    return tuple(out)


def _draw(mix: AttributeMix, draws: Draws, index: np.ndarray, first: int) -> Tuple[np.ndarray, List[Any]]:
    """Codes (from `first`) and the values they stand for, of one mix for these leads."""
    if mix.kind not in ("choice", "uniform", "log_uniform"):
        codes = np.full(index.shape[0], SYNTHETIC, dtype=np.int32)
        values: List[Any] = []
        if mix.missing > 0:
            codes[draws.column(("missing", mix.name), index) < mix.missing] = -1
        return codes, values
    if mix.kind == "choice":
        totals = np.cumsum(np.asarray([share for _, share in mix.values], dtype=np.float64))
        codes = np.empty(index.shape[0], dtype=np.int32)
        for start in range(0, index.shape[0], BLOCK):  # a block at a time: memory for the codes only
            x = draws.column(("profile", mix.name), index[start:start + BLOCK])
            codes[start:start + BLOCK] = first + np.minimum(np.searchsorted(totals, x, side="right"),
                                                            max(0, len(mix.values) - 1))
        values = [value for value, _ in mix.values]
    else:
        x = draws.column(("profile", mix.name), index)
        values = [_number(mix, float(v)) for v in x]  # the math module's functions, lead by lead
        codes = first + np.arange(x.shape[0], dtype=np.int32)
    if mix.missing > 0:
        missing = draws.column(("missing", mix.name), index) < mix.missing
        codes = np.where(missing, -1, codes)
    if not mix.values and mix.kind == "choice":
        codes = np.full(index.shape[0], -1, dtype=np.int32)
    return codes, values


def _number(mix: AttributeMix, x: float) -> Any:
    low, high = float(mix.low or 0), float(mix.high or 0)
    if mix.kind == "log_uniform" and low > 0:
        value = math.exp(math.log(low) + x * (math.log(high) - math.log(low)))
    else:
        value = low + x * (high - low)
    if mix.integer:
        return min(int(high), max(int(math.ceil(low)), int(math.floor(value))))
    return value


def _arrival_minutes(plan: Plan, behavior: Behavior, draws: Draws, start: int, index: np.ndarray,
                     offset: np.ndarray, columns: Tuple[Column, ...]) -> np.ndarray:
    """The minute each lead arrives: on its arrival's day, at the behaviour model's time
    (`same_minute`) in the sender's timezone, or at a time drawn within the active hours
    of its own timezone."""
    day = offset // DAY
    if behavior.timing.same_minute:
        tz = plan.policies.default_timezone
        if day.shape[0] == 0:
            return day
        first = int(day.min())
        minutes = np.asarray([local_minute(start, d, behavior.timing.at, tz) for d in range(first, int(day.max()) + 1)],
                             dtype=np.int64)
        day -= first
        return minutes[day]
    hours = behavior.timing.hours
    within = hours.start + (draws.column(("arrives",), index) * hours.minutes).astype(np.int64)
    tz_column = next((c for c in columns if c.name == plan.policies.timezone_attribute), None)
    out = np.empty(index.shape[0], dtype=np.int64)
    for row in range(index.shape[0]):
        zone = tz_column.value(row, int(index[row])) if tz_column is not None else None
        lead_tz = str(zone or plan.policies.default_timezone)
        w = int(within[row])
        out[row] = local_minute(start, int(day[row]), w % DAY, lead_tz) + (DAY if w >= DAY else 0)
    return out


def one_by_one(c: Cohort) -> List[Lead]:
    """The cohort's leads one at a time, the per-lead simulator's form."""
    return [Lead(int(c.index[row]), c.lead_id(row), c.sources[int(c.source[row])], int(c.arrives[row]),
                 tuple(sorted(c.profile_of(row).items()))) for row in range(len(c))]
