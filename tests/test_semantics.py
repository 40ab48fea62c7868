"""Engine semantics a sales team can rely on: one test (or more) per rule of the issue.

1. order within a minute (due steps before same-minute events; (minute, lead) across leads)
2. unsubscribed leads (no engagement-driven moves; sales may still move them)
3. engagement (only with email sent to the lead, once per email, machine opens, complaints, bounces)
4. real exports (repeat opt-ins, profile changes, activity held from before the opt-in)
5. scores and time (decay periods in the sender's timezone, rounded thresholds, clock helpers)
6. entries without a lead magnet (CRM events and imports)
7. SLA in the core (breach by the clock, met by a CRM touch, business hours)

Every test writes its own small definition, compiles it through the real pipeline
(`build`, from tests/test_core.py) and derives the expected values from it. Modules that
only the current engine has (`engine.clock`, `engine.score`, `drive.event_order`,
`state.Prospect`) are imported inside the tests that use them, so each test stands or
falls on its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from typing import Dict, List, Sequence, Tuple
from zoneinfo import ZoneInfo

import pytest

from test_core import (CONSENT, DAY, HEADER, HOUR, REPO, T0, build, chain, ev, final_states, of, optin, run,
                       sends)

from engine import core
from engine.drive import drive
from engine.errors import ProblemsFound
from engine.pipeline import plan_for
from engine.state import Action, Event, LeadState, event_from_json, iso, minutes

NY = ZoneInfo("America/New_York")
NY_HEADER = HEADER.replace("  timezone: UTC\n", "  timezone: America/New_York\n")
assert NY_HEADER != HEADER


def at_ny(*args: int) -> int:
    """The minute of a local time in New York."""
    return minutes(datetime(*args, tzinfo=NY))


def at_utc(*args: int) -> int:
    return minutes(datetime(*args, tzinfo=timezone.utc))


def sent(actions: Sequence[Action], lead: str | None = None) -> List[Tuple[str, int]]:
    return [(a.get("template"), a.at) for a in sends(actions, lead)]


def per_lead(actions: Sequence[Action]) -> Dict[str, List[Tuple[str, int, tuple]]]:
    out: Dict[str, List[Tuple[str, int, tuple]]] = {}
    for a in actions:
        out.setdefault(a.lead, []).append((a.type, a.at, a.detail))
    return out


# == 1. Order within a minute ===================================================================

ORDER = """\
stages: [subscriber, mql, sql, customer]
scoring:
  events: {email.opened: 10, site.visited.pricing: 20}
  thresholds: {mql: 25}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: mql, to: sql, when: "visited('pricing', since='mql')"}
  - {from: [subscriber, mql], to: sql, on: crm.demo_booked}
  - {from: sql, to: customer, on: crm.deal_won}
crm: {events: [asset_downloaded]}
handoff:
  sql:
    assign: {round_robin: [ana@lab.example, ben@lab.example]}
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 1d, send: n/two, unless: "opened('n/one')"}
      - {wait: 1d, send: n/three}
    exit: {stage_at_least: sql}
"""
ORDER_TEMPLATES = ["n/one", "n/two", "n/three"]
DUE = T0 + DAY  # n/two falls due a day after the opt-in


def test_unsubscribe_stamped_the_due_minute_does_not_stop_the_due_email(tmp_path):
    """A step due at minute t runs before an unsubscribe stamped t: sent, then unsubscribed."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "u@corp.example"
    actions = run(plan, [optin(lead), ev("email.unsubscribed", DUE, lead, template="n/one")], until=T0 + 10 * DAY)
    assert sent(actions) == [("n/one", T0), ("n/two", DUE)]
    [left] = of(actions, "exit_sequence")
    assert left.at == DUE and left.get("reason") == f"unsubscribed at {iso(DUE)}; not sent: n/three"
    # core.step on its own does the same: due steps first, then the event
    state = core.step(plan, None, optin(lead)).state
    r = core.step(plan, state, ev("email.unsubscribed", DUE, lead, template="n/one"))
    assert [a.type for a in r.actions] == ["send_email", "exit_sequence"]
    assert sent(r.actions) == [("n/two", DUE)] and r.state.unsubscribed and r.state.unsubscribed_at == DUE


def test_open_at_the_due_minute_is_accepted_and_cannot_prevent_the_due_email(tmp_path):
    """An open stamped the due minute comes after the send: it counts, and an `unless` on it is too late."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "o@corp.example"
    # the open of n/two at its own due minute: n/two went out first, so the open is real (10 points)
    actions = run(plan, [optin(lead), ev("email.opened", DUE, lead, template="n/two")], until=DUE)
    assert sent(actions) == [("n/one", T0), ("n/two", DUE)]
    assert not of(actions, "ignored")
    assert final_states(plan, [optin(lead), ev("email.opened", DUE, lead, template="n/two")], DUE)[lead].score == 15
    # an open of n/one at n/two's due minute does not skip n/two (`unless: opened('n/one')`) ...
    on_time = run(plan, [optin(lead), ev("email.opened", DUE, lead, template="n/one")], until=T0 + 5 * DAY)
    assert sent(on_time) == [("n/one", T0), ("n/two", DUE), ("n/three", DUE + DAY)]
    # ... while one a minute earlier does (the skipped step's wait still runs: n/three a day later)
    early = run(plan, [optin(lead), ev("email.opened", DUE - 1, lead, template="n/one")], until=T0 + 5 * DAY)
    assert sent(early) == [("n/one", T0), ("n/three", DUE + DAY)]


def test_unrelated_crm_event_earlier_in_the_minute_does_not_change_the_due_email(tmp_path):
    """Whether a due email goes out does not depend on an unrelated CRM event earlier that minute."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "c@corp.example"
    unsub = ev("email.unsubscribed", DUE, lead, template="n/one", second=30)
    crm = ev("crm.asset_downloaded", DUE, lead, second=5)
    without = run(plan, [optin(lead), unsub], until=T0 + 10 * DAY)
    with_crm = run(plan, [optin(lead), crm, unsub], until=T0 + 10 * DAY)
    assert sent(without) == sent(with_crm) == [("n/one", T0), ("n/two", DUE)]


