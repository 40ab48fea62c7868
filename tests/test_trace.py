"""`fnl trace FUNNEL --events lead.jsonl`: one lead's journey, and every way a bad events
file is reported (located, never a traceback).

The fixture tests/events/acme-dana.jsonl is one fit SaaS manager through funnels/acme:
opt-in, opens and clicks of the nurture emails the engine sends, then a pricing visit.
Expected sends, scores and stages are derived from funnels/acme here, not copied.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import trace as tr  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.state import iso, minutes, parse_time  # noqa: E402

ACME = "funnels/acme"
DANA = REPO / "tests" / "events" / "acme-dana.jsonl"
LEAD = "dana@loopwise.example"
DAY = 1440


def fnl(*args: Any, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def plan():
    return plan_for(str(REPO / ACME))


@pytest.fixture(scope="module")
def events() -> List[dict]:
    return [json.loads(line) for line in DANA.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def text_run():
    r = fnl("trace", ACME, "--events", DANA.relative_to(REPO))
    assert r.returncode == 0, r.stderr
    return r.stdout


def _fit_points(plan, source: str) -> int:
    return next(f.points for f in plan.scoring.fit if f.when.source == source)


def _points(plan, event: str) -> int:
    return next(e.points for e in plan.scoring.events if e.event == event)


def _expected_scores(plan, events):
    """Dana's score after the opt-in and after the case-study click, from the definition:
    whitepaper points + manager fit points, then opens and clicks with the narrowest entry,
    decayed by the half-life once per UTC day boundary."""
    decay = plan.scoring.decay
    assert decay.every_minutes == DAY
    start = plan.magnet("whitepaper").score + _fit_points(plan, "persona == 'manager'")
    score, last = float(start), parse_time(events[0]["at"])
    for e in events[1:6]:
        at = parse_time(e["at"])
        score *= decay.factor ** (at // DAY - last // DAY)
        last = at
        narrow = f"{e['type']}.{e['template']}"
        names = {x.event for x in plan.scoring.events}
        score += _points(plan, narrow if narrow in names else e["type"])
    return start, score


def _local(minute: int, zone: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(minute * 60, tz=timezone.utc).astimezone(ZoneInfo(zone))


# -- the timeline -------------------------------------------------------------------------------

def test_text_timeline_shows_events_sends_score_and_why(plan, events, text_run):
    lines = text_run.splitlines()
    optin_at = events[0]["at"]
    start, at_click = _expected_scores(plan, events)
    # each event of the file is a headline, in order, with the lead and what happened
    heads = [ln for ln in lines if not ln.startswith(" ") and "  clock  " not in ln]
    assert len(heads) == len(events)
    for head, e in zip(heads, events):
        detail = e.get("magnet") or e.get("template") or e.get("page")
        assert head.startswith(f"{e['at']}  {LEAD}  {e['type']} {detail}  [score ")
    assert heads[0].endswith(f"[score {start:.1f}, subscriber]")
    assert f'consent recorded from whitepaper: "{plan.magnet("whitepaper").consent}"' in text_run
    # the nurture-saas emails the lead opened were sent first, on their schedule
    seq = plan.sequence("nurture-saas")
    first, second, third = seq.steps[0], seq.steps[1], seq.steps[2]
    t0 = parse_time(optin_at)
    assert f"→ send {first.template}  (nurture nurture-saas, step {first.id})" in text_run
    clock2 = iso(t0 + second.wait_minutes)
    assert f"{clock2}  {LEAD}  clock  [" in text_run
    assert lines[lines.index(next(ln for ln in lines if ln.startswith(f"{clock2}  {LEAD}  clock"))) + 1] == \
        f"    → send {second.template}  (nurture nurture-saas, step {second.id})"
    assert re.search(rf"→ send {re.escape(third.template)} variant [ab]  \(nurture nurture-saas, step {third.id}\)",
                     text_run)
    # MQL on the case-study click: the threshold and the fit values that made it
    threshold = plan.threshold("mql")
    click_line = heads[5]
    assert click_line.endswith(f"[score {at_click:.1f}, mql]") and at_click >= threshold
    [why] = [ln for ln in lines if "stage subscriber → mql" in ln]
    assert "mql because" in why
    assert f"≥ {threshold}" in why
    assert "industry=saas" in why and "employees=120" in why
    shown = float(re.search(r"score ([0-9.]+) ≥", why).group(1))
    assert shown == pytest.approx(at_click, abs=0.05)
    # SQL on the pricing visit after MQL, and the handoff to the first rep with the SLA
    sql = plan.handoff_for("sql")
    visit = parse_time(events[6]["at"])
    assert "stage mql → sql: sql because visited('pricing', since='mql')" in text_run
    assert f"→ hand off to {sql.assign.reps[0]}, SLA until {iso(visit + sql.sla_minutes)}" in text_run
    assert "→ exit sequence nurture-saas (suppressed in sql)" in text_run
    # nothing from nurture after sales took over
    after = text_run.split(events[6]["at"] + "  " + LEAD, 1)[1]
    assert "(nurture " not in after and "(broadcast " not in after


def test_json_lines_carry_events_actions_score_and_stage(plan, events):
    r = fnl("trace", ACME, "--events", DANA, "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows and all(set(row) == {"event", "actions", "score", "stage", "unsubscribed"} for row in rows)
    real = [row for row in rows if row["event"]["type"] != "clock"]
    assert [row["event"] for row in real] == events  # every input event, as given
    sent = [a for row in rows for a in row["actions"] if a["type"] == "send_email" and a["kind"] != "delivery"]
    seq = plan.sequence("nurture-saas")
    assert [a["template"] for a in sent] == [s.template for s in seq.steps[:3]]
    assert all(a["lead"] == LEAD and a["kind"] == "nurture" and a["sequence"] == "nurture-saas" for a in sent)
    assert sent[2]["variant"] in {v.name for v in seq.steps[2].variants}
    [handoff] = [a for row in rows for a in row["actions"] if a["type"] == "handoff"]
    sql = plan.handoff_for("sql")
    assert handoff["owner"] == sql.assign.reps[0]
    assert handoff["sla_deadline"] == iso(parse_time(events[6]["at"]) + sql.sla_minutes)
    assert [row["stage"] for row in real] == ["subscriber"] * 5 + ["mql", "sql"]
    # the CLI and the in-process timeline are the same engine
    loaded = tr.read_events(DANA, "x")
    assert not loaded.problems
    assert r.stdout == tr.render_json(tr.timeline(plan, loaded.events))


def test_sends_in_the_timeline_respect_quiet_hours_in_the_leads_zone(plan, tmp_path):
    # opt-in at 23:30 in Berlin: the welcome waits for the end of quiet hours there
    events = tmp_path / "late.jsonl"
    events.write_text(json.dumps({"type": "optin", "at": "2026-03-02T22:30:00Z", "lead": "late@x.example",
                                  "magnet": "webinar", "profile": {"first_name": "Lu", "industry": "finance",
                                                                   "timezone": "Europe/Berlin"}}) + "\n")
    r = fnl("trace", ACME, "--events", events, "--format", "json", "--until", "2026-03-04T00:00:00Z")
    assert r.returncode == 0, r.stderr
    sent = [a for line in r.stdout.splitlines() for a in json.loads(line)["actions"] if a["type"] == "send_email" and a["kind"] != "delivery"]
    assert sent, r.stdout
    first = _local(parse_time(sent[0]["at"]), "Europe/Berlin")
    assert (first.hour, first.minute) == (plan.policies.quiet_to // 60, plan.policies.quiet_to % 60)
    assert first.date().isoformat() == "2026-03-03"


def test_until_bounds_the_clock(plan, tmp_path):
    events = tmp_path / "quiet.jsonl"
    events.write_text(json.dumps({"type": "optin", "at": "2026-03-02T15:00:00Z", "lead": "q@x.example",
                                  "magnet": "whitepaper", "profile": {"first_name": "Q", "industry": "saas"}}) + "\n")

    def sent(*extra):
        r = fnl("trace", ACME, "--events", events, "--format", "json", *extra)
        assert r.returncode == 0, r.stderr
        return [a for line in r.stdout.splitlines() for a in json.loads(line)["actions"] if a["type"] == "send_email" and a["kind"] != "delivery"]

    t0 = parse_time("2026-03-02T15:00:00Z")
    ten_days = sent("--until", iso(t0 + 10 * DAY))
    # nurture-saas sends at days 0, 3 and 7 inside ten days (the day-12 invite is later)
    seq = plan.sequence("nurture-saas")
    offsets, due = [], 0
    for step in seq.steps:
        due += step.wait_minutes
        offsets.append(due)
    assert [a["template"] for a in ten_days] == [s.template for s, o in zip(seq.steps, offsets) if o <= 10 * DAY]
    everything = sent()  # default: 120 days after the last event
    assert len(everything) > len(ten_days)
    assert {a["sequence"] for a in everything} == {"nurture-saas", "monthly-brief"}
    assert max(parse_time(a["at"]) for a in everything) <= t0 + tr.DEFAULT_HORIZON
    bad = fnl("trace", ACME, "--events", events, "--until", "next week")
    assert bad.returncode == 3 and "--until" in bad.stderr and "Traceback" not in bad.stderr


def test_rejected_events_are_shown_not_hidden(tmp_path):
    events = tmp_path / "stranger.jsonl"
    events.write_text(json.dumps({"type": "email.clicked", "at": "2026-03-02T15:00:00Z", "lead": "who@x.example",
                                  "template": "saas/capability"}) + "\n"
                      + json.dumps({"type": "optin", "at": "2026-03-02T15:00:00Z", "lead": "bad@x.example",
                                    "magnet": "whitepaper", "profile": {"first_name": "B", "industry": "retail"}})
                      + "\n")
    r = fnl("trace", ACME, "--events", events)
    assert r.returncode == 1, r.stderr
    # the click of someone who never opted in is ignored with its reason; the bad opt-in is rejected
    assert "stranger.jsonl:1:1" not in r.stderr and "stranger.jsonl:2:1: error FNL603" in r.stderr
    assert ("→ email.clicked saas/capability ignored: who@x.example has not entered the funnel, so no email was "
            "sent to it") in r.stdout
    assert re.search(r"REJECTED: `industry` must be one of .*'retail'", r.stdout)


# -- malformed events files ---------------------------------------------------------------------------

GOOD = json.dumps({"type": "optin", "at": "2026-03-02T15:00:00Z", "lead": "a@x.example", "magnet": "whitepaper",
                   "profile": {"first_name": "A", "industry": "saas"}})
LATER = json.dumps({"type": "email.opened", "at": "2026-03-03T15:00:00Z", "lead": "a@x.example",
                    "template": "saas/industry-insight"})


def _bad_json_column(line: str) -> int:
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return exc.colno
    raise AssertionError("the line is valid JSON")


BROKEN = '{"type": "email.opened", "at": "2026-03-03T15:00:00Z", "lead": "a@x.example", '
CASES = {
    "bad-json": ([GOOD, BROKEN, LATER], 2, _bad_json_column(BROKEN), "invalid JSON"),
    "not-an-object": ([GOOD, "[1, 2, 3]"], 2, 1, "expected a JSON object"),
    "unknown-type": ([GOOD, LATER.replace("email.opened", "email.teleported")], 2, 1, "email.teleported"),
    "known-field-wrong-type": ([GOOD, LATER.replace('"saas/industry-insight"', "7")], 2, 1, "`template` must be"),
    "bad-time": ([GOOD, LATER.replace("2026-03-03T15:00:00Z", "tomorrow at noon")], 2, 1, "tomorrow at noon"),
    "missing-time": ([GOOD, '{"type": "email.opened", "lead": "a@x.example"}'], 2, 1, "`at`"),
    "missing-lead": ([GOOD, LATER.replace('"lead": "a@x.example", ', "")], 2, 1, "`lead`"),
    "empty-lead": ([GOOD, LATER.replace('"lead": "a@x.example"', '"lead": ""')], 2, 1, "`lead`"),
    "profile-not-object": ([GOOD.replace('{"first_name": "A", "industry": "saas"}', '"saas"')], 1, 1, "`profile`"),
    "deep-nesting": ([GOOD, "[" * 100_000 + "]" * 100_000], 2, 1, ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_events_exit_1_with_file_line_col(tmp_path, case):
    lines, line, column, message = CASES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", f"{case}.jsonl", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert f"{case}.jsonl:{line}:{column}:" in r.stderr
    assert message in r.stderr
    assert len(r.stderr) < 5000  # the offending line is quoted, not the whole file


def test_fields_fnl_does_not_use_are_ignored_and_named_once_on_stderr(tmp_path):
    """ESP exports carry extra fields (`variant`, `campaign_id`): the events still apply,
    and one note on stderr, not one per line, says which fields were left out."""
    clicks = [json.dumps({"type": "email.clicked", "at": f"2026-03-03T15:{m:02d}:00Z", "lead": "a@x.example",
                          "template": "saas/industry-insight", "variant": "b"}) for m in range(12)]
    opened = json.loads(LATER)
    opened.update(campaign_id=42, tempalte="x")
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join([GOOD, *clicks, json.dumps(opened)]) + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ("note: ignored fields not used by fnl: campaign_id (1 line), tempalte (1 line; did you mean "
                        "template?), variant (12 lines)\n")
    assert r.stdout.count("email.clicked") == 12
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join([GOOD, LATER]) + "\n", encoding="utf-8")
    assert fnl("trace", REPO / ACME, "--events", plain.name, cwd=tmp_path).stderr == ""


def test_ignored_fields_do_not_excuse_bad_known_fields_or_types(tmp_path):
    bad = json.loads(LATER)
    bad.update(variant="b", type="email.teleported")
    wrong = json.loads(LATER)
    wrong.update(variant="b", machine="yes")
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([GOOD, json.dumps(bad), json.dumps(wrong)]) + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", path.name, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert "bad.jsonl:2:1:" in r.stderr and "email.teleported" in r.stderr
    assert "bad.jsonl:3:1:" in r.stderr and "`machine` must be true or false" in r.stderr


def test_the_ignored_field_note_is_bounded_and_safe_for_the_terminal(tmp_path):
    fields = {f"extra_{i:02d}": i for i in range(30)}
    fields["\x1b[31mred"] = 1
    event = json.loads(LATER)
    event.update(fields)
    path = tmp_path / "wide.jsonl"
    path.write_text("\n".join([GOOD, json.dumps(event)]) + "\n", encoding="utf-8")
    scan = tr.scan_events(path, "wide.jsonl")
    assert scan.problems == () and len(scan.ignored) == tr.MAX_IGNORED_NAMES + 1
    assert scan.ignored[-1] == (None, 11)
    assert scan.ignored_note().endswith(", other fields (11 lines)")
    r = fnl("trace", REPO / ACME, "--events", path.name, cwd=tmp_path)
    assert r.returncode == 0 and "\x1b" not in r.stderr and r.stderr.count("\n") == 1


def test_every_bad_line_is_reported_in_one_run(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join([GOOD, "{oops", LATER, '{"type": "nope", "at": "2026-03-04T00:00:00Z", "lead": "a"}',
                               "", "not json either"]) + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", "many.jsonl", cwd=tmp_path)
    assert r.returncode == 1
    located = re.findall(r"^many\.jsonl:(\d+):(\d+):", r.stderr, flags=re.M)
    assert [int(n) for n, _ in located] == [2, 4, 6]


def test_non_utf8_events_file(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((GOOD + "\n" + LATER + "\n").encode() + '{"type": "optin", "lead": "jos\u00e9"}\n'.encode("latin-1"))
    r = fnl("trace", REPO / ACME, "--events", path.name, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "latin1.jsonl:3:31:" in r.stderr and "UTF-8" in r.stderr  # the column of the é


def test_huge_line_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.jsonl"
    huge = json.dumps({"type": "email.opened", "at": "2026-03-03T15:00:00Z", "lead": "a@x.example",
                       "template": "x" * (2 * 1024 * 1024)})
    path.write_text(GOOD + "\n" + huge + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", path.name, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "huge.jsonl:2:1:" in r.stderr and "1 MiB" in r.stderr
    assert len(r.stderr) < 5000


def test_missing_events_file_exits_3(tmp_path):
    r = fnl("trace", REPO / ACME, "--events", tmp_path / "nope.jsonl")
    assert r.returncode == 3
    assert "nope.jsonl" in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


def test_empty_events_file_is_one_located_problem(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", path, "--format", "json")
    assert r.returncode == 1 and r.stdout == ""
    assert "empty.jsonl:1:1: error FNL601: events file holds no events" in r.stderr


def test_rejected_events_are_located_and_fail_the_run(tmp_path, events):
    path = tmp_path / "rejected.jsonl"
    bad = dict(events[0], profile=dict(events[0]["profile"], industry="retail"))
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    r = fnl("trace", REPO / ACME, "--events", path)
    assert r.returncode == 1
    assert "REJECTED" in r.stdout
    assert "rejected.jsonl:1:1: error FNL603: event rejected: `industry` must be one of" in r.stderr


def test_read_events_in_process_keeps_good_lines_and_locates_bad_ones(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([GOOD, "{", LATER]) + "\n", encoding="utf-8")
    loaded = tr.read_events(path, "mixed.jsonl")
    assert [e.type for e in loaded.events] == ["optin", "email.opened"]
    assert loaded.events[0].at == minutes(datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc))
    [problem] = loaded.problems
    assert (problem.location.file, problem.location.line) == ("mixed.jsonl", 2)


def test_times_with_offsets_are_read_as_the_same_instant(tmp_path):
    path = tmp_path / "offsets.jsonl"
    path.write_text("\n".join([GOOD.replace("2026-03-02T15:00:00Z", "2026-03-02T16:00:00+01:00"),
                               LATER.replace("2026-03-03T15:00:00Z", "2026-03-03T10:00:00-05:00")]) + "\n",
                    encoding="utf-8")
    loaded = tr.read_events(path, "offsets.jsonl")
    assert not loaded.problems
    assert [e.at for e in loaded.events] == [parse_time("2026-03-02T15:00:00Z"), parse_time("2026-03-03T15:00:00Z")]


def test_the_lead_magnet_is_delivered_at_opt_in(plan, events, tmp_path):
    """The delivery email goes out at the opt-in itself, before any nurture step."""
    optin = dict(events[0], magnet="whitepaper", at="2026-03-02T23:30:00Z")
    events = tmp_path / "one.jsonl"
    events.write_text(json.dumps(optin) + "\n", encoding="utf-8")
    steps = tr.timeline(plan, tr.read_events(events, "one.jsonl").events)
    first = [a for a in steps[0].result.actions if a.type == "send_email"]
    magnet = plan.magnet("whitepaper")
    assert first and first[0].get("kind") == "delivery" and first[0].get("template") == magnet.delivers
    assert first[0].at == steps[0].event.at  # at once, even inside quiet hours


def test_until_before_the_first_event_is_a_usage_error():
    r = fnl("trace", ACME, "--events", DANA.relative_to(REPO), "--until", "1900-01-01T00:00:00Z")
    assert r.returncode == 3 and "before the first event" in r.stderr and r.stdout == ""


def test_early_years_print_with_four_digits():
    assert iso(parse_time("1900-01-01T00:00:00Z")) == "1900-01-01T00:00:00Z"
    assert iso(-62135596800 // 60) == "0001-01-01T00:00:00Z"
    assert iso(10**12).startswith("after 9999")  # a due time centuries out still prints


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+05:00", "9999-12-31T20:00:00Z", "1899-12-31T23:59:59Z"])
def test_times_outside_the_accepted_years_are_located_problems(tmp_path, at):
    path = tmp_path / "far.jsonl"
    path.write_text(GOOD.replace("2026-03-02T15:00:00Z", at) + "\n", encoding="utf-8")
    r = fnl("trace", ACME, "--events", path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "far.jsonl:1:1: error FNL603" in r.stderr and "years 1900 to 9000" in r.stderr


def test_a_lone_surrogate_in_a_lead_id_is_a_located_problem(tmp_path):
    path = tmp_path / "sur.jsonl"
    path.write_text(GOOD.replace('"a@x.example"', '"a\\ud800@x.example"') + "\n", encoding="utf-8")
    r = fnl("trace", ACME, "--events", path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "sur.jsonl:1:1: error FNL603" in r.stderr and "lone surrogate" in r.stderr


def test_the_readme_trace_sample_is_real_output():
    """The lines the README shows are lines `fnl trace` prints for Dana, word for word."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- sample: fnl trace funnels/acme --events tests/events/acme-dana.jsonl -->\n```\n",
                         1)[1].split("```", 1)[0]
    r = fnl("trace", ACME, "--events", DANA)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    sample = block.splitlines()
    assert len(sample) >= 4
    for line in sample:
        assert line in lines, line


