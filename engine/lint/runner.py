"""Run the selected rules over a funnel and turn findings into located problems."""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Mapping, Sequence, Set, Tuple

from ..errors import Location, Problem
from ..model import Funnel
from . import Finding
from .context import Context
from .registry import RULES

SUPPRESSION = re.compile(r"#\s*fnl:\s*ignore\[([A-Z0-9, ]+)\]\s*(.*)$")
UNUSED_SUPPRESSION = "FNL020"


def check_codes(codes: Tuple[str, ...], where: str) -> None:
    """Every ID or prefix must name at least one rule: a typo must not turn lint off."""
    import difflib

    from ..errors import UsageError

    known = [r.ID for r in RULES] + [UNUSED_SUPPRESSION]
    for code in codes:
        if not any(k.startswith(code) for k in known):
            guess = difflib.get_close_matches(code, known, n=1, cutoff=0.6)
            raise UsageError(f"{where}: no rule matches `{code}`",
                             f"did you mean {guess[0]}?" if guess else "run `fnl rules` for the list of IDs")


@dataclass(frozen=True)
class Selection:
    """Which rules run: IDs or prefixes (`FNL4`) to select and to ignore."""

    select: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()

    def wants(self, code: str) -> bool:
        chosen = not self.select or any(code.startswith(s) for s in self.select)
        return chosen and not any(code.startswith(i) for i in self.ignore)


def rule_meta(rule: ModuleType) -> Dict[str, str]:
    doc = (rule.__doc__ or "").strip()
    return {"id": rule.ID, "name": rule.NAME, "severity": rule.SEVERITY,
            "summary": doc.splitlines()[0] if doc else "", "doc": doc}


def _problem(ctx: Context, rule: ModuleType, f: Finding) -> Problem:
    loc = f.location or ctx.doc.locate(f.path, key=f.key)
    return Problem(rule.ID, f.message, loc, f.path, f.help, rule.SEVERITY, ctx.doc.source_line(loc) if not f.location
                   else _file_line(loc))


def _file_line(loc: Location) -> str:
    """The source line of a finding in a template file. Never through a link (it could
    point anywhere) and never from a pipe (reading could block)."""
    try:
        if os.path.islink(loc.file) or not stat.S_ISREG(os.stat(loc.file).st_mode):
            return ""
        with open(loc.file, encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh, 1):
                if i == loc.line:
                    return line.rstrip("\n")
    except OSError:
        pass
    return ""


def _comment(line: str) -> str:
    """The YAML comment on a line, if any: a `#` outside quotes, at the start or after
    white space. A `# fnl: ignore[...]` inside a quoted value is text, not a comment."""
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            if ch == "'" and line[i + 1:i + 2] == "'":
                i += 1
            elif ch == "'":
                quote = ""
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = ""
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t[{:,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[i:]
        i += 1
    return ""


def _suppressions(lines_by_file: Mapping[str, Sequence[str]]) -> Dict[Tuple[str, int], List[Tuple[Set[str], int, int]]]:
    """(file, line a suppression covers) -> [(codes, line, column of the comment)]. A
    comment covers its own line and the line after it, so one line may be covered by
    two comments; each keeps its own codes, and a finding uses the comment naming it."""
    out: Dict[Tuple[str, int], List[Tuple[Set[str], int, int]]] = {}
    for file, lines in lines_by_file.items():
        for i, text in enumerate(lines, 1):
            comment = _comment(text)
            m = SUPPRESSION.search(comment) if comment else None
            if not m:
                continue
            codes = {c.strip() for c in m.group(1).split(",") if c.strip()}
            for covered in (i, i + 1):
                start = len(text) - len(comment) + m.start()
                out.setdefault((file, covered), []).append((codes, i, start + 1))
    return out


def lint(funnel: Funnel, selection: Selection = Selection()) -> Tuple[Problem, ...]:
    """Every finding of every selected rule, suppressions applied, sorted by place."""
    ctx = Context(funnel)
    found: List[Problem] = []
    for rule in RULES:
        if not selection.wants(rule.ID):
            continue
        for finding in rule.check(ctx):
            found.append(_problem(ctx, rule, finding))
    lines = dict(funnel.document.lines)
    suppress = _suppressions(lines)
    used: Set[Tuple[str, int, str]] = set()
    kept = []
    for p in found:
        entry = next((e for e in suppress.get((p.location.file, p.location.line), ()) if p.code in e[0]), None)
        if entry:
            used.add((p.location.file, entry[1], p.code))
            continue
        kept.append(p)
    if selection.wants(UNUSED_SUPPRESSION):
        comments = {(file, line): (codes, column)
                    for (file, _covered), entries in suppress.items() for codes, line, column in entries}
        for (file, comment_line), (codes, column) in sorted(comments.items()):
            for code in sorted(codes):
                if (file, comment_line, code) in used:
                    continue
                if not selection.wants(code) and code.startswith("FNL"):
                    continue  # the rule did not run, so the comment cannot be judged
                text = lines[file][comment_line - 1]
                loc = Location(file, comment_line, column)
                kept.append(Problem(UNUSED_SUPPRESSION, f"suppression of {code} matches nothing on this line or the next",
                                    loc, (), "remove the comment; the problem it silenced is gone", "warning", text))
    kept.sort(key=lambda p: (p.location.file, p.location.line, p.location.column, p.code))
    return tuple(_dedupe(kept))


def _dedupe(problems: List[Problem]) -> List[Problem]:
    out: List[Problem] = []
    seen = set()
    for p in problems:
        key = (p.code, p.location, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
