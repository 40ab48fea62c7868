"""Local time for columns of minutes: `engine.clock`'s rules for many leads at once.

The few timezones a run's leads have are tabled over the run's span: for each, the
minutes at which its UTC offset changes and the offset between them. Reading local time
(`wall`) is then a table lookup, exact wherever the table reaches. Going the other way
(local time to a minute: the end of the quiet hours, a time of day on a lead's day) is
arithmetic where the offset is the same for two days around the minute (`steady`), and
`engine.clock` itself, one lead at a time, on the few days around a change of offset, so
daylight saving's gaps and repeated hours are decided by the engine's own code.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .. import clock
from .cohort import local_minute

DAY = clock.DAY
_EPOCH_WALL = clock.wall(0, "UTC")  # local wall-clock minutes of 1970-01-01 00:00 UTC
_MARGIN = 2 * DAY


class Zones:
    """The UTC offsets of timezones `names` (a lead's code is its index) over minutes
    `lo` to `hi`."""

    def __init__(self, names: Sequence[str], lo: int, hi: int) -> None:
        self.names = list(names)
        self.lo, self.hi = lo - 3 * DAY, hi + 10 * DAY  # visits are placed up to days past the horizon
        self.cuts: List[np.ndarray] = []  # minutes from which the offset changes
        self.offsets: List[np.ndarray] = []  # offsets[j]: before cuts[j]; offsets[-1]: after the last
        for name in self.names:
            cuts, offsets = [], [self._offset(self.lo, name)]
            day = self.lo
            while day < self.hi:
                following = min(day + DAY, self.hi)
                now = self._offset(following, name)
                if now != offsets[-1]:  # a change within (day, following]: find its minute
                    low, high = day, following
                    while high - low > 1:
                        mid = (low + high) // 2
                        if self._offset(mid, name) == offsets[-1]:
                            low = mid
                        else:
                            high = mid
                    cuts.append(high)
                    offsets.append(now)
                day = following
            self.cuts.append(np.asarray(cuts, dtype=np.int64))
            self.offsets.append(np.asarray(offsets, dtype=np.int64))

    @staticmethod
    def _offset(minute: int, name: str) -> int:
        return clock.wall(minute, name) - minute - _EPOCH_WALL

    def offset(self, minutes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Each minute's UTC offset in its row's timezone (inside the table's span)."""
        out = np.empty(minutes.shape[0], dtype=np.int64)
        for code in np.unique(codes).tolist():
            sel = codes == code
            out[sel] = self.offsets[code][np.searchsorted(self.cuts[code], minutes[sel], side="right")]
        return out

    def inside(self, minutes: np.ndarray) -> np.ndarray:
        return (minutes >= self.lo + _MARGIN) & (minutes <= self.hi - _MARGIN)

    def wall(self, minutes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`clock.wall` for each row: local wall-clock minutes since 0001-01-01."""
        out = minutes + self.offset(np.clip(minutes, self.lo, self.hi), codes) + _EPOCH_WALL
        outside = ~self.inside(minutes)
        for i in np.nonzero(outside)[0].tolist():
            out[i] = clock.wall(int(minutes[i]), self.names[int(codes[i])])
        return out

    def steady(self, minutes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Whether each row's offset is the same for two days either side of its minute."""
        out = self.inside(minutes)
        for code in np.unique(codes).tolist():
            cuts = self.cuts[code]
            if cuts.shape[0] == 0:
                continue
            sel = np.nonzero(codes == code)[0]
            m = minutes[sel]
            out[sel] &= np.searchsorted(cuts, m - _MARGIN, side="right") == np.searchsorted(cuts, m + _MARGIN,
                                                                                          side="right")
        return out

    def after_quiet(self, minutes: np.ndarray, codes: np.ndarray, start: int, end: int) -> np.ndarray:
        """`clock.after_quiet` for each row: its minute, or the end of the quiet hours
        (`start` to `end`, local) it falls in."""
        w = self.wall(minutes, codes)
        tod = w % DAY
        quiet = (tod >= start) & (tod < end) if start <= end else (tod >= start) | (tod < end)
        out = minutes.copy()
        rows = np.nonzero(quiet)[0]
        if rows.shape[0] == 0:
            return out
        m, t = minutes[rows], tod[rows]
        target = w[rows] - t + end + np.where(end < t, DAY, 0) - _EPOCH_WALL
        steady = self.steady(m, codes[rows])
        fine = rows[steady]
        out[fine] = np.maximum(m[steady], target[steady] - self.offset(m[steady], codes[fine]))
        for i in rows[~steady].tolist():
            out[i] = clock.after_quiet(int(minutes[i]), start, end, self.names[int(codes[i])])
        return out

    def next_local(self, minutes: np.ndarray, codes: np.ndarray, at: int) -> np.ndarray:
        """`clock.next_local` for each row: the first minute at or after its own whose
        local time of day is `at`."""
        w = self.wall(minutes, codes)
        tod = w % DAY
        target = w - tod + at + np.where(at < tod, DAY, 0) - _EPOCH_WALL
        steady = self.steady(minutes, codes)
        out = np.empty(minutes.shape[0], dtype=np.int64)
        out[steady] = np.maximum(minutes[steady], target[steady] - self.offset(minutes[steady], codes[steady]))
        for i in np.nonzero(~steady)[0].tolist():
            out[i] = clock.next_local(int(minutes[i]), at, self.names[int(codes[i])])
        return out

    def on_day(self, starts: np.ndarray, days: np.ndarray, minute_of_day: np.ndarray, codes: np.ndarray
               ) -> np.ndarray:
        """`cohort.local_minute` for each row: local time `minute_of_day` (0 to 1439) on
        day `days` after the local date of `starts`."""
        w = self.wall(starts, codes)
        target = w - w % DAY + days * DAY + minute_of_day - _EPOCH_WALL
        guess = target - self.offset(np.clip(starts, self.lo, self.hi), codes)
        steady = self.steady(guess, codes) & (minute_of_day >= 0) & (minute_of_day < DAY)
        out = np.empty(starts.shape[0], dtype=np.int64)
        out[steady] = target[steady] - self.offset(guess[steady], codes[steady])
        for i in np.nonzero(~steady)[0].tolist():
            out[i] = local_minute(int(starts[i]), int(days[i]), int(minute_of_day[i]), self.names[int(codes[i])])
        return out

    def ordinal_days(self, minutes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Each minute's local date, as a count of days (differences are `cohort.local_ordinal`'s)."""
        return self.wall(minutes, codes) // DAY
