"""`fnl run --commit-every 1`: each event durable before the next, through the journal.

A commit of one event writes one short row of the `journal` table (`Database.log`), folded
into the tables every few hundred rows, at the end of the run, and whenever the file is
opened after a crash (`Database.fold`). These tests hold that this changes nothing a run
leaves behind: the same outbox (keys, actions, order), the same states, inbox flags,
suppressions and shared state as committing 500 events at a time; that a run killed just
after a journal commit loses nothing, whoever opens the file next; and that folding keeps
each funnel's writes its own and in order."""
from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import REPO, clean_env
from engine.drive import drive, young_collections
from engine.pipeline import plan_for
from engine.runtime import loop
from engine.runtime.db import Database, Writes
from engine.state import Action, LeadState, iso
from test_runtime import ACME, fnl_run, outbox, quarter  # noqa: F401  (quarter: the module's fixture)


def tables(db: Path) -> Dict[str, List[tuple]]:
    """Everything a run leaves in the tables the journal folds into."""
    with sqlite3.connect(db) as conn:
        return {
            "outbox": conn.execute("SELECT seq, key, funnel, lead, at, step, action, status FROM outbox "
                                   "ORDER BY seq").fetchall(),
            "leads": conn.execute("SELECT funnel, lead, state, next_due, next_at FROM leads ORDER BY lead").fetchall(),
            "inbox": conn.execute("SELECT seq, id, applied FROM inbox ORDER BY seq").fetchall(),
            "suppressions": conn.execute("SELECT * FROM suppressions ORDER BY sender, address").fetchall(),
            "shared": conn.execute("SELECT * FROM shared").fetchall(),
            "journal": conn.execute("SELECT * FROM journal").fetchall(),
        }


def test_a_commit_per_event_leaves_what_a_commit_per_batch_leaves(quarter, tmp_path: Path) -> None:  # noqa: F811
    path, end, events = quarter
    batched, single = tmp_path / "batched.db", tmp_path / "single.db"
    assert fnl_run(batched, end, path).returncode == 0
    proc = subprocess.run(
        [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(single), "--until", iso(end), "--events",
         str(path), "--commit-every", "1", "--actions", f"jsonl:{tmp_path / 'single.jsonl'}"],
        capture_output=True, text=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    want, got = tables(batched), tables(single)
    assert len(want["outbox"]) > 500 and got["journal"] == []
    for table in ("outbox", "leads", "inbox", "suppressions", "shared"):
        assert got[table] == want[table], table
    assert {status for *_, status in got["outbox"]} == {"delivered"}
    assert all(applied == 1 for _, _, applied in got["inbox"])


def test_killed_after_a_journal_commit_the_next_opening_folds_it(quarter, tmp_path: Path) -> None:  # noqa: F811
    path, end, _ = quarter
    db = tmp_path / "acme.db"
    args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until", iso(end), "--events",
            str(path), "--commit-every", "1"]
    crashed = subprocess.run(args, capture_output=True, text=True, timeout=600,
                             env=clean_env(FNL_CRASH_AT="after-commit"))
    assert crashed.returncode == -9, crashed.stderr
    with sqlite3.connect(db) as conn:  # the first event's commit is in the journal, not yet in the tables
        (row,) = conn.execute("SELECT writes FROM journal").fetchall()
        assert conn.execute("SELECT count(*) FROM inbox WHERE applied = 1").fetchone() == (0,)
        in_tables = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    logged = Writes.from_json(row[0])
    assert len(logged.seqs) == 1 and logged.leads
    # A reader (fnl status) opening the file folds the journal first: it sees the commit.
    status = subprocess.run([sys.executable, str(REPO / "fnl.py"), "status", ACME, "--db", str(db)],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert status.returncode == 0, status.stderr
    folded = tables(db)
    assert folded["journal"] == []
    assert [seq for seq, _, applied in folded["inbox"] if applied] == logged.seqs
    assert [row[1] for row in folded["outbox"]] == [key for key, *_ in logged.outbox]
    assert len(folded["outbox"]) == in_tables + len(logged.outbox)
    # The run goes on from there to what an uninterrupted one leaves.
    assert subprocess.run(args, capture_output=True, text=True, timeout=600, env=clean_env()).returncode == 0
    whole = tmp_path / "whole.db"
    assert fnl_run(whole, end, path).returncode == 0
    assert outbox(db) == outbox(whole)
    assert tables(db)["leads"] == tables(whole)["leads"]


def test_folding_keeps_each_funnels_writes_its_own_and_in_order(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "two.db"))
    a = db.scope("a", "a@example.com").writes()
    state = LeadState(lead="dana@example.com", profile=(), stage="subscriber", entered=(("subscriber", 5),),
                      score=0.0, score_at=5, consent="explicit", consent_at=5, source="form", basis="consent")
    a.save_all([("dana@example.com", state, 60)])
    a.record_all([("k1", "event:e1", Action("send_email", 5, "dana@example.com", (("template", "t"),)))])
    db.log(a)
    b = db.scope("b", "b@example.com").writes()
    b.save_all([("dana@example.com", state, None)]).suppress("dana@example.com", "unsubscribed", 7)
    b.record_all([("k2", "event:e2", Action("stage_changed", 7, "dana@example.com", ()))])
    db.log(b)
    later = db.scope("a", "a@example.com").writes()
    later.save_all([("dana@example.com", state, 120)])
    later.record_all([("k3", "clock:60:dana@example.com", Action("send_email", 60, "dana@example.com", ()))])
    db.log(later)
    assert db.conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)  # not yet in the tables
    assert db.fold() == 3 and db.fold() == 0
    rows = db.conn.execute("SELECT key, funnel, step FROM outbox ORDER BY seq").fetchall()
    assert rows == [("k1", "a", "event:e1"), ("k2", "b", "event:e2"), ("k3", "a", "clock:60:dana@example.com")]
    due = dict(db.conn.execute("SELECT funnel, next_due FROM leads").fetchall())
    assert due == {"a": 120, "b": None}  # a's later state wins; b's is b's
    senders = db.conn.execute("SELECT sender FROM suppressions").fetchall()
    assert senders == [("b@example.com",)]  # under the sender of the funnel it came through
    assert json.loads(db.conn.execute("SELECT state FROM leads WHERE funnel = 'a'").fetchone()[0])["lead"] == \
        "dana@example.com"
    db.close()


