"""An independent plain model of the reference funnel (`REFERENCE_FUNNEL.md`).

Written from the words of the reference spec only, not from fnl's engine, so that the two
can disagree: the fidelity test and the benchmark compare `fnl simulate` with it.

Two implementations of the same model:

- `run_plain(n, seed)`: one lead at a time, one day at a time, in plain Python; the spec's
  sentences are the comments.
- `run_numpy(n, seed)`: the whole cohort as NumPy arrays, advanced day by day.

They use different random streams, so they agree in distribution, not lead for lead.
`python3 bench/reference_model.py` checks that they agree within four standard errors
(200 000 leads each by default).

The figures (`Figures`) are the spec's report at the horizon: leads per bucket (subscriber,
mql, sql/handoff, unsubscribed before hand-off), emails sent (nurture and sales) and
unsubscribe events, with the sums of squares the standard errors need.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

# --- The spec's numbers -------------------------------------------------------------------

HORIZON_DAYS = 120            # daily time step, horizon 120 days: days 0 .. 119
OPT_IN_DAYS = 30              # opt-in day uniform over days 0..29
SEGMENTS = ("saas", "manufacturing", "finance")
SEGMENT_SHARES = (0.50, 0.30, 0.20)
FIT = {"saas": True, "manufacturing": False, "finance": True}   # fit (ICP) = saas or finance
NURTURE_DAYS = (0, 2, 5, 9, 14, 21)   # days after opt-in
SALES_DAYS = (0, 3, 7)                # days after hand-off
P_UNSUBSCRIBE = 0.005
P_OPEN = {"saas": 0.35, "manufacturing": 0.25, "finance": 0.30}
P_CLICK = 0.20                # given an open
P_REPLY = 0.02                # given an open, independent of the click
P_VISIT = 0.01
P_VISIT_AFTER_CLICK = 0.05    # clicked anything on days t-6 .. t
CLICK_WINDOW_DAYS = 7
P_PRICING = 0.3               # share of visits that are pricing-page visits
POINTS_OPEN, POINTS_CLICK, POINTS_REPLY = 5.0, 10.0, 25.0
POINTS_VISIT, POINTS_PRICING = 15.0, 20.0
DECAY = 0.98                  # score multiplied by this at the start of each day
MQL_THRESHOLD = 40.0

SUBSCRIBER, MQL, SQL = 0, 1, 2
BUCKETS = ("subscriber", "mql", "sql", "unsubscribed")


@dataclass
class Figures:
    """The report at the horizon, as counts and sums (fractions and SEs are derived)."""

    leads: int
    subscriber: int          # in subscriber at the horizon, not unsubscribed
    mql: int                 # in mql at the horizon, not unsubscribed
    sql: int                 # handed off (a sales-email unsubscribe keeps the lead here)
    unsubscribed: int        # unsubscribed while subscriber or mql
    emails: int              # nurture + sales emails sent
    emails_sq: int           # sum over leads of (emails of the lead) ** 2
    unsubscribes: int        # unsubscribe events (nurture and sales)
    unsubscribes_sq: int

    def fraction(self, bucket: str) -> float:
        return getattr(self, bucket) / self.leads

    def fraction_se(self, bucket: str) -> float:
        p = self.fraction(bucket)
        return math.sqrt(p * (1.0 - p) / self.leads)

    def per_lead(self, what: str) -> float:
        """Mean of `emails` or `unsubscribes` per lead."""
        return getattr(self, what) / self.leads

    def per_lead_se(self, what: str) -> float:
        n = self.leads
        mean = getattr(self, what) / n
        var = (getattr(self, what + "_sq") - n * mean * mean) / max(n - 1, 1)
        return math.sqrt(max(var, 0.0) / n)

    def rows(self) -> List[Tuple[str, float, float]]:
        """(name, estimate, standard error) for every reported figure."""
        out = [(b, self.fraction(b), self.fraction_se(b)) for b in BUCKETS]
        out.append(("emails/lead", self.per_lead("emails"), self.per_lead_se("emails")))
        out.append(("unsubscribes/lead", self.per_lead("unsubscribes"), self.per_lead_se("unsubscribes")))
        return out


# --- Plain Python: one lead at a time -------------------------------------------------------

def _plain_lead(rng: random.Random) -> Tuple[str, int, int]:
    """One lead from opt-in to the horizon. Returns (bucket, emails, unsubscribe events)."""
    # Each lead's opt-in day is uniform over days 0..29.
    opt_in = rng.randrange(OPT_IN_DAYS)
    # Segments: saas 50 %, manufacturing 30 %, finance 20 %.
    u = rng.random()
    segment = SEGMENTS[0] if u < SEGMENT_SHARES[0] else (
        SEGMENTS[1] if u < SEGMENT_SHARES[0] + SEGMENT_SHARES[1] else SEGMENTS[2])
    fit = FIT[segment]

    stage = SUBSCRIBER
    unsubscribed = False      # unsubscribed before hand-off: nothing more, ever
    score = 0.0               # score starts at 0
    replied = False           # replied at any time
    last_click: Optional[int] = None
    mql_day: Optional[int] = None
    pricing_after_mql = False
    handoff_day: Optional[int] = None
    sales_stopped = False     # a sales-email unsubscribe stops further sales email
    emails = 0
    unsubscribes = 0

    # A lead takes part in every step of its opt-in day.
    for day in range(opt_in, HORIZON_DAYS):
        if unsubscribed:
            break
        # Order within a day: decay, then due emails and their engagement, then visits, then
        # stage transitions.
        # At the start of each day the score is multiplied by 0.98.
        score *= DECAY

        # While a lead is subscriber or mql it gets the next nurture email when due
        # (6 emails at days 0, 2, 5, 9, 14, 21 after opt-in).
        if stage in (SUBSCRIBER, MQL) and (day - opt_in) in NURTURE_DAYS:
            emails += 1
            # Each email sent: unsubscribe with probability 0.005 (then nothing more, ever).
            if rng.random() < P_UNSUBSCRIBE:
                unsubscribes += 1
                unsubscribed = True
                # An email that unsubscribes the lead ends its day: no visit that day.
                break
            # Otherwise opened with probability by industry.
            if rng.random() < P_OPEN[segment]:
                score += POINTS_OPEN
                # If opened, clicked with probability 0.20 and replied with probability 0.02
                # (independently).
                if rng.random() < P_CLICK:
                    score += POINTS_CLICK
                    last_click = day
                if rng.random() < P_REPLY:
                    score += POINTS_REPLY
                    replied = True

        # Each day every non-terminal lead visits the website with probability 0.01, or 0.05
        # if it clicked anything on days t-6 .. t (a click today counts).
        if stage in (SUBSCRIBER, MQL):
            recent = last_click is not None and day - last_click < CLICK_WINDOW_DAYS
            if rng.random() < (P_VISIT_AFTER_CLICK if recent else P_VISIT):
                # A visit is a pricing-page visit with probability 0.3: +20 instead of +15.
                if rng.random() < P_PRICING:
                    score += POINTS_PRICING
                    # A pricing visit on the day a lead becomes mql came before the
                    # transition and does not count: only an mql from an earlier day counts.
                    if stage == MQL:
                        pricing_after_mql = True
                else:
                    score += POINTS_VISIT

        # Transitions in order on the same day: subscriber -> mql, then mql -> sql.
        if stage == SUBSCRIBER and fit and score >= MQL_THRESHOLD:
            stage = MQL
            mql_day = day
        if stage == MQL and (replied or pricing_after_mql):
            # Becomes sql that day and is handed off at once.
            stage = SQL
            handoff_day = day

        # Sales support: 3 emails at days 0, 3, 7 after hand-off (the first at the hand-off),
        # while inside the horizon. Each can be unsubscribed: that counts as an unsubscribe
        # and stops further sales email, but the lead stays handed off.
        if stage == SQL:
            assert handoff_day is not None
            if not sales_stopped and (day - handoff_day) in SALES_DAYS:
                emails += 1
                if rng.random() < P_UNSUBSCRIBE:
                    unsubscribes += 1
                    sales_stopped = True
            # Engagement with sales-support email changes nothing else.
    del mql_day
    if unsubscribed:
        bucket = "unsubscribed"
    else:
        bucket = ("subscriber", "mql", "sql")[stage]
    return bucket, emails, unsubscribes


def run_plain(n: int, seed: int = 0) -> Figures:
    """The reference funnel for `n` leads, one lead at a time in plain Python."""
    rng = random.Random(seed)
    counts: Dict[str, int] = {b: 0 for b in BUCKETS}
    emails = emails_sq = unsubs = unsubs_sq = 0
    for _ in range(n):
        bucket, e, u = _plain_lead(rng)
        counts[bucket] += 1
        emails += e
        emails_sq += e * e
        unsubs += u
        unsubs_sq += u * u
    return Figures(n, counts["subscriber"], counts["mql"], counts["sql"], counts["unsubscribed"],
                   emails, emails_sq, unsubs, unsubs_sq)


# --- NumPy: the whole cohort as arrays, day by day -------------------------------------------

def run_numpy(n: int, seed: int = 0, chunk: int = 1_000_000) -> Figures:
    """The reference funnel for `n` leads as arrays (in chunks of `chunk` leads)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    totals = [0] * 9
    done = 0
    while done < n:
        m = min(chunk, n - done)
        part = _numpy_chunk(np, rng, m)
        totals = [a + b for a, b in zip(totals, part)]
        done += m
    return Figures(n, *totals[1:])


