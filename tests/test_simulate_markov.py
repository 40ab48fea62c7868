"""`fnl simulate` against the exact figures of a Markov chain (issue 10).

`tests/cases/markov/` is a funnel whose days are memoryless: every lead opts in on day 0,
gets one email a day with the same rates, and visits the site with the same probability
every day; one click or one pricing visit is worth the whole MQL threshold, and nothing
else scores. So a lead's day is one step of a Markov chain, with states

    S   subscriber, not unsubscribed         (transient)
    Mc  became mql by clicking in an email   (absorbing)
    Mv  became mql by visiting pricing       (absorbing)
    U   unsubscribed while a subscriber      (absorbing)

and one day from S, in the order README.md and the behaviour schema give for
`timing: {day: same_minute}` (the due email and its engagement, then the visit; the
transitions are checked after each event):

    S -> U   u                         the email unsubscribes the lead (drawn before the
                                       open); an unsubscribed lead gets no more email,
                                       does not visit, and makes no engagement-driven move
    S -> Mc  (1 - u) o c               opened, then clicked: 40 points, score >= 40
    S -> Mv  (1 - u) (1 - o c) v s     no click; a visit, to pricing: 40 points
    S -> S   the rest                  an open alone, a reply, another page: 0 points

The numbers (u, o, c, v, s, the horizon, the sequence's waits, the points and the
threshold) are read from the funnel and its behaviour file, and the shape the chain relies
on (no decay, no other scored event, no caps or quiet hours, one rate level, ...) is
asserted there, so an edit to the case that breaks the chain fails loudly. The exact
distribution after d days is e_S P^d (numpy's matrix power); fnl's simulation of a few
thousand leads must agree with every figure within four standard errors, and a chain with
one rate 30 % off must not.

Nothing here reads fnl's engine: the chain is written from README.md's words.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

np = pytest.importorskip("numpy")
yaml = pytest.importorskip("yaml")

from conftest import check  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.simulate.behavior import find_behavior, load_behavior  # noqa: E402
from engine.simulate.run import Run, simulate  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CASE = REPO / "tests" / "cases" / "markov"
FUNNEL = CASE / "funnel.yaml"
BEHAVIOR = CASE / "markov.behavior.yaml"
LEADS = 3000
SEED = 20260105
SIGMAS = 4.0
DAY = 1440
STATES = ("S", "Mc", "Mv", "U")


def _days(text: str) -> int:
    match = re.fullmatch(r"(\d+)d", str(text))
    assert match, f"the chain counts whole days; {text!r} is not one"
    return int(match.group(1))


@dataclass(frozen=True)
class Rates:
    unsubscribe: float  # u, per email
    open: float         # o, per email not unsubscribed from
    click: float        # c, given the open
    visit: float        # v, per day
    pricing: float      # s, share of visits to pricing
    days: int           # the horizon, in days: each lead lives days 0 .. days-1

    def scaled(self, **factors: float) -> "Rates":
        values = dict(self.__dict__)
        for name, factor in factors.items():
            values[name] = min(1.0, values[name] * factor)
        return Rates(**values)


def read_case() -> Rates:
    """The chain's numbers from the case's YAML, after checking the case is still the
    memoryless funnel the chain describes."""
    funnel = yaml.safe_load(FUNNEL.read_text(encoding="utf-8"))
    model = yaml.safe_load(BEHAVIOR.read_text(encoding="utf-8"))

    # -- the funnel ------------------------------------------------------------------------
    assert funnel["stages"] == ["subscriber", "mql"] and funnel["terminal_stages"] == ["mql"]
    assert set(funnel) & {"fit", "segments", "personas", "policies", "entries", "handoff"} == set(), \
        "the chain has no fit, groups, caps, quiet hours, entries or handoffs"
    scoring = funnel["scoring"]
    threshold = scoring["thresholds"]["mql"]
    assert set(scoring) == {"events", "thresholds"}, "no decay, fit points or repeat counting"
    # One scored event of either kind reaches the threshold (>= compares, README), and no
    # other event scores, so a subscriber's score is 0 until the event that makes it mql.
    assert scoring["events"] == {"email.clicked": threshold, "site.visited.pricing": threshold}
    assert funnel["transitions"] == [{"from": "subscriber", "to": "mql", "when": "score >= thresholds.mql"}]
    (_name, sequence), = funnel["sequences"].items()
    assert sequence["stage"] == "subscriber" and sequence["exit"] == {"stage_at_least": "mql"}
    steps = sequence["steps"]
    assert set().union(*map(set, steps)) == {"wait", "send"}, "no step conditions, variants or at: times"
    assert [_days(s["wait"]) for s in steps] == [0] + [1] * (len(steps) - 1), "one email a day from day 0"
    assert len({s["send"] for s in steps}) == len(steps), "a template of its own for every day"
    (magnet, spec), = funnel["lead_magnets"].items()
    assert spec["enters"] == "subscriber" and "score" not in spec

    # -- the behaviour model ---------------------------------------------------------------
    assert model["funnel"] == funnel["funnel"]
    assert model["timing"]["day"] == "same_minute"
    assert model["arrivals"] == {magnet: {"leads": LEADS, "window": {"start": "0d", "end": "1d"}}}
    assert set(model["email"]) == {"default"}, "one rate level: every email has the same rates"
    rates = model["email"]["default"]
    assert rates["reply"] == 0 and rates["bounce"] == 0
    visits = model["visits"]
    assert "after_click" not in visits, "a click must not change how often a lead visits"
    assert visits["stages"] == ["subscriber"] and set(visits["pages"]) == {"pricing"}
    assert set(model["crm"] or {}) == set()
    days = _days(model["horizon"])
    assert days <= len(steps), "an email on every day of the horizon"
    return Rates(unsubscribe=rates["unsubscribe"], open=rates["open"], click=rates["click"],
                 visit=visits["daily"], pricing=visits["pages"]["pricing"], days=days)


# -- the chain -----------------------------------------------------------------------------

def transition_matrix(r: Rates) -> Any:
    """One day, rows and columns in STATES order."""
    u, oc, vs = r.unsubscribe, r.open * r.click, r.visit * r.pricing
    to_u = u
    to_mc = (1 - u) * oc
    to_mv = (1 - u) * (1 - oc) * vs
    p = np.zeros((4, 4))
    p[0] = [1 - to_u - to_mc - to_mv, to_mc, to_mv, to_u]
    p[1, 1] = p[2, 2] = p[3, 3] = 1.0
    assert np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    return p


def exact_figures(r: Rates) -> Dict[str, float]:
    """Every figure the test checks, as a probability for one lead:
    `mql by day d` and `unsubscribed by day d` (d counted from 1: day 0 is the first),
    and at the horizon the share in each state."""
    p = transition_matrix(r)
    start = np.array([1.0, 0, 0, 0])
    out: Dict[str, float] = {}
    for d in range(1, r.days + 1):
        dist = start @ np.linalg.matrix_power(p, d)
        out[f"mql by day {d}"] = float(dist[1] + dist[2])
        out[f"unsubscribed by day {d}"] = float(dist[3])
    for state, share in zip(STATES, dist):
        out[f"horizon {state}"] = float(share)
    return out


def closed_form(r: Rates) -> Dict[str, float]:
    """The same horizon figures by absorbing-chain algebra: with q = P(S -> S) and r_j the
    one-day absorption into j, P(in j after D days) = r_j (1 - q^D) / (1 - q)."""
    p = transition_matrix(r)
    q, d = p[0, 0], r.days
    out = {"horizon S": q ** d}
    for j, state in enumerate(STATES[1:], start=1):
        out[f"horizon {state}"] = p[0, j] * (1 - q ** d) / (1 - q)
    return out


# -- the simulation ------------------------------------------------------------------------

@dataclass(frozen=True)
class Simulated:
    n: int
    counts: Dict[str, int]
    seconds: float


def observe(run: Run, rates: Rates) -> Simulated:
    """The simulation's leads counted as the exact figures are."""
    days = rates.days
    clicked_at = {(s.lead, s.minute) for s in run.sends if s.clicked}
    counts = {name: 0 for name in exact_figures(rates)}
    for rec in run.leads:
        assert rec.created
        mql_day = unsub_day = None
        if "mql" in rec.reached:
            mql_day = (rec.reached["mql"] - rec.arrived) // DAY
            state = "Mc" if (rec.index, rec.reached["mql"]) in clicked_at else "Mv"
            # Each day's email is out before what the lead does that day, and mql ends the
            # sequence: an mql of day k (from 0) got k + 1 emails; it never unsubscribed.
            assert rec.emails == mql_day + 1 and rec.unsubscribed_at is None, rec
        elif rec.unsubscribed_at is not None:
            unsub_day = (rec.unsubscribed_at - rec.arrived) // DAY
            state = "U"
            assert rec.emails == unsub_day + 1, rec
        else:
            state = "S"
            assert rec.stage == "subscriber" and rec.emails == days, rec
        counts[f"horizon {state}"] += 1
        for d in range(1, days + 1):
            counts[f"mql by day {d}"] += mql_day is not None and mql_day < d
            counts[f"unsubscribed by day {d}"] += unsub_day is not None and unsub_day < d
    return Simulated(len(run.leads), counts, 0.0)


