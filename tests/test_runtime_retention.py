"""Retention (`retention:` of the runtime config), applied by `fnl run` after delivery on a
real SQLite file: applied events older than the window keep only their ID (a replayed log
adds nothing), delivered actions older than the window are deleted, and nothing else goes:
not the leads' states, not an action still pending (held back by a sending limit) or
parked as failed, not the event such an action was decided by, not anything recent."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple


from conftest import REPO, clean_env
from engine.state import parse_time

ACME = str(REPO / "funnels" / "acme")
DANA = REPO / "tests" / "events" / "acme-dana.jsonl"
UNTIL = "2026-06-01T00:00:00Z"
CUTOFF = parse_time(UNTIL) - 30 * 1440  # a window of 30d


def fnl(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *args], capture_output=True, text=True,
                          timeout=300, env=clean_env(**{"FNL_SIGNING_KEY": "s" * 32, **env}))


def run(db: Path, cfg: Path, events: Path = DANA, until: str = UNTIL) -> subprocess.CompletedProcess:
    return fnl("run", ACME, "--db", str(db), "--events", str(events), "--until", until, "--config", str(cfg))


def rows(db: Path, sql: str) -> List[Tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_old_events_keep_their_id_old_deliveries_go_and_a_replay_adds_nothing(tmp_path: Path) -> None:
    keep = tmp_path / "keep.yaml"
    keep.write_text("fnl-runtime: 1\nactions: [{jsonl: {path: out.jsonl}}]\n", encoding="utf-8")
    trim = tmp_path / "trim.yaml"
    trim.write_text(keep.read_text(encoding="utf-8") + "retention: {events: 30d, delivered_actions: 30d}\n",
                    encoding="utf-8")
    whole, trimmed = tmp_path / "whole.db", tmp_path / "trimmed.db"
    assert run(whole, keep).returncode == 0
    proc = run(trimmed, trim)
    assert proc.returncode == 0, proc.stderr
    assert "fnl: retention: 7 applied events older than 30d reduced to their ID, 18 delivered actions older than " \
           "30d deleted" in proc.stderr, proc.stderr
    # Dana's events (March) are older than 30 days at June 1st: their IDs stay, nothing else.
    assert rows(trimmed, "SELECT id, at, lead, event, applied FROM inbox ORDER BY seq") == [
        (id_, at, "", "{}", 1) for id_, at in rows(whole, "SELECT id, at FROM inbox ORDER BY seq")]
    assert rows(trimmed, "SELECT count(*) FROM outbox") == [(0,)] and rows(whole, "SELECT count(*) FROM outbox") == [
        (18,)]
    assert rows(trimmed, "SELECT * FROM leads") == rows(whole, "SELECT * FROM leads")  # the states are kept
    with sqlite3.connect(trimmed) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    text = b"".join(rows(trimmed, "SELECT event || lead FROM inbox")[i][0].encode() for i in range(7))
    assert b"loopwise" not in text
    # The same log again: every event is known by its ID, nothing is applied or decided again.
    again = run(trimmed, trim)
    assert again.returncode == 0, again.stderr
    assert "0 new events (7 already in the inbox); applied 0" in again.stderr and "0 actions" in again.stderr
    assert rows(trimmed, "SELECT * FROM leads") == rows(whole, "SELECT * FROM leads")
    for command in (("status", ACME), ("explain", "dana@loopwise.example")):
        shown = fnl(*command, "--db", str(trimmed))
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr


def test_a_window_not_yet_passed_takes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "runtime.yaml"
    cfg.write_text("fnl-runtime: 1\nactions: [{jsonl: {path: out.jsonl}}]\n"
                   "retention: {events: 400d, delivered_actions: 400d}\n", encoding="utf-8")
    db = tmp_path / "a.db"
    proc = run(db, cfg)
    assert proc.returncode == 0, proc.stderr
    assert "retention" not in proc.stderr  # said only when it took something
    assert rows(db, "SELECT count(*) FROM outbox") == [(18,)]
    assert rows(db, "SELECT count(*) FROM inbox WHERE event = '{}'") == [(0,)]


def test_pending_and_failed_actions_and_their_events_are_kept(tmp_path: Path, smtp_server) -> None:
    """Over SMTP, with at most 2 emails a day: most emails wait (pending), one to a hostile
    address is parked as failed; after a retention of 30d, every one of them is still there
    and so is the event that decided it, while old deliveries are gone and old events
    nobody points at keep only their ID. Everything newer than the window is untouched."""
    port, got = smtp_server
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "A", "industry": "saas"}}
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(x) + "\n" for x in (
        dict(optin, at="2026-01-05T14:30:00Z", lead="old@example.com"),
        {"type": "email.opened", "at": "2026-01-06T15:00:00Z", "lead": "old@example.com",
         "template": "saas/industry-insight"},
        dict(optin, at="2026-01-05T14:30:00Z", lead="x@example.com\r\nBcc: all@example.com"),
        dict(optin, at="2026-05-25T14:30:00Z", lead="recent@example.com"))), encoding="utf-8")
    base = (f"fnl-runtime: 1\nactions: [{{smtp: {{host: 127.0.0.1, port: {port}, starttls: false}}}}]\n"
            "limits: {acme.example: {warmup: [{day: 1, max: 2}]}}\n")
    keep, trim = tmp_path / "keep.yaml", tmp_path / "trim.yaml"
    keep.write_text(base, encoding="utf-8")
    trim.write_text(base + "retention: {events: 30d, delivered_actions: 30d}\n", encoding="utf-8")
    whole, trimmed = tmp_path / "whole.db", tmp_path / "trimmed.db"
    assert run(whole, keep, events).returncode == 0
    proc = run(trimmed, trim, events)
    assert proc.returncode == 0, proc.stderr
    assert "held back by the limits of acme.example" in proc.stderr and "refused" in proc.stderr

    def outbox(db: Path) -> Dict[str, Tuple]:
        return {r[0]: r[1:] for r in rows(db, "SELECT key, at, step, action, status FROM outbox")}

    def inbox(db: Path) -> Dict[str, Tuple]:
        return {r[0]: r[1:] for r in rows(db, "SELECT id, at, lead, event, applied FROM inbox")}

    before, after = outbox(whole), outbox(trimmed)
    gone = {k for k, (at, _, _, status) in before.items() if status == "delivered" and at < CUTOFF}
    assert gone and set(after) == set(before) - gone
    assert all(after[k] == before[k] for k in after)
    statuses = [status for _, _, _, status in after.values()]
    assert "failed" in statuses and any(s == "pending" and at < CUTOFF for at, _, _, s in after.values())
    assert any(at >= CUTOFF and s == "delivered" for at, _, _, s in after.values())  # recent ones stay
    referenced = {step[len("event:"):] for _, step, _, _ in after.values() if step.startswith("event:")}
    old_in, new_in = inbox(whole), inbox(trimmed)
    assert set(old_in) == set(new_in)
    reduced = kept = 0
    for id_, (at, lead, event, applied) in old_in.items():
        if at < CUTOFF and applied and id_ not in referenced:
            assert new_in[id_] == (at, "", "{}", 1)
            reduced += 1
        else:
            assert new_in[id_] == old_in[id_]
            kept += at < CUTOFF
    assert reduced >= 1 and kept >= 1  # the opened email's event goes; the opt-ins with waiting emails stay
    assert rows(trimmed, "SELECT * FROM leads") == rows(whole, "SELECT * FROM leads")
    assert rows(trimmed, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0] > 0
    shown = fnl("explain", "old@example.com", "--db", str(trimmed))
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
