"""Properties of the engine under random event streams (hypothesis).

Random streams of opt-ins, opens and clicks of the funnel's real templates, site visits,
CRM events, unsubscribes, bounces, profile updates and clock ticks, with random gaps,
for a few leads at once, go through each example funnel with `drive` (the loop the
runtime and trace use). Whatever the stream, these must hold:

* nothing is ever sent to a lead after its unsubscribe (or bounce);
* capped kinds never exceed the frequency cap in any window;
* no email from a sequence whose kind (or name) the lead's stage suppresses;
* stage changes follow declared transitions only;
* every handoff names an owner from the rule and, with an SLA, the right deadline;
* sends honour quiet hours in the lead's own timezone;
* the same stream gives identical actions twice.

And a differential check of `migrate`: leads in flight under one plan keep their
surviving step IDs (and due times) under an edited plan, and run on from there.
"""
from __future__ import annotations

import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Tuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import core  # noqa: E402
from engine.drive import Applied, drive  # noqa: E402
from engine.migrate import migrate, step_move  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.plan import Plan  # noqa: E402
from engine.state import Event, LeadState, Shared, iso, minutes  # noqa: E402

DAY = 1440
T0 = minutes(datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc))
EXAMPLES = ["funnels/acme", "funnels/newsletter-to-demo.yaml", "funnels/reference.yaml"]
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo", "Asia/Kolkata",
         "Australia/Sydney", "Pacific/Auckland", "UTC"]
PAGES = ["pricing", "demo", "case-studies", "security", "careers", "blog", None]

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PLANS: Dict[str, Plan] = {}

# A purpose-made funnel where handoff suppression is the only thing that stops marketing
# and sales email (no stage exits), stages move on CRM events alone (so random streams
# reach every stage), a broadcast is suppressed by name, and cap and quiet hours are tight.
LAB = """\
fnl: 1
funnel: lab
templates: templates
sender: {from: "Lab <hi@lab.example>", postal_address: "1 Main St, Springfield", timezone: Europe/Berlin,
         unsubscribe_url: "https://lab.example/u"}
profile:
  first_name: {type: string, required: true}
  region: {enum: [na, emea]}
  timezone: {type: string, format: timezone}
stages: [subscriber, sql, opportunity, customer]
lead_magnets:
  guide: {kind: ebook, consent: "Email me. I can unsubscribe at any time.", enters: subscriber}
transitions:
  - {from: subscriber, to: sql, on: crm.demo_booked}
  - {from: sql, to: opportunity, on: crm.opportunity_opened}
  - {from: opportunity, to: customer, on: crm.deal_won}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {send: n/one}
      - {wait: 1d, send: n/two}
      - {wait: 2d, send: n/three}
      - {wait: 2d, send: n/four}
    exit: {on: [crm.deal_lost]}
  monthly:
    kind: broadcast
    stage: [subscriber, sql]
    steps:
      - {wait: 1d, send: b/one}
      - {wait: 3d, send: b/two}
    exit: {on: [crm.deal_lost]}
  deal:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: s/one}
      - {wait: 2d, send: s/two}
      - {wait: 2d, send: s/three}
    exit: {on: [crm.deal_lost]}
  welcome:
    kind: onboarding
    stage: customer
    steps:
      - {send: c/one}
      - {wait: 1d, send: c/two}
handoff:
  sql: {assign: {round_robin: [ana@lab.example, ben@lab.example]}, sla: 2h, suppress: [nurture, monthly]}
  opportunity:
    assign: {territory: {by: region, routes: {na: [nora@lab.example], emea: [emma@lab.example]},
                         default: [dee@lab.example]}}
  customer: {assign: {round_robin: [cs@lab.example]}, sla: 1d, suppress: [sales]}
policies:
  frequency_cap: {max: 2, per: 3d, applies_to: [nurture, broadcast]}
  quiet_hours: {from: "21:00", to: "07:00"}
"""
LAB_TEMPLATES = ["n/one", "n/two", "n/three", "n/four", "b/one", "b/two", "s/one", "s/two", "s/three", "c/one",
                 "c/two"]
