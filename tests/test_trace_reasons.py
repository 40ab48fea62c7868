"""`fnl trace` explains every email: what was held back, skipped or ignored, and why.

One small definition on disk (tmp_path), written as a user would: a nurture sequence
with a step `unless` a click and a step `when` a webinar registration, a broadcast with
an `at:` time, quiet hours 20:00-08:00 in the lead's timezone and a cap of 3 emails per
7 days. Events files are real JSON Lines, run through the CLI as a subprocess and through
the engine (`drive`, `core.step`). Expected lines are derived here from the definition:

* the sender's zone is America/New_York: UTC-5 until Sunday 8 March 2026, UTC-4 after;
  so 20:00-08:00 there is 01:00-13:00 UTC before the 8th and 00:00-12:00 UTC after.
* nurture sends n/one at once, n/two a day later (unless n/one was clicked), n/three a
  day after that (only for a lead that visited the webinar-signup page); news sends n/four
  three days after entry and n/five a day later at 10:00 New York time.

The same definition with conditions that name a webinar (`WEBINAR_FUNNEL`) checks that
`attended('q3-webinar')` and `registered('q3-webinar')` read the events' `webinar`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.conftest import run_fnl

from engine import core  # noqa: E402
from engine.drive import drive  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.state import Event, event_from_json, parse_time  # noqa: E402

FUNNEL = """\
fnl: 1
funnel: lab
templates: templates
sender:
  from: "Lab <hi@lab.example>"
  postal_address: "Lab Inc., 1 Main St, Springfield"
  timezone: America/New_York
  unsubscribe_url: https://lab.example/unsubscribe
profile:
  first_name: {type: string, required: true}
  timezone: {type: string, format: timezone}
stages: [subscriber, mql, sql]
crm: {events: [asset_downloaded, demo_booked]}
lead_magnets:
  guide: {kind: ebook, consent: "I agree to receive email from Lab. Unsubscribe at any time.", enters: subscriber}
scoring:
  events:
    email.clicked: 10
    email.delivered: 1
    site.visited.pricing: 40
    webinar.attended: 5
    crm.asset_downloaded: 2
  thresholds: {mql: 40}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: mql, to: sql, on: crm.demo_booked, when: "replied"}
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: n/one}
      - {wait: 1d, send: n/two, unless: "clicked('n/one')"}
      - {wait: 1d, send: n/three, when: "visited('webinar-signup')"}
    exit: {stage_at_least: sql}
  news:  # fnl: ignore[FNL402] the cap decides between nurture and news; the trace shows it
    kind: broadcast
    stage: [subscriber, mql]
    steps:
      - {wait: 3d, send: n/four}
      - {wait: 1d, at: "10:00", send: n/five}
    exit: {stage_at_least: sql}
policies:
  frequency_cap: {max: 3, per: 7d}
  quiet_hours: {from: "20:00", to: "08:00"}
  timezone_attribute: timezone
