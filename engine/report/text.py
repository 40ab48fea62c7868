"""Human output: `file:line:col: severity CODE path: message`, the source line with a
caret, and a `help:` line. Everything that came from input is escaped for the terminal
(`engine.terminal`); the quoted source line shows unprintable characters as `�`. With a
colour `Style` (a terminal), severities, rule IDs, places and carets are coloured; the
text is otherwise the same, character for character."""
from __future__ import annotations

from typing import List, Tuple

from ..check import Checked
from ..errors import Problem
from ..terminal import PLAIN, Style, escape


WIDTH = 100


def clip(line: str, at: int) -> Tuple[str, int]:
    """A window of a long line around position `at`, and the caret's place in it."""
    at = min(max(at, 0), len(line))
    if len(line) <= WIDTH:
        return line, at
    start = max(0, min(at - WIDTH // 2, len(line) - WIDTH))
    text = line[start:start + WIDTH]
    caret = at - start
    if start > 0:
        text, caret = "…" + text, caret + 1
    if start + WIDTH < len(line):
        text += "…"
    return text, caret


def problem_block(p: Problem, verbose: bool, style: Style = PLAIN) -> List[str]:
    loc = p.location
    path = f" {escape(p.dotted_path)}" if p.path else ""
    paint = style.paint
    out = [f"{paint('location', f'{escape(loc.file)}:{loc.line}:{loc.column}:')} {paint(p.severity, p.severity)} "
           f"{paint('code', p.code)}{path}: {escape(p.message)}"]
    if p.source_line:
        shown = "".join(c if c.isprintable() else "�" for c in p.source_line.replace("\t", " ").rstrip())
        line, caret_at = clip(shown, loc.column - 1 - p.source_offset)
        gutter = f"{loc.line:>5} |"
        out.append(f"{paint('gutter', gutter)} {line}")
        out.append(paint("gutter", " " * (len(gutter) - 1) + "|") + " " * (caret_at + 1) + paint(p.severity, "^"))
    if p.help:
        out.append(f"  {paint('help', 'help:')} {escape(p.help)}")
    if p.related:
        if verbose:
            out.extend(f"  {paint('help', 'also:')} {escape(r)}" for r in p.related)
        else:
            out.append(f"  ({len(p.related)} more at this location; use -v to see them)")
    return out


def render(results: List[Checked], verbose: bool = False, style: Style = PLAIN) -> str:
    lines: List[str] = []
    for result in results:
        for p in result.problems:
            lines.extend(problem_block(p, verbose, style))
    bad = sum(1 for r in results if r.problems)
    count = sum(len(r.problems) for r in results)
    total = len(results)
    noun = "definition" if total == 1 else "definitions"
    if count:
        found = f"Found {count} problem{'s' if count != 1 else ''} in {bad} of {total} {noun}."
        lines.append(style.paint("summary", found))
    else:
        lines.append(style.paint("summary", f"Checked {total} {noun}: no problems."))
    return "\n".join(lines) + "\n"