TEMPLATE = """\
{% block subject %}NAME{% endblock %}
{% block html -%}<p>Hi {{ lead.first_name }}.</p><p>{{ sender.postal_address }}
<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{%- endblock %}
{% block text -%}Hi {{ lead.first_name }}. {{ sender.postal_address }} Unsubscribe: {{ unsubscribe_url }}{%- endblock %}
"""


@pytest.fixture(scope="module", autouse=True)
def lab_plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "funnel.yaml").write_text(LAB, encoding="utf-8")
    for name in LAB_TEMPLATES:
        path = root / "templates" / f"{name}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE.replace("NAME", name), encoding="utf-8")
    PLANS["lab"] = plan_for(str(root))
    return PLANS["lab"]


def plan_of(name: str) -> Plan:
    if name not in PLANS:
        PLANS[name] = plan_for(str(REPO / name))
    return PLANS[name]


# -- strategies ----------------------------------------------------------------------------------

def profiles(plan: Plan) -> st.SearchStrategy:
    """Valid profiles for the plan's declared attributes (required ones always present)."""
    fields = {}
    for a in plan.profile:
        if a.enum is not None:
            value = st.sampled_from(list(a.enum))
        elif a.name == plan.policies.timezone_attribute:
            value = st.sampled_from(ZONES)
        elif a.type == "integer":
            value = st.integers(int(a.minimum) if a.minimum is not None else 0, 5000)
        elif a.type == "number":
            value = st.floats(a.minimum or 0, 5000, allow_nan=False)
        elif a.type == "boolean":
            value = st.booleans()
        else:
            value = st.sampled_from(["Ana", "Bo", "Chen", "Dee"])
        fields[a.name] = value if a.required else st.one_of(st.none(), value)
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


def event_kinds(plan: Plan, lead: str, at: int) -> st.SearchStrategy:
    templates = [t.name for t in plan.templates] + ["not/a-template"]
    crm = [f"crm.{c}" for c in plan.crm_events]
    magnets = [m.name for m in plan.lead_magnets]
    email = st.builds(lambda k, t: Event(k, at, lead, template=t),
                      st.sampled_from(["email.opened", "email.opened", "email.clicked", "email.clicked",
                                       "email.replied", "email.delivered"]), st.sampled_from(templates))
    visit = st.builds(lambda p: Event("site.visited", at, lead, page=p), st.sampled_from(PAGES))
    crm_event = st.builds(lambda k: Event(k, at, lead), st.sampled_from(crm))
    other = st.builds(lambda k: Event(k, at, lead), st.sampled_from(["tick", "webinar.registered",
                                                                      "webinar.attended"]))
    magnet = st.builds(lambda m: Event("magnet.downloaded", at, lead, magnet=m), st.sampled_from(magnets))
    rare = st.builds(lambda k, t: Event(k, at, lead, template=t),
                     st.sampled_from(["email.unsubscribed", "email.bounced"]), st.sampled_from(templates))
    update = profiles(plan).map(lambda p: Event("profile.updated", at, lead,
                                                profile={k: v for k, v in p.items() if k != "first_name"}))
    return st.one_of(email, email, visit, visit, crm_event, crm_event, other, magnet, update, rare)


GAPS = st.one_of(st.integers(0, 90), st.integers(0, DAY), st.integers(0, 6 * DAY), st.integers(0, 20 * DAY))