def judge(exact: Dict[str, float], sim: Simulated) -> List[Tuple[str, float, float, float, float]]:
    """(figure, exact, simulated, SE, z) for every figure; SE = sqrt(p (1 - p) / n)."""
    rows = []
    for name, p in exact.items():
        x = sim.counts[name] / sim.n
        se = math.sqrt(p * (1 - p) / sim.n)
        rows.append((name, p, x, se, (x - p) / se if se > 0 else math.inf))
    return rows


def rejected(rows) -> List[str]:
    return [name for name, _, _, _, z in rows if not abs(z) <= SIGMAS]


def table(rows) -> str:
    lines = [f"{'figure':<26}{'exact':>9}{'fnl':>9}{'SE':>9}{'z':>7}"]
    for name, p, x, se, z in rows:
        lines.append(f"{name:<26}{p:>9.5f}{x:>9.5f}{se:>9.5f}{z:>7.2f}{'  > 4 SE' if abs(z) > SIGMAS else ''}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def rates() -> Rates:
    return read_case()


@pytest.fixture(scope="module")
def simulated(rates: Rates) -> Simulated:
    plan = plan_for(str(CASE))
    assert find_behavior(CASE) == BEHAVIOR
    behavior = load_behavior(BEHAVIOR, plan)
    assert behavior.horizon_minutes == rates.days * DAY
    began = time.perf_counter()
    run = simulate(plan, behavior, seed=SEED, leads=LEADS, engine="per-lead")
    seconds = time.perf_counter() - began
    assert len(run.leads) == LEADS and run.rejected == 0
    assert len({rec.arrived for rec in run.leads}) == 1, "every lead opts in at the same minute of day 0"
    sim = observe(run, rates)
    return Simulated(sim.n, sim.counts, seconds)


# -- the tests -----------------------------------------------------------------------------

def test_the_case_is_lint_clean() -> None:
    assert check(CASE) == []


def test_the_chain_is_a_distribution_and_not_trivial(rates: Rates) -> None:
    exact = exact_figures(rates)
    horizon = {k: v for k, v in exact.items() if k.startswith("horizon ")}
    assert math.isclose(sum(horizon.values()), 1.0, abs_tol=1e-12)
    for name, value in closed_form(rates).items():
        assert math.isclose(exact[name], value, rel_tol=1e-12, abs_tol=1e-15), name
    # Every horizon figure is far from 0 and 1, so a wrong engine or chain shows.
    assert all(0.05 < v < 0.95 for v in horizon.values()), horizon
    assert 0.05 < exact[f"mql by day {rates.days}"] < 0.95
    for d in range(2, rates.days + 1):  # strictly rising: every day adds something
        assert exact[f"mql by day {d}"] > exact[f"mql by day {d - 1}"] > 0
        assert exact[f"unsubscribed by day {d}"] > exact[f"unsubscribed by day {d - 1}"] > 0


def test_fnl_simulate_agrees_with_the_exact_chain(rates: Rates, simulated: Simulated) -> None:
    rows = judge(exact_figures(rates), simulated)
    print(f"\n{simulated.n} leads, seed {SEED}, simulated in {simulated.seconds:.1f} s\n{table(rows)}")
    assert all(se > 0 for _, _, _, se, _ in rows)
    bad = rejected(rows)
    assert not bad, f"fnl simulate and the exact chain disagree beyond {SIGMAS:g} SE on {bad}:\n{table(rows)}"


@pytest.mark.parametrize("wrong", [
    {"unsubscribe": 1.3},
    {"unsubscribe": 0.7},
    {"click": 1.3},
    {"click": 0.7},
    {"visit": 1.3},
    {"visit": 0.7},
], ids=lambda w: "-".join(f"{k}x{v:g}" for k, v in w.items()))
def test_a_chain_with_one_rate_30_percent_off_is_rejected(rates: Rates, simulated: Simulated,
                                                          wrong: Dict[str, float]) -> None:
    """The same 4-SE check on the same simulation has the power to tell the chain from a
    slightly wrong one."""
    rows = judge(exact_figures(rates.scaled(**wrong)), simulated)
    assert rejected(rows), f"a chain with {wrong} passes too:\n{table(rows)}"