# -- hostile and large events files ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_an_events_source_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """/dev/zero would grow without end and a FIFO would block: both are refused before reading."""
    import os
    import time

    if kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "events.fifo"
        os.mkfifo(path)
    started = time.perf_counter()
    r = fnl("trace", ACME, "--events", path)
    assert time.perf_counter() - started < 10  # a subprocess; reading would never end
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not a regular file" in r.stderr and "FNL601" in r.stderr


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path):
    """U+2028 is legal unescaped inside a JSON string; only LF ends an event."""
    opt = json.loads(GOOD)
    opt["profile"]["first_name"] = "A\u2028B"
    path = tmp_path / "ls.jsonl"
    path.write_text(json.dumps(opt, ensure_ascii=False) + "\n", encoding="utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")
    r = fnl("trace", ACME, "--events", path, "--format", "json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.split("\n")[0])
    assert first["event"]["profile"]["first_name"] == "A\u2028B"


def test_an_overlong_line_of_nothing_but_bytes_is_located_not_held(tmp_path):
    """8 MiB with no newline: one located problem, the line is never held whole."""
    path = tmp_path / "blob.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + b"\0" * (8 * 1024 * 1024) + b"\n" + LATER.encode() + b"\n")
    loaded = tr.scan_events(path, "blob.jsonl")
    assert [(p.code, p.location.line) for p in loaded.problems] == [("FNL602", 2)]
    assert loaded.count == 2


def _ordered_file(path: Path, leads: int, per_lead: int) -> None:
    """Events in time order: every lead opts in, then visits the blog once a minute."""
    lines = []
    for k in range(per_lead):
        at = iso(parse_time("2026-03-02T15:00:00Z") + k)
        for i in range(leads):
            lead = f"l{i}@x.example"
            if k == 0:
                lines.append(GOOD.replace("a@x.example", lead))
            else:
                lines.append(json.dumps({"type": "site.visited", "at": at, "lead": lead, "page": "blog"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_file_in_time_order_streams_in_memory_bounded_by_its_leads(tmp_path, plan):
    """Four times the events for the same leads: about the same peak memory (nothing holds all events)."""
    import tracemalloc

    peaks = []
    for per_lead in (10, 40):
        path = tmp_path / f"ordered-{per_lead}.jsonl"
        _ordered_file(path, 200, per_lead)
        scan = tr.scan_events(path, path.name)
        assert not scan.problems and scan.ordered and scan.count == 200 * per_lead
        tracemalloc.start()
        steps = sum(1 for _ in tr.run_file(plan, path, scan, scan.last_at))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert steps >= scan.count
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_streamed_and_in_memory_timelines_agree(tmp_path, plan):
    """The streamed trace of a shuffled file equals the in-memory one of the same events."""
    import random

    path = tmp_path / "mixed.jsonl"
    _ordered_file(path, 5, 6)
    lines = path.read_text(encoding="utf-8").splitlines()
    random.Random(7).shuffle(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scan = tr.scan_events(path, "mixed.jsonl")
    assert not scan.ordered
    streamed = tr.render_json(tr.run_file(plan, path, scan))
    loaded = tr.read_events(path, "mixed.jsonl")
    assert streamed == tr.render_json(tr.timeline(plan, loaded.events))


def test_control_characters_from_events_never_reach_the_terminal_raw(tmp_path):
    """A lead ID or page with ESC, CR or U+2028 prints as visible escapes in text, and stays exact in JSON."""
    visit = json.dumps({"type": "site.visited", "at": "2026-03-02T16:00:00Z", "lead": "a@x.example",
                        "page": "p\u001b[2J\rX\u2028Y"})
    path = tmp_path / "ctl.jsonl"
    path.write_text(GOOD + "\n" + visit + "\n", encoding="utf-8")
    r = fnl("trace", ACME, "--events", path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\r" not in r.stdout and "\u2028" not in r.stdout
    assert "site.visited p\\x1b[2J\\rX\\u2028Y" in r.stdout
    j = fnl("trace", ACME, "--events", path, "--format", "json")
    assert "\x1b" not in j.stdout and "\u2028" not in j.stdout
    row = json.loads(j.stdout.split("\n")[1])
    assert row["event"]["page"] == "p\u001b[2J\rX\u2028Y"
