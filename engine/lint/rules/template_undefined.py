"""A template uses a variable or lead attribute that does not exist.

Templates see `lead` (the declared profile attributes and `email`), `sender`,
`unsubscribe_url`, `variant`, `owner`, `magnet` and `funnel`. Anything else would fail
at send time (templates render with StrictUndefined), so it is an error now.

Fails:
    <p>Hi {{ lead.frist_name }},</p>

Passes:
    profile: {first_name: {type: string}}
    <p>Hi {{ lead.first_name }},</p>
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..template_findings import template_issues

ID = "FNL221"
NAME = "template-undefined"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    yield from template_issues(ctx, "undefined")
