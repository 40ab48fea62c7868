"""Issue 12's benchmark: `fnl run` applying events durably, against the in-memory core and
the storage ceiling, side by side in one script.

A synthetic event log for the acme funnel (the events the per-lead simulator's leads make:
opt-ins, opens, clicks, replies, visits, CRM events) is replayed four ways, each timed
from the first event to the last commit, in this process:

- `drive, in memory`: `engine.drive.drive` over the events (what `fnl trace` does), no I/O;
- `fnl run, batched`: `runtime.loop.advance` into a fresh SQLite database, committing every
  500 events (the default; by a thread beside the engine), state, outbox and inbox in each
  transaction;
- `fnl run, per event`: the same, one commit per event (`fnl run --commit-every 1`: each
  commit one row of the journal, made by a writer process beside the engine on Linux,
  and folded into the tables every 2,000 rows);
- `sqlite3 ceiling, batched` and `per event`: plain `sqlite3` writing one inbox row and one
  outbox row per event with the same pragmas (WAL, synchronous=FULL) and batching: the
  most any durable runtime could do on this disk.

Events are accepted into the inbox before the clock starts (the inbox write is its own
step, timed on its own line). Targets: batched at least 50 % of the in-memory rate; per
event at least 50 % of the lower of the in-memory rate and the per-event ceiling.

On PostgreSQL (`--postgres`: a server of its own from the `pgserver` package, or a URL),
the same events are applied by 1, 2 and 4 `fnl run` workers at once (separate processes
sharing one database, each taking leads with SKIP LOCKED), timed from their start to the
last one's end; the script checks that every worker count gives the same actions under
the same keys as the engine in memory.

    python3 bench/runtime_bench.py                    # about 100,000 events
    python3 bench/runtime_bench.py --leads 5000       # more leads, more events
    python3 bench/runtime_bench.py --postgres auto    # and the workers on PostgreSQL
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


def worker(url: str, until: int) -> int:
    """One worker process of the PostgreSQL rows: `advance` only (no delivery)."""
    from engine.pipeline import plan_for
    from engine.runtime.db import Database
    from engine.runtime.loop import advance

    plan = plan_for(str(REPO / "funnels" / "acme"))
    db = Database(url).scope(plan.funnel, plan.sender.from_)
    done = advance(db, plan, until)
    db.close()
    print(done.events)
    return 0


def postgres_rows(url: str, plan: object, events: List[object], until: int, expected: List[str],
                  counts: List[int]) -> List[tuple]:
    """(label, seconds) for each worker count, each on a database of its own."""
    import subprocess

    import psycopg

    from engine.runtime.db import Database

    rows = []
    for workers in counts:
        name = f"fnl_bench_{workers}_{os.getpid()}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        target = url.replace("/postgres?", f"/{name}?") if "/postgres?" in url else url.rsplit("/", 1)[0] + "/" + name
        db = Database(target).scope(plan.funnel, plan.sender.from_)  # type: ignore[attr-defined]
        db.accept(events)  # type: ignore[arg-type]
        db.close()
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", target, str(until)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(workers)]
        outs = [p.communicate() for p in procs]
        seconds = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            raise SystemExit(f"a worker failed: {outs}")
        applied = [int(o[0]) for o in outs]
        with psycopg.connect(target) as conn:
            got = sorted(a for (a,) in conn.execute("SELECT action FROM outbox"))
        same = "same actions" if got == expected else "DIFFERENT actions"
        rows.append((f"postgres, {workers} worker{'s' if workers > 1 else ''} ({same}; "
                     f"{'/'.join(f'{a:,}' for a in applied)})", seconds))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
    return rows


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--postgres", default=None, metavar="URL|auto",
                    help="also time 1, 2 and 4 workers on PostgreSQL (auto: a pgserver of its own)")
    ap.add_argument("--workers", default="1,2,4", help="the worker counts on PostgreSQL")
    args = ap.parse_args()
    from engine.drive import drive
    from engine.runtime.db import Database
    from engine.runtime.loop import BATCH, advance

    plan, events, until = synthetic_events(args.leads, args.days)
    n = len(events)  # type: ignore[arg-type]
    rows = []
    t0 = time.perf_counter()
    expected: List[str] = []
    steps = 0
    for item in drive(plan, events, until=until):  # type: ignore[arg-type]
        steps += 1
        expected.extend(json.dumps(a.to_json(), sort_keys=True, separators=(",", ":"), default=str)
                        for a in item.result.actions)
    memory = time.perf_counter() - t0
    expected.sort()
    rows.append(("drive, in memory", memory))
    with tempfile.TemporaryDirectory(prefix="fnl-runtime-bench-") as folder:
        for label, batch in (("fnl run, batched", BATCH), ("fnl run, per event", 1)):
            db = Database(os.path.join(folder, f"run-{batch}.db")).scope(plan.funnel, plan.sender.from_)  # type: ignore[attr-defined]
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
        if args.postgres:
            url = args.postgres
            if url == "auto":
                import pgserver

                server = pgserver.get_server(os.path.join(folder, "pg"), cleanup_mode="stop")
                url = server.get_uri()
            rows += postgres_rows(url, plan, events, until, expected,  # type: ignore[arg-type]
                                  [int(c) for c in args.workers.split(",")])
            if args.postgres == "auto":
                server.cleanup()
    print(f"acme, {args.leads:,} leads over {args.days} days: {n:,} events, {steps:,} engine steps "
          f"({done.actions:,} actions); Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    width = max(36, max(len(label) for label, _ in rows) + 2)
    print(f"{'':<{width}}{'seconds':>9}{'events/s':>12}")
    rates = {}
    for label, seconds in rows:
        rates[label] = n / seconds
        print(f"{label:<{width}}{seconds:>9.2f}{n / seconds:>12,.0f}")
    batched, per_event = rates["fnl run, batched"], rates["fnl run, per event"]
    mem = rates["drive, in memory"]
    floor = min(mem, rates["sqlite3 ceiling, per event"])
    print(f"\ntarget: batched at least 50 % of the in-memory rate: {'met' if batched >= mem / 2 else 'NOT met'} "
          f"({batched / mem:.0%})")
    print(f"target: per event at least 50 % of the lower of the in-memory rate and the per-event ceiling: "
          f"{'met' if per_event >= floor / 2 else 'NOT met'} ({per_event / floor:.0%})")
    import resource

    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB "
          "(the event log itself included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
