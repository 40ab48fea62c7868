"""`fnl run` on a real PostgreSQL 16 server (the `pgserver` package, started in a fixture):
one worker gives exactly the engine's actions for a simulated acme quarter; two workers at
once give the same actions under the same keys, no lead advanced twice; and two workers
delivering to a real SMTP server on loopback, one of them killed (SIGKILL) and started
again, deliver every email, a repeat only with the Message-ID of the one before it."""
from __future__ import annotations

import email
import json
import random
import signal
import subprocess
import sys
import time
from email import policy
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from conftest import REPO, clean_env
from engine import drive as dr
from engine.pipeline import plan_for
from engine.state import iso
from test_deploy import world  # noqa: F401 - the plans A and B of the deploy tests
from test_runtime import ACME, quarter  # noqa: F401 - the quarter of events the SQLite tests replay

pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed (the test extra)")
psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the test extra)")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """A PostgreSQL server of its own; each call gives the URL of a new, empty database."""
    import os
    import shutil
    import tempfile

    # A short path the server's own user can reach (run as root, pgserver starts PostgreSQL as
    # another user; a socket's path must be short).
    folder = tempfile.mkdtemp(prefix="fnl-pg-")
    os.chmod(folder, 0o755)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    base = server.get_uri()
    made = [0]

    def fresh() -> str:
        made[0] += 1
        name = f"fnl_{made[0]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return base.replace("/postgres?", f"/{name}?")

    try:
        yield fresh
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def run_args(url: str, end: int, events: Path, *actions: str) -> List[str]:
    return [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", url, "--until", iso(end), "--events",
            str(events), *[a for action in actions for a in ("--actions", action)]]


def outbox(url: str) -> List[Tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT key, lead, action FROM outbox ORDER BY seq").fetchall()


def expected_actions(events, end) -> List[Dict]:
    plan = plan_for(ACME)
    return [json.loads(json.dumps(a.to_json(), default=str)) for item in dr.drive(plan, events, until=end)
            for a in item.result.actions if a.type != "left_out"]


def per_lead(actions: List[Dict]) -> Dict[str, List[Dict]]:
    leads: Dict[str, List[Dict]] = {}
    for action in actions:
        leads.setdefault(action["lead"], []).append(action)
    return leads


def test_one_worker_gives_the_engines_actions(quarter, postgres, tmp_path: Path) -> None:  # noqa: F811
    path, end, events = quarter
    url, out = postgres(), tmp_path / "actions.jsonl"
    proc = subprocess.run(run_args(url, end, path, f"jsonl:{out}"), capture_output=True, text=True, timeout=600,
                          env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert f"{len(events):,} new events" in proc.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    got = [{k: v for k, v in a.items() if k != "idempotency_key"} for a in lines]
    expected = expected_actions(events, end)
    assert len(got) == len(expected) > 500
    # Each lead's actions in the engine's order, and the same owners from the round-robin.
    assert per_lead(got) == per_lead(expected)
    assert sorted(json.dumps(a, sort_keys=True) for a in got) == sorted(json.dumps(a, sort_keys=True)
                                                                       for a in expected)
    assert {a["type"] for a in got} >= {"handoff", "sla_breached", "send_email"}
    # The keys are the ones a SQLite run gives the same events.
    sqlite_db = tmp_path / "same.db"
    assert subprocess.run(run_args(str(sqlite_db), end, path, f"jsonl:{tmp_path / 's.jsonl'}"),
                          capture_output=True, timeout=600, env=clean_env()).returncode == 0
    import sqlite3

    with sqlite3.connect(sqlite_db) as conn:
        assert sorted(conn.execute("SELECT key, lead, action FROM outbox").fetchall()) == sorted(outbox(url))
    again = subprocess.run(run_args(url, end, path), capture_output=True, text=True, timeout=600, env=clean_env())
    assert again.returncode == 0 and f"0 new events ({len(events):,} already in the inbox); applied 0" in again.stderr


def test_two_workers_give_the_same_actions_under_the_same_keys(quarter, postgres) -> None:  # noqa: F811
    path, end, events = quarter
    one, two = postgres(), postgres()
    assert subprocess.run(run_args(one, end, path), capture_output=True, timeout=600,
                          env=clean_env()).returncode == 0
    procs = [subprocess.Popen(run_args(two, end, path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=clean_env()) for _ in range(2)]
    errors = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    applied = [int(e.split("applied ")[1].split()[0].replace(",", "")) for e in errors]
    assert sum(applied) == len(events)  # every event applied once, by one worker or the other
    assert sorted(outbox(one)) == sorted(outbox(two))
    with psycopg.connect(two) as conn:
        assert conn.execute("SELECT count(*) FROM inbox WHERE applied = 0").fetchone()[0] == 0


def test_two_workers_one_killed_deliver_every_email_once_or_as_a_recognisable_repeat(
        quarter, postgres, smtp_server, receiver) -> None:  # noqa: F811 - quarter, imported
    """Two workers against a real SMTP server and a real HTTP receiver, one killed twice
    somewhere in applying or delivering: every email and every webhook action arrives, a
    repeat only for what was in flight, under the same key."""
    from engine.runtime.webhook import TAKES

    path, end, _ = quarter
    port, got = smtp_server
    hook, seen = receiver
    reference = postgres()
    env = clean_env(FNL_SIGNING_KEY="s" * 32, FNL_WEBHOOK_FIRST_WAIT="0.01")
    assert subprocess.run(run_args(reference, end, path), capture_output=True, timeout=600,
                          env=env).returncode == 0
    expected = {key for key, _, action in outbox(reference) if json.loads(action)["type"] == "send_email"}
    url = postgres()
    rng = random.Random(5)
    smtp = f"smtp://127.0.0.1:{port}"
    for round_ in range(3):
        workers = [subprocess.Popen(run_args(url, end, path, smtp, f"webhook:{hook}/crm"), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=env) for _ in range(2)]
        if round_ < 2:  # one of them dies somewhere in applying or delivering
            time.sleep(rng.uniform(0.5, 2.5))
            if workers[0].poll() is None:
                workers[0].send_signal(signal.SIGKILL)
        for w in workers:
            w.communicate(timeout=600)
        assert workers[1].returncode == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0] == 0
    ids = [email.message_from_bytes(raw, policy=policy.default)["Message-ID"].strip("<>").split("@")[0]
           for raw in got]
    sent = {key for key, _, action in outbox(url) if json.loads(action)["type"] == "send_email"}
    with psycopg.connect(url) as conn:
        parked = {k for (k,) in conn.execute("SELECT key FROM outbox WHERE status = 'suppressed'")}
    assert sent == expected and set(ids) == expected - parked  # every email, under its key
    answered: Dict[str, int] = {}  # 200s per key: the receiver answers each key's first two tries 503
    for _, headers, _ in seen:
        answered[headers["Idempotency-Key"]] = answered.get(headers["Idempotency-Key"], 0) + 1
    hooks = {key for key, _, action in outbox(url) if json.loads(action)["type"] in TAKES}
    assert hooks and {k for k, n in answered.items() if n > 2} == hooks  # every webhook action
    repeats = len(ids) - len(set(ids)) + sum(n - 3 for n in answered.values() if n > 3)
    assert repeats <= 2  # a repeat only for what was in flight when the worker died (twice)


def test_a_bad_postgres_url_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db",
                           f"postgresql://nobody:secret@/nothing?host={tmp_path}", "--until",
                           "2026-06-01T00:00:00Z"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode == 3, proc.stderr
    assert "cannot connect" in proc.stderr and "secret" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_a_new_plan_deploys_on_postgres_as_on_sqlite(world, postgres, tmp_path: Path) -> None:  # noqa: F811
    """Plan A to the middle of the quarter, then plan B (a step and a sequence removed, a
    step added) to its end: the same actions under the same keys on both databases."""
    import sqlite3

    early = world.root / "early.jsonl"
    url, lite = postgres(), tmp_path / "lite.db"
    for db in (url, str(lite)):
        for funnel, events, until in ((world.a, early, world.middle), (world.b, world.late, world.end)):
            proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", str(funnel), "--db", db, "--events",
                                   str(events), "--until", iso(until), "--actions", f"jsonl:{tmp_path / 'x.jsonl'}"],
                                  capture_output=True, text=True, timeout=600, env=clean_env())
            assert proc.returncode == 0, proc.stderr
        assert "deployed" in proc.stderr
    with sqlite3.connect(lite) as conn:
        expected = sorted(conn.execute("SELECT key, lead, action FROM outbox").fetchall())
    assert sorted(outbox(url)) == expected and len(expected) > 500


def test_a_lead_with_no_state_yet_is_not_stranded(postgres, tmp_path: Path) -> None:
    """A lead whose first event leaves no state (an email event for an address fnl never
    saw) and whose opt-in comes after the horizon: the next run applies the opt-in, as on
    SQLite."""
    optin = {"type": "optin", "magnet": "whitepaper", "profile": {"first_name": "Ana", "industry": "saas"}}
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(x) + "\n" for x in (
        {"type": "email.delivered", "at": "2026-03-02T09:00:00Z", "lead": "ana@example.com",
         "template": "magnets/whitepaper"},
        dict(optin, at="2026-03-05T14:30:00Z", lead="ana@example.com"))), encoding="utf-8")
    got = {}
    for name, db in (("postgres", postgres()), ("sqlite", str(tmp_path / "a.db"))):
        for until in ("2026-03-03T00:00:00Z", "2026-03-06T00:00:00Z"):
            proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", db, "--events",
                                   str(events), "--until", until, "--actions", f"jsonl:{tmp_path / name}.jsonl"],
                                  capture_output=True, text=True, timeout=300, env=clean_env())
            assert proc.returncode == 0, proc.stderr
        got[name] = sorted((tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())
    assert got["postgres"] == got["sqlite"] and any('"send_email"' in line for line in got["sqlite"])


def test_leads_are_ordered_by_code_point_as_the_engine_orders_them(postgres) -> None:
    """The workers take the front of the (minute, lead) order in SQL: lead IDs compare as
    Python compares them, whatever the server's locale."""
    from engine.runtime.db import Database

    db = Database(postgres()).scope("f")
    try:
        leads = ["adam@x.example", "Zed@x.example", "émile@x.example", "_bot@x.example", "b@x.example"]
        with db.transaction():
            for lead in leads:
                db.conn.execute("INSERT INTO leads (funnel, lead, next_at) VALUES ('f', ?, 5)", (lead,))
        got = [r[0] for r in db.conn.execute("SELECT lead FROM leads WHERE funnel = 'f' ORDER BY next_at, lead")]
        assert got == sorted(leads)
    finally:
        db.close()
