"""The engine core: `core.step(plan, state, event, shared)` and `drive`.

Every test builds a small, purpose-made definition on disk (YAML plus Jinja templates),
compiles it through the real pipeline (`plan_for`: load, validate, lint, compile) and then
feeds events to the one transition function. Expected values are derived from the
definition written in the test, not copied from a run.
"""
from __future__ import annotations

import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import replace
from typing import Iterable, List, Optional, Sequence
from zoneinfo import ZoneInfo

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import core  # noqa: E402
from engine.drive import drive  # noqa: E402
from engine.errors import ProblemsFound  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.plan import Plan  # noqa: E402
from engine.state import Action, Event, LeadState, Shared, iso, minutes  # noqa: E402

DAY = 1440
HOUR = 60
# Monday 2 March 2026, 09:00 UTC: a working morning in UTC (the lab sender's zone).
T0 = minutes(datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))

CONSENT = "I agree to receive email from Lab. I can unsubscribe at any time."

TEMPLATE = """\
{% block subject %}NAME for {{ lead.first_name }}{% endblock %}
{% block html -%}
<p>Hi {{ lead.first_name }}, this is NAME.</p>
<p>{{ sender.postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
{%- endblock %}
{% block text -%}
Hi {{ lead.first_name }}, this is NAME.
{{ sender.postal_address }}. Unsubscribe: {{ unsubscribe_url }}
{%- endblock %}
"""

HEADER = f"""\
fnl: 1
funnel: lab
templates: templates
sender:
  from: "Lab <hi@lab.example>"
  postal_address: "Lab Inc., 1 Main St, Springfield"
  timezone: UTC
  unsubscribe_url: https://lab.example/unsubscribe
profile:
  first_name: {{type: string, required: true}}
  industry: {{enum: [saas, other], required: true}}
  employees: {{type: integer, minimum: 1}}
  region: {{enum: [na, emea, apac]}}
  timezone: {{type: string, format: timezone}}
lead_magnets:
  guide: {{kind: ebook, consent: "{CONSENT}", enters: subscriber, score: 5}}
"""


def build(tmp_path: Path, body: str, templates: Iterable[str] = (), header: str = HEADER) -> Plan:
    """Write a definition (header + body) and its templates, compile it through the real
    pipeline, and return the plan. Any lint error fails the test loudly."""
    root = tmp_path / "lab"
    root.mkdir(parents=True, exist_ok=True)
    (root / "funnel.yaml").write_text(header + textwrap.dedent(body), encoding="utf-8")
    for name in templates:
        path = root / "templates" / f"{name}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE.replace("NAME", name), encoding="utf-8")
    try:
        return plan_for(str(root))
    except ProblemsFound as exc:  # show the located problems, not a bare exception
        pytest.fail("test definition does not compile:\n" + "\n".join(
            f"{p.location.line}:{p.location.column} {p.code} {p.message}" for p in exc.problems))


def optin(lead: str, at: int = T0, magnet: str = "guide", **profile) -> Event:
    profile.setdefault("first_name", lead.split("@")[0].title())
    profile.setdefault("industry", "saas")
    return Event("optin", at, lead, magnet=magnet, profile=profile)


def ev(kind: str, at: int, lead: str, **kw) -> Event:
    return Event(kind, at, lead, **kw)


def run(plan: Plan, events: Sequence[Event], until: Optional[int] = None) -> List[Action]:
    """Every action `drive` produces for the events, the clock running to `until`."""
    return [a for applied in drive(plan, events, until) for a in applied.result.actions]


def final_states(plan: Plan, events: Sequence[Event], until: Optional[int] = None) -> dict:
    states = {}
    for applied in drive(plan, events, until):
        if applied.result.state is not None:
            states[applied.event.lead] = applied.result.state
    return states


def of(actions: Iterable[Action], kind: str, lead: Optional[str] = None) -> List[Action]:
    return [a for a in actions if a.type == kind and (lead is None or a.lead == lead)]


def sends(actions: Iterable[Action], lead: Optional[str] = None) -> List[Action]:
    return of(actions, "send_email", lead)


def was_sent(state: LeadState, template: str, at: int) -> LeadState:
    """The state as if `template` had gone out to the lead at `at` (for tests of what
    engagement does, apart from the sequence that would send it)."""
    facts = dict(state.facts)
    facts[f"email.sent.{template}"] = at
    return replace(state, facts=tuple(sorted(facts.items())))


def chain(plan: Plan, events: Sequence[Event], state: Optional[LeadState] = None,
          shared: Shared = Shared()) -> List[core.Result]:
    """Apply events one by one with core.step (no clock in between)."""
    out = []
    for e in events:
        r = core.step(plan, state, e, shared)
        state, shared = r.state, r.shared
        out.append(r)
    return out


# -- opt-in, consent and rejected input -------------------------------------------------

