"""Durations and clock times as the definition language writes them."""
from __future__ import annotations

import re

_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
_DURATION_PART = re.compile(r"([0-9]+)([mhdw])")


def parse_duration(text: str) -> int:
    """`1d12h` → 2160 (minutes). The schema guarantees the format."""
    return sum(int(n) * _UNIT_MINUTES[u] for n, u in _DURATION_PART.findall(text))


def format_duration(minutes: int) -> str:
    """2160 → `1d12h`; the inverse of parse_duration for display."""
    if minutes == 0:
        return "0d"
    out = ""
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_MINUTES[unit]
        if unit == "w" and minutes % size:
            continue
        if minutes >= size:
            out += f"{minutes // size}{unit}"
            minutes %= size
    return out


def parse_clock(text: str) -> int:
    """`20:00` → minutes after midnight."""
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def format_clock(minute_of_day: int) -> str:
    """Minutes after midnight → `20:00`; the inverse of parse_clock."""
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"
