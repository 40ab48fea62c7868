"""`schemas/event.schema.json` states the event that `fnl trace`, `fnl run` and `fnl serve`
read, and agrees with the reader itself (`state.event_from_json`): the same event types,
and for any event, valid by the schema exactly when the reader takes it. An independent
validator (check-jsonschema) reads the schema too."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from engine.state import CLOCK_ALIASES, EMAIL_EVENTS, OTHER_EVENTS, event_from_json

SCHEMA = json.loads((REPO / "schemas" / "event.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def accepted(doc: Any) -> bool:
    try:
        event_from_json(doc)
    except ValueError:
        return False
    return True


def test_the_schema_names_the_engines_event_types() -> None:
    fixed = SCHEMA["properties"]["type"]["anyOf"][0]["enum"]
    assert sorted(fixed) == sorted(set(EMAIL_EVENTS) | set(OTHER_EVENTS))
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_bundled_events_and_the_examples_are_valid() -> None:
    docs = [json.loads(line) for path in sorted((REPO / "tests" / "events").glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs += SCHEMA["examples"]
    assert len(docs) > 5
    for doc in docs:
        assert VALIDATOR.is_valid(doc) and accepted(doc), doc


GOOD_TYPES = sorted(set(EMAIL_EVENTS) | set(OTHER_EVENTS)) + ["crm.deal_won", "crm.meeting_booked"]
TEXT = st.text(alphabet="abcdefghij@.-/ ", min_size=1, max_size=12)
WRONG = st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
GOOD_TIMES = ["2026-03-02T14:30:00Z", "2026-03-02T14:30:15+02:00", "2026-03-02T14:30:00", "2026-03-02T14:30:00.250Z",
              "2026-03-02"]
# One thing wrong with an otherwise good event: (field, a bad value); None: take the field away.
CORRUPTIONS = st.one_of(
    st.tuples(st.just("type"), st.sampled_from(["crm.Deal", "email.open", "optin ", "", "CRM.won"])),
    st.tuples(st.just("type"), WRONG),
    st.tuples(st.just("at"), st.one_of(st.sampled_from(["yesterday", "2026-13-02T14:30:00Z", "", "14:30"]), WRONG)),
    st.tuples(st.just("at"), st.none()),
    st.tuples(st.just("lead"), st.one_of(st.just(""), st.just("x" * 321), WRONG)),
    st.tuples(st.sampled_from(["magnet", "template", "page", "entry", "webinar"]), WRONG),
    st.tuples(st.just("profile"), WRONG),
    st.tuples(st.just("machine"), st.one_of(st.integers(), st.just("yes"))),
    st.tuples(st.just("bounce"), st.sampled_from(["hard", "soft", "HARD", 1])),
    st.tuples(st.just("webinar"), TEXT))


@st.composite
def events(draw: Any) -> Dict[str, Any]:
    kind = draw(st.sampled_from(GOOD_TYPES))
    doc: Dict[str, Any] = {"type": kind, "at": draw(st.sampled_from(GOOD_TIMES))}
    if kind not in ("clock",) + CLOCK_ALIASES or draw(st.booleans()):
        doc["lead"] = "dana@loopwise.example"
    for key in ("magnet", "template", "page", "entry"):
        if draw(st.integers(0, 3)) == 0:
            doc[key] = draw(TEXT)
    if kind.startswith("webinar.") and draw(st.booleans()):
        doc["webinar"] = draw(TEXT)
    if draw(st.integers(0, 3)) == 0:
        doc["profile"] = draw(st.dictionaries(TEXT, st.one_of(TEXT, st.integers()), max_size=2))
    if draw(st.integers(0, 3)) == 0:
        doc["machine"] = draw(st.booleans())
    if kind == "email.bounced" and draw(st.booleans()):
        doc["bounce"] = draw(st.sampled_from(["hard", "soft"]))
    if draw(st.integers(0, 5)) == 0:
        doc["campaign_id"] = draw(st.one_of(TEXT, WRONG))  # fields fnl does not use are allowed
    if draw(st.booleans()):
        key, value = draw(CORRUPTIONS)
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


@settings(max_examples=400, deadline=None)
@given(events())
def test_valid_by_the_schema_exactly_when_the_reader_takes_it(doc: Dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(doc) == accepted(doc), (doc, [e.message for e in VALIDATOR.iter_errors(doc)])


def test_a_clock_needs_no_lead() -> None:
    for kind in ("clock",) + CLOCK_ALIASES:
        doc = {"type": kind, "at": "2026-03-02T14:30:00Z"}
        assert VALIDATOR.is_valid(doc) and accepted(doc)


def test_an_independent_validator_reads_the_schema(tmp_path: Path) -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(exe).exists():
        pytest.skip("check-jsonschema is not installed (the test extra)")
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(SCHEMA["examples"][0]), encoding="utf-8")
    bad.write_text(json.dumps({"type": "email.bounced", "at": "2026-03-02T14:30:00Z", "bounce": "soft"}),
                   encoding="utf-8")
    schema = str(REPO / "schemas" / "event.schema.json")
    ok = subprocess.run([exe, "--schemafile", schema, str(good)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    no = subprocess.run([exe, "--schemafile", schema, str(bad)], capture_output=True, text=True, timeout=120)
    assert no.returncode == 1 and "lead" in no.stdout + no.stderr
