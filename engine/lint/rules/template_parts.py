"""An email template without a subject, an HTML part or a plain-text part.

Every email carries a subject line and both an HTML and a plain-text part (clients
that block HTML, and spam filters, read the text part).

Fails:
    {% block subject %}Hello{% endblock %}
    {% block html %}<p>Hi</p>{% endblock %}

Passes:
    {% block subject %}Hello{% endblock %}
    {% block html %}<p>Hi</p>{% endblock %}
    {% block text %}Hi{% endblock %}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..template_findings import template_issues

ID = "FNL222"
NAME = "template-parts"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    yield from template_issues(ctx, "parts")
