"""`fnl simulate` and the engine agree on randomly generated funnels, not only the examples.

tests/test_simulate_replay.py proves, for the three example funnels, that the events the
simulator generated, written as JSON Lines and replayed through `fnl trace`'s reader and
`engine.drive`, give the very same sends, stage entries, scores, unsubscribes and handoffs,
and that a run in pieces is the run in one. This file makes the same proof, with the same
helpers and the same assertions (imported from that file, not copied), for funnels that
hypothesis builds: small but varied definitions, each with its Jinja2 templates and a
matching behaviour model, written to a temporary folder as a user would write them.

What the generator varies (every combination it draws passes `engine.pipeline.plan_for`,
so validation and every lint rule of error severity; a funnel that fails is a generator
bug, and the test fails on it rather than skipping it):

* stages: subscriber, then any of mql, sql (always), opportunity and customer, the last
  one terminal; the timezone of the sender, and a `timezone` profile attribute or none;
  a required or optional `industry` enum, and an ICP (`fit`) on it or none;
* transitions: a score threshold into mql (with or without `fit`, `not unsubscribed`);
  into sql any `or` of `replied`, `clicked('<template>')`, `visited('pricing')` (with
  `since='mql'` when there is an mql), a second threshold, and/or `on: crm.demo_booked`;
  `crm.opportunity_opened` into opportunity and `crm.deal_won` into customer;
* scoring: points for opens, clicks, replies, visits and pricing visits, lead magnet
  points, fit points, no decay, a half-life or a factor per day;
* sequences: a nurture (1-4 steps) and perhaps a broadcast, with waits in minutes, hours
  and days, `at:` times, an A/B step of 2-3 variants, `unless: clicked(...)`, and an exit
  by stage or a handoff's suppression; a sales sequence on the sql stage or on
  `crm.demo_booked`; post-sale onboarding on `crm.deal_won` (in the customer stage or
  without one);
* handoff: round robin over 1-3 reps at sql with or without an `sla`, suppressing
  nurture and/or broadcast, and sometimes a customer-success handoff;
* policies: a frequency cap (1-3 per 1-7 days, for all kinds or some) and quiet hours;
* behaviour: 40-120 leads (per day or in a window, per lead magnet), horizons of 30 to
  90 days, the industry and timezone mix, email rates by default, by industry and per
  A/B variant, bounces and unsubscribes, visits (raised after a click, pricing share,
  stages), `spread` or `same_minute` timing, and CRM reactions: self-booked demos,
  demos after the handoff, opportunities, won and lost deals; sales capacity.

For each funnel, with a drawn seed: the run must have no rejected events; the replay of
its events must give the same sends (template, variant, minute), stage entries, scores
(1e-9), unsubscribes and handoffs, match the run's own record, and be the same timeline
step for step; and the run in pieces of 7 leads must be the run in one.

The budget is fixed and derandomized (15 funnels, well under a minute). For a longer hunt,
FNL_RANDOM_FUNNELS=N runs N funnels (still derandomized):

    FNL_RANDOM_FUNNELS=500 python -m pytest -q -n 0 tests/test_simulate_random_funnels.py

A failure prints the funnel, its behaviour model and the seed (shrunk by hypothesis), as
YAML ready to be written beside each other and run with `fnl simulate --seed`.

Larger budgets found two simulator bugs, now fixed and kept as one-lead tests at the end
of this file: what a lead did within the minute of its visit (second 50) was stamped
second 10 and so replayed before the visit; and an unsubscribe (or open, click, reply)
due after the horizon was counted by the run though never applied.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest
import test_simulate_replay as replay_test
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from test_simulate_replay import (
    Simulated,
    assert_same,
    final_states,
    handoffs,
    replayed,
    sends,
    simulated_run,
    stage_entries,
    unsubscribes,
)

from engine.pipeline import plan_for
from engine.simulate.behavior import find_behavior, load_behavior
from engine.simulate.run import simulate
from engine.simulate.workers import Workers
from engine.state import CLOCK

EXAMPLES = int(os.environ.get("FNL_RANDOM_FUNNELS", "0") or 0) or 15
PIECE = 7

ZONES = ["UTC", "America/New_York", "America/Los_Angeles", "America/Denver", "Europe/Berlin", "Europe/London",
         "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "Pacific/Auckland"]
INDUSTRIES = ["saas", "manufacturing", "finance"]
WAITS = ["0d", "30m", "4h", "1d", "1d12h", "2d", "3d", "5d"]
AT_TIMES = ["07:30", "09:00", "10:30", "14:00", "16:45", "19:15"]
QUIET = [("20:00", "08:00"), ("21:00", "07:00"), ("22:00", "06:00"), ("19:00", "09:00"), ("12:00", "13:30")]
SLAS = ["2h", "4h", "1d", "2d"]
CAP_WINDOWS = {"1d": 1440, "2d": 2 * 1440, "3d": 3 * 1440, "7d": 7 * 1440}
MAGNETS = {"guide": "ebook", "webinar": "webinar", "calculator": "calculator"}
REPS = ["ana@gen.example", "ben@gen.example", "chen@gen.example"]
SUCCESS = ["cs1@gen.example", "cs2@gen.example"]

TEMPLATE = """\
{% block subject %}SUBJECT{% endblock %}
{% block html -%}<p>Hi {{ lead.first_name }}.</p>BODY<p>{{ sender.postal_address }}
<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{%- endblock %}
{% block text -%}Hi {{ lead.first_name }}. BODY {{ sender.postal_address }} Unsubscribe: {{ unsubscribe_url }}{%- endblock %}
"""


class _Dumper(yaml.SafeDumper):
    """YAML as users write it: fnl allows no anchors or aliases, so shared lists are repeated."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(data: Dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated funnel, its templates, its behaviour model and the run's size and seed."""

    funnel: Dict[str, Any]
    templates: Dict[str, Tuple[str, ...]]  # template name -> the A/B variants it reads
    behavior: Dict[str, Any]
    seed: int
    leads: int
    features: frozenset

    def funnel_yaml(self) -> str:
        return _yaml(self.funnel)

    def behavior_yaml(self) -> str:
        return _yaml(self.behavior)

    def write(self, folder: Path) -> Path:
        path = folder / "gen.yaml"
        path.write_text(self.funnel_yaml(), encoding="utf-8")
        (folder / "gen.behavior.yaml").write_text(self.behavior_yaml(), encoding="utf-8")
        for name, variants in self.templates.items():
            body = "".join(f"{{% if variant == '{v}' %}}<b>{v}</b>{{% endif %}}" for v in variants)
            file = folder / "templates" / f"{name}.j2"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(TEMPLATE.replace("SUBJECT", name).replace("BODY", body), encoding="utf-8")
        return path

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return (f"Case(seed={self.seed}, leads={self.leads})\n# gen.yaml\n{self.funnel_yaml()}"
                f"# gen.behavior.yaml\n{self.behavior_yaml()}"
                f"# templates: {', '.join(f'{k} {list(v)}' if v else k for k, v in self.templates.items())}")


