"""A SimPy model of the reference funnel (`REFERENCE_FUNNEL.md`), the way a data-minded user would write it.

One `env.process` per lead; the lead's life is a generator that waits for its opt-in day and
then advances one day at a time with `env.timeout(1)` while it is a subscriber or an mql
(it may visit the website on any day, so every day is an event). After hand-off the process
waits straight for the sales-support emails (days 0, 3, 7 after hand-off), since nothing
else can happen to a handed-off lead.

Written from the reference spec's words, not from fnl's engine and not from
`reference_model.py`'s loops; only the report (`reference_model.Figures`) and the comparison
(`reference_model.compare`) are shared, so that `simulate_bench.py` can put the three
models in one table and check that they agree. The random draws come from one
`random.Random(seed)`, taken in the order SimPy runs the processes (deterministic for a
seed), so the model agrees with the others in distribution, not lead for lead.

    python3 bench/simpy_model.py --leads 100000     # agrees with run_plain within 4 SE? (exit 1 if not)
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_model  # Figures and compare only
from reference_model import Figures

# --- The spec, in its own words ---------------------------------------------------------------

HORIZON = 120                                  # daily time step, horizon 120 days (days 0..119)
OPT_IN_WINDOW = 30                             # opt-in day uniform over days 0..29
SEGMENT_MIX = (("saas", 0.50), ("manufacturing", 0.30), ("finance", 0.20))
ICP = frozenset(("saas", "finance"))           # fit (ICP) = saas or finance
NURTURE = frozenset((0, 2, 5, 9, 14, 21))      # 6 emails, days after opt-in
SALES_SUPPORT = (0, 3, 7)                      # 3 emails, days after hand-off
UNSUBSCRIBE = 0.005                            # per email sent
OPEN = {"saas": 0.35, "manufacturing": 0.25, "finance": 0.30}
CLICK_IF_OPENED = 0.20
REPLY_IF_OPENED = 0.02                         # independently of the click
VISIT = 0.01
VISIT_AFTER_CLICK = 0.05                       # clicked on any of days t-6 .. t
PRICING_SHARE = 0.3
OPEN_POINTS, CLICK_POINTS, REPLY_POINTS = 5, 10, 25
VISIT_POINTS, PRICING_POINTS = 15, 20          # a pricing visit: +20 instead of +15
DAILY_DECAY = 0.98
MQL_SCORE = 40

SEGMENT_UPTO = tuple((name, sum(share for _, share in SEGMENT_MIX[:i + 1]))
                     for i, (name, _) in enumerate(SEGMENT_MIX))


class Tally:
    """What the leads report when their process ends."""

    def __init__(self) -> None:
        self.buckets: Dict[str, int] = {"subscriber": 0, "mql": 0, "sql": 0, "unsubscribed": 0}
        self.emails = self.emails_sq = self.unsubscribes = self.unsubscribes_sq = 0

    def add(self, bucket: str, emails: int, unsubscribes: int) -> None:
        self.buckets[bucket] += 1
        self.emails += emails
        self.emails_sq += emails * emails
        self.unsubscribes += unsubscribes
        self.unsubscribes_sq += unsubscribes * unsubscribes


def lead(env: simpy.Environment, rng: random.Random, tally: Tally):
    """One lead's life, from opt-in to the horizon (or to an unsubscribe)."""
    draw = rng.random
    opt_in = rng.randrange(OPT_IN_WINDOW)
    u = draw()
    segment = SEGMENT_MIX[-1][0]
    for name, upto in SEGMENT_UPTO:
        if u < upto:
            segment = name
            break
    fit = segment in ICP
    p_open = OPEN[segment]

    stage = "subscriber"
    score = 0.0
    replied = False
    last_click = -OPT_IN_WINDOW - HORIZON     # "never"
    pricing_after_mql = False
    emails = unsubscribes = 0

    # A lead takes part in every step of its opt-in day.
    yield env.timeout(opt_in)
    while env.now < HORIZON:
        day = env.now
        # Start of the day: the score is multiplied by 0.98.
        score *= DAILY_DECAY

        # The next nurture email when due (subscriber or mql).
        if day - opt_in in NURTURE:
            emails += 1
            if draw() < UNSUBSCRIBE:
                # Unsubscribed: nothing more, ever, and no visit today.
                tally.add("unsubscribed", emails, unsubscribes + 1)
                return
            if draw() < p_open:
                score += OPEN_POINTS
                if draw() < CLICK_IF_OPENED:
                    score += CLICK_POINTS
                    last_click = day
                if draw() < REPLY_IF_OPENED:
                    score += REPLY_POINTS
                    replied = True

        # The website: 0.05 if it clicked on any of days t-6 .. t, else 0.01.
        if draw() < (VISIT_AFTER_CLICK if day - last_click <= 6 else VISIT):
            if draw() < PRICING_SHARE:
                score += PRICING_POINTS
                # Only a pricing visit after becoming mql counts (an mql since an earlier day).
                if stage == "mql":
                    pricing_after_mql = True
            else:
                score += VISIT_POINTS

        # Transitions, in order: subscriber -> mql, then mql -> sql (hand-off at once).
        if stage == "subscriber" and fit and score >= MQL_SCORE:
            stage = "mql"
        if stage == "mql" and (replied or pricing_after_mql):
            # Handed off: the sales-support sequence, 3 emails at days 0, 3, 7 after hand-off
            # while inside the horizon; an unsubscribe stops it but the lead stays handed off.
            handoff = day
            for offset in SALES_SUPPORT:
                if handoff + offset >= HORIZON:
                    break
                yield env.timeout(handoff + offset - env.now)
                emails += 1
                if draw() < UNSUBSCRIBE:
                    unsubscribes += 1
                    break
            tally.add("sql", emails, unsubscribes)
            return
        yield env.timeout(1)
    tally.add(stage, emails, unsubscribes)


def run_simpy(n: int, seed: int = 0) -> Figures:
    """The reference funnel for `n` leads: one SimPy process per lead, run to the horizon."""
    rng = random.Random(seed)
    env = simpy.Environment()
    tally = Tally()
    for _ in range(n):
        env.process(lead(env, rng, tally))
    env.run()
    b = tally.buckets
    assert sum(b.values()) == n
    return Figures(n, b["subscriber"], b["mql"], b["sql"], b["unsubscribed"],
                   tally.emails, tally.emails_sq, tally.unsubscribes, tally.unsubscribes_sq)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    sim = run_simpy(args.leads, args.seed)
    t1 = time.perf_counter()
    plain = reference_model.run_plain(args.leads, args.seed + 1)
    t2 = time.perf_counter()
    print(f"SimPy: {args.leads} leads in {t1 - t0:.2f} s; plain Python: {t2 - t1:.2f} s")
    return 0 if reference_model.print_agreement(sim, plain, "simpy", "plain") else 1


if __name__ == "__main__":
    sys.exit(main())