@st.composite
def streams(draw, plan: Plan) -> List[Event]:
    """Events for 1-3 leads, each lead's events in time order, interleaved by time."""
    events: List[Tuple[int, int, Event]] = []
    for i in range(draw(st.integers(1, 3))):
        lead = f"lead{i}@corp{i}.example"
        at = optin_at = T0 + draw(st.integers(0, 3 * DAY))
        magnet = draw(st.sampled_from([m.name for m in plan.lead_magnets]))
        events.append((at, len(events), Event("optin", at, lead, magnet=magnet, profile=draw(profiles(plan)))))
        for _ in range(draw(st.integers(0, 14))):
            at += draw(GAPS)
            events.append((at, len(events), draw(event_kinds(plan, lead, at))))
        # a journey: the CRM events of the declared transitions, in declaration order, at
        # random times, so that streams reach the later stages (opportunity, customer) too
        journey = list(dict.fromkeys(t.on for t in plan.transitions if t.on))
        moment = optin_at if draw(st.booleans()) else at
        for kind in journey[: draw(st.integers(0, len(journey)))]:
            moment += draw(GAPS)
            events.append((moment, len(events), Event(kind, moment, lead)))
        if draw(st.integers(0, 4)) == 0:  # the whole clock, for every lead
            events.append((at, len(events), Event("tick", at, "")))
        if draw(st.integers(0, 5)) == 0:  # a bad profile update: rejected, the lead carries on
            events.append((at, len(events), Event("profile.updated", at, lead, profile={"no_such_attribute": 1})))
    if draw(st.integers(0, 5)) == 0:  # an event for a lead that never opted in: held or ignored
        at = T0 + draw(st.integers(0, 10 * DAY))
        events.append((at, len(events), draw(event_kinds(plan, "ghost@nowhere.example", at))))
    return [e for _, _, e in sorted(events, key=lambda x: (x[0], x[1]))]


def run(plan: Plan, events: List[Event]) -> List[Applied]:
    until = max(e.at for e in events) + 40 * DAY
    return list(drive(plan, events, until))


# -- the invariants ---------------------------------------------------------------------------------

def _sends(applied: Applied):
    return [a for a in applied.result.actions if a.type == "send_email"]


def check_no_send_after_unsubscribe(applied: List[Applied]) -> None:
    gone: Dict[str, int] = {}
    for item in applied:
        for a in _sends(item):
            assert a.lead not in gone, f"{a.lead} unsubscribed/bounced at {iso(gone[a.lead])}, sent {a.to_json()}"
        state = item.result.state
        if isinstance(state, LeadState) and (state.unsubscribed or state.bounced) and state.lead not in gone:
            gone[state.lead] = item.event.at
            assert not state.running, "sequences still running after an unsubscribe"
    for item in applied:
        for a in _sends(item):
            assert a.lead not in gone or a.at <= gone[a.lead]


def check_frequency_cap(plan: Plan, applied: List[Applied]) -> None:
    pol = plan.policies
    if pol.cap_max is None:
        return
    times: Dict[str, List[int]] = {}
    for item in applied:
        for a in _sends(item):
            if not pol.cap_applies_to or a.get("kind") in pol.cap_applies_to:
                times.setdefault(a.lead, []).append(a.at)
    for lead, ts in times.items():
        ts.sort()
        for i, t in enumerate(ts):
            window = [u for u in ts[i:] if u < t + pol.cap_per_minutes]
            assert len(window) <= pol.cap_max, f"{lead}: {len(window)} capped emails from {iso(t)}"


def check_suppression(plan: Plan, applied: List[Applied]) -> None:
    for item in applied:
        state = item.result.state
        for a in _sends(item):
            if a.get("kind") == "delivery":  # the lead magnet the lead just asked for
                assert a.get("template") == plan.magnet(a.get("magnet")).delivers
                continue
            stage = plan.stage(state.stage)
            seq = plan.sequence(a.get("sequence"))
            assert seq.kind == a.get("kind")
            assert seq.kind not in stage.suppress and seq.name not in stage.suppress, \
                f"{a.lead} in {stage.name} got {seq.name} ({seq.kind})"
            # the sequence's own exit-by-stage holds too
            if seq.exit and seq.exit.stage_at_least:
                assert plan.stage_index(state.stage) < plan.stage_index(seq.exit.stage_at_least)


def check_transitions(plan: Plan, applied: List[Applied]) -> None:
    declared = {t.id: t for t in plan.transitions}
    stage: Dict[str, str] = {}
    for item in applied:
        for a in item.result.actions:
            if a.type == "consent_recorded":
                stage[a.lead] = plan.magnet(a.get("magnet")).enters
            if a.type == "stage_changed":
                t = declared[a.get("transition")]
                assert a.get("from") in t.sources and a.get("to") == t.to
                assert a.get("from") == stage[a.lead], "stage changed from a stage the lead was not in"
                stage[a.lead] = a.get("to")
        if isinstance(item.result.state, LeadState):
            assert item.result.state.stage == stage[item.result.state.lead]


