"""`fnl run` on SQLite with the virtual clock: the events of a simulated quarter of the acme
funnel go in, the engine's actions come out, exactly the actions `engine.drive` (the loop
`fnl trace` uses) decides for the same events; nothing applied twice when the same log is
replayed or the run is split; and a process killed at random points, then restarted,
ends with every action delivered, a repeat only with the key of the one before it."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import engine.simulate.run as simulate_run
from conftest import REPO, clean_env
from engine import drive as dr
from engine.drive import Driver
from engine.pipeline import plan_for
from engine.simulate.behavior import find_behavior, load_behavior
from engine.simulate.run import simulate
from engine.simulate import DEFAULT_START
from engine.state import CLOCK, Event, iso, parse_time

ACME = str(REPO / "funnels" / "acme")
KILLS = int(os.environ.get("FNL_RUN_KILLS", "0") or 0) or 4  # SIGKILLs of a run before it may finish


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, int, List[Event]]:
    """The events 150 synthetic acme leads made over 90 days (per-lead simulator), as a
    JSON Lines file in a shuffled order, and the run's last minute."""
    events, start, end = simulated_events(Path(ACME), leads=150, days=90)
    events = list(events)
    random.Random(7).shuffle(events)  # lines need not come in time order
    path = tmp_path_factory.mktemp("run") / "quarter.jsonl"
    path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events), encoding="utf-8")
    return path, end, events


def simulated_events(funnel: Path, leads: int, days: int, seed: int = 2) -> Tuple[List[Event], int, int]:
    """The events the per-lead simulator's leads make (not the clock), in the order the
    engine applied them, and the run's first and last minute."""
    plan = plan_for(str(funnel))
    behavior = load_behavior(find_behavior(funnel), plan)  # type: ignore[arg-type]
    applied: List[Event] = []

    class Recording(Driver):
        def apply(self, event: Event) -> dr.Applied:
            if event.type != CLOCK:
                applied.append(event)
            return super().apply(event)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulate_run, "Driver", Recording)
        run = simulate(plan, behavior, seed=seed, leads=leads, horizon=days * 1440, start=parse_time(DEFAULT_START),
                       engine="per-lead")
    return applied, run.start, run.start + run.horizon - 1


def fnl_run(db: Path, until: int, events: Path = None, out: Path = None, **kw) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until", iso(until)]
    if events is not None:
        args += ["--events", str(events)]
    if out is not None:
        args += ["--actions", f"jsonl:{out}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=clean_env(), **kw)


def delivered(path: Path) -> List[Dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def outbox(db: Path) -> List[Tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT key, action FROM outbox ORDER BY seq").fetchall()


def test_the_actions_are_the_engines_for_the_same_events(quarter, tmp_path: Path) -> None:
    path, end, events = quarter
    out = tmp_path / "actions.jsonl"
    proc = fnl_run(tmp_path / "acme.db", end, path, out)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(events):,} new events" in proc.stderr
    got = [{k: v for k, v in a.items() if k != "idempotency_key"} for a in delivered(out)]
    plan = plan_for(ACME)
    expected = [json.loads(json.dumps(a.to_json(), default=str)) for item in dr.drive(plan, events, until=end)
                for a in item.result.actions if a.type != "left_out"]
    assert len(got) == len(expected) > 500
    assert got == expected
    kinds = {a["type"] for a in got}
    assert {"send_email", "stage_changed", "handoff", "sla_breached", "enter_sequence"} <= kinds, kinds
    keys = [a["idempotency_key"] for a in delivered(out)]
    assert len(set(keys)) == len(keys)


def test_the_same_log_twice_changes_nothing(quarter, tmp_path: Path) -> None:
    path, end, events = quarter
    db, out = tmp_path / "acme.db", tmp_path / "actions.jsonl"
    assert fnl_run(db, end, path, out).returncode == 0
    first = outbox(db)
    again = fnl_run(db, end, path, out)
    assert again.returncode == 0, again.stderr
    assert f"0 new events ({len(events):,} already in the inbox); applied 0" in again.stderr
    assert "0 actions, 0 delivered" in again.stderr
    assert outbox(db) == first and len(delivered(out)) == len(first)


def test_a_run_in_two_parts_is_the_run_in_one(quarter, tmp_path: Path) -> None:
    path, end, events = quarter
    whole = tmp_path / "whole.db"
    assert fnl_run(whole, end, path).returncode == 0
    middle = min(e.at for e in events) + (end - min(e.at for e in events)) // 2
    early = tmp_path / "early.jsonl"
    late = tmp_path / "late.jsonl"
    early.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events if e.at <= middle), encoding="utf-8")
    late.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events if e.at > middle), encoding="utf-8")
    parts = tmp_path / "parts.db"
    assert fnl_run(parts, middle, early).returncode == 0
    assert fnl_run(parts, end, late).returncode == 0
    assert outbox(parts) == outbox(whole)


