"""The runtime's database: SQLite by default (a file, WAL, made on first use, no server to
start), or PostgreSQL (`postgresql://...`) when several `fnl run` workers share one.

One database holds any number of funnels; each row names the funnel it belongs to, and a
`Database` works for one funnel at a time (`scope`). Tables, in one schema whose version
is kept in the database (SQLite's `user_version`, PostgreSQL's `fnl_schema` table; a
database made by a newer fnl is refused rather than misread):

- `meta`: per funnel, its plan's content hash and the minute the clock has reached;
- `inbox`: every event accepted, once per funnel (its ID: a hash of its content), and
  whether it has been applied;
- `leads`: each lead's engine state (`codec`, JSON), its next due minute, and (for the
  workers on PostgreSQL) the minute of its next unapplied step and whether it waits for
  state shared with other leads;
- `shared`: per funnel, the state shared between leads (round-robin turns);
- `outbox`: every action the engine decided, under an idempotency key, written in the
  same transaction as the state change that made it, and marked delivered only after
  delivery;
- `suppressions`: per sender (the From address), the hash of every address that must
  never get email from it again, whichever of the sender's funnels it came through;
- `sends`: emails sent per sending domain and clock hour, for the sending limits
  (`limits`), across every funnel of the domain;
- `journal`: a redo log for commits of one event each (`Writes`, `Database.log`): one
  short row per commit instead of a page of every table and index it touches, folded into
  the tables every few hundred commits and whenever the file is opened (`fold`).

A new database is made at the latest schema; an older SQLite file is brought up through
every upgrade in place, each whole or not at all, and a test holds the two equal.
"""
from __future__ import annotations

import hashlib
import json
import queue
import re
import sqlite3
import sys
import threading
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import UsageError
from ..state import Action, Event, Shared
from . import codec

SCHEMA = 5
# Every sender: a suppression under it covers the address for every sender in the database
# (`fnl forget`, and the lists of a database made before suppressions were per sender).
EVERY_SENDER = "*"

# An unsubscribe or a complaint among the inbox's events (`opt_out_waiting`, `inbox_opt_out`).
_OPT_OUT = "(event LIKE '%\"type\":\"email.unsubscribed\"%' OR event LIKE '%\"type\":\"email.complained\"%')"

_TABLES = """
CREATE TABLE meta (funnel TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (funnel, key));
CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, funnel TEXT NOT NULL, id TEXT NOT NULL,
                    at INTEGER NOT NULL, second INTEGER NOT NULL, lead TEXT NOT NULL, event TEXT NOT NULL,
                    applied INTEGER NOT NULL DEFAULT 0, UNIQUE (funnel, id));
CREATE INDEX inbox_pending ON inbox (funnel, lead, at) WHERE applied = 0;
CREATE INDEX inbox_due ON inbox (funnel, at, lead, second, seq) WHERE applied = 0;
CREATE INDEX inbox_opt_out ON inbox (lower(lead)) WHERE applied = 0 AND <OPT_OUT>;
CREATE TABLE leads (funnel TEXT NOT NULL, lead TEXT NOT NULL, state TEXT, next_due INTEGER, next_at INTEGER,
                    blocked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (funnel, lead));
CREATE INDEX leads_next ON leads (funnel, next_at, lead);
CREATE TABLE shared (funnel TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, funnel TEXT NOT NULL,
                     lead TEXT NOT NULL, at INTEGER NOT NULL, step TEXT NOT NULL, action TEXT NOT NULL,
                     status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                     delivered_at INTEGER);
CREATE INDEX outbox_pending ON outbox (funnel, seq) WHERE status = 'pending';
CREATE INDEX outbox_lead ON outbox (funnel, lead, seq);
CREATE TABLE suppressions (sender TEXT NOT NULL, address TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,
                           PRIMARY KEY (sender, address));
CREATE TABLE sends (domain TEXT NOT NULL, hour INTEGER NOT NULL, sent INTEGER NOT NULL, PRIMARY KEY (domain, hour));
CREATE TABLE journal (seq INTEGER PRIMARY KEY, writes TEXT NOT NULL);
""".replace("<OPT_OUT>", _OPT_OUT)