TWO_MAGNETS = """\
  demo-request: {kind: trial, consent: "Call me about a demo. I can unsubscribe at any time.", enters: mql, score: 30}
stages: [subscriber, mql, customer]
transitions:
  - {from: subscriber, to: mql, on: crm.demo_booked}
  - {from: mql, to: customer, on: crm.deal_won}
scoring:
  events: {site.visited: 5}
  fit:
    - {when: "employees >= 100", points: 7}
"""


def test_optin_records_consent_and_enters_the_magnets_stage(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    for magnet, stage, base in (("guide", "subscriber", 5), ("demo-request", "mql", 30)):
        lead = f"{magnet}@corp.example"
        r = core.step(plan, None, optin(lead, magnet=magnet, employees=250))
        assert r.state is not None
        assert r.state.stage == stage == plan.magnet(magnet).enters
        assert r.state.consent == plan.magnet(magnet).consent
        assert r.state.consent_at == T0 and r.state.source == magnet
        assert dict(r.state.entered) == {stage: T0}
        # the magnet's own points plus the fit rule that holds (employees >= 100)
        assert r.state.score == base + 7
        recorded = of(r.actions, "consent_recorded")
        assert len(recorded) == 1
        assert recorded[0].get("magnet") == magnet
        assert recorded[0].get("consent") == plan.magnet(magnet).consent
        assert recorded[0].at == T0 and recorded[0].lead == lead


def test_a_small_company_gets_no_fit_points(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    r = core.step(plan, None, optin("small@corp.example", employees=20))
    assert r.state is not None and r.state.score == 5


def test_unknown_lead_magnet_is_rejected_without_state(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    r = core.step(plan, None, optin("x@corp.example", magnet="ebook-2019"))
    assert r.state is None
    assert [a.type for a in r.actions] == ["rejected"]
    reason = r.actions[0].get("reason")
    assert "ebook-2019" in reason and "guide" in reason and "demo-request" in reason


@pytest.mark.parametrize("profile, attribute", [
    ({"employees": "many"}, "employees"),            # wrong type
    ({"employees": True}, "employees"),              # a boolean is not an integer
    ({"employees": 0}, "employees"),                 # below `minimum: 1`
    ({"industry": "retail"}, "industry"),            # not in the enum
    ({"shoe_size": 44}, "shoe_size"),                # not a declared attribute
    ({"first_name": None}, "first_name"),            # required and missing
    ({"first_name": "x" * 1001}, "first_name"),      # absurdly long
])
def test_bad_profile_is_rejected_without_state(tmp_path, profile, attribute):
    plan = build(tmp_path, TWO_MAGNETS)
    event = optin("x@corp.example")
    merged = {**dict(event.profile), **profile}
    merged = {k: v for k, v in merged.items() if v is not None}
    r = core.step(plan, None, Event("optin", T0, "x@corp.example", magnet="guide", profile=merged))
    assert r.state is None
    assert [a.type for a in r.actions] == ["rejected"]
    assert f"`{attribute}`" in r.actions[0].get("reason")


def test_profile_update_with_a_bad_value_is_rejected_and_state_kept(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    state = core.step(plan, None, optin("x@corp.example", employees=20)).state
    r = core.step(plan, state, Event("profile.updated", T0 + 5, "x@corp.example", profile={"region": "mars"}))
    assert r.state == state
    assert [a.type for a in r.actions] == ["rejected"] and "`region`" in r.actions[0].get("reason")
    ok = core.step(plan, state, Event("profile.updated", T0 + 5, "x@corp.example", profile={"employees": 500}))
    assert dict(ok.state.profile)["employees"] == 500


@pytest.mark.parametrize("kind, outcome", [
    ("email.opened", "ignored"), ("email.unsubscribed", "ignored"),   # no email was sent to a stranger
    ("site.visited", "held"), ("crm.demo_booked", "held"),            # applied once the lead opts in
    ("tick", None),
])
def test_events_before_optin_are_held_or_ignored_never_rejected(tmp_path, kind, outcome):
    plan = build(tmp_path, TWO_MAGNETS)
    r = core.step(plan, None, ev(kind, T0, "stranger@corp.example"))
    assert [a.type for a in r.actions] == ([outcome] if outcome else [])
    if outcome == "held":
        assert isinstance(r.state, core.Prospect) and [e.type for e in r.state.held] == [kind]
        assert "held until stranger@corp.example opts in" in r.actions[0].get("reason")
    else:
        assert r.state is None
    if outcome == "ignored":
        assert "has not entered the funnel" in r.actions[0].get("reason")


def test_out_of_order_event_is_rejected_and_changes_nothing(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    lead = "x@corp.example"
    state = chain(plan, [optin(lead), ev("site.visited", T0 + DAY, lead, page="blog")])[-1].state
    late = core.step(plan, state, ev("site.visited", T0 + HOUR, lead, page="blog"))
    assert late.state == state  # no points for an event from the past
    assert [a.type for a in late.actions] == ["rejected"]
    assert iso(T0 + HOUR) in late.actions[0].get("reason")


def test_step_is_pure(tmp_path):
    plan = build(tmp_path, TWO_MAGNETS)
    state = core.step(plan, None, optin("x@corp.example")).state
    shared = Shared((("x", 1),))
    a = core.step(plan, state, ev("site.visited", T0 + 1, "x@corp.example", page="blog"), shared)
    b = core.step(plan, state, ev("site.visited", T0 + 1, "x@corp.example", page="blog"), shared)
    assert a == b
    assert state.score == 5 and a.state.score == 10  # the input state did not move
    assert shared == Shared((("x", 1),))


# -- scoring and decay --------------------------------------------------------------------

SCORING = """\
stages: [subscriber, customer]
transitions:
  - {from: subscriber, to: customer, on: crm.deal_won}
scoring:
  events:
    site.visited: 5
    site.visited.pricing: 20
    site.visited.careers: -10
    email.clicked: 8
    email.clicked.n/case-study: 15
    crm.asset_downloaded: 3
crm: {events: [asset_downloaded]}
"""


@pytest.mark.parametrize("event, points", [
    (dict(kind="site.visited", page="pricing"), 20),       # the narrow entry, not 5 + 20
    (dict(kind="site.visited", page="blog"), 5),           # no narrow entry: the base one
    (dict(kind="site.visited", page="careers"), -10),      # narrow entries may be negative
    (dict(kind="site.visited"), 5),
    (dict(kind="email.clicked", template="n/case-study"), 15),
    (dict(kind="email.clicked", template="n/other"), 8),
    (dict(kind="email.opened", template="n/other"), 0),    # not scored at all
    (dict(kind="crm.asset_downloaded"), 3),
    (dict(kind="tick"), 0),
])
def test_scoring_uses_the_narrowest_matching_entry(tmp_path, event, points):
    plan = build(tmp_path, SCORING, ["n/case-study"])
    lead = "s@corp.example"
    state = core.step(plan, None, optin(lead)).state
    if "template" in event:  # engagement counts only for an email the lead was sent
        state = was_sent(state, event["template"], T0)
    assert state.score == 5  # the guide's points
    kind = event.pop("kind")
    r = core.step(plan, state, Event(kind, T0 + 10, lead, **event))
    assert r.state.score == pytest.approx(5 + points)


def _score_after(plan: Plan, lead: str, gaps: Sequence[int]) -> List[float]:
    state = core.step(plan, None, optin(lead, at=T0)).state
    out = []
    for at in gaps:
        state = core.step(plan, state, ev("tick", at, lead)).state
        out.append(state.score)
    return out


def test_decay_by_factor_in_whole_periods(tmp_path):
    plan = build(tmp_path, SCORING.replace("scoring:\n", "scoring:\n  decay: {factor: 0.5, every: 1d}\n"),
                 ["n/case-study"])
    midnight = minutes(datetime(2026, 3, 3, tzinfo=timezone.utc))  # the first period boundary after T0
    scores = _score_after(plan, "d@corp.example", [midnight - 1, midnight, midnight + DAY - 1, midnight + 2 * DAY + 600])
    # 5 points until the boundary; halved once at it; still once a minute before the next;
    # three boundaries passed by the last tick
    assert scores == [5, 2.5, 2.5, pytest.approx(5 * 0.5 ** 3)]


def test_decay_by_half_life(tmp_path):
    plan = build(tmp_path, SCORING.replace("scoring:\n", "scoring:\n  decay: {half_life: 2d}\n"), ["n/case-study"])
    midnight = minutes(datetime(2026, 3, 3, tzinfo=timezone.utc))
    scores = _score_after(plan, "h@corp.example", [midnight + 1 * DAY, midnight + 3 * DAY, midnight + 9 * DAY])
    # two day boundaries make one half-life, four make two, ten make five
    assert scores == [pytest.approx(2.5), pytest.approx(1.25), pytest.approx(5 / 32)]


def test_decay_window_drops_old_points(tmp_path):
    body = SCORING.replace("scoring:\n", "scoring:\n  decay: {window: 7d}\n")
    plan = build(tmp_path, body, ["n/case-study"], header=HEADER.replace("score: 5}", "score: 0}"))
    lead = "w@corp.example"
    states = chain(plan, [optin(lead), ev("site.visited", T0 + 60, lead, page="pricing"),
                          ev("tick", T0 + 10 * DAY, lead)])
    assert states[1].state.score == 20
    assert states[2].state.score == 0  # the only points are 10 days old, outside the 7-day window


# -- stages -----------------------------------------------------------------------------

FUNNEL = """\
fit: {when: "industry == 'saas' and employees >= 50"}
stages: [subscriber, mql, sql, opportunity, customer, lost]
terminal_stages: [customer, lost]
scoring:
  events: {site.visited.pricing: 20, email.replied: 25, site.visited: 2}
  thresholds: {mql: 30}
transitions:
  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql"}
  - {from: mql, to: sql, when: "replied"}
  - {from: [subscriber, mql], to: sql, on: crm.demo_booked}
  - {from: sql, to: opportunity, on: crm.opportunity_opened}
  - {from: opportunity, to: customer, on: crm.deal_won}
  - {from: [subscriber, mql, sql, opportunity], to: lost, on: crm.deal_lost}
handoff:
  sql:
    assign: {round_robin: [ana@lab.example, ben@lab.example, cy@lab.example]}
    sla: 4h
    notify: [crm, owner]
    suppress: [nurture]
  opportunity:
    assign:
      territory:
        by: region
        routes: {na: [nora@lab.example, ned@lab.example], emea: [emma@lab.example]}
        default: [dee@lab.example]
    sla: 1d
    suppress: [nurture]
"""


def test_mql_transition_is_explained_with_the_score_and_fit_values(tmp_path):
    plan = build(tmp_path, FUNNEL)
    lead = "dana@loopwise.example"
    results = chain(plan, [optin(lead, employees=120),
                           ev("site.visited", T0 + 60, lead, page="pricing"),
                           ev("site.visited", T0 + 120, lead, page="pricing")])
    assert results[1].state.stage == "subscriber" and results[1].state.score == 25  # 5 + 20 < 30
    second = results[2]
    assert second.state.stage == "mql" and second.state.score == 45
    [change] = of(second.actions, "stage_changed")
    assert change.get("from") == "subscriber" and change.get("to") == "mql"
    assert change.get("transition") == plan.transitions[0].id
    because = change.get("because")
    assert because.startswith("mql because")
    assert "score 45 ≥ 30" in because             # the score and the resolved threshold
    assert "industry=saas" in because and "employees=120" in because  # the fit values
    assert dict(second.state.entered)["mql"] == T0 + 120
    assert of(second.actions, "crm_update")[0].get("stage") == "mql"


def test_no_mql_without_fit_however_high_the_score(tmp_path):
    plan = build(tmp_path, FUNNEL)
    lead = "big@steel.example"
    events = [optin(lead, industry="other", employees=5000)]
    events += [ev("site.visited", T0 + 10 * i, lead, page="pricing") for i in range(1, 6)]
    final = chain(plan, events)[-1].state
    assert final.score == 5 + 5 * 20
    assert final.stage == "subscriber"


def test_transitions_run_in_order_within_one_event(tmp_path):
    plan = build(tmp_path, FUNNEL)
    lead = "r@corp.example"
    state = was_sent(core.step(plan, None, optin(lead, employees=120)).state, "x", T0)
    # a reply is worth 25: 5 + 25 >= 30 makes an MQL, and the reply itself makes the MQL an SQL
    r = core.step(plan, state, ev("email.replied", T0 + 60, lead, template="x"))
    changes = [(a.get("from"), a.get("to")) for a in of(r.actions, "stage_changed")]
    assert changes == [("subscriber", "mql"), ("mql", "sql")]
    assert r.state.stage == "sql"
    assert dict(r.state.entered) == {"subscriber": T0, "mql": T0 + 60, "sql": T0 + 60}
    assert len(of(r.actions, "handoff")) == 1


def test_transitions_are_each_checked_once_in_declaration_order(tmp_path):
    # The same rules declared the other way round: mql -> sql is checked first, while the
    # lead is still a subscriber, so one event only makes an MQL; the next makes the SQL.
    body = FUNNEL.replace(
        '  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql"}\n'
        '  - {from: mql, to: sql, when: "replied"}\n',
        '  - {from: mql, to: sql, when: "replied"}\n'
        '  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql"}\n')
    assert body != FUNNEL
    plan = build(tmp_path, body)
    lead = "r@corp.example"
    first = was_sent(core.step(plan, None, optin(lead, employees=120)).state, "x", T0)
    results = [None] + chain(plan, [ev("email.replied", T0 + 60, lead, template="x"), ev("tick", T0 + 61, lead)],
                             first)
    assert [(a.get("from"), a.get("to")) for a in of(results[1].actions, "stage_changed")] == [("subscriber", "mql")]
    assert [(a.get("from"), a.get("to")) for a in of(results[2].actions, "stage_changed")] == [("mql", "sql")]


def test_round_robin_hands_leads_to_reps_in_turn(tmp_path):
    plan = build(tmp_path, FUNNEL)
    reps = plan.handoff_for("sql").assign.reps
    assert reps == ("ana@lab.example", "ben@lab.example", "cy@lab.example")
    leads = [f"lead{i}@corp.example" for i in range(7)]
    events = [optin(lead, at=T0 + i) for i, lead in enumerate(leads)]
    events += [ev("crm.demo_booked", T0 + 100 + i, lead) for i, lead in enumerate(leads)]
    actions = run(plan, events)
    owners = [a.get("owner") for a in of(actions, "handoff")]
    assert owners == [reps[i % 3] for i in range(7)]
    # the same through core.step, threading Shared by hand
    shared = Shared()
    got = []
    for lead in leads:
        state = core.step(plan, None, optin(lead), shared).state
        r = core.step(plan, state, ev("crm.demo_booked", T0 + 5, lead), shared)
        shared = r.shared
        got.append(r.state.owner)
    assert got == owners


def test_territory_routing_and_default(tmp_path):
    plan = build(tmp_path, FUNNEL)
    regions = ["na", "na", "emea", "apac", None, "na", "emea"]
    events = []
    for i, region in enumerate(regions):
        lead = f"t{i}@corp.example"
        profile = {"region": region} if region else {}
        events += [optin(lead, at=T0 + i, **profile), ev("crm.demo_booked", T0 + 10 + i, lead),
                   ev("crm.opportunity_opened", T0 + 20 + i, lead)]
    events.sort(key=lambda e: e.at)
    actions = run(plan, events)
    owners = {a.lead: a.get("owner") for a in of(actions, "handoff") if a.get("stage") == "opportunity"}
    # each route keeps its own turn; apac has no route and, like a missing region, takes the default
    assert [owners[f"t{i}@corp.example"] for i in range(7)] == [
        "nora@lab.example", "ned@lab.example", "emma@lab.example", "dee@lab.example", "dee@lab.example",
        "nora@lab.example", "emma@lab.example"]


def test_handoff_sets_the_sla_deadline_from_now(tmp_path):
    plan = build(tmp_path, FUNNEL)
    lead = "sla@corp.example"
    at = T0 + 3 * HOUR + 17
    results = chain(plan, [optin(lead, region="emea"), ev("crm.demo_booked", at, lead),
                           ev("crm.opportunity_opened", at + DAY, lead)])
    sql, opp = results[1], results[2]
    [h] = of(sql.actions, "handoff")
    assert h.get("stage") == "sql" and h.get("owner") == "ana@lab.example"
    assert sql.state.sla_deadline == at + plan.handoff_for("sql").sla_minutes == at + 4 * HOUR
    assert h.get("sla_deadline") == iso(at + 4 * HOUR)
    notified = sorted(a.get("to") for a in of(sql.actions, "notify"))
    assert notified == ["ana@lab.example", "crm"]  # `owner` resolves to the assigned rep
    [h2] = of(opp.actions, "handoff")
    assert h2.get("owner") == "emma@lab.example" and opp.state.owner == "emma@lab.example"
    assert h2.get("sla_deadline") == iso(at + DAY + DAY)


# -- sequences ----------------------------------------------------------------------------

NURTURE = FUNNEL + """\
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 2d, send: n/two}
      - {wait: 2d, send: n/three}
      - {wait: 2d, send: n/four}
    exit: {on: [crm.deal_lost]}
  follow-up:
    kind: sales
    stage: sql
    steps:
      - {send: s/intro}
      - {wait: 3d, send: s/nudge}
    exit: {on: [crm.deal_lost]}
"""
NURTURE_TEMPLATES = ["n/one", "n/two", "n/three", "n/four", "s/intro", "s/nudge"]


def test_nurture_runs_on_its_schedule(tmp_path):
    plan = build(tmp_path, NURTURE, NURTURE_TEMPLATES)
    lead = "n@corp.example"
    actions = run(plan, [optin(lead)], until=T0 + 30 * DAY)
    got = [(a.get("template"), a.at) for a in sends(actions)]
    assert got == [("n/one", T0), ("n/two", T0 + 2 * DAY), ("n/three", T0 + 4 * DAY), ("n/four", T0 + 6 * DAY)]
    assert of(actions, "exit_sequence")[-1].get("reason") == "completed"
    assert all(a.get("kind") == "nurture" and a.get("sequence") == "nurture" for a in sends(actions))


def test_suppression_stops_nurture_when_sales_takes_over(tmp_path):
    plan = build(tmp_path, NURTURE, NURTURE_TEMPLATES)
    lead = "n@corp.example"
    booked = T0 + 3 * DAY
    actions = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead)], until=T0 + 30 * DAY)
    nurture = [a for a in sends(actions) if a.get("sequence") == "nurture"]
    assert [a.get("template") for a in nurture] == ["n/one", "n/two"]  # days 0 and 2, not 4 and 6
    assert all(a.at < booked for a in nurture)
    [left] = [a for a in of(actions, "exit_sequence") if a.get("sequence") == "nurture"]
    assert left.get("reason") == "suppressed in sql" and left.at == booked
    sales = [(a.get("template"), a.at) for a in sends(actions) if a.get("sequence") == "follow-up"]
    assert sales == [("s/intro", booked), ("s/nudge", booked + 3 * DAY)]


def test_unsubscribe_exits_every_sequence_and_nothing_is_sent_after(tmp_path):
    plan = build(tmp_path, NURTURE, NURTURE_TEMPLATES)
    lead = "u@corp.example"
    booked = T0 + DAY
    gone = booked + HOUR
    events = [optin(lead), ev("crm.demo_booked", booked, lead), ev("email.unsubscribed", gone, lead, template="s/intro"),
              ev("crm.opportunity_opened", gone + DAY, lead), ev("email.clicked", gone + 2 * DAY, lead, template="s/intro")]
    actions = run(plan, events, until=T0 + 60 * DAY)
    assert {a.get("sequence") for a in sends(actions)} == {"nurture", "follow-up"}  # both were running
    assert all(a.at <= gone for a in sends(actions))
    assert not [a for a in sends(actions) if a.at >= gone]
    exits = [(a.get("sequence"), a.get("reason")) for a in of(actions, "exit_sequence") if a.at == gone]
    # nurture had already been suppressed in sql; the trace says what the unsubscribe stopped
    assert exits == [("follow-up", f"unsubscribed at {iso(gone)}; not sent: s/nudge")]
    state = final_states(plan, events, until=T0 + 60 * DAY)[lead]
    assert state.unsubscribed and state.running == ()


def test_unsubscribe_in_the_middle_of_nurture(tmp_path):
    plan = build(tmp_path, NURTURE, NURTURE_TEMPLATES)
    lead = "u2@corp.example"
    gone = T0 + 3 * DAY
    events = [optin(lead), ev("email.unsubscribed", gone, lead, template="n/two"),
              ev("crm.demo_booked", gone + DAY, lead)]  # sales takes over: still no email
    actions = run(plan, events, until=T0 + 90 * DAY)
    assert [a.get("template") for a in sends(actions)] == ["n/one", "n/two"]
    assert [(a.get("sequence"), a.get("reason")) for a in of(actions, "exit_sequence")] == [
        ("nurture", f"unsubscribed at {iso(gone)}; not sent: n/three and 1 later")]
    assert not of(actions, "enter_sequence", lead)[1:]  # nothing entered after the unsubscribe


def test_sequences_never_restart(tmp_path):
    body = FUNNEL + """\
sequences:
  demo-follow-up:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: s/intro}
      - {wait: 1d, send: s/nudge}
    exit: {on: [crm.deal_lost]}
"""
    plan = build(tmp_path, body.replace("[subscriber, mql], to: sql, on: crm.demo_booked",
                                        "[subscriber, mql], to: sql, on: crm.opportunity_opened"),
                 ["s/intro", "s/nudge"])
    lead = "again@corp.example"
    events = [optin(lead), ev("crm.demo_booked", T0 + HOUR, lead), ev("crm.demo_booked", T0 + 5 * DAY, lead),
              ev("crm.demo_booked", T0 + 9 * DAY, lead)]
    actions = run(plan, events, until=T0 + 30 * DAY)
    assert [a.get("template") for a in sends(actions)] == ["s/intro", "s/nudge"]
    assert len(of(actions, "enter_sequence")) == 1
    assert of(actions, "enter_sequence")[0].at == T0 + HOUR  # started by the event, not by the opt-in


def test_sequence_started_by_a_crm_event(tmp_path):
    body = FUNNEL + """\
sequences:
  deal-support:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: s/prep}
      - {wait: 3d, send: s/recap}
    exit: {on: [crm.deal_lost]}
"""
    plan = build(tmp_path, body, ["s/prep", "s/recap"])
    quiet_lead, booked_lead = "quiet@corp.example", "booked@corp.example"
    booked = T0 + 2 * DAY
    actions = run(plan, [optin(quiet_lead), optin(booked_lead), ev("crm.demo_booked", booked, booked_lead)],
                  until=T0 + 20 * DAY)
    assert not sends(actions, quiet_lead)
    assert [(a.get("template"), a.at) for a in sends(actions, booked_lead)] == [("s/prep", booked),
                                                                               ("s/recap", booked + 3 * DAY)]


def test_acme_deal_support_starts_on_demo_booked():
    plan = plan_for(str(REPO / "funnels" / "acme"))
    seq = plan.sequence("deal-support")
    lead = "dana@loopwise.example"
    booked = T0 + 2 * DAY + 6 * HOUR  # 10:00 in New York (the sender's zone): outside quiet hours
    events = [optin(lead, magnet="whitepaper", industry="saas", employees=120, role="manager"),
              ev("crm.demo_booked", booked, lead)]
    actions = run(plan, events, until=booked + 30 * DAY)
    deal = [a for a in sends(actions) if a.get("sequence") == "deal-support"]
    expected, at = [], booked
    for step in seq.steps:
        at += step.wait_minutes
        if step.action == "send":
            expected.append((step.template, at))
    assert [(a.get("template"), a.at) for a in deal] == expected
    # no nurture after the booking: sql suppresses it
    assert not [a for a in sends(actions) if a.get("kind") in ("nurture", "broadcast") and a.at >= booked]


def test_when_and_unless_steps_are_skipped(tmp_path):
    body = FUNNEL + """\
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 2d, send: n/expert, when: "clicked('n/one')"}
      - {wait: 0d, send: n/webinar, unless: "clicked('n/one')"}
      - {wait: 2d, send: n/last}
    exit: {stage_at_least: sql}
"""
    plan = build(tmp_path, body, ["n/one", "n/expert", "n/webinar", "n/last"])
    clicker, reader = "clicker@corp.example", "reader@corp.example"
    events = [optin(clicker), optin(reader), ev("email.clicked", T0 + HOUR, clicker, template="n/one")]
    actions = run(plan, events, until=T0 + 20 * DAY)
    assert [(a.get("template"), a.at) for a in sends(actions, clicker)] == [
        ("n/one", T0), ("n/expert", T0 + 2 * DAY), ("n/last", T0 + 4 * DAY)]
    # a skipped step takes no time of its own: the last email still comes two days later
    assert [(a.get("template"), a.at) for a in sends(actions, reader)] == [
        ("n/one", T0), ("n/webinar", T0 + 2 * DAY), ("n/last", T0 + 4 * DAY)]


def test_ab_variant_is_deterministic_and_near_the_weights(tmp_path):
    body = FUNNEL + """\
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/case-study, variants: {a: 70, b: 30}}
    exit: {stage_at_least: sql}
"""
    plan = build(tmp_path, body, ["n/case-study"])
    leads = [f"lead{i}@corp{i % 37}.example" for i in range(2000)]

    def variants(order):
        out = {}
        for lead in order:
            [send] = sends(core.step(plan, None, optin(lead)).actions)
            out[lead] = send.get("variant")
        return out

    first = variants(leads)
    again = variants(list(reversed(leads)))  # another order, another run: the same variants
    assert first == again
    share_a = sum(1 for v in first.values() if v == "a") / len(leads)
    assert set(first.values()) == {"a", "b"}
    # 70/30 over 2,000 leads: the standard error is about 1%, so 5% is far outside chance
    assert 0.65 <= share_a <= 0.75


def test_quiet_hours_defer_a_send_to_the_end_of_quiet_hours_in_the_leads_timezone(tmp_path):
    body = NURTURE + 'policies: {quiet_hours: {from: "20:00", to: "08:00"}, timezone_attribute: timezone}\n'
    plan = build(tmp_path, body, NURTURE_TEMPLATES)
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9 all year (no daylight saving)
    # 12:00 UTC is 21:00 in Tokyo: inside quiet hours there, so the welcome waits for 08:00
    # Tokyo time, which is 23:00 UTC the same day.
    at = minutes(datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc))
    expected = minutes(datetime(2026, 3, 3, 8, 0, tzinfo=tokyo))
    assert expected == at + 11 * HOUR
    actions = run(plan, [optin("jp@corp.example", at=at, timezone="Asia/Tokyo")], until=at + DAY)
    first = sends(actions)[0]
    assert first.get("template") == "n/one" and first.at == expected
    local = datetime.fromtimestamp(first.at * 60, tz=timezone.utc).astimezone(tokyo)
    assert (local.hour, local.minute) == (8, 0)
    # a lead without a timezone gets the sender's (UTC): 12:00 is not quiet there
    actions = run(plan, [optin("uk@corp.example", at=at)], until=at + DAY)
    assert sends(actions)[0].at == at


def test_quiet_hours_late_evening_in_new_york(tmp_path):
    body = NURTURE + 'policies: {quiet_hours: {from: "20:00", to: "08:00"}}\n'
    plan = build(tmp_path, body, NURTURE_TEMPLATES)
    ny = ZoneInfo("America/New_York")
    at = minutes(datetime(2026, 3, 2, 22, 30, tzinfo=ny))  # 22:30 local, standard time
    actions = run(plan, [optin("ny@corp.example", at=at, timezone="America/New_York")], until=at + 10 * DAY)
    got = sends(actions)
    first = datetime.fromtimestamp(got[0].at * 60, tz=timezone.utc).astimezone(ny)
    assert first == datetime(2026, 3, 3, 8, 0, tzinfo=ny)
    for a in got:
        local = datetime.fromtimestamp(a.at * 60, tz=timezone.utc).astimezone(ny)
        assert 8 * 60 <= local.hour * 60 + local.minute < 20 * 60
    # the next email waits its 2 days from when the first one actually went out
    assert got[1].at == got[0].at + 2 * DAY


def test_a_step_at_a_local_time_waits_for_that_time_in_the_leads_zone(tmp_path):
    body = FUNNEL + """\
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 1d, send: n/two, at: "09:30"}
    exit: {stage_at_least: sql}
"""
    plan = build(tmp_path, body, ["n/one", "n/two"])
    tokyo = ZoneInfo("Asia/Tokyo")
    at = minutes(datetime(2026, 3, 2, 12, 0, tzinfo=tokyo))
    actions = run(plan, [optin("jp@corp.example", at=at, timezone="Asia/Tokyo")], until=at + 5 * DAY)
    got = [(a.get("template"), a.at) for a in sends(actions)]
    # due a day later at 12:00 Tokyo time, past 09:30 that day: the next 09:30 in Tokyo
    assert got == [("n/one", at), ("n/two", minutes(datetime(2026, 3, 4, 9, 30, tzinfo=tokyo)))]


CAPPED = FUNNEL + """\
sequences:
  track-a:
    kind: nurture
    stage: [subscriber, mql]
    priority: 20
    steps:
      - {send: n/a1}
      - {wait: 1d, send: n/a2}
    exit: {stage_at_least: sql}
  track-b:
    kind: nurture
    stage: [subscriber, mql]
    priority: 10
    steps:
      - {send: n/b1}
      - {wait: 2d, send: n/b2}
      - {wait: 1d, send: n/b3}
    exit: {stage_at_least: sql}
  deal:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: s/one}
    exit: {on: [crm.deal_lost]}
policies:
  frequency_cap: {max: 3, per: 7d, applies_to: [nurture, broadcast]}
"""


def test_frequency_cap_defers_the_fourth_email(tmp_path):
    plan = build(tmp_path, CAPPED, ["n/a1", "n/a2", "n/b1", "n/b2", "n/b3", "s/one"])
    lead = "cap@corp.example"
    actions = run(plan, [optin(lead)], until=T0 + 30 * DAY)
    got = [(a.get("template"), a.at) for a in sends(actions)]
    # days 0 (a1, b1) and 1 (a2) fill the cap of 3 in 7 days; b2 (due day 2) waits until
    # the first email leaves the window at day 7, and b3 keeps its 1 day after b2.
    assert got == [("n/a1", T0), ("n/b1", T0), ("n/a2", T0 + DAY), ("n/b2", T0 + 7 * DAY), ("n/b3", T0 + 8 * DAY)]
    times = [a.at for a in sends(actions)]
    for t in times:
        assert sum(1 for u in times if t <= u < t + 7 * DAY) <= 3


def test_frequency_cap_does_not_hold_back_sales_email(tmp_path):
    plan = build(tmp_path, CAPPED.replace("  - {from: [subscriber, mql], to: sql, on: crm.demo_booked}\n", ""),
                 ["n/a1", "n/a2", "n/b1", "n/b2", "n/b3", "s/one"])
    lead = "cap@corp.example"
    booked = T0 + DAY + HOUR  # three marketing emails already sent this week
    actions = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead)], until=T0 + 30 * DAY)
    [sales] = [a for a in sends(actions) if a.get("kind") == "sales"]
    assert sales.at == booked


