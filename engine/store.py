"""Every lead's state, in memory bounded whatever the number of leads.

`StateStore` is a mapping lead -> `core.State` that behaves like a dict (get, `in`,
set, delete, iteration, len, items) but keeps at most `live` states as Python objects:
the least recently used ones move to a private temporary SQLite file, and come back
when a lead is next read. A lead's state is about 3.4 KB as objects and a few hundred
bytes pickled and compressed, so a trace of a million events over 200,000 leads stays
in bounded memory (the file grows on disk instead). Below `live` leads nothing is
written and the store is an OrderedDict.

The file is created only when the first state spills, in a directory of its own under
`tempfile.gettempdir()` (TMPDIR), and removed when the store is closed or collected.
Iteration order is not insertion order (live leads first, then the rest by lead):
nothing in the engine depends on the order of `Driver.states`.
"""
from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import tempfile
import weakref
import zlib
from collections import OrderedDict
from collections.abc import ItemsView, MutableMapping, ValuesView
from typing import Any, Iterator, List, Optional, Set, Tuple

LIVE_STATES = 20_000  # states kept as objects; FNL_LIVE_STATES overrides it (tests set it low)
LIVE_STATES_ENV = "FNL_LIVE_STATES"
_PAGE = 1000  # leads read from the file per query while iterating

# A live entry: [state, whether the file holds a row for the lead, whether the row holds this state]
_STATE, _HAS_ROW, _CLEAN = 0, 1, 2


def live_limit() -> int:
    """LIVE_STATES, or FNL_LIVE_STATES when it is a positive whole number."""
    text = os.environ.get(LIVE_STATES_ENV, "").strip()
    try:
        value = int(text)
    except ValueError:
        return LIVE_STATES
    return value if value > 0 else LIVE_STATES


def _encode(state: Any) -> bytes:
    return zlib.compress(pickle.dumps(state, protocol=5), 1)


def _decode(blob: bytes) -> Any:
    # Safe to unpickle: the file is private (a fresh mkdtemp directory, mode 0700) and only
    # this process writes it, with states it pickled itself. Nothing from input is ever
    # unpickled.
    return pickle.loads(zlib.decompress(blob))


def _remove(connection: Optional[sqlite3.Connection], folder: str) -> None:
    if connection is not None:
        try:
            connection.close()
        except sqlite3.Error:
            pass
    shutil.rmtree(folder, ignore_errors=True)


class _Values(ValuesView[Any]):
    _mapping: "StateStore"

    def __iter__(self) -> Iterator[Any]:
        for _, state in self._mapping._pairs():
            yield state


class _Items(ItemsView[str, Any]):
    _mapping: "StateStore"

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return self._mapping._pairs()