def test_seconds_never_put_an_event_before_a_send_due_that_minute(tmp_path):
    """An unsubscribe at t:59 still comes after the send due at t; one at t-1:59 comes before it."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "s@corp.example"
    start = event_from_json({"type": "optin", "at": iso(T0), "lead": lead, "magnet": "guide",
                             "profile": {"first_name": "S", "industry": "saas"}})
    late = event_from_json({"type": "email.unsubscribed", "at": iso(DUE, 59), "lead": lead, "template": "n/one"})
    assert (late.at, late.second) == (DUE, 59)
    assert sent(run(plan, [start, late], until=T0 + 10 * DAY)) == [("n/one", T0), ("n/two", DUE)]
    before = event_from_json({"type": "email.unsubscribed", "at": iso(DUE - 1, 59), "lead": lead,
                              "template": "n/one"})
    assert sent(run(plan, [start, before], until=T0 + 10 * DAY)) == [("n/one", T0)]


def test_events_of_one_minute_apply_by_seconds_then_input_order(tmp_path):
    """Within a minute and lead: by timestamp seconds, ties in input order."""
    from engine.drive import event_order

    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "m@corp.example"
    t = T0 + HOUR
    visit, unsub = "site.visited", "email.unsubscribed"

    def outcome(*events: Event) -> Tuple[str, List[str]]:
        actions = run(plan, [optin(lead), *events])
        return final_states(plan, [optin(lead), *events])[lead].stage, [a.type for a in actions
                                                                       if a.type in ("stage_changed", "not_moved")]

    # the pricing visit (5 + 20 = 25 points: mql) at :10 comes before the unsubscribe at :40,
    # whatever the input order; at :50 it comes after it, and no longer moves the lead
    v10, u40 = ev(visit, t, lead, page="pricing", second=10), ev(unsub, t, lead, template="n/one", second=40)
    assert event_order([u40, v10]) == [v10, u40]
    assert outcome(u40, v10) == ("mql", ["stage_changed"])
    u20, v50 = ev(unsub, t, lead, template="n/one", second=20), ev(visit, t, lead, page="pricing", second=50)
    assert outcome(v50, u20) == ("subscriber", ["not_moved"])
    # the same second: the input order decides
    v0, u0 = ev(visit, t, lead, page="pricing"), ev(unsub, t, lead, template="n/one")
    assert event_order([v0, u0]) == [v0, u0] and event_order([u0, v0]) == [u0, v0]
    assert outcome(v0, u0) == ("mql", ["stage_changed"])
    assert outcome(u0, v0) == ("subscriber", ["not_moved"])


def test_round_robin_in_one_minute_follows_lead_id_not_input_order(tmp_path):
    """Across leads drive orders (minute, lead id): owners do not depend on the input order."""
    from engine.drive import event_order

    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    a, b = "a@corp.example", "b@corp.example"
    t = T0 + HOUR
    for first, second in ((a, b), (b, a)):
        events = [optin(first), optin(second), ev("crm.demo_booked", t, first), ev("crm.demo_booked", t, second)]
        owners = {h.lead: h.get("owner") for h in of(run(plan, events), "handoff")}
        assert owners == {a: "ana@lab.example", b: "ben@lab.example"}, (first, second)
    # a lead later in the alphabet with an earlier second still comes after: minute, then lead
    early_b = ev("crm.demo_booked", t, b, second=1)
    late_a = ev("crm.demo_booked", t, a, second=59)
    assert event_order([early_b, late_a]) == [late_a, early_b]


def test_batching_or_splitting_the_stream_gives_the_same_per_lead_actions(tmp_path):
    """Per-lead files in any order, or one interleaved file, drive the same per-lead actions."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    a, b = "a@corp.example", "b@corp.example"
    a_events = [optin(a, at=T0 + 5), ev("crm.demo_booked", T0 + HOUR, a), ev("crm.deal_won", T0 + 3 * DAY, a)]
    b_events = [optin(b, at=T0), ev("site.visited", T0 + 30, b, page="pricing"), ev("crm.demo_booked", T0 + HOUR, b),
                ev("crm.deal_won", T0 + 2 * DAY, b)]
    interleaved = sorted(a_events + b_events, key=lambda e: e.at)
    until = T0 + 10 * DAY
    reference = per_lead(run(plan, interleaved, until))
    assert reference[a] and reference[b]
    assert per_lead(run(plan, b_events + a_events, until)) == reference  # file of b, then file of a
    assert per_lead(run(plan, a_events + b_events, until)) == reference
    owners = {h.lead: h.get("owner") for h in of(run(plan, b_events + a_events, until), "handoff")}
    assert owners == {a: "ana@lab.example", b: "ben@lab.example"}
    # a lead that shares no state with the others (no handoff) gets the same actions from its own file
    c = "c@corp.example"
    c_events = [optin(c, at=T0 + 1), ev("site.visited", T0 + 2, c, page="blog"),
                ev("email.unsubscribed", T0 + 1 + DAY, c, template="n/one")]
    together = per_lead(run(plan, sorted(a_events + b_events + c_events, key=lambda e: e.at), until))
    alone = run(plan, c_events, until)
    assert per_lead(alone)[c] == together[c]
    assert sent(alone) == [("n/one", T0 + 1), ("n/two", T0 + 1 + DAY)]


def test_visited_since_a_stage_excludes_the_minute_it_was_entered(tmp_path):
    """`visited('pricing', since='mql')`: a visit in mql's entry minute does not count, a minute later does."""
    plan = build(tmp_path, ORDER, ORDER_TEMPLATES)
    lead = "v@corp.example"
    t = T0 + HOUR
    # the first pricing visit makes the mql (5 + 20 = 25); a second one in that minute (even
    # seconds later, and given first) is not "since mql"
    events = [optin(lead), ev("site.visited", t, lead, page="pricing", second=45),
              ev("site.visited", t, lead, page="pricing", second=5)]
    state = final_states(plan, events)[lead]
    assert state.stage == "mql" and dict(state.entered)["mql"] == t and state.score == 45
    later = run(plan, events + [ev("site.visited", t + 1, lead, page="pricing")])
    assert [(c.get("to"), c.at) for c in of(later, "stage_changed")] == [("mql", t), ("sql", t + 1)]


# == 2. Unsubscribed leads ======================================================================

UNSUB = """\
stages: [subscriber, mql, sql, customer]
scoring:
  events: {site.visited.pricing: 30}
  thresholds: {mql: 30}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: [subscriber, mql], to: sql, on: crm.demo_booked}
  - {from: sql, to: customer, on: crm.deal_won, when: "not unsubscribed"}
handoff:
  sql:
    assign: {round_robin: [ana@lab.example]}
    notify: [crm, owner]
sequences:
  follow-up:
    kind: sales
    stage: sql
    steps:
      - {send: s/intro}
    exit: {on: [crm.deal_lost]}
"""


def test_unsubscribed_lead_makes_no_engagement_move_and_the_trace_says_why(tmp_path):
    """After an unsubscribe a score-driven move is not made: `not_moved` with the reason."""
    plan = build(tmp_path, UNSUB, ["s/intro"])
    lead = "gone@corp.example"
    gone = T0 + HOUR
    results = chain(plan, [optin(lead), ev("email.unsubscribed", gone, lead, template="x"),
                           ev("site.visited", gone + HOUR, lead, page="pricing")])
    visit = results[-1]
    assert visit.state.score == 35 and visit.state.stage == "subscriber"
    assert not of(visit.actions, "stage_changed")
    [held_back] = of(visit.actions, "not_moved")
    assert held_back.get("to") == "mql" and held_back.get("transition") == plan.transitions[0].id
    reason = held_back.get("reason")
    assert reason.startswith(f"unsubscribed at {iso(gone)}") and "on: crm.<event>" in reason
    # and `fnl trace` shows it
    from engine import trace as tr

    text = tr.render_text(tr.timeline(plan, (optin(lead), ev("email.unsubscribed", gone, lead, template="x"),
                                             ev("site.visited", gone + HOUR, lead, page="pricing"))))
    assert f"not moved to mql: unsubscribed at {iso(gone)}" in text


def test_crm_event_still_moves_an_unsubscribed_lead_and_the_handoff_says_do_not_email(tmp_path):
    """A transition `on: crm.demo_booked` still applies; handoff carries do_not_email; no sales email."""
    plan = build(tmp_path, UNSUB, ["s/intro"])
    lead = "gone@corp.example"
    gone, booked = T0 + HOUR, T0 + DAY
    actions = run(plan, [optin(lead), ev("email.unsubscribed", gone, lead, template="x"),
                         ev("crm.demo_booked", booked, lead)], until=T0 + 10 * DAY)
    assert [(c.get("from"), c.get("to"), c.at) for c in of(actions, "stage_changed")] == [("subscriber", "sql", booked)]
    [h] = of(actions, "handoff")
    assert h.get("owner") == "ana@lab.example" and h.get("do_not_email") == f"unsubscribed at {iso(gone)}"
    notes = of(actions, "notify")
    assert sorted(n.get("to") for n in notes) == ["ana@lab.example", "crm"]
    assert all("do not email" in n.get("message") for n in notes)
    assert not sends(actions) and not of(actions, "enter_sequence")


def test_not_unsubscribed_condition_blocks_even_a_crm_move(tmp_path):
    """`when: "not unsubscribed"` keeps a CRM transition from moving an unsubscribed lead."""
    plan = build(tmp_path, UNSUB, ["s/intro"])
    stay, go = "stay@corp.example", "go@corp.example"
    booked, won = T0 + HOUR, T0 + DAY
    events = [optin(stay), optin(go), ev("crm.demo_booked", booked, stay), ev("crm.demo_booked", booked, go),
              ev("email.unsubscribed", booked + 5, stay, template="s/intro"),
              ev("crm.deal_won", won, stay), ev("crm.deal_won", won, go)]
    states = final_states(plan, events)
    assert states[stay].stage == "sql" and states[go].stage == "customer"
    actions = run(plan, events)
    assert not [c for c in of(actions, "stage_changed", stay) if c.at == won]


# == 3. Engagement ==============================================================================

