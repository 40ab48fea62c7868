"""SLA escalation (`handoff.STAGE.escalate`): a handoff that no sales touch answers in time is
escalated as the definition says, and shows in `fnl status`.

The fixture is `tests/escalation/esc.yaml`: a visit to pricing makes a lead an SQL, handed
to ana, ben or cy in turn with 4h to follow up (calendar clock); on a breach the SDR lead and
the owner's manager are told, the lead goes to the next rep of the round robin (skipping
the owner), who has 2h more. An opportunity goes to eve or fay within 4 working hours
(09:00-17:00, Monday to Friday, UTC), answered only by crm.call_logged, and escalates to
closer@ with 4 more working hours. Everything runs the real engine (`engine.core.step`
through `engine.drive`), the real CLI and the real simulator; nothing is mocked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from conftest import REPO, check, clean_env, run_fnl
from engine import plan as P
from engine.drive import drive
from engine.pipeline import plan_for
from engine.runtime import codec
from engine.runtime.webhook import TAKES
from engine.simulate.behavior import find_behavior, load_behavior
from engine.simulate.run import simulate
from engine.simulate.vector import unsupported
from engine.state import Action, Event, LeadState, parse_time
from engine.trace import _describe_action

FIXTURE = REPO / "tests" / "escalation"
FUNNEL = FIXTURE / "esc.yaml"
T0 = parse_time("2026-03-02T09:00:00Z")  # a Monday
HOUR, DAY = 60, 1440
A, B, C = "a@x.example", "b@x.example", "c@x.example"


@pytest.fixture(scope="module")
def plan() -> P.Plan:
    return plan_for(str(FUNNEL))


def optin(lead: str, at: int = T0) -> Event:
    return Event("optin", at, lead, magnet="guide", profile={"first_name": "Ana"})


def pricing(lead: str, at: int) -> Event:
    return Event("site.visited", at, lead, page="pricing")


def crm(kind: str, lead: str, at: int) -> Event:
    return Event(f"crm.{kind}", at, lead)


def run(plan: P.Plan, events: List[Event], until: int) -> Tuple[Dict[str, Any], List[Action]]:
    """Every lead's last state and every action, the clock run to `until`."""
    states: Dict[str, Any] = {}
    actions: List[Action] = []
    for item in drive(plan, events, until):
        if item.event.lead:
            states[item.event.lead] = item.result.state
        actions.extend(item.result.actions)
    return states, actions


def of(actions: List[Action], kind: str, lead: str = "") -> List[Action]:
    return [a for a in actions if a.type == kind and (not lead or a.lead == lead)]


def at(text: str) -> int:
    return parse_time(text)


# -- the language, the plan, lint -------------------------------------------------------------------

def test_the_plan_carries_the_escalation_and_reads_back(plan: P.Plan) -> None:
    sql = plan.handoff_for("sql")
    assert sql is not None and sql.escalate == P.Escalation(
        ("sales-lead@acme.example", "manager"),
        (("ana@acme.example", "lisa@acme.example"), ("ben@acme.example", "lisa@acme.example"),
         ("cy@acme.example", "omar@acme.example")), "next", None, 120)
    opp = plan.handoff_for("opportunity")
    assert opp is not None and opp.escalate == P.Escalation(("sales-lead@acme.example",), (), "to",
                                                            "closer@acme.example", 240)
    assert P.from_dict(json.loads(P.dumps(plan))) == plan


@pytest.mark.parametrize("example", ["funnels/acme", "funnels/newsletter-to-demo.yaml", "funnels/reference.yaml"])
def test_plans_of_funnels_without_it_say_nothing_of_it(example: str) -> None:
    assert "escalate" not in P.dumps(plan_for(str(REPO / example)))


def test_the_fixture_is_lint_clean() -> None:
    assert check(FUNNEL) == []


def copy_fixture(tmp_path: Path, old: str, new: str) -> Tuple[Path, str]:
    shutil.copytree(FIXTURE / "templates", tmp_path / "templates")
    text = FUNNEL.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    copy = tmp_path / "esc.yaml"
    copy.write_text(text, encoding="utf-8")
    return copy, text