def _minutes(duration: str) -> int:
    total, number = 0, ""
    for ch in duration:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * {"m": 1, "h": 60, "d": 1440, "w": 10080}[ch]
            number = ""
    return total


def _quiet(at: str, quiet: Optional[Tuple[str, str]]) -> bool:
    if quiet is None:
        return False
    start, end = quiet
    return start <= at < end if start < end else (at >= start or at < end)


def _most_in_window(steps: Sequence[Dict[str, Any]], window: int) -> int:
    """The most sends of these steps in any window of `window` minutes, allowing a day for
    `at:` to move a send later (so the count never undercounts what the linter sees)."""
    times, now = [], 0
    for step in steps:
        now += _minutes(step.get("wait", "0d"))
        if "send" in step:
            times.append(now)
    return max((sum(1 for u in times if t <= u < t + window + 1440) for t in times), default=0)


def _rates(draw, *, low_open: float = 0.15) -> Dict[str, float]:
    return {"open": draw(st.sampled_from([low_open, 0.3, 0.5, 0.8])),
            "click": draw(st.sampled_from([0.05, 0.2, 0.5])),
            "reply": draw(st.sampled_from([0.0, 0.02, 0.1, 0.3])),
            "unsubscribe": draw(st.sampled_from([0.0, 0.005, 0.03])),
            "bounce": draw(st.sampled_from([0.0, 0.005, 0.02]))}