def test_the_engine_loop_makes_no_reference_cycles_and_leaves_the_collector_as_it_was(quarter) -> None:  # noqa: F811
    """`young_collections` skips Python's full collections inside the engine loop: sound
    only while the engine makes no garbage that reference counting cannot free."""
    _, end, events = quarter
    plan = plan_for(ACME)
    gc.collect()
    assert gc.isenabled()
    gc.disable()
    try:
        steps = sum(1 for _ in drive(plan, events, until=end))
        assert steps > len(events)
        assert gc.collect() == 0  # nothing unreachable that only the collector could free
    finally:
        gc.enable()
    with young_collections():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with young_collections():
        pass
    assert not gc.isenabled()  # left as it was found
    gc.enable()


def test_pending_events_are_read_in_the_engines_order_a_page_at_a_time(tmp_path: Path) -> None:
    """`Database.in_order` pages by (minute, lead, second, arrival): the order
    `drive.event_order` gives the same events, ties across a page's edge included."""
    import random

    from engine.drive import event_order
    from engine.state import Event

    rng = random.Random(5)
    events = []
    for i in range(400):  # few minutes, leads and seconds: many ties, several pages of 7
        events.append(Event("email.opened", 100 + rng.randrange(4), rng.choice(["b", "a", "ä", "A", "b2"]) + "@x.io",
                            profile={"n": i}, second=rng.randrange(3)))
    db = Database(str(tmp_path / "order.db")).scope("f", "f@example.com")
    assert db.accept(events) == (400, 0)
    got = [event for _, _, event in db.in_order(102, page=7)]
    want = [e for e in event_order(events) if e.at <= 102]
    assert got == want and len(want) > 100
    seqs = [seq for seq, _, _ in db.in_order(103, page=7)]
    assert len(seqs) == len(set(seqs)) == 400
    db.close()


def test_a_waiting_opt_out_is_found_without_reading_the_whole_inbox(tmp_path: Path) -> None:
    """`opt_out_waiting` runs before every email: its work must not grow with the pending
    inbox (the partial index `inbox_opt_out`), and it still finds a waiting unsubscribe
    whatever the address's case."""
    from engine.state import Event

    db = Database(str(tmp_path / "inbox.db")).scope("f", "f@example.com")

    def work(address: str) -> int:  # SQLite virtual machine steps, counted in hundreds
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        db.conn.set_progress_handler(count, 100)
        try:
            db.opt_out_waiting(address)
        finally:
            db.conn.set_progress_handler(None, 100)
        return steps[0]

    def fill(start: int, n: int) -> None:
        db.accept([Event("email.opened", 1000 + i, f"lead{i}@x.io", template="t") for i in range(start, start + n)])

    fill(0, 200)
    db.accept([Event("email.unsubscribed", 5000, "Leaving@X.io")])
    assert db.opt_out_waiting("leaving@x.io") == "unsubscribe"
    assert db.opt_out_waiting("lead3@x.io") is None
    few = work("lead3@x.io")
    fill(200, 20_000)
    many = work("lead3@x.io")
    assert many <= few + 2, (few, many)  # a scan of 100 times the rows would take about 100 times the steps
    assert db.opt_out_waiting("LEAVING@x.io") == "unsubscribe"
    db.close()


