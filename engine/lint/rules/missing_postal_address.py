"""A marketing email without the sender's postal address.

CAN-SPAM requires a valid physical postal address in every commercial email. Use
`{{ sender.postal_address }}` in both parts; checked on the rendered email.

Fails:
    {% block text %}Read the report: https://acme.example/r{% endblock %}

Passes:
    {% block text %}Read the report: https://acme.example/r
    {{ sender.postal_address }}{% endblock %}
"""
from __future__ import annotations

import html
from typing import Iterator

from .. import Finding
from ..context import Context
from ..template_findings import each_render, template_location

ID = "FNL407"
NAME = "missing-postal-address"
SEVERITY = "error"

MARKETING = ("nurture", "broadcast", "delivery")


def check(ctx: Context) -> Iterator[Finding]:
    address = ctx.funnel.sender.postal_address
    reported = set()
    for name, path, _variant, r in each_render(ctx, MARKETING):
        if name in reported:
            continue
        missing = []
        if address not in html.unescape(r.html):
            missing.append("HTML part")
        if address not in r.text:
            missing.append("text part")
        if missing:
            reported.add(name)
            yield Finding(path, f"marketing email `{name}` lacks the postal address in its {' and '.join(missing)}",
                          "include `{{ sender.postal_address }}` (the shared footer partial does this)",
                          location=template_location(ctx, name, 1))