def _delay(draw, short: bool = False) -> Any:
    kind = draw(st.sampled_from(["fixed", "uniform", "exponential"]))
    if kind == "fixed":
        return draw(st.sampled_from(["1h", "1d", "3d"] if short else ["1d", "5d", "10d"]))
    if kind == "uniform":
        return {"min": "1h", "max": draw(st.sampled_from(["1d", "3d", "10d"]))}
    return {"mean": draw(st.sampled_from(["6h", "2d", "7d"])), "max": draw(st.sampled_from(["14d", "30d"]))}


@st.composite
def cases(draw) -> Case:  # one funnel, section by section
    features: Set[str] = set()
    templates: Dict[str, Tuple[str, ...]] = {}

    def template(name: str, variants: Tuple[str, ...] = ()) -> str:
        templates[name] = variants
        return name

    # -- stages, profile, fit ------------------------------------------------------------------
    has_mql, has_opp, has_customer = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    stages = ["subscriber"] + ["mql"] * has_mql + ["sql"] + ["opportunity"] * has_opp + ["customer"] * has_customer
    tz_attr = draw(st.booleans())
    industry_required = draw(st.booleans())
    use_fit = draw(st.booleans())
    profile: Dict[str, Any] = {"first_name": {"type": "string", "required": True},
                               "industry": {"enum": list(INDUSTRIES), "required": industry_required}}
    if tz_attr:
        profile["timezone"] = {"type": "string", "format": "timezone"}
        features.add("timezone attribute")
    funnel: Dict[str, Any] = {
        "fnl": 1, "funnel": "gen", "templates": "templates",
        "sender": {"from": "Gen <hello@gen.example>", "postal_address": "1 Main St, Springfield",
                   "timezone": draw(st.sampled_from(ZONES)), "unsubscribe_url": "https://gen.example/u"},
        "profile": profile,
    }
    if use_fit:
        funnel["fit"] = {"when": "industry in ['saas', 'finance']"}
    funnel["stages"] = stages
    funnel["terminal_stages"] = [stages[-1]]

    # -- lead magnets ----------------------------------------------------------------------------
    magnets: Dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(MAGNETS)), min_size=1, max_size=2, unique=True)):
        magnet: Dict[str, Any] = {"kind": MAGNETS[name], "consent": "Email me. I can unsubscribe at any time.",
                                  "enters": "subscriber"}
        if draw(st.booleans()):
            magnet["score"] = draw(st.sampled_from([5, 10, 20]))
        if draw(st.booleans()):
            magnet["delivers"] = template(f"magnets/{name}")
            features.add("magnet delivery")
        magnets[name] = magnet
    funnel["lead_magnets"] = magnets

    # -- sequences' steps first (transitions name their templates) ------------------------------
    quiet = draw(st.sampled_from(QUIET)) if draw(st.booleans()) else None
    ab_done = False

    def steps(prefix: str, count: int, *, first_wait: bool, may_ab: bool) -> List[Dict[str, Any]]:
        nonlocal ab_done
        out: List[Dict[str, Any]] = []
        for i in range(count):
            step: Dict[str, Any] = {}
            if i or first_wait:
                step["wait"] = draw(st.sampled_from(WAITS if i else ["0d", "1h", "1d"]))
            name = f"{prefix}/step-{i + 1}"
            if may_ab and not ab_done and draw(st.integers(0, 2)) == 0:
                names = ("a", "b", "c")[: draw(st.integers(2, 3))]
                weights = [50, 50] if len(names) == 2 else [40, 30, 30]
                step["send"] = template(name, names)
                step["variants"] = dict(zip(names, weights))
                ab_done = True
                features.add("a/b variants")
            else:
                step["send"] = template(name)
            if draw(st.integers(0, 3)) == 0:
                at = draw(st.sampled_from([t for t in AT_TIMES if not _quiet(t, quiet)]))
                step["at"] = at
                features.add("at: time")
            if i and draw(st.integers(0, 3)) == 0:
                step["unless"] = f"clicked('{out[-1]['send']}')"
                features.add("unless clicked")
            out.append(step)
        return out

    marketing = ["subscriber"] + ["mql"] * has_mql
    nurture_steps = steps("nurture", draw(st.integers(1, 4)), first_wait=draw(st.booleans()), may_ab=True)
    suppressed: Set[str] = set()
    sequences: Dict[str, Any] = {}
    nurture: Dict[str, Any] = {"kind": "nurture", "stage": marketing if len(marketing) > 1 else "subscriber",
                               "steps": nurture_steps}
    if draw(st.booleans()):
        nurture["exit"] = {"stage_at_least": "sql"}
    else:  # kept out of sales' way by the handoff's suppression instead
        nurture["exit"] = {"on": ["crm.deal_lost"]}
        suppressed.add("nurture")
        features.add("suppress by handoff")
    sequences["nurture"] = nurture
    if draw(st.booleans()):
        broadcast = {"kind": "broadcast", "stage": list(marketing),
                     "steps": steps("broadcast", draw(st.integers(1, 2)), first_wait=True, may_ab=True)}
        if draw(st.booleans()):
            broadcast["exit"] = {"stage_at_least": "sql"}
        else:
            broadcast["exit"] = {"on": ["crm.deal_lost"]}
            suppressed.add("broadcast")
        sequences["broadcast"] = broadcast
        features.add("broadcast")

    # -- scoring and transitions ------------------------------------------------------------------
    events = {"email.opened": draw(st.sampled_from([2, 5, 10])), "email.clicked": draw(st.sampled_from([5, 10, 15])),
              "email.replied": draw(st.sampled_from([10, 25])), "site.visited": draw(st.sampled_from([0, 4, 15])),
              "site.visited.pricing": draw(st.sampled_from([10, 20]))}
    scoring: Dict[str, Any] = {"events": {k: v for k, v in events.items() if v}}
    if use_fit and draw(st.booleans()):
        scoring["fit"] = [{"when": "industry == 'saas'", "points": draw(st.sampled_from([5, 10]))}]
    decay = draw(st.sampled_from(["none", "half_life", "factor"]))
    if decay == "half_life":
        scoring["decay"] = {"half_life": draw(st.sampled_from(["14d", "30d", "60d"]))}
        features.add("decay")
    elif decay == "factor":
        scoring["decay"] = {"factor": draw(st.sampled_from([0.95, 0.98, 0.99])), "every": "1d"}
        features.add("decay")
    thresholds: Dict[str, int] = {}
    transitions: List[Dict[str, Any]] = []
    if has_mql:
        thresholds["mql"] = draw(st.sampled_from([10, 20, 30]))
        when = "score >= thresholds.mql"
        if use_fit and draw(st.booleans()):
            when = "fit and " + when
        if draw(st.booleans()):
            when += " and not unsubscribed"
        transitions.append({"from": "subscriber", "to": "mql", "when": when})
    before_sql = "mql" if has_mql else "subscriber"
    triggers = []
    if draw(st.booleans()):
        triggers.append("replied")
    if draw(st.booleans()):
        triggers.append(f"clicked('{draw(st.sampled_from([s['send'] for s in nurture_steps]))}')")
    if draw(st.booleans()):
        triggers.append("visited('pricing', since='mql')" if has_mql else "visited('pricing')")
    if draw(st.integers(0, 3)) == 0:
        thresholds["sql"] = thresholds.get("mql", 0) + draw(st.sampled_from([10, 20]))
        triggers.append("score >= thresholds.sql")
    demo_in = not triggers or draw(st.booleans())
    if triggers:
        transitions.append({"from": before_sql, "to": "sql", "when": " or ".join(triggers)})
        features.update(t.split("(")[0] for t in triggers)
    if demo_in:
        transitions.append({"from": marketing if len(marketing) > 1 else "subscriber", "to": "sql",
                            "on": "crm.demo_booked"})
        features.add("on crm.demo_booked")
    if has_opp:
        transitions.append({"from": "sql", "to": "opportunity", "on": "crm.opportunity_opened"})
    if has_customer:
        transitions.append({"from": "opportunity" if has_opp else "sql", "to": "customer", "on": "crm.deal_won"})
    if thresholds:
        scoring["thresholds"] = thresholds
    funnel["scoring"] = scoring
    funnel["transitions"] = transitions

    # -- sales and post-sale sequences --------------------------------------------------------------
    if draw(st.booleans()):
        on_demo = draw(st.booleans())
        sales: Dict[str, Any] = {"kind": "sales"}
        if on_demo:
            sales["on"] = "crm.demo_booked"
        else:
            sales["stage"] = "sql"
        sales["steps"] = steps("sales", draw(st.integers(1, 3)), first_wait=draw(st.booleans()), may_ab=False)
        sales["exit"] = {"on": [draw(st.sampled_from(["crm.deal_lost", "email.replied", "crm.deal_won"]))]}
        sequences["sales"] = sales
        features.add("sales sequence")
    post_sale = has_customer or draw(st.integers(0, 2)) == 0
    if post_sale:
        onboarding: Dict[str, Any] = {"kind": "onboarding", "on": "crm.deal_won"}
        if has_customer:
            onboarding["stage"] = "customer"
        onboarding["steps"] = steps("onboarding", draw(st.integers(1, 3)), first_wait=True, may_ab=False)
        sequences["onboarding"] = onboarding
        features.add("onboarding")
    funnel["sequences"] = sequences

    # -- handoff and policies ----------------------------------------------------------------------
    handoff: Dict[str, Any] = {}
    reps = REPS[: draw(st.integers(1, 3))]
    rule: Dict[str, Any] = {"assign": {"round_robin": list(reps)}}
    if draw(st.booleans()):
        rule["sla"] = draw(st.sampled_from(SLAS))
        features.add("sla")
    suppress = sorted(suppressed | set(draw(st.lists(st.sampled_from(["nurture", "broadcast"]), unique=True))))
    if suppress:
        rule["suppress"] = suppress
    handoff["sql"] = rule
    if has_customer and draw(st.booleans()):
        handoff["customer"] = {"assign": {"round_robin": SUCCESS[: draw(st.integers(1, 2))]}}
        if "sales" in sequences and draw(st.booleans()):
            handoff["customer"]["suppress"] = ["sales"]
        features.add("customer handoff")
    funnel["handoff"] = handoff
    policies: Dict[str, Any] = {}
    if draw(st.booleans()):
        per = draw(st.sampled_from(sorted(CAP_WINDOWS)))
        applies = draw(st.sampled_from([None, ["nurture", "broadcast"], ["nurture"], ["nurture", "broadcast", "sales"]]))
        capped = [s for s in sequences.values() if applies is None or s["kind"] in applies]
        need = max((_most_in_window(s["steps"], CAP_WINDOWS[per]) for s in capped), default=1)
        cap: Dict[str, Any] = {"max": max(draw(st.integers(1, 3)), need), "per": per}
        if applies is not None:
            cap["applies_to"] = applies
        policies["frequency_cap"] = cap
        features.add("frequency cap")
    if quiet is not None:
        policies["quiet_hours"] = {"from": quiet[0], "to": quiet[1]}
        features.add("quiet hours")
    if policies:
        funnel["policies"] = policies

    # -- the behaviour model -----------------------------------------------------------------------
    same_minute = draw(st.integers(0, 3)) == 0
    arrivals: Dict[str, Any] = {}
    for name in magnets:
        if draw(st.booleans()):
            arrivals[name] = {"per_day": draw(st.sampled_from([2, 5, 12.5]))}
        else:
            arrivals[name] = {"leads": draw(st.sampled_from([50, 200])),
                              "window": {"start": draw(st.sampled_from(["0d", "3d"])),
                                         "end": draw(st.sampled_from(["10d", "20d"]))}}
    industry_mix: Dict[str, Any] = {"weights": dict(zip(INDUSTRIES, draw(st.sampled_from([(1, 1, 1), (5, 3, 2),
                                                                                            (1, 0, 1)]))))}
    if not industry_required and draw(st.booleans()):
        industry_mix["missing"] = 0.2
    mix: Dict[str, Any] = {"industry": industry_mix}
    if tz_attr:
        zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True))
        mix["timezone"] = {"weights": {z: 1 for z in zones}}
        if draw(st.booleans()):
            mix["timezone"]["missing"] = 0.1
    email: Dict[str, Any] = {"default": _rates(draw)}
    if draw(st.booleans()):
        email["by_attribute"] = {"industry": {"saas": {"open": 0.6}, "manufacturing": {"open": 0.2}}}
    by_template = {}
    for name, variants in templates.items():
        if variants and draw(st.booleans()):
            by_template[name] = {"variants": {v: {"click": draw(st.sampled_from([0.1, 0.4]))} for v in variants}}
    if by_template:
        email["by_template"] = by_template
    visits: Dict[str, Any] = {"daily": draw(st.sampled_from([0.0, 0.02, 0.1])),
                              "pages": {"pricing": draw(st.sampled_from([0.1, 0.3, 0.6]))}}
    if draw(st.booleans()):
        visits["after_click"] = {"daily": draw(st.sampled_from([0.1, 0.3])), "for": draw(st.sampled_from(["3d", "7d"]))}
    if draw(st.integers(0, 3)) == 0:
        visits["stages"] = list(marketing)
    if same_minute:
        timing: Dict[str, Any] = {"day": "same_minute", "at": draw(st.sampled_from(["09:00", "12:00", "23:30"]))}
        features.add("same_minute")
    else:
        timing = {"day": "spread", "hours": draw(st.sampled_from([{"from": "08:00", "to": "18:00"},
                                                                   {"from": "06:00", "to": "23:00"},
                                                                   {"from": "22:00", "to": "02:00"}])),
                  "delays": {"open": {"mean": draw(st.sampled_from(["30m", "4h", "1d"])), "max": "3d"},
                             "click": {"mean": "2m", "max": "1h"}}}
    crm: Dict[str, Any] = {}
    if demo_in and draw(st.integers(0, 3)):
        crm["self-booked"] = {"after": "subscriber", "outcomes": {
            "crm.demo_booked": {"probability": draw(st.sampled_from([0.1, 0.3])), "delay": _delay(draw)}}}
    if draw(st.integers(0, 3)):
        crm["acceptance"] = {"after": "sql", "outcomes": {
            "crm.demo_booked": {"probability": draw(st.sampled_from([0.3, 0.6, 0.9])), "delay": _delay(draw, True)}}}
    closing = "opportunity" if has_opp else "sql"
    if has_opp:
        crm["time-to-opportunity"] = {"after": draw(st.sampled_from(["sql", "crm.demo_booked"])), "outcomes": {
            "crm.opportunity_opened": {"probability": draw(st.sampled_from([0.5, 0.9])), "delay": _delay(draw)}}}
    if has_customer or post_sale or draw(st.booleans()):
        won = draw(st.sampled_from([0.3, 0.6]))
        crm["win-rate"] = {"after": closing, "outcomes": {
            "crm.deal_won": {"probability": won, "delay": _delay(draw)},
            "crm.deal_lost": {"probability": draw(st.sampled_from([0.0, 0.2, 1 - won])), "delay": _delay(draw)}}}
    behavior: Dict[str, Any] = {"behavior": 1, "funnel": "gen", "horizon": draw(st.sampled_from(["30d", "60d", "90d"])),
                                "arrivals": arrivals, "profile": mix, "email": email, "visits": visits,
                                "timing": timing, "crm": crm}
    if draw(st.booleans()):
        behavior["sales"] = {"leads_per_week": draw(st.sampled_from([2, 20]))}
    return Case(funnel, templates, behavior, draw(st.integers(1, 2**31 - 1)), draw(st.integers(40, 120)),
                frozenset(features))