def line_of(text: str, piece: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if piece in row)


@pytest.mark.parametrize("old, new, code, says, where", [
    ("    sla: 4h\n    sla_clock: business\n", "    sla_clock: business\n", "FNL108", "`escalate` needs `sla`",
     "escalate:\n      notify: [sales-lead@acme.example]\n      reassign: {to"),
    ("notify: [sales-lead@acme.example, manager]", "notify: [sales-lead, manager]", "FNL104", "sales-lead",
     "notify: [sales-lead, manager]"),
    ("reassign: true", "reassign: next", "FNL102", "expected", "reassign: next"),
    ("      sla: 2h\n", "      sla: 2h\n      after: 1h\n", "FNL100", "after", "after: 1h"),
    ("reassign: {to: closer@acme.example}", "reassign: {}", "FNL101", "`to`", "reassign: {}"),
])
def test_a_bad_escalation_is_one_located_schema_error(tmp_path: Path, old: str, new: str, code: str, says: str,
                                                      where: str) -> None:
    copy, text = copy_fixture(tmp_path, old, new)
    problems = check(copy)
    assert len(problems) == 1 and problems[0].code.startswith(code), [(p.code, p.message) for p in problems]
    first = where.split("\n")[0]
    if first.startswith("escalate:"):  # the handoff of the second escalate
        line = [i for i, row in enumerate(text.splitlines(), 1) if "escalate:" in row][1]
    else:
        line = line_of(text, first)
    assert problems[0].location.line == line and says in problems[0].message + problems[0].help, problems[0]


def test_reassigning_with_one_rep_and_a_manager_nobody_maps_are_lint_errors(tmp_path: Path) -> None:
    copy, text = copy_fixture(tmp_path, "assign: {round_robin: [ana@acme.example, ben@acme.example, cy@acme.example]}",
                              "assign: {owner: ana@acme.example}")
    text = text.replace("managers: {ana@acme.example: lisa@acme.example, ben@acme.example: lisa@acme.example,\n"
                        "                 cy@acme.example: omar@acme.example}",
                        "managers: {ben@acme.example: lisa@acme.example}")
    copy.write_text(text, encoding="utf-8")
    found = [(p.code, p.location.line, p.message) for p in check(copy)]
    assert [(c, n) for c, n, _ in found] == [("FNL510", line_of(text, "managers: {ben@")),
                                             ("FNL510", line_of(text, "reassign: true"))], found
    assert "`ana@acme.example` has no manager in `managers`" in found[0][2]
    assert "its owner is ana@acme.example alone" in found[1][2]
    out = run_fnl("validate", copy)
    assert out.returncode != 0 and f"{copy}:{line_of(text, 'reassign: true')}:" in out.stdout, out.stdout


# -- the core --------------------------------------------------------------------------------------------

def test_a_breach_escalates_notifies_and_reassigns_to_the_next_rep(plan: P.Plan) -> None:
    events = [optin(A), optin(B), pricing(A, T0 + HOUR), pricing(B, T0 + HOUR)]
    states, actions = run(plan, events, T0 + 5 * HOUR + 1)
    assert [(a.lead, a.get("owner")) for a in of(actions, "handoff")] == [(A, "ana@acme.example"),
                                                                        (B, "ben@acme.example")]
    breached = of(actions, "sla_breached")
    assert [(a.lead, a.at, a.get("owner")) for a in breached] == [(A, T0 + 5 * HOUR + 1, "ana@acme.example"),
                                                                 (B, T0 + 5 * HOUR + 1, "ben@acme.example")]
    escalated = of(actions, "escalated")
    # The next rep of the round robin skipping the owner, in the escalation's own turn:
    # a's pool is (ben, cy) at turn 0, b's (ana, cy) at turn 1.
    assert [(a.lead, a.at, a.get("owner"), a.get("to")) for a in escalated] == [
        (A, T0 + 5 * HOUR + 1, "ana@acme.example", "ben@acme.example"),
        (B, T0 + 5 * HOUR + 1, "ben@acme.example", "cy@acme.example")]
    assert escalated[0].get("notify") == ("sales-lead@acme.example", "lisa@acme.example")
    assert escalated[0].get("stage") == "sql" and escalated[0].get("deadline") == "2026-03-02T14:00:00Z"
    assert escalated[0].get("sla_deadline") == "2026-03-02T16:01:00Z" and escalated[0].get("reason") is None
    # Each address is told, and the new owner too (the handoff notifies its owner).
    assert [a.get("to") for a in of(actions, "notify", A) if a.at == T0 + 5 * HOUR + 1] == [
        "sales-lead@acme.example", "lisa@acme.example", "ben@acme.example"]
    a_state = states[A]
    assert isinstance(a_state, LeadState) and a_state.owner == "ben@acme.example"
    assert a_state.sla_deadline == at("2026-03-02T16:01:00Z") and a_state.sla_escalated
    # The order of the actions of that minute: breach, escalation, then who is told.
    minute = [a.type for a in actions if a.lead == A and a.at == T0 + 5 * HOUR + 1]
    assert minute == ["sla_breached", "escalated", "notify", "notify", "notify"]