ENGAGE = """\
stages: [subscriber, engaged, sql]
scoring:
  events: {email.opened: 10, email.clicked: 15, email.replied: 25}
transitions:
  - {from: subscriber, to: engaged, when: "opened('n/two')"}
  - {from: [subscriber, engaged], to: sql, when: "replied"}
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, engaged]
    steps:
      - {send: n/one}
      - {wait: 2d, send: n/two}
      - {wait: 2d, send: n/three}
    exit: {stage_at_least: sql}
  follow-up:
    kind: sales
    stage: sql
    steps:
      - {send: s/intro}
    exit: {on: [crm.deal_lost]}
"""
ENGAGE_TEMPLATES = ["n/one", "n/two", "n/three", "s/intro"]


def test_engagement_with_email_not_sent_to_the_lead_is_ignored(tmp_path):
    """Open/reply of an unsent or unknown email: `ignored` with the reason, no points, no predicate."""
    plan = build(tmp_path, ENGAGE, ENGAGE_TEMPLATES)
    lead = "e@corp.example"
    results = chain(plan, [optin(lead), ev("email.opened", T0 + 60, lead, template="n/two"),
                           ev("email.replied", T0 + 61, lead, template="n/ghost"),
                           ev("email.clicked", T0 + 62, lead, template="n/three")])
    reasons = [[(a.get("event"), a.get("reason")) for a in of(r.actions, "ignored")] for r in results[1:]]
    assert reasons == [[("email.opened", "open of n/two ignored, not scored: not sent to this lead")],
                       [("email.replied", "reply of n/ghost ignored, not scored: no such email in this funnel")],
                       [("email.clicked", "click of n/three ignored, not scored: not sent to this lead")]]
    final = results[-1].state
    assert final.score == 5 and final.stage == "subscriber"  # no points; opened('n/two') and replied false
    # once n/two has gone out (day 2), the same open counts and moves the lead
    actions = run(plan, [optin(lead), ev("email.opened", T0 + 60, lead, template="n/two"),
                         ev("email.opened", T0 + 2 * DAY + 60, lead, template="n/two")])
    assert [(c.get("to"), c.at) for c in of(actions, "stage_changed")] == [("engaged", T0 + 2 * DAY + 60)]
    assert final_states(plan, [optin(lead), ev("email.opened", T0 + 2 * DAY + 60, lead,
                                             template="n/two")])[lead].score == 15


def test_repeated_open_of_one_email_scores_once(tmp_path):
    """A second open of the same email is `not_scored`; a click of it still scores once."""
    plan = build(tmp_path, ENGAGE, ENGAGE_TEMPLATES)
    lead = "r@corp.example"
    results = chain(plan, [optin(lead)] + [ev("email.opened", T0 + 60 * i, lead, template="n/one")
                                           for i in (1, 2, 3)]
                    + [ev("email.clicked", T0 + 240, lead, template="n/one"),
                       ev("email.clicked", T0 + 300, lead, template="n/one")])
    assert [r.state.score for r in results] == [5, 15, 15, 15, 30, 30]
    assert [[a.type for a in r.actions] for r in results[2:4]] == [["not_scored"], ["not_scored"]]
    assert of(results[2].actions, "not_scored")[0].get("event") == "email.opened"
    assert "open of n/one" in of(results[2].actions, "not_scored")[0].get("reason")
    assert [a.type for a in results[5].actions] == ["not_scored"]


def test_count_repeats_scores_every_open(tmp_path):
    """`scoring: {count_repeats: true}` scores each open of the same email."""
    plan = build(tmp_path, ENGAGE.replace("scoring:\n", "scoring:\n  count_repeats: true\n"), ENGAGE_TEMPLATES)
    lead = "r@corp.example"
    results = chain(plan, [optin(lead)] + [ev("email.opened", T0 + 60 * i, lead, template="n/one") for i in (1, 2, 3)])
    assert [r.state.score for r in results] == [5, 15, 25, 35]
    assert not [a for r in results for a in of(r.actions, "not_scored")]


def test_machine_opens_and_clicks_are_recorded_not_scored(tmp_path):
    """`"machine": true` opens/clicks: action `recorded`, no points, `opened()` stays false."""
    plan = build(tmp_path, ENGAGE, ENGAGE_TEMPLATES)
    lead = "bot@corp.example"
    machine_open = event_from_json({"type": "email.opened", "at": iso(T0 + 2 * DAY + 5), "lead": lead,
                                    "template": "n/two", "machine": True})
    assert machine_open.machine
    events = [optin(lead), machine_open, ev("email.clicked", T0 + 2 * DAY + 6, lead, template="n/one", machine=True)]
    actions = run(plan, events)
    assert [a.get("event") for a in of(actions, "recorded")] == ["email.opened", "email.clicked"]
    assert all("machine-made" in a.get("reason") for a in of(actions, "recorded"))
    state = final_states(plan, events)[lead]
    assert state.score == 5 and state.stage == "subscriber"  # no points, and opened('n/two') is false
    # the human open afterwards is the first one that counts
    human = chain(plan, [ev("email.opened", T0 + 2 * DAY + 7, lead, template="n/two")], state)[0]
    assert human.state.score == 15 and human.state.stage == "engaged"


def test_complaint_unsubscribes_and_suppresses_all_email(tmp_path):
    """`email.complained`: unsubscribed, `suppressed`, and no email of any kind afterwards."""
    header = HEADER.replace("enters: subscriber, score: 5}", "enters: subscriber, score: 5, delivers: m/guide}")
    plan = build(tmp_path, ENGAGE.replace("  - {from: [subscriber, engaged], to: sql, when: \"replied\"}\n",
                                          "  - {from: [subscriber, engaged], to: sql, when: \"replied\"}\n"
                                          "  - {from: [subscriber, engaged], to: sql, on: crm.demo_booked}\n"),
                 ENGAGE_TEMPLATES + ["m/guide"], header=header)
    lead = "angry@corp.example"
    spam = T0 + HOUR
    events = [optin(lead), ev("email.complained", spam, lead, template="n/one"),
              optin(lead, at=spam + DAY),                        # asks for the guide again
              ev("crm.demo_booked", spam + 2 * DAY, lead)]       # sales takes over
    actions = run(plan, events, until=T0 + 30 * DAY)
    assert sent(actions) == [("m/guide", T0), ("n/one", T0)]
    [suppressed] = of(actions, "suppressed")
    assert suppressed.at == spam and "complaint" in suppressed.get("reason")
    [not_sent] = of(actions, "not_sent")
    assert not_sent.get("template") == "m/guide" and not_sent.at == spam + DAY
    state = final_states(plan, events, T0 + 30 * DAY)[lead]
    assert state.unsubscribed and state.bounced and state.unsubscribed_at == spam and state.stage == "sql"
    assert [e.get("sequence") for e in of(actions, "enter_sequence")] == ["nurture"]


def test_hard_bounce_suppresses_at_once(tmp_path):
    """`email.bounced` (hard unless it says soft) suppresses the address: no more email."""
    plan = build(tmp_path, ENGAGE, ENGAGE_TEMPLATES)
    lead = "nobody@corp.example"
    bounce = T0 + 5
    actions = run(plan, [optin(lead), ev("email.bounced", bounce, lead, template="n/one")], until=T0 + 30 * DAY)
    assert sent(actions) == [("n/one", T0)]
    [s] = of(actions, "suppressed")
    assert s.at == bounce and "hard bounce" in s.get("reason")
    [left] = of(actions, "exit_sequence")
    assert left.at == bounce and left.get("reason").startswith("the address is suppressed")


def _bounces(lead: str, kinds: Sequence[str]) -> List[Event]:
    events = [optin(lead)]
    for i, kind in enumerate(kinds, 1):
        at = T0 + 10 * i
        if kind == "soft":
            events.append(ev("email.bounced", at, lead, template="n/one", bounce="soft"))
        elif kind == "delivered":
            events.append(ev("email.delivered", at, lead, template="n/one"))
        else:
            events.append(ev(kind, at, lead, template="n/one"))
    return events


