"""The condition language, documented: one source for the README's "Conditions"
section, `fnl help conditions` and the descriptions editors show for every condition in
`schemas/funnel.schema.json`.

What the engine knows is read at run time from `expr.PREDICATES` and `expr.NAMES` (what
each means) and from the `unknown-name` rule's `SIGNATURES` (how each predicate is
called); this module adds what a reader needs besides: an example of each, the
operators, the literals, the limits, and where conditions appear in a definition.

    python -m engine.language --write     # rewrite the schema's condition properties
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import expr

# One example condition per engine name and predicate, keyed by name. A name or
# predicate added to `expr` needs its example here (a test says which is missing).
EXAMPLES: Dict[str, str] = {
    # names
    "score": "score >= 40",
    "stage": "stage in ['mql', 'sql']",
    "fit": "fit and score >= thresholds.mql",
    "segment": "segment == 'saas'",
    "persona": "persona != 'executive'",
    "thresholds": "score >= thresholds.mql",
    "email": "email not in ['ceo@acme.example']",
    "emails_sent": "emails_sent >= 5 and not replied",
    "unsubscribed": "score >= thresholds.mql and not unsubscribed",
    "bounced": "not bounced",
    # predicates
    "opened": "opened('saas/industry-insight')",
    "clicked": "clicked('saas/case-study')",
    "replied": "replied or visited('pricing', since='mql')",
    "visited": "visited('pricing', since='mql')",
    "downloaded": "downloaded('roi-calculator')",
    "attended": "attended('metrics-live') or replied",
    "registered": "registered('metrics-live') and not attended('metrics-live')",
    "stage_at_least": "stage_at_least('sql')",
    "days_since": "days_since('optin') >= 14",
}

# What a predicate's quoted argument names, keyed by predicate.
ARGUMENTS: Dict[str, str] = {
    "opened": "template", "clicked": "template", "replied": "template", "visited": "page",
    "downloaded": "lead magnet", "attended": "webinar", "registered": "webinar", "stage_at_least": "stage",
    "days_since": "event",
}

# The kind of value each engine name holds.
VALUES: Dict[str, str] = {
    "score": "number", "stage": "text", "fit": "true or false", "segment": "text or null",
    "persona": "text or null", "thresholds": "number", "email": "text", "emails_sent": "number",
    "unsubscribed": "true or false", "bounced": "true or false",
}


@dataclass(frozen=True)
class Operator:
    symbols: Tuple[str, ...]
    meaning: str
    example: str


# Lowest precedence first.
OPERATORS: Tuple[Operator, ...] = (
    Operator(("or",), "either side holds", "replied or visited('pricing')"),
    Operator(("and",), "both sides hold", "fit and score >= thresholds.mql"),
    Operator(("not",), "the opposite", "not clicked('saas/case-study')"),
    Operator(("==", "!="), "equal, not equal (text, numbers, true/false, null)", "industry == 'saas'"),
    Operator(("<", "<=", ">", ">="), "ordering of two numbers or two texts; false if either is null; not chained",
             "employees >= 50"),
    Operator(("in", "not in"), "the value is (not) an item of the list", "industry in ['saas', 'finance']"),
    Operator(("+", "-", "*", "/"), "arithmetic on numbers; null if a side is not a number or on division by zero",
             "score >= thresholds.mql + 10"),
    Operator(("( )",), "grouping", "(replied or clicked) and fit"),
)

LITERALS: Tuple[Tuple[str, str], ...] = (
    ("numbers", "`40`, `2.5` (a leading `-` negates: `-5`)"),
    ("text", "in single or double quotes: `'saas'`, `\"saas\"`; no escapes, so a text cannot hold its own quote"),
    ("true, false, null", "`null` is the value of an attribute the lead does not have"),
    ("lists", "`['saas', 'finance']`, for `in` and `not in`"),
)


@dataclass(frozen=True)
class Place:
    """A property of a definition that holds a condition, as the schema describes it."""

    pointer: str  # JSON pointer into schemas/funnel.schema.json
    yaml: str  # where it is in a definition
    title: str
    lead: str  # what the condition decides there
    example: str


PLACES: Tuple[Place, ...] = (
    Place("/properties/personas/additionalProperties/properties/when", "personas.<name>.when", "When",
          "The lead has this persona when this holds; the first persona that matches, in order, wins.",
          "role in ['vp', 'cxo']"),
    Place("/properties/segments/additionalProperties/properties/when", "segments.<name>.when", "When",
          "The lead is in this segment when this holds; the first segment that matches, in order, wins.",
          "industry == 'saas'"),
    Place("/properties/fit/properties/when", "fit.when", "When",
          "The lead fits the ideal customer profile when this holds; other conditions read it as `fit`.",
          "industry in ['saas', 'finance'] and employees >= 50"),
    Place("/properties/scoring/properties/fit/items/properties/when", "scoring.fit[].when", "When",
          "The points are added once, when the lead is created, if this holds.",
          "employees >= 200"),
    Place("/properties/transitions/items/properties/when", "transitions[].when", "When",
          "The lead moves when this holds (checked after each event, in declaration order); with `on:`, "
          "when the event happens and this holds.",
          "fit and score >= thresholds.mql"),
    Place("/definitions/sequence/properties/when", "sequences.<name>.when", "Entry condition",
          "Only leads matching this condition enter the sequence.",
          "employees >= 200"),
    Place("/definitions/sequence/properties/exit/properties/when", "sequences.<name>.exit.when", "When",
          "The lead leaves the sequence once this holds.",
          "score >= 80 or replied"),
    Place("/definitions/step/properties/when", "steps[].when", "When",
          "The step runs only for leads matching this condition; others skip it.",
          "segment == 'saas'"),
    Place("/definitions/step/properties/unless", "steps[].unless", "Unless",
          "The step is skipped for leads matching this condition.",
          "clicked('saas/case-study')"),
)


@dataclass(frozen=True)
class Term:
    """An engine name or predicate: how it is written, what it means, an example."""

    name: str
    kind: str  # "name" or "predicate"
    forms: Tuple[str, ...]
    meaning: str
    value: str  # the kind of value it gives
    example: str


def _signatures() -> Dict[str, Tuple[int, int, bool]]:
    """Predicate -> (least and most positional arguments, whether `since=` is allowed),
    as the `unknown-name` rule checks calls."""
    from .lint.rules.unknown_name import SIGNATURES

    return dict(SIGNATURES)


def _bare() -> Tuple[str, ...]:
    from .lint.rules.unknown_name import BARE_PREDICATES

    return tuple(BARE_PREDICATES)


def _forms(name: str) -> Tuple[str, ...]:
    """How a predicate is written: bare (where it reads as a boolean), with its quoted
    argument, with `since=`."""
    least, most, since = _signatures().get(name, (1, 1, False))
    arg = f"'<{ARGUMENTS.get(name, 'name')}>'"
    forms: List[str] = []
    if name in _bare():
        forms.append(name)
    elif least == 0:
        forms.append(f"{name}()")
    if most >= 1:
        forms.append(f"{name}({arg})")
    if since:
        forms.append(f"{name}({arg + ', ' if most >= 1 else ''}since='<stage>')")
    return tuple(forms)


def terms() -> Tuple[Term, ...]:
    """Every engine name, then every predicate, in the order `expr` declares them."""
    out: List[Term] = []
    for name, meaning in expr.NAMES.items():
        form = f"{name}.<name>" if name == "thresholds" else name
        out.append(Term(name, "name", (form,), meaning, VALUES.get(name, ""), EXAMPLES.get(name, "")))
    for name, meaning in expr.PREDICATES.items():
        value = "number, or null if it has not happened" if name == "days_since" else "true or false"
        out.append(Term(name, "predicate", _forms(name), meaning, value, EXAMPLES.get(name, "")))
    return tuple(out)


def missing_examples() -> List[str]:
    """Engine names and predicates without an example here."""
    return [t.name for t in terms() if not t.example]


def limits() -> str:
    return (f"at most {expr.MAX_LENGTH:,} characters, {expr.MAX_DEPTH} levels of nesting (brackets, `not`s, "
            f"calls and lists) and {expr.MAX_OPERATORS} operators")


# -- renderings ---------------------------------------------------------------------

RULES_OF_EVALUATION: Tuple[str, ...] = (
    "A predicate without a name counts any: `clicked` (or `clicked()`) is any click in any email.",
    "`since='<stage>'` counts only what happened after the minute the lead entered that stage, and is "
    "false if the lead never did.",
    "An attribute the lead does not have is `null`: `==` and `!=` compare it, `<`, `<=`, `>` and `>=` "
    "with it are false, `in` is false and `not in` true.",
    "A number is never equal to a text, and orderings between them are false.",
    "Conditions are parsed, never run as Python; a name that is neither a profile attribute nor an engine "
    "name is reported (FNL208), and so is a predicate called with the wrong arguments.",
)


def _where_lines() -> List[str]:
    return [f"`{p.yaml}`: {p.lead[0].lower()}{p.lead[1:]}" for p in PLACES]


def markdown() -> str:
    """The README's "Conditions" section body (without its heading)."""
    lines = [
        "Conditions are a small, safe expression language. They read the lead's profile attributes "
        "(the ones declared under `profile:`), the engine's names and predicates below, literals and "
        "operators:",
        "",
        "```yaml",
        "transitions:",
        "  - {from: subscriber, to: mql, when: \"fit and score >= thresholds.mql and not unsubscribed\"}",
        "  - {from: mql, to: sql, when: \"replied or visited('pricing', since='mql')\"}",
        "```",
        "",
        "| name | value | meaning | example |",
        "| --- | --- | --- | --- |",
    ]
    for t in terms():
        if t.kind == "name":
            lines.append(f"| `{t.forms[0]}` | {t.value} | {_cell(t.meaning)} | `{t.example}` |")
    lines += ["", "| predicate | meaning | example |", "| --- | --- | --- |"]
    for t in terms():
        if t.kind == "predicate":
            forms = " ".join(f"`{f}`" for f in t.forms)
            lines.append(f"| {forms} | {_cell(t.meaning)} | `{t.example}` |")
    lines += ["", "Operators, lowest precedence first:", "", "| operator | meaning | example |",
              "| --- | --- | --- |"]
    for op in OPERATORS:
        symbols = ", ".join(f"`{s}`" for s in op.symbols)
        lines.append(f"| {symbols} | {_cell(op.meaning)} | `{op.example}` |")
    lines += ["", "Literals: " + "; ".join(f"{kind}: {text}" for kind, text in LITERALS) + ".", ""]
    lines += [f"- {rule}" for rule in RULES_OF_EVALUATION]
    lines += [f"- Each condition is bounded: {limits()}.", "",
              "Conditions appear in:", ""]
    lines += [f"- {line}" for line in _where_lines()]
    lines += ["", "`fnl help conditions` prints this reference; editors show a summary on hover."]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def text() -> str:
    """`fnl help conditions`: the same reference, for a terminal."""
    lines = [
        "Conditions: a small, safe expression language",
        "",
        "Conditions read the lead's profile attributes (the ones declared under `profile:`),",
        "the engine's names and predicates below, literals and operators:",
        "",
        "    when: \"fit and score >= thresholds.mql and not unsubscribed\"",
        "    when: \"replied or visited('pricing', since='mql')\"",
        "",
        "Names:",
    ]
    for t in terms():
        if t.kind == "name":
            lines += _term_lines(f"{t.forms[0]}  ({t.value})", t.meaning, t.example)
    lines += ["", "Predicates:"]
    for t in terms():
        if t.kind == "predicate":
            lines += _term_lines("  ".join(t.forms), t.meaning, t.example)
    lines += ["", "Operators, lowest precedence first:"]
    for op in OPERATORS:
        lines += _term_lines("  ".join(op.symbols), op.meaning, op.example)
    lines += ["", "Literals:"]
    lines += [f"  {kind}: {text}" for kind, text in LITERALS]
    lines += ["", "Rules:"]
    lines += [f"  - {rule}" for rule in RULES_OF_EVALUATION]
    lines += [f"  - Each condition is bounded: {limits()}.", "", "Where conditions appear:"]
    lines += [f"  {p.yaml}: {p.lead}" for p in PLACES]
    return "\n".join(lines) + "\n"