def test_the_escalation_takes_its_own_turn_not_the_handoffs(plan: P.Plan) -> None:
    events = [optin(A), pricing(A, T0 + HOUR), optin(C, T0 + 6 * HOUR), pricing(C, T0 + 7 * HOUR)]
    _states, actions = run(plan, events, T0 + 8 * HOUR)
    # a's escalation (ana → ben) does not move the handoff's round robin: c goes to ben.
    assert [a.get("owner") for a in of(actions, "handoff")] == ["ana@acme.example", "ben@acme.example"]
    assert of(actions, "escalated")[0].get("to") == "ben@acme.example"


def test_an_sla_answered_in_time_is_not_escalated(plan: P.Plan) -> None:
    events = [optin(A), pricing(A, T0 + HOUR), crm("call_logged", A, T0 + 5 * HOUR)]  # 14:00: the last minute
    states, actions = run(plan, events, T0 + 3 * DAY)
    assert [a.get("by") for a in of(actions, "sla_met")] == ["crm.call_logged"]
    assert of(actions, "sla_breached") == [] and of(actions, "escalated") == []
    assert states[A].owner == "ana@acme.example" and not states[A].sla_escalated


def test_a_crm_event_after_the_breach_meets_the_new_sla(plan: P.Plan) -> None:
    events = [optin(A), pricing(A, T0 + HOUR), crm("call_logged", A, T0 + 6 * HOUR)]
    states, actions = run(plan, events, T0 + 3 * DAY)
    met = of(actions, "sla_met")
    assert [(m.get("owner"), m.get("deadline"), m.get("escalated")) for m in met] == [
        ("ben@acme.example", "2026-03-02T16:01:00Z", True)]
    assert len(of(actions, "sla_breached")) == 1 and len(of(actions, "escalated")) == 1
    assert states[A].sla_deadline is None and not states[A].sla_escalated
    assert _describe_action(met[0]) == ("SLA met after the escalation: crm.call_logged before 2026-03-02T16:01:00Z "
                                        "(ben@acme.example, sql)")


def test_a_second_breach_is_reported_and_not_escalated_again(plan: P.Plan) -> None:
    states, actions = run(plan, [optin(A), pricing(A, T0 + HOUR)], T0 + 3 * DAY)
    breached = of(actions, "sla_breached")
    assert [(b.at, b.get("owner"), b.get("escalated")) for b in breached] == [
        (at("2026-03-02T14:01:00Z"), "ana@acme.example", None),
        (at("2026-03-02T16:02:00Z"), "ben@acme.example", True)]
    assert len(of(actions, "escalated")) == 1
    assert states[A].owner == "ben@acme.example" and states[A].sla_deadline is None
    assert _describe_action(breached[1]) == (
        "SLA breached again: ben@acme.example did not follow up on sql by 2026-03-02T16:01:00Z after the escalation "
        "(not escalated again)")


