"""GitHub Actions workflow commands: one `::error file=…,line=…,col=…::…` annotation per
problem, escaped as the runner expects. Text from input is first made safe for the log
(`engine.terminal.escape`: control characters become visible escapes), then escaped for
the runner."""
from __future__ import annotations

from typing import List

from ..check import Checked
from ..terminal import escape

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(results: List[Checked], verbose: bool = False) -> str:
    lines = []
    for result in results:
        for p in result.problems:
            loc = p.location
            props = ",".join([
                f"file={escape_property(escape(loc.file))}",
                f"line={loc.line}",
                f"col={loc.column}",
                f"title={escape_property(p.code + (' ' + escape(p.dotted_path) if p.path else ''))}",
            ])
            body = escape(p.message) + (f"\nhelp: {escape(p.help)}" if p.help else "")
            lines.append(f"::{_LEVEL.get(p.severity, 'error')} {props}::{escape_data(body)}")
    count = sum(len(r.problems) for r in results)
    lines.append(f"fnl: {count} problem{'s' if count != 1 else ''} in {len(results)} definition(s)")
    return "\n".join(lines) + "\n"