def _numpy_chunk(np, rng, n: int) -> List[int]:
    nurture_due = np.zeros(HORIZON_DAYS, dtype=bool)
    nurture_due[list(NURTURE_DAYS)] = True
    sales_due = np.zeros(HORIZON_DAYS, dtype=bool)
    sales_due[list(SALES_DAYS)] = True
    p_open_by_segment = np.array([P_OPEN[s] for s in SEGMENTS])
    fit_by_segment = np.array([FIT[s] for s in SEGMENTS])

    opt_in = rng.integers(0, OPT_IN_DAYS, size=n)
    segment = np.searchsorted(np.cumsum(SEGMENT_SHARES), rng.random(n), side="right")
    segment = np.minimum(segment, len(SEGMENTS) - 1)
    p_open = p_open_by_segment[segment]
    fit = fit_by_segment[segment]

    stage = np.zeros(n, dtype=np.int8)
    unsubscribed = np.zeros(n, dtype=bool)
    score = np.zeros(n)
    replied = np.zeros(n, dtype=bool)
    last_click = np.full(n, -10 * HORIZON_DAYS, dtype=np.int64)
    pricing_after_mql = np.zeros(n, dtype=bool)
    handoff_day = np.full(n, -1, dtype=np.int64)
    sales_stopped = np.zeros(n, dtype=bool)
    emails = np.zeros(n, dtype=np.int64)
    unsubs = np.zeros(n, dtype=np.int64)

    for day in range(HORIZON_DAYS):
        since = day - opt_in
        live = (since >= 0) & ~unsubscribed
        marketing = live & (stage < SQL)
        score *= DECAY

        # Due nurture email and its engagement.
        idx = np.flatnonzero(marketing & nurture_due[np.clip(since, 0, HORIZON_DAYS - 1)] & (since >= 0))
        if idx.size:
            emails[idx] += 1
            u = rng.random((4, idx.size))
            gone = u[0] < P_UNSUBSCRIBE
            unsubscribed[idx[gone]] = True
            unsubs[idx[gone]] += 1
            opened = ~gone & (u[1] < p_open[idx])
            clicked = opened & (u[2] < P_CLICK)
            reply = opened & (u[3] < P_REPLY)
            score[idx] += POINTS_OPEN * opened + POINTS_CLICK * clicked + POINTS_REPLY * reply
            last_click[idx[clicked]] = day
            replied[idx[reply]] = True
            marketing[idx[gone]] = False

        # Visits.
        idx = np.flatnonzero(marketing)
        if idx.size:
            recent = day - last_click[idx] < CLICK_WINDOW_DAYS
            u = rng.random((2, idx.size))
            visit = u[0] < np.where(recent, P_VISIT_AFTER_CLICK, P_VISIT)
            pricing = visit & (u[1] < P_PRICING)
            score[idx] += np.where(pricing, POINTS_PRICING, np.where(visit, POINTS_VISIT, 0.0))
            pricing_after_mql[idx[pricing & (stage[idx] == MQL)]] = True

        # Transitions: subscriber -> mql, then mql -> sql.
        to_mql = marketing & (stage == SUBSCRIBER) & fit & (score >= MQL_THRESHOLD)
        stage[to_mql] = MQL
        to_sql = marketing & (stage == MQL) & (replied | pricing_after_mql)
        stage[to_sql] = SQL
        handoff_day[to_sql] = day

        # Sales support emails.
        after = day - handoff_day
        idx = np.flatnonzero((stage == SQL) & ~sales_stopped & sales_due[np.clip(after, 0, HORIZON_DAYS - 1)])
        if idx.size:
            emails[idx] += 1
            gone = rng.random(idx.size) < P_UNSUBSCRIBE
            unsubs[idx[gone]] += 1
            sales_stopped[idx[gone]] = True

    kept = ~unsubscribed
    return [
        n,
        int(np.count_nonzero(kept & (stage == SUBSCRIBER))),
        int(np.count_nonzero(kept & (stage == MQL))),
        int(np.count_nonzero(stage == SQL)),
        int(np.count_nonzero(unsubscribed)),
        int(emails.sum()),
        int((emails * emails).sum()),
        int(unsubs.sum()),
        int((unsubs * unsubs).sum()),
    ]


