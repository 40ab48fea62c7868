"""The figures of `fnl simulate`, computed by hand from small hand-built runs, and the
interval arithmetic behind --runs."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterator, List

import pytest

from conftest import REPO  # noqa: F401  (puts the repository on sys.path)
from engine.pipeline import plan_for
from engine.simulate import Forecast, find_behavior, load_behavior
from engine.simulate.behavior import Capacity
from engine.simulate.figures import (Estimate, combine, estimate, figures, most_in_window, percentile, t975,
                                     wilson)
from engine.simulate.report import data, render_json, render_markdown, render_text
from engine.simulate.run import LeadRecord, Part, Run, Send, merge

D = 1440
S = 29_460_240  # 2026-01-05T00:00Z, a Monday


@pytest.fixture(scope="module")
def reference() -> Any:
    plan = plan_for(str(REPO / "funnels/reference.yaml"))
    behavior = load_behavior(find_behavior(str(REPO / "funnels/reference.yaml")), plan)
    return plan, dataclasses.replace(behavior, capacity=Capacity(2.0, ()))


REPS = ("rep1@reference.example", "rep2@reference.example")


def lead(index: int, arrived: int, reached: dict, stage: str, **kw: Any) -> LeadRecord:
    return LeadRecord(index, f"lead-{index}@x.example", "guide", arrived, created=True, reached=reached,
                      stage=stage, **kw)


def hand_run(plan: Any, behavior: Any, seed: int = 1, kept: int = 6) -> Run:
    leads = (
        lead(0, S, {"subscriber": S, "mql": S + 2 * D, "sql": S + 3 * D}, "sql", emails=5,
             handoffs=[(S + 3 * D, "sql", REPS)], handed_off_at=S + 3 * D, sla_breaches=1, deferred={"quiet_hours": 2},
             sends=[S, S + D, S + 2 * D, S + 3 * D, S + 10 * D]),
        lead(1, S + D, {"subscriber": S + D, "mql": S + 5 * D}, "mql", unsubscribed_at=S + 8 * D, emails=2,
             deferred={"frequency_cap": 1, "quiet_hours": 1}, sends=[S + D, S + 8 * D]),
        lead(2, S + 2 * D, {"subscriber": S + 2 * D}, "subscriber", unsubscribed_at=S + 4 * D, emails=1,
             sends=[S + 2 * D]),
        lead(3, S + 9 * D, {"subscriber": S + 9 * D}, "subscriber"),
        LeadRecord(4, "lead-4@x.example", "guide", S + 9 * D),  # refused by the engine: not counted
        lead(5, S + 10 * D, {"subscriber": S + 10 * D, "mql": S + 11 * D, "sql": S + 12 * D}, "sql", emails=3,
             handoffs=[(S + 12 * D, "sql", REPS)], handed_off_at=S + 12 * D,
             sends=[S + 10 * D, S + 10 * D + 1, S + 12 * D]),
    )
    sends = (
        Send(0, S, "nurture", "day-0", "nurture/day-0", None, "nurture", opened=True, clicked=True),
        Send(1, S + D, "nurture", "day-0", "nurture/day-0", None, "nurture", opened=True),
        Send(2, S + 2 * D, "nurture", "day-0", "nurture/day-0", None, "nurture", unsubscribed=True),
        Send(0, S + 2 * D, "nurture", "day-2", "nurture/day-2", None, "nurture", bounced=True),
        Send(0, S + 3 * D, "sales-support", "day-0", "sales/day-0", None, "sales", opened=True, replied=True),
    )
    return merge(plan, behavior, seed, S, 14 * D, [Part(leads[:kept], sends, rejected=0, steps=0)])


def test_stages_count_every_lead_once_with_the_unsubscribed(reference: Any) -> None:
    f = figures(hand_run(*reference))
    assert f.leads == 5
    by = {s.name: (s.leads, s.unsubscribed, s.reached) for s in f.stages}
    assert by == {"subscriber": (2, 1, 5), "mql": (1, 1, 3), "sql": (2, 0, 2)}
    assert [s.reached_share for s in f.stages] == [1.0, 0.6, 0.4]
    assert f.headline == ("mql", "sql")


def test_conversion_and_the_biggest_drop(reference: Any) -> None:
    f = figures(hand_run(*reference))
    assert [(c.source, c.target, c.reached_source, c.reached_both) for c in f.conversions] == [
        ("subscriber", "mql", 5, 3), ("mql", "sql", 3, 2)]
    assert f.conversions[0].rate == 0.6
    assert f.conversions[1].rate == pytest.approx(2 / 3)
    assert f.biggest_drop == ("subscriber", "mql")


def test_time_to_each_later_stage_is_nearest_rank(reference: Any) -> None:
    f = figures(hand_run(*reference))
    times = {t.stage: (t.leads, t.p50_days, t.p90_days) for t in f.time_to}
    # mql after 2, 4 and 1 days; sql after 3 and 2 days.
    assert times == {"mql": (3, 2.0, 4.0), "sql": (2, 2.0, 3.0)}


def test_emails_deferrals_unsubscribes_and_bounces(reference: Any) -> None:
    f = figures(hand_run(*reference))
    e = f.emails
    assert (e.sent, e.per_lead_mean, e.per_lead_p95, e.per_lead_max) == (5, 2.2, 5, 5)
    assert e.max_in_7_days == 4  # lead 0: days 0, 1, 2 and 3
    assert dict(e.by_kind) == {"nurture": 4, "sales": 1}
    d = f.deferrals
    assert (d.quiet_hours, d.frequency_cap, d.at, d.leads) == (3, 1, 0, 2)
    # Unsubscribe events are the emails a lead unsubscribed from: one here (lead 1 has no such send).
    assert (f.unsubscribes, f.unsubscribed_leads, f.bounces, f.sla_breaches) == (1, 2, 1, 1)


def test_every_step_of_the_plan_with_its_sends(reference: Any) -> None:
    plan = reference[0]
    f = figures(hand_run(*reference))
    assert [(s.sequence, s.step) for s in f.steps] == [(q.name, s.id) for q in plan.sequences for s in q.steps
                                                        if s.action == "send"]
    by = {(s.sequence, s.step): (s.sends, s.opens, s.clicks, s.replies, s.unsubscribes) for s in f.steps}
    assert by[("nurture", "day-0")] == (3, 2, 1, 0, 1)
    assert by[("nurture", "day-2")] == (1, 0, 0, 0, 0)
    assert by[("sales-support", "day-0")] == (1, 1, 0, 1, 0)
    assert by[("nurture", "day-21")] == (0, 0, 0, 0, 0)


def test_weekly_volumes_and_rep_load_against_capacity(reference: Any) -> None:
    f = figures(hand_run(*reference))
    assert f.weekly.weeks == 2
    assert dict(f.weekly.entered) == {"mql": (2, 1), "sql": (1, 1)}
    assert f.weekly.handoffs == (1, 1)
    reps = {r.rep: (r.handoffs, r.per_week_mean, r.per_week_max, r.capacity, r.weeks_over_capacity, r.sla_breaches)
            for r in f.reps}
    assert reps == {"rep1@reference.example": (1, 0.5, 1, 2.0, 0, 1),
                    "rep2@reference.example": (1, 0.5, 1, 2.0, 0, 0)}


def test_a_rep_over_capacity_is_counted_per_week(reference: Any) -> None:
    plan, behavior = reference
    run = hand_run(plan, dataclasses.replace(behavior, capacity=Capacity(0.5, ())))
    assert {r.rep: r.weeks_over_capacity for r in figures(run).reps} == {"rep1@reference.example": 1,
                                                                         "rep2@reference.example": 1}


def test_ab_variants_with_wilson_intervals() -> None:
    plan = plan_for(str(REPO / "funnels/acme"))
    behavior = load_behavior(find_behavior(str(REPO / "funnels/acme")), plan)
    sends = tuple(Send(i, S, "nurture-saas", "case-study", "saas/case-study", "a", "nurture", opened=i < 4,
                       clicked=i == 0) for i in range(10))
    leads = tuple(lead(i, S, {"subscriber": S}, "subscriber") for i in range(10))
    run = merge(plan, behavior, 1, S, 7 * D, [Part(leads, sends, 0, 0)])
    variants = {(v.sequence, v.variant): v for v in figures(run).variants}
    a, b = variants[("nurture-saas", "a")], variants[("nurture-saas", "b")]
    assert (a.sends, a.opens, a.clicks) == (10, 4, 1)
    assert a.open_rate.value == 0.4
    assert (round(a.open_rate.lo, 4), round(a.open_rate.hi, 4)) == (0.1682, 0.6873)  # Wilson, z = 1.96
    assert b.sends == 0 and b.open_rate.value is None


def test_wilson_percentile_and_window_by_hand() -> None:
    assert wilson(0, 0).value is None
    r = wilson(0, 20)
    assert r.lo == 0.0 and round(r.hi, 4) == 0.1611
    assert percentile([], 0.5) is None
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3 and percentile([5, 1, 3, 2, 4], 0.9) == 5
    assert most_in_window([0, D * 7, D * 14], 7 * D) == 1
    assert most_in_window([0, 1, 7 * D - 1, 7 * D], 7 * D) == 3


def test_t_quantiles_and_the_interval_of_a_mean() -> None:
    assert t975(1) == 12.7062 and t975(30) == 2.0423
    assert t975(40) == pytest.approx(2.0211, abs=2e-4)
    assert t975(120) == pytest.approx(1.9799, abs=2e-4)
    e = estimate([1.0, 2.0, 3.0])
    assert e.mean == 2.0
    assert e.hi - e.mean == pytest.approx(4.3027 / math.sqrt(3))
    assert estimate([7.0]) == Estimate(7.0, 7.0, 7.0)


def estimates(value: Any) -> Iterator[Estimate]:
    if isinstance(value, Estimate):
        yield value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from estimates(getattr(value, f.name))
    elif isinstance(value, tuple):
        for v in value:
            yield from estimates(v)


def test_combine_gives_every_number_as_mean_lo_hi(reference: Any) -> None:
    plan, behavior = reference
    one = figures(hand_run(plan, behavior, seed=1))
    fewer = hand_run(plan, behavior, seed=2, kept=5)  # lead 5 did not come this time
    summary = combine([one, figures(fewer)])
    f = summary.figures
    assert summary.runs == 2 and summary.seeds == (1, 2)
    # 5 and 4 leads: t(1) = 12.7062, standard error 0.5; a count's interval stops at 0.
    assert f.leads == Estimate(4.5, 0.0, pytest.approx(4.5 + 12.7062 * 0.5))
    found: List[Estimate] = list(estimates(f))
    assert len(found) > 50
    assert all(e.lo <= e.mean <= e.hi for e in found)
    assert all(e.lo >= 0 for e in found)
    shares = [s.reached_share for s in f.stages]
    assert all(isinstance(s, Estimate) and s.hi <= 1.0 for s in shares)
    same = combine([one, one]).figures
    assert all(e.lo == e.mean == e.hi for e in estimates(same))


def forecast_of(run: Run, runs: int = 1) -> Forecast:
    f = figures(run)
    return Forecast("funnels/reference.yaml", run.behavior, run.seed, runs, run.start, run.horizon / D, None, f,
                    combine([f] * runs) if runs > 1 else None)


def test_json_contract_from_a_hand_built_run(reference: Any) -> None:
    doc = json.loads(render_json(forecast_of(hand_run(*reference))))
    assert {"version", "leads", "stages", "emails_sent", "unsubscribes", "runs"} <= set(doc)
    assert doc["version"] == 1 and doc["runs"] == 1 and doc["leads"] == 5
    assert doc["stages"]["mql"] == {"leads": 1, "unsubscribed": 1, "reached": 3}
    assert doc["emails_sent"] == 5 and doc["unsubscribes"] == 1
    assert doc["weekly"]["entered"] == {"mql": [2, 1], "sql": [1, 1]}
    assert doc["biggest_drop"] == {"from": "subscriber", "to": "mql"}
    assert "intervals" not in doc


def test_json_with_runs_has_mean_lo_hi_and_says_what_the_intervals_mean(reference: Any) -> None:
    doc = data(forecast_of(hand_run(*reference), runs=3))
    assert doc["runs"] == 3
    assert doc["leads"] == {"mean": 5.0, "lo": 5.0, "hi": 5.0}
    assert doc["stages"]["sql"]["reached"] == {"mean": 2.0, "lo": 2.0, "hi": 2.0}
    assert "simulation noise only" in doc["intervals"]["meaning"]


def test_text_puts_the_headline_first_and_markdown_has_tables(reference: Any) -> None:
    fc = forecast_of(hand_run(*reference))
    text = render_text(fc)
    lines = text.splitlines()
    assert lines[0].startswith("Forecast for reference: 14 days from 2026-01-05")
    assert lines[2].strip() == "5 leads → 3 MQL (60.0 %) → 2 SQL (40.0 %)"
    assert "biggest drop-off: subscriber → mql: 40.0 % of the leads that reached subscriber never reach mql" in text
    assert "Assumptions" in text and fc.behavior.assumptions[0] in text
    md = render_markdown(fc)
    assert "**5 leads → 3 MQL (60.0 %) → 2 SQL (40.0 %)**" in md
    assert "| stage | at the horizon | of them unsubscribed | ever reached | share |" in md
    assert "| rep1@reference.example | 1 | 0.5 | 1 | 2 | 0 | 1 |" in md
    noted = render_text(forecast_of(hand_run(*reference), runs=2))
    assert "simulation noise only" in noted


def test_local_minute_is_the_wall_clock_on_every_day_including_dst_changes() -> None:
    """The cached start of a local day (`cohort._day_start`) gives what the full datetime
    arithmetic gives, on every day of a year in zones with and without DST changes, and at
    times around the changes (02:30 does not exist on a spring-forward night)."""
    from datetime import timedelta

    from engine import clock
    from engine.simulate.cohort import local_minute

    start = clock.to_minute(clock.local(0, "UTC").replace(year=2026, month=1, day=3, hour=17))
    for tz in ("America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata", "UTC"):
        for day in range(0, 366):
            for minute_of_day in (0, 59, 150, 179, 721, 1439):
                first = clock.local(start, tz)
                wall = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day)
                expected = clock.to_minute(wall + timedelta(minutes=minute_of_day))
                assert local_minute(start, day, minute_of_day, tz) == expected, (tz, day, minute_of_day)
