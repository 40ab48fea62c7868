"""Issue 12's benchmark: `fnl run` applying events durably, against the in-memory core and
the storage ceiling, side by side in one script.

A synthetic event log for the acme funnel (the events the per-lead simulator's leads make:
opt-ins, opens, clicks, replies, visits, CRM events) is replayed four ways, each timed
from the first event to the last commit, in this process:

- `drive, in memory`: `engine.drive.drive` over the events (what `fnl trace` does), no I/O;
- `fnl run, batched`: `runtime.loop.advance` into a fresh SQLite database, committing every
  500 engine steps (the default), state, outbox and inbox in each transaction;
- `fnl run, per event`: the same, one commit per engine step;
- `sqlite3 ceiling, batched` and `per event`: plain `sqlite3` writing one inbox row and one
  outbox row per event with the same pragmas (WAL, synchronous=FULL) and batching: the
  most any durable runtime could do on this disk.

Events are accepted into the inbox before the clock starts (the inbox write is its own
step, timed on its own line). Targets: batched at least 50 % of the in-memory rate; per
event at least 50 % of the lower of the in-memory rate and the per-event ceiling.

    python3 bench/runtime_bench.py                    # about 100,000 events
    python3 bench/runtime_bench.py --leads 5000       # more leads, more events
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_events(leads: int, days: int) -> List[object]:
    from engine.drive import Driver
    from engine.pipeline import plan_for
    from engine.simulate import DEFAULT_START
    import engine.simulate.run as simulate_run
    from engine.simulate.behavior import find_behavior, load_behavior
    from engine.state import CLOCK, parse_time

    plan = plan_for(str(REPO / "funnels" / "acme"))
    behavior = load_behavior(find_behavior(REPO / "funnels" / "acme"), plan)  # type: ignore[arg-type]
    applied: List[object] = []

    class Recording(Driver):
        def apply(self, event):  # type: ignore[no-untyped-def]
            if event.type != CLOCK:
                applied.append(event)
            return super().apply(event)

    original = simulate_run.Driver
    simulate_run.Driver = Recording  # type: ignore[misc]
    try:
        run = simulate_run.simulate(plan, behavior, seed=3, leads=leads, horizon=days * 1440,
                                    start=parse_time(DEFAULT_START), engine="per-lead")
    finally:
        simulate_run.Driver = original  # type: ignore[misc]
    return [plan, applied, run.start + run.horizon - 1]  # type: ignore[list-item]


def ceiling(n: int, folder: str, batch: int) -> float:
    """Seconds for plain sqlite3 to write n inbox rows and n outbox rows, committing every `batch`."""
    conn = sqlite3.connect(os.path.join(folder, f"ceiling-{batch}.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE inbox (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, event TEXT)")
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, key TEXT UNIQUE, action TEXT)")
    payload = json.dumps({"type": "email.opened", "at": "2026-01-05T10:00:00Z", "lead": "x" * 30})
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    for i in range(n):
        conn.execute("INSERT INTO inbox (id, event) VALUES (?, ?)", (f"e{i}", payload))
        conn.execute("INSERT INTO outbox (key, action) VALUES (?, ?)", (f"a{i}", payload))
        if (i + 1) % batch == 0:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=120)
    args = ap.parse_args()
    from engine.drive import drive
    from engine.runtime.db import Database
    from engine.runtime.loop import BATCH, advance

    plan, events, until = synthetic_events(args.leads, args.days)
    n = len(events)  # type: ignore[arg-type]
    rows = []
    t0 = time.perf_counter()
    steps = sum(1 for _ in drive(plan, events, until=until))  # type: ignore[arg-type]
    memory = time.perf_counter() - t0
    rows.append(("drive, in memory", memory))
    with tempfile.TemporaryDirectory(prefix="fnl-runtime-bench-") as folder:
        for label, batch in (("fnl run, batched", BATCH), ("fnl run, per event", 1)):
            db = Database(os.path.join(folder, f"run-{batch}.db"))
            t1 = time.perf_counter()
            db.accept(events)  # type: ignore[arg-type]
            accepted = time.perf_counter() - t1
            t1 = time.perf_counter()
            done = advance(db, plan, until, batch=batch)  # type: ignore[arg-type]
            rows.append((label, time.perf_counter() - t1))
            db.close()
            if batch == BATCH:
                rows.append(("  (inbox write, before the clock)", accepted))
        per_event_ceiling = ceiling(n, folder, 1)
        rows.append(("sqlite3 ceiling, batched", ceiling(n, folder, BATCH)))
        rows.append(("sqlite3 ceiling, per event", per_event_ceiling))
    print(f"acme, {args.leads:,} leads over {args.days} days: {n:,} events, {steps:,} engine steps "
          f"({done.actions:,} actions); Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'':<36}{'seconds':>9}{'events/s':>12}")
    rates = {}
    for label, seconds in rows:
        rates[label] = n / seconds
        print(f"{label:<36}{seconds:>9.2f}{n / seconds:>12,.0f}")
    batched, per_event = rates["fnl run, batched"], rates["fnl run, per event"]
    mem = rates["drive, in memory"]
    floor = min(mem, rates["sqlite3 ceiling, per event"])
    print(f"\ntarget: batched at least 50 % of the in-memory rate: {'met' if batched >= mem / 2 else 'NOT met'} "
          f"({batched / mem:.0%})")
    print(f"target: per event at least 50 % of the lower of the in-memory rate and the per-event ceiling: "
          f"{'met' if per_event >= floor / 2 else 'NOT met'} ({per_event / floor:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
