"""Strict YAML loading with the position of every node.

PyYAML's defaults are too forgiving for definitions that come from pull requests: the
last of two duplicate keys silently wins, `no` becomes false, `1:30` becomes 90, `012`
becomes 10, `1e400` becomes infinity, and anchors let a 1 KB file expand to gigabytes.
fnl reads the YAML *event stream* itself (libyaml when available) and builds plain
Python data under its own rules:

* one document per file, UTF-8 only, bounded size, depth and node count;
* no anchors, aliases or tags;
* no duplicate keys, also after removing invisible characters and Unicode normalising;
* YAML 1.2 core scalars only; anything YAML 1.1 would read differently is rejected with
  the quoted spelling as the fix.

Every value and every mapping key keeps its file, line and column, so later stages can
point at the source of any problem.
"""
from __future__ import annotations

import math
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner

from .errors import JsonPath, Location, Problem


class PurePythonParser(Reader, Scanner, Parser):
    """PyYAML's own parser, written in Python: what fnl uses where PyYAML was built
    without libyaml. It yields the same events, more slowly."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


try:  # libyaml is an order of magnitude faster; the pure-Python parser behaves the same.
    from yaml.cyaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _Parser = PurePythonParser  # type: ignore[misc,assignment]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
# Integers must fit a signed 64-bit column (the simulator stores them that way).
MAX_INT = 2**63 - 1
MAX_NUMBER_CHARS = 40

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+\Z")
_PREFIXED = re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+\Z")
_UNDERSCORED = re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?\Z")
# YAML 1.1 base 60 (`1:30` is 90); a leading zero (`08:00`) is a string there too.
_SEXAGESIMAL = re.compile(r"[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?\Z")
_NONFINITE = re.compile(r"[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z")
_YAML11_BOOL = {"y", "yes", "n", "no", "on", "off"}
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


@dataclass(frozen=True)
class Scalar:
    """How a string scalar was written, so columns inside it can be mapped back."""

    location: Location
    style: Optional[str]  # None plain, "'" or '"' quoted, "|" or ">" block
    multiline: bool


@dataclass(frozen=True)
class Document:
    """Plain data from one or more files plus where each piece came from."""

    data: Any
    files: Tuple[str, ...]
    values: Dict[JsonPath, Location] = field(default_factory=dict)
    keys: Dict[JsonPath, Location] = field(default_factory=dict)
    scalars: Dict[JsonPath, Scalar] = field(default_factory=dict)
    lines: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    def locate(self, path: JsonPath, *, key: bool = False) -> Location:
        """Best location for a path: the key if asked and known, else the value, else
        the nearest ancestor that has one."""
        probe = tuple(path)
        if key and probe in self.keys:
            return self.keys[probe]
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Location(self.files[0] if self.files else "<input>"))

    def source_line(self, loc: Location) -> str:
        lines = self.lines.get(loc.file, ())
        return lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""

    def expression_location(self, path: JsonPath, offset: int) -> Location:
        """File position of character `offset` inside the string at `path`."""
        scalar = self.scalars.get(tuple(path))
        if scalar is None:
            return self.locate(path)
        loc = scalar.location
        if scalar.multiline or scalar.style in ("|", ">"):
            return loc
        if scalar.style not in ("'", '"'):
            return Location(loc.file, loc.line, loc.column + offset)
        raw = self.source_line(loc)[loc.column:]  # after the opening quote
        return Location(loc.file, loc.line, loc.column + 1 + _raw_offset(raw, offset, scalar.style))


_ESCAPE_LENGTH = {"x": 3, "u": 5, "U": 9}


def _raw_offset(raw: str, offset: int, quote: str) -> int:
    """How many source characters of a quoted scalar hold its first `offset` decoded
    characters: `''` is one quote in single quotes, `\\x41` one character in double."""
    i = 0
    for _ in range(offset):
        if i >= len(raw):
            break
        if quote == "'" and raw.startswith("''", i):
            i += 2
        elif quote == '"' and raw[i] == "\\" and i + 1 < len(raw):
            i += _ESCAPE_LENGTH.get(raw[i + 1], 2)
        else:
            i += 1
    return i


@dataclass(frozen=True)
class Loaded:
    """Result of loading: a document (None if it could not be built) and problems."""

    document: Optional[Document]
    problems: Tuple[Problem, ...]


class _Stop(Exception):
    """Abort building: the problem is already recorded and nothing after it is safe."""


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or ch in "\u00a0\u2028\u2029\u3000"


def normalise_key(key: str) -> str:
    """The key as a reader sees it: invisible characters dropped, Unicode normalised."""
    if key.isascii():  # no invisible characters, and NFKC leaves ASCII alone
        return key.strip()
    return unicodedata.normalize("NFKC", "".join(c for c in key if not _invisible(c))).strip()


class _Builder:
    def __init__(self, file: str, lines: Tuple[str, ...]) -> None:
        self.file = file
        self.lines = lines
        self.problems: List[Problem] = []
        self.values: Dict[JsonPath, Location] = {}
        self.keys: Dict[JsonPath, Location] = {}
        self.scalars: Dict[JsonPath, Scalar] = {}
        self.nodes = 0
        self.out_of_bounds = False  # stopped at MAX_NODES or MAX_DEPTH

    def loc(self, mark: Any) -> Location:
        return Location(self.file, mark.line + 1, mark.column + 1)

    def problem(self, code: str, mark_or_loc: Any, message: str, help: str = "",
                path: JsonPath = ()) -> None:
        loc = mark_or_loc if isinstance(mark_or_loc, Location) else self.loc(mark_or_loc)
        line = self.lines[loc.line - 1] if 0 < loc.line <= len(self.lines) else ""
        self.problems.append(Problem(code, message, loc, path, help, source_line=line))

    # -- scalars -----------------------------------------------------------------
    def scalar(self, event: Any, path: JsonPath) -> Any:
        value: str = event.value
        if event.style:  # quoted or block: always a string (libyaml reports plain as "")
            return value
        if value in _NULLS:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        mark = event.start_mark
        if value.lower() in _YAML11_BOOL:
            meaning = "true" if value.lower() in {"y", "yes", "on"} else "false"
            self.problem(
                "FNL010", mark, f"`{value}` is ambiguous: YAML 1.1 tools read it as the boolean {meaning}",
                f"write {meaning} if you meant a boolean, or quote it (\"{value}\") if you meant text", path)
            return value
        if _INT.match(value):
            if len(value) > MAX_NUMBER_CHARS or not -MAX_INT - 1 <= int(value) <= MAX_INT:
                self.problem("FNL012", mark, f"number `{value[:24]}…` is too large",
                             "integers must fit in 64 bits (up to 9223372036854775807); quote it if it is an identifier", path)
                return None
            return int(value)
        if _LEADING_ZERO.match(value):
            self.problem("FNL011", mark, f"`{value}` is ambiguous: YAML 1.1 tools read a leading zero as octal "
                         f"({int(value, 8) if set(value.lstrip('+-')) <= set('01234567') else 'invalid'})",
                         f"drop the leading zero for a number, or quote it (\"{value}\") for text", path)
            return value
        if _FLOAT.match(value):
            number = float(value) if len(value) <= MAX_NUMBER_CHARS else math.inf
            if not math.isfinite(number):
                self.problem("FNL012", mark, f"number `{value[:24]}` is too large: it overflows to infinity",
                             "use a finite number (at most about 1.8e308)", path)
                return None
            return number
        if _NONFINITE.match(value):
            self.problem("FNL012", mark, f"`{value}` is not a finite number",
                         "fnl accepts only finite numbers; quote it if you meant text", path)
            return None
        if _PREFIXED.match(value) or _UNDERSCORED.match(value):
            self.problem("FNL011", mark, f"`{value}` is ambiguous: YAML tools disagree on whether it is a number",
                         f"write a plain decimal number, or quote it (\"{value}\") for text", path)
            return value
        if _SEXAGESIMAL.match(value):
            self.problem("FNL011", mark, f"`{value}` is ambiguous: YAML 1.1 tools read it as a base-60 number",
                         f"quote it: \"{value}\"", path)
            return value
        return value

    # -- tree --------------------------------------------------------------------
    def check_node(self, event: Any, path: JsonPath, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.problem("FNL014", event.start_mark, f"definition has more than {MAX_NODES:,} values",
                         "split it into smaller funnels; no real funnel needs this many", path)
            self.out_of_bounds = True
            raise _Stop
        if depth > MAX_DEPTH:
            self.problem("FNL014", event.start_mark, f"nesting is deeper than {MAX_DEPTH} levels",
                         "flatten the structure; funnel definitions never nest this deep", path)
            self.out_of_bounds = True
            raise _Stop
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.problem("FNL013", event.start_mark, f"anchor `&{anchor}` is not allowed",
                         "fnl definitions do not use anchors or aliases; repeat the value, or split shared parts into their own file",
                         path)
        tag = getattr(event, "tag", None)
        if tag is not None and not (isinstance(event, yaml.ScalarEvent) and tag == "!"):
            self.problem("FNL013", event.start_mark, f"tag `{tag}` is not allowed",
                         "remove the tag; quote the value if you wanted a string", path)
        elif tag == "!":
            self.problem("FNL013", event.start_mark, "tag `!` is not allowed",
                         "remove the tag; quote the value if you wanted a string", path)

    def node(self, events: Any, event: Any, path: JsonPath, depth: int) -> Any:
        if isinstance(event, yaml.AliasEvent):
            self.values[path] = self.loc(event.start_mark)
            self.problem("FNL013", event.start_mark, f"alias `*{event.anchor}` is not allowed",
                         "fnl definitions do not use anchors or aliases; repeat the value instead", path)
            return None
        self.check_node(event, path, depth)
        self.values[path] = self.loc(event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event, path)
            if isinstance(value, str):
                multiline = event.start_mark.line != event.end_mark.line
                self.scalars[path] = Scalar(self.values[path], event.style or None, multiline)
            return value
        if isinstance(event, yaml.SequenceStartEvent):
            items: List[Any] = []
            for ev in events:
                if isinstance(ev, yaml.SequenceEndEvent):
                    return items
                items.append(self.node(events, ev, path + (len(items),), depth + 1))
            raise _Stop
        if isinstance(event, yaml.MappingStartEvent):
            return self.mapping(events, path, depth)
        raise _Stop  # pragma: no cover - the parser never yields other events here

    def mapping(self, events: Any, path: JsonPath, depth: int) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        seen: Dict[str, Tuple[str, Location]] = {}
        for ev in events:
            if isinstance(ev, yaml.MappingEndEvent):
                return result
            if not isinstance(ev, yaml.ScalarEvent):
                self.problem("FNL015", ev.start_mark, "a mapping key must be a plain name, not a list or mapping",
                             "use a string key", path)
                self.node(events, ev, path, depth + 1)  # consume and discard
                self.node(events, next(events), path, depth + 1)
                continue
            self.check_node(ev, path, depth + 1)
            key = ev.value
            key_loc = self.loc(ev.start_mark)
            norm = normalise_key(key)
            if norm in seen:
                first_key, first_loc = seen[norm]
                differ = ""
                if first_key != key:
                    visible = "".join(c for c in key if not _invisible(c)) == \
                        "".join(c for c in first_key if not _invisible(c))
                    differ = (" (the two differ only by invisible characters)" if visible else
                              " (the two differ only in how their characters are encoded in Unicode)")
                self.problem("FNL016", key_loc,
                             f"duplicate key `{norm}`{differ}: first defined at line {first_loc.line}",
                             "YAML keeps only one of them; remove or rename one", path + (key,))
            else:
                seen[norm] = (key, key_loc)
                if key != norm and any(_invisible(c) for c in key):
                    bad = next(c for c in key if _invisible(c))
                    self.problem("FNL017", key_loc,
                                 f"key `{norm}` contains the invisible character U+{ord(bad):04X}",
                                 "retype the key; invisible characters usually come from copy and paste",
                                 path + (norm,))
            self.keys[path + (key,)] = key_loc
            result[key] = self.node(events, next(events), path + (key,), depth + 1)
        raise _Stop


_POSITION = re.compile(r'\s*in "<unicode string>", position \d+')


def _yaml_error(file: str, lines: Tuple[str, ...], exc: yaml.YAMLError) -> Problem:
    problem = _POSITION.sub("", str(getattr(exc, "problem", None) or exc)).strip()
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = getattr(exc, "problem_mark", None) or context_mark
    # An unclosed quote or bracket is found at the end of the file; the place to fix is
    # where it was opened.
    unclosed_flow = "did not find expected ',' or" in problem
    if context_mark is not None and context and (
            ("quoted scalar" in context and "end of stream" in problem) or unclosed_flow):
        mark = context_mark
    loc = Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file)
    position = getattr(exc, "position", None)  # reader errors carry an offset, not a mark
    if mark is None and isinstance(position, int):
        text = "\n".join(lines)
        line_no = text.count("\n", 0, position) + 1
        loc = Location(file, line_no, position - (text.rfind("\n", 0, position) + 1) + 1)
    if loc.line > max(len(lines), 1):
        loc = Location(file, max(len(lines), 1), len(lines[-1]) + 1 if lines else 1)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    line = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
    at = line[loc.column - 1:loc.column]
    indentation = _indentation(lines, loc, problem, context or "")
    if indentation is not None:
        where, what, help = indentation
        return Problem("FNL002", f"YAML syntax error: {what}", where, (), help, source_line=lines[where.line - 1])
    if "unacceptable character" in problem or "special characters are not allowed" in problem:
        help = "remove the control character; definitions must be plain UTF-8 text"
    elif at == "\t" or "\\t" in problem:
        help = "YAML indents with spaces, not tabs; replace the tab with spaces"
    elif "quoted scalar" in (context or "") and "end of stream" in problem:
        help = "this quote is never closed; add the closing quote"
    elif unclosed_flow:
        closer = "]" if "sequence" in (context or "") else "}"
        help = f"the {'list' if closer == ']' else 'mapping'} opened here is not closed; add `{closer}` " \
               "or separate its items with commas"
    elif "mapping values are not allowed" in problem:
        help = "a value contains `: `; quote the whole value"
    elif "could not find expected ':'" in problem:
        help = "each entry needs `key: value`; check for a missing colon or a stray line"
    elif "found character" in problem and "cannot start any token" in problem:
        help = "quote the value; this character cannot start a plain YAML value"
    else:
        help = "check indentation and quoting around this position"
    return Problem("FNL002", message, loc, (), help, source_line=line)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+\Z")


@dataclass(frozen=True)
class _Column:
    """A column a line may be aligned with: that of a key (or list item) above it."""

    spaces: int
    line: int  # 1-based
    label: str  # `from`, or `- send` for a list item


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _spaces(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _label(text: str) -> str:
    """The key a line starts with (`postal_address` of `postal_address: y`), clipped; a
    flow mapping or list (`{wait: 3d, send: a}`) is shown whole, clipped."""
    text = text.rstrip()
    key = text.split(": ", 1)[0].split(":", 1)[0].rstrip() if ":" in text and not _flow(text) else text
    return key if len(key) <= 40 else key[:39] + "…"


def _flow(text: str) -> bool:
    return text.startswith(("{", "["))


def _columns(lines: Tuple[str, ...], line_no: int, below: Optional[int]) -> List[_Column]:
    """The keys a line at `line_no` (1-based) could be aligned with: the nearest key above
    it, then each enclosing key, innermost first. With `below`, lines indented `below` or
    more are skipped first (they continue a plain value, as the faulty line does)."""
    out: List[_Column] = []
    limit = below if below is not None else None
    for n in range(line_no - 1, max(0, line_no - 5000), -1):
        text = lines[n - 1]
        if not _content(text) or "\t" in text[:_spaces(text) + 1]:
            continue
        spaces = _spaces(text)
        if limit is not None and spaces >= limit:
            continue
        body = text[spaces:]
        if body.startswith("- ") and _content(body[2:]):
            inner = spaces + 2 + _spaces(body[2:])
            # Keys of a block mapping in the item continue at its first key's column;
            # nothing continues a `{…}` or `[…]` item.
            if (limit is None or inner < limit) and not _flow(body[inner - spaces:]):
                out.append(_Column(inner, n, _label(body[inner - spaces:])))
            out.append(_Column(spaces, n, "- " + _label(body[inner - spaces:])))
        else:
            out.append(_Column(spaces, n, _label(body)))
        limit = spaces
        if spaces == 0:
            break
    return out


def _indentation(lines: Tuple[str, ...], loc: Location, problem: str,
                 context: str) -> Optional[Tuple[Location, str, str]]:
    """(where, what, fix) when a YAML syntax error comes from a line indented wrongly: a
    key indented more than the key above it (YAML reads it as the rest of that key's value
    and stops at its colon: "mapping values are not allowed"), a key between two levels
    ("did not find expected key"), or indentation with a tab. None for anything else, such
    as a colon inside an unquoted value."""
    if not 0 < loc.line <= len(lines):
        return None
    text = lines[loc.line - 1]
    spaces = _spaces(text)
    lead = text[:len(text) - len(text.lstrip(" \t"))]
    if "\t" in lead and loc.column - 1 < len(lead):
        above = _columns(lines, loc.line, None)
        fix = "replace the tab with spaces"
        if above:
            fix += f" (`{above[0].label}` on line {above[0].line} {_indented(above[0].spaces)})"
        return Location(loc.file, loc.line, len(lead.split("\t")[0]) + 1), \
            "this line is indented with a tab; YAML indents with spaces only", fix
    body = text[spaces:]
    item = body.startswith("- ")
    key_text = body[2:].lstrip(" ") if item else body
    colon = "mapping values are not allowed" in problem
    if colon:
        # Only when the colon YAML stopped at is the line's first, after a plain key:
        # `description: Note: this` is a colon inside a value.
        first = re.search(r":(\s|$)", key_text)
        # `- {wait: 5d}` after a plain value reads as more of that value, up to its colon.
        if first is None or text.find(key_text) + first.start() != loc.column - 1 or \
                not (_PLAIN_KEY.match(key_text[:first.start()]) or (item and _flow(key_text))):
            return None
    elif not (("did not find expected key" in problem or "did not find expected '-'" in problem
               or "expected <block end>" in problem) and "block" in context):
        return None
    above = _columns(lines, loc.line, spaces if colon else None)
    # A list item belongs beside the items of a list, not beside the keys inside them.
    items = [c for c in above if c.label.startswith("- ")] if item else []
    if items:
        above = items
    if not above or any(c.spaces == spaces for c in above):
        return None
    where = Location(loc.file, loc.line, spaces + 1)
    name = f"`{'- ' if item else ''}{_label(key_text)}`"
    if items:
        return (where,) + _misplaced_item(name, spaces, items)
    nearest = above[0]
    if spaces > nearest.spaces:
        what = (f"this line is indented more than the key above it expects: {name} {_indented(spaces)}, "
                f"`{nearest.label}` on line {nearest.line} {_indented(nearest.spaces)}")
        fix = f"align it with `{nearest.label}` ({_width(nearest.spaces)}) to put it beside `{nearest.label}`"
        if colon:
            fix += f"; if it continues the value of `{nearest.label}`, quote that whole value"
        return where, what, fix
    inner = [c for c in above if c.spaces > spaces][-1]
    narrower = [c for c in above if c.spaces < spaces]
    what = (f"this line is indented less than the key above it expects: {name} {_indented(spaces)}, "
            f"`{inner.label}` on line {inner.line} {_indented(inner.spaces)}")
    fix = f"align it with `{inner.label}` ({_width(inner.spaces)}) to put it beside `{inner.label}`"
    if narrower:
        outer = narrower[0]
        fix += (f", or with `{outer.label}` on line {outer.line} ({_width(outer.spaces)}) "
                f"to put it beside `{outer.label}`")
    return where, what, fix


def _misplaced_item(name: str, spaces: int, items: List[_Column]) -> Tuple[str, str]:
    """(what, fix) for a list item whose `-` is not aligned with the `-` of any list item
    above it (`items`, innermost first)."""
    nearest = items[0]
    if spaces > nearest.spaces:
        towards, inner, outer = "more", nearest, None
    else:
        inner = [c for c in items if c.spaces > spaces][-1]
        narrower = [c for c in items if c.spaces < spaces]
        towards, outer = "less", narrower[0] if narrower else None
    what = (f"this line is indented {towards} than the list items above it: {name} {_indented(spaces)}, "
            f"`{inner.label}` on line {inner.line} {_indented(inner.spaces)}")
    fix = (f"align its `-` with the `-` on line {inner.line} ({_width(inner.spaces)}) "
           "to make it the next item of that list")
    if outer is not None:
        fix += f", or with the `-` on line {outer.line} ({_width(outer.spaces)}) to make it the next item of the outer list"
    return what, fix


def _indented(spaces: int) -> str:
    return "is not indented" if spaces == 0 else f"is indented {_width(spaces)}"


def _width(spaces: int) -> str:
    return "no indentation" if spaces == 0 else "1 space" if spaces == 1 else f"{spaces} spaces"


def decode(file: str, raw: bytes) -> Tuple[Optional[str], Optional[Problem]]:
    """Bytes to text, or one problem saying why the file is not a UTF-8 text file."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        return None, Problem("FNL001", "file is UTF-16 or UTF-32 encoded", Location(file),
                             help="save it as UTF-8")
    if b"\x00" in raw[:8192] or b"\x00" in raw:
        offset = raw.index(b"\x00")
        line = raw.count(b"\n", 0, offset) + 1
        return None, Problem("FNL001", "file is binary, not YAML text (it contains NUL bytes)",
                             Location(file, line, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1),
                             help="point fnl at the YAML definition, not at a binary file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        return None, Problem("FNL001", f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                             Location(file, line, column), help="save the file as UTF-8")


def parse_text(file: str, text: str) -> Loaded:
    """Build a Document from YAML text; never raises for bad input."""
    lines = tuple(text.splitlines())
    builder, data, fatal, error = _build(file, text, lines)
    if error is not None:
        # The parser reads ahead of the events it has handed out (to the end of a line,
        # 1,024 characters, or the end of a long token), and some libyaml versions stop at
        # their own nesting limit (1,000 levels) while reading ahead. Neither may decide
        # what fnl reports: if the text before the error already crosses fnl's bounds,
        # that is the problem, at the place where it is crossed, whatever the parser.
        for end in _error_offsets(error, len(text)):
            before, _, _, _ = _build(file, text[:end], lines)
            if before.out_of_bounds:
                builder, error = before, None
                break
        if error is not None:
            builder.problems.append(_yaml_error(file, lines, error))
    if data is None and not builder.problems:
        builder.problem("FNL004", Location(file), "file is empty: it holds no YAML document",
                        "add a definition (start with `fnl: 1`) or delete the file")
        fatal = True
    # Problems in single values (an ambiguous scalar, a duplicate key) leave a usable
    # document, so validation goes on and reports everything else in the same run.
    doc = Document(data, (file,), builder.values, builder.keys, builder.scalars, {file: lines})
    return Loaded(None if fatal else doc, tuple(builder.problems))


def _error_offsets(error: yaml.YAMLError, size: int) -> List[int]:
    """Where the parser was when it failed, and where the token it was reading began
    (an unclosed quote fails at the end of the file), latest first, inside the text."""
    offsets = {getattr(getattr(error, name, None), "index", None) for name in ("problem_mark", "context_mark")}
    offsets.add(getattr(error, "position", None))  # reader errors carry an offset, not a mark
    return sorted((o for o in offsets if isinstance(o, int) and 0 < o < size), reverse=True)


def _build(file: str, text: str, lines: Tuple[str, ...]) -> Tuple[_Builder, Any, bool, Optional[yaml.YAMLError]]:
    """Parse `text` and build its data: the builder (with its problems), the data, whether
    a problem was fatal, and the parser's error if it raised one (not yet a problem)."""
    builder = _Builder(file, lines)
    data: Any = None
    documents = 0
    events = _events(_Parser(text))
    try:
        for ev in events:
            if isinstance(ev, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    builder.problem("FNL003", ev.start_mark, "file holds more than one YAML document",
                                    "keep one definition per file; remove the `---` separator or split the file")
                    return builder, data, True, None
            elif isinstance(ev, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent,
                                 yaml.AliasEvent)):
                data = builder.node(events, ev, (), 1)
    except _Stop:
        return builder, data, True, None
    except yaml.YAMLError as exc:
        return builder, data, True, exc
    return builder, data, False, None


def _events(parser: Any) -> Any:
    while parser.check_event():
        yield parser.get_event()


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, links followed, lies within `root` (also with links followed)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def load_file(path: Path, display: Optional[str] = None, root: Optional[Path] = None) -> Loaded:
    """Read and parse one YAML file within the size bound. With `root`, a link that
    leads out of it is refused (a pull request must not make fnl read /etc/passwd)."""
    name = display or str(path)
    if root is not None and not inside(path, root):
        return Loaded(None, (Problem("FNL006", "cannot read file: it is a link to a file outside the definition's "
                                     "directory", Location(name), help="replace the link with the file itself"),))
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # never open a pipe or device: reading could block forever
            return Loaded(None, (Problem("FNL006", "cannot read file: it is a pipe, device or socket",
                                         Location(name), help="point fnl at a regular YAML file"),))
        size = info.st_size
        if size > MAX_BYTES:
            return Loaded(None, (Problem("FNL005", f"file is {size / 1048576:.1f} MiB; fnl reads definitions up to 1 MiB",
                                         Location(name), help="split the definition into several files in a directory"),))
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return Loaded(None, (Problem("FNL006", f"cannot read file: {exc.strerror or exc}", Location(name),
                                     help="check that the file exists and is readable"),))
    return load_bytes(name, raw)


def load_bytes(name: str, raw: bytes) -> Loaded:
    """Parse one file's contents (read from disk, or an editor's unsaved buffer), with the
    same size bound, encoding checks and strict YAML as a file on disk."""
    if len(raw) > MAX_BYTES:
        return Loaded(None, (Problem("FNL005", "file is larger than 1 MiB", Location(name),
                                     help="split the definition into several files in a directory"),))
    if not raw.strip():
        return Loaded(None, (Problem("FNL004", "file is empty", Location(name),
                                     help="add a definition (start with `fnl: 1`) or delete the file"),))
    text, problem = decode(name, raw)
    if problem is not None:
        return Loaded(None, (problem,))
    assert text is not None
    return parse_text(name, text)
