"""The runtime's database: SQLite (a file, WAL, made on first use).

Tables, in one schema whose version is SQLite's `user_version` (`SCHEMA`; a database made
by a newer fnl is refused rather than misread):

- `meta`: the funnel, its plan's content hash, and the minute the clock has reached;
- `inbox`: every event accepted, once (its ID: a hash of its content), and whether it
  has been applied;
- `leads`: each lead's engine state (`codec`, JSON) and its next due minute;
- `shared`: the state shared between leads (round-robin turns);
- `outbox`: every action the engine decided, under an idempotency key, written in the
  same transaction as the state change that made it, and marked delivered only after
  delivery.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

from ..errors import UsageError
from ..state import Action, Event, Shared
from . import codec

SCHEMA = 2
# Each version's changes to the one before: a database is made at version 1 and brought
# up through every upgrade, so the path an old database takes is the one every new one took.
_UPGRADES = {
    # The suppression list: an address (its hash) that must never get email again from this
    # sender, whatever lead it comes back as (an unsubscribe, a suppression, `fnl forget`).
    2: ("CREATE TABLE suppressions (address TEXT PRIMARY KEY, reason TEXT NOT NULL, at INTEGER NOT NULL)",),
}

_TABLES = """
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


def stored(event: Event) -> Tuple[str, str]:
    """(an event's ID in the inbox: a hash of its content, for sources without IDs of
    their own; the text stored)."""
    text = json.dumps(codec.encode_event(event), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32], text