@pytest.mark.parametrize("limit, kinds, suppressed_after", [
    (None, ["soft", "soft"], None),                                   # default 3: two are not enough
    (None, ["soft", "soft", "soft"], 3),                              # the third in a row suppresses
    (None, ["soft", "soft", "delivered", "soft", "soft"], None),      # a delivery resets the count
    (None, ["soft", "soft", "email.opened", "soft", "soft"], None),    # so does an open
    (None, ["soft", "soft", "email.clicked", "soft", "soft", "soft"], 6),
    (2, ["soft", "soft"], 2),                                         # policies.soft_bounce_limit
])
def test_soft_bounces_suppress_only_after_the_limit_in_a_row(tmp_path, limit, kinds, suppressed_after):
    """Soft bounces suppress after `soft_bounce_limit` (default 3) in a row; engagement resets them."""
    body = ENGAGE + (f"policies: {{soft_bounce_limit: {limit}}}\n" if limit else "")
    plan = build(tmp_path, body, ENGAGE_TEMPLATES)
    lead = "soft@corp.example"
    events = _bounces(lead, kinds)
    actions = run(plan, events)
    state = final_states(plan, events)[lead]
    if suppressed_after is None:
        assert not of(actions, "suppressed") and not state.bounced
    else:
        [s] = of(actions, "suppressed")
        assert s.at == T0 + 10 * suppressed_after and state.bounced
        assert s.get("reason").startswith(f"{limit or 3} soft bounces in a row")


# == 4. Real exports ============================================================================

EXPORTS = """\
personas:
  big: {when: "employees >= 100"}
  small: {when: "employees < 100"}
segments:
  saas: {when: "industry == 'saas'"}
  other: {when: "industry == 'other'"}
fit: {when: "industry == 'saas' and employees >= 50"}
stages: [subscriber, mql, customer]
scoring:
  events: {site.visited.pricing: 20, crm.asset_downloaded: 3}
  thresholds: {mql: 25}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: [subscriber, mql], to: customer, on: crm.deal_won}
crm: {events: [asset_downloaded]}
sequences:
  saas-track:
    kind: nurture
    segment: saas
    stage: [subscriber, mql]
    steps:
      - {send: n/saas-1}
      - {wait: 3d, send: n/saas-2}
    exit: {stage_at_least: customer}
  other-track:
    kind: nurture
    segment: other
    stage: [subscriber, mql]
    steps:
      - {send: n/other-1}
    exit: {stage_at_least: customer}
  big-track:
    kind: nurture
    persona: big
    stage: [subscriber, mql]
    steps:
      - {send: n/big-1}
      - {wait: 3d, send: n/big-2}
    exit: {stage_at_least: customer}
"""
EXPORT_TEMPLATES = ["n/saas-1", "n/saas-2", "n/other-1", "n/big-1", "n/big-2"]


def test_second_optin_with_a_changed_profile_updates_it_and_leaves_the_old_segment(tmp_path):
    """A repeat opt-in updates the profile and segment: the saas sequence exits "segment is now other"."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "switch@corp.example"
    again = T0 + DAY
    events = [optin(lead, industry="saas", employees=20), optin(lead, at=again, industry="other", employees=20)]
    actions = run(plan, events, until=T0 + 10 * DAY)
    assert sent(actions) == [("n/saas-1", T0), ("n/other-1", again)]
    left = [(a.get("sequence"), a.get("reason"), a.at) for a in of(actions, "exit_sequence")]
    assert ("saas-track", "segment is now other", again) in left
    state = final_states(plan, events, T0 + 10 * DAY)[lead]
    assert dict(state.profile)["industry"] == "other" and state.source == "guide"


def test_second_optin_that_makes_the_lead_fit_can_make_it_an_mql(tmp_path):
    """A repeat opt-in's new profile is what `fit` reads: a lead that now fits becomes an mql then."""
    body = """\
fit: {when: "employees >= 50"}
stages: [subscriber, mql, customer]
scoring: {events: {site.visited.pricing: 30}, thresholds: {mql: 30}}
transitions:
  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql"}
  - {from: mql, to: customer, on: crm.deal_won}
"""
    plan = build(tmp_path, body)
    lead = "grow@corp.example"
    again = T0 + DAY
    results = chain(plan, [optin(lead, employees=20), ev("site.visited", T0 + HOUR, lead, page="pricing"),
                           optin(lead, at=again, employees=500)])
    assert results[1].state.score == 35 and results[1].state.stage == "subscriber"  # not fit at 20 people
    [change] = of(results[2].actions, "stage_changed")
    assert (change.get("to"), change.at) == ("mql", again) and "employees=500" in change.get("because")


def test_profile_update_changing_the_persona_exits_its_sequence(tmp_path):
    """`profile.updated` moving the lead out of a persona ends that persona's sequence."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "shrink@corp.example"
    change = T0 + DAY
    events = [optin(lead, employees=500), ev("profile.updated", change, lead, profile={"employees": 40})]
    actions = run(plan, events, until=T0 + 10 * DAY)
    assert ("n/big-1", T0) in sent(actions) and "n/big-2" not in [t for t, _ in sent(actions)]
    assert [(a.get("reason"), a.at) for a in of(actions, "exit_sequence") if a.get("sequence") == "big-track"] == [
        ("persona is now small", change)]


def test_activity_before_the_optin_is_held_then_applied_in_order(tmp_path):
    """Site visits and CRM events before the opt-in are `held` (a Prospect), then `applied` at the opt-in."""
    from engine.state import Prospect

    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "early@corp.example"
    join = T0 + 3 * DAY
    visit, download = ev("site.visited", T0, lead, page="pricing"), ev("crm.asset_downloaded", T0 + HOUR, lead)
    results = chain(plan, [visit, download, optin(lead, at=join, industry="other")])
    assert [a.type for r in results[:2] for a in r.actions] == ["held", "held"]
    assert isinstance(results[1].state, Prospect) and results[1].state.held == (visit, download)
    entered = results[2]
    applied = of(entered.actions, "applied")
    assert [(a.get("event"), a.at) for a in applied] == [("site.visited", join), ("crm.asset_downloaded", join)]
    assert iso(T0) in applied[0].get("reason") and iso(T0 + HOUR) in applied[1].get("reason")
    # 5 (guide) + 20 (pricing) makes the mql at the opt-in minute; the download adds 3
    state = entered.state
    assert isinstance(state, LeadState) and state.score == 28
    assert state.stage == "mql" and dict(state.entered) == {"subscriber": join, "mql": join}
    [change] = of(entered.actions, "stage_changed")
    assert change.at == join and change.get("to") == "mql"


def test_held_activity_older_than_30_days_is_ignored(tmp_path):
    """Held events more than 30 days before the opt-in are ignored with a reason, not scored."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "old@corp.example"
    join = T0 + 40 * DAY
    stale, recent = ev("site.visited", T0, lead, page="pricing"), ev("crm.asset_downloaded", join - 29 * DAY, lead)
    entered = chain(plan, [stale, recent, optin(lead, at=join, industry="other")])[-1]
    [ignored] = of(entered.actions, "ignored")
    assert ignored.get("event") == "site.visited" and "more than 30 days" in ignored.get("reason")
    assert iso(T0) in ignored.get("reason")
    assert [a.get("event") for a in of(entered.actions, "applied")] == ["crm.asset_downloaded"]
    assert entered.state.score == 5 + 3 and entered.state.stage == "subscriber"


def test_held_activity_exactly_30_days_old_still_counts(tmp_path):
    """Only held events *older* than 30 days are ignored: one exactly 30 days before the opt-in is applied."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "edge@corp.example"
    join = T0 + 40 * DAY
    day30 = ev("crm.asset_downloaded", join - 30 * DAY, lead)          # 30 days old: not older than 30 days
    day30_plus = ev("crm.asset_downloaded", join - 30 * DAY - 1, lead)  # a minute more: older
    entered = chain(plan, [day30_plus, day30, optin(lead, at=join, industry="other")])[-1]
    got = [(a.type, a.get("reason")) for a in entered.actions if a.type in ("applied", "ignored")]
    assert [kind for kind, _ in got] == ["ignored", "applied"]
    assert iso(join - 30 * DAY - 1) in got[0][1] and iso(join - 30 * DAY) in got[1][1]
    assert entered.state.score == 5 + 3


def test_held_profile_update_does_not_override_the_later_optin(tmp_path):
    """Held events apply in time order: an update from before the opt-in does not undo the opt-in's newer profile."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "stale@corp.example"
    join = T0 + DAY
    events = [ev("profile.updated", T0, lead, profile={"industry": "other", "employees": 500}),
              optin(lead, at=join, industry="saas", employees=20)]
    state = chain(plan, events)[-1].state
    assert dict(state.profile)["industry"] == "saas" and dict(state.profile)["employees"] == 20
    assert sent(run(plan, events, until=join)) == [("n/saas-1", join)]


