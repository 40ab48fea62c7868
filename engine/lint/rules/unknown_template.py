"""An email names a template that does not exist.

Every `send:`, lead magnet `delivers:` and `double_opt_in: {confirm: ...}`, template
predicate such as `clicked('x')` and per-template scoring event must name a file
`<name>.j2` in the funnel's template directory.

Fails:
    steps:
      - {send: saas/industry-insigt}      # no templates/acme/saas/industry-insigt.j2

Passes:
    steps:
      - {send: saas/industry-insight}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import template_mentions
from ...sources import display_path

ID = "FNL201"
NAME = "unknown-template"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    known = set(ctx.template_names)
    for name, path, loc in template_mentions(ctx):
        if name in known:
            continue
        guess = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        where = display_path(ctx.funnel.template_dir)
        help = f"did you mean `{guess[0]}`?" if guess else f"create {name}.j2 in {where}"
        yield Finding(path, f"template `{name}` does not exist", help, location=loc)
