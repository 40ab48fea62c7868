"""A step sends A/B variants of an email that never reads `variant`.

`variants: {a: 50, b: 50}` splits leads between versions of the email, but the
template decides what differs: an email that never branches on `variant` (nor prints
it, in itself or a partial it includes) is the same in every variant, and the test
measures nothing.

Fails:
    - {send: nurture/insight, variants: {a: 50, b: 50}}     # insight.j2 never reads `variant`

Passes:
    - {send: nurture/case-study, variants: {a: 50, b: 50}}
    {% block subject %}{% if variant == 'b' %}30% faster{% else %}How Northwind did it{% endif %}{% endblock %}
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ... import templates
from .. import Finding
from ..context import Context
from ..template_findings import variant_sends

ID = "FNL226"
NAME = "variant-unused"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    root = Path(ctx.funnel.template_dir)
    for name, sends in variant_sends(ctx).items():
        tpl = ctx.template(name)
        if tpl is None or tpl.issues:
            continue  # missing or broken: other rules say so
        _tests, reads = templates.variant_tests(root, name)
        if reads:
            continue
        for path, variants in sends:
            if len(variants) < 2:
                continue
            listed = " and ".join(f"`{v}`" for v in variants)
            yield Finding(path + ("variants",), f"the variants {listed} of {name} are the same email: the template "
                          "never reads `variant`, so the A/B test compares nothing",
                          f"branch on it in {name}.j2, such as `{{% if variant == '{variants[-1]}' %}}…{{% else %}}…"
                          "{% endif %}` in the subject, or remove `variants:`")