def test_held_profile_update_with_a_bad_value_is_not_applied(tmp_path):
    """A held `profile.updated` is checked like any other: a value outside the profile never reaches the lead."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "mars@corp.example"
    events = [ev("profile.updated", T0, lead, profile={"region": "mars"}), optin(lead, at=T0 + HOUR)]
    actions = run(plan, events)
    state = final_states(plan, events)[lead]
    assert "region" not in dict(state.profile)
    assert core.validate_profile(plan, dict(state.profile)) is None
    assert sent(actions) == [("n/saas-1", T0 + HOUR)]


def test_email_events_before_the_optin_are_ignored_not_held(tmp_path):
    """Email events before the opt-in are `ignored` (no email was sent), never applied later."""
    plan = build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "pre@corp.example"
    actions = run(plan, [ev("email.clicked", T0, lead, template="n/saas-1"), optin(lead, at=T0 + HOUR)])
    assert [a.type for a in actions if a.at == T0] == ["ignored"]
    assert not of(actions, "applied") and not of(actions, "held")
    assert final_states(plan, [optin(lead, at=T0 + HOUR)])[lead].score == 5


def _trace(funnel, events: Sequence[dict], tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return subprocess.run([sys.executable, "fnl.py", "trace", str(funnel), "--events", str(path), "--format", "json",
                           "--until", iso(T0 + 2 * DAY)], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_fnl_trace_accepts_a_visit_before_the_optin(tmp_path):
    """`fnl trace` of an export with a visit before the opt-in exits 0 and applies the visit."""
    build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "early@corp.example"
    r = _trace(tmp_path / "lab", [
        {"type": "site.visited", "at": iso(T0 - HOUR), "lead": lead, "page": "pricing"},
        {"type": "optin", "at": iso(T0), "lead": lead, "magnet": "guide",
         "profile": {"first_name": "E", "industry": "saas"}}], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [a["type"] for a in rows[0]["actions"]] == ["held"]
    entry = rows[1]
    assert "applied" in [a["type"] for a in entry["actions"]] and entry["score"] == 25 and entry["stage"] == "mql"


def test_fnl_trace_applies_out_of_order_lines_in_time_order(tmp_path):
    """A file whose lines are out of time order is applied in time order, not rejected."""
    build(tmp_path, EXPORTS, EXPORT_TEMPLATES)
    lead = "shuffled@corp.example"
    r = _trace(tmp_path / "lab", [
        {"type": "crm.asset_downloaded", "at": iso(T0 + 2 * HOUR), "lead": lead},
        {"type": "site.visited", "at": iso(T0 + HOUR), "lead": lead, "page": "pricing"},
        {"type": "optin", "at": iso(T0), "lead": lead, "magnet": "guide",
         "profile": {"first_name": "S", "industry": "other"}}], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    order = [(row["event"]["type"], row["event"]["at"]) for row in rows if row["event"]["type"] != "clock"]
    assert order == [("optin", iso(T0)), ("site.visited", iso(T0 + HOUR)), ("crm.asset_downloaded", iso(T0 + 2 * HOUR))]
    assert not [a for row in rows for a in row["actions"] if a["type"] in ("rejected", "held")]
    assert [row["score"] for row in rows if row["event"]["type"] != "clock"] == [5, 25, 28]


# == 5. Scores and time =========================================================================

DECAY = """\
stages: [subscriber, customer]
transitions:
  - {from: subscriber, to: customer, on: crm.deal_won}
scoring:
  decay: DECAY
  events: {site.visited.pricing: 20}
"""


def _score_at(plan, lead: str, start: int, read: int) -> float:
    state = core.step(plan, None, optin(lead, at=start)).state
    return core.step(plan, state, ev("tick", read, lead)).state.score


def test_daily_decay_falls_at_local_midnight_in_the_senders_timezone(tmp_path):
    """Daily decay at midnight in the sender's zone (New York), not at UTC midnight."""
    plan = build(tmp_path, DECAY.replace("DECAY", "{factor: 0.5, every: 1d}"), header=NY_HEADER)
    # 5 points at 23:00 local; at 00:30 local the next day one local midnight has passed
    assert _score_at(plan, "a@corp.example", at_ny(2026, 3, 2, 23, 0), at_ny(2026, 3, 3, 0, 30)) == 2.5
    # 5 points at 18:30 local (23:30 UTC); at 23:59 local UTC midnight has passed, local midnight not
    start, read = at_ny(2026, 3, 2, 18, 30), at_ny(2026, 3, 2, 23, 59)
    assert read - start < DAY and (start // DAY) != (read // DAY)  # a UTC midnight lies between
    assert _score_at(plan, "b@corp.example", start, read) == 5
    assert _score_at(plan, "b@corp.example", start, at_ny(2026, 3, 3, 0, 0)) == 2.5


def test_weekly_decay_falls_at_local_monday_midnight(tmp_path):
    """`every: 7d` decays at 00:00 on Monday in the sender's zone."""
    plan = build(tmp_path, DECAY.replace("DECAY", "{factor: 0.5, every: 7d}"), header=NY_HEADER)
    sunday_night, monday = at_ny(2026, 3, 15, 23, 0), at_ny(2026, 3, 16, 0, 30)
    assert datetime(2026, 3, 16).weekday() == 0
    assert _score_at(plan, "a@corp.example", sunday_night, monday) == 2.5
    # from Monday 00:30 to Sunday 23:30 (past Thursday, where weeks since 1970 turn): no Monday
    assert _score_at(plan, "b@corp.example", monday, at_ny(2026, 3, 22, 23, 30)) == 5
    assert _score_at(plan, "b@corp.example", monday, at_ny(2026, 3, 23, 0, 0)) == 2.5


def test_threshold_compares_the_score_rounded_to_6_decimals(tmp_path):
    """80 points halved by 4 days of a 4-day half-life is 39.99999999999999: it meets mql 40."""
    body = """\
fit: {when: "employees >= 50"}
stages: [subscriber, mql, customer]
scoring:
  decay: {half_life: 4d}
  events: {site.visited.pricing: 75}
  thresholds: {mql: 40}
transitions:
  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql"}
  - {from: mql, to: customer, on: crm.deal_won}
"""
    plan = build(tmp_path, body)
    lead = "r@corp.example"
    four_days = T0 + 4 * DAY  # four UTC midnights after Monday 09:00
    results = chain(plan, [optin(lead, employees=10), ev("site.visited", T0, lead, page="pricing"),
                           ev("profile.updated", four_days, lead, profile={"employees": 500})])
    assert results[1].state.score == 80 and results[1].state.stage == "subscriber"  # not fit yet
    last = results[2]
    assert last.state.score < 40 and last.state.score == pytest.approx(40)  # float decay falls just short
    assert last.state.stage == "mql"
    [change] = of(last.actions, "stage_changed")
    assert "score 40 ≥ 40" in change.get("because")


def test_score_helpers_meets_and_shown():
    """`shown` rounds to 6 decimals and `meets` compares that."""
    from engine import score as sc

    assert sc.DECIMALS == 6
    assert sc.shown(39.99999999) == 40.0 and sc.meets(39.99999999, 40)
    assert sc.shown(39.9999994) == 39.999999 and not sc.meets(39.9999994, 40)
    assert sc.meets(40.0, 40) and not sc.meets(39.9999, 40)
    # decayed() counts whole periods in the given zone
    start, end = at_ny(2026, 3, 2, 23, 0), at_ny(2026, 3, 3, 0, 30)
    assert sc.decayed(8.0, 0.5, DAY, start, end, "America/New_York") == 4.0
    assert sc.decayed(8.0, 0.5, DAY, start, end, "UTC") == 8.0


def test_periods_between_counts_local_boundaries():
    """`clock.periods_between`: local midnights, local Mondays, never negative."""
    from engine import clock

    tz = "America/New_York"
    assert clock.periods_between(at_ny(2026, 3, 2, 23, 0), at_ny(2026, 3, 3, 0, 30), DAY, tz) == 1
    assert clock.periods_between(at_ny(2026, 3, 2, 18, 30), at_ny(2026, 3, 2, 23, 59), DAY, tz) == 0
    assert clock.periods_between(at_ny(2026, 3, 2, 18, 30), at_ny(2026, 3, 2, 23, 59), DAY, "UTC") == 1
    assert clock.periods_between(at_ny(2026, 3, 2, 0, 0), at_ny(2026, 3, 9, 0, 0), DAY, tz) == 7
    # the boundary is in (start, end]: a start exactly at midnight does not count it
    assert clock.periods_between(at_ny(2026, 3, 3, 0, 0), at_ny(2026, 3, 3, 23, 59), DAY, tz) == 0
    week = 7 * DAY
    assert clock.periods_between(at_ny(2026, 3, 15, 23, 0), at_ny(2026, 3, 16, 0, 0), week, tz) == 1
    assert clock.periods_between(at_ny(2026, 3, 16, 0, 30), at_ny(2026, 3, 22, 23, 30), week, tz) == 0
    assert clock.periods_between(at_ny(2026, 3, 16, 0, 30), at_ny(2026, 4, 6, 0, 0), week, tz) == 3
    # across the spring change (8 March 2026): still one local midnight a day
    assert clock.periods_between(at_ny(2026, 3, 7, 12, 0), at_ny(2026, 3, 9, 12, 0), DAY, tz) == 2
    # the autumn change (1 Nov 2026, 02:00 EDT -> 01:00 EST): 01:30 EDT then 01:10 EST is
    # later in time but earlier on the wall clock; hourly periods never go negative
    before = minutes(datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc))   # 01:30 EDT
    after = minutes(datetime(2026, 11, 1, 6, 10, tzinfo=timezone.utc))    # 01:10 EST
    assert after > before
    assert clock.periods_between(before, after, 60, tz) == 0
    assert clock.periods_between(before, after, DAY, tz) == 0
    assert clock.periods_between(after, before, DAY, tz) == 0 and clock.periods_between(5, 5, DAY, tz) == 0


