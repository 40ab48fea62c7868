"""Double opt-in (confirmed opt-in) for lead magnets that ask for it (`double_opt_in:`).

The fixture is `tests/double_optin/doi.yaml`: lead magnet `guide` asks for double opt-in
(confirmation email `magnets/confirm`, within 3d), `checklist` is a single opt-in. Every
test runs the real engine (`engine.core.step` through `engine.drive`), the real CLI or the
real simulator; nothing is mocked.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from conftest import REPO, check, clean_env, run_fnl
from engine import core
from engine import plan as P
from engine.drive import drive, next_due
from engine.pipeline import plan_for
from engine.runtime import codec
from engine.simulate.behavior import find_behavior, load_behavior
from engine.simulate.run import simulate
from engine.simulate.vector import unsupported
from engine.state import RECONFIRM_AFTER_MINUTES, Action, Event, LeadState, Pending, Prospect, Shared, parse_time
from engine.templates import WITH_CONFIRM, sample_context

FIXTURE = REPO / "tests" / "double_optin"
FUNNEL = FIXTURE / "doi.yaml"
LEAD = "ana@x.example"
T0 = parse_time("2026-03-02T09:00:00Z")
HOUR, DAY = 60, 1440
PROFILE = {"first_name": "Ana", "employees": 40}


@pytest.fixture(scope="module")
def plan() -> P.Plan:
    return plan_for(str(FUNNEL))


def run(plan: P.Plan, events: List[Event], state: core.State = None) -> Tuple[core.State, List[Action]]:
    """Apply events one by one with `core.step` (no clock between them): the state after
    them, and every action."""
    actions: List[Action] = []
    shared = Shared()
    for event in events:
        result = core.step(plan, state, event, shared)
        state, shared = result.state, result.shared
        actions.extend(result.actions)
    return state, actions


def kinds(actions: List[Action]) -> List[str]:
    return [a.type for a in actions]


def sends(actions: List[Action]) -> List[Tuple[str, str]]:
    return [(a.get("kind"), a.get("template")) for a in actions if a.type == "send_email"]


def optin(at: int, magnet: str = "guide", lead: str = LEAD, **profile: Any) -> Event:
    return Event("optin", at, lead, magnet=magnet, profile=profile or dict(PROFILE))


def confirmed(at: int, lead: str = LEAD, magnet: Optional[str] = None) -> Event:
    return Event("optin.confirmed", at, lead, magnet=magnet)


def without_double_opt_in(plan: P.Plan) -> P.Plan:
    return replace(plan, lead_magnets=tuple(replace(m, double_opt_in=None) for m in plan.lead_magnets))


# -- the language, the plan, lint -------------------------------------------------------------------

def test_the_plan_carries_the_double_opt_in_and_reads_back(plan: P.Plan) -> None:
    guide = plan.magnet("guide")
    assert guide is not None and guide.double_opt_in == P.DoubleOptIn("magnets/confirm", 3 * DAY)
    assert plan.magnet("checklist").double_opt_in is None  # type: ignore[union-attr]
    text = P.dumps(plan)
    body = json.loads(text)
    assert [("double_opt_in" in m) for m in body["lead_magnets"]] == [True, False]  # left out when absent
    assert P.from_dict(body) == plan
    assert "magnets/confirm" in {t.name for t in plan.templates}  # its template is hashed into the plan


@pytest.mark.parametrize("example", ["funnels/acme", "funnels/newsletter-to-demo.yaml", "funnels/reference.yaml"])
def test_plans_of_funnels_without_it_say_nothing_of_it(example: str) -> None:
    text = P.dumps(plan_for(str(REPO / example)))
    assert "double_opt_in" not in text and "within_minutes" not in text


def test_the_window_defaults_to_seven_days_and_the_hash_follows_it(tmp_path: Path) -> None:
    source = FUNNEL.read_text(encoding="utf-8")
    copy = tmp_path / "doi.yaml"
    shutil.copytree(FIXTURE / "templates", tmp_path / "templates")
    copy.write_text(source.replace(", within: 3d}", "}"), encoding="utf-8")
    default = plan_for(str(copy))
    assert default.magnet("guide").double_opt_in.within_minutes == 7 * DAY  # type: ignore[union-attr]
    assert default.content_hash != plan_for(str(FUNNEL)).content_hash
    copy.write_text(re.sub(r"\n    double_opt_in: .*\n", "\n", source), encoding="utf-8")
    single = plan_for(str(copy))
    assert all(m.double_opt_in is None for m in single.lead_magnets)
    assert "double_opt_in" not in P.dumps(single)


def test_the_fixture_is_lint_clean() -> None:
    assert check(FUNNEL) == []


def test_a_missing_confirmation_template_is_caught_where_it_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "doi.yaml"
    shutil.copytree(FIXTURE / "templates", tmp_path / "templates")
    text = FUNNEL.read_text(encoding="utf-8").replace("confirm: magnets/confirm", "confirm: magnets/confrim")
    copy.write_text(text, encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "magnets/confrim" in row)
    column = text.splitlines()[line - 1].index("magnets/confrim") + 1
    found = check(copy)
    problems = [p for p in found if p.code != "FNL209"]  # FNL209: magnets/confirm.j2 is now unused
    assert all("magnets/confirm" in p.message for p in found if p.code == "FNL209")
    assert [(p.code, p.location.line, p.location.column) for p in problems] == [("FNL201", line, column)]
    assert "template `magnets/confrim` does not exist" in problems[0].message
    assert "did you mean `magnets/confirm`?" in problems[0].help
    out = run_fnl("validate", copy)
    assert out.returncode != 0 and f"{copy}:{line}:{column}" in out.stdout + out.stderr, out.stdout


@pytest.mark.parametrize("shape, code, says", [
    ("{within: 3d}", "FNL101", "confirm"),
    ("{confirm: magnets/confirm, within: 3days}", "FNL104", ""),
    ("{confirm: magnets/confirm, after: 3d}", "FNL100", "after"),
    ("[magnets/confirm]", "FNL102", "expected"),
])
def test_a_bad_double_opt_in_is_one_located_schema_error(tmp_path: Path, shape: str, code: str, says: str) -> None:
    copy = tmp_path / "doi.yaml"
    shutil.copytree(FIXTURE / "templates", tmp_path / "templates")
    text = FUNNEL.read_text(encoding="utf-8").replace("{confirm: magnets/confirm, within: 3d}", shape)
    copy.write_text(text, encoding="utf-8")
    problems = check(copy)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "double_opt_in:" in row)
    assert [p.code for p in problems] == [code], [(p.code, p.message) for p in problems]
    assert problems[0].location.line == line and says in problems[0].message + problems[0].help


def test_the_confirmation_email_gets_its_link_and_the_magnet(plan: P.Plan) -> None:
    from engine.pipeline import checked_funnel, one_source

    funnel, _ = checked_funnel(one_source(str(FUNNEL)))
    context = sample_context(funnel, purpose="confirmation", confirm_url="https://acme.example/c/tok")
    assert context["confirm_url"] == "https://acme.example/c/tok" and context["magnet"]["title"]
    assert "confirm_url" not in sample_context(funnel, purpose="delivery")
    assert "confirmation" in WITH_CONFIRM


# -- the core ----------------------------------------------------------------------------------------

def test_an_optin_waits_and_sends_one_transactional_confirmation(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0)])
    assert isinstance(state, Prospect) and state.pending == Pending(
        "guide", plan.magnet("guide").consent, T0, T0 + 3 * DAY,  # type: ignore[union-attr]
        tuple(sorted(PROFILE.items())), T0)
    assert kinds(actions) == ["optin_pending", "send_email"]
    assert sends(actions) == [("confirmation", "magnets/confirm")]
    assert actions[1].get("magnet") == "guide" and actions[1].get("sequence") is None
    assert next_due(state) == T0 + 3 * DAY  # the runtime's clock wakes the lead when it expires


def test_a_confirmation_enters_the_lead_exactly_as_a_single_optin_then_would(plan: P.Plan) -> None:
    at = T0 + 26 * HOUR
    state, actions = run(plan, [optin(T0), confirmed(at)])
    assert isinstance(state, LeadState)
    assert state.stage == "subscriber" and state.consent_at == at and state.opted_in_at == T0
    assert state.consent == plan.magnet("guide").consent and state.source == "guide"  # type: ignore[union-attr]
    entered = actions[2:]
    consent = entered[0]
    assert consent.type == "consent_recorded"
    assert consent.get("opted_in_at") == "2026-03-02T09:00:00Z"
    assert consent.get("confirmed_at") == "2026-03-03T11:00:00Z"
    assert sends(entered) == [("delivery", "magnets/guide")]
    # The same lead opting in at that minute through the same magnet without double opt-in.
    single, direct = run(without_double_opt_in(plan), [optin(at)])
    assert replace(state, opted_in_at=None) == single
    def strip(a: Action) -> Action:
        return replace(a, detail=tuple((k, v) for k, v in a.detail if k not in ("opted_in_at", "confirmed_at")))

    assert [strip(a) for a in entered] == direct


def test_nothing_runs_while_pending_and_activity_is_held_as_before_an_optin(plan: P.Plan) -> None:
    visit = Event("site.visited", T0 + HOUR, LEAD, page="pricing")
    opened = Event("email.opened", T0 + 2 * HOUR, LEAD, template="magnets/confirm")
    state, actions = run(plan, [optin(T0), visit, opened, Event("clock", T0 + 2 * DAY, LEAD)])
    assert isinstance(state, Prospect) and state.held == (visit,) and state.pending is not None
    assert kinds(actions) == ["optin_pending", "send_email", "held", "ignored"]
    assert "held until ana@x.example confirms its opt-in to guide" in actions[2].get("reason")
    assert "confirmation email is transactional" in actions[3].get("reason")
    # No score, nurture or stage for a pending lead: those start when it confirms, with the visit applied.
    state, more = run(plan, [confirmed(T0 + 2 * DAY)], state)
    assert isinstance(state, LeadState) and state.score == 30.0 and state.stage == "mql"
    assert "applied" in kinds(more) and "stage_changed" in kinds(more)


def test_an_unconfirmed_optin_expires_and_a_later_one_starts_over(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0)])
    items = list(drive(plan, [optin(T0)], until=T0 + 4 * DAY))
    expired = [a for item in items for a in item.result.actions if a.type == "optin_expired"]
    assert len(expired) == 1 and expired[0].at == T0 + 3 * DAY
    assert "expired unconfirmed at 2026-03-05T09:00:00Z" in expired[0].get("reason")
    assert not any(a.type == "send_email" for item in items[1:] for a in item.result.actions)  # no email
    last = items[-1].result.state
    assert isinstance(last, Prospect) and last.pending is None
    state, late = run(plan, [confirmed(T0 + 4 * DAY)], last)
    assert kinds(late) == ["ignored"] and "no opt-in waits for confirmation" in late[0].get("reason")
    state, again = run(plan, [optin(T0 + 5 * DAY)], state)
    assert sends(again) == [("confirmation", "magnets/confirm")]
    assert isinstance(state, Prospect) and state.pending.expires == T0 + 8 * DAY  # type: ignore[union-attr]


def test_an_event_after_the_window_expires_the_optin_first(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0), confirmed(T0 + 3 * DAY)])
    assert kinds(actions) == ["optin_pending", "send_email", "optin_expired", "ignored"]
    assert isinstance(state, Prospect)
    state, actions = run(plan, [optin(T0), confirmed(T0 + 3 * DAY - 1)])
    assert isinstance(state, LeadState)  # the last minute of the window still counts


def test_a_repeated_optin_sends_no_second_confirmation_within_a_day(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0), Event("optin", T0 + HOUR, LEAD, magnet="guide", profile={"employees": 60})])
    assert sends(actions) == [("confirmation", "magnets/confirm")]
    assert kinds(actions)[2:] == ["not_sent"]
    assert "at most once per 24h" in actions[2].get("reason")
    assert isinstance(state, Prospect) and state.pending is not None
    assert state.pending.at == T0 and dict(state.pending.profile)["employees"] == 60  # newest profile kept
    later = T0 + RECONFIRM_AFTER_MINUTES
    state, again = run(plan, [optin(later)], state)
    assert sends(again) == [("confirmation", "magnets/confirm")]
    assert state.pending.at == later and state.pending.expires == later + 3 * DAY  # type: ignore[union-attr]


def test_an_unsubscribe_while_pending_cancels_it_for_good(plan: P.Plan) -> None:
    unsub = Event("email.unsubscribed", T0 + 10, LEAD, template="magnets/confirm")
    state, actions = run(plan, [optin(T0), unsub])
    assert isinstance(state, Prospect) and state.pending is None and state.unsubscribed_at == T0 + 10
    assert kinds(actions)[2:] == ["recorded", "optin_cancelled"]
    assert next_due(state) is None
    state, more = run(plan, [confirmed(T0 + 20), optin(T0 + DAY)], state)
    assert kinds(more) == ["ignored", "not_sent"] and not sends(more)
    assert "unsubscribed at 2026-03-02T09:10:00Z: no confirmation email" in more[1].get("reason")
    # A single opt-in later still creates the lead, unsubscribed: no delivery, no nurture.
    state, single = run(plan, [optin(T0 + 2 * DAY, magnet="checklist")], state)
    assert isinstance(state, LeadState) and state.unsubscribed and state.unsubscribed_at == T0 + 10
    assert not sends(single) and "not_sent" in kinds(single)
    assert codec.decode(codec.encode(state)) == state


@pytest.mark.parametrize("event, bounced", [
    (Event("email.complained", T0 + 10, LEAD, template="magnets/confirm"), True),
    (Event("email.bounced", T0 + 10, LEAD, template="magnets/confirm", bounce="hard"), True),
])
def test_a_complaint_or_hard_bounce_of_the_confirmation_suppresses_the_address(plan: P.Plan, event: Event,
                                                                                bounced: bool) -> None:
    state, actions = run(plan, [optin(T0), event, optin(T0 + 2 * DAY)])
    assert isinstance(state, Prospect) and state.bounced is bounced and state.pending is None
    assert "suppressed" in kinds(actions) and "optin_cancelled" in kinds(actions)
    assert sends(actions) == [("confirmation", "magnets/confirm")]  # the first one only
    assert codec.decode(codec.encode(state)) == state


def test_a_confirmation_for_a_lead_already_in_or_of_another_magnet_is_ignored(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0), confirmed(T0 + 5, magnet="checklist")])
    assert kinds(actions)[-1] == "ignored" and "the opt-in waiting is to guide" in actions[-1].get("reason")
    state, actions = run(plan, [confirmed(T0 + 6, magnet="guide"), confirmed(T0 + 7)], state)
    assert isinstance(state, LeadState) and kinds(actions)[-1] == "ignored"
    assert "already in the funnel (it confirmed at 2026-03-02T09:06:00Z)" in actions[-1].get("reason")
    state, actions = run(plan, [confirmed(T0)])  # nobody opted in
    assert state is None and kinds(actions) == ["ignored"]


def test_a_bad_confirmation_is_rejected_with_a_reason(plan: P.Plan) -> None:
    state, actions = run(plan, [optin(T0), Event("optin.confirmed", T0 + 5, LEAD, profile={"employees": "many"})])
    assert kinds(actions)[-1] == "rejected" and "`employees` must be integer" in actions[-1].get("reason")
    assert isinstance(state, Prospect) and state.pending is not None  # still waiting
    state, actions = run(plan, [optin(T0 + 10), confirmed(T0 + 5)])
    assert kinds(actions)[-1] == "rejected" and "send events in time order" in actions[-1].get("reason")


# -- the trace -----------------------------------------------------------------------------------------

EVENTS = [
    {"type": "site.visited", "at": "2026-03-02T08:00:00Z", "lead": LEAD, "page": "pricing"},
    {"type": "optin", "at": "2026-03-02T09:00:00Z", "lead": LEAD, "magnet": "guide", "profile": PROFILE},
    {"type": "optin", "at": "2026-03-02T10:00:00Z", "lead": LEAD, "magnet": "guide"},
    {"type": "optin.confirmed", "at": "2026-03-03T11:00:00Z", "lead": LEAD},
    {"type": "optin", "at": "2026-03-02T09:00:00Z", "lead": "ben@x.example", "magnet": "guide"},
    {"type": "optin", "at": "2026-03-02T09:00:00Z", "lead": "cy@x.example", "magnet": "guide"},
    {"type": "email.unsubscribed", "at": "2026-03-02T09:10:00Z", "lead": "cy@x.example",
     "template": "magnets/confirm"},
]


def write_events(path: Path, events: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def test_the_trace_says_each_step_in_words(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    out = run_fnl("trace", FUNNEL, "--events", events, "--until", "2026-03-10T00:00:00Z")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for line in [
        "2026-03-02T09:00:00Z  ana@x.example  optin guide  [not a lead yet: waiting for confirmation of guide]",
        "    → opt-in to guide waits for confirmation until 2026-03-05T09:00:00Z (double opt-in): ana@x.example "
        "enters the funnel when it confirms",
        "    → send magnets/confirm  (confirmation of the opt-in to guide: transactional)",
        "    → not sent: magnets/confirm: opt-in to guide repeated: a confirmation went out at "
        "2026-03-02T09:00:00Z, and another goes out at most once per 24h; its link confirms until "
        "2026-03-05T09:00:00Z",
        "    → consent recorded from guide: \"Send me the benchmark and Acme's emails. I can unsubscribe at any "
        "time.\" (opted in at 2026-03-02T09:00:00Z, confirmed at 2026-03-03T11:00:00Z)",
        "    → applied site.visited pricing from 2026-03-02T08:00:00Z, held until the lead entered the funnel",
        "    → send magnets/guide  (delivery of lead magnet guide)",
        "2026-03-05T09:00:00Z  ben@x.example  clock  [not a lead yet]",
        "    → opt-in to guide from 2026-03-02T09:00:00Z expired unconfirmed at 2026-03-05T09:00:00Z (double "
        "opt-in within 3d); a new opt-in starts over",
        "    → unsubscribe from the confirmation email magnets/confirm: no email of any kind goes to cy@x.example, "
        "also if it enters the funnel later",
        "    → the opt-in to guide from 2026-03-02T09:00:00Z is cancelled: unsubscribed at 2026-03-02T09:10:00Z",
    ]:
        assert line in text.splitlines(), f"missing: {line}\n{text}"
    # the JSON form carries the same actions, with their reasons
    out = run_fnl("trace", FUNNEL, "--events", events, "--until", "2026-03-10T00:00:00Z", "--format", "json")
    kinds_seen = {a["type"] for line in out.stdout.splitlines() for a in json.loads(line)["actions"]}
    assert {"optin_pending", "optin_expired", "optin_cancelled", "consent_recorded"} <= kinds_seen


# -- the simulation ------------------------------------------------------------------------------------

def test_the_simulator_confirms_at_the_rate_through_the_core() -> None:
    plan = plan_for(str(FUNNEL))
    behavior = load_behavior(find_behavior(FUNNEL), plan)  # type: ignore[arg-type]
    guide = next(a for a in behavior.arrivals if a.source == "guide")
    assert guide.confirm is not None and guide.confirm.rate == 0.6
    why = unsupported(plan, behavior)
    assert why is not None and "double opt-in" in why and "lead by lead" in why
    first = simulate(plan, behavior, seed=7)
    through = [r for r in first.leads if r.source == "guide"]
    share = sum(r.created for r in through) / len(through)
    assert len(through) == 600 and abs(share - 0.6) < 0.06, share
    assert all(r.created for r in first.leads if r.source == "checklist")
    assert sum(s.kind == "confirmation" for s in first.sends) == 600
    assert first.rejected == 0
    again = simulate(plan, behavior, seed=7)
    assert again.tally == first.tally and [r.created for r in again.leads] == [r.created for r in first.leads]
    other = simulate(plan, behavior, seed=8)
    assert [r.created for r in other.leads] != [r.created for r in first.leads]


def test_the_behaviour_model_assumes_a_rate_and_refuses_one_for_a_single_optin(tmp_path: Path) -> None:
    plan = plan_for(str(FUNNEL))
    model = tmp_path / "doi.behavior.yaml"
    model.write_text("behavior: 1\nfunnel: doi-guide\narrivals:\n  guide: {leads: 10}\n"
                     "  checklist: {leads: 10, confirm: {rate: 0.5}}\n", encoding="utf-8")
    from engine.simulate.behavior import check_behavior

    problems = check_behavior(model, plan)
    assert [(p.code, p.location.line) for p in problems] == [("FNL802", 5)]
    assert "`checklist` does not ask for double opt-in" in problems[0].message
    model.write_text("behavior: 1\nfunnel: doi-guide\narrivals:\n  guide: {leads: 10}\n", encoding="utf-8")
    behavior = load_behavior(model, plan)
    assert behavior.arrivals[0].confirm is not None and behavior.arrivals[0].confirm.rate == 0.7
    assert any("70 % of the opt-ins through `guide` confirm them" in a for a in behavior.assumptions)


def test_the_example_funnels_behaviour_models_say_nothing_of_confirmations() -> None:
    for example in ("funnels/acme", "funnels/reference.yaml", "funnels/newsletter-to-demo.yaml"):
        plan = plan_for(str(REPO / example))
        behavior = load_behavior(find_behavior(REPO / example), plan)  # type: ignore[arg-type]
        assert all(a.confirm is None for a in behavior.arrivals)
        assert not any("confirm" in a for a in behavior.assumptions)


# -- the runtime ---------------------------------------------------------------------------------------

def fnl_run(*args: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "fnl.py", "run", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=clean_env())


def test_fnl_run_sends_the_confirmation_then_delivers_once_confirmed(tmp_path: Path) -> None:
    db, actions = tmp_path / "doi.db", tmp_path / "actions.jsonl"
    first = write_events(tmp_path / "first.jsonl", EVENTS[1:2])
    done = fnl_run(FUNNEL, "--db", db, "--events", first, "--until", "2026-03-02T12:00:00Z",
                   "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in actions.read_text(encoding="utf-8").splitlines()]
    emails = [a for a in lines if a["type"] == "send_email"]
    assert [(a["kind"], a["template"], a["magnet"]) for a in emails] == [("confirmation", "magnets/confirm", "guide")]
    assert not any(a["type"] == "consent_recorded" for a in lines)  # not a lead yet
    second = write_events(tmp_path / "second.jsonl", [EVENTS[3]])
    done = fnl_run(FUNNEL, "--db", db, "--events", second, "--until", "2026-03-03T12:00:00Z",
                   "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in actions.read_text(encoding="utf-8").splitlines()]
    emails = [a for a in lines if a["type"] == "send_email"]
    assert [(a["kind"], a["template"], a["at"]) for a in emails] == [
        ("confirmation", "magnets/confirm", "2026-03-02T09:00:00Z"),
        ("delivery", "magnets/guide", "2026-03-03T11:00:00Z")]
    consent = next(a for a in lines if a["type"] == "consent_recorded")
    assert consent["opted_in_at"] == "2026-03-02T09:00:00Z" and consent["confirmed_at"] == "2026-03-03T11:00:00Z"
    assert len({a["idempotency_key"] for a in lines}) == len(lines)  # each action delivered once


def test_fnl_run_expires_an_unconfirmed_optin_on_the_clock(tmp_path: Path) -> None:
    db, actions = tmp_path / "doi.db", tmp_path / "actions.jsonl"
    events = write_events(tmp_path / "events.jsonl", [EVENTS[4]])
    done = fnl_run(FUNNEL, "--db", db, "--events", events, "--until", "2026-03-02T12:00:00Z",
                   "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    done = fnl_run(FUNNEL, "--db", db, "--until", "2026-03-06T00:00:00Z", "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in actions.read_text(encoding="utf-8").splitlines()]
    assert [a["type"] for a in lines] == ["optin_pending", "send_email", "optin_expired"]
    assert lines[-1]["at"] == "2026-03-05T09:00:00Z"
