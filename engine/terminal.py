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
from dataclasses import dataclass
from typing import Any, Mapping

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


# -- colour ----------------------------------------------------------------------------
# fnl's own markup around text that is already escaped: SGR codes are added by fnl, never
# taken from input. Colour is on for a terminal and off when piped, under NO_COLOR (any
# non-empty value, https://no-color.org) or TERM=dumb; FORCE_COLOR (non-empty, not 0)
# turns it on where it would be off; `--color always|never` decides over all of them.

COLOR_MODES = ("auto", "always", "never")

_SGR = {"error": "1;31", "warning": "1;33", "info": "1;36", "location": "1", "code": "1",
        "help": "1;36", "gutter": "34", "summary": "1"}


@dataclass(frozen=True)
class Style:
    """How fnl marks up text output: plain, or with ANSI colours."""

    colour: bool = False

    def paint(self, role: str, text: str) -> str:
        """`text` wrapped in the colour of `role` (a severity, `location`, `code`, `help`,
        `gutter` or `summary`); unchanged when colour is off or `text` is empty."""
        if not self.colour or not text:
            return text
        return f"\x1b[{_SGR.get(role, '1')}m{text}\x1b[0m"


PLAIN = Style(False)
COLOURED = Style(True)


def use_colour(mode: str, stream: Any, environ: Mapping[str, str]) -> bool:
    """Whether output to `stream` is coloured under `--color MODE` and the environment."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if environ.get("NO_COLOR", ""):
        return False
    if environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    if environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or unusual stream
        return False


def style_for(mode: str, stream: Any, environ: Mapping[str, str]) -> Style:
    return COLOURED if use_colour(mode, stream, environ) else PLAIN


def json_document(doc: Any) -> str:
    """A JSON report as fnl prints it: two-space indent, sorted keys, UTF-8 text with no
    control character raw (`for_json`, `json_text`), and a final newline."""
    import json

    return json_text(json.dumps(for_json(doc), indent=2, sort_keys=True, ensure_ascii=False)) + "\n"
