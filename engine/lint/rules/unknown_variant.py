"""A template compares `variant` with a name no step sending it has.

A step's `variants: {curiosity: 50, numbers: 50}` names the A/B variants, and the email
branches on them with `{% if variant == 'curiosity' %}`. A misspelt name in the template
never matches, so every lead gets the other branch and the test silently becomes A/A.
Every name compared with `variant` (`==`, `!=`, `in [...]`, `not in [...]`) in the email
or a partial it includes must be a variant of a step that sends it with variants.

Fails:
    - {send: nurture/case-study, variants: {curiosity: 50, numbers: 50}}
    {% block subject %}{% if variant == "curiousity" %}…{% endif %}{% endblock %}

Passes:
    {% block subject %}{% if variant == "curiosity" %}…{% endif %}{% endblock %}
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from ... import templates
from ...errors import JsonPath, Location
from ...sources import display_path
from .. import Finding
from ..context import Context
from ..template_findings import variant_sends

ID = "FNL225"
NAME = "unknown-variant"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    root = Path(ctx.funnel.template_dir)
    # A partial may be included by several emails: a name is known if any of them has it.
    known: Dict[Tuple[str, int, int, str], List[str]] = {}
    first: Dict[Tuple[str, int, int, str], Tuple[str, JsonPath, templates.VariantTest]] = {}
    for name, sends in variant_sends(ctx).items():
        names = sorted({v for _path, variants in sends for v in variants})
        if not names or ctx.template(name) is None:
            continue
        tests, _reads = templates.variant_tests(root, name)
        for test in tests:
            key = (test.file, test.line, test.column, test.value)
            known.setdefault(key, [])
            known[key].extend(n for n in names if n not in known[key])
            first.setdefault(key, (name, sends[0][0], test))
    for key in sorted(first):
        name, path, test = first[key]
        names = known[key]
        if test.value in names:
            continue
        guess = difflib.get_close_matches(test.value, names, n=1, cutoff=0.6)
        listed = ", ".join(f"`{n}`" for n in names)
        own = test.file == f"{name}{templates.SUFFIX}"
        email = "this email" if own else f"{name}, which includes this partial,"
        # In a list (`variant in ['a', 'b']`) say which name is the one that matches nothing.
        in_list = test.text.count("'") + test.text.count('"') > 2
        which = f"`{test.value}` in `{test.text}`" if in_list else f"`{test.text}`"
        yield Finding(path, f"{which} names no variant of the steps that send {email} (they have {listed})",
                      f"did you mean `{guess[0]}`?" if guess else f"compare with one of {listed}, or add "
                      f"`{test.value}` to the step's `variants:`",
                      location=Location(display_path(root / test.file), test.line, test.column))