"""

WEBINAR_FUNNEL = FUNNEL.replace('when: "visited(\'webinar-signup\')"', 'when: "registered(\'q3-webinar\')"').replace(
    'when: "score >= thresholds.mql"', 'when: "score >= thresholds.mql or attended(\'q3-webinar\')"').replace(
    'when: "replied"', 'when: "registered"').replace(
    "    webinar.attended: 5\n", "    webinar.attended: 5\n    webinar.attended.q3-webinar: 30\n")

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

ANN, BOB, CARA = "ann@corp.example", "bob@corp.example", "cara@corp.example"
NY = "America/New_York"


def write_funnel(root: Path, definition: str) -> Path:
    (root / "templates" / "n").mkdir(parents=True)
    (root / "funnel.yaml").write_text(definition, encoding="utf-8")
    for name in ("one", "two", "three", "four", "five"):
        (root / "templates" / "n" / f"{name}.j2").write_text(TEMPLATE.replace("NAME", f"n/{name}"), encoding="utf-8")
    return root


@pytest.fixture()
def lab(tmp_path: Path) -> Path:
    return write_funnel(tmp_path / "lab", FUNNEL)


@pytest.fixture()
def webinar_lab(tmp_path: Path) -> Path:
    assert WEBINAR_FUNNEL.count("q3-webinar") == 3
    return write_funnel(tmp_path / "webinar-lab", WEBINAR_FUNNEL)


def optin(lead: str, at: str, **profile: Any) -> Dict[str, Any]:
    return {"type": "optin", "at": at, "lead": lead, "magnet": "guide",
            "profile": {"first_name": lead.split("@")[0].title(), **profile}}


def e(kind: str, at: str, lead: str, **fields: Any) -> Dict[str, Any]:
    return {"type": kind, "at": at, "lead": lead, **fields}


def write_events(tmp_path: Path, events: List[Dict[str, Any]], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(x) + "\n" for x in events), encoding="utf-8")
    return path


def trace(lab: Path, events: Path, *args: str) -> List[str]:
    r = run_fnl("trace", lab, "--events", events, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def trace_json(lab: Path, events: Path, *args: str) -> List[dict]:
    return [json.loads(line) for line in trace(lab, events, "--format", "json", *args)]


def block(lines: List[str], head: str) -> List[str]:
    """The headline starting with `head` and the action lines under it."""
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def engine_actions(lab: Path, events: List[Dict[str, Any]], until: str) -> list:
    plan = plan_for(str(lab))
    return [a for item in drive(plan, [event_from_json(x) for x in events], parse_time(until))
            for a in item.result.actions]


# -- sends held back ------------------------------------------------------------------------

def test_quiet_hours_deferral_says_from_when_to_when_and_why(lab, tmp_path):
    # 02:00 UTC on 3 March is 21:00 in New York: n/one waits for 08:00 there (13:00 UTC)
    events = write_events(tmp_path, [optin(ANN, "2026-03-03T02:00:00Z", timezone=NY)])
    lines = trace(lab, events, "--until", "2026-03-03T14:00:00Z")
    assert block(lines, "2026-03-03T02:00:00Z") == [
        f"2026-03-03T02:00:00Z  {ANN}  optin guide  [score 0.0, subscriber]",
        '    → consent recorded from guide: "I agree to receive email from Lab. Unsubscribe at any time."',
        "    → CRM stage → subscriber",
        "    → enter sequence nurture",
        "    → enter sequence news",
        "    → deferred n/one from 2026-03-03T02:00:00Z to 2026-03-03T13:00:00Z: quiet hours 20:00–08:00 "
        "America/New_York",
    ]
    assert block(lines, "2026-03-03T13:00:00Z") == [
        f"2026-03-03T13:00:00Z  {ANN}  clock  [score 0.0, subscriber]",
        "    → send n/one  (nurture nurture, step one)",
    ]
    # one line for the decision, not one per minute of waiting
    assert sum("deferred" in line for line in lines) == 1
    [row] = [r for r in trace_json(lab, events, "--until", "2026-03-03T14:00:00Z")
             if any(a["type"] == "deferred" for a in r["actions"])]
    [deferred] = [a for a in row["actions"] if a["type"] == "deferred"]
    assert deferred == {"type": "deferred", "at": "2026-03-03T02:00:00Z", "lead": ANN, "sequence": "nurture",
                        "step": "one", "template": "n/one", "kind": "nurture", "rules": ["quiet_hours"],
                        "from": "2026-03-03T02:00:00Z", "to": "2026-03-03T13:00:00Z",
                        "reason": "quiet hours 20:00–08:00 America/New_York"}


def test_frequency_cap_deferral_names_the_cap_and_the_emails_in_it(lab, tmp_path):
    # 15:00 UTC is 10:00 in New York: no quiet hours. n/one, n/two, n/three go out on days
    # 0, 1, 2; n/four (day 3) is the fourth in 7 days and waits until n/one is 7 days old.
    raw = [optin(CARA, "2026-03-02T15:00:00Z"),
           e("site.visited", "2026-03-02T16:00:00Z", CARA, page="webinar-signup")]
    events = write_events(tmp_path, raw)
    lines = trace(lab, events, "--until", "2026-03-09T16:00:00Z")
    assert block(lines, "2026-03-05T15:00:00Z") == [
        f"2026-03-05T15:00:00Z  {CARA}  clock  [score 0.0, subscriber]",
        "    → deferred n/four from 2026-03-05T15:00:00Z to 2026-03-09T15:00:00Z: frequency cap 3 per 7d: "
        "3 emails since 2026-03-02T15:00:00Z",
    ]
    assert block(lines, "2026-03-09T15:00:00Z") == [
        f"2026-03-09T15:00:00Z  {CARA}  clock  [score 0.0, subscriber]",
        "    → send n/four  (broadcast news, step four)",
    ]
    assert sum("deferred" in line for line in lines) == 1
    # the engine says the same, with the rule by name
    [d] = [a for a in engine_actions(lab, raw, "2026-03-09T16:00:00Z") if a.type == "deferred"]
    assert (d.get("rules"), d.get("from"), d.get("to")) == (("frequency_cap",), "2026-03-05T15:00:00Z",
                                                           "2026-03-09T15:00:00Z")


def test_quiet_hours_then_the_cap_both_named_in_one_line(lab, tmp_path):
    # Ann's emails go out at 13:00 UTC on 3, 4 and 5 March; n/four is due 6 March 02:00 UTC
    # (21:00 in New York): quiet hours move it to 13:00, where the cap moves it to 10 March.
    raw = [optin(ANN, "2026-03-03T02:00:00Z", timezone=NY),
           e("site.visited", "2026-03-03T15:00:00Z", ANN, page="webinar-signup")]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-10T14:00:00Z")
    assert block(lines, "2026-03-06T02:00:00Z") == [
        f"2026-03-06T02:00:00Z  {ANN}  clock  [score 0.0, subscriber]",
        "    → deferred n/four from 2026-03-06T02:00:00Z to 2026-03-10T13:00:00Z: quiet hours 20:00–08:00 "
        "America/New_York; then frequency cap 3 per 7d: 3 emails since 2026-03-03T13:00:00Z",
    ]
    assert f"2026-03-10T13:00:00Z  {ANN}  clock  [score 0.0, subscriber]" in lines


def test_a_step_at_a_time_of_day_says_it_waits_for_that_time(lab, tmp_path):
    # Bob (no timezone: the sender's) gets n/four on 5 March 15:00 UTC; n/five is due a day
    # later, 6 March 15:00 UTC = 10:00 in New York: on time. Dee opts in at 17:00 UTC, so
    # her n/five falls due at 12:00 in New York and waits for 10:00 the next day. (She
    # clicks n/one, so n/two is skipped and the cap of 3 is not reached.)
    raw = [optin(BOB, "2026-03-02T15:00:00Z"), optin("dee@corp.example", "2026-03-02T17:00:00Z"),
           e("email.clicked", "2026-03-02T17:30:00Z", "dee@corp.example", template="n/one")]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-08T00:00:00Z")
    assert block(lines, "2026-03-06T17:00:00Z") == [
        "2026-03-06T17:00:00Z  dee@corp.example  clock  [score 10.0, subscriber]",
        "    → deferred n/five from 2026-03-06T17:00:00Z to 2026-03-07T15:00:00Z: the step sends at 10:00 "
        "America/New_York",
    ]
    assert not [line for line in lines if BOB in line and "deferred" in line]


def test_a_lead_timezone_that_is_no_timezone_is_named_as_utc(lab, tmp_path):
    plan = plan_for(str(lab))
    # the profile attribute is a string; a name that is no timezone counts as UTC
    at = parse_time("2026-03-02T22:00:00Z")
    r = core.step(plan, None, Event("optin", at, "x@corp.example", magnet="guide",
                                    profile={"first_name": "X", "timezone": "Mars/Olympus"}))
    [d] = [a for a in r.actions if a.type == "deferred"]
    assert d.get("reason") == "quiet hours 20:00–08:00 UTC (Mars/Olympus is not a timezone)"
    assert d.get("to") == "2026-03-03T08:00:00Z"


# -- steps skipped --------------------------------------------------------------------------

def test_skipped_steps_say_which_condition(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"), e("email.clicked", "2026-03-02T16:00:00Z", BOB, template="n/one")]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-05T00:00:00Z")
    assert block(lines, "2026-03-03T15:00:00Z") == [
        f"2026-03-03T15:00:00Z  {BOB}  clock  [score 10.0, subscriber]",
        "    → skipped n/two  (nurture nurture, step two): unless clicked('n/one') holds",
    ]
    assert block(lines, "2026-03-04T15:00:00Z") == [
        f"2026-03-04T15:00:00Z  {BOB}  clock  [score 10.0, subscriber]",
        "    → skipped n/three  (nurture nurture, step three): when visited('webinar-signup') does not hold",
        "    → exit sequence nurture (completed)",
    ]
    skipped = [a for a in engine_actions(lab, raw, "2026-03-05T00:00:00Z") if a.type == "skipped"]
    assert [(a.get("step"), a.get("action"), a.get("template"), a.get("reason")) for a in skipped] == [
        ("two", "send", "n/two", "unless clicked('n/one') holds"),
        ("three", "send", "n/three", "when visited('webinar-signup') does not hold")]


# -- CRM events that change nothing ----------------------------------------------------------

def test_a_crm_event_that_matches_nothing_is_ignored_with_the_reason(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("crm.deal_won", "2026-03-02T15:10:00Z", BOB),
           e("crm.asset_downloaded", "2026-03-02T15:11:00Z", BOB),  # scored: not ignored
           e("site.visited", "2026-03-02T15:12:00Z", BOB, page="pricing"),  # 42 points: mql
           e("crm.demo_booked", "2026-03-02T15:13:00Z", BOB)]  # mql → sql needs `replied`
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:10:00Z") == [
        f"2026-03-02T15:10:00Z  {BOB}  crm.deal_won  [score 0.0, subscriber]",
        "    → crm.deal_won ignored: this funnel has no transition, entry or sequence on crm.deal_won",
    ]
    assert block(lines, "2026-03-02T15:11:00Z") == [f"2026-03-02T15:11:00Z  {BOB}  crm.asset_downloaded  "
                                                    "[score 2.0, subscriber]"]
    assert block(lines, "2026-03-02T15:13:00Z") == [
        f"2026-03-02T15:13:00Z  {BOB}  crm.demo_booked  [score 42.0, mql]",
        "    → crm.demo_booked ignored: the transition mql → sql on crm.demo_booked needs replied, which does "
        "not hold",
    ]
    ignored = [a for a in engine_actions(lab, raw, "2026-03-02T16:00:00Z") if a.type == "ignored"]
    assert [(a.get("event"), a.at) for a in ignored] == [("crm.deal_won", parse_time("2026-03-02T15:10:00Z")),
                                                         ("crm.demo_booked", parse_time("2026-03-02T15:13:00Z"))]


def test_a_crm_event_the_funnel_never_names_says_so(lab, tmp_path):
    # crm.foo_bar appears nowhere in the plan; crm.demo_booked is on a transition from mql
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("crm.foo_bar", "2026-03-02T15:10:00Z", BOB),
           e("crm.demo_booked", "2026-03-02T15:11:00Z", BOB)]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:10:00Z")[1:] == [
        "    → crm.foo_bar ignored: this funnel has no transition, entry or sequence on crm.foo_bar"]
    assert block(lines, "2026-03-02T15:11:00Z")[1:] == [
        "    → crm.demo_booked ignored: no transition from subscriber on crm.demo_booked"]


def test_a_crm_event_named_only_by_an_entry_keeps_the_stage_reason(tmp_path):
    definition = FUNNEL.replace("lead_magnets:", "entries:\n  won: {on: crm.deal_won, enters: sql, basis: contract}\n"
                                "lead_magnets:")
    root = write_funnel(tmp_path / "entries-lab", definition)
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("crm.deal_won", "2026-03-02T15:10:00Z", BOB)]
    lines = trace(root, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:10:00Z")[1:] == [
        "    → crm.deal_won ignored: no transition from subscriber on crm.deal_won"]


def test_a_crm_event_that_moves_the_lead_is_not_ignored(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("email.replied", "2026-03-02T15:11:00Z", BOB, template="n/one"),
           e("site.visited", "2026-03-02T15:12:00Z", BOB, page="pricing"),
           e("crm.demo_booked", "2026-03-02T15:13:00Z", BOB)]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:13:00Z")[:2] == [
        f"2026-03-02T15:13:00Z  {BOB}  crm.demo_booked  [score 40.0, sql]",
        "    → stage mql → sql: sql because crm.demo_booked happened and replied",
    ]
    assert not [line for line in lines if "ignored" in line]


# -- engagement with email the lead was not sent --------------------------------------------

def test_engagement_with_an_unknown_or_unsent_email_is_not_scored(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("email.clicked", "2026-03-02T15:10:00Z", BOB, template="n/ghost"),
           e("email.clicked", "2026-03-02T15:11:00Z", BOB, template="n/three"),
           e("email.delivered", "2026-03-02T15:12:00Z", BOB, template="n/ghost"),
           e("email.delivered", "2026-03-02T15:13:00Z", BOB, template="n/one")]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert lines[lines.index(f"2026-03-02T15:10:00Z  {BOB}  email.clicked n/ghost  [score 0.0, subscriber]") + 1] \
        == "    → click of n/ghost ignored, not scored: no such email in this funnel"
    assert lines[lines.index(f"2026-03-02T15:11:00Z  {BOB}  email.clicked n/three  [score 0.0, subscriber]") + 1] \
        == "    → click of n/three ignored, not scored: not sent to this lead"
    assert block(lines, "2026-03-02T15:12:00Z") == [
        f"2026-03-02T15:12:00Z  {BOB}  email.delivered n/ghost  [score 0.0, subscriber]",
        "    → not scored: delivery of n/ghost (no such email in this funnel)",
    ]
    # a delivery of an email that was sent scores its point, silently
    assert block(lines, "2026-03-02T15:13:00Z") == [
        f"2026-03-02T15:13:00Z  {BOB}  email.delivered n/one  [score 1.0, subscriber]"]


# -- --until --------------------------------------------------------------------------------

def test_until_before_the_last_event_cuts_the_timeline_and_says_how_much(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"),
           e("email.clicked", "2026-03-02T16:00:00Z", BOB, template="n/one"),
           e("email.clicked", "2026-03-04T16:00:30Z", BOB, template="n/one"),
           e("crm.demo_booked", "2026-03-05T09:00:00Z", BOB)]
    events = write_events(tmp_path, raw)
    lines = trace(lab, events, "--until", "2026-03-04T00:00:00Z")
    assert lines[-1] == ("2026-03-04T00:00:00Z  --until: 2 events after 2026-03-04T00:00:00Z left out, not applied "
                         "(the first at 2026-03-04T16:00:30Z)")
    assert not [line for line in lines if "2026-03-04T15:00:00Z" in line or "crm.demo_booked" in line]
    rows = trace_json(lab, events, "--until", "2026-03-04T00:00:00Z")
    assert rows[-1] == {"event": {"type": "clock", "at": "2026-03-04T00:00:00Z", "lead": ""},
                        "actions": [{"type": "left_out", "at": "2026-03-04T00:00:00Z", "lead": "", "count": 2,
                                     "first_at": "2026-03-04T16:00:30Z", "until": "2026-03-04T00:00:00Z",
                                     "reason": "2 events after 2026-03-04T00:00:00Z left out, not applied "
                                               "(the first at 2026-03-04T16:00:30Z)"}],
                        "score": None, "stage": None, "unsubscribed": None}
    assert not [r for r in rows[:-1] if r["event"]["at"] > "2026-03-04T00:00:00Z"]
    # an --until at the last event applies everything and says nothing more
    whole = trace(lab, events, "--until", "2026-03-05T09:00:00Z")
    assert "--until" not in "\n".join(whole) and any("crm.demo_booked" in line for line in whole)
    # before the first event it is still a usage error
    r = run_fnl("trace", lab, "--events", events, "--until", "2026-03-01T00:00:00Z")
    assert r.returncode == 3 and "--until 2026-03-01T00:00:00Z is before the first event" in r.stderr


def test_drive_stops_at_until_and_reports_what_it_left_out(lab):
    plan = plan_for(str(lab))
    t = parse_time("2026-03-02T15:00:00Z")
    events = [event_from_json(optin(BOB, "2026-03-02T15:00:00Z")), Event("crm.deal_won", t + 3000, BOB),
              Event("crm.deal_won", t + 2000, BOB, second=10)]
    items = list(drive(plan, events, t + 1000))
    assert all(item.event.at <= t + 1000 for item in items)
    last = items[-1]
    assert (last.event.type, last.event.lead, last.result.state) == ("clock", "", None)
    [note] = last.result.actions
    assert (note.type, note.get("count"), note.get("first_at")) == ("left_out", 2, "2026-03-04T00:20:10Z")


# -- one name for the clock -----------------------------------------------------------------

def test_clock_is_the_one_name_and_tick_is_read_as_it(lab, tmp_path):
    raw = [optin(BOB, "2026-03-02T15:00:00Z"), e("clock", "2026-03-03T15:00:00Z", BOB),
           e("tick", "2026-03-04T15:00:00Z", BOB)]
    events = write_events(tmp_path, raw)
    lines = trace(lab, events, "--until", "2026-03-04T16:00:00Z")
    assert block(lines, "2026-03-03T15:00:00Z") == [
        f"2026-03-03T15:00:00Z  {BOB}  clock  [score 0.0, subscriber]",
        "    → send n/two  (nurture nurture, step two)",
    ]
    rows = trace_json(lab, events, "--until", "2026-03-04T16:00:00Z")
    assert {r["event"]["type"] for r in rows} == {"optin", "clock"}
    assert Event("tick", 0, "x").type == "clock" == event_from_json(e("tick", "2026-03-02T00:00:00Z", "")).type


# -- naming a webinar -----------------------------------------------------------------------

def test_conditions_can_name_a_webinar(webinar_lab):
    r = run_fnl("validate", webinar_lab)
    assert r.returncode == 0, r.stdout + r.stderr  # attended('q3-webinar'), registered('q3-webinar'), registered
    plan = plan_for(str(webinar_lab))
    at = parse_time("2026-03-02T15:00:00Z")
    state = core.step(plan, None, event_from_json(optin(BOB, "2026-03-02T15:00:00Z"))).state
    other = core.step(plan, state, event_from_json(e("webinar.attended", "2026-03-02T15:05:00Z", BOB,
                                                       webinar="q2-webinar"))).state
    assert (other.stage, other.score) == ("subscriber", 5)  # any webinar scores 5; only q3-webinar moves
    q3 = core.step(plan, other, Event("webinar.attended", at + 10, BOB, webinar="q3-webinar"))
    assert q3.state.stage == "mql" and q3.state.score == 35  # the narrowest scoring entry: 30
    [moved] = [a for a in q3.actions if a.type == "stage_changed"]
    assert moved.get("because") == "mql because attended('q3-webinar')"
    # the webinar is part of the event wherever it is written out
    ev_ = event_from_json(e("webinar.registered", "2026-03-02T15:00:00Z", BOB, webinar="q3-webinar"))
    assert ev_.to_json()["webinar"] == "q3-webinar" and ev_.summary() == "webinar.registered q3-webinar"


def test_registered_by_name_picks_the_webinar(webinar_lab, tmp_path):
    # n/three goes only to a lead registered for q3-webinar; another webinar does not count
    raw = [optin(ANN, "2026-03-02T15:00:00Z"), optin(CARA, "2026-03-02T15:00:00Z"),
           e("webinar.registered", "2026-03-02T16:00:00Z", ANN, webinar="q2-webinar"),
           e("webinar.registered", "2026-03-02T16:00:00Z", CARA, webinar="q3-webinar")]
    rows = trace_json(webinar_lab, write_events(tmp_path, raw), "--until", "2026-03-05T00:00:00Z")
    sent = {(a["lead"], a["template"]) for r in rows for a in r["actions"] if a["type"] == "send_email"}
    assert (CARA, "n/three") in sent and (ANN, "n/three") not in sent
    assert [r["event"] for r in rows if r["event"]["type"] == "webinar.registered"] == [
        {"type": "webinar.registered", "at": "2026-03-02T16:00:00Z", "lead": ANN, "webinar": "q2-webinar"},
        {"type": "webinar.registered", "at": "2026-03-02T16:00:00Z", "lead": CARA, "webinar": "q3-webinar"}]


def test_webinar_field_only_on_webinar_events(webinar_lab, tmp_path):
    events = write_events(tmp_path, [optin(BOB, "2026-03-02T15:00:00Z"),
                                     e("site.visited", "2026-03-02T16:00:00Z", BOB, page="pricing", webinar="x")])
    r = run_fnl("trace", webinar_lab, "--events", events)
    assert r.returncode != 0
    assert "events.jsonl:2:1: error FNL603: `webinar` names the webinar of a webinar.registered or " \
           "webinar.attended event only" in r.stderr


def test_lint_takes_a_webinar_name_and_refuses_two(tmp_path):
    root = write_funnel(tmp_path / "two", WEBINAR_FUNNEL.replace("attended('q3-webinar')",
                                                                 "attended('q3-webinar', 'q4')"))
    r = run_fnl("validate", root)
    assert r.returncode != 0 and "`attended` takes at most one argument, not 2" in r.stdout + r.stderr


def test_a_held_crm_event_that_matches_nothing_is_ignored_when_applied(lab, tmp_path):
    raw = [e("crm.deal_won", "2026-03-02T10:00:00Z", BOB), optin(BOB, "2026-03-02T15:00:00Z")]
    lines = trace(lab, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:00:00Z")[3:7] == [
        "    → applied crm.deal_won from 2026-03-02T10:00:00Z, held until the lead entered the funnel",
        "    → enter sequence nurture",
        "    → enter sequence news",
        "    → crm.deal_won ignored: this funnel has no transition, entry or sequence on crm.deal_won",
    ]


# -- consent ---------------------------------------------------------------------------------

def test_an_entry_without_consent_text_does_not_quote_its_basis(tmp_path):
    definition = FUNNEL.replace("lead_magnets:", "entries:\n"
                                "  won-deals: {on: crm.deal_won, enters: sql, basis: contract}\n"
                                "  imported: {on: lead.imported, enters: subscriber, basis: consent, "
                                "consent: \"I agree to hear from Lab.\"}\n"
                                "lead_magnets:")
    root = write_funnel(tmp_path / "entries-lab", definition)
    raw = [e("crm.deal_won", "2026-03-02T15:00:00Z", BOB, profile={"first_name": "Bob"}),
           e("lead.imported", "2026-03-02T15:10:00Z", ANN, entry="imported", profile={"first_name": "Ann"})]
    lines = trace(root, write_events(tmp_path, raw), "--until", "2026-03-02T16:00:00Z")
    assert block(lines, "2026-03-02T15:00:00Z")[1] == "    → no consent needed from won-deals (basis: contract)"
    assert not any('"contract"' in line for line in lines)
    assert block(lines, "2026-03-02T15:10:00Z")[1] == '    → consent recorded from imported: "I agree to hear from Lab."'
