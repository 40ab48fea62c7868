"""A template that fails when rendered in the sandbox with a sample lead.

Templates render in Jinja2's sandbox with StrictUndefined against a lead built from
the declared profile. Anything that raises there (unsafe attribute access, a filter
applied to the wrong type, a division by zero) would fail at send time. So does a
template that builds a huge value, needs too much memory or time, or could not be
rendered because the command's time for rendering ran out (templates come from pull
requests: see `engine.templates` for the limits).

Fails:
    {{ lead.employees | upper }}            # employees is an integer
    {{ lead.__class__ }}                    # blocked by the sandbox

Passes:
    {{ lead.company | upper }}
"""
from __future__ import annotations

from typing import Iterator

import jinja2

from ... import templates
from .. import Finding
from ..context import Context
from ..template_findings import renders, template_location

ID = "FNL224"
NAME = "template-render"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    seen = set()
    for name, path, _purpose in ctx.sends:
        tpl = ctx.template(name)
        if name in seen or tpl is None or tpl.issues:
            continue  # missing or statically broken templates are reported by their own rules
        seen.add(name)
        for variant, result in renders(ctx, name):
            if isinstance(result, Exception):
                line = templates.error_line(result, tpl.path)
                which = f" (variant {variant})" if variant else ""
                message = getattr(result, "message", None) or str(result) or type(result).__name__
                if isinstance(result, jinja2.TemplateNotFound):
                    message = f"it includes `{result.name}`, which is not a file inside the template directory"
                kind = getattr(result, "kind", "error")
                verb = "was not checked" if kind == "skipped" else "fails to render"
                yield Finding(path, f"`{name}`{which} {verb}: {message}", HELP.get(kind, HELP["error"]),
                              location=template_location(ctx, name, line, getattr(result, "column", 1)))
                break


HELP = {
    "error": "fix the expression on this line; templates render in a sandbox",
    "memory": "look for a huge count or width (`*`, `ljust`, `format`, `batch`) or a loop that grows a value; "
              "no email needs this much memory",
    "size": "use smaller counts, widths and loops: no value in an email needs to be this large",
    "time": "look for a loop that runs too long; an email renders in milliseconds",
    "skipped": "fix the templates that render slowly (reported above); then this one is checked too",
}