def _term_lines(head: str, meaning: str, example: str) -> List[str]:
    lines = [f"  {head}", f"      {meaning}"]
    if example:
        lines.append(f"      example: {example}")
    return lines


def summary() -> str:
    """The part of every condition property's description that explains the language."""
    names = ", ".join(t.forms[0] for t in terms() if t.kind == "name")
    predicates = ", ".join(t.forms[1] if len(t.forms) > 1 and t.forms[0] == t.name else t.forms[0]
                           for t in terms() if t.kind == "predicate")
    return (f"Conditions read profile attributes and the names {names}; call the predicates {predicates} "
            "(those that take a name count any without one; `since='<stage>'` counts only what came after "
            "entering the stage); and combine them with and, or, not, == != < <= > >=, in [...], not in [...], "
            "+ - * / and parentheses, over 'quoted text', numbers, true, false and null. "
            f"Example: `{EXAMPLES['replied']}`. At most {expr.MAX_LENGTH:,} characters. "
            "`fnl help conditions` explains each name and predicate.")


def schema_property(place: Place) -> Dict[str, Any]:
    """The schema node of one condition property."""
    return {
        "title": place.title,
        "description": f"{place.lead} {summary()}",
        "examples": [place.example],
        "type": "string",
        "minLength": 1,
        "maxLength": expr.MAX_LENGTH,
    }


def _at(schema: Dict[str, Any], pointer: str) -> Tuple[Dict[str, Any], str]:
    """The parent object of `pointer` and the last key."""
    tokens = pointer.lstrip("/").split("/")
    node = schema
    for token in tokens[:-1]:
        node = node[token]
    return node, tokens[-1]


def with_descriptions(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The schema with every condition property as `schema_property` makes it."""
    out = json.loads(json.dumps(schema))
    for place in PLACES:
        parent, key = _at(out, place.pointer)
        parent[key] = schema_property(place)
    return out


def schema_path() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas" / "funnel.schema.json"


def dumps_schema(schema: Dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = schema_path()
    current = path.read_text(encoding="utf-8")
    wanted = dumps_schema(with_descriptions(json.loads(current)))
    if args == ["--write"]:
        if wanted != current:
            path.write_text(wanted, encoding="utf-8")
            print(f"rewrote {path.name}")
        return 0
    if args == ["--check"]:
        if wanted != current:
            print(f"{path.name}: condition descriptions are out of date; run python -m engine.language --write")
            return 1
        return 0
    print(text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
