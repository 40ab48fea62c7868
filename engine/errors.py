"""One root error, and the located problem every stage reports.

Problems are values (`Problem`), collected in batches so that one bad file hides
nothing. `FnlError` is raised only for conditions that stop a whole command: a path
that does not exist, a usage mistake, an internal error. `fnl.py` maps each to an
exit code; users never see a traceback unless they ask for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple, Union

PathPart = Union[str, int]
JsonPath = Tuple[PathPart, ...]

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CHANGES = 2
EXIT_USAGE = 3
EXIT_INTERNAL = 4

# What each exit code means: the one statement of them. `fnl --help` prints it, and the
# README and every --help that names an exit code are checked against it (tests/test_help.py).
EXIT_MEANINGS: Tuple[Tuple[int, str], ...] = (
    (EXIT_OK, "no problems"),
    (EXIT_PROBLEMS, "problems found"),
    (EXIT_CHANGES, "changes (`fnl plan --detailed-exitcode` only)"),
    (EXIT_USAGE, "usage error, or a path that does not exist or cannot be read"),
    (EXIT_INTERNAL, "internal error (a bug in fnl)"),
)


def exit_codes_text() -> str:
    """The exit codes in one line: `0 no problems, 1 problems found, ...`."""
    return "; ".join(f"{code} {meaning}" for code, meaning in EXIT_MEANINGS)

SEVERITIES = ("error", "warning", "info")
MAX_SOURCE_LINE = 400


@dataclass(frozen=True)
class Location:
    """Where something is in a source file; line and column are 1-based."""

    file: str
    line: int = 1
    column: int = 1


def json_path(path: JsonPath) -> str:
    """Render a path the way users read it: `sequences.nurture-saas.steps[2].wait`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "$"


def json_pointer(path: JsonPath) -> str:
    """RFC 6901 pointer for machine consumers (`/sequences/nurture-saas/steps/2`)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong, where, and how to fix it."""

    code: str
    message: str
    location: Location
    path: JsonPath = ()
    help: str = ""
    severity: str = "error"
    # Lines of context (the offending source line) filled in by the loader when known.
    source_line: str = ""
    # Less relevant alternatives, shown only with -v.
    related: Tuple[str, ...] = field(default=())
    # Where `source_line` starts within the real line (non-zero only for clipped lines).
    source_offset: int = 0

    def __post_init__(self) -> None:
        # Keep memory bounded for minified or hostile one-line files.
        if len(self.source_line) > MAX_SOURCE_LINE:
            start = max(0, self.location.column - 1 - MAX_SOURCE_LINE // 2)
            clipped = self.source_line[start:start + MAX_SOURCE_LINE]
            object.__setattr__(self, "source_line", clipped)
            object.__setattr__(self, "source_offset", self.source_offset + start)

    @property
    def dotted_path(self) -> str:
        return json_path(self.path)


class FnlError(Exception):
    """Root of every error fnl raises on purpose."""

    exit_code = EXIT_PROBLEMS

    def __init__(self, message: str, help: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.help = help


class UsageError(FnlError):
    """Bad command line, or a path that does not exist or cannot be read."""

    exit_code = EXIT_USAGE


class ProblemsFound(FnlError):
    """A stage that cannot go on because its input has problems."""

    def __init__(self, problems: Tuple[Problem, ...], context: str = "") -> None:
        first = problems[0] if problems else None
        super().__init__(first.message if first else "problems found")
        self.problems = problems
        # One line printed after the problems, saying what could not be done because of
        # them (set by commands that need it, e.g. `fnl plan`); empty: nothing more.
        self.context = context