# -- engine bugs ------------------------------------------------------------------------------

def test_optin_sends_the_lead_magnet_delivery_at_once(tmp_path):
    header = HEADER.replace("enters: subscriber, score: 5}", "enters: subscriber, score: 5, delivers: m/guide}")
    plan = build(tmp_path, NURTURE, NURTURE_TEMPLATES + ["m/guide"], header=header)
    assert plan.magnet("guide").delivers == "m/guide"
    r = core.step(plan, None, optin("new@corp.example"))
    assert "m/guide" in [a.get("template") for a in sends(r.actions)]


def test_integer_enum_values_are_accepted(tmp_path):
    header = HEADER.replace("  timezone: {type: string, format: timezone}\n",
                            "  timezone: {type: string, format: timezone}\n  tier: {enum: [1, 2, 3]}\n")
    plan = build(tmp_path, TWO_MAGNETS, header=header)
    r = core.step(plan, None, optin("tier@corp.example", tier=2))
    assert r.state is not None, r.actions


def test_days_since_last_email_survives_the_frequency_cap(tmp_path):
    body = FUNNEL + """\
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 10d, send: n/two, when: "days_since('last_email') >= 10"}
    exit: {stage_at_least: sql}
"""
    lead = "a@corp.example"
    events = [optin(lead), ev("site.visited", T0 + 8 * DAY, lead, page="blog")]
    uncapped = build(tmp_path / "uncapped", body, ["n/one", "n/two"])
    expected = [("n/one", T0), ("n/two", T0 + 10 * DAY)]
    assert [(a.get("template"), a.at) for a in sends(run(uncapped, events, T0 + 20 * DAY))] == expected
    # the same with a cap that the two emails are nowhere near: the step must still run
    capped = build(tmp_path / "capped", body + "policies:\n  frequency_cap: {max: 3, per: 7d}\n", ["n/one", "n/two"])
    assert [(a.get("template"), a.at) for a in sends(run(capped, events, T0 + 20 * DAY))] == expected
