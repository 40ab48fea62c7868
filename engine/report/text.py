"""Human output: `file:line:col: severity CODE path: message`, the source line with a
caret, and a `help:` line."""
from __future__ import annotations

from typing import List

from ..check import Checked
from ..errors import Problem


def problem_block(p: Problem, verbose: bool) -> List[str]:
    loc = p.location
    path = f" {p.dotted_path}" if p.path else ""
    out = [f"{loc.file}:{loc.line}:{loc.column}: {p.severity} {p.code}{path}: {p.message}"]
    if p.source_line:
        line = p.source_line.replace("\t", " ")
        gutter = f"{loc.line:>5} | "
        out.append(gutter + line.rstrip())
        caret_at = min(max(loc.column - 1, 0), len(line))
        out.append(" " * (len(gutter) - 2) + "| " + " " * caret_at + "^")
    if p.help:
        out.append(f"  help: {p.help}")
    if p.related:
        if verbose:
            out.extend(f"  also: {r}" for r in p.related)
        else:
            out.append(f"  ({len(p.related)} more at this location; use -v to see them)")
    return out


def render(results: List[Checked], verbose: bool = False) -> str:
    lines: List[str] = []
    for result in results:
        for p in result.problems:
            lines.extend(problem_block(p, verbose))
    bad = sum(1 for r in results if r.problems)
    count = sum(len(r.problems) for r in results)
    total = len(results)
    noun = "definition" if total == 1 else "definitions"
    if count:
        lines.append(f"Found {count} problem{'s' if count != 1 else ''} in {bad} of {total} {noun}.")
    else:
        lines.append(f"Checked {total} {noun}: no problems.")
    return "\n".join(lines) + "\n"