@pytest.mark.parametrize("every", ["500", "1"])  # events per commit: 1 goes through the journal
def test_killed_at_random_points_nothing_is_lost_and_repeats_carry_their_key(quarter, tmp_path: Path,
                                                                             every: str) -> None:
    path, end, _ = quarter
    reference = tmp_path / "reference.db"
    began = time.monotonic()
    assert fnl_run(reference, end, path, tmp_path / "reference.jsonl").returncode == 0
    took = time.monotonic() - began
    expected = outbox(reference)
    db, out = tmp_path / "killed.db", tmp_path / "delivered.jsonl"
    rng = random.Random(11)
    kills = 0
    for attempt in range(KILLS + 20):
        proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until",
                                 iso(end), "--events", str(path), "--actions", f"jsonl:{out}",
                                 "--commit-every", every],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
        if kills < KILLS:  # somewhere in the run: reading events, applying, committing, delivering
            # Each restart has less left to do than the one before: die sooner each time.
            time.sleep(rng.uniform(0.3, 0.9) * took * 0.6 ** kills)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=120)
        if proc.returncode == 0 and kills >= KILLS:
            break
    else:
        raise AssertionError(f"the run never finished ({kills} kills)")
    assert outbox(db) == expected  # the same actions, under the same keys, once each
    lines = delivered(out)
    by_key: Dict[str, Dict] = {}
    for line in lines:
        key = line["idempotency_key"]
        if key in by_key:
            assert by_key[key] == line  # a repeat is the same action with the same key
        by_key[key] = line
    assert set(by_key) == {key for key, _ in expected}  # every action delivered


def test_a_database_not_fnls_is_refused_and_another_funnel_runs_beside(quarter, tmp_path: Path) -> None:
    path, end, _ = quarter
    db = tmp_path / "acme.db"
    assert fnl_run(db, end, path).returncode == 0
    with sqlite3.connect(db) as conn:
        acme_rows = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
    other = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", str(REPO / "funnels" / "reference.yaml"),
                            "--db", str(db), "--until", iso(end)], capture_output=True, text=True, timeout=120,
                           env=clean_env())
    assert other.returncode == 0, other.stderr
    with sqlite3.connect(db) as conn:  # a funnel of its own in the same database: acme's leads untouched
        assert conn.execute("SELECT DISTINCT funnel FROM meta WHERE key = 'plan' ORDER BY 1").fetchall() == [
            ("acme-b2b",), ("reference",)]
        assert conn.execute("SELECT count(*) FROM leads WHERE funnel = 'acme-b2b'").fetchone()[0] == acme_rows
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    proc = fnl_run(foreign, end)
    assert proc.returncode == 3 and "is not an fnl database" in proc.stderr
    assert "Traceback" not in proc.stderr + other.stderr


def test_one_suppression_list_per_sender_across_its_funnels(tmp_path: Path, smtp_server) -> None:
    """An unsubscribe through one funnel stops the email of every funnel of the same sender
    in the database, not of another sender's; an unsubscribe or complaint for an address
    fnl has never seen becomes a suppression too."""
    import shutil

    port, got = smtp_server
    twin = tmp_path / "funnels" / "acme-twin"  # the same sender, another funnel
    shutil.copytree(REPO / "funnels" / "acme", twin)
    shutil.copytree(REPO / "templates" / "acme", tmp_path / "templates" / "acme")
    text = (twin / "funnel.yaml").read_text(encoding="utf-8")
    (twin / "funnel.yaml").write_text(text.replace("funnel: acme-b2b", "funnel: acme-twin"), encoding="utf-8")
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(x) + "\n" for x in (
        dict(optin, at="2026-03-02T14:30:00Z", lead="ana@example.com"),
        {"type": "email.unsubscribed", "at": "2026-03-02T16:00:00Z", "lead": "ana@example.com",
         "template": "magnets/whitepaper"},
        {"type": "email.complained", "at": "2026-03-02T16:00:00Z", "lead": "never-seen@example.com",
         "template": "magnets/whitepaper"})), encoding="utf-8")
    db = tmp_path / "a.db"
    assert run_smtp(db, parse_time("2026-03-03T00:00:00Z"), first, port).returncode == 0
    got.clear()
    second = tmp_path / "second.jsonl"
    second.write_text("".join(json.dumps(dict(optin, at="2026-03-04T14:30:00Z", lead=lead)) + "\n"
                              for lead in ("ana@example.com", "never-seen@example.com", "bo@example.com")),
                      encoding="utf-8")
    args = [sys.executable, str(REPO / "fnl.py"), "run", str(twin), "--db", str(db), "--until",
            "2026-03-05T00:00:00Z", "--events", str(second), "--actions", f"smtp://127.0.0.1:{port}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=clean_env(FNL_SIGNING_KEY="s" * 32))
    assert proc.returncode == 0, proc.stderr
    import email
    from email import policy

    assert {email.message_from_bytes(m, policy=policy.default)["To"] for m in got} == {"bo@example.com"}
    assert "not sent: the address is on the suppression list (unsubscribed)" in proc.stderr
    assert "not sent: the address is on the suppression list (complained)" in proc.stderr
    from engine.runtime.db import Database

    store = Database(str(db)).scope("reference", "Reference Co <hello@reference.example>")
    try:  # another sender's list does not hold them
        assert store.suppressed("ana@example.com") is None
        assert store.scope("acme-twin", "hello@ACME.example").suppressed("Ana@Example.com") == "unsubscribed"
    finally:
        store.close()


def run_smtp(db: Path, until: int, events: Path, port: int, out: Path = None,
             **env: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until", iso(until),
            "--events", str(events), "--actions", f"smtp://127.0.0.1:{port}"]
    if out is not None:
        args += ["--actions", f"jsonl:{out}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env=clean_env(**{"FNL_SIGNING_KEY": "s" * 32, **env}))


def message_ids(got: List[bytes]) -> List[str]:
    import email
    from email import policy

    return [email.message_from_bytes(raw, policy=policy.default)["Message-ID"] for raw in got]


@pytest.mark.parametrize("point", ["after-send", "after-commit"])
def test_a_crash_at_a_named_point_loses_nothing_and_a_repeat_is_the_same_message(quarter, tmp_path: Path,
                                                                                smtp_server, point: str) -> None:
    """Killed (SIGKILL) right after the SMTP server accepted a message and before it was
    marked delivered, or right after a batch of steps committed: the next run delivers
    every email; only the one in flight comes twice, with the same Message-ID."""
    path, end, _ = quarter
    port, got = smtp_server
    crashed = run_smtp(tmp_path / "a.db", end, path, port, FNL_CRASH_AT=point)
    assert crashed.returncode == -9, crashed.stderr
    before = len(got)
    again = run_smtp(tmp_path / "a.db", end, path, port)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(tmp_path / "a.db") as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM outbox WHERE action LIKE '%\"send_email\"%' "
                                           "AND status != 'suppressed'")}
    ids = message_ids(got)
    assert {i.strip("<>").split("@")[0] for i in ids} == keys  # every email, under its key
    repeats = len(ids) - len(set(ids))
    assert repeats == (1 if point == "after-send" else 0), (repeats, before)