def test_business_hours_deadlines_and_a_fixed_rep(plan: P.Plan) -> None:
    # Monday 16:00: 1h of Monday and 3h of Tuesday → 12:00 Tuesday; the escalated 4h →
    # 16:01 Tuesday. Friday 16:30 (a second lead): 30 minutes, then Monday → 12:30.
    events = [optin(A), pricing(A, T0 + HOUR), crm("call_logged", A, T0 + 2 * HOUR),
              crm("opportunity_opened", A, T0 + 7 * HOUR)]
    states, actions = run(plan, events, T0 + 3 * DAY)
    handoff = of(actions, "handoff", A)[-1]
    assert (handoff.get("owner"), handoff.get("sla_deadline")) == ("eve@acme.example", "2026-03-03T12:00:00Z")
    escalated = of(actions, "escalated")
    assert [(e.at, e.get("owner"), e.get("to"), e.get("notify"), e.get("sla_deadline")) for e in escalated] == [
        (at("2026-03-03T12:01:00Z"), "eve@acme.example", "closer@acme.example", ("sales-lead@acme.example",),
         "2026-03-03T16:01:00Z")]
    friday = at("2026-03-06T09:00:00Z")
    events = [optin(B, friday), pricing(B, friday + HOUR), crm("call_logged", B, friday + 2 * HOUR),
              crm("opportunity_opened", B, friday + 7 * HOUR + 30)]
    _states, actions = run(plan, events, friday + 5 * DAY)
    handoff = of(actions, "handoff", B)[-1]
    assert handoff.get("sla_deadline") == "2026-03-09T12:30:00Z"
    escalated = of(actions, "escalated")
    # The breach minute is 12:31 Monday, and 4 working hours from then run to 16:31.
    assert [(e.at, e.get("sla_deadline")) for e in escalated] == [(at("2026-03-09T12:31:00Z"),
                                                                  "2026-03-09T16:31:00Z")]


def test_answered_by_holds_for_the_new_sla_too(plan: P.Plan) -> None:
    events = [optin(A), pricing(A, T0 + HOUR), crm("call_logged", A, T0 + 2 * HOUR),
              crm("opportunity_opened", A, T0 + 7 * HOUR), crm("demo_booked", A, at("2026-03-03T13:00:00Z")),
              crm("call_logged", A, at("2026-03-03T14:00:00Z"))]
    _states, actions = run(plan, events, T0 + 3 * DAY)
    assert [(m.get("by"), m.get("owner"), m.get("escalated")) for m in of(actions, "sla_met")] == [
        ("crm.call_logged", "ana@acme.example", None), ("crm.call_logged", "closer@acme.example", True)]


def test_with_no_other_rep_the_owner_keeps_the_lead_and_it_says_why(plan: P.Plan) -> None:
    sql = plan.handoff_for("sql")
    assert sql is not None and sql.escalate is not None
    alone = replace(sql, assign=replace(sql.assign, reps=("ana@acme.example",)),
                    escalate=replace(sql.escalate, managers=()))
    one = replace(plan, handoff=(alone,) + plan.handoff[1:])
    states, actions = run(one, [optin(A), pricing(A, T0 + HOUR)], T0 + 6 * HOUR)
    escalated = of(actions, "escalated")[0]
    assert escalated.get("to") is None and states[A].owner == "ana@acme.example"
    assert escalated.get("notify") == ("sales-lead@acme.example",)
    assert escalated.get("reason") == ("no other rep in the handoff's list to reassign to; no manager of "
                                       "ana@acme.example in `managers` to tell")
    assert _describe_action(escalated) == (
        "escalated sql: ana@acme.example let the SLA of 2026-03-02T14:00:00Z pass; ana@acme.example keeps the lead; "
        "told sales-lead@acme.example; new SLA until 2026-03-02T16:01:00Z (no other rep in the handoff's list to "
        "reassign to; no manager of ana@acme.example in `managers` to tell)")