def test_business_deadline_counts_only_business_hours_across_dst():
    """Friday 16:00 + 4h of 09:00-17:00 Mon-Fri is Monday 12:00 local, across the DST change."""
    from engine import clock

    tz = "America/New_York"
    hours = ((0, 1, 2, 3, 4), 9 * 60, 17 * 60)
    friday = at_ny(2026, 3, 6, 16, 0)  # EST; clocks go forward on Sunday 8 March
    monday_noon = at_ny(2026, 3, 9, 12, 0)  # EDT
    assert clock.business_deadline(friday, 4 * HOUR, hours, tz) == monday_noon
    assert monday_noon - friday == (2 * DAY + 20 * HOUR) - HOUR  # one hour shorter in UTC than on the wall
    # the same in UTC as the zone: no DST
    assert clock.business_deadline(at_utc(2026, 3, 6, 16, 0), 4 * HOUR, hours, "UTC") == at_utc(2026, 3, 9, 12, 0)
    # starting outside hours (Saturday) counts from Monday 09:00; within the day it is plain
    assert clock.business_deadline(at_ny(2026, 3, 7, 10, 0), 4 * HOUR, hours, tz) == at_ny(2026, 3, 9, 13, 0)
    assert clock.business_deadline(at_ny(2026, 3, 10, 9, 0), 4 * HOUR, hours, tz) == at_ny(2026, 3, 10, 13, 0)
    # a 9h SLA from Tuesday 16:00: 1h on Tuesday and 8h on Wednesday, so Wednesday 17:00
    assert clock.business_deadline(at_ny(2026, 3, 10, 16, 0), 9 * HOUR, hours, tz) == at_ny(2026, 3, 11, 17, 0)
    # without business hours: the calendar
    assert clock.business_deadline(friday, 4 * HOUR, None, tz) == friday + 4 * HOUR


# == 6. Entry without a lead magnet =============================================================

WEBINAR_CONSENT = "Opted in at the spring webinar sign-up (form v3)."
ENTRIES = f"""\
entries:
  customers: {{on: crm.deal_won, enters: customer, basis: contract}}
  webinar-list: {{on: lead.imported, enters: subscriber, basis: consent, consent: "{WEBINAR_CONSENT}"}}
stages: [subscriber, customer]
transitions:
  - {{from: subscriber, to: customer, on: crm.deal_won}}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {{send: n/one}}
    exit: {{stage_at_least: customer}}
  onboarding:
    kind: onboarding
    stage: customer
    steps:
      - {{send: c/welcome}}
      - {{wait: 3d, send: c/tips}}
"""
ENTRY_TEMPLATES = ["n/one", "c/welcome", "c/tips"]
PROFILE = {"first_name": "Cy", "industry": "saas"}


def test_crm_entry_creates_a_customer_with_a_contract_basis(tmp_path):
    """An entry `on: crm.deal_won` creates the lead; consent_recorded carries the basis; onboarding runs."""
    plan = build(tmp_path, ENTRIES, ENTRY_TEMPLATES)
    lead = "cy@client.example"
    won = T0 + HOUR
    actions = run(plan, [ev("crm.deal_won", won, lead, profile=PROFILE)], until=T0 + 10 * DAY)
    [recorded] = of(actions, "consent_recorded")
    assert (recorded.at, recorded.get("magnet"), recorded.get("basis")) == (won, "customers", "contract")
    state = final_states(plan, [ev("crm.deal_won", won, lead, profile=PROFILE)])[lead]
    assert isinstance(state, LeadState)
    assert (state.stage, state.source, state.basis, state.consent_at) == ("customer", "customers", "contract", won)
    assert dict(state.profile) == PROFILE
    assert sent(actions) == [("c/welcome", won), ("c/tips", won + 3 * DAY)]


def test_import_entry_needs_a_known_entry_and_records_its_consent(tmp_path):
    """`lead.imported` naming an entry creates the lead with its consent; an unknown entry is rejected."""
    plan = build(tmp_path, ENTRIES, ENTRY_TEMPLATES)
    lead = "imp@corp.example"
    imported = event_from_json({"type": "lead.imported", "at": iso(T0), "lead": lead, "entry": "webinar-list",
                                "profile": PROFILE})
    r = core.step(plan, None, imported)
    [recorded] = of(r.actions, "consent_recorded")
    assert recorded.get("consent") == WEBINAR_CONSENT and recorded.get("basis") == "consent"
    assert recorded.get("magnet") == "webinar-list"
    assert (r.state.stage, r.state.consent, r.state.basis) == ("subscriber", WEBINAR_CONSENT, "consent")
    assert sent(r.actions) == [("n/one", T0)]
    bad = core.step(plan, None, ev("lead.imported", T0, "x@corp.example", entry="trade-show", profile=PROFILE))
    assert bad.state is None and [a.type for a in bad.actions] == ["rejected"]
    assert "trade-show" in bad.actions[0].get("reason") or "webinar-list" in bad.actions[0].get("reason")


def test_entry_with_consent_basis_requires_the_consent_text(tmp_path):
    """An entry with `basis: consent` and no `consent:` wording does not compile."""
    body = ENTRIES.replace(f', consent: "{WEBINAR_CONSENT}"', "")
    assert body != ENTRIES
    root = tmp_path / "lab"
    root.mkdir()
    (root / "funnel.yaml").write_text(HEADER + body, encoding="utf-8")
    for name in ENTRY_TEMPLATES:
        (root / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / f"{name}.j2").write_text("x", encoding="utf-8")
    with pytest.raises(ProblemsFound) as exc:
        plan_for(str(root))
    assert any("consent" in p.message for p in exc.value.problems)