def test_an_unsubscribe_stops_an_email_still_in_the_outbox(tmp_path: Path, smtp_server) -> None:
    """Consent first: the welcome email was decided at the opt-in, the unsubscribe came a
    minute later, before the email left: it is not sent. Another lead's is."""
    port, got = smtp_server
    events = tmp_path / "two.jsonl"
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    lines = [dict(optin, at="2026-03-02T14:30:00Z", lead="gone@example.com"),
             {"type": "email.unsubscribed", "at": "2026-03-02T14:31:00Z", "lead": "gone@example.com",
              "template": "magnets/whitepaper"},
             dict(optin, at="2026-03-02T14:30:00Z", lead="stays@example.com")]
    events.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    proc = run_smtp(tmp_path / "a.db", parse_time("2026-03-02T15:00:00Z"), events, port)
    assert proc.returncode == 0, proc.stderr
    import email
    from email import policy

    to = [email.message_from_bytes(raw, policy=policy.default)["To"] for raw in got]
    assert to and set(to) == {"stays@example.com"}  # its delivery (and what its nurture sends at once)
    assert "for gone@example.com) not sent: the lead unsubscribed after this email was decided" in proc.stderr
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE status = 'suppressed'").fetchone()[0] >= 1


def test_emails_go_out_over_smtp_as_real_messages(quarter, tmp_path: Path, smtp_server) -> None:
    """A real SMTP server on loopback (aiosmtpd) gets one message per send_email action:
    rendered from the plan's template for the lead, with both parts, the sender, a signed
    one-click unsubscribe (RFC 8058) and a Message-ID made of the action's key. A lead
    whose ID would smuggle a header is refused, logged, and the rest go on."""
    import email
    import html as htmlmod
    from email import policy
    from urllib.parse import parse_qs, urlsplit

    from engine.runtime.smtp import verify

    port, got = smtp_server
    path, end, events = quarter
    hostile = tmp_path / "with-hostile.jsonl"
    first = min(events, key=lambda e: e.at)
    bad = {"type": "optin", "at": iso(first.at), "lead": "x@example.com\r\nBcc: all@example.com",
           "magnet": "whitepaper", "profile": {"first_name": "X", "industry": "saas"}}
    hostile.write_text(path.read_text(encoding="utf-8") + json.dumps(bad) + "\n", encoding="utf-8")
    key = "k" * 32
    proc = run_smtp(tmp_path / "a.db", end, hostile, port, tmp_path / "a.jsonl", FNL_SIGNING_KEY=key)
    assert proc.returncode == 0, proc.stderr
    assert "refused: the lead's ID is not one plain email address" in proc.stderr and key not in proc.stderr
    with sqlite3.connect(tmp_path / "a.db") as conn:
        suppressed = {k for (k,) in conn.execute("SELECT key FROM outbox WHERE status = 'suppressed'")}
    # Every email the engine sent, but those to leads that unsubscribed before it left (consent first).
    actions = [a for a in delivered(tmp_path / "a.jsonl") if a["type"] == "send_email"
               and a["idempotency_key"] not in suppressed]
    assert len(got) == len(actions) > 100 and suppressed
    by_id = {}
    for raw in got:
        msg = email.message_from_bytes(raw, policy=policy.default)
        by_id[msg["Message-ID"]] = msg
        assert msg["From"] == "Acme Analytics <hello@acme.example>" or "acme" in msg["From"].lower()
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = msg["List-Unsubscribe"].strip("<>")
        # As the bytes on the wire: one plain line a mail program reads (RFC 8058), not encoded words.
        assert f"\r\nList-Unsubscribe: <{link}>\r\n".encode() in raw.replace(b"\n", b"\r\n").replace(
            b"\r\r\n", b"\r\n")
        assert msg["X-Fnl-Template"] and "/" in msg["X-Fnl-Template"]
        query = parse_qs(urlsplit(link).query)
        assert query["lead"] == [msg["To"]] and query["sender"] == ["hello@acme.example"]
        assert verify(msg["To"], query["sig"][0], key.encode(), "hello@acme.example")
        assert not verify(msg["To"], query["sig"][0], key.encode())  # the sender is signed too
        text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
        assert link in text and link in htmlmod.unescape(html)  # the signed link in both parts
        assert "Bcc" not in msg
    assert set(by_id) == {f"<{a['idempotency_key']}@acme.example>" for a in actions}
    assert not any("x@example.com" in str(m["To"]) for m in by_id.values())


