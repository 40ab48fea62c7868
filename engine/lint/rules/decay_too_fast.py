"""Score decay so fast that points evaporate between emails.

A half-life much shorter than the time between two emails (`12h` where `12d` was
meant) leaves a lead a sliver of each email's points by the next one, so points never
add up, and thresholds fall out of reach however keen the lead is. fnl compares the
half-life (or `factor` with `every`) with the typical gap between the emails of a
sequence, and reports a decay under a quarter of it when the same number in a longer
unit (hours to days, days to weeks) is plausible, however high the thresholds are. It
names the thresholds that decay puts out of reach and the longer unit would put back;
FNL501 then says nothing about those thresholds: the decay is the cause.

Fails:
    scoring:
      events: {email.opened: 5, email.clicked: 10, email.replied: 25}
      decay: {half_life: 12h}                  # emails on days 0, 3 and 7
      thresholds: {mql: 60}

Passes:
      decay: {half_life: 12d}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..engagement import gaps_vary, percent, too_fast_in

ID = "FNL509"
NAME = "decay-too-fast"
SEVERITY = "error"


def _duration(minutes: int) -> str:
    for unit, size in (("w", 10080), ("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def check(ctx: Context) -> Iterator[Finding]:
    fast = too_fast_in(ctx)
    if fast is None:
        return
    decay = ctx.funnel.scoring.decay
    factor = decay.factor if decay is not None else 0.5
    what = (f"a half-life of {fast.written}" if fast.key == "half_life" else
            f"decay ×{factor:g} every {fast.written} (a half-life of {_duration(fast.half_life_minutes)})")
    if fast.gap_minutes is not None:
        kept = 0.5 ** (fast.gap_minutes / fast.half_life_minutes)
        typical = "typical " if gaps_vary(ctx.funnel) else ""
        between = (f"{what} is far shorter than the {typical}{_duration(fast.gap_minutes)} between emails: by the "
                   "next email "
                   f"a lead keeps {percent(kept)} an email's points")
    else:
        between = f"{what} makes points fade within a day"
    meant = f"did you mean `{fast.key}: {fast.suggestion}`?"
    if not fast.lost:
        yield Finding(fast.path, f"{between}, so points evaporate between emails instead of adding up", meant)
        return
    lost = [f"`{r.name}` ({r.value}; at most about {r.estimate.shown})" for r, _ in fast.lost]
    out = " and ".join(lost)
    reached = ", ".join(f"about {est.shown} for `{r.name}`" for r, est in fast.lost)
    yield Finding(fast.path, f"{between}, so {out} {'is' if len(lost) == 1 else 'are'} out of reach",
                  f"{meant} With it a lead could score {reached}")