def _to_v3(db: "Database") -> None:
    """Schema 2 held one funnel: every row gets the funnel's name (from `meta`), and the
    suppression list becomes the list of every sender (which sender an old entry came
    through is not known, and consent comes first)."""
    conn = db.conn
    row = conn.execute("SELECT value FROM meta WHERE key = 'funnel'").fetchone()
    funnel = row[0] if row else ""
    for table in ("meta", "inbox", "leads", "shared", "outbox", "suppressions"):
        conn.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
    for index in ("inbox_pending", "outbox_pending", "outbox_lead"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    for statement in _statements(_TABLES):
        conn.execute(statement)
    conn.execute("INSERT INTO meta (funnel, key, value) SELECT ?, key, value FROM old_meta", (funnel,))
    conn.execute("INSERT INTO inbox (seq, funnel, id, at, second, lead, event, applied) "
                 "SELECT seq, ?, id, at, second, lead, event, applied FROM old_inbox", (funnel,))
    conn.execute("INSERT INTO leads (funnel, lead, state, next_due, next_at) "
                 "SELECT ?, lead, state, next_due, next_due FROM old_leads", (funnel,))
    conn.execute("INSERT INTO shared (funnel, state) SELECT ?, state FROM old_shared", (funnel,))
    conn.execute("INSERT INTO outbox (seq, key, funnel, lead, at, step, action, status, attempts, delivered_at) "
                 "SELECT seq, key, ?, lead, at, step, action, status, attempts, delivered_at FROM old_outbox",
                 (funnel,))
    conn.execute("INSERT INTO suppressions (sender, address, reason, at) SELECT ?, address, reason, at "
                 "FROM old_suppressions", (EVERY_SENDER,))
    for table in ("meta", "inbox", "leads", "shared", "outbox", "suppressions"):
        conn.execute(f"DROP TABLE old_{table}")


# Each version's changes to the one before, for a database an older fnl made (a new one is
# made at SCHEMA at once): SQL statements, or a function of the open database.
_UPGRADES: Dict[int, Sequence[Any]] = {
    # The suppression list: an address (its hash) that must never get email again from this
    # sender, whatever lead it comes back as (an unsubscribe, a suppression, `fnl forget`).
    2: ("CREATE TABLE suppressions (address TEXT PRIMARY KEY, reason TEXT NOT NULL, at INTEGER NOT NULL)",),
    # Several funnels in one database, and one suppression list per sender across them.
    3: (_to_v3,),
    # Emails sent per sending domain and clock hour, for the sending limits (`limits`). IF NOT
    # EXISTS: the upgrade to 3 already makes every table of `_TABLES`.
    4: ("CREATE TABLE IF NOT EXISTS sends (domain TEXT NOT NULL, hour INTEGER NOT NULL, sent INTEGER NOT NULL, "
        "PRIMARY KEY (domain, hour))",),
    # The redo log of commits of one event each (`Writes`).
    # The order the engine applies pending events in, to read them a page at a time; the
    # unsubscribes and complaints waiting, by address (`opt_out_waiting`, on every send).
    5: ("CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, writes TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS inbox_due ON inbox (funnel, at, lead, second, seq) WHERE applied = 0",
        "CREATE INDEX IF NOT EXISTS inbox_opt_out ON inbox (lower(lead)) WHERE applied = 0 AND " + _OPT_OUT),
}


def _statements(script: str) -> List[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


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


def sender_of(from_: str) -> str:
    """The sender a suppression list belongs to: the From address, in lower case."""
    return (parseaddr(from_)[1] or from_).strip().lower()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _rows(rows: Sequence[Any]) -> str:
    """Rows as one JSON array, for `json_each` (`Database._write_sqlite`)."""
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def _cols(*index: int) -> str:
    """The columns of `json_each(?)`'s rows (each a JSON array) at these places, then the
    FROM clause, in the array's order. (`WHERE true` lets SQLite read an ON CONFLICT after
    it as the insert's, not a join's.)"""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in index) + " FROM json_each(?) WHERE true ORDER BY key"


class Writes:
    """One transaction's writes for a funnel, gathered before any reaches the database:
    leads' states, the shared state, inbox events marked applied, actions into the outbox,
    suppressions. `Database.write` applies them in the caller's transaction; `Database.log`
    commits them as one row of the journal, to be applied later (`Database.fold`) exactly
    as `write` would have: each kind in the order gathered, and a later row after an
    earlier one, so a lead's last state and the outbox's order come out the same."""

    __slots__ = ("funnel", "sender", "leads", "shared", "seqs", "outbox", "suppressions")

    def __init__(self, funnel: str, sender: str) -> None:
        self.funnel, self.sender = funnel, sender
        self.leads: List[Tuple[str, str, Optional[int]]] = []  # (lead, state JSON, next due minute)
        self.shared: Optional[str] = None  # the shared state's JSON, when it changed
        self.seqs: List[int] = []  # inbox rows applied
        self.outbox: List[Tuple[str, str, int, str, str]] = []  # (key, lead, at, step, action JSON)
        self.suppressions: List[Tuple[str, str, str, int]] = []  # (sender, address hash, reason, at)

    def save_all(self, rows: Iterable[Tuple[str, codec.State, Optional[int]]]) -> "Writes":
        self.leads.extend((lead, codec.encode(state), due) for lead, state, due in rows)
        return self

    def save_shared(self, shared: Shared) -> "Writes":
        self.shared = codec.encode_shared(shared)
        return self

    def applied(self, seqs: Iterable[int]) -> "Writes":
        self.seqs.extend(seqs)
        return self

    def record_all(self, records: Iterable[Tuple[str, str, Action]]) -> "Writes":
        self.outbox.extend((key, a.lead, a.at, step,
                            json.dumps(a.to_json(), sort_keys=True, separators=(",", ":"), default=str))
                           for key, step, a in records)
        return self

    def suppress(self, address: str, reason: str, at: int, sender: Optional[str] = None) -> "Writes":
        self.suppressions.append((self.sender if sender is None else sender, Database.address_hash(address),
                                  reason, at))
        return self

    def extend(self, later: "Writes") -> None:
        """The same funnel's later writes, after these."""
        self.leads += later.leads
        self.shared = later.shared if later.shared is not None else self.shared
        self.seqs += later.seqs
        self.outbox += later.outbox
        self.suppressions += later.suppressions

    def collapsed(self) -> "Writes":
        """These writes with each lead saved once, in its first place with its last state,
        as one batch of the loop saves them (`loop.touched`); the same tables after."""
        if len(self.leads) > 1:
            last: Dict[str, Tuple[str, str, Optional[int]]] = {}
            for row in self.leads:
                last[row[0]] = row  # a dict keeps a key's first place
            self.leads = list(last.values())
        return self

    def to_json(self) -> str:
        return json.dumps([self.funnel, self.sender, self.leads, self.shared, self.seqs, self.outbox,
                           self.suppressions], separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Writes":
        funnel, sender, leads, shared, seqs, outbox, suppressions = json.loads(text)
        writes = cls(funnel, sender)
        writes.leads = [tuple(row) for row in leads]  # type: ignore[misc]
        writes.shared, writes.seqs = shared, seqs
        writes.outbox = [tuple(row) for row in outbox]  # type: ignore[misc]
        writes.suppressions = [tuple(row) for row in suppressions]  # type: ignore[misc]
        return writes


class _Pg:
    """A PostgreSQL connection that takes the SQL the SQLite side is written in: `?`
    placeholders (a literal `%` kept), and a cursor from `execute` as sqlite3 gives."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.errors = (psycopg.Error,)
        self.raw = psycopg.connect(url, autocommit=True)
        self._sql: Dict[str, str] = {}

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return q

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(self._q(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(self._q(sql), list(rows))
        return cur

    def close(self) -> None:
        self.raw.close()


def _pg_ddl(statement: str) -> str:
    # Lead IDs compare by code point, as the engine orders them (not by the server's locale).
    return (statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            .replace("INTEGER", "BIGINT").replace(" WITHOUT ROWID", "").replace("lead TEXT", 'lead TEXT COLLATE "C"'))


class Database:
    """The runtime's database, working for one funnel at a time (`scope`)."""

    def __init__(self, url: str) -> None:
        self.path = url
        self.postgres = is_postgres(url)
        self.funnel = ""
        self.sender = EVERY_SENDER
        self.depth = 0  # transactions open (`transaction`)
        self._logged: List[Tuple[int, Writes]] = []  # journal rows this connection wrote, not yet folded
        self._begin = "BEGIN"
        self._json_each = False  # SQLite can read a JSON array as rows (`_write_sqlite`)
        # A password in the URL (user:password@, or ?password=) never reaches a message.
        display = re.sub(r"([?&])password=[^&]*&?", r"\1", re.sub(r"//[^@/]*@", "//", url)).rstrip("?&")
        self.path = display
        if self.postgres:
            self._open_postgres(url, display)
        else:
            self._open_sqlite(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url)

    # -- opening and the schema ------------------------------------------------------------
    def _open_sqlite(self, path: str) -> None:
        self.file = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn: Any = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            # 64 MiB of pages in memory (SQLite's default is 2 MiB): on 50,000 leads the writes of
            # a batch of events took half as long, most pages they touch being in memory.
            self.conn.execute("PRAGMA cache_size=-65536")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            self._begin = "BEGIN IMMEDIATE"
            try:  # SQLite has had JSON built in since 3.38; before, most builds added it
                self._json_each = self.conn.execute("SELECT value FROM json_each('[1]')").fetchone() == (1,)
            except sqlite3.OperationalError:
                pass
        except (sqlite3.Error, OSError) as exc:
            raise UsageError(f"--db {path}: cannot open the database: {exc}",
                             "give a path to a SQLite file fnl may create or open") from None
        if version == 0:
            if self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise UsageError(f"--db {path}: this SQLite file is not an fnl database", "give another path")
            self._create()
        else:
            self._upgrade(version)
            if self.conn.execute("SELECT 1 FROM journal LIMIT 1").fetchone():  # a run died with rows unfolded
                self.fold()

    def _open_postgres(self, url: str, display: str) -> None:
        try:
            self.conn = _Pg(url)
        except ImportError:
            raise UsageError(f"--db {display}: PostgreSQL needs the psycopg driver",
                             'install it with pip install "fnl[postgres]"') from None
        except Exception as exc:  # psycopg.OperationalError and its kin: the server's own words
            raise UsageError(f"--db {display}: cannot connect: {str(exc).strip().splitlines()[0]}",
                             "check the server is up and the URL's host, port, user and database") from None
        self._begin = "BEGIN"
        with self.transaction():  # one worker makes the schema; the others wait on the lock, then see it
            self.conn.execute("SELECT pg_advisory_xact_lock(7310)")
            found = self.conn.execute("SELECT to_regclass('fnl_schema')").fetchone()[0]
            if found is None:
                if self.conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                                     "current_schema() AND table_name IN ('meta', 'inbox', 'leads', 'outbox')"
                                     ).fetchone()[0]:
                    raise UsageError(f"--db {display}: this database has tables of its own and is not fnl's",
                                     "give another database (or a schema of its own in the URL's options)")
                self.conn.execute("CREATE TABLE fnl_schema (version BIGINT NOT NULL)")
                for statement in _statements(_TABLES):
                    self.conn.execute(_pg_ddl(statement))
                self.conn.execute("INSERT INTO fnl_schema (version) VALUES (?)", (SCHEMA,))
                version = SCHEMA
            else:
                version = self.conn.execute("SELECT version FROM fnl_schema").fetchone()[0]
            self._check_version(version)
            for target in range(version + 1, SCHEMA + 1):  # PostgreSQL databases begin at schema 4
                for step in _UPGRADES[target]:
                    self.conn.execute(_pg_ddl(step))
                self.conn.execute("UPDATE fnl_schema SET version = ?", (target,))

    def _check_version(self, version: int) -> None:
        if version > SCHEMA:
            raise UsageError(f"--db {self.path}: made by a newer fnl (schema {version}; this fnl knows {SCHEMA})",
                             "run the newer fnl, or give another database")

    def _create(self) -> None:
        with self.transaction():
            for statement in _statements(_TABLES):
                self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA}")

    def _upgrade(self, version: int) -> None:
        self._check_version(version)
        for target in range(version + 1, SCHEMA + 1):  # in place, each whole or not at all
            with self.transaction():
                for step in _UPGRADES[target]:
                    if callable(step):
                        step(self)
                    else:
                        self.conn.execute(step)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def version(self) -> int:
        if self.postgres:
            return int(self.conn.execute("SELECT version FROM fnl_schema").fetchone()[0])
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> "_Transaction":
        """One transaction (a transaction inside one is part of it)."""
        return _Transaction(self)

    def scope(self, funnel: str, from_: str = "") -> "Database":
        """Work for this funnel from now on, whose sender (From) owns the suppression list."""
        self.funnel = funnel
        self.sender = sender_of(from_) if from_ else EVERY_SENDER
        return self

    def lease(self) -> "_Lease":
        """For the length of a `fnl run`: the only run on this SQLite file (each restores the
        states once and writes them back, so two at once would undo each other); several
        workers share a PostgreSQL database instead. `fnl serve` only adds to the inbox and
        needs none."""
        return _Lease(None if self.postgres else self.file + "-run.lock", self.path)

    def lock_funnel(self) -> None:
        """Inside a transaction on PostgreSQL: hold the funnel's lock, which every worker's
        transaction also takes shared (`share_funnel`), so a deploy waits for the workers'
        transactions under way and they wait for it. Nothing on SQLite (one writer)."""
        if self.postgres:
            self.conn.execute("SELECT pg_advisory_xact_lock(7312, hashtext(?))", (self.funnel,))

    def share_funnel(self) -> None:
        if self.postgres:
            self.conn.execute("SELECT pg_advisory_xact_lock_shared(7312, hashtext(?))", (self.funnel,))

    def move_suppressions(self, old_from: str, new_from: str) -> None:
        """A sender's From changed: its suppression list goes on under the new address."""
        old, new = sender_of(old_from), sender_of(new_from)
        if old != new:
            self.conn.execute("INSERT INTO suppressions (sender, address, reason, at) SELECT ?, address, reason, at "
                              "FROM suppressions WHERE sender = ? ON CONFLICT (sender, address) DO NOTHING", (new, old))
            self.sender = new

    def advance_clock(self, until: int) -> None:
        """The funnel's clock to `until`, never back (workers on PostgreSQL set it at once)."""
        bigger = "GREATEST(CAST(meta.value AS BIGINT), CAST(excluded.value AS BIGINT))" if self.postgres else \
            "max(CAST(meta.value AS INTEGER), CAST(excluded.value AS INTEGER))"
        self.conn.execute(f"INSERT INTO meta (funnel, key, value) VALUES (?, 'clock', ?) ON CONFLICT (funnel, key) "
                          f"DO UPDATE SET value = CAST({bigger} AS TEXT)", (self.funnel, str(until)))

    def funnels(self) -> List[str]:
        return [f for (f,) in self.conn.execute("SELECT DISTINCT funnel FROM meta WHERE key = 'plan' ORDER BY funnel")]

    # -- meta -----------------------------------------------------------------------------
    def meta(self, key: str) -> Optional[str]:
        row = self.conn.execute("SELECT value FROM meta WHERE funnel = ? AND key = ?", (self.funnel, key)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (funnel, key, value) VALUES (?, ?, ?) ON CONFLICT (funnel, key) DO UPDATE "
                          "SET value = excluded.value", (self.funnel, key, value))

    # -- events in ------------------------------------------------------------------------
    def accept(self, events: Iterable[Event], batch: int = 1000) -> Tuple[int, int]:
        """Store events in the inbox, each once: (new, already there). On PostgreSQL each
        new event's lead is marked as having work at the event's minute, for the workers."""
        new = seen = 0
        pending: List[Tuple[str, str, int, int, str, str]] = []

        def flush() -> None:
            nonlocal new, seen
            with self.transaction():
                added = 0
                firsts: Dict[str, int] = {}  # each lead's first new event (a duplicate changes nothing)
                for row in pending:  # a row at a time: the count of what was new is exact on both databases
                    if self.conn.execute("INSERT INTO inbox (funnel, id, at, second, lead, event) "
                                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (funnel, id) DO NOTHING",
                                         row).rowcount:
                        added += 1
                        firsts[row[4]] = min(row[2], firsts.get(row[4], row[2]))
                if self.postgres:
                    self.conn.executemany(
                        "INSERT INTO leads (funnel, lead, next_at) VALUES (?, ?, ?) ON CONFLICT (funnel, lead) DO "
                        "UPDATE SET next_at = LEAST(COALESCE(leads.next_at, excluded.next_at), excluded.next_at)",
                        [(self.funnel, lead, at) for lead, at in sorted(firsts.items())])
            new += added
            seen += len(pending) - added
            pending.clear()

        for event in events:
            id_, data = stored(event)
            pending.append((self.funnel, id_, event.at, event.second, event.lead, data))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        return new, seen

    def pending(self, until: int, lead: Optional[str] = None) -> Iterator[Tuple[int, str, Event]]:
        """Unapplied events up to minute `until` (of one lead, or all): (inbox seq, ID,
        event), in arrival order."""
        if lead is None:
            rows = self.conn.execute("SELECT seq, id, event FROM inbox WHERE funnel = ? AND applied = 0 AND at <= ? "
                                     "ORDER BY seq", (self.funnel, until)).fetchall()
        else:
            rows = self.conn.execute("SELECT seq, id, event FROM inbox WHERE funnel = ? AND lead = ? AND applied = 0 "
                                     "AND at <= ? ORDER BY seq", (self.funnel, lead, until)).fetchall()
        for seq, id_, text in rows:
            yield seq, id_, self._event(seq, text)

    def in_order(self, until: int, page: int = 5000) -> Iterator[Tuple[int, str, Event]]:
        """Unapplied events up to minute `until` that are in the inbox now, in the order the
        engine applies them (`drive.event_order`: minute, lead, second, arrival), read a
        page at a time so a backlog of any length takes bounded memory: (inbox seq, ID,
        event). An event stored while this runs waits for the next (its lead's state may
        not have been read)."""
        top = self.conn.execute("SELECT max(seq) FROM inbox").fetchone()[0]
        key: Tuple[Any, ...] = (-1, "", -1, -1)
        while top is not None:
            rows = self.conn.execute(
                "SELECT seq, id, at, lead, second, event FROM inbox WHERE funnel = ? AND applied = 0 AND at <= ? "
                "AND seq <= ? AND (at, lead, second, seq) > (?, ?, ?, ?) ORDER BY at, lead, second, seq LIMIT ?",
                (self.funnel, until, top, *key, page)).fetchall()
            for seq, id_, _, _, _, text in rows:
                yield seq, id_, self._event(seq, text)
            if len(rows) < page:
                return
            seq, _, at, lead, second, _ = rows[-1]
            key = (at, lead, second, seq)

    def _read(self, what: str, decode: Callable[[], Any]) -> Any:
        """A stored row decoded, or one located line saying it is damaged (fnl writes rows
        whole, in transactions: one that does not read was changed from outside)."""
        try:
            return decode()
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--db {self.path}: {what} is damaged ({reason})",
                             "it was changed outside fnl: restore the database from a backup") from None

    def _event(self, seq: int, text: str) -> Event:
        return self._read(f"inbox row {seq}", lambda: codec.decode_event(json.loads(text), "the event"))

    def first_pending(self, lead: str) -> Optional[int]:
        """The minute of a lead's first unapplied event (after any horizon), or None."""
        return self.conn.execute("SELECT min(at) FROM inbox WHERE funnel = ? AND lead = ? AND applied = 0",
                                 (self.funnel, lead)).fetchone()[0]

    def next_due(self) -> Optional[int]:
        """The first minute at which the clock alone changes one of the funnel's leads."""
        return self.conn.execute("SELECT min(next_due) FROM leads WHERE funnel = ?", (self.funnel,)).fetchone()[0]

    # -- state --------------------------------------------------------------------------------
    def states(self, until: Optional[int] = None) -> Iterator[Tuple[str, codec.State]]:
        """Every lead's state; with `until`, only those of leads the clock or an event
        changes up to that minute (the others wait untouched)."""
        if until is None:
            rows = self.conn.execute("SELECT lead, state FROM leads WHERE funnel = ? AND state IS NOT NULL",
                                     (self.funnel,)).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT lead, state FROM leads WHERE funnel = ? AND state IS NOT NULL AND (next_at <= ? OR lead IN "
                "(SELECT lead FROM inbox WHERE funnel = ? AND applied = 0 AND at <= ?))",
                (self.funnel, until, self.funnel, until)).fetchall()
        for lead, text in rows:
            yield lead, self._read(f"the stored state of lead {lead!r}", lambda: codec.decode(text))

    def state(self, lead: str) -> Optional[codec.State]:
        row = self.conn.execute("SELECT state FROM leads WHERE funnel = ? AND lead = ?", (self.funnel, lead)).fetchone()
        if not row or row[0] is None:
            return None
        return self._read(f"the stored state of lead {lead!r}", lambda: codec.decode(row[0]))

    def shared(self, lock: bool = False) -> Shared:
        row = self.conn.execute("SELECT state FROM shared WHERE funnel = ?" + (" FOR UPDATE" if lock else ""),
                                (self.funnel,)).fetchone()
        return self._read("the stored shared state", lambda: codec.decode_shared(row[0])) if row else Shared()

    def save(self, lead: str, state: codec.State, due: Optional[int]) -> None:
        self.save_all([(lead, state, due)])

    def save_all(self, rows: List[Tuple[str, codec.State, Optional[int]]]) -> None:
        """Leads' states and next due minutes."""
        self.write(self.writes().save_all(rows))

    def save_shared(self, shared: Shared) -> None:
        self.write(self.writes().save_shared(shared))

    def applied(self, seqs: List[int]) -> None:
        self.write(self.writes().applied(seqs))

    # -- writes, directly or through the journal ---------------------------------------------
    def writes(self) -> "Writes":
        """An empty set of writes for this funnel, to gather a transaction's in."""
        return Writes(self.funnel, self.sender)

    def write(self, writes: "Writes") -> None:
        """Apply gathered writes, in the caller's transaction (or one of their own). On
        PostgreSQL a lead's place for the workers (`next_at`) is also its first unapplied
        event, when earlier."""
        if self._json_each:
            self._write_sqlite(writes)
            return
        funnel = writes.funnel
        with self.transaction():
            if writes.leads:
                self.conn.executemany(
                    "INSERT INTO leads (funnel, lead, state, next_due, next_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (funnel, lead) DO UPDATE SET state = excluded.state, "
                    "next_due = excluded.next_due, next_at = excluded.next_at",
                    [(funnel, lead, text, due, due) for lead, text, due in writes.leads])
                if self.postgres:
                    self.conn.execute(
                        "UPDATE leads SET next_at = LEAST(leads.next_due, p.first) FROM (SELECT lead, min(at) AS "
                        "first FROM inbox WHERE funnel = ? AND applied = 0 AND lead = ANY(?) GROUP BY lead) p "
                        "WHERE leads.funnel = ? AND leads.lead = p.lead",
                        (funnel, [lead for lead, _, _ in writes.leads], funnel))
            if writes.shared is not None:
                self.conn.execute("INSERT INTO shared (funnel, state) VALUES (?, ?) ON CONFLICT (funnel) DO UPDATE "
                                  "SET state = excluded.state", (funnel, writes.shared))
            if writes.seqs:
                self.conn.executemany("UPDATE inbox SET applied = 1 WHERE seq = ?", [(s,) for s in writes.seqs])
            if writes.outbox:
                self.conn.executemany("INSERT INTO outbox (key, funnel, lead, at, step, action) VALUES "
                                      "(?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                                      [(key, funnel, lead, at, step, text)
                                       for key, lead, at, step, text in writes.outbox])
            for row in writes.suppressions:
                self.conn.execute("INSERT INTO suppressions (sender, address, reason, at) VALUES (?, ?, ?, ?) "
                                  "ON CONFLICT (sender, address) DO NOTHING", row)

    def _write_sqlite(self, writes: "Writes") -> None:
        """`write` on SQLite: a table's rows in one statement, as one JSON array read by
        `json_each` in its order, rather than a statement per row. SQLite does a little
        more (it reads the JSON); the interpreter does far less, and the commit thread
        (`Committer`) takes the interpreter back from the loop once a table instead of
        once a row. On 10,000 acme leads a batched run took 5.7 s this way, 6.8 s with a
        statement a row."""
        funnel = writes.funnel
        with self.transaction():
            if writes.leads:
                self.conn.execute(
                    "INSERT INTO leads (funnel, lead, state, next_due, next_at) SELECT ?, " + _cols(0, 1, 2, 2)
                    + " ON CONFLICT (funnel, lead) DO UPDATE SET state = excluded.state, "
                    "next_due = excluded.next_due, next_at = excluded.next_at", (funnel, _rows(writes.leads)))
            if writes.shared is not None:
                self.conn.execute("INSERT INTO shared (funnel, state) VALUES (?, ?) ON CONFLICT (funnel) DO UPDATE "
                                  "SET state = excluded.state", (funnel, writes.shared))
            if writes.seqs:
                self.conn.execute("UPDATE inbox SET applied = 1 WHERE seq IN (SELECT value FROM json_each(?))",
                                  (_rows(writes.seqs),))
            if writes.outbox:
                self.conn.execute("INSERT INTO outbox (key, funnel, lead, at, step, action) SELECT "
                                  "json_extract(value, '$[0]'), ?, " + _cols(1, 2, 3, 4)
                                  + " ON CONFLICT (key) DO NOTHING", (funnel, _rows(writes.outbox)))
            if writes.suppressions:
                self.conn.execute("INSERT INTO suppressions (sender, address, reason, at) SELECT "
                                  + _cols(0, 1, 2, 3) + " ON CONFLICT (sender, address) DO NOTHING",
                                  (_rows(writes.suppressions),))

    def log(self, writes: "Writes", text: str = "") -> None:
        """Commit gathered writes as one row of the journal (SQLite): as durable as `write`
        in a transaction of their own, at the cost of one short row rather than a page of
        every table and index the writes touch. They reach the tables at the next `fold`,
        which the runtime's loop makes before it returns and every opening of the file makes
        after a crash; until then the tables lag by the rows the journal holds."""
        # One statement: outside a transaction SQLite commits it on its own (`text`: the
        # writes' JSON, when the caller made it already).
        seq = self.conn.execute("INSERT INTO journal (writes) VALUES (?)", (text or writes.to_json(),)).lastrowid
        self._logged.append((seq, writes))

    def committer(self, journal: bool, depth: int, fold_every: int,
                  after: Callable[[], None] = lambda: None) -> Committer:
        """The runtime loop's commits, made by a thread of their own on a connection of its
        own to this SQLite file (`Committer`); `after` runs after each."""
        return Committer(self.file, journal, depth, fold_every, after)

    def fold(self) -> int:
        """Apply the journal's rows to the tables, in order, and empty it, in one
        transaction: how many rows. The rows this connection logged are applied from
        memory when the journal holds exactly those (no other process folded some since),
        else read back."""
        with self.transaction():
            first, last, count = self.conn.execute("SELECT min(seq), max(seq), count(*) FROM journal").fetchone()
            logged = self._logged
            if count and logged and (logged[0][0], logged[-1][0], len(logged)) == (first, last, count):
                rows = [writes for _, writes in logged]
            else:
                rows = [self._read(f"journal row {seq}", lambda: Writes.from_json(text)) for seq, text in
                        self.conn.execute("SELECT seq, writes FROM journal WHERE seq <= ? ORDER BY seq",
                                          (last,)).fetchall()] if count else []
            merged: Optional[Writes] = None
            for writes in rows:  # a run of one funnel's rows applies as one
                if merged is None or (merged.funnel, merged.sender) != (writes.funnel, writes.sender):
                    if merged is not None:
                        self.write(merged.collapsed())
                    merged = Writes(writes.funnel, writes.sender)
                merged.extend(writes)
            if merged is not None:
                self.write(merged.collapsed())
            if count:
                self.conn.execute("DELETE FROM journal WHERE seq <= ?", (last,))
        self._logged = []
        return len(rows)

    # -- actions out ----------------------------------------------------------------------------
    def record_all(self, records: List[Tuple[str, str, Action]]) -> None:
        """Actions into the outbox, with the engine step that decided each (`event:<ID>`,
        or `clock:<minute>:<lead>`): (key, step, action)."""
        self.write(self.writes().record_all(records))

    def history(self, lead: str) -> List[Tuple[str, str, str]]:
        """(step, action JSON, status) of every action for a lead, in the order decided."""
        return self.conn.execute("SELECT step, action, status FROM outbox WHERE funnel = ? AND lead = ? ORDER BY seq",
                                 (self.funnel, lead)).fetchall()

    def event(self, id_: str) -> Optional[Event]:
        row = self.conn.execute("SELECT event FROM inbox WHERE funnel = ? AND id = ?", (self.funnel, id_)).fetchone()
        return codec.decode_event(json.loads(row[0]), f"inbox event {id_}") if row else None

    def breaches(self) -> Iterator[str]:
        """The owner of each SLA breach the engine decided."""
        for (text,) in self.conn.execute("SELECT action FROM outbox WHERE funnel = ? AND action LIKE "
                                         "'%\"sla_breached\"%'", (self.funnel,)).fetchall():
            doc = json.loads(text)
            if doc.get("type") == "sla_breached":
                yield str(doc.get("owner") or "")

    # -- suppressions and a lead's data --------------------------------------------------------
    @staticmethod
    def address_hash(address: str) -> str:
        return hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()

    def suppress(self, address: str, reason: str, at: int, sender: Optional[str] = None) -> None:
        """Put an address on the sender's suppression list (the funnel's sender unless
        named; EVERY_SENDER for all)."""
        self.write(self.writes().suppress(address, reason, at, sender))

    def suppressed(self, address: str) -> Optional[str]:
        """Why the address may get no email from this funnel's sender, or None."""
        row = self.conn.execute("SELECT reason FROM suppressions WHERE address = ? AND sender IN (?, ?) "
                                "ORDER BY sender = ? DESC LIMIT 1",
                                (self.address_hash(address), self.sender, EVERY_SENDER, EVERY_SENDER)).fetchone()
        return row[0] if row else None

    def opt_out_waiting(self, address: str) -> Optional[str]:
        """An unsubscribe or complaint for the address that waits in the inbox of any
        funnel (stamped after the clock, say, or stored while fnl run was down): its kind,
        or None. Email waits for it, consent first."""
        # The terms of the partial index `inbox_opt_out`, word for word, so it is used.
        row = self.conn.execute("SELECT event FROM inbox WHERE lower(lead) = ? AND applied = 0 AND " + _OPT_OUT +
                                " LIMIT 1", (address.strip().lower(),)).fetchone()
        if row is None:
            return None
        return "complaint" if '"email.complained"' in row[0] else "unsubscribe"

    def export(self, lead: str) -> dict:
        """Everything the database holds about a lead, in every funnel."""
        funnels = {}
        for (funnel,) in self.conn.execute("SELECT DISTINCT funnel FROM leads WHERE lead = ? UNION SELECT DISTINCT "
                                           "funnel FROM inbox WHERE lead = ? ORDER BY 1", (lead, lead)).fetchall():
            row = self.conn.execute("SELECT state FROM leads WHERE funnel = ? AND lead = ?", (funnel, lead)).fetchone()
            funnels[funnel] = {
                "state": json.loads(codec.encode(codec.decode(row[0]))) if row and row[0] is not None else None,
                # each event as fnl's events are written (`at` in ISO 8601), not the inbox's stored form
                "events": [codec.decode_event(json.loads(text), f"inbox row {seq}").to_json()
                           for (seq, text) in self.conn.execute(
                               "SELECT seq, event FROM inbox WHERE funnel = ? AND lead = ? ORDER BY seq",
                               (funnel, lead)).fetchall()],
                "actions": [dict(json.loads(text), status=status) for (text, status) in self.conn.execute(
                    "SELECT action, status FROM outbox WHERE funnel = ? AND lead = ? ORDER BY seq",
                    (funnel, lead)).fetchall()]}
        suppressed = {sender: reason for sender, reason in self.conn.execute(
            "SELECT sender, reason FROM suppressions WHERE address = ? ORDER BY sender",
            (self.address_hash(lead),)).fetchall()}
        return {"lead": lead, "funnels": funnels, "suppressed": suppressed}

    def forget(self, lead: str, at: int) -> int:
        """Erase a lead's data in every funnel, keeping only its address's hash on the
        suppression list of every sender: how many rows went."""
        with self.transaction():
            gone = sum(self.conn.execute(f"DELETE FROM {table} WHERE lead = ?", (lead,)).rowcount
                       for table in ("leads", "outbox"))
            # The inbox keeps each event's ID (a hash) and nothing else, so a log replayed
            # later cannot bring the lead back.
            gone += self.conn.execute("UPDATE inbox SET event = '{}', lead = '', applied = 1 WHERE lead = ?",
                                      (lead,)).rowcount
            self.suppress(lead, "forgotten", at, EVERY_SENDER)
        return gone

    def outbox_statuses(self) -> dict:
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox WHERE funnel = ? GROUP BY status",
                                      (self.funnel,)).fetchall())

    def undelivered(self, limit: int = 1000) -> List[Tuple[int, str, str]]:
        """(seq, key, action JSON) of actions not yet delivered, oldest first; on
        PostgreSQL, inside a transaction, locked for this worker (others skip them)."""
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        return self.conn.execute("SELECT seq, key, action FROM outbox WHERE funnel = ? AND status = 'pending' "
                                 "ORDER BY seq LIMIT ?" + lock, (self.funnel, limit)).fetchall()

    def failed(self, seq: int, reason: str, status: str = "failed") -> None:
        """An action no adapter can ever deliver (hostile data in it: `failed`), or that
        consent no longer allows (`suppressed`): parked, with why."""
        with self.transaction():
            self.conn.execute("UPDATE outbox SET status = ?, attempts = attempts + 1 WHERE seq = ?", (status, seq))
            self.set_meta(f"{status}:{seq}", reason)

    def delivered(self, seqs: List[int], at: int) -> None:
        with self.transaction():
            self.conn.executemany("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, "
                                  "delivered_at = ? WHERE seq = ?", [(at, s) for s in seqs])

    def counts(self) -> dict:
        def one(sql: str) -> int:
            return int(self.conn.execute(sql, (self.funnel,)).fetchone()[0])

        return {"events": one("SELECT count(*) FROM inbox WHERE funnel = ?"),
                "pending events": one("SELECT count(*) FROM inbox WHERE funnel = ? AND applied = 0"),
                "leads": one("SELECT count(*) FROM leads WHERE funnel = ? AND state IS NOT NULL"),
                "actions": one("SELECT count(*) FROM outbox WHERE funnel = ?"),
                "undelivered": one("SELECT count(*) FROM outbox WHERE funnel = ? AND status = 'pending'")}


