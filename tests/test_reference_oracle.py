"""Differential test: fnl's trace of the reference funnel against an independent model.

The model (tests/oracle/reference_model.py) is written from the benchmark specification
(/work/shared/REFERENCE_FUNNEL.md), not from the engine, so the two can disagree; a
disagreement names the seed, the lead and the first differing item, and leaves the stream
under pytest's tmp_path to replay with

    fnl trace funnels/reference.yaml --events STREAM.jsonl --format json --until UNTIL

FNL_ORACLE_STREAMS sets how many seeded streams run (default 2000); most go through the
CLI in-process (click's CliRunner), a handful through a real subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from click.testing import CliRunner

import fnl
from tests.oracle import streams
from tests.oracle.reference_model import Event, Result, run_lead

REPO = Path(__file__).resolve().parent.parent
FUNNEL = "funnels/reference.yaml"
N_STREAMS = int(os.environ.get("FNL_ORACLE_STREAMS", "2000"))
CHUNK = 100
SUBPROCESS_SEEDS = [3, 17, 42, 101, 977]
SCORE_TOLERANCE = 1e-6 + 1e-9  # both sides round to 6 decimals


def _minute(text: str) -> int:
    at = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    return int(at.timestamp()) // 60


# -- running fnl ----------------------------------------------------------------------

def _args(events_path: Path, until: str) -> List[str]:
    return ["trace", FUNNEL, "--events", str(events_path), "--format", "json", "--until", until]


def fnl_in_process(events_path: Path, until: str) -> List[dict]:
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        res = CliRunner().invoke(fnl.cli, _args(events_path, until))
    finally:
        os.chdir(cwd)
    return _parse(res.output, res.exit_code)


def fnl_subprocess(events_path: Path, until: str) -> List[dict]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    proc = subprocess.run([sys.executable, "fnl.py", *_args(events_path, until)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    return _parse(proc.stdout, proc.returncode, proc.stderr)


def _parse(output: str, code: int, stderr: str = "") -> List[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip().startswith("{")]
    assert lines, f"fnl trace printed no JSON lines (exit {code}):\n{output}{stderr}"
    return lines


# -- comparing one lead ---------------------------------------------------------------

def _fnl_lead(lines: List[dict], lead: str) -> dict:
    """What fnl says happened to one lead, in the model's terms."""
    own = [ln for ln in lines if ln["event"].get("lead") == lead]
    sends, changes = [], []
    for ln in lines:
        for a in ln.get("actions", []):
            if a.get("lead", ln["event"].get("lead")) != lead:
                continue
            if a["type"] == "send_email":
                sends.append((_minute(a["at"]), a["template"]))
            elif a["type"] == "stage_changed":
                changes.append((_minute(a["at"]), a["from"], a["to"]))
    flagged = [ln for ln in own if ln.get("unsubscribed") is True]
    return {
        "inputs": [ln for ln in own if ln["event"]["type"] != "clock"],
        "sends": sends, "changes": changes,
        "final_stage": own[-1]["stage"] if own else None,
        "unsubscribed": own[-1].get("unsubscribed", "<absent>") if own else None,
        "unsubscribed_at": _minute(flagged[0]["event"]["at"]) if flagged else None,
    }


def _first_list_diff(name: str, model: list, got: list) -> Optional[Tuple[int, str]]:
    for i in range(max(len(model), len(got))):
        m = model[i] if i < len(model) else None
        f = got[i] if i < len(got) else None
        if m != f:
            when = min(x[0] for x in (m, f) if x is not None)
            return when, f"{name}[{i}]: model {_show(m)} vs fnl {_show(f)}"
    return None


def _show(item) -> str:
    if isinstance(item, tuple) and item and isinstance(item[0], int):
        return repr((streams.iso(item[0]),) + item[1:])
    return repr(item)