class StateStore(MutableMapping[str, Any]):
    """lead -> state, like a dict, with at most `live` states in memory (see the module
    docstring). Reads promote a lead to most recently used; `in`, iteration, `items`
    and `values` do not."""

    def __init__(self, live: Optional[int] = None) -> None:
        self.live = live if live is not None and live > 0 else live_limit()
        # Evicted in batches (one executemany), down to `live - _batch` entries.
        self._batch = max(1, self.live // 8)
        self._live: "OrderedDict[str, List[Any]]" = OrderedDict()
        self._db: Optional[sqlite3.Connection] = None
        self._folder: Optional[str] = None
        self._finalizer: Optional[weakref.finalize] = None
        self._rows = 0  # rows in the file
        self._both = 0  # live leads that also have a row (counted once by len)

    # -- the file ------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self._folder = tempfile.mkdtemp(prefix="fnl-states-")
            db = sqlite3.connect(os.path.join(self._folder, "states.sqlite"), isolation_level=None,
                                 check_same_thread=False)
            self._finalizer = weakref.finalize(self, _remove, db, self._folder)
            # Scratch space for this process only: no journal, no fsync, no other reader.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("CREATE TABLE states (lead TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID")
            self._db = db
        return self._db

    def _read(self, lead: str) -> Optional[bytes]:
        if self._db is None or not self._rows:
            return None
        row = self._db.execute("SELECT state FROM states WHERE lead = ?", (lead,)).fetchone()
        return None if row is None else row[0]

    def _evict(self) -> None:
        """Move the least recently used states to the file until `live - _batch` are left."""
        live = self._live
        keep = self.live - self._batch
        writes: List[Tuple[str, bytes]] = []
        while len(live) > keep:
            lead, entry = live.popitem(last=False)
            if entry[_HAS_ROW]:
                self._both -= 1
            else:
                self._rows += 1
            if not entry[_CLEAN]:
                writes.append((lead, _encode(entry[_STATE])))
        if writes:
            db = self._open()
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO states (lead, state) VALUES (?, ?)", writes)
            db.execute("COMMIT")

    def close(self) -> None:
        """Forget every state and remove the file (the store is empty afterwards)."""
        self._live.clear()
        self._rows = self._both = 0
        if self._finalizer is not None:
            self._finalizer()
        self._db = self._folder = self._finalizer = None

    @property
    def spilled(self) -> bool:
        """Whether any state has been moved to the file."""
        return self._db is not None

    # -- the mapping ---------------------------------------------------------------------

    def get(self, lead: str, default: Any = None) -> Any:
        entry = self._live.get(lead)
        if entry is not None:
            self._live.move_to_end(lead)
            return entry[_STATE]
        if not isinstance(lead, str):
            hash(lead)  # a dict's TypeError for an unhashable key
            return default
        blob = self._read(lead)
        if blob is None:
            return default
        state = _decode(blob)
        self._live[lead] = [state, True, True]
        self._both += 1
        if len(self._live) > self.live:
            self._evict()
        return state

    def __getitem__(self, lead: str) -> Any:
        missing = _MISSING
        state = self.get(lead, missing)
        if state is missing:
            raise KeyError(lead)
        return state

    def __setitem__(self, lead: str, state: Any) -> None:
        live = self._live
        entry = live.get(lead)
        if entry is not None:
            entry[_STATE] = state
            entry[_CLEAN] = False
            live.move_to_end(lead)
            return
        if not isinstance(lead, str):
            hash(lead)  # a dict's TypeError for an unhashable key
            raise TypeError(f"lead IDs are strings, not {type(lead).__name__}")
        has_row = self._read(lead) is not None
        live[lead] = [state, has_row, False]
        if has_row:
            self._both += 1
        if len(live) > self.live:
            self._evict()

    def __delitem__(self, lead: str) -> None:
        entry = self._live.pop(lead, None)
        if entry is not None:
            if entry[_HAS_ROW]:
                self._delete_row(lead)
                self._both -= 1
            return
        if not self._rows or not isinstance(lead, str) or not self._delete_row(lead):
            raise KeyError(lead)

    def _delete_row(self, lead: str) -> bool:
        assert self._db is not None
        gone = self._db.execute("DELETE FROM states WHERE lead = ?", (lead,)).rowcount > 0
        if gone:
            self._rows -= 1
        return gone

    def __contains__(self, lead: object) -> bool:
        if lead in self._live:
            return True
        return isinstance(lead, str) and self._read(lead) is not None

    def __len__(self) -> int:
        return len(self._live) + self._rows - self._both

    def __iter__(self) -> Iterator[str]:
        for lead, _ in self._pairs(values=False):
            yield lead

    def _pairs(self, values: bool = True) -> Iterator[Tuple[str, Any]]:
        """(lead, state) for every lead, without promoting any: the live ones, then the
        file's by lead, a page at a time. Like a dict, a change of size while iterating
        raises RuntimeError."""
        size = len(self)
        seen: Set[str] = set(self._live)
        for lead in list(self._live):
            entry = self._live.get(lead)
            if entry is None or len(self) != size:
                raise RuntimeError("StateStore changed size during iteration")
            yield lead, entry[_STATE]
        if self._db is None:
            return
        after = ""
        first = True
        column = "state" if values else "NULL"
        while True:
            if len(self) != size:
                raise RuntimeError("StateStore changed size during iteration")
            db = self._db
            if db is None:
                return
            query = f"SELECT lead, {column} FROM states WHERE lead {'>=' if first else '>'} ? ORDER BY lead LIMIT ?"
            page = db.execute(query, (after, _PAGE)).fetchall()
            first = False
            for lead, blob in page:
                if lead in seen:
                    continue
                if len(self) != size:
                    raise RuntimeError("StateStore changed size during iteration")
                entry = self._live.get(lead)  # promoted since: the live state is the newer one
                if entry is not None:
                    yield lead, entry[_STATE]
                else:
                    yield lead, _decode(blob) if values else None
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def items(self) -> ItemsView[str, Any]:
        return _Items(self)

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def clear(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({len(self)} leads, {len(self._live)} live)"


_MISSING: Any = object()

__all__ = ["LIVE_STATES", "LIVE_STATES_ENV", "StateStore", "live_limit"]