def test_crm_entry_event_for_an_existing_lead_does_not_recreate_it(tmp_path):
    """The entry's CRM event for a known lead is an ordinary event: no new consent, source kept."""
    plan = build(tmp_path, ENTRIES, ENTRY_TEMPLATES)
    lead = "known@corp.example"
    won = T0 + DAY
    events = [optin(lead), ev("crm.deal_won", won, lead, profile=PROFILE)]
    actions = run(plan, events, until=T0 + 10 * DAY)
    assert [(a.at, a.get("magnet")) for a in of(actions, "consent_recorded")] == [(T0, "guide")]
    state = final_states(plan, events)[lead]
    assert (state.source, state.basis, state.consent, state.consent_at) == ("guide", "consent", CONSENT, T0)
    assert dict(state.entered) == {"subscriber": T0, "customer": won}
    assert sent(actions) == [("n/one", T0), ("c/welcome", won), ("c/tips", won + 3 * DAY)]


def test_an_import_of_a_known_lead_refreshes_its_profile_and_keeps_its_consent(tmp_path):
    """`lead.imported` for a lead that exists updates (and validates) its profile; it does not re-create it."""
    plan = build(tmp_path, ENTRIES, ENTRY_TEMPLATES)
    lead = "known@corp.example"
    state = core.step(plan, None, optin(lead)).state
    again = core.step(plan, state, ev("lead.imported", T0 + DAY, lead, entry="webinar-list",
                                      profile={"employees": 250}))
    assert not of(again.actions, "consent_recorded")
    assert dict(again.state.profile)["employees"] == 250 and again.state.source == "guide"
    bad = core.step(plan, again.state, ev("lead.imported", T0 + 2 * DAY, lead, entry="webinar-list",
                                          profile={"region": "mars"}))
    assert [a.type for a in bad.actions] == ["rejected"] and bad.state == again.state


# == 7. SLA in the core =========================================================================

SLA = """\
stages: [subscriber, sql, customer]
crm: {events: [call_logged, note_added]}
transitions:
  - {from: subscriber, to: sql, on: crm.demo_booked}
  - {from: sql, to: customer, on: crm.deal_won}
handoff:
  sql:
    assign: {round_robin: [ana@lab.example, ben@lab.example]}
    sla: 4h
"""


def test_sla_breach_is_emitted_by_the_clock_a_minute_after_the_deadline(tmp_path):
    """No CRM touch: drive emits `sla_breached` at deadline + 1 minute, with no event then."""
    plan = build(tmp_path, SLA)
    lead = "wait@corp.example"
    booked = T0 + 17
    deadline = booked + 4 * HOUR
    steps = list(drive(plan, [optin(lead), ev("crm.demo_booked", booked, lead)], until=T0 + 3 * DAY))
    [h] = [a for s in steps for a in of(s.result.actions, "handoff")]
    assert h.get("sla_deadline") == iso(deadline)
    breaches = [(s.event.type, s.event.at, a) for s in steps for a in of(s.result.actions, "sla_breached")]
    assert len(breaches) == 1
    kind, when, breach = breaches[0]
    assert (kind, when, breach.at) == ("clock", deadline + 1, deadline + 1)
    assert breach.get("deadline") == iso(deadline) and breach.get("stage") == "sql"
    assert breach.get("owner") == "ana@lab.example"
    assert not [a for s in steps for a in of(s.result.actions, "sla_met")]


@pytest.mark.parametrize("offset", [HOUR, 4 * HOUR])
def test_crm_touch_by_the_deadline_meets_the_sla(tmp_path, offset):
    """A CRM event before or at the deadline minute emits `sla_met` and no breach."""
    plan = build(tmp_path, SLA)
    lead = "quick@corp.example"
    booked = T0 + 17
    call = ev("crm.call_logged", booked + offset, lead, second=59)
    actions = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead), call], until=T0 + 3 * DAY)
    [met] = of(actions, "sla_met")
    assert (met.at, met.get("by"), met.get("deadline")) == (booked + offset, "crm.call_logged", iso(booked + 4 * HOUR))
    assert met.get("owner") == "ana@lab.example" and met.get("stage") == "sql"
    assert not of(actions, "sla_breached")


def test_crm_touch_after_the_deadline_is_too_late(tmp_path):
    """A CRM event a minute after the deadline comes after the breach and meets nothing."""
    plan = build(tmp_path, SLA)
    lead = "late@corp.example"
    booked = T0 + 17
    deadline = booked + 4 * HOUR
    actions = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead), ev("crm.call_logged", deadline + 1, lead)])
    sla = [(a.type, a.at) for a in actions if a.type in ("sla_met", "sla_breached")]
    assert sla == [("sla_breached", deadline + 1)]


def test_answered_by_limits_which_crm_events_meet_the_sla(tmp_path):
    """`answered_by: [crm.call_logged]`: a note does not answer the SLA; a logged call does."""
    plan = build(tmp_path, SLA + "    answered_by: [crm.call_logged]\n")
    lead = "note@corp.example"
    booked = T0 + 17
    deadline = booked + 4 * HOUR
    noted = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead), ev("crm.note_added", booked + HOUR, lead)],
                until=T0 + 3 * DAY)
    assert not of(noted, "sla_met")
    assert [a.at for a in of(noted, "sla_breached")] == [deadline + 1]
    called = run(plan, [optin(lead), ev("crm.demo_booked", booked, lead), ev("crm.note_added", booked + HOUR, lead),
                        ev("crm.call_logged", booked + 2 * HOUR, lead)], until=T0 + 3 * DAY)
    assert [(a.at, a.get("by")) for a in of(called, "sla_met")] == [(booked + 2 * HOUR, "crm.call_logged")]
    assert not of(called, "sla_breached")


def test_the_crm_event_causing_the_handoff_does_not_answer_it(tmp_path):
    """The CRM event that causes the handoff does not itself meet its SLA."""
    plan = build(tmp_path, SLA)
    lead = "self@corp.example"
    booked = T0 + 17
    r = chain(plan, [optin(lead), ev("crm.demo_booked", booked, lead)])[-1]
    assert of(r.actions, "handoff") and not of(r.actions, "sla_met")
    assert r.state.sla_deadline == booked + 4 * HOUR and r.state.sla_stage == "sql"


def test_the_crm_event_of_an_entry_into_a_handoff_stage_does_not_answer_its_sla(tmp_path):
    """A CRM event that creates a lead in a handoff stage (an entry) does not itself meet that handoff's SLA."""
    body = SLA.replace("stages:", "entries:\n  demos: {on: crm.demo_booked, enters: sql, basis: legitimate_interest}\n"
                                  "stages:", 1)
    plan = build(tmp_path, body)
    lead = "inbound@corp.example"
    booked = T0 + 17
    deadline = booked + 4 * HOUR
    created = core.step(plan, None, ev("crm.demo_booked", booked, lead, profile=PROFILE))
    [h] = of(created.actions, "handoff")
    assert h.get("sla_deadline") == iso(deadline)
    assert not of(created.actions, "sla_met")
    assert created.state.sla_deadline == deadline
    actions = run(plan, [ev("crm.demo_booked", booked, lead, profile=PROFILE)], until=T0 + 3 * DAY)
    assert [a.at for a in of(actions, "sla_breached")] == [deadline + 1]


def test_business_sla_clock_counts_business_hours_only(tmp_path):
    """`sla_clock: business` with 09:00-17:00: a 4h SLA from Friday 16:00 runs out Monday 12:00."""
    body = SLA + '    sla_clock: business\npolicies: {business_hours: {from: "09:00", to: "17:00"}}\n'
    plan = build(tmp_path, body)
    lead = "friday@corp.example"
    friday = at_utc(2026, 3, 6, 16, 0)
    monday_noon = at_utc(2026, 3, 9, 12, 0)
    actions = run(plan, [optin(lead, at=friday - HOUR), ev("crm.demo_booked", friday, lead)], until=friday + 7 * DAY)
    [h] = of(actions, "handoff")
    assert h.get("sla_deadline") == iso(monday_noon)
    assert [(a.at, a.get("deadline")) for a in of(actions, "sla_breached")] == [(monday_noon + 1, iso(monday_noon))]
    # the calendar clock (the default) would have run out on Friday at 20:00
    calendar = run(build(tmp_path / "cal", SLA), [optin(lead, at=friday - HOUR), ev("crm.demo_booked", friday, lead)],
                   until=friday + 7 * DAY)
    assert [a.at for a in of(calendar, "sla_breached")] == [friday + 4 * HOUR + 1]


