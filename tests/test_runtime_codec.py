"""The runtime's stored form of a lead's state (`engine/runtime/codec.py`): every state the
engine makes for real funnels comes back exactly, one canonical text per state, and text
that is not a state is refused with a reason, never half-read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.simulate.run as simulate_run
from conftest import REPO
from engine import drive as dr
from engine.drive import Driver
from engine.pipeline import plan_for
from engine.runtime import codec
from engine.simulate.behavior import find_behavior, load_behavior
from engine.simulate.run import simulate
from engine.state import Event, LeadState, Prospect, Running, Shared, parse_time


def engine_states(funnel: str, leads: int) -> List[object]:
    """Every state the engine holds at the end of a per-lead simulation of `funnel`."""
    plan = plan_for(str(REPO / funnel))
    behavior = load_behavior(find_behavior(REPO / funnel), plan)  # type: ignore[arg-type]
    drivers: List[Driver] = []

    class Keeping(Driver):
        def __init__(self, p: object) -> None:
            super().__init__(p)  # type: ignore[arg-type]
            drivers.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulate_run, "Driver", Keeping)
        simulate(plan, behavior, seed=4, leads=leads, engine="per-lead")
    return [s for d in drivers for s in d.states.values()] + [d.shared for d in drivers]


@pytest.mark.parametrize("funnel, leads", [("funnels/acme", 300), ("funnels/newsletter-to-demo.yaml", 200),
                                           ("funnels/reference.yaml", 200), ("tests/double_optin/doi.yaml", 300),
                                           ("tests/escalation/esc.yaml", 300)])
def test_every_state_of_a_real_run_comes_back_exactly(funnel: str, leads: int) -> None:
    states = engine_states(funnel, leads)
    leads_seen = [s for s in states if isinstance(s, LeadState)]
    assert len(leads_seen) >= leads // 2
    # Something to compare: owners, running steps, SLAs, facts, scores with decimals.
    if funnel == "funnels/acme":
        assert any(s.owner for s in leads_seen) and any(s.running for s in leads_seen)
        assert any(s.unsubscribed for s in leads_seen) and any(s.score % 1 for s in leads_seen)
    if funnel == "tests/double_optin/doi.yaml":  # double opt-in: confirmed leads, and opt-ins never confirmed
        assert any(s.opted_in_at is not None for s in leads_seen)
        assert any(isinstance(s, Prospect) for s in states)
    if funnel == "tests/escalation/esc.yaml":  # escalations took their own round-robin turns
        assert any(key.startswith("!escalate ") for s in states if isinstance(s, Shared) for key, _ in s.turns)
    for state in states:
        if isinstance(state, Shared):
            text = codec.encode_shared(state)
            assert codec.decode_shared(text) == state
            continue
        text = codec.encode(state)  # type: ignore[arg-type]
        back = codec.decode(text)
        assert back == state, (state, back)
        assert codec.encode(back) == text  # one canonical text
        assert "\n" not in text and json.loads(text)["format"] == codec.FORMAT


def test_a_prospect_keeps_its_held_events_to_the_second(tmp_path: Path) -> None:
    plan = plan_for(str(REPO / "funnels/reference.yaml"))
    events = [Event("site.visited", parse_time("2026-01-05T10:00:00Z"), "ana@example.com", page="pricing", second=7),
              Event("email.opened", parse_time("2026-01-05T10:01:00Z"), "ana@example.com", template="x")]
    driver = Driver(plan)
    for item in dr.drive(plan, events):
        driver.states[item.event.lead] = item.result.state
    state = driver.states.get("ana@example.com")
    assert isinstance(state, Prospect) and state.held
    assert codec.decode(codec.encode(state)) == state


def test_numbers_keep_their_type_and_every_bit() -> None:
    state = LeadState(lead="a@example.com", profile=(("employees", 1200), ("ratio", 0.1 + 0.2), ("vip", True),
                                                     ("note", "x\u2028y"), ("missing", None)),
                      stage="mql", entered=(("mql", 100),), score=39.99999999997, score_at=5, consent="yes",
                      consent_at=1, source="guide", running=(Running("nurture", "s1", 0, 1440, 0, "seed"),),
                      points=((5, 2.5), (6, 3)), facts=(("email.opened", 9),), sends=(1, 2, 3))
    back = codec.decode(codec.encode(state))
    assert back == state
    assert [type(v) for _, v in back.profile] == [int, float, bool, str, type(None)]
    assert back.score == 39.99999999997 and type(back.points[1][1]) is int


@pytest.mark.parametrize("mangle, says", [
    (lambda d: d.update(score="40"), "`score` must be a number"),
    (lambda d: d.pop("stage"), "missing ['stage']"),
    (lambda d: d.update(extra=1), "unknown ['extra']"),
    (lambda d: d.update(kind="robot"), "`kind` must be lead or prospect"),
    (lambda d: d.update(format=99), "not a lead's state of format 1"),
    (lambda d: d.update(sends=[1, "2"]), "where a whole number belongs"),
    (lambda d: d.update(running=[["s", "x", 0, 1]]), "running[0] must be"),
    (lambda d: d.update(unsubscribed="no"), "`unsubscribed` must be true or false"),
    (lambda d: d.update(entered=[["mql", True]]), "a pair of the wrong types"),
    (lambda d: d.update(opted_in_at=None), "`opted_in_at` holds 'None' where a whole number belongs"),
    (lambda d: d.update(sla_escalated=False), "`sla_escalated` is written only when true"),
])
def test_text_that_is_not_a_state_is_refused_with_a_reason(mangle: object, says: str) -> None:
    doc = json.loads(codec.encode(LeadState(lead="a", profile=(), stage="mql", entered=(), score=1.0, score_at=0,
                                            consent="c", consent_at=0, source="s")))
    mangle(doc)  # type: ignore[operator]
    with pytest.raises(ValueError, match=f".*{says.replace('[', '.').replace(']', '.')}"):
        codec.decode(json.dumps(doc))


def test_an_escalated_sla_comes_back_and_is_written_only_when_set() -> None:
    base = LeadState(lead="a", profile=(), stage="sql", entered=(), score=1.0, score_at=0, consent="c",
                     consent_at=0, source="s", owner="ben@acme.example", sla_deadline=500, sla_stage="sql")
    assert "sla_escalated" not in codec.encode(base)
    escalated = LeadState(**{**base.__dict__, "sla_escalated": True})
    text = codec.encode(escalated)
    assert json.loads(text)["sla_escalated"] is True and codec.decode(text) == escalated


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode()))
def test_any_bytes_are_a_state_or_a_value_error(data: bytes) -> None:
    try:
        codec.decode(data)
    except ValueError:
        pass


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ValueError):
        codec.decode("[" * 100_000 + "]" * 100_000)
