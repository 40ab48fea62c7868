"""`fnl run --commit-every 1` on Linux: each event's commit made by a writer process
(`engine.runtime.commits`), the loop going on meanwhile.

These tests hold that the writer leaves the tables a batched run leaves; that a run killed
right after one of the writer's commits loses nothing; that the writer dies with the loop,
so it never commits behind the back of the next run; that a commit the database refuses
stops the run with one line, and the next run goes on from there; and that a short run
(a round of the wall clock) starts no writer at all. Where the writer cannot die with the
loop, the loop commits through a thread instead (`db.Committer`), tested here too."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import REPO, clean_env
from engine.frames import HEADER
from engine.runtime import commits, loop
from engine.runtime.db import Database
from engine.state import iso
from test_runtime import ACME, fnl_run, outbox, quarter, simulated_events  # noqa: F401  (quarter: a fixture)
from test_runtime_journal import advanced, tables

pytestmark = pytest.mark.skipif(not commits.available(), reason="the writer process needs Linux")

TABLES = ("outbox", "leads", "inbox", "suppressions", "shared", "journal")


def same_tables(got: Dict[str, List[tuple]], want: Dict[str, List[tuple]]) -> None:
    for table in TABLES:
        assert got[table] == want[table], table


def run_with(db: Path, end: int, events: Path, start_after: int, **env: str) -> subprocess.CompletedProcess:
    """`fnl run --commit-every 1` in a process of its own, the writer started after
    `start_after` commits (0: from the first)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import engine.runtime.commits as c; "
            "c.START_AFTER = int(sys.argv[2]); import fnl; sys.argv = ['fnl'] + sys.argv[3:]; fnl.main()")
    return subprocess.run([sys.executable, "-c", code, str(REPO), str(start_after), "run", ACME, "--db", str(db),
                           "--until", iso(end), "--events", str(events), "--commit-every", "1"],
                          capture_output=True, text=True, timeout=600, env=clean_env(**env), cwd=REPO)