def compare_lead(lead: str, inputs: List[Event], model: Result, lines: List[dict]) -> Optional[str]:
    """The earliest disagreement (by minute) between the model and fnl for one lead, or None.
    The message also lists the other kinds of disagreement found for the lead."""
    got = _fnl_lead(lines, lead)
    diffs: List[Tuple[int, str]] = []
    fnl_inputs = got["inputs"]
    order = _first_list_diff("input events", [(e.minute, e.type) for e in inputs],
                             [(_minute(ln["event"]["at"]), ln["event"]["type"]) for ln in fnl_inputs])
    if order:
        diffs.append(order)
    else:
        for i, (ev, (score, stage), active, ln) in enumerate(
                zip(inputs, model.after_event, model.active_before, fnl_inputs)):
            # Compared while the lead is subscriber or mql and not unsubscribed; the score
            # after an unsubscribe is not compared.
            if not active:
                continue
            fscore, unsub = ln.get("score"), ev.type == "email.unsubscribed"
            if ln.get("stage") != stage or (not unsub and (
                    not isinstance(fscore, (int, float)) or abs(fscore - score) > SCORE_TOLERANCE)):
                what = f"{ev.type} {ev.template or ev.page or ''} at {streams.iso(ev.minute)}"
                diffs.append((ev.minute, f"after event #{i} {what}: model (score {'-' if unsub else score}, {stage})"
                                         f" vs fnl (score {'-' if unsub else fscore}, {ln.get('stage')})"))
                break
    for name in ("sends", "changes"):
        d = _first_list_diff(name, getattr(model, name), got[name])
        if d:
            diffs.append(d)
    end = max(e.minute for e in inputs)
    if model.final_stage != got["final_stage"]:
        diffs.append((end, f"final stage: model {model.final_stage!r} vs fnl {got['final_stage']!r}"))
    if model.unsubscribed != got["unsubscribed"]:
        diffs.append((model.unsubscribed_at or end,
                      f"unsubscribed: model {model.unsubscribed!r} vs fnl {got['unsubscribed']!r}"))
    elif model.unsubscribed and model.unsubscribed_at != got["unsubscribed_at"]:
        diffs.append((model.unsubscribed_at, f"unsubscribed at: model {streams.iso(model.unsubscribed_at)} vs fnl "
                                             f"{got['unsubscribed_at'] and streams.iso(got['unsubscribed_at'])}"))
    if not diffs:
        return None
    diffs.sort(key=lambda d: d[0])
    others = "; ".join(d[1].split(":")[0] for d in diffs[1:])
    return f"lead {lead}: {diffs[0][1]}" + (f"\n  (also differs: {others})" if others else "")


def compare_stream(events: List[dict], until: str, lines: List[dict]) -> List[str]:
    problems = []
    for lead, inputs in streams.model_events(events).items():
        model = run_lead(inputs, _minute(until))
        d = compare_lead(lead, inputs, model, lines)
        if d:
            problems.append(d)
    return problems


def _replay(path: Path, until: str) -> str:
    return f"replay: fnl trace {FUNNEL} --events {path} --format json --until {until}"


def _check_seeds(tmp_path: Path, seeds, runner) -> None:
    failures: List[Tuple[int, List[str], str]] = []
    for seed in seeds:
        stream = streams.generate(seed)
        path = tmp_path / f"seed-{seed}.jsonl"
        path.write_text(streams.to_jsonl(stream.events), encoding="utf-8")
        problems = compare_stream(stream.events, stream.until, runner(path, stream.until))
        if problems:
            failures.append((seed, problems, _replay(path, stream.until)))
        else:
            path.unlink()
    if failures:
        seed, problems, replay = failures[0]
        more = ", ".join(str(s) for s, _, _ in failures[1:21])
        pytest.fail(f"{len(failures)} of {len(seeds)} streams disagree with the model.\n"
                    f"first: seed {seed}\n" + "\n".join(problems) + f"\n{replay}\n"
                    f"other failing seeds: {more}{' ...' if len(failures) > 21 else ''}", pytrace=False)


# -- the random streams ---------------------------------------------------------------