# -- the proof, per funnel ------------------------------------------------------------------------

@dataclasses.dataclass
class Tally:
    """What the examples exercised, so the test can say the generator reached it."""

    examples: int = 0
    features: Dict[str, int] = dataclasses.field(default_factory=dict)

    def saw(self, *names: str) -> None:
        for name in names:
            self.features[name] = self.features.get(name, 0) + 1


def prove(case: Case, tally: Tally) -> None:
    with tempfile.TemporaryDirectory(prefix="fnl-random-funnel-") as tmp:
        folder = Path(tmp)
        path = case.write(folder)
        note(f"seed={case.seed} leads={case.leads}\n# gen.yaml\n{case.funnel_yaml()}# gen.behavior.yaml\n"
             f"{case.behavior_yaml()}")
        plan = plan_for(str(path))  # a ProblemsFound here is a generator bug: it names the rule
        plan_, run, log = simulated_run(str(path), case.seed, case.leads)
        events_file = folder / "gen.events.jsonl"
        with events_file.open("w", encoding="utf-8") as out:
            for applied in log:
                if applied.event.type != CLOCK:
                    out.write(json.dumps(applied.event.to_json(), ensure_ascii=False) + "\n")
        sim = Simulated(str(path), plan_, run, log, events_file, run.start + run.horizon - 1)
        note(f"{len(run.leads)} leads, {len(run.sends)} sends, {run.steps} engine steps")

        assert run.rejected == 0, f"the engine rejected {run.rejected} simulated events"
        assert run.leads, "no lead arrived"
        # The replay test's own assertions, on this funnel's run.
        replay_test.test_replay_gives_the_same_sends_stages_scores_unsubscribes_and_handoffs(sim)
        replay_test.test_replay_matches_the_runs_own_record(sim)
        replay_test.test_replay_is_the_same_timeline_step_for_step(sim)

        behavior_path = find_behavior(path)
        assert behavior_path is not None
        pieces = simulate(plan, load_behavior(behavior_path, plan), seed=case.seed, leads=case.leads,
                          workers=Workers(chunk=PIECE), engine="per-lead")
        assert pieces.leads == run.leads
        assert pieces.sends == run.sends
        assert (pieces.unsubscribes, pieces.rejected, pieces.steps) == (run.unsubscribes, run.rejected, run.steps)

        tally.examples += 1
        tally.saw(*case.features)
        replay = replayed(sim)
        if len(run.leads) > PIECE:
            tally.saw("several pieces")
        if sends(replay):
            tally.saw("sends")
        if any(s.variant for s in run.sends):
            tally.saw("variant sent")
        if any(len(rec.reached) > 1 for rec in run.leads):
            tally.saw("stage moved")
        if handoffs(replay):
            tally.saw("handoff")
        if len({rec.owner for rec in run.leads if rec.owner}) > 1:
            tally.saw("several owners")
        if run.unsubscribes:
            tally.saw("unsubscribe")
        if any(rec.deferred.get("quiet_hours") for rec in run.leads):
            tally.saw("held by quiet hours")
        if any(rec.deferred.get("frequency_cap") for rec in run.leads):
            tally.saw("held by the cap")
        if any(a.event.type.startswith("crm.") for a in log):
            tally.saw("crm event")
        if any(state.score != 0 for state in final_states(replay).values()):
            tally.saw("scores")
        if len(stage_entries(replay)) > len(final_states(replay)):
            tally.saw("stage entries")


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=cases())
def _every_random_funnel(tally: Tally, case: Case) -> None:
    prove(case, tally)