def test_the_writer_process_leaves_what_a_batched_run_leaves(quarter, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    started: List[int] = []
    real = commits.Journal._start

    def start(self: commits.Journal) -> None:
        started.append(1)
        real(self)

    monkeypatch.setattr(commits.Journal, "_start", start)
    monkeypatch.setattr(commits, "START_AFTER", 10)
    monkeypatch.setattr(loop, "FOLD_EVERY", 40)  # several folds by the writer
    batched = advanced(quarter, tmp_path / "batched.db", 500)
    assert started == []
    single = advanced(quarter, tmp_path / "single.db", 1)
    assert started == [1] and len(quarter[2]) > 10 + 3 * 40
    same_tables(single, batched)


def test_a_short_run_commits_in_its_own_process(quarter, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(commits.Journal, "_start", None)  # starting a writer would fail
    monkeypatch.setattr(commits, "START_AFTER", 10_000)
    batched = advanced(quarter, tmp_path / "batched.db", 500)
    same_tables(advanced(quarter, tmp_path / "single.db", 1), batched)


def test_where_the_writer_cannot_die_with_the_loop_a_thread_commits(quarter, tmp_path: Path,  # noqa: F811
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(loop, "available", lambda: False)
    monkeypatch.setattr(commits.Journal, "_start", None)
    batched = advanced(quarter, tmp_path / "batched.db", 500)
    same_tables(advanced(quarter, tmp_path / "single.db", 1), batched)


def test_killed_right_after_a_commit_of_the_writer_nothing_is_lost(quarter, tmp_path: Path) -> None:  # noqa: F811
    path, end, _ = quarter
    db = tmp_path / "acme.db"
    crashed = run_with(db, end, path, 0, FNL_CRASH_AT="after-commit")
    assert crashed.returncode == -9, crashed.stderr
    with sqlite3.connect(db) as conn:  # the writer's first commit, and nothing after it
        assert conn.execute("SELECT count(*) FROM journal").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM inbox WHERE applied = 1").fetchone() == (0,)
    status = subprocess.run([sys.executable, str(REPO / "fnl.py"), "status", ACME, "--db", str(db)],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert status.returncode == 0, status.stderr
    assert tables(db)["journal"] == [] and sum(applied for *_, applied in tables(db)["inbox"]) == 1
    assert run_with(db, end, path, 0).returncode == 0
    whole = tmp_path / "whole.db"
    assert fnl_run(whole, end, path).returncode == 0
    assert outbox(db) == outbox(whole)
    assert tables(db)["leads"] == tables(whole)["leads"]


def _children(pid: int) -> List[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _gone(pid: int) -> bool:
    """Ended: no such process, or one waiting only to be reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def test_the_writer_dies_with_the_loop(tmp_path: Path) -> None:
    events, _, end = simulated_events(Path(ACME), leads=1500, days=60)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(__import__("json").dumps(e.to_json()) + "\n" for e in events), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "a.db"),
                             "--until", iso(end), "--events", str(path), "--commit-every", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    deadline = time.monotonic() + 120
    writer: List[int] = []
    while not writer and proc.poll() is None and time.monotonic() < deadline:
        writer = _children(proc.pid)
        time.sleep(0.01)
    assert writer, f"no writer process was started ({len(events)} events): {proc.stderr.read() if proc.stderr else ''}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not _gone(writer[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(writer[0])
    if proc.stderr:
        proc.stderr.close()


def test_a_commit_the_database_refuses_stops_the_run_with_one_line(quarter, tmp_path: Path) -> None:  # noqa: F811
    path, end, _ = quarter
    db = tmp_path / "acme.db"
    Database(str(db)).close()
    with sqlite3.connect(db) as conn:  # the writer's 10th row is refused, as a full disk would
        conn.executescript("""
            CREATE TABLE rows_seen (n INTEGER);
            CREATE TRIGGER refuse BEFORE INSERT ON journal WHEN (SELECT count(*) FROM rows_seen) >= 9
            BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
            CREATE TRIGGER count_rows AFTER INSERT ON journal BEGIN INSERT INTO rows_seen VALUES (1); END;
        """)
    failed = run_with(db, end, path, 0)
    assert failed.returncode == 3, failed.stderr
    said, hint = failed.stderr.strip().splitlines()  # what is wrong, and what to do
    assert said.endswith(f"--db {db}: a commit failed: database or disk is full"), said
    assert "the events not committed are still in the inbox" in hint
    assert "Traceback" not in failed.stderr
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP TRIGGER refuse; DROP TRIGGER count_rows; DROP TABLE rows_seen;")
    Database(str(db)).close()  # opening folds what the writer committed: its first 9 events
    assert sum(applied for *_, applied in tables(db)["inbox"]) == 9
    assert run_with(db, end, path, 0).returncode == 0
    whole = tmp_path / "whole.db"
    assert fnl_run(whole, end, path).returncode == 0
    assert outbox(db) == outbox(whole)
    assert tables(db)["leads"] == tables(whole)["leads"]


def test_the_writer_ignores_ctrl_c_and_sigterm_and_ends_when_told(tmp_path: Path) -> None:
    """Ctrl-C and a service manager's SIGTERM go to the whole process group: the writer
    lets the loop decide, and ends cleanly at the loop's last row."""
    Database(str(tmp_path / "a.db")).close()
    proc = subprocess.Popen([sys.executable, "-c", commits.WRITER, str(REPO), str(tmp_path / "a.db"), "10",
                             str(os.getpid())], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # started, and its signals set
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert proc.poll() is None
    out, err = proc.communicate(HEADER.pack(0), timeout=30)  # the last row came
    assert proc.returncode == 0, err


def test_a_writer_with_rows_in_hand_commits_none_of_them_once_the_loop_is_gone(tmp_path: Path) -> None:
    """The loop puts 3,000 rows, holding the database so that none can be committed yet,
    and dies: the writer, dying with it, commits at most the row in hand, not the backlog
    (which the next run would be applying too)."""
    db = tmp_path / "a.db"
    Database(str(db)).close()
    code = """if True:
        import os, signal, sys, time
        sys.path.insert(0, sys.argv[1])
        from engine.runtime import commits
        from engine.runtime.db import Database, Writes
        journal = commits.Journal(Database(sys.argv[2]), 100_000, lambda: None)
        journal._start()
        print(journal.proc.pid, flush=True)
        text = Writes("acme", "acme.example").to_json().encode()
        journal._send(text)
        db = Database(sys.argv[2])
        while db.conn.execute("SELECT count(*) FROM journal").fetchone()[0] < 1:  # the writer is at work
            time.sleep(0.01)
        db.conn.execute("BEGIN IMMEDIATE")  # the writer's next commit waits for this process
        for _ in range(3000):
            journal._send(text)
        os.kill(os.getpid(), signal.SIGKILL)  # and the lock goes with it
    """
    loop_ = subprocess.run([sys.executable, "-c", code, str(REPO), str(db)], capture_output=True, text=True,
                           timeout=60)
    assert loop_.returncode == -9, loop_.stderr
    writer = int(loop_.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(writer) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(writer)
    with sqlite3.connect(db) as conn:
        # The first row, and at most the one in hand: the dying process's lock goes just before
        # the signal that kills the writer comes, and a commit waiting for it may get through.
        assert conn.execute("SELECT count(*) FROM journal").fetchone()[0] <= 2


def test_after_a_failed_put_close_leaves_that_failure_to_go_on_up(tmp_path: Path, monkeypatch) -> None:
    """The loop closes the writer in a `finally`: after a `put` that raised the writer's
    failure, `close` must not raise another (the pipe is broken by then, and what the
    writer said has been read)."""
    from engine.runtime.db import Writes
    from engine.errors import UsageError

    db_path = tmp_path / "a.db"
    Database(str(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON journal BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    monkeypatch.setattr(commits, "START_AFTER", 0)
    db = Database(str(db_path))
    journal = commits.Journal(db, 100, lambda: None)
    with pytest.raises(UsageError) as raised:
        for _ in range(100_000):  # until the writer has failed and the pipe says so
            journal.put(Writes("acme", "acme.example"))
    assert raised.value.args[0].endswith("a commit failed: disk I/O error")
    assert journal.close() is None
    db.close()