@pytest.mark.parametrize("start", range(0, N_STREAMS, CHUNK), ids=lambda s: f"seeds{s}-{s + CHUNK - 1}")
def test_streams_in_process(tmp_path: Path, start: int) -> None:
    _check_seeds(tmp_path, range(start, min(start + CHUNK, N_STREAMS)), fnl_in_process)


def test_streams_subprocess(tmp_path: Path) -> None:
    _check_seeds(tmp_path, SUBPROCESS_SEEDS, fnl_subprocess)


def test_streams_are_deterministic() -> None:
    assert streams.generate(12345) == streams.generate(12345)
    for seed in range(50):
        stream = streams.generate(seed)
        for lead, evs in streams.model_events(stream.events).items():
            assert evs[0].type == "optin" and [e.minute for e in evs] == sorted(e.minute for e in evs)
        assert _minute(stream.until) >= max(_minute(e["at"]) for e in stream.events)


# -- hand-written cases (expected values derived by hand from the spec) ---------------

L = "hand@x.example"
T0 = "2026-03-02T09:00:00Z"  # a Monday; nurture due at +0, 2, 5, 9, 14, 21 days, 09:00


def _optin(at: str = T0, industry: str = "saas") -> dict:
    return {"type": "optin", "at": at, "lead": L, "magnet": "guide",
            "profile": {"first_name": "Ann", "industry": industry}}


def _e(kind: str, at: str, **fields) -> dict:
    return {"type": kind, "at": at, "lead": L, **fields}


NURTURE_ALL = [("2026-03-02T09:00:00Z", "nurture/day-0"), ("2026-03-04T09:00:00Z", "nurture/day-2"),
               ("2026-03-07T09:00:00Z", "nurture/day-5"), ("2026-03-11T09:00:00Z", "nurture/day-9"),
               ("2026-03-16T09:00:00Z", "nurture/day-14"), ("2026-03-23T09:00:00Z", "nurture/day-21")]

