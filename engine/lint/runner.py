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

SUPPRESSION = re.compile(r"#\s*fnl:\s*ignore\[([A-Za-z0-9_, -]+)\]\s*(.*)$")
UNUSED_SUPPRESSION = "FNL020"
UNKNOWN_SUPPRESSION = "FNL021"
UNEXPLAINED_SUPPRESSION = "FNL022"
SUPPRESSION_CODES = (UNUSED_SUPPRESSION, UNKNOWN_SUPPRESSION, UNEXPLAINED_SUPPRESSION)


def check_codes(codes: Tuple[str, ...], where: str) -> None:
    """Every ID or prefix must name at least one rule: a typo must not turn lint off."""
    import difflib

    from ..errors import UsageError

    known = [r.ID for r in RULES] + list(SUPPRESSION_CODES)
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


@dataclass(frozen=True)
class Suppression:
    """One `# fnl: ignore[...] reason` comment: where it is, what it names, and why."""

    file: str
    line: int
    column: int
    codes: Tuple[str, ...]
    reason: str
    text: str  # the source line


def _suppressions(lines_by_file: Mapping[str, Sequence[str]]) -> List[Suppression]:
    out = []
    for file, lines in lines_by_file.items():
        for i, text in enumerate(lines, 1):
            comment = _comment(text)
            m = SUPPRESSION.search(comment) if comment else None
            if not m:
                continue
            # A rule may be named by its ID or by its name (`sla-through-the-night`), as `fnl rules` accepts.
            by_name = {r.NAME: r.ID for r in RULES}
            codes = tuple(dict.fromkeys(by_name.get(c.strip(), c.strip()) for c in m.group(1).split(",") if c.strip()))
            start = len(text) - len(comment) + m.start()
            out.append(Suppression(file, i, start + 1, codes, m.group(2).strip(), text))
    return out


def _covering(suppressions: List[Suppression]) -> Dict[Tuple[str, int], List[Suppression]]:
    """(file, line) -> the comments covering it: a comment covers its own line and the
    line after it, so one line may be covered by two comments; each keeps its own codes,
    and a finding uses the comment naming it."""
    out: Dict[Tuple[str, int], List[Suppression]] = {}
    for sup in suppressions:
        for covered in (sup.line, sup.line + 1):
            out.setdefault((sup.file, covered), []).append(sup)
    return out


def _has_reason(reason: str) -> bool:
    return any(ch.isalnum() for ch in reason)


def _judge_suppressions(suppressions: List[Suppression], used: Set[Tuple[str, int, str]],
                        selection: Selection, unsilenced: List[Problem]) -> List[Problem]:
    """What is wrong with the comments themselves: a code that names no rule (FNL021),
    a comment without its reason (FNL022), a suppression matching nothing (FNL020).
    For a code that names no rule, the likeliest meant one is a rule found on the lines
    the comment covers."""
    import difflib

    rule_ids = [r.ID for r in RULES]
    here: Dict[Tuple[str, int], List[str]] = {}
    for p in unsilenced:
        here.setdefault((p.location.file, p.location.line), []).append(p.code)
    out: List[Problem] = []
    for sup in suppressions:
        loc = Location(sup.file, sup.line, sup.column)
        if selection.wants(UNEXPLAINED_SUPPRESSION) and not _has_reason(sup.reason):
            example = f"# fnl: ignore[{', '.join(sup.codes)}] " + "<why this is right here>"
            out.append(Problem(UNEXPLAINED_SUPPRESSION, f"suppression of {', '.join(sup.codes)} gives no reason", loc,
                               (), f"say why after the brackets, for the next reviewer: `{example}`", "warning",
                               sup.text))
        for code in sorted(sup.codes):
            if code not in rule_ids:
                if selection.wants(UNKNOWN_SUPPRESSION):
                    nearby = sorted(set(here.get((sup.file, sup.line), []) + here.get((sup.file, sup.line + 1), [])))
                    guess = (difflib.get_close_matches(code, nearby, n=1, cutoff=0.5)
                             or difflib.get_close_matches(code, rule_ids, n=1, cutoff=0.6))
                    prefixed = [r for r in rule_ids if r.startswith(code)]
                    if not code.upper().startswith("FNL"):  # meant as a rule's name: guess by name
                        guess = difflib.get_close_matches(code, [r.NAME for r in RULES], n=1, cutoff=0.6)
                        prefixed = []
                    if prefixed:
                        help = f"a suppression names whole rule IDs, not a prefix: such as {prefixed[0]}"
                    elif guess:
                        help = f"did you mean {guess[0]}? (`fnl rules {guess[0]}` says what it checks)"
                    else:
                        help = "name a lint rule by its full ID or its name; `fnl rules` lists them"
                    what = "is a check suppressions cannot silence" if code in SUPPRESSION_CODES \
                        else "is not the ID of a lint rule" if code.upper().startswith("FNL") \
                        else "is not the ID or name of a lint rule"
                    out.append(Problem(UNKNOWN_SUPPRESSION, f"suppression of {code}: `{code}` {what}, so the comment "
                                       "silences nothing", loc, (), help, "warning", sup.text))
                continue
            if (sup.file, sup.line, code) in used or not selection.wants(UNUSED_SUPPRESSION):
                continue
            if not selection.wants(code):
                continue  # the rule did not run, so the comment cannot be judged
            nearby = [c for c in sorted(set(here.get((sup.file, sup.line), []) + here.get((sup.file, sup.line + 1), [])))
                      if c in rule_ids and c not in sup.codes]
            if nearby:
                # A finding the comment does not name is right here: the ID was likely mistyped.
                meant = (difflib.get_close_matches(code, nearby, n=1, cutoff=0.5) or nearby)[0]
                where = "line" if meant in here.get((sup.file, sup.line), []) else "next line"
                help = (f"did you mean {meant}, reported on this {where}? write `# fnl: ignore[{meant}] <reason>` "
                        f"(`fnl rules {meant}` says what it checks)")
            else:
                help = (f"{code} no longer finds anything here: remove the comment (or move it to the line the "
                        "finding is on, or the line just above it)")
            out.append(Problem(UNUSED_SUPPRESSION, f"suppression of {code} matches nothing on this line or the next",
                               loc, (), help, "warning", sup.text))
    return out


def lint(funnel: Funnel, selection: Selection = Selection()) -> Tuple[Problem, ...]:
    """Every finding of every selected rule, suppressions applied, sorted by place. A
    finding that only follows from another reported finding (its `causes`) is dropped."""
    ctx = Context(funnel)
    findings: List[Tuple[ModuleType, Finding]] = []
    for rule in RULES:
        if not selection.wants(rule.ID):
            continue
        findings.extend((rule, finding) for finding in rule.check(ctx))
    reported = {(rule.ID, f.path) for rule, f in findings}
    found = [_problem(ctx, rule, f) for rule, f in findings if not any(c in reported for c in f.causes)]
    lines = dict(funnel.document.lines)
    suppressions = _suppressions(lines)
    covering = _covering(suppressions)
    used: Set[Tuple[str, int, str]] = set()
    kept = []
    for p in found:
        entry = next((e for e in covering.get((p.location.file, p.location.line), ()) if p.code in e.codes), None)
        if entry:
            used.add((p.location.file, entry.line, p.code))
            continue
        kept.append(p)
    kept.extend(_judge_suppressions(suppressions, used, selection, list(kept)))
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
