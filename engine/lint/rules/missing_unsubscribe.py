"""A marketing email without a working unsubscribe link.

Every nurture, broadcast and lead-magnet email must carry the lead's own unsubscribe
link (CAN-SPAM, GDPR): `{{ unsubscribe_url }}` as a link in the HTML part and as text
in the plain-text part. Checked on the rendered email, so a shared footer partial
counts.

Fails:
    {% block html %}<p>Our report is out.</p>{% endblock %}

Passes:
    {% block html %}<p>Our report is out.</p>
    <a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endblock %}
"""
from __future__ import annotations

from typing import Iterator

from ... import templates
from .. import Finding
from ..context import Context
from ..template_findings import each_render, template_location

ID = "FNL406"
NAME = "missing-unsubscribe"
SEVERITY = "error"

MARKETING = ("nurture", "broadcast", "delivery")


def check(ctx: Context) -> Iterator[Finding]:
    reported = set()
    for name, path, variant, r in each_render(ctx, MARKETING):
        if name in reported:
            continue
        probe = templates.UNSUBSCRIBE_PROBE
        missing = []
        if probe not in templates.links(r.html):
            missing.append("HTML part (as a link)")
        if probe not in r.text:
            missing.append("text part")
        if missing:
            reported.add(name)
            yield Finding(path, f"marketing email `{name}` has no unsubscribe link in its {' and '.join(missing)}",
                          "include `{{ unsubscribe_url }}` (the shared footer partial does this)",
                          location=template_location(ctx, name, 1))