HAND = {
    # nurture/day-2 is due 03-04 09:00; the unsubscribe is stamped that same minute. Emails
    # due in a minute go out before the minute's events, so day-2 IS sent; nothing after
    # (day-5 .. day-21 are not). The stage stays subscriber; the unsubscribe scores nothing.
    "due-email-then-unsubscribe-same-minute": dict(
        events=[_optin(), _e("email.unsubscribed", "2026-03-04T09:00:00Z", template="nurture/day-2")],
        until="2026-04-01T00:00:00Z",
        sends=NURTURE_ALL[:2], changes=[],
        after=[(0.0, "subscriber"), (0.0, "subscriber")], final="subscriber", unsubscribed=True),
    # 09:00 open day-0 +5, click +10 = 15; 09:01 blog visit +15 = 30; 09:02 pricing visit +20
    # = 50 >= 40 and saas -> mql at 09:02, but that pricing visit is not *after* the mql
    # minute, so no sql. 09:03 pricing visit +20 = 70, strictly later -> sql at 09:03, and
    # sales/day-0 at 09:03, day-3 at 03-05 09:03, day-7 at 03-09 09:03 (until 03-20). No
    # nurture after day-0 (day-2 is due 03-04, after the hand-off).
    "pricing-visit-in-the-mql-minute": dict(
        events=[_optin(), _e("email.opened", T0, template="nurture/day-0"),
                _e("email.clicked", T0, template="nurture/day-0"),
                _e("site.visited", "2026-03-02T09:01:00Z", page="blog"),
                _e("site.visited", "2026-03-02T09:02:00Z", page="pricing"),
                _e("site.visited", "2026-03-02T09:03:00Z", page="pricing")],
        until="2026-03-20T00:00:00Z",
        sends=[NURTURE_ALL[0], ("2026-03-02T09:03:00Z", "sales/day-0"), ("2026-03-05T09:03:00Z", "sales/day-3"),
               ("2026-03-09T09:03:00Z", "sales/day-7")],
        changes=[("2026-03-02T09:02:00Z", "subscriber", "mql"), ("2026-03-02T09:03:00Z", "mql", "sql")],
        after=[(0.0, "subscriber"), (5.0, "subscriber"), (15.0, "subscriber"), (30.0, "subscriber"),
               (50.0, "mql"), (70.0, "sql")], final="sql", unsubscribed=False),
    # Each (template, kind) scores once: three opens of day-0 score 5 once, two clicks 10
    # once. Manufacturing is not fit, so no mql whatever the score.
    "repeated-opens-and-clicks": dict(
        events=[_optin(industry="manufacturing"), *[_e("email.opened", T0, template="nurture/day-0")] * 3,
                *[_e("email.clicked", "2026-03-02T09:05:00Z", template="nurture/day-0")] * 2],
        until="2026-03-05T00:00:00Z",
        sends=NURTURE_ALL[:2], changes=[],
        after=[(0.0, "subscriber"), (5.0, "subscriber"), (5.0, "subscriber"), (5.0, "subscriber"),
               (15.0, "subscriber"), (15.0, "subscriber")], final="subscriber", unsubscribed=False),
    # Opening day-2 on 03-03 (not sent before 03-04 09:00) scores nothing; a reply to a
    # nonexistent template and to an unsent sales email are ignored (no points, not
    # "replied"). On 03-04 09:00 day-2 goes out first, so an open then counts: 5. Pricing
    # visits at 09:01 (+20 = 25) and 09:02 (+20 = 45 -> mql at 09:02, saas). No reply ever
    # counted and no pricing visit after 09:02, so it stays mql; day-5 (03-07) is sent.
    # No midnight is crossed after the first point (all on 03-04), so no decay.
    "engagement-with-unsent-email": dict(
        events=[_optin(), _e("email.opened", "2026-03-03T09:00:00Z", template="nurture/day-2"),
                _e("email.replied", "2026-03-03T10:00:00Z", template="nurture/day-3"),
                _e("email.replied", "2026-03-03T11:00:00Z", template="sales/day-0"),
                _e("email.opened", "2026-03-04T09:00:00Z", template="nurture/day-2"),
                _e("site.visited", "2026-03-04T09:01:00Z", page="pricing"),
                _e("site.visited", "2026-03-04T09:02:00Z", page="pricing")],
        until="2026-03-08T00:00:00Z",
        sends=NURTURE_ALL[:3], changes=[("2026-03-04T09:02:00Z", "subscriber", "mql")],
        after=[(0.0, "subscriber"), (0.0, "subscriber"), (0.0, "subscriber"), (0.0, "subscriber"),
               (5.0, "subscriber"), (25.0, "subscriber"), (45.0, "mql")], final="mql", unsubscribed=False),
    # Opt-in 03-02 23:59: open +5, click +10 = 15 at 23:59. Midnight: 15 * 0.98 = 14.7, blog
    # visit at 03-03 00:00 +15 = 29.7. Visit 03-03 23:59 (same day, no decay) +15 = 44.7 -> mql
    # at 23:59. Two midnights later (03-05 00:00): 44.7 * 0.98^2 = 42.92988, pricing visit
    # +20 = 62.92988, strictly after mql -> sql; sales/day-0 at 03-05 00:00 and day-3 at
    # 03-08 00:00 (until 03-10: day-7 on 03-12 is not sent). Nurture: day-0 (03-02 23:59),
    # day-2 (03-04 23:59, the lead is mql) sent; day-5 (03-07 23:59, after sql) not.
    "midnight-decay": dict(
        events=[_optin("2026-03-02T23:59:00Z"), _e("email.opened", "2026-03-02T23:59:00Z", template="nurture/day-0"),
                _e("email.clicked", "2026-03-02T23:59:00Z", template="nurture/day-0"),
                _e("site.visited", "2026-03-03T00:00:00Z", page="blog"),
                _e("site.visited", "2026-03-03T23:59:00Z", page="docs"),
                _e("site.visited", "2026-03-05T00:00:00Z", page="pricing")],
        until="2026-03-10T00:00:00Z",
        sends=[("2026-03-02T23:59:00Z", "nurture/day-0"), ("2026-03-04T23:59:00Z", "nurture/day-2"),
               ("2026-03-05T00:00:00Z", "sales/day-0"), ("2026-03-08T00:00:00Z", "sales/day-3")],
        changes=[("2026-03-03T23:59:00Z", "subscriber", "mql"), ("2026-03-05T00:00:00Z", "mql", "sql")],
        after=[(0.0, "subscriber"), (5.0, "subscriber"), (15.0, "subscriber"), (29.7, "subscriber"),
               (44.7, "mql"), (62.92988, "sql")], final="sql", unsubscribed=False),
    # A reply while a subscriber: 25, then a pricing visit +20 = 45 -> mql, and in the same
    # check mql -> sql because the lead has replied (any time): both at 10:00.
    "reply-before-mql-passes-straight-through": dict(
        events=[_optin(industry="finance"), _e("email.replied", "2026-03-02T09:30:00Z", template="nurture/day-0"),
                _e("site.visited", "2026-03-02T10:00:00Z", page="pricing")],
        until="2026-03-03T00:00:00Z",
        sends=[NURTURE_ALL[0], ("2026-03-02T10:00:00Z", "sales/day-0")],
        changes=[("2026-03-02T10:00:00Z", "subscriber", "mql"), ("2026-03-02T10:00:00Z", "mql", "sql")],
        after=[(0.0, "subscriber"), (25.0, "subscriber"), (45.0, "sql")], final="sql", unsubscribed=False),
    # Two pricing visits on the opt-in day: 20 + 20 = 40, exactly the threshold (>=) -> mql
    # at 09:01; that visit is in the mql minute, so no sql. An open of day-0 at 09:01 (+5 =
    # 45) changes nothing; the pricing visit at 09:02 (+20 = 65) is after the mql minute ->
    # sql at 09:02 with sales/day-0 at once; until 03-05 09:02 is exactly sales/day-3's due
    # minute, so it is sent too.
    "score-exactly-at-threshold": dict(
        events=[_optin(industry="finance"), _e("site.visited", T0, page="pricing"),
                _e("site.visited", "2026-03-02T09:01:00Z", page="pricing"),
                _e("email.opened", "2026-03-02T09:01:00Z", template="nurture/day-0"),
                _e("site.visited", "2026-03-02T09:02:00Z", page="pricing")],
        until="2026-03-05T09:02:00Z",
        sends=[NURTURE_ALL[0], ("2026-03-02T09:02:00Z", "sales/day-0"), ("2026-03-05T09:02:00Z", "sales/day-3")],
        changes=[("2026-03-02T09:01:00Z", "subscriber", "mql"), ("2026-03-02T09:02:00Z", "mql", "sql")],
        after=[(0.0, "subscriber"), (20.0, "subscriber"), (40.0, "mql"), (45.0, "mql"), (65.0, "sql")],
        final="sql", unsubscribed=False),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_case_model(name: str) -> None:
    """The model against values derived by hand (guards the oracle itself)."""
    case = HAND[name]
    (lead, inputs), = streams.model_events(case["events"]).items()
    r = run_lead(inputs, _minute(case["until"]))
    assert [(streams.iso(m), t) for m, t in r.sends] == case["sends"]
    assert [(streams.iso(m), a, b) for m, a, b in r.changes] == case["changes"]
    assert r.after_event == case["after"]
    assert (r.final_stage, r.unsubscribed) == (case["final"], case["unsubscribed"])


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_case_fnl(tmp_path: Path, name: str) -> None:
    case = HAND[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_text(streams.to_jsonl(case["events"]), encoding="utf-8")
    problems = compare_stream(case["events"], case["until"], fnl_in_process(path, case["until"]))
    assert not problems, f"{name}:\n" + "\n".join(problems) + "\n" + _replay(path, case["until"])