def test_a_row_changed_outside_fnl_is_said_in_one_line(tmp_path: Path) -> None:
    """A journal row, a lead's state or an inbox event that no longer reads (edited by hand,
    another program) stops the command with the row named: exit 3, no traceback, nothing
    called a bug in fnl."""
    db = tmp_path / "acme.db"
    events = REPO / "tests" / "events" / "acme-dana.jsonl"
    base = [sys.executable, str(REPO / "fnl.py")]
    first = subprocess.run(base + ["run", ACME, "--db", str(db), "--events", str(events), "--until",
                                   "2026-03-10T00:00:00Z"],
                           capture_output=True, text=True, timeout=120, env=clean_env())
    assert first.returncode == 0, first.stderr
    run_on = base + ["run", ACME, "--db", str(db), "--until", "2026-06-01T00:00:00Z"]
    damages = [("INSERT INTO journal (writes) VALUES ('[\"acme-b2b\", 1')", "journal row 1 is damaged"),
               ("UPDATE leads SET state = '{\"format\": 1, \"kind\": \"lead\"}'",
                "the stored state of lead 'dana@loopwise.example' is damaged (keys missing"),
               ("UPDATE inbox SET event = '{\"type\": \"email.opened\"}' WHERE applied = 0", "is damaged (the event")]
    for sql, said in damages:
        copy = tmp_path / f"copy{len(said)}.db"
        copy.write_bytes(db.read_bytes())
        with sqlite3.connect(copy) as conn:
            assert conn.execute(sql).rowcount >= 1, sql
        proc = subprocess.run([*run_on[:4], "--db", str(copy), *run_on[6:]], capture_output=True, text=True,
                              timeout=120, env=clean_env())
        assert proc.returncode == 3, (sql, proc.stderr)
        assert said in proc.stderr and "restore the database from a backup" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "bug in fnl" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


def advanced(quarter, db_path: Path, batch: int, accept: bool = True) -> Dict[str, List[tuple]]:  # noqa: F811
    """The quarter's events into a database, applied in-process with `batch` events a
    commit: the tables after. (The tests make BATCH 50, so that the quarter's 200 events
    take several batches.)"""
    from engine.runtime.loop import advance

    _, end, events = quarter
    plan = plan_for(ACME)
    db = Database(str(db_path)).scope(plan.funnel, plan.sender.from_)
    if accept:
        db.accept(events)
    advance(db, plan, end, batch=batch)
    db.close()
    return tables(db_path)


def test_sqlite_without_json_each_writes_the_same_tables(quarter, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    """A table's rows go in as one JSON array (`json_each`) where SQLite reads JSON, and a
    statement a row where it does not: the same tables either way."""
    monkeypatch.setattr(loop, "BATCH", 50)
    with_json = advanced(quarter, tmp_path / "json.db", 50)
    assert Database(str(tmp_path / "json.db"))._json_each  # this SQLite reads JSON: the first path ran
    real, plain = Database.write, []

    def without_json_each(self: Database, writes: Writes) -> None:
        self._json_each = False
        plain.append(len(writes.outbox))
        real(self, writes)

    monkeypatch.setattr(Database, "write", without_json_each)
    without = advanced(quarter, tmp_path / "plain.db", 50)
    assert len(plain) > 3 and sum(plain) == len(without["outbox"]) > 200
    for table in ("outbox", "leads", "inbox", "suppressions", "shared"):
        assert without[table] == with_json[table], table


@pytest.mark.parametrize("batch", [50, 1])
@pytest.mark.parametrize("fail_at", ["third", "last"])
def test_a_failed_commit_stops_the_run_and_the_next_run_loses_nothing(quarter, tmp_path: Path, monkeypatch,  # noqa: F811
                                                                      batch: int, fail_at: str) -> None:
    """The loop's commits are made by a thread of their own (`Committer`). One that fails
    (a disk error, say) stops the run with that error, whether the loop still puts more
    (it may be waiting for room to) or has put its last; nothing after it is committed,
    the interpreter's switch interval is put back, and the next run goes on to what an
    uninterrupted run leaves. (With a commit per event, Linux's writer process takes over
    after a few commits: test_runtime_commits.py tries it; here the thread commits.)"""
    monkeypatch.setattr(loop, "BATCH", 50)
    monkeypatch.setattr(loop, "available", lambda: False)
    name = "log" if batch == 1 else "write"
    real, calls = getattr(Database, name), []
    failing_call = [0]

    def failing(self: Database, writes: Writes, *rest: Any) -> None:
        calls.append(1)
        if len(calls) == failing_call[0]:
            raise sqlite3.OperationalError("disk I/O error")
        real(self, writes, *rest)

    monkeypatch.setattr(Database, name, failing)
    whole = advanced(quarter, tmp_path / "whole.db", batch)
    commits = len(calls)  # a batch's writes each, or a journal row each
    assert commits > 3
    failing_call[0] = 3 if fail_at == "third" else commits
    calls.clear()
    switch = sys.getswitchinterval()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        advanced(quarter, tmp_path / "failed.db", batch)
    assert sys.getswitchinterval() == switch
    assert len(calls) == failing_call[0]  # nothing more was tried after the failure
    monkeypatch.setattr(Database, name, real)
    Database(str(tmp_path / "failed.db")).close()  # opening folds the journal's rows committed before
    first = tables(tmp_path / "failed.db")
    assert sum(applied for *_, applied in first["inbox"]) == min(len(first["inbox"]), (failing_call[0] - 1) * batch)
    again = advanced(quarter, tmp_path / "failed.db", batch, accept=False)
    for table in ("outbox", "leads", "inbox", "suppressions", "shared", "journal"):
        assert again[table] == whole[table], table
