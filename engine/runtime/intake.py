"""The events `fnl run --events` takes: a JSON Lines file, or standard input (`-`), read
line by line with the reader `fnl trace` uses. A malformed, oversized or hostile line is
refused on its own with a one-line reason (file, line, column, what is wrong, how to
fix it) and the rest go on: one bad line never stops the stream. On the wall clock,
standard input is read as it comes, each line stored in the inbox as soon as it is read,
where the next round applies it."""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import Problem
from ..state import Event
from ..terminal import escape
from ..trace import MAX_LINE, _parse, _raw_lines


@dataclass(frozen=True)
class Intake:
    events: Tuple[Event, ...]
    refused: int  # lines refused, each said


def refusal(problem: Problem) -> str:
    """A refused line in one line: where, what, and how to fix it."""
    where = problem.location
    fix = f" ({problem.help})" if problem.help else ""
    return escape(f"{where.file}:{where.line}:{where.column}: refused: {problem.message}{fix}")


def stream_lines(stream: BinaryIO) -> Iterator[Tuple[int, Optional[bytes]]]:
    """(line number, bytes) of a stream as the lines come; None for a line longer than
    MAX_LINE, skipped without being held whole."""
    number = 0
    while True:
        number += 1
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # the rest of an overlong line, in pieces
                line = stream.readline(MAX_LINE + 1)
            yield number, None
            continue
        yield number, line.rstrip(b"\n").rstrip(b"\r")


def _lines(source: str, stdin: Optional[BinaryIO]) -> Tuple[str, Iterator[Tuple[int, Optional[bytes]]]]:
    if source == "-":
        return "<stdin>", stream_lines(stdin or sys.stdin.buffer)
    path = Path(source)
    return source, _raw_lines(path)


def events_of(source: str, say: Callable[[str], None], stdin: Optional[BinaryIO] = None
              ) -> Iterator[Tuple[Optional[Event], Optional[str]]]:
    """(an event, or None with the refusal said) for each line that is not blank."""
    display, lines = _lines(source, stdin)
    ignored: Dict[Optional[str], int] = {}
    for number, raw in lines:
        event, problem = _parse(number, raw, display, ignored)
        if problem is not None:
            text = refusal(problem)
            say(text)
            yield None, text
        elif event is not None:
            yield event, None


def read(source: Optional[str], say: Callable[[str], None], stdin: Optional[BinaryIO] = None) -> Intake:
    """Every event of a file or of standard input to its end; each bad line said."""
    if source is None:
        return Intake((), 0)
    events: List[Event] = []
    refused = 0
    try:
        for event, _ in events_of(source, say, stdin):
            if event is None:
                refused += 1
            else:
                events.append(event)
    except OSError as exc:
        from ..errors import UsageError

        raise UsageError(f"--events {source}: cannot read: {exc.strerror or exc}",
                         "give the JSON Lines file of events, or - for standard input") from None
    except ValueError as exc:
        from ..errors import UsageError

        raise UsageError(f"--events {source}: {exc}") from None
    return Intake(tuple(events), refused)


class Follow(threading.Thread):
    """Standard input read as it comes, on the wall clock: each event stored in the inbox
    (`store`, on a database connection of this thread's own) as soon as it is read."""

    def __init__(self, store: Callable[[List[Event]], None], say: Callable[[str], None],
                 stdin: Optional[BinaryIO] = None) -> None:
        super().__init__(name="fnl-events", daemon=True)
        self.store, self.say, self.stdin = store, say, stdin
        self.refused = 0
        self.taken = 0

    def run(self) -> None:
        for event, _ in events_of("-", self.say, self.stdin):
            if event is None:
                self.refused += 1
            else:
                self.store([event])
                self.taken += 1
