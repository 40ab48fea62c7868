"""A subject line that renders with a line break, a control character, or far too long.

A CR or LF in a subject breaks the email header (or is a header injection when it
comes from lead data). Other line separators (NEL U+0085, U+2028, U+2029, vertical
tab, form feed) are line breaks to some mail software, and NUL and the other control
characters are refused or mangled by it; invisible characters (a zero-width space, a
byte-order mark) and the bidirectional overrides that spoof text do not belong in one
either. A subject longer than 998 characters cannot be one header line (RFC 5322) and is
no subject anyone reads, and an empty one (or only spaces) is no subject at all. The
subject is rendered for every variant and checked.

Fails:
    {% block subject %}Your report
    is ready{% endblock %}

Passes:
    {% block subject %}Your report is ready{% endblock %}
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterator, Optional

from .. import Finding
from ..context import Context
from ..template_findings import each_render, template_location

ID = "FNL223"
NAME = "subject-newline"
SEVERITY = "error"

MAX_SUBJECT = 998  # characters in one header line (RFC 5322 section 2.1.1)
_BREAK = re.compile("[\r\n]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _problem(subject: str) -> Optional[str]:
    if _BREAK.search(subject):
        return "contains a line break"
    if not subject.strip(" \t"):
        return "is empty"
    if len(subject) > MAX_SUBJECT:
        return f"is {len(subject):,} characters long (at most {MAX_SUBJECT})"
    found = _CONTROL.search(subject)
    if found:
        char = found.group()
        name = unicodedata.name(char, "") or {"\x00": "NUL", "\x0b": "VERTICAL TAB", "\x0c": "FORM FEED",
                                              "\x85": "NEXT LINE"}.get(char, "a control character")
        return f"contains U+{ord(char):04X} {name}".rstrip()
    return None


_HELP = {
    "line break": "keep the subject block on one line; use `{{- ... -}}` to trim whitespace",
    "long": f"write a subject line people read: a few words, well under {MAX_SUBJECT} characters",
    "control": "remove the control character or line separator; a subject is one line of text",
    "empty": "write the subject in `{% block subject %}...{% endblock %}`: an email without one looks like spam",
}


def check(ctx: Context) -> Iterator[Finding]:
    for name, path, variant, rendered in each_render(ctx):
        problem = _problem(rendered.subject)
        if problem is None:
            continue
        tpl = ctx.template(name)
        line, column = 1, 1
        if tpl is not None:
            line, text = next(((i, text) for i, text in enumerate(tpl.source.split("\n"), 1)
                               if "block subject" in text), (1, ""))
            column = text.find("{%") + 1 or 1
        which = f" (variant {variant})" if variant else ""
        help = _HELP["line break" if "line break" in problem else "long" if "characters long" in problem
                     else "empty" if problem.startswith("is ") else "control"]
        yield Finding(path, f"subject of `{name}`{which} {problem}", help,
                      location=template_location(ctx, name, line, column))
