"""The catalogue of problem codes that loading and validation report.

Lint rules (FNL2xx-FNL5xx) carry their own documentation; these codes are the
structural ones: FNL0xx for reading YAML, FNL1xx for the schema and the condition
language, FNL6xx and FNL7xx for events and plan files, FNL80x for the behaviour models and
FNL81x for the expectations that `fnl simulate` reads (engine/simulate/behavior.py, expect.py).
"""
from __future__ import annotations

from typing import Dict

DOCS_URL = "https://fnl.dev/rules/"

CODES: Dict[str, str] = {
    "FNL001": "The file is not UTF-8 text (binary, UTF-16, or invalid bytes).",
    "FNL002": "YAML syntax error.",
    "FNL003": "More than one YAML document in a file.",
    "FNL004": "The file is empty.",
    "FNL005": "The file is larger than fnl reads.",
    "FNL006": "The file cannot be read.",
    "FNL007": "A file of a split definition is not a mapping of sections.",
    "FNL008": "An entry is defined in two files of a split definition.",
    "FNL010": "A YAML 1.1 boolean spelling (yes, no, on, off) where YAML tools disagree.",
    "FNL011": "A value YAML tools read differently (leading zero, base 60, hex, underscores).",
    "FNL012": "A number that is too large or not finite.",
    "FNL013": "Anchors, aliases and tags are not allowed.",
    "FNL014": "Nesting too deep or too many values.",
    "FNL015": "A mapping key that is not a plain name.",
    "FNL016": "A duplicate key.",
    "FNL017": "A key with an invisible character in it.",
    "FNL020": "An inline suppression that no longer matches any finding.",
    "FNL021": "An inline suppression naming a code that is not a lint rule's ID.",
    "FNL022": "An inline suppression that gives no reason.",
    "FNL100": "An unknown key.",
    "FNL101": "A required key is missing.",
    "FNL102": "A value of the wrong type.",
    "FNL103": "A value that is not one of the allowed ones.",
    "FNL104": "A value or name in the wrong format.",
    "FNL105": "A number out of range.",
    "FNL106": "Too few or too many items.",
    "FNL107": "A list item given twice.",
    "FNL108": "Keys that cannot be combined, or a key that needs another.",
    "FNL109": "Another schema violation.",
    "FNL110": "A condition with a syntax error.",
    "FNL111": "A duration out of bounds (zero where it must be positive, or over ten years).",
    "FNL112": "A timezone that does not exist.",
    "FNL601": "An events file that cannot be read (missing, too large, not UTF-8).",
    "FNL602": "An events line that is not valid JSON.",
    "FNL603": "An event that is not valid (unknown type, bad time, out of order).",
    "FNL701": "A plan file that cannot be read as JSON (too large, not UTF-8, bad syntax, nested too deep).",
    "FNL702": "A plan file that does not match the plan schema (`fnl schema plan`).",
    "FNL801": "A behaviour model names something its funnel does not have (a lead magnet, attribute, value, "
              "segment, persona, template, variant, stage, page, CRM event or rep).",
    "FNL802": "A behaviour model value that cannot happen (shares above 1, a click without an open, an empty "
              "window, a range outside the attribute's bounds, a delay or window that contradicts itself).",
    "FNL803": "A behaviour model size out of bounds (too many leads, too long a horizon, duration or delay).",
    "FNL804": "A behaviour model written for another funnel.",
    "FNL805": "More than one behaviour model beside a funnel, or one behind a link out of the funnel's folder.",
    "FNL811": "An expectation of `fnl simulate` does not hold for the forecast (a CI gate failed).",
    "FNL812": "An expectation names a metric, flag or stage fnl does not know.",
    "FNL813": "An expectation that cannot be read (not `METRIC OP NUMBER`, `METRIC between A and B` or a flag).",
    "FNL814": "An expectations file that cannot serve this funnel: written for another, one of several beside it, "
              "a link out of its folder, or a metric its behaviour model cannot give.",
}


def describe(code: str) -> str:
    return CODES.get(code, "")