def action_key(plan_hash: str, step: str, index: int, action: Action) -> str:
    """An action's idempotency key: the plan's version, the engine step that decided it
    (an event's ID, or the clock at a minute for a lead), its place among that step's
    actions, and what it is. The same inputs give the same key after any restart, so a
    repeated delivery carries the key of the one before it."""
    text = f"{plan_hash}\x00{step}\x00{index}\x00{action.type}\x00{action.lead}\x00{action.at}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Database:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise UsageError(f"--db {path}: cannot open the database: {exc}",
                             "give a path to a SQLite file fnl may create or open") from None
        if version == 0:
            tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise UsageError(f"--db {path}: this SQLite file is not an fnl database", "give another path")
            with self.transaction():
                for statement in filter(None, (s.strip() for s in _TABLES.split(";"))):
                    self.conn.execute(statement)
                self.conn.execute("PRAGMA user_version = 1")
            version = 1
        elif version > SCHEMA:
            raise UsageError(f"--db {path}: made by a newer fnl (schema {version}; this fnl knows {SCHEMA})",
                             "run the newer fnl, or give another database")
        for target in range(version + 1, SCHEMA + 1):  # upgrades in place, each whole or not at all
            with self.transaction():
                for statement in _UPGRADES[target]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    # -- meta -----------------------------------------------------------------------------
    def meta(self, key: str) -> Optional[str]:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                          "excluded.value", (key, value))

    # -- events in ------------------------------------------------------------------------
    def accept(self, events: Iterable[Event], batch: int = 1000) -> Tuple[int, int]:
        """Store events in the inbox, each once: (new, already there)."""
        new = seen = 0
        pending: List[Tuple[str, int, int, str, str]] = []

        def flush() -> None:
            nonlocal new, seen
            with self.transaction():
                before = self.conn.total_changes
                self.conn.executemany("INSERT OR IGNORE INTO inbox (id, at, second, lead, event) "
                                      "VALUES (?, ?, ?, ?, ?)", pending)
                added = self.conn.total_changes - before
            new += added
            seen += len(pending) - added
            pending.clear()

        for event in events:
            id_, data = stored(event)
            pending.append((id_, event.at, event.second, event.lead, data))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        return new, seen

    def pending(self, until: int) -> Iterator[Tuple[int, str, Event]]:
        """Unapplied events up to minute `until`: (inbox seq, ID, event), in arrival order."""
        for seq, id_, text in self.conn.execute("SELECT seq, id, event FROM inbox WHERE applied = 0 AND at <= ? "
                                                "ORDER BY seq", (until,)).fetchall():
            doc = json.loads(text)
            yield seq, id_, codec.decode_event(doc, f"inbox row {seq}")

    # -- state --------------------------------------------------------------------------------
    def states(self) -> Iterator[Tuple[str, codec.State]]:
        for lead, text in self.conn.execute("SELECT lead, state FROM leads"):
            yield lead, codec.decode(text)

    def state(self, lead: str) -> Optional[codec.State]:
        row = self.conn.execute("SELECT state FROM leads WHERE lead = ?", (lead,)).fetchone()
        return codec.decode(row[0]) if row else None

    def shared(self) -> Shared:
        row = self.conn.execute("SELECT state FROM shared WHERE id = 1").fetchone()
        return codec.decode_shared(row[0]) if row else Shared()

    def save(self, lead: str, state: codec.State, due: Optional[int]) -> None:
        self.conn.execute("INSERT INTO leads (lead, state, next_due) VALUES (?, ?, ?) ON CONFLICT (lead) DO UPDATE "
                          "SET state = excluded.state, next_due = excluded.next_due", (lead, codec.encode(state), due))

    def save_all(self, rows: List[Tuple[str, codec.State, Optional[int]]]) -> None:
        self.conn.executemany("INSERT INTO leads (lead, state, next_due) VALUES (?, ?, ?) ON CONFLICT (lead) DO UPDATE "
                              "SET state = excluded.state, next_due = excluded.next_due",
                              [(lead, codec.encode(state), due) for lead, state, due in rows])

    def save_shared(self, shared: Shared) -> None:
        self.conn.execute("INSERT INTO shared (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = "
                          "excluded.state", (codec.encode_shared(shared),))

    def applied(self, seqs: List[int]) -> None:
        self.conn.executemany("UPDATE inbox SET applied = 1 WHERE seq = ?", [(s,) for s in seqs])

    # -- actions out ----------------------------------------------------------------------------
    def record(self, key: str, step: str, action: Action) -> None:
        """An action in the outbox, with the engine step that decided it (`event:<ID>`, or
        `clock:<minute>:<lead>`)."""
        self.conn.execute("INSERT OR IGNORE INTO outbox (key, lead, at, step, action) VALUES (?, ?, ?, ?, ?)",
                          (key, action.lead, action.at, step, json.dumps(action.to_json(), sort_keys=True,
                                                                         separators=(",", ":"), default=str)))

    def record_all(self, records: List[Tuple[str, str, Action]]) -> None:
        """`record` for many actions: (key, step, action)."""
        self.conn.executemany("INSERT OR IGNORE INTO outbox (key, lead, at, step, action) VALUES (?, ?, ?, ?, ?)",
                              [(key, a.lead, a.at, step, json.dumps(a.to_json(), sort_keys=True, separators=(",", ":"),
                                                                      default=str)) for key, step, a in records])

    def history(self, lead: str) -> List[Tuple[str, str, str]]:
        """(step, action JSON, status) of every action for a lead, in the order decided."""
        return self.conn.execute("SELECT step, action, status FROM outbox WHERE lead = ? ORDER BY seq",
                                 (lead,)).fetchall()

    def event(self, id_: str) -> Optional[Event]:
        row = self.conn.execute("SELECT event FROM inbox WHERE id = ?", (id_,)).fetchone()
        return codec.decode_event(json.loads(row[0]), f"inbox event {id_}") if row else None

    def breaches(self) -> Iterator[str]:
        """The owner of each SLA breach the engine decided."""
        for (text,) in self.conn.execute("SELECT action FROM outbox WHERE action LIKE '%\"sla_breached\"%'"):
            doc = json.loads(text)
            if doc.get("type") == "sla_breached":
                yield str(doc.get("owner") or "")

    # -- suppressions and a lead's data --------------------------------------------------------
    @staticmethod
    def address_hash(address: str) -> str:
        return hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()

    def suppress(self, address: str, reason: str, at: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO suppressions (address, reason, at) VALUES (?, ?, ?)",
                          (self.address_hash(address), reason, at))

    def suppressed(self, address: str) -> Optional[str]:
        row = self.conn.execute("SELECT reason FROM suppressions WHERE address = ?",
                                (self.address_hash(address),)).fetchone()
        return row[0] if row else None

    def export(self, lead: str) -> dict:
        """Everything the database holds about a lead."""
        state = self.state(lead)
        return {"lead": lead, "state": json.loads(codec.encode(state)) if state is not None else None,
                "events": [json.loads(text) for (text,) in self.conn.execute(
                    "SELECT event FROM inbox WHERE lead = ? ORDER BY seq", (lead,))],
                "actions": [dict(json.loads(text), status=status) for (text, status) in self.conn.execute(
                    "SELECT action, status FROM outbox WHERE lead = ? ORDER BY seq", (lead,))],
                "suppressed": self.suppressed(lead)}

    def forget(self, lead: str, at: int) -> int:
        """Erase a lead's data, keeping only its address's hash on the suppression list:
        how many rows went."""
        with self.transaction():
            gone = sum(self.conn.execute(f"DELETE FROM {table} WHERE lead = ?", (lead,)).rowcount
                       for table in ("leads", "outbox"))
            # The inbox keeps each event's ID (a hash) and nothing else, so a log replayed
            # later cannot bring the lead back.
            gone += self.conn.execute("UPDATE inbox SET event = '{}', lead = '', applied = 1 WHERE lead = ?",
                                      (lead,)).rowcount
            self.suppress(lead, "forgotten", at)
        return gone

    def outbox_statuses(self) -> dict:
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())

    def undelivered(self, limit: int = 1000) -> List[Tuple[int, str, str]]:
        """(seq, key, action JSON) of actions not yet delivered, oldest first."""
        return self.conn.execute("SELECT seq, key, action FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT ?",
                                 (limit,)).fetchall()

    def failed(self, seq: int, reason: str, status: str = "failed") -> None:
        """An action no adapter can ever deliver (hostile data in it: `failed`), or that
        consent no longer allows (`suppressed`): parked, with why."""
        with self.transaction():
            self.conn.execute("UPDATE outbox SET status = ?, attempts = attempts + 1 WHERE seq = ?", (status, seq))
            self.set_meta(f"{status}:{seq}", reason)

    def delivered(self, seqs: List[int], at: int) -> None:
        with self.transaction():
            self.conn.executemany("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ? "
                                  "WHERE seq = ?", [(at, s) for s in seqs])

    def counts(self) -> dict:
        one = self.conn.execute
        return {"events": one("SELECT count(*) FROM inbox").fetchone()[0],
                "pending events": one("SELECT count(*) FROM inbox WHERE applied = 0").fetchone()[0],
                "leads": one("SELECT count(*) FROM leads").fetchone()[0],
                "actions": one("SELECT count(*) FROM outbox").fetchone()[0],
                "undelivered": one("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]}


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, *_: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
