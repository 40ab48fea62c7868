"""`fnl run` from end to end: the config and the events checked before any work, the
plan compiled, the events stored, the engine advanced on the virtual clock to a time or
on the wall clock until stopped, and the actions delivered through the adapters."""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from ..errors import UsageError
from ..state import Event, iso, parse_time
from ..terminal import escape
from .intake import Follow
from .intake import read as intake_of


@dataclass(frozen=True)
class Request:
    funnel: str
    db: str
    events: Optional[str] = None
    until: Optional[str] = None
    clock: Optional[str] = None  # virtual | wall (virtual when `until` is given)
    poll: float = 5.0
    actions: Tuple[str, ...] = ()
    config: Optional[str] = None
    commit_every: int = 500  # events per transaction on SQLite (`loop.advance`'s batch)
    rollback: bool = False  # deploy a plan the database ran before and replaced


RETAIN_EVERY = 3600.0  # seconds: the wall clock applies retention once an hour


def run(request: Request, say: Callable[[str], None], out: Callable[[str], None] = print) -> int:
    """Run as `fnl run` does, saying what happened (a line each, escaped) to `say`; the
    `jsonl:-` adapter writes its lines to `out`. How many lines of --events were refused
    (each said; the others applied)."""
    from ..pipeline import compiled_for
    from .config import after_delivery, open_adapters, runtime_config
    from .db import Database
    from .loop import advance, deliver, run_wall

    runtime = runtime_config(request.config, request.actions)  # checked before any work
    clock = request.clock or ("virtual" if request.until is not None else "wall")
    if clock == "virtual" and request.until is None:
        raise UsageError("--clock virtual needs --until TIME", "give the time to run the clock to, or --clock wall")
    try:
        horizon = parse_time(request.until) if request.until is not None else None
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    compiled = compiled_for(request.funnel)
    plan = compiled.plan

    def note(text: str) -> None:
        say(f"fnl: {escape(text)}")

    def refused(text: str) -> None:  # already escaped
        say(f"fnl: {text}")

    follow = request.events == "-" and clock == "wall"  # standard input read as it comes
    intake = intake_of(None if follow else request.events, refused)

    db = Database(request.db).scope(plan.funnel, plan.sender.from_)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(db.lease())
            # Every adapter made (its secrets and addresses checked) before any work, so a
            # missing key stops the run before anything is applied.
            outs = open_adapters(runtime, compiled, db, stack, echo=out)
            new, seen = db.accept(intake.events)
            if follow:
                reader = _follow(request, plan, refused)
            before = db.meta("clock")
            if clock == "wall" and before is not None and time.time() // 60 - int(before) > 1440:
                note(f"the clock was at {iso(int(before))}: every step due since then runs now")
            done = (advance(db, plan, horizon, batch=request.commit_every, rollback=request.rollback)
                    if clock == "virtual" and horizon is not None else None)
            if done is not None and done.note:
                say(done.note.rstrip("\n"))  # escaped by deploy.summary
            if done is not None and before is not None and horizon is not None and horizon < int(before):
                note(f"the clock is already at {iso(int(before))}, later than --until: only events up to "
                     f"{request.until} not applied yet were applied")
            untaken: Counter = Counter()
            try:
                if done is None:  # the wall clock: until stopped, or until --until
                    retained = [0.0]

                    def hourly() -> bool:
                        if retained[0] and time.monotonic() - retained[0] < RETAIN_EVERY:
                            return False
                        retained[0] = time.monotonic()
                        return True

                    run_wall(db, plan, outs, until=horizon, poll=request.poll, say=note, batch=request.commit_every,
                             rollback=request.rollback,
                             after=lambda: after_delivery(runtime, db, outs, retain=hourly()))
                    return reader.refused if follow else intake.refused
                delivered = deliver(db, outs, refused=note, untaken=untaken)
            except OSError as exc:  # a server down, a pipe closed: what is left waits for the next run
                raise UsageError(f"--actions: delivery stopped: {exc.strerror or exc}",
                                 "what was not delivered is delivered by the next run") from None
            if untaken:
                kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(untaken.items(), key=lambda x: (-x[1], x[0])))
                note(f"{sum(untaken.values()):,} actions went to no adapter ({kinds}): kept in the outbox only; "
                     "--actions jsonl:FILE or webhook:URL takes them")
            for line in after_delivery(runtime, db, outs):  # held back by sending limits; retention applied
                note(line)
    finally:
        db.close()
    say(f"{new:,} new event{'s' if new != 1 else ''} ({seen:,} already in the inbox); applied {done.events:,} "
        f"and the clock to {request.until}: {done.actions:,} actions, {delivered:,} delivered."
        + (f" {intake.refused:,} line{'s' if intake.refused != 1 else ''} of --events refused (each said above)."
           if intake.refused else ""))
    return intake.refused


def _follow(request: Request, plan: Any, say: Callable[[str], None]) -> Follow:
    """Standard input into the inbox as it comes, on a database connection of its own."""
    from .db import Database

    opened: List[Any] = []

    def store(events: List[Event]) -> None:
        if not opened:
            opened.append(Database(request.db).scope(plan.funnel, plan.sender.from_))
        opened[0].accept(events)

    reader = Follow(store, say)
    reader.start()
    return reader