def test_random_funnels_replay_the_same_and_run_the_same_in_pieces() -> None:
    tally = Tally()
    _every_random_funnel(tally)
    # Every generated funnel is valid (no filtering), so hypothesis ran the whole budget...
    assert tally.examples >= EXAMPLES * 0.9, f"only {tally.examples} of {EXAMPLES} generated funnels ran"
    # ...and the runs reached what there is to compare.
    seen = tally.features
    for what in ("sends", "stage moved", "handoff", "several owners", "unsubscribe", "crm event", "scores",
                 "variant sent", "held by quiet hours", "several pieces", "timezone attribute", "decay", "sla",
                 "onboarding", "frequency cap", "on crm.demo_booked", "visited", "clicked", "replied"):
        assert seen.get(what), f"no generated funnel's run had {what!r}: {sorted(seen.items())}"


# -- divergences the generator found, shrunk by hand ----------------------------------------------
# Each is one lead, seed 1. They fail until the simulator is fixed (strict: a fix makes them
# pass, and then the marker must go). The random test above meets them with larger budgets
# (FNL_RANDOM_FUNNELS=300), not in its default 15 funnels.

SHRUNK_FUNNEL = """\
fnl: 1
funnel: gen
templates: templates
sender: {from: "Gen <hello@gen.example>", postal_address: "1 Main St, Springfield", unsubscribe_url: "https://gen.example/u"}
profile: {first_name: {type: string, required: true}}
lead_magnets: {guide: {kind: ebook, consent: "Email me. I can unsubscribe at any time.", enters: subscriber}}
"""