def test_the_next_handoff_after_an_escalation_starts_afresh(plan: P.Plan) -> None:
    # The CRM event that moves the lead on answers the escalated SLA first, then the
    # opportunity handoff starts its own SLA, escalated by its own rule.
    events = [optin(A), pricing(A, T0 + HOUR), crm("opportunity_opened", A, T0 + 6 * HOUR)]
    states, actions = run(plan, events, T0 + 6 * HOUR)
    assert [(m.get("owner"), m.get("escalated")) for m in of(actions, "sla_met")] == [("ben@acme.example", True)]
    assert states[A].owner == "eve@acme.example" and not states[A].sla_escalated
    assert states[A].sla_stage == "opportunity" and states[A].sla_deadline == at("2026-03-03T11:00:00Z")


def test_the_state_mid_escalation_round_trips_through_the_runtime_codec(plan: P.Plan) -> None:
    states, _actions = run(plan, [optin(A), pricing(A, T0 + HOUR)], T0 + 6 * HOUR)
    state = states[A]
    assert state.sla_escalated and codec.decode(codec.encode(state)) == state


def test_funnels_without_escalation_act_as_before(plan: P.Plan) -> None:
    bare = replace(plan, handoff=tuple(replace(h, escalate=None) for h in plan.handoff))
    _states, actions = run(bare, [optin(A), pricing(A, T0 + HOUR)], T0 + 3 * DAY)
    assert [a.type for a in actions if a.type.startswith("sla") or a.type == "escalated"] == ["sla_breached"]
    assert of(actions, "sla_breached")[0].detail == (("deadline", "2026-03-02T14:00:00Z"),
                                                     ("owner", "ana@acme.example"), ("stage", "sql"))


# -- the trace ----------------------------------------------------------------------------------------

