"""Random draws keyed by what they are for, not by the order they are made in.

Every draw is a function of (seed, lead, what): the same lead opening the same step of a
sequence draws the same number in any run with that seed, whichever leads come before it,
however the leads are split across processes, and in both funnels of a comparison
wherever they agree (common random numbers). A draw is the first 64 bits of BLAKE2b over
the seed and the key, as a float in [0, 1): counter-based, like Philox, and the same on
every platform and Python version.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Optional, Sequence, Tuple

from .behavior import Delay

_SCALE = 1.0 / 2.0 ** 64


class Draws:
    """The draws of one run (`seed`)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._base = hashlib.blake2b(f"fnl-simulate:{seed}:".encode(), digest_size=8)

    def u(self, *key: Any) -> float:
        """A uniform number in [0, 1) for this key (lead ID first, then what it is for)."""
        h = self._base.copy()
        h.update("\x1f".join(map(str, key)).encode("utf-8", "surrogatepass"))
        return int.from_bytes(h.digest(), "big") * _SCALE

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