def _shrunk(folder: Path, funnel: str, behavior: str, template: str) -> Path:
    path = folder / "gen.yaml"
    path.write_text(SHRUNK_FUNNEL + funnel, encoding="utf-8")
    (folder / "gen.behavior.yaml").write_text(behavior, encoding="utf-8")
    file = folder / "templates" / f"{template}.j2"
    file.parent.mkdir(parents=True)
    file.write_text(TEMPLATE.replace("SUBJECT", template).replace("BODY", ""), encoding="utf-8")
    plan_for(str(path))  # valid, lint-clean
    return path


SAME_MINUTE_OPEN = ("""\
stages: [subscriber, sql]
terminal_stages: [sql]
scoring: {events: {email.opened: 5}}
transitions: [{from: subscriber, to: sql, when: "visited('pricing')"}]
sequences:
  sales: {kind: sales, stage: sql, steps: [{send: s/hello}], exit: {on: [crm.deal_lost]}}
handoff: {sql: {assign: {round_robin: [ana@gen.example]}}}
""", """\
behavior: 1
funnel: gen
horizon: 2d
arrivals: {guide: {leads: 1, window: {start: 0d, end: 1d}}}
email: {default: {open: 1, click: 0, reply: 0, unsubscribe: 0, bounce: 0}}
visits: {daily: 1, pages: {pricing: 1}}
timing: {day: same_minute, at: "09:00"}
""")
# The same in `spread` timing: a CRM reaction whose delay is 0 minutes (an exponential
# delay rounds to 0 now and then) to a stage entered on a visit.
SPREAD_CRM = ("""\
stages: [subscriber, sql, customer]
terminal_stages: [customer]
transitions:
  - {from: subscriber, to: sql, when: "visited('pricing')"}
  - {from: sql, to: customer, on: crm.deal_won}
sequences:
  nurture: {kind: nurture, stage: subscriber, steps: [{send: s/hello}], exit: {stage_at_least: sql}}
handoff: {sql: {assign: {round_robin: [ana@gen.example]}}}
""", """\
behavior: 1
funnel: gen
horizon: 2d
arrivals: {guide: {leads: 1, window: {start: 0d, end: 1d}}}
email: {default: {open: 0, unsubscribe: 0, bounce: 0}}
visits: {daily: 1, pages: {pricing: 1}}
crm: {win-rate: {after: sql, outcomes: {crm.deal_won: {probability: 1, delay: 0d}}}}
""")