def test_status_and_explain_say_what_the_database_holds(tmp_path: Path) -> None:
    db = tmp_path / "acme.db"
    until = parse_time("2026-06-01T00:00:00Z")
    proc = fnl_run(db, until, REPO / "tests" / "events" / "acme-dana.jsonl", tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    status = subprocess.run([sys.executable, str(REPO / "fnl.py"), "status", ACME, "--db", str(db)],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("acme-b2b on ") and "clock at 2026-06-01T00:00:00Z" in lines[0]
    assert "events 7 (0 not applied yet); actions 18 (0 not delivered" in lines[1]
    assert [line.split() for line in lines if line.split()[:1] == ["sql"]] == [["sql", "1"]]
    assert any("ana.silva@acme.example" in line and "(1 past SLA)" in line for line in lines)
    explain = subprocess.run([sys.executable, str(REPO / "fnl.py"), "explain", "dana@loopwise.example", "--db",
                              str(db)], capture_output=True, text=True, timeout=120, env=clean_env())
    assert explain.returncode == 0, explain.stderr
    text = explain.stdout
    for words in ("2026-03-02T14:30:00Z  optin whitepaper", "→ send magnets/whitepaper", "stage subscriber → mql",
                  "stage mql → sql: sql because visited('pricing', since='mql')", "SLA breached",
                  "now: sql, score", "owner ana.silva@acme.example"):
        assert words in text, (words, text)
    assert text.index("optin whitepaper") < text.index("stage subscriber → mql") < text.index("SLA breached")
    nobody = subprocess.run([sys.executable, str(REPO / "fnl.py"), "explain", "nobody@example.com", "--db", str(db)],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert nobody.returncode == 3 and "no such lead" in nobody.stderr
    missing = subprocess.run([sys.executable, str(REPO / "fnl.py"), "status", ACME, "--db", str(tmp_path / "no.db")],
                             capture_output=True, text=True, timeout=120, env=clean_env())
    assert missing.returncode == 3 and "no such database" in missing.stderr
    assert not (tmp_path / "no.db").exists()


def test_handoffs_go_to_a_webhook_signed_retried_and_parked_when_down(quarter, tmp_path: Path, receiver) -> None:
    from engine.runtime.webhook import TAKES, signature

    url, seen = receiver
    path, end, _ = quarter
    key = "w" * 32
    env = clean_env(FNL_SIGNING_KEY=key, FNL_WEBHOOK_FIRST_WAIT="0.01")
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "a.db"),
                           "--events", str(path), "--until", iso(end), "--actions", f"webhook:{url}/crm",
                           "--actions", f"jsonl:{tmp_path / 'a.jsonl'}"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    wanted = [a for a in delivered(tmp_path / "a.jsonl") if a["type"] in TAKES]
    assert {a["type"] for a in wanted} >= {"handoff", "stage_changed", "sla_breached", "crm_update", "notify"}
    by_key: Dict[str, List[bytes]] = {}
    for where, headers, body in seen:
        assert where == "/crm"
        assert headers["X-Fnl-Signature"] == signature(key.encode(), headers["X-Fnl-Timestamp"], body)
        doc = json.loads(body)
        assert doc["idempotency_key"] == headers["Idempotency-Key"]
        by_key.setdefault(headers["Idempotency-Key"], []).append(body)
    assert set(by_key) == {a["idempotency_key"] for a in wanted}
    assert all(len(bodies) == 3 and len(set(bodies)) == 1 for bodies in by_key.values())  # 503, 503, 200
    # An endpoint that is down: every action tried ATTEMPTS times, then parked, and the run goes on.
    seen.clear()
    down = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "b.db"),
                           "--events", str(REPO / "tests" / "events" / "acme-dana.jsonl"), "--until",
                           "2026-06-01T00:00:00Z", "--actions", f"webhook:{url}/down"], capture_output=True,
                          text=True, timeout=600, env=env)
    assert down.returncode == 0, down.stderr
    assert "did not take it in 5 tries (last: HTTP 500): parked as failed" in down.stderr
    with sqlite3.connect(tmp_path / "b.db") as conn:
        failed = conn.execute("SELECT count(*) FROM outbox WHERE status = 'failed'").fetchone()[0]
    assert failed == len(seen) // 5 > 0


