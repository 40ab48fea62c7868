"""A template that Jinja2 cannot parse.

Fails:
    {% block subject %}Your report{% endblok %}

Passes:
    {% block subject %}Your report{% endblock %}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..template_findings import template_issues

ID = "FNL220"
NAME = "template-syntax"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    yield from template_issues(ctx, "syntax")