@pytest.mark.parametrize("funnel,behavior", [SAME_MINUTE_OPEN, SPREAD_CRM], ids=["same-minute-open", "spread-crm"])
def test_what_follows_a_visit_in_its_minute_replays_after_the_visit(tmp_path: Path, funnel: str, behavior: str) -> None:
    path = _shrunk(tmp_path, funnel, behavior, "s/hello")
    plan, run, log = simulated_run(str(path), 1, 1)
    events_file = tmp_path / "gen.events.jsonl"
    events_file.write_text("".join(json.dumps(a.event.to_json()) + "\n" for a in log if a.event.type != CLOCK),
                           encoding="utf-8")
    replay = replayed(Simulated(str(path), plan, run, log, events_file, run.start + run.horizon - 1))
    # Simulated: optin 09:00:00, site.visited 09:00:50 (-> sql), then email.opened (+5) or
    # crm.deal_won (-> customer) in the same minute: stamped no earlier than 09:00:50, so the
    # replay, in time order, applies it after the visit too (it was stamped 09:00:10).
    assert_same("stage entries", stage_entries(log), stage_entries(replay))
    (mine,), (theirs,) = final_states(log).values(), final_states(replay).values()
    assert theirs.score == mine.score


def test_the_runs_unsubscribes_are_the_unsubscribes_the_engine_took(tmp_path: Path) -> None:
    path = _shrunk(tmp_path, """\
stages: [subscriber, customer]
terminal_stages: [customer]
transitions: [{from: subscriber, to: customer, on: crm.deal_won}]
sequences:
  nurture: {kind: nurture, stage: subscriber, steps: [{send: n/hello}], exit: {stage_at_least: customer}}
""", """\
behavior: 1
funnel: gen
horizon: 1d
arrivals: {guide: {leads: 1}}
email: {default: {open: 0, click: 0, reply: 0, unsubscribe: 1, bounce: 0}}
visits: {daily: 0}
timing: {day: spread, delays: {open: 2d}}
""", "n/hello")
    _plan, run, log = simulated_run(str(path), 1, 1)
    # One email sent, its unsubscribe due two days later, after the one-day horizon: no
    # email.unsubscribed is applied, yet the run reports one unsubscribe.
    assert [s.template for s in run.sends] == ["n/hello"]
    assert_same("unsubscribes", [run.unsubscribes], [len(unsubscribes(log))])