# The schema an fnl of schema 1 made (the runtime's first release), to upgrade from.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, at INTEGER NOT NULL,
                    second INTEGER NOT NULL, lead TEXT NOT NULL, event TEXT NOT NULL,
                    applied INTEGER NOT NULL DEFAULT 0);
CREATE INDEX inbox_pending ON inbox (applied, at);
CREATE TABLE leads (lead TEXT PRIMARY KEY, state TEXT NOT NULL, next_due INTEGER);
CREATE TABLE shared (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, lead TEXT NOT NULL,
                     at INTEGER NOT NULL, step TEXT NOT NULL, action TEXT NOT NULL,
                     status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                     delivered_at INTEGER);
CREATE INDEX outbox_pending ON outbox (status, seq);
CREATE INDEX outbox_lead ON outbox (lead, seq);
"""


def schema_of(path: Path) -> Dict[str, object]:
    """Every table's columns and every index's columns, as SQLite reports them."""
    with sqlite3.connect(path) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                             "'sqlite_%' ORDER BY name")]
        return {t: (conn.execute(f"PRAGMA table_info({t})").fetchall(),
                    sorted((i[2], i[3], conn.execute(f"PRAGMA index_info({i[1]})").fetchall())
                           for i in conn.execute(f"PRAGMA index_list({t})"))) for t in tables}


def test_an_old_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A schema-1 file with a funnel's rows in it comes up to today's schema, the same
    tables and indexes a new database has, with every row kept under its funnel; its
    suppressions cover every sender. A newer schema is refused."""
    from engine.runtime.db import SCHEMA, Database

    fresh = tmp_path / "fresh.db"
    assert fnl_run(fresh, parse_time("2026-06-01T00:00:00Z"), REPO / "tests" / "events" / "acme-dana.jsonl",
                   ).returncode == 0
    path = tmp_path / "old.db"
    with sqlite3.connect(fresh) as new, sqlite3.connect(path) as old:
        old.executescript(SCHEMA_1)
        old.executemany("INSERT INTO meta VALUES (?, ?)", new.execute("SELECT key, value FROM meta"))
        old.executemany("INSERT INTO inbox VALUES (?, ?, ?, ?, ?, ?, ?)", new.execute(
            "SELECT seq, id, at, second, lead, event, applied FROM inbox"))
        old.executemany("INSERT INTO leads VALUES (?, ?, ?)", new.execute("SELECT lead, state, next_due FROM leads"))
        old.executemany("INSERT INTO shared VALUES (1, ?)", new.execute("SELECT state FROM shared"))
        old.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new.execute(
            "SELECT seq, key, lead, at, step, action, status, attempts, delivered_at FROM outbox"))
        old.execute("PRAGMA user_version = 1")
        before = old.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert before > 0
    db = Database(str(path))
    try:
        assert db.version() == SCHEMA >= 3
        db.scope("acme-b2b", "hello@acme.example")
        assert db.counts()["actions"] == before and db.meta("plan")
        assert db.state("dana@loopwise.example") is not None
        assert db.suppressed("nobody@example.com") is None
        with db.transaction():
            db.suppress("old@example.com", "unsubscribed", 0, "*")
        assert db.scope("other", "news@elsewhere.example").suppressed("old@example.com") == "unsubscribed"
    finally:
        db.close()
    assert schema_of(path) == schema_of(fresh)
    again = fnl_run(path, parse_time("2026-06-02T00:00:00Z"), REPO / "tests" / "events" / "acme-dana.jsonl")
    assert again.returncode == 0 and "0 new events (7 already in the inbox)" in again.stderr, again.stderr
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    proc = fnl_run(path, parse_time("2026-06-01T00:00:00Z"))
    assert proc.returncode == 3 and "made by a newer fnl (schema 99" in proc.stderr


def test_forget_erases_a_lead_for_good_and_export_shows_what_is_held(tmp_path: Path, smtp_server) -> None:
    port, got = smtp_server
    db = tmp_path / "a.db"
    events = REPO / "tests" / "events" / "acme-dana.jsonl"
    until = parse_time("2026-06-01T00:00:00Z")
    assert fnl_run(db, until, events, tmp_path / "out.jsonl").returncode == 0

    def fnl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "fnl.py"), *args], capture_output=True, text=True,
                              timeout=120, env=clean_env(FNL_SIGNING_KEY="s" * 32))

    held = json.loads(fnl("export", "dana@loopwise.example", "--db", str(db)).stdout)
    acme = held["funnels"]["acme-b2b"]
    assert acme["state"]["stage"] == "sql" and len(acme["events"]) == 7 and len(acme["actions"]) == 18
    assert held["suppressed"] == {}
    forgot = fnl("forget", "dana@loopwise.example", "--db", str(db))
    assert forgot.returncode == 0 and "26 rows erased" in forgot.stderr
    after = json.loads(fnl("export", "dana@loopwise.example", "--db", str(db)).stdout)
    assert after == {"lead": "dana@loopwise.example", "funnels": {}, "suppressed": {"*": "forgotten"}}
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    assert b"loopwise" not in db.read_bytes(), "the lead's address is still in the database file"
    # The same log again: the events' IDs are kept, so nothing brings the lead back.
    again = fnl_run(db, until, events)
    assert again.returncode == 0 and "0 new events (7 already in the inbox)" in again.stderr
    # A new opt-in from the address makes a lead again, but no email goes to it.
    new = tmp_path / "new.jsonl"
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "D", "industry": "saas"}}
    new.write_text(json.dumps(dict(optin, at="2026-06-02T10:00:00Z", lead="dana@loopwise.example")) + "\n"
                   + json.dumps(dict(optin, at="2026-06-02T10:00:00Z", lead="other@example.com")) + "\n",
                   encoding="utf-8")
    proc = run_smtp(db, parse_time("2026-06-03T00:00:00Z"), new, port)
    assert proc.returncode == 0, proc.stderr
    import email
    from email import policy

    assert {email.message_from_bytes(m, policy=policy.default)["To"] for m in got} == {"other@example.com"}
    assert "not sent: the address is on the suppression list (forgotten)" in proc.stderr


