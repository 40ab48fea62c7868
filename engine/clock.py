"""Time as a funnel sees it: local time in a timezone, quiet hours, business hours and
the calendar periods that score decay counts.

The engine keeps whole minutes since 1970-01-01 UTC. Everything that depends on a
calendar (midnight, Monday, 09:00 on a working day) is computed here, in the timezone
the definition names, so the runtime, the trace and the simulator agree on it.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Optional, Tuple

DAY = 1440
# Minutes from 0001-01-01 00:00 (a Monday) to 1970-01-01 00:00: wall-clock minutes are
# counted from that Monday so that weekly periods start on Mondays.
_EPOCH_WALL = (date(1970, 1, 1).toordinal() - 1) * DAY
_FIRST = datetime(1, 1, 2, tzinfo=timezone.utc)
_LAST = datetime(9999, 12, 30, tzinfo=timezone.utc)


@lru_cache(maxsize=256)
def zone(name: str) -> Any:
    """The timezone of that name; UTC for a name that does not exist (validation has
    already refused those in definitions; a lead's own attribute may still be wrong)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name in ("UTC", "Etc/UTC", ""):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return timezone.utc


def local(minute: int, tz: str) -> datetime:
    """The local time of a minute; clamped to the years datetime can hold."""
    moment = datetime.fromtimestamp(minute * 60, tz=timezone.utc) if -62_135_000_000 < minute * 60 < 253_402_000_000 \
        else (_FIRST if minute < 0 else _LAST)
    moment = min(max(moment, _FIRST), _LAST)
    return moment.astimezone(zone(str(tz)))


def to_minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def wall(minute: int, tz: str) -> int:
    """Local wall-clock minutes since 0001-01-01 00:00 (a Monday) in `tz`."""
    if zone(str(tz)) is timezone.utc:
        return minute + _EPOCH_WALL
    return _wall(minute, str(tz))


@lru_cache(maxsize=65536)
def _wall(minute: int, tz: str) -> int:
    t = local(minute, tz)
    return (t.toordinal() - 1) * DAY + t.hour * 60 + t.minute


def periods_between(start: int, end: int, every: int, tz: str) -> int:
    """How many period boundaries lie in (start, end]: local midnights for a period of a
    day, local Monday midnights for a week, and in general multiples of `every` on the
    local wall clock counted from Monday 0001-01-01. A clock turned back by daylight
    saving never makes the count negative."""
    if every <= 0 or end <= start:
        return 0
    return max(0, wall(end, tz) // every - wall(start, tz) // every)


def next_local(minute: int, at: int, tz: str) -> int:
    """The first moment >= minute whose local time of day is `at` (minutes after midnight)."""
    here = local(minute, tz)
    target = here.replace(hour=at // 60, minute=at % 60, second=0, microsecond=0)
    if target < here.replace(second=0, microsecond=0):
        try:
            target = (target + timedelta(days=1)).replace(hour=at // 60, minute=at % 60)
        except OverflowError:  # the last day datetime can hold
            return minute
    return max(minute, to_minute(target))


def in_window(minute_of_day: int, start: int, end: int) -> bool:
    """Whether a local time of day lies in [start, end), a window that may wrap midnight."""
    return start <= minute_of_day < end if start <= end else (minute_of_day >= start or minute_of_day < end)


def after_quiet(minute: int, start: int, end: int, tz: str) -> int:
    """`minute`, or the end of the quiet hours it falls in (local time)."""
    here = local(minute, tz)
    if not in_window(here.hour * 60 + here.minute, start, end):
        return minute
    return next_local(minute, end, tz)


BusinessHours = Tuple[Tuple[int, ...], int, int]  # weekdays (0 = Monday), from, to (minutes after midnight)


def business_deadline(start: int, length: int, hours: Optional[BusinessHours], tz: str) -> int:
    """The minute by which `length` minutes have passed, counting only business hours
    when they are given (local time in `tz`): a 4h SLA handed off at 16:00 on a Friday
    with 09:00-17:00 Monday to Friday runs out at 12:00 on Monday. Each day's hours are
    real minutes between its local opening and closing, so a day that changes to or from
    daylight saving counts what the clock on the wall shows."""
    if hours is None:
        return start + length
    days, opens, closes = hours
    if not days or closes <= opens:
        return start + length
    zone_ = zone(str(tz))
    left = length
    day = local(start, tz).date()
    week = len(days) * (closes - opens)  # business minutes in a week (before daylight saving)
    for _ in range(100_000):
        if left > 2 * week:  # whole weeks at once: an SLA of years must not walk day by day
            skip = left // week - 1
            day += timedelta(weeks=skip)
            left -= skip * week
            start = max(start, _at(day, 0, zone_))
            continue
        if day.weekday() in days:
            open_at, close_at = _at(day, opens, zone_), _at(day, closes, zone_)
            begin = max(start, open_at)
            if begin < close_at:
                if left <= close_at - begin:
                    return begin + left
                left -= close_at - begin
        if day >= date(9999, 12, 30):
            break
        day += timedelta(days=1)
    return start + left


def _at(day: date, minute_of_day: int, zone_: Any) -> int:
    """The real minute at which a local date shows a time of day."""
    moment = datetime(day.year, day.month, day.day, minute_of_day // 60, minute_of_day % 60, tzinfo=zone_)
    return to_minute(moment)
