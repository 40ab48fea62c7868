"""A commit per event, made by a process of its own (`fnl run --commit-every 1`).

Each event's writes commit as one row of the journal (`Database.log`). Made in the loop's
own process, every commit costs the loop a flush of the disk; made by a thread, it costs
the loop the interpreter, which the thread takes back after every flush. So `Journal`
hands each row, as the JSON `Writes.to_json` makes, down a pipe to a writer process
(this module run as a program: `main`), which commits the rows one by one in the order
they come, each in a transaction of its own, and folds them into the tables every
`fold_every` rows and at the end. The loop goes on meanwhile: the pipe (1 MiB) and the
writer's reading thread (`ROWS_HELD` rows, read even while it folds) are how far it may
get ahead, and it waits when both are full. On 50,000 acme leads (94,374 events) a run
with a commit per event took 52 s through a thread and 43 s through this process; the
engine alone, in memory, took 20 s (bench/README.md).

What a crash can do:
- The loop's process dies: the writer dies with it (Linux's parent-death signal), after
  at most the commit in hand. Every row committed stays in the journal, and the next
  opening of the file folds it; the events of rows not committed are still unapplied
  in the inbox, and the next run applies them again, to the same actions under the
  same keys.
- The writer fails (a disk error): it says why in one line and exits non-zero; the loop
  stops at its next row, or at `close`, with that line.

Nothing is delivered before `close` returns, by which time every row put is committed
and folded. A run with few commits (a round of the wall clock) makes them in its own
process: a writer is started only after `START_AFTER` rows.
"""
from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO, Callable, List, Optional

from ..errors import UsageError
from ..frames import read_frame, write_frame
from .db import Database, Writes

PIPE_SIZE = 1 << 20  # bytes of rows the loop may be ahead of the writer
ROWS_HELD = 4000  # rows the writer holds read but not committed (about 3 KB each)
START_AFTER = 64  # rows committed in the loop's own process before a writer process is started
# The writer's program: this module's `writer`, the folder `engine` is in first on the path.
WRITER = "import sys; sys.path.insert(0, sys.argv[1]); from engine.runtime.commits import writer; writer(sys.argv[2:])"
CRASH_AFTER_COMMIT = "after-commit"  # loop.crash_point's name for the point after a commit


def available() -> bool:
    """Whether the writer can die with the loop's process (Linux's PR_SET_PDEATHSIG). Where
    it cannot, the loop commits through a thread instead (`db.Committer`)."""
    return sys.platform.startswith("linux")


class Journal:
    """The loop's side: `put` a row, `close` at the end (every row committed and folded)."""

    def __init__(self, db: Database, fold_every: int, after: Callable[[], None]) -> None:
        self.db, self.fold_every, self.after = db, fold_every, after
        self.inline = 0  # rows committed in this process, before a writer was started
        self.proc: Optional[subprocess.Popen] = None
        self.pipe: Optional[BinaryIO] = None
        self.failure: Optional[UsageError] = None  # the writer's failure, once said

    def put(self, writes: Writes) -> None:
        if self.proc is None:
            if self.inline < START_AFTER:
                self.db.log(writes)
                self.after()
                self.inline += 1
                return
            self.db.fold()  # the rows so far, so the writer's fold has only its own
            self._start()
        self._send(writes.to_json().encode("utf-8", "surrogatepass"))

    def _send(self, payload: bytes) -> None:
        """One row down the pipe (empty: the last one came)."""
        assert self.pipe is not None
        try:
            write_frame(self.pipe.fileno(), payload)
        except OSError:  # the writer is gone: why
            self._failed()

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder `engine` is in
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, root, self.db.file, str(self.fold_every), str(os.getpid())],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)  # each row to the writer at once
        self.pipe = self.proc.stdin  # type: ignore[assignment]
        assert self.pipe is not None
        try:  # room for about 300 rows ahead, where the kernel allows it (64 KiB else)
            import fcntl

            fcntl.fcntl(self.pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        except OSError:
            pass

    def close(self) -> None:
        """Every row put committed and folded; the writer's failure raised, if it failed
        (once: a `put` that raised it leaves it to go on up)."""
        if self.failure is not None:
            return
        if self.proc is None:
            if self.inline:
                self.db.fold()
            return
        self._send(b"")
        assert self.pipe is not None
        self.pipe.close()
        if self.proc.wait() != 0:
            self._failed()
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def _failed(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        self.proc.wait()
        said = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        reason = said[-1] if said else f"the writer process exited with status {self.proc.returncode}"
        self.failure = UsageError(f"--db {self.db.path}: a commit failed: {reason}",
                                  "the events not committed are still in the inbox: fix the cause and run again")
        raise self.failure


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the loop's process dies (PR_SET_PDEATHSIG). Where
    it cannot be asked, `main` still stops before each commit once its parent is gone."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _frames(fd: int, into: "queue.Queue[Optional[bytes]]") -> None:
    """The writer's reading thread: rows off the pipe as they come, even while the writer
    folds (SQLite's work, which lets the interpreter go), so the loop need not wait for
    room in the pipe then. None: the stream ended without the last row (b"")."""
    while True:
        data = read_frame(fd)
        into.put(data)
        if not data:
            return


def main(argv: List[str]) -> int:
    """The writer process: rows from standard input, committed one by one, folded every
    `fold_every` rows and at the end. Arguments: the SQLite file, fold_every, the loop's
    process ID."""
    path, fold_every, parent = argv[0], int(argv[1]), int(argv[2])
    _die_with_parent()
    if os.getppid() != parent:  # the loop died before the signal was asked for
        return 0
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the loop decides
    # (it finishes its round and closes), and this process ends when told or with the loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    crash = os.environ.get("FNL_CRASH_AT") == CRASH_AFTER_COMMIT
    rows: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=ROWS_HELD)
    threading.Thread(target=_frames, args=(sys.stdin.fileno(), rows), daemon=True).start()
    try:
        db = Database(path)
        logged = 0
        while True:
            data = rows.get()
            if data is None:  # the loop's process is gone: what is committed stays in the journal
                return 0
            if data == b"":  # the loop's last row came
                break
            if os.getppid() != parent:  # the loop is gone (where no signal said so): commit no more
                return 0
            text = data.decode("utf-8", "surrogatepass")
            db.log(Writes.from_json(text), text)
            if crash:  # the tests' named crash point: the run dies right after a commit
                os.kill(parent, signal.SIGKILL)
                return 0
            logged += 1
            if logged >= fold_every:
                db.fold()
                logged = 0
        if logged:
            db.fold()
        db.close()
        return 0
    except UsageError as exc:
        print(exc.args[0] if exc.args else "the database cannot be used", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # SQLite's own words: "database or disk is full"
        print(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line for the loop to say
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def writer(argv: List[str]) -> None:
    """The writer process's program: `main`, then out at once. (The reading thread may be
    waiting on the pipe still; an interpreter shutting down around it can abort.)"""
    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


__all__ = ["Journal", "START_AFTER", "available", "main", "writer"]