class Committer:
    """The runtime loop's commits, made in order by a thread with a connection of its own
    (`Database.committer`) while the loop goes on to the next events: the disk's flush of
    one commit, and SQLite's work on it, overlap the engine's work instead of adding to it.
    A commit is a batch's writes in one transaction (`Database.write`), or, with `journal`,
    one row of the journal (`Database.log`, the row's text made by the caller), folded into
    the tables every `fold_every` rows and at `close`.

    The loop is at most `depth` commits ahead of the disk, and nothing leaves the process
    before its commit: delivery reads the outbox after `close`. A process that dies loses
    only writes not yet committed, whose events are still unapplied in the inbox, so the
    next run applies them again, to the same actions under the same keys. An error on the
    writer's side is raised to the loop at its next `put`, or at `close`."""

    # How long Python lets a thread hold the interpreter while another waits for it (5 ms by
    # default): the writer, back from a flush, would wait that long to go on.
    SWITCH = 0.00005

    def __init__(self, path: str, journal: bool, depth: int, fold_every: int, after: Callable[[], None]) -> None:
        self.path, self.journal, self.fold_every, self.after = path, journal, fold_every, after
        self.queue: "queue.Queue[Optional[Tuple[Writes, str]]]" = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None
        self.switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self.switch, self.SWITCH))
        self.thread = threading.Thread(target=self._work, name="fnl-commits", daemon=True)
        self.thread.start()

    def put(self, writes: Writes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((writes, writes.to_json() if self.journal else ""))

    def _work(self) -> None:
        db: Optional[Database] = None
        logged = 0
        try:
            db = Database(self.path)  # SQLite's connections stay in the thread that made them
            while True:
                item = self.queue.get()
                if item is None:
                    break
                writes, text = item
                if self.journal:
                    db.log(writes, text)
                    logged += 1
                else:
                    db.write(writes)  # a transaction of its own
                self.after()
                if logged >= self.fold_every:
                    db.fold()
                    logged = 0
            if logged:
                db.fold()
        except BaseException as exc:  # raised again on the loop's side
            self.error = exc
            while self.queue.get() is not None:  # emptied, for a loop waiting to put
                pass
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        """Make every commit put (and fold the journal), and stop; raise the writer's error."""
        try:
            self.queue.put(None)
            self.thread.join()
        finally:
            sys.setswitchinterval(self.switch)
        if self.error is not None:
            raise self.error


class _Lease:
    def __init__(self, path: Optional[str], display: str) -> None:
        self.path, self.display = path, display
        self.fh: Any = None

    def __enter__(self) -> "_Lease":
        if self.path is None:
            return self
        try:
            import fcntl
        except ImportError:  # no flock here: SQLite's own locks keep each transaction whole
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            raise UsageError(f"--db {self.display}: another fnl run works on this database now",
                             "wait for it to end (SQLite takes one run at a time), or give several workers a "
                             "PostgreSQL database") from None
        return self

    def __exit__(self, *_: Any) -> None:
        if self.fh is not None:
            self.fh.close()  # closing the file lets the lock go


class _Transaction:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Any:
        if self.db.depth == 0:
            self.db.conn.execute(self.db._begin)
        self.db.depth += 1
        return self.db.conn

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.depth -= 1
        if self.db.depth == 0:
            self.db.conn.execute("COMMIT" if kind is None else "ROLLBACK")


Opener = Callable[[str], Database]