def check_handoffs(plan: Plan, applied: List[Applied]) -> None:
    for item in applied:
        for a in item.result.actions:
            if a.type != "handoff":
                continue
            rule = plan.handoff_for(a.get("stage"))
            owner = a.get("owner")
            allowed = set(rule.assign.reps) | set(rule.assign.default)
            allowed |= {r for _, reps in rule.assign.routes for r in reps}
            assert owner and owner in allowed
            assert item.result.state.owner == owner
            if rule.sla_minutes is not None:
                assert a.get("sla_deadline") == iso(a.at + rule.sla_minutes)
            else:
                assert a.get("sla_deadline") is None


def check_quiet_hours(plan: Plan, applied: List[Applied]) -> None:
    pol = plan.policies
    if pol.quiet_from is None:
        return
    for item in applied:
        profile = dict(item.result.state.profile) if isinstance(item.result.state, LeadState) else {}
        zone = ZoneInfo(profile.get(pol.timezone_attribute) or pol.default_timezone)
        for a in _sends(item):
            if a.get("kind") == "delivery":
                # Requested content goes out at once, quiet hours or not, and only on an opt-in.
                assert item.event.type in ("optin", "magnet.downloaded") and a.at == item.event.at
                continue
            local = datetime.fromtimestamp(a.at * 60, tz=timezone.utc).astimezone(zone)
            minute = local.hour * 60 + local.minute
            start, end = pol.quiet_from, pol.quiet_to
            inside = start <= minute < end if start <= end else (minute >= start or minute < end)
            assert not inside, f"{a.lead} sent {a.get('template')} at {local.isoformat()}"


def check_sends_are_consented(applied: List[Applied]) -> None:
    consented = set()
    for item in applied:
        for a in item.result.actions:
            if a.type == "consent_recorded":
                consented.add(a.lead)
            if a.type == "send_email":
                assert a.lead in consented


def check_sequences_never_restart(applied: List[Applied]) -> None:
    entered = set()
    for item in applied:
        for a in item.result.actions:
            if a.type == "enter_sequence":
                assert (a.lead, a.get("sequence")) not in entered
                entered.add((a.lead, a.get("sequence")))


@pytest.mark.parametrize("name", EXAMPLES + ["lab"])
def test_invariants_hold_for_random_streams(name):
    plan = plan_of(name)

    @PROPERTY
    @given(streams(plan))
    def prop(events):
        applied = run(plan, events)
        check_no_send_after_unsubscribe(applied)
        check_frequency_cap(plan, applied)
        check_suppression(plan, applied)
        check_transitions(plan, applied)
        check_handoffs(plan, applied)
        check_quiet_hours(plan, applied)
        check_sends_are_consented(applied)
        check_sequences_never_restart(applied)
        # the same stream again: identical actions, in the same order
        again = run(plan, events)
        assert [x.result.actions for x in again] == [x.result.actions for x in applied]
        assert [x.result.state for x in again] == [x.result.state for x in applied]

    prop()


def test_the_streams_reach_the_interesting_states():
    """The generator is not toothless: over a fixed sample of streams through acme there
    are sends, unsubscribes, handoffs, stage changes and ignored events."""
    plan = plan_of("funnels/acme")
    seen = {"send_email": 0, "handoff": 0, "stage_changed": 0, "unsubscribed": 0, "ignored": 0, "customer": 0,
            "onboarding": 0}

    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(streams(plan))
    def sample(events):
        for item in run(plan, events):
            for a in item.result.actions:
                if a.type in seen:
                    seen[a.type] += 1
                if a.type == "stage_changed" and a.get("to") == "customer":
                    seen["customer"] += 1
                if a.type == "send_email" and a.get("kind") == "onboarding":
                    seen["onboarding"] += 1
            if item.event.type == "email.unsubscribed":
                seen["unsubscribed"] += 1

    sample()
    assert all(n > 0 for n in seen.values()), seen


