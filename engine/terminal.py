"""Text from input, made safe to print.

Definitions, plan files, event files and file names are input, and input can hold
characters a terminal acts on instead of showing: `"\\e[2J"` in a YAML string clears the
screen, a carriage return overwrites the line before it, an OSC sequence sets the
window title or a hyperlink, U+2028 breaks a line where no newline is seen, and bidi
overrides reorder what a reviewer reads. A file name that is not UTF-8 reaches Python as
lone surrogates, which cannot be encoded at all.

Every string that came from input goes through `escape` before it reaches a terminal
(fnl's text and GitHub output, its error lines, `fnl plan` and `fnl trace`), and through
`for_json` before it goes into JSON or SARIF, so that output is always valid UTF-8
(and `json_text` over the JSON text, so that no C1 control reaches a terminal raw).
The rule lives here, in one place:

* C0 controls, DEL and C1 controls become `\\x1b`-style escapes (tab, newline and
  carriage return become `\\t`, `\\n` and `\\r`); other invisible layout characters
  (U+2028, U+2029, bidi marks, embeddings, overrides and isolates) become
  `\\u2028`-style escapes;
* a lone surrogate from a non-UTF-8 file name (U+DC80 to U+DCFF, Python's
  surrogateescape) becomes the byte it stands for, `\\xe9`; any other lone surrogate
  becomes `\\ud800`-style.

Backslashes are left alone, so Windows paths and ordinary messages read as they are.
"""
from __future__ import annotations

import re
from typing import Any

# What a terminal may act on, and what cannot be encoded as UTF-8.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Only what cannot be encoded as UTF-8 (JSON escapes controls itself).
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(match: "re.Match[str]") -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def escape(text: Any) -> str:
    """`text` (any value; non-strings are turned into strings) with every character a
    terminal could act on, or that UTF-8 cannot encode, written as a visible escape:
    `escape("a\\x1b[2Jb") == "a\\\\x1b[2Jb"`. Plain text comes back unchanged (and fast)."""
    if not isinstance(text, str):
        text = str(text)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_visible, text)


def escape_lines(text: str) -> str:
    """Like `escape`, for output fnl lays out in lines itself: newlines are kept, every
    other unsafe character is escaped."""
    return "\n".join(escape(line) for line in text.split("\n"))


def encodable(text: str) -> str:
    """`text` with lone surrogates (a non-UTF-8 file name) escaped as in `escape`, and
    nothing else changed: for JSON, which escapes control characters by itself."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(_visible, text)


# What JSON leaves raw (it escapes only C0 controls) but a terminal may act on.
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_text(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with DEL, C1 controls and
    the invisible layout characters written as `\\u` escapes: the same JSON value, safe
    to show on a terminal. They can only occur inside strings, where the escape is valid."""
    if _JSON_RAW.search(text) is None:
        return text
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def for_json(value: Any) -> Any:
    """A JSON-ready value with every string (keys included) made encodable as UTF-8."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, dict):
        return {for_json(k) if isinstance(k, str) else k: for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [for_json(v) for v in value]
    return value