# --- Comparison ------------------------------------------------------------------------------

def compare(a: Figures, b: Figures, sigmas: float = 4.0) -> List[Tuple[str, float, float, float, float, bool]]:
    """Per figure: (name, a, b, combined SE, |a-b| / SE, within `sigmas`)."""
    out = []
    for (name, x, sx), (_, y, sy) in zip(a.rows(), b.rows()):
        se = math.sqrt(sx * sx + sy * sy)
        z = abs(x - y) / se if se > 0 else (0.0 if x == y else math.inf)
        out.append((name, x, y, se, z, z <= sigmas))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    plain = run_plain(args.leads, args.seed)
    t1 = time.perf_counter()
    vec = run_numpy(args.leads, args.seed + 1)
    t2 = time.perf_counter()
    print(f"plain Python: {args.leads} leads in {t1 - t0:.2f} s; NumPy: {t2 - t1:.2f} s")
    return 0 if print_agreement(plain, vec, "plain", "numpy") else 1


def print_agreement(a: Figures, b: Figures, left: str, right: str) -> bool:
    """Print each figure of two runs side by side with its z; whether all are within 4 SE."""
    print(f"{'figure':<20}{left:>10}{right:>10}{'SE':>10}{'z':>7}")
    ok = True
    for name, x, y, se, z, good in compare(a, b):
        ok &= good
        print(f"{name:<20}{x:>10.5f}{y:>10.5f}{se:>10.5f}{z:>7.2f}{'' if good else '  > 4 SE'}")
    print("agree within 4 SE" if ok else "DISAGREE beyond 4 SE")
    return ok


if __name__ == "__main__":
    sys.exit(main())