# -- migrate: the differential check -------------------------------------------------------------------

@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> Tuple[Plan, Plan]:
    """reference.yaml and an edit of it: a nurture step removed, one added, a wait changed."""
    root = tmp_path_factory.mktemp("migrate")
    shutil.copytree(REPO / "templates" / "reference", root / "templates" / "reference")
    (root / "funnels").mkdir()
    src = (REPO / "funnels" / "reference.yaml").read_text(encoding="utf-8")
    (root / "funnels" / "reference.yaml").write_text(src, encoding="utf-8")
    old = plan_for(str(root / "funnels" / "reference.yaml"))
    changes = [("      - {wait: 4d, send: nurture/day-9}\n", ""),
               ("      - {wait: 3d, send: nurture/day-5}\n",
                "      - {wait: 3d, send: nurture/day-5}\n      - {wait: 1d, send: nurture/day-21, id: bonus}\n"),
               ("      - {wait: 3d, send: sales/day-3}", "      - {wait: 2d, send: sales/day-3}")]
    text = src
    for a, b in changes:
        assert text.count(a) == 1
        text = text.replace(a, b)
    (root / "funnels" / "reference.yaml").write_text(text, encoding="utf-8")
    new = plan_for(str(root / "funnels" / "reference.yaml"))
    assert {s.id for s in old.sequence("nurture").steps} - {s.id for s in new.sequence("nurture").steps} == {"day-9"}
    return old, new


@st.composite
def cut_streams(draw, plan: Plan):
    events = draw(streams(plan))
    cut = max(e.at for e in events) + draw(st.integers(0, 25 * DAY))
    return events, cut


def test_migrate_keeps_leads_on_surviving_steps(edited):
    old, new = edited

    @PROPERTY
    @given(cut_streams(old))
    def prop(data):
        events, cut = data
        states: Dict[str, LeadState] = {}
        shared = Shared()
        for item in drive(old, events, cut):
            if isinstance(item.result.state, LeadState):
                states[item.event.lead] = item.result.state
            shared = item.result.shared
        for lead, state in states.items():
            moved, notes = migrate(old, new, state)
            kept = {(r.sequence, r.step_id): r for r in moved.running}
            for run_ in state.running:
                move = step_move(old, new, run_.sequence, run_.step_id)
                seq = new.sequence(run_.sequence)
                if move.outcome == "stays":
                    now = kept[(run_.sequence, run_.step_id)]
                    assert now.due == run_.due and now.started == run_.started
                    assert seq.steps[now.index].id == run_.step_id
                elif move.outcome == "resumes":
                    now = kept[(run_.sequence, move.target)]
                    assert now.due == run_.due and seq.steps[now.index].id == move.target
                    # the target is the next step of the old order that survived
                    old_ids = [s.id for s in old.sequence(run_.sequence).steps]
                    later = old_ids[old_ids.index(run_.step_id) + 1:]
                    assert move.target == next(i for i in later if i in {s.id for s in seq.steps})
                    assert any(run_.step_id in n and move.target in n for n in notes)
                else:
                    assert not [r for r in moved.running if r.sequence == run_.sequence]
            assert len(moved.running) <= len(state.running)
            assert moved.stage == state.stage and moved.finished == state.finished
            assert moved.unsubscribed == state.unsubscribed and moved.sends == state.sends
            # the migrated lead runs on under the new plan, only through the new plan's steps
            new_ids = {(s.name, st_.id) for s in new.sequences for st_ in s.steps}
            result = moved
            for tick in (cut + 1, cut + 10 * DAY, cut + 40 * DAY):
                r = core.step(new, result, Event("tick", tick, lead), shared)
                result, shared = r.state, r.shared
                for a in r.actions:
                    assert a.type != "rejected"
                    if a.type == "send_email":
                        assert (a.get("sequence"), a.get("step")) in new_ids
                        assert not state.unsubscribed

    prop()