def write_events(path: Path, events: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


EVENTS = [
    {"type": "optin", "at": "2026-03-02T09:00:00Z", "lead": A, "magnet": "guide", "profile": {"first_name": "A"}},
    {"type": "optin", "at": "2026-03-02T09:00:00Z", "lead": B, "magnet": "guide", "profile": {"first_name": "B"}},
    {"type": "site.visited", "at": "2026-03-02T10:00:00Z", "lead": A, "page": "pricing"},
    {"type": "site.visited", "at": "2026-03-02T10:00:00Z", "lead": B, "page": "pricing"},
    {"type": "crm.call_logged", "at": "2026-03-02T15:00:00Z", "lead": B},
]


def test_the_trace_says_each_step_in_words(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    out = run_fnl("trace", FUNNEL, "--events", events, "--until", "2026-03-03T00:00:00Z")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for line in [
        "→ SLA breached: ana@acme.example did not follow up on sql by 2026-03-02T14:00:00Z",
        "→ escalated sql: ana@acme.example let the SLA of 2026-03-02T14:00:00Z pass; reassigned to ben@acme.example; "
        "told sales-lead@acme.example, lisa@acme.example; new SLA until 2026-03-02T16:01:00Z",
        "→ notify lisa@acme.example: a@x.example escalated: ana@acme.example did not follow up on sql by "
        "2026-03-02T14:00:00Z; owner now ben@acme.example",
        "→ SLA met after the escalation: crm.call_logged before 2026-03-02T16:01:00Z (cy@acme.example, sql)",
        "→ SLA breached again: ben@acme.example did not follow up on sql by 2026-03-02T16:01:00Z after the "
        "escalation (not escalated again)",
    ]:
        assert line in text, (line, text)
    out = run_fnl("trace", FUNNEL, "--events", events, "--until", "2026-03-03T00:00:00Z", "--format", "json")
    assert out.returncode == 0, out.stderr
    escalated = [a for row in map(json.loads, out.stdout.splitlines()) for a in row.get("actions", [])
                 if a["type"] == "escalated"]
    assert [(a["lead"], a["owner"], a["to"], a["notify"]) for a in escalated] == [
        (A, "ana@acme.example", "ben@acme.example", ["sales-lead@acme.example", "lisa@acme.example"]),
        (B, "ben@acme.example", "cy@acme.example", ["sales-lead@acme.example", "lisa@acme.example"])]


# -- the simulator ----------------------------------------------------------------------------------

def test_the_simulator_runs_escalations_lead_by_lead_and_says_why(plan: P.Plan) -> None:
    behavior = load_behavior(find_behavior(FUNNEL), plan)  # type: ignore[arg-type]
    assert unsupported(plan, behavior) == ("handoff `sql` escalates a breached SLA (another owner, a new deadline): "
                                           "escalations are simulated lead by lead")
    bare = replace(plan, handoff=tuple(replace(h, escalate=None) for h in plan.handoff))
    assert unsupported(bare, behavior) is None  # the escalation is the only reason
    first = simulate(plan, behavior, seed=3, leads=200)
    again = simulate(plan, behavior, seed=3, leads=200)
    assert first.method != "vector" and first.tally == again.tally
    # A second breach (of the escalated SLA) counts as a breach of its own.
    assert sum(first.tally.sla_breaches.values()) > sum(r.sla_breaches > 0 for r in first.leads) > 0


def test_an_error_for_the_vector_engine_names_the_escalation() -> None:
    out = run_fnl("simulate", FUNNEL, "--engine", "vector", "--leads", "50")
    assert out.returncode != 0 and "handoff `sql` escalates a breached SLA" in out.stderr, out.stderr


# -- the runtime ----------------------------------------------------------------------------------------

def fnl_run(*args: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "fnl.py", "run", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=clean_env())


def test_the_webhook_takes_escalations() -> None:
    assert "escalated" in TAKES


def test_fnl_run_escalates_on_the_clock_and_status_shows_it_per_rep(tmp_path: Path) -> None:
    db, actions = tmp_path / "esc.db", tmp_path / "actions.jsonl"
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    done = fnl_run(FUNNEL, "--db", db, "--events", events, "--until", "2026-03-02T12:00:00Z",
                   "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in actions.read_text(encoding="utf-8").splitlines()]
    assert not any(a["type"] == "escalated" for a in lines)  # not yet: the deadline is 14:00
    done = fnl_run(FUNNEL, "--db", db, "--until", "2026-03-03T00:00:00Z", "--actions", f"jsonl:{actions}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in actions.read_text(encoding="utf-8").splitlines()]
    escalated = [a for a in lines if a["type"] == "escalated"]
    assert [(a["lead"], a["at"], a["owner"], a["to"], a["sla_deadline"]) for a in escalated] == [
        (A, "2026-03-02T14:01:00Z", "ana@acme.example", "ben@acme.example", "2026-03-02T16:01:00Z"),
        (B, "2026-03-02T14:01:00Z", "ben@acme.example", "cy@acme.example", "2026-03-02T16:01:00Z")]
    assert escalated[0]["notify"] == ["sales-lead@acme.example", "lisa@acme.example"]
    assert [a["type"] for a in lines if a["lead"] == A and a["at"] == "2026-03-02T16:02:00Z"] == ["sla_breached"]
    # The same actions as the trace, in the same words: what the engine decided, not the adapter.
    status = run_fnl("status", FUNNEL, "--db", db)
    assert status.returncode == 0, status.stderr
    text = status.stdout
    block = text[text.index("escalations per rep"):].splitlines()
    rows = {row.split()[0]: row.split()[1:] for row in block[1:] if row.strip()}
    assert rows == {"ana@acme.example": ["1", "escalated", "0", "taken", "over"],
                    "ben@acme.example": ["1", "escalated", "1", "taken", "over"],
                    "cy@acme.example": ["0", "escalated", "1", "taken", "over"]}, text
    explain = run_fnl("explain", A, "--db", db)
    assert "escalated sql: ana@acme.example let the SLA of 2026-03-02T14:00:00Z pass" in explain.stdout
    assert "owner ben@acme.example" in explain.stdout


def test_status_of_a_funnel_without_escalation_has_no_such_block(tmp_path: Path) -> None:
    db = tmp_path / "ref.db"
    done = fnl_run(REPO / "funnels" / "reference.yaml", "--db", db, "--until", "2026-03-03T00:00:00Z")
    assert done.returncode == 0, done.stderr
    status = run_fnl("status", REPO / "funnels" / "reference.yaml", "--db", db)
    assert status.returncode == 0 and "escalations per rep" not in status.stdout, status.stdout + status.stderr
