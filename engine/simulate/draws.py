"""Random draws keyed by what they are for, not by the order they are made in.

Every draw is a function of (seed, key): the same lead opening the same step of a
sequence draws the same number in any run with that seed, whichever leads come before it,
however the leads are split across processes or chunks, whether one lead is simulated at
a time (`run`) or a whole cohort as arrays (`vector`), and in both funnels of a comparison
wherever they agree (common random numbers).

A key is a tuple of parts, what the draw is for first and the lead's number last (then,
for a daily draw, the lead's day). A part that is a string counts by the first 64 bits of
its BLAKE2b; a part that is an integer counts as itself. The parts are folded into the
seed's 64-bit state one at a time by SplitMix64's finaliser, a counter-based generator
like Philox (no state carried from one draw to the next), and the top 53 bits of the
result are the draw, a float in [0, 1). `u` folds one key in Python; `column` folds the
same parts for a whole column of leads with NumPy and gives, bit for bit, the floats `u`
gives one at a time, on every platform.
"""
from __future__ import annotations

import bisect
import hashlib
import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from .behavior import Delay

if TYPE_CHECKING:
    import numpy as np

MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_SCALE = 1.0 / 2.0 ** 53
BLOCK = 1 << 18  # leads a column draw works on at once


@lru_cache(maxsize=1 << 12)
def _word(part: Any) -> int:
    """A key part as a 64-bit word: an integer as itself, anything else by its text's hash."""
    if isinstance(part, int) and not isinstance(part, bool):
        return part & MASK
    digest = hashlib.blake2b(str(part).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fold(state: int, part: Any) -> int:
    """The state after one more key part (SplitMix64's finaliser over state ^ part)."""
    z = ((state ^ _word(part)) + _GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * _M1) & MASK
    z = ((z ^ (z >> 27)) * _M2) & MASK
    return z ^ (z >> 31)


def fold_column(state: "np.ndarray | int", words: "np.ndarray") -> "np.ndarray":
    """`fold` for a column: `words` are the parts as uint64 (integers as themselves)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = np.bitwise_xor(words, np.uint64(state) if isinstance(state, int) else state)
        z += np.uint64(_GOLDEN)
        t = z >> np.uint64(30)
        z ^= t
        z *= np.uint64(_M1)
        np.right_shift(z, np.uint64(27), out=t)
        z ^= t
        z *= np.uint64(_M2)
        np.right_shift(z, np.uint64(31), out=t)
        z ^= t
    return z


class Gaps:
    """Days between a lead's chances of something daily (a website visit), drawn at once.

    A lead that does something each day with probability at most `most` has, each day, a
    chance of it with probability `most` (a candidate day), taken then with probability
    rate / most for that day's rate: the same as a daily draw at that day's rate, with
    draws only on candidate days. The gap to the next candidate day is geometric, read
    from a table of (1 - most) ** g, so one lead drawing alone (`gap`) and a column of
    leads (`gaps`) give the same whole numbers, with no logarithm that could round
    differently."""

    def __init__(self, most: float, longest: int) -> None:
        self.most = most
        self.longest = longest
        # thresholds[g - 1] = (1 - most) ** g: a gap is more than g days when u < that.
        out: List[float] = []
        keep = 1.0
        while most > 0 and len(out) < longest:
            keep *= 1.0 - most
            if keep <= 0.0:
                break
            out.append(keep)
        self.ascending = list(reversed(out))
        self._table: Optional["np.ndarray"] = None

    def gap(self, u: float) -> int:
        """Days to the next candidate day (1 or more; over `longest`: none within reach)."""
        return len(self.ascending) - bisect.bisect_right(self.ascending, u) + 1

    def gaps(self, u: "np.ndarray") -> "np.ndarray":
        import numpy as np

        if self._table is None:
            self._table = np.asarray(self.ascending, dtype=np.float64)
        return len(self.ascending) - np.searchsorted(self._table, u, side="right") + 1


def below(probability: float) -> Optional[int]:
    """The largest folded state whose draw is under `probability` (`chance` is then
    `state <= below(p)`, with no float made), or None when no draw is (p <= 0)."""
    if not probability > 0:
        return None
    if probability >= 1:
        return MASK
    return (math.ceil(probability * 2.0 ** 53) << 11) - 1


def to_unit(state: int) -> float:
    return (state >> 11) * _SCALE


def column_to_unit(states: "np.ndarray") -> "np.ndarray":
    import numpy as np

    return (states >> np.uint64(11)).astype(np.float64) * _SCALE


class Draws:
    """The draws of one run (`seed`)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.base = fold(0, f"fnl-simulate:{seed}")

    def state(self, *parts: Any) -> int:
        """The folded state of a key's first parts, for `column` to go on from."""
        state = self.base
        for part in parts:
            state = fold(state, part)
        return state

    def u(self, *key: Any) -> float:
        """A uniform number in [0, 1) for this key."""
        return to_unit(self.state(*key))

    def column(self, prefix: Tuple[Any, ...], leads: "np.ndarray", *then: Any) -> "np.ndarray":
        """`u(*prefix, lead, *then)` for every lead number in `leads`; a part of `then` may
        be a column too (a day per lead). Worked out a block at a time, so a column of ten
        million leads needs little more memory than its result."""
        import numpy as np

        out = np.empty(leads.shape[0], dtype=np.float64)
        start = self.state(*prefix)
        for first in range(0, leads.shape[0], BLOCK):
            last = min(leads.shape[0], first + BLOCK)
            states = fold_column(start, leads[first:last].astype(np.uint64))
            for part in then:
                words = part[first:last].astype(np.uint64) if isinstance(part, np.ndarray) \
                    else np.uint64(_word(part))
                states = fold_column(states, np.broadcast_to(words, states.shape))
            out[first:last] = column_to_unit(states)
        return out

    def states(self, prefix: Tuple[Any, ...], leads: "np.ndarray") -> "np.ndarray":
        """The folded states of `(*prefix, lead)` for a column of leads, to draw from with
        `then` again and again (a lead's daily draws)."""
        import numpy as np

        return fold_column(self.state(*prefix), leads.astype(np.uint64))

    @staticmethod
    def folded(states: "np.ndarray", part: "np.ndarray") -> "np.ndarray":
        """The folded states of `(*prefix, lead, part)`: compare with `below`."""
        import numpy as np

        return fold_column(states, part.view(np.uint64) if part.dtype == np.int64 else part.astype(np.uint64))

    @staticmethod
    def then(states: "np.ndarray", part: "np.ndarray") -> "np.ndarray":
        """`u(*prefix, lead, part)` from the leads' `states` and a column of last parts."""
        import numpy as np

        return column_to_unit(fold_column(states, part.astype(np.uint64)))

    def chance(self, probability: float, *key: Any) -> bool:
        return probability > 0 and self.u(*key) < probability

    def pick(self, weighted: Sequence[Tuple[Any, float]], *key: Any) -> Optional[Any]:
        """One of the (value, share) pairs, or None for the share left over."""
        x = self.u(*key)
        total = 0.0
        for value, share in weighted:
            total += share
            if x < total:
                return value
        return None

    def delay(self, delay: Delay, *key: Any) -> int:
        """Minutes of a delay: fixed, uniform from low to high, or exponential with its mean
        (cut off at high)."""
        if delay.kind == "fixed":
            return delay.low
        x = self.u(*key)
        if delay.kind == "uniform":
            high = delay.high if delay.high is not None else delay.low
            return delay.low + int(x * (high - delay.low + 1))
        minutes = int(round(-(delay.mean or 0) * math.log1p(-x)))
        return min(minutes, delay.high) if delay.high is not None else minutes
