"""Reading a compiled plan file (`fnl plan OLD.json NEW`) as untrusted input.

A plan file may have been edited by hand, truncated, or written by anything at all, so
it is read like a definition: within a size bound (counted while reading, not taken from
the file system), as strict UTF-8, as JSON with bounded nesting and numbers, and then
checked against `schemas/plan.schema.json` before any of it is used. Every problem is
located: file, line and column, and the JSON path of the value (FNL701 for a file that
cannot be read as JSON, FNL702 for JSON that is not a valid plan).

A file that is JSON but not a plan at all (no `format_version` 1 or 2) is a usage error:
the wrong file was given.
"""
from __future__ import annotations

import itertools
import json
import operator
import re
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from . import plan as p
from .errors import JsonPath, Location, Problem, ProblemsFound, UsageError

MAX_BYTES = 2 * 1024 * 1024  # a compiled plan is tens of kilobytes (acme: 42 KB), read within 2 s at this bound
MAX_DEPTH = 512  # the deepest plan `fnl compile` writes is about 500 levels (a 2,000-character condition)
MAX_NUMBER_CHARS = 40
MAX_PROBLEMS = 20
HELP = "give a plan file written by `fnl compile` (unchanged), or a definition"
NUMBER_HELP = "write numbers of at most 40 characters (finite), and no NaN or Infinity"

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BSTRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class _BadNumber(ValueError):
    pass


def _constant(text: str) -> Any:
    raise _BadNumber(f"`{text}` is not a JSON number")


# A number of more than 40 characters, or with an exponent of 100 or more (1e999 would be
# infinite); found in the raw bytes (C speed), confirmed outside strings only on a match.
_LONG_NUMBER = re.compile(rb"[0-9.]{%d,}|[0-9][eE]\+?[0-9]{3,}" % (MAX_NUMBER_CHARS + 1))


def _bad_number(raw: bytes) -> Optional[int]:
    if _LONG_NUMBER.search(raw) is None:
        return None
    blanked = _BSTRING.sub(lambda m: b'"' + b" " * (len(m.group()) - 2) + b'"', raw)
    found = _LONG_NUMBER.search(blanked)
    return None if found is None else found.start()


def _line_col(text: str, offset: int) -> Tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _source_line(text: str, line: int) -> str:
    lines = text.split("\n", line)
    return lines[line - 1] if len(lines) >= line else ""


def locate(text: str, path: JsonPath) -> int:
    """The offset of the value at `path` in JSON `text` (as far down the path as it
    exists). Skips siblings with the C decoder, so it is fast on large files."""
    decoder = json.JSONDecoder()
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    try:
        for part in path:
            if text.startswith("{", i) and isinstance(part, str):
                j = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                found: Optional[int] = None
                while j < len(text) and text[j] == '"':
                    key, j = json.decoder.scanstring(text, j + 1)  # type: ignore[attr-defined]
                    j = _WS.match(text, j).end()  # type: ignore[union-attr]
                    j = _WS.match(text, j + 1).end()  # type: ignore[union-attr]  # past ':'
                    if key == part:
                        found = j  # the last one wins, as in json.loads
                    _, j = decoder.raw_decode(text, j)
                    j = _WS.match(text, j).end()  # type: ignore[union-attr]
                    if text.startswith(",", j):
                        j = _WS.match(text, j + 1).end()  # type: ignore[union-attr]
                if found is None:
                    return i
                i = found
            elif text.startswith("[", i) and isinstance(part, int):
                j = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                for _ in range(part):
                    _, j = decoder.raw_decode(text, j)
                    j = _WS.match(text, j).end()  # type: ignore[union-attr]
                    j = _WS.match(text, j + 1).end()  # type: ignore[union-attr]  # past ','
                i = j
            else:
                return i
    except (ValueError, RecursionError, IndexError):
        pass
    return i


# Per byte: 2 opens, 0 closes, 1 neither; depth after byte k is (sum of the first k + 1) - (k + 1).
_DEPTH_STEP = bytes(2 if c in b"[{" else 0 if c in b"]}" else 1 for c in range(256))
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


def _deepest(steps: bytes) -> Iterator[int]:
    """Indices where depth goes past MAX_DEPTH, for bytes mapped by _DEPTH_STEP."""
    depths = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return itertools.compress(itertools.count(), map(operator.lt, itertools.repeat(MAX_DEPTH), depths))


