"""A lead magnet without consent text.

Consent is recorded with every opt-in; the exact wording the lead agreed to is what
proves it. A lead magnet must say it.

Fails:
    lead_magnets:
      whitepaper: {kind: whitepaper, enters: subscriber}

Passes:
      whitepaper: {kind: whitepaper, enters: subscriber,
                   consent: "I agree to receive email from Acme. Unsubscribe at any time."}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL403"
NAME = "magnet-without-consent"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    for m in ctx.funnel.lead_magnets:
        if not (m.consent or "").strip():
            yield Finding(m.path, f"lead magnet `{m.name}` has no consent text",
                          "add `consent:` with the exact wording shown at opt-in", key=True)
        elif not any(word in (m.consent or "").lower() for word in ("unsubscribe", "opt out", "withdraw")):
            yield Finding(m.path + ("consent",), f"consent text of `{m.name}` does not say how to unsubscribe",
                          "add a sentence such as \"Unsubscribe at any time.\"")
