"""A subject line that renders with a line break.

A CR or LF in a subject breaks the email header (or is a header injection when it
comes from lead data). The subject is rendered for every variant and checked.

Fails:
    {% block subject %}Your report
    is ready{% endblock %}

Passes:
    {% block subject %}Your report is ready{% endblock %}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..template_findings import each_render, template_location

ID = "FNL223"
NAME = "subject-newline"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    for name, path, variant, rendered in each_render(ctx):
        if "\r" in rendered.subject or "\n" in rendered.subject:
            tpl = ctx.template(name)
            line = 1
            if tpl is not None:
                line = next((i for i, text in enumerate(tpl.source.splitlines(), 1) if "block subject" in text), 1)
            which = f" (variant {variant})" if variant else ""
            yield Finding(path, f"subject of `{name}`{which} contains a line break",
                          "keep the subject block on one line; use `{{- ... -}}` to trim whitespace",
                          location=template_location(ctx, name, line))