def _too_deep(raw: bytes) -> Optional[int]:
    """The byte offset where nesting first goes deeper than MAX_DEPTH, or None. Decided
    before parsing, with strings taken out, by C-speed iterators over the brackets alone:
    no parser recursion is ever risked, and a 2 MiB file takes a fraction of a second."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return None
    brackets = _BSTRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if next(_deepest(brackets.translate(_DEPTH_STEP)), None) is None:
        return None
    # Too deep: now find where, in the file itself (strings blanked, offsets kept).
    blanked = _BSTRING.sub(lambda m: b'"' + b" " * (len(m.group()) - 2) + b'"', raw)
    return next(_deepest(blanked.translate(_DEPTH_STEP)), None)


def _read(path: Path, name: str) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}", HELP) from None
    if len(raw) > MAX_BYTES:
        raise ProblemsFound((Problem("FNL701", f"plan file is larger than {MAX_BYTES // 1048576} MiB",
                                     Location(name), help=HELP),))
    return raw


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        raise ProblemsFound((Problem("FNL701", f"plan file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                                     Location(name, line, column), help=HELP),)) from None


def _problem(text: str, name: str, offset: int, message: str, path: JsonPath = (), code: str = "FNL701",
             help: str = HELP) -> Problem:
    line, column = _line_col(text, offset)
    return Problem(code, message, Location(name, line, column), path, help, source_line=_source_line(text, line))


def _parse(text: str, name: str) -> Any:
    try:
        return json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ProblemsFound((_problem(text, name, exc.pos, f"not valid JSON: {exc.msg}"),)) from None
    except ValueError as exc:  # NaN or Infinity (or an integer past Python's digit limit)
        # The decoder does not say where; find the first such value outside strings.
        found = re.search(r"-?(?:NaN|Infinity)|[0-9]{%d,}" % MAX_NUMBER_CHARS,
                          _STRING.sub(lambda m: " " * len(m.group()), text))
        raise ProblemsFound((_problem(text, name, found.start() if found else 0, str(exc),
                                      help=NUMBER_HELP),)) from None
    except RecursionError:  # not expected after the depth check; located at the start if it happens
        raise ProblemsFound((_problem(text, name, 0, "nesting is too deep to read"),)) from None


def _schema_problems(data: Any, text: str, name: str) -> List[Problem]:
    import fastjsonschema
    from jsonschema.exceptions import best_match

    from .validate import _fast_check, _validator

    try:
        _fast_check("plan")(data)
        return []
    except fastjsonschema.JsonSchemaException as fast:
        first = fast
    except RecursionError:
        first = None
    problems: List[Problem] = []
    try:
        errors: Iterator[Any] = _validator("plan").iter_errors(data)
        for error in errors:
            # In a union (a condition, an optional value), the branch the value was meant for.
            error = best_match([error]) or error
            path = tuple(error.absolute_path)
            problems.append(_explain(text, name, path, error.message))
            if len(problems) >= MAX_PROBLEMS:
                break
    except RecursionError:
        problems = []
    if not problems and first is not None:
        path = _fast_path(data, list(getattr(first, "path", None) or [])[1:])
        problems.append(_explain(text, name, path, str(getattr(first, "message", first))))
    if not problems:
        problems.append(_problem(text, name, 0, "not a valid plan", code="FNL702"))
    problems.sort(key=lambda x: (x.location.line, x.location.column))
    return problems


def _fast_path(data: Any, parts: List[str]) -> JsonPath:
    out: List[Any] = []
    here = data
    for part in parts:
        if isinstance(here, list) and str(part).isdigit():
            index = int(part)
            out.append(index)
            here = here[index] if index < len(here) else None
        elif isinstance(here, dict) and part in here:
            out.append(part)
            here = here[part]
        else:
            break
    return tuple(out)


def _explain(text: str, name: str, path: JsonPath, message: str) -> Problem:
    if len(message) > 200:
        message = message[:197] + "…"
    return _problem(text, name, locate(text, path), message, path, code="FNL702")


def read(path: Path, name: str) -> p.Plan:
    """The plan in a plan file, or ProblemsFound (located) / UsageError (not a plan)."""
    return parse(_read(path, name), name)


def parse(raw: bytes, name: str) -> p.Plan:
    """The plan in the text of a plan file (the runtime's database keeps the text of the
    plan it runs), read as `read` reads a file; `name` says where the text is from."""
    if len(raw) > MAX_BYTES:
        raise ProblemsFound((Problem("FNL701", f"plan file is larger than {MAX_BYTES // 1048576} MiB",
                                     Location(name), help=HELP),))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = _decode(raw, name)
    deep = _too_deep(raw)
    if deep is not None:
        offset = len(raw[:deep].decode("utf-8"))
        raise ProblemsFound((_problem(text, name, offset, f"nesting is deeper than {MAX_DEPTH} levels",
                                      help="a plan nests conditions at most a few hundred levels deep; "
                                      "give a file written by `fnl compile`"),))
    bad = _bad_number(raw)
    if bad is not None:
        raise ProblemsFound((_problem(text, name, len(raw[:bad].decode("utf-8")), "number too long or too large",
                                      help=NUMBER_HELP),))
    data = _parse(text, name)
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, bool) or version not in (1, p.FORMAT_VERSION):
        where = _line_col(text, locate(text, ("format_version",)))
        what = "a JSON object" if isinstance(data, dict) else f"JSON of another kind ({type(data).__name__})"
        raise UsageError(f"{name}:{where[0]}:{where[1]}: not an fnl plan: {what} without `format_version` 1 or "
                         f"{p.FORMAT_VERSION}", HELP)
    if version == 1:
        data = p._upgrade(data)
    try:
        return p.from_dict(data)  # checks the schema first (fastjsonschema)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        # Now say where, and everything that is wrong (jsonschema).
        problems = _schema_problems(data, text, name) or [
            _problem(text, name, 0, f"not a valid plan: {exc}", code="FNL702")]
        raise ProblemsFound(tuple(problems)) from None