def test_an_unsubscribe_puts_the_address_on_the_suppression_list(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "A", "industry": "saas"}}
    events.write_text("".join(json.dumps(x) + "\n" for x in (
        dict(optin, at="2026-03-02T14:30:00Z", lead="Gone@Example.com"),
        {"type": "email.unsubscribed", "at": "2026-03-03T09:00:00Z", "lead": "Gone@Example.com",
         "template": "magnets/whitepaper"},
        dict(optin, at="2026-03-02T14:30:00Z", lead="stays@example.com"))), encoding="utf-8")
    db = tmp_path / "a.db"
    assert fnl_run(db, parse_time("2026-03-04T00:00:00Z"), events).returncode == 0
    from engine.runtime.db import Database

    store = Database(str(db)).scope("acme-b2b", "hello@acme.example")
    try:
        assert store.suppressed("gone@example.com") == "unsubscribed"  # the address, in any case
        assert store.suppressed("stays@example.com") is None
    finally:
        store.close()


def test_the_wall_clock_sleeps_until_the_next_due_step(tmp_path: Path) -> None:
    """On the wall clock (time given to it here, a real database), the runtime applies what
    is due, sleeps until the next step falls due rather than minute by minute, and ends
    with the actions the virtual clock gives for the same events and time."""
    from engine.runtime.db import Database
    from engine.runtime.loop import Jsonl, advance, deliver, run_wall
    from engine.trace import scan_events

    plan = plan_for(ACME)
    events: List[Event] = []
    source = REPO / "tests" / "events" / "acme-dana.jsonl"
    assert not scan_events(source, str(source), keep=events).problems
    until = parse_time("2026-04-15T00:00:00Z")
    virtual_lines: List[str] = []
    virtual = Database(str(tmp_path / "virtual.db")).scope(plan.funnel, plan.sender.from_)
    virtual.accept(events)
    advance(virtual, plan, until)
    deliver(virtual, [Jsonl(virtual_lines.append)])
    virtual.close()

    clock = [float(min(e.at for e in events) * 60)]
    slept: List[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    notes: List[str] = []
    wall_lines: List[str] = []
    wall = Database(str(tmp_path / "wall.db")).scope(plan.funnel, plan.sender.from_)
    wall.accept(events)
    rounds = run_wall(wall, plan, [Jsonl(wall_lines.append)], until=until, say=notes.append, poll=7 * 86400.0,
                      now=lambda: clock[0], sleep=sleep)
    wall.close()
    assert wall_lines == virtual_lines and len(wall_lines) > 5
    minutes = (until * 60 - min(e.at for e in events) * 60) / 60
    assert rounds < 60 < minutes / 100  # it slept from due step to due step, not minute by minute
    assert max(slept) > 3600 and any(n.startswith("sleeping until 2026-") for n in notes)
    assert notes[-1] == "the clock reached 2026-04-15T00:00:00Z: stopped"


def test_the_wall_clock_takes_new_events_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`fnl run --clock wall` as a real process: an opt-in stamped a minute ago is applied
    and its email delivered at once; an event stored while it runs (as fnl serve stores
    them) is applied at the next look; SIGTERM ends it cleanly."""
    from engine.runtime.db import Database
    from engine.state import event_from_json

    now = int(time.time() // 60) - 1
    events = tmp_path / "now.jsonl"
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    events.write_text(json.dumps(dict(optin, at=iso(now), lead="ana@example.com")) + "\n", encoding="utf-8")
    db, out = tmp_path / "wall.db", tmp_path / "out.jsonl"

    def written(path: Path) -> List[Dict]:  # the lines written whole so far
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return [json.loads(line) for line in text.split("\n")[:-1]]
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--clock", "wall",
                             "--poll", "0.2", "--events", str(events), "--actions", f"jsonl:{out}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and any(
                a["type"] == "send_email" for a in written(out))):
            time.sleep(0.1)
        first = written(out)
        assert {a["type"] for a in first} >= {"send_email"} and {a["lead"] for a in first} == {"ana@example.com"}
        plan = plan_for(ACME)
        store = Database(str(db)).scope(plan.funnel, plan.sender.from_)
        store.accept([event_from_json(dict(optin, at=iso(now), lead="bo@example.com"))])
        store.close()
        def bo_emailed() -> bool:
            return any(a["lead"] == "bo@example.com" and a["type"] == "send_email" for a in written(out))

        while time.monotonic() < deadline and not bo_emailed():
            time.sleep(0.1)
        assert bo_emailed()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped (SIGTERM)" in err and "Traceback" not in err


def test_bad_lines_are_refused_one_by_one_and_the_rest_go_on(tmp_path: Path) -> None:
    """Malformed, oversized and hostile lines in --events (a file, or standard input) are
    each refused with one located line; the good events around them are applied; exit 1."""
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "{{ 7 * 7 }}", "industry": "saas"}}
    good = [dict(optin, at="2026-03-02T14:30:00Z", lead="ana@example.com"),
            dict(optin, at="2026-03-02T15:30:00Z", lead="bo@example.com")]
    lines = [json.dumps(good[0]),
             '{"type": "optin", "at": "2026-03-02T14:31:00Z", "lead": 7}',  # a wrong type
             '{"type": "email.opened", "at": "yesterday", "lead": "ana@example.com"}',
             '{"type": "optin", "at": ',  # cut off
             "x" * (1024 * 1024 + 10),  # longer than a line may be
             json.dumps(good[1])]
    events = tmp_path / "mixed.jsonl"
    events.write_bytes(("\n".join(lines) + "\n").encode() + b'{"type": "optin", "lead": "\xff"}\n')
    for source in (str(events), "-"):
        db, out = tmp_path / f"{len(source)}.db", tmp_path / f"{len(source)}.jsonl"
        args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until",
                "2026-03-03T00:00:00Z", "--events", source, "--actions", f"jsonl:{out}"]
        proc = subprocess.run(args, input=events.read_bytes(), capture_output=True, timeout=300, env=clean_env())
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        refusals = [line for line in err.splitlines() if ": refused: " in line]
        assert [int(line.split(":")[2]) for line in refusals] == [2, 3, 4, 5, 7], err
        name = "<stdin>" if source == "-" else str(events)
        assert all(line.startswith(f"fnl: {name}:") for line in refusals)
        assert "2 new events" in err and "5 lines of --events refused" in err and "Traceback" not in err
        assert {a["lead"] for a in delivered(out) if a["type"] == "send_email"} == {"ana@example.com", "bo@example.com"}


def test_the_wall_clock_reads_standard_input_as_it_comes(tmp_path: Path) -> None:
    now = int(time.time() // 60) - 1
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    db, out = tmp_path / "wall.db", tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--clock", "wall",
                             "--poll", "0.2", "--events", "-", "--actions", f"jsonl:{out}"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())

    def emailed(lead: str) -> bool:
        text = out.read_text(encoding="utf-8") if out.exists() else ""
        return any(json.loads(line)["lead"] == lead and json.loads(line)["type"] == "send_email"
                   for line in text.split("\n")[:-1])

    try:
        for lead in ("ana@example.com", "bo@example.com"):
            proc.stdin.write(json.dumps(dict(optin, at=iso(now), lead=lead)).encode() + b"\n")
            proc.stdin.write(b'{"type": "optin"}\n')  # refused, and the stream goes on
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not emailed(lead):
                time.sleep(0.1)
            assert emailed(lead), lead
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert text.count("<stdin>:") == 2 and "refused" in text and "stopped (SIGTERM)" in text
    assert proc.returncode == 1 and "Traceback" not in text


def test_an_unsubscribe_waiting_in_the_inbox_stops_email_before_the_clock_reaches_it(tmp_path: Path,
                                                                                     smtp_server) -> None:
    """A one-click unsubscribe is stored at the real time, which a virtual clock has not
    reached: no email goes to the address while it waits, consent first."""
    port, got = smtp_server
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(x) + "\n" for x in (
        dict(optin, at="2026-03-02T14:30:00Z", lead="ana@example.com"),
        {"type": "email.unsubscribed", "at": "2026-11-30T09:00:00Z", "lead": "Ana@Example.com",
         "template": "magnets/whitepaper"},
        dict(optin, at="2026-03-02T14:30:00Z", lead="bo@example.com"))), encoding="utf-8")
    proc = run_smtp(tmp_path / "a.db", parse_time("2026-03-03T00:00:00Z"), events, port)
    assert proc.returncode == 0, proc.stderr
    import email
    from email import policy

    assert {email.message_from_bytes(m, policy=policy.default)["To"] for m in got} == {"bo@example.com"}
    assert "not sent: the address's unsubscribe is in the inbox, not applied yet" in proc.stderr


def test_actions_no_adapter_takes_are_said_and_a_server_down_is_named(tmp_path: Path) -> None:
    events = REPO / "tests" / "events" / "acme-dana.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "a.db"),
                           "--events", str(events), "--until", "2026-06-01T00:00:00Z", "--actions",
                           "smtp://127.0.0.1:9"], capture_output=True, text=True, timeout=300,
                          env=clean_env(FNL_SIGNING_KEY="s" * 32))
    assert proc.returncode == 3 and "delivery stopped: smtp://127.0.0.1:9:" in proc.stderr, proc.stderr
    no_key = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "b.db"),
                             "--events", str(events), "--until", "2026-06-01T00:00:00Z", "--actions",
                             "smtp://127.0.0.1:9"], capture_output=True, text=True, timeout=300, env=clean_env())
    assert no_key.returncode == 3 and "FNL_SIGNING_KEY" in no_key.stderr
    from engine.runtime.db import Database

    store = Database(str(tmp_path / "b.db")).scope("acme-b2b")
    try:  # nothing stored or applied before the missing key stopped it
        assert store.counts()["events"] == 0 and store.counts()["actions"] == 0
    finally:
        store.close()
    quiet = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "c.db"),
                            "--events", str(events), "--until", "2026-06-01T00:00:00Z", "--actions",
                            "webhook:http://127.0.0.1:9/hook"], capture_output=True, text=True, timeout=300,
                           env=clean_env(FNL_SIGNING_KEY="s" * 32, FNL_WEBHOOK_FIRST_WAIT="0.01"))
    assert quiet.returncode == 0, quiet.stderr
    assert "went to no adapter (send_email" in quiet.stderr and "kept in the outbox only" in quiet.stderr


def test_two_runs_on_one_sqlite_file_are_refused(tmp_path: Path) -> None:
    """A wall-clock run holds the database; a second fnl run on it is refused in one line
    (each would write back states the other changed), and runs once the first ends."""
    db = tmp_path / "a.db"
    first = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--clock", "wall",
                              "--poll", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Path(str(db) + "-run.lock").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        second = fnl_run(db, parse_time("2026-06-01T00:00:00Z"))
        assert second.returncode == 3 and "another fnl run works on this database now" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert fnl_run(db, parse_time("2026-06-01T00:00:00Z")).returncode == 0


def test_a_crash_after_a_send_with_email_and_webhooks_repeats_only_the_one_in_flight(quarter, tmp_path: Path,
                                                                                     smtp_server, receiver) -> None:
    """Killed right after an adapter took an action (a real SMTP server and a real HTTP
    receiver, both on loopback), then started again: every email and every webhook action
    arrived, and exactly one of them twice, under the same key."""
    from engine.runtime.webhook import TAKES

    path, end, _ = quarter
    port, got = smtp_server
    url, seen = receiver
    env = clean_env(FNL_SIGNING_KEY="s" * 32, FNL_WEBHOOK_FIRST_WAIT="0.01")
    args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "a.db"), "--until", iso(end),
            "--events", str(path), "--actions", f"smtp://127.0.0.1:{port}", "--actions", f"webhook:{url}/crm"]
    crashed = subprocess.run(args, capture_output=True, text=True, timeout=600,
                             env={**env, "FNL_CRASH_AT": "after-send"})
    assert crashed.returncode == -9, crashed.stderr
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(tmp_path / "a.db") as conn:
        rows = conn.execute("SELECT key, action, status FROM outbox").fetchall()
    emails = {k for k, a, s in rows if json.loads(a)["type"] == "send_email" and s != "suppressed"}
    hooks = {k for k, a, _ in rows if json.loads(a)["type"] in TAKES}
    assert emails and hooks
    sent = [i.strip("<>").split("@")[0] for i in message_ids(got)]
    answered: Dict[str, int] = {}  # 200s per key: the receiver answers each key's first two tries 503
    for _, headers, _ in seen:
        key = headers["Idempotency-Key"]
        answered[key] = answered.get(key, 0) + 1
    delivered_hooks = {k: n - 2 for k, n in answered.items() if n > 2}
    assert set(sent) == emails and set(delivered_hooks) == hooks
    repeats = (len(sent) - len(set(sent))) + sum(n - 1 for n in delivered_hooks.values())
    assert repeats == 1


def test_a_long_stretch_of_the_clock_alone_commits_in_parts_with_the_same_result(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The clock's steps with no event between them commit every MAX_STEPS_HELD steps (a
    bounded transaction after downtime), and the outcome is the one a single commit gives."""
    from engine.runtime import loop
    from engine.runtime.db import Database
    from engine.trace import scan_events

    plan = plan_for(ACME)
    events: List[Event] = []
    source = REPO / "tests" / "events" / "acme-dana.jsonl"
    assert not scan_events(source, str(source), keep=events).problems
    early = [e for e in events if e.at < parse_time("2026-03-04T00:00:00Z")]  # then only the clock runs
    assert early and len(early) < len(events)
    got = []
    commits: List[int] = []  # the loop's commits are made by a thread of their own, on its own connection
    real = Database.write
    monkeypatch.setattr(Database, "write", lambda self, writes: (commits.append(1), real(self, writes))[1])
    for held in (3, loop.MAX_STEPS_HELD):
        monkeypatch.setattr(loop, "MAX_STEPS_HELD", held)
        db = Database(str(tmp_path / f"{held}.db")).scope(plan.funnel, plan.sender.from_)
        db.accept(early)
        commits.clear()
        loop.advance(db, plan, parse_time("2026-06-01T00:00:00Z"))
        got.append((db.conn.execute("SELECT key, action FROM outbox ORDER BY seq").fetchall(), list(db.states()),
                    len(commits)))
        db.close()
    assert got[0][:2] == got[1][:2] and len(got[0][0]) > 5
    assert got[0][2] > got[1][2]  # more, smaller transactions