def test_business_sla_clock_uses_the_senders_timezone(tmp_path):
    """Business hours are the sender's: New York Friday 16:00 + 4h is Monday 12:00 there (after DST starts)."""
    body = SLA + '    sla_clock: business\npolicies: {business_hours: {from: "09:00", to: "17:00"}}\n'
    plan = build(tmp_path, body, header=NY_HEADER)
    lead = "ny@corp.example"
    friday, monday_noon = at_ny(2026, 3, 6, 16, 0), at_ny(2026, 3, 9, 12, 0)
    actions = run(plan, [optin(lead, at=friday - HOUR), ev("crm.demo_booked", friday, lead)], until=friday + 7 * DAY)
    assert [h.get("sla_deadline") for h in of(actions, "handoff")] == [iso(monday_noon)] == ["2026-03-09T16:00:00Z"]
    assert [a.at for a in of(actions, "sla_breached")] == [monday_noon + 1]


# == Edge cases found in review =================================================================

HELD = """\
  demo-request: {kind: trial, consent: "Call me about a demo. I can unsubscribe at any time.", enters: subscriber}
stages: [subscriber, sql]
transitions:
  - {from: subscriber, to: sql, on: crm.demo_booked}
handoff:
  mql: {assign: {owner: ana@lab.example}, sla: 4h}
  sql: {assign: {owner: ben@lab.example}, sla: 4h}
scoring:
  events: {site.visited.pricing: 20}
sequences:
  deal-support:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: s/prep}
    exit: {on: [crm.deal_won]}
"""


def test_a_held_crm_event_starts_the_sequence_it_would_start_live(tmp_path):
    """Held activity is applied like live activity: `on: crm.demo_booked` enters deal-support at the opt-in."""
    plan = build(tmp_path, HELD.replace("  mql: {assign: {owner: ana@lab.example}, sla: 4h}\n", ""), ["s/prep"])
    lead = "early@corp.example"
    actions = run(plan, [ev("crm.demo_booked", T0 - HOUR, lead), optin(lead)], until=T0 + DAY)
    assert sent(actions) == [("s/prep", T0)]
    assert [a.get("sequence") for a in of(actions, "enter_sequence")] == ["deal-support"]


def test_the_held_cap_keeps_the_latest_activity(tmp_path):
    """Old activity that can never apply makes no room for the pricing visit an hour before the opt-in."""
    plan = build(tmp_path, HELD.replace("  mql: {assign: {owner: ana@lab.example}, sla: 4h}\n", ""), ["s/prep"])
    lead = "busy@corp.example"
    events = [ev("site.visited", T0 - 60 * DAY + i, lead, page="blog") for i in range(100)]
    events += [ev("site.visited", T0 - HOUR, lead, page="pricing"), optin(lead)]
    state = final_states(plan, events)[lead]
    assert state.score == 5 + 20  # the guide's points and the pricing visit
    applied = [a for a in run(plan, events) if a.type == "applied"]
    assert len(applied) == 1 and "pricing" in applied[0].get("reason")


def test_a_held_download_of_the_same_magnet_does_not_score_or_deliver_twice(tmp_path):
    """Only the opt-in that creates the lead scores its magnet; a held download of it is a repeat."""
    plan = build(tmp_path, HELD.replace("  mql: {assign: {owner: ana@lab.example}, sla: 4h}\n", ""), ["s/prep"])
    lead = "twice@corp.example"
    events = [ev("magnet.downloaded", T0 - HOUR, lead, magnet="guide"), optin(lead)]
    state = final_states(plan, events)[lead]
    assert state.score == 5


def test_a_second_handoff_closes_the_pending_sla_as_superseded(tmp_path):
    """A later handoff does not drop the earlier SLA silently: `sla_superseded`, then the new SLA runs."""
    body = HELD.replace("stages: [subscriber, sql]", "stages: [subscriber, mql, sql]").replace(
        "  - {from: subscriber, to: sql, on: crm.demo_booked}",
        "  - {from: subscriber, to: mql, when: \"score >= 20\"}\n  - {from: mql, to: sql, on: crm.demo_booked}")
    plan = build(tmp_path, body, ["s/prep"])
    lead = "fast@corp.example"
    visit, booked = T0 + HOUR, T0 + 2 * HOUR
    actions = run(plan, [optin(lead), ev("site.visited", visit, lead, page="pricing"),
                         ev("crm.demo_booked", booked, lead)], until=T0 + DAY)
    # the demo booking answers ana's SLA (a CRM touch) before it makes the sql handoff to ben
    assert [(a.type, a.get("owner")) for a in actions if a.type.startswith("sla_")] == [
        ("sla_met", "ana@lab.example"), ("sla_breached", "ben@lab.example")]
    body2 = body.replace("  - {from: mql, to: sql, on: crm.demo_booked}", "  - {from: mql, to: sql, when: \"score >= 40\"}")
    plan2 = build(tmp_path / "two", body2, ["s/prep"])
    actions = run(plan2, [optin(lead), ev("site.visited", visit, lead, page="pricing"),
                          ev("site.visited", booked, lead, page="pricing")], until=T0 + DAY)
    [closed] = of(actions, "sla_superseded")
    assert (closed.at, closed.get("owner"), closed.get("deadline")) == (booked, "ana@lab.example", iso(visit + 4 * HOUR))
    assert [a.get("owner") for a in of(actions, "sla_breached")] == ["ben@lab.example"]


def test_business_hours_on_a_daylight_saving_day_count_real_minutes():
    """00:00-06:00 on the day New York springs forward holds 5 real hours, not 6."""
    from engine import clock

    start = at_ny(2026, 3, 8, 0, 0)
    every_day = (tuple(range(7)), 0, 6 * 60)
    assert clock.business_deadline(start, 300, every_day, "America/New_York") == at_ny(2026, 3, 8, 6, 0)
    assert clock.business_deadline(start, 330, every_day, "America/New_York") == at_ny(2026, 3, 9, 0, 30)


def test_a_ten_year_business_sla_ends_inside_business_hours():
    """Long SLAs jump whole weeks and still end at a business minute."""
    from engine import clock

    start = at_ny(2026, 3, 6, 16, 0)
    hours = ((0, 1, 2, 3, 4), 9 * 60, 17 * 60)
    end = clock.business_deadline(start, 520 * 7 * 1440, hours, "America/New_York")
    local = datetime.fromtimestamp(end * 60, tz=NY)
    assert local.year > 2060 and local.weekday() < 5 and 9 <= local.hour <= 17


def test_windowed_decay_sums_by_period_like_point_by_point():
    """The per-period sum equals decaying each point on its own."""
    from engine import clock, score

    pts = [(T0 + i * 397, float(i % 7 + 1)) for i in range(300)]
    now = T0 + 300 * 397 + 5
    total, kept = score.windowed(pts, 0.95, 1440, 60 * DAY, now, "Europe/Berlin")
    one_by_one = sum(n * 0.95 ** clock.periods_between(t, now, 1440, "Europe/Berlin") for t, n in kept)
    assert total == pytest.approx(one_by_one, rel=1e-12)
    assert 0 < len(kept) < len(pts) and all(t > now - 60 * DAY for t, _ in kept)  # the window dropped the oldest


def test_pages_nothing_asks_about_do_not_grow_the_lead(tmp_path):
    """Facts keep only details the plan can ask about: 2,000 distinct pages add no facts."""
    plan = build(tmp_path, HELD.replace("  mql: {assign: {owner: ana@lab.example}, sla: 4h}\n", ""), ["s/prep"])
    lead = "reader@corp.example"
    events = [optin(lead)] + [ev("site.visited", T0 + i, lead, page=f"blog/{i}") for i in range(1, 2001)]
    events.append(ev("site.visited", T0 + 3000, lead, page="pricing"))
    state = final_states(plan, events)[lead]
    keys = [k for k, _ in state.facts if k.startswith("site.visited")]
    assert keys == ["site.visited", "site.visited.pricing"]
