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

import json
import re
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from . import plan as p
from .errors import JsonPath, Location, Problem, ProblemsFound, UsageError

MAX_BYTES = 4 * 1024 * 1024  # a compiled plan is tens of kilobytes; a 1 MiB definition compiles well below this
MAX_DEPTH = 512  # the deepest plan `fnl compile` writes is about 500 levels (a 2,000-character condition)
MAX_NUMBER_CHARS = 40
MAX_PROBLEMS = 20
HELP = "give a plan file written by `fnl compile` (unchanged), or a definition"

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class _BadNumber(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"number {text[:20]}… is too long")
    return int(text)


def _float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else float("inf")
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"number {text[:20]}{'…' if len(text) > 20 else ''} is too long or too large")
    return value


def _constant(text: str) -> Any:
    raise _BadNumber(f"`{text}` is not a JSON number")


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


def _too_deep_offset(text: str) -> int:
    """Where nesting first goes deeper than MAX_DEPTH (strings blanked out first)."""
    blanked = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    depth = 0
    for i, ch in enumerate(blanked):
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif ch in "]}":
            depth -= 1
    return 0


def _deep_path(data: Any) -> Optional[JsonPath]:
    """The path of the first value nested deeper than MAX_DEPTH, if any (no recursion)."""
    stack: List[Tuple[JsonPath, Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (dict, list)) and len(path) >= MAX_DEPTH:
            return path
        if isinstance(value, dict):
            stack.extend((path + (k,), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((path + (n,), v) for n, v in reversed(list(enumerate(value))))
    return None


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
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
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
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ProblemsFound((_problem(text, name, exc.pos, f"not valid JSON: {exc.msg}"),)) from None
    except _BadNumber as exc:
        # The decoder does not say where; find the first such number.
        found = re.search(r"-?(?:NaN|Infinity)|-?[0-9][0-9.eE+-]{%d,}" % MAX_NUMBER_CHARS,
                          _STRING.sub(lambda m: " " * len(m.group()), text))
        raise ProblemsFound((_problem(text, name, found.start() if found else 0, str(exc),
                                      help="write numbers of at most 40 digits, and no NaN or Infinity"),)) from None
    except RecursionError:
        raise ProblemsFound((_problem(text, name, _too_deep_offset(text), f"nesting is deeper than {MAX_DEPTH} levels"),
                             )) from None


def _schema_problems(data: Any, text: str, name: str) -> List[Problem]:
    import fastjsonschema

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
            path = tuple(error.absolute_path)
            problems.append(_explain(text, name, path, error.message))
            if len(problems) >= MAX_PROBLEMS:
                break
    except RecursionError:
        problems = []
    if not problems and first is not None:
        path = _fast_path(data, list(first.path or [])[1:])
        problems.append(_explain(text, name, path, str(first.message)))
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
    raw = _read(path, name)
    text = _decode(raw, name)
    data = _parse(text, name)
    deep = _deep_path(data)
    if deep is not None:
        raise ProblemsFound((_problem(text, name, locate(text, deep), f"nesting is deeper than {MAX_DEPTH} levels",
                                      deep),))
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, bool) or version not in (1, p.FORMAT_VERSION):
        where = _line_col(text, locate(text, ("format_version",)))
        what = "a JSON object" if isinstance(data, dict) else f"JSON of another kind ({type(data).__name__})"
        raise UsageError(f"{name}:{where[0]}:{where[1]}: not an fnl plan: {what} without `format_version` 1 or "
                         f"{p.FORMAT_VERSION}", HELP)
    if version == 1:
        data = p._upgrade(data)
    problems = _schema_problems(data, text, name)
    if problems:
        raise ProblemsFound(tuple(problems))
    try:
        return p.from_dict(data)
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # the schema should have said; say where anyway
        raise ProblemsFound((_problem(text, name, 0, f"not a valid plan: {exc}", code="FNL702"),)) from None

