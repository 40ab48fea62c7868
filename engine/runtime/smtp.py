"""The SMTP adapter: each `send_email` action as a real message.

The email is rendered from the plan's template in the engine's sandbox (the same
`templates.render` as previews and lint) with the lead's stored profile, the variant the
engine chose, and what its kind of email gets (an owner for sales and post-sale email, the
lead magnet for a delivery). The message has the subject, a text and an HTML part, From
and the postal address from the sender, `List-Unsubscribe` with a per-lead signed link and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a `Message-ID` made
from the action's idempotency key, so a message sent again after a crash is the same
message to every mail system. Lead data never reaches a header unchecked: the address
must be one plain address, and every header value is refused if it holds a line break.

The signing key comes from the environment (`FNL_SIGNING_KEY`), the SMTP password too
(`FNL_SMTP_PASSWORD`, with `FNL_SMTP_USER`); neither is read from YAML or written to a log.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import smtplib
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any, Dict, Optional
from urllib.parse import urlencode, urlsplit

from .. import templates
from ..errors import UsageError
from ..model import Funnel
from ..plan import Plan
from ..state import LeadState
from . import loop
from .db import Database

ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def unsubscribe_link(base: str, lead: str, secret: bytes) -> str:
    """The sender's unsubscribe address with the lead and its signature (HMAC-SHA256)."""
    sig = hmac.new(secret, lead.encode("utf-8"), hashlib.sha256).hexdigest()
    return base + ("&" if "?" in base else "?") + urlencode({"lead": lead, "sig": sig})


def verify(lead: str, sig: str, secret: bytes) -> bool:
    """Whether an unsubscribe link's signature is the lead's."""
    return hmac.compare_digest(hmac.new(secret, lead.encode("utf-8"), hashlib.sha256).hexdigest(), sig)


class Suppressed(loop.Suppressed):
    """An email the lead may no longer get: it unsubscribed, or its address is suppressed,
    after the send was decided and before it was delivered (consent first)."""


def _header(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{what} holds a line break: not sent")
    return value


class Smtp:
    """Sends `send_email` actions to an SMTP server (`smtp://HOST:PORT`)."""

    def __init__(self, url: str, funnel: Funnel, plan: Plan, db: Database) -> None:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise UsageError(f"--actions {url}: not an SMTP address",
                             "give smtp://HOST:PORT, such as smtp://127.0.0.1:25")
        secret = os.environ.get("FNL_SIGNING_KEY", "")
        if len(secret) < 16:
            raise UsageError("the SMTP adapter needs FNL_SIGNING_KEY (at least 16 characters) to sign unsubscribe "
                             "links",
                             "set it in the environment, never in a definition")
        if not funnel.sender.unsubscribe_url:
            raise UsageError(f"{plan.funnel} has no sender.unsubscribe_url for the List-Unsubscribe link",
                             "add sender.unsubscribe_url (https) to the definition")
        self.host, self.port = parts.hostname, parts.port or 25
        self.funnel, self.plan, self.db = funnel, plan, db
        self.secret = secret.encode("utf-8")
        self.sender_name, self.sender_address = parseaddr(funnel.sender.from_)
        self.domain = self.sender_address.rpartition("@")[2] or "localhost"
        self.client: Optional[smtplib.SMTP] = None
        self.sent = 0

    def takes(self, action: Dict[str, Any]) -> bool:
        return action.get("type") == "send_email"

    def _connect(self) -> smtplib.SMTP:
        if self.client is None:
            self.client = smtplib.SMTP(self.host, self.port, timeout=30)
            user, password = os.environ.get("FNL_SMTP_USER"), os.environ.get("FNL_SMTP_PASSWORD")
            if user and password:
                self.client.starttls()
                self.client.login(user, password)
        return self.client

    def message(self, action: Dict[str, Any], key: str) -> EmailMessage:
        lead = str(action.get("lead", ""))
        if not ADDRESS.match(lead):
            raise ValueError("the lead's ID is not one plain email address: not sent")
        state = self.db.state(lead)
        if isinstance(state, LeadState) and (state.unsubscribed or state.bounced):
            raise Suppressed("the lead has unsubscribed since" if state.unsubscribed else
                             "the address is suppressed since")
        listed = self.db.suppressed(lead)
        if listed is not None:  # this address, whatever lead it came back as
            raise Suppressed(f"the address is on the suppression list ({listed})")
        profile = state.profile_dict() if isinstance(state, LeadState) else {}
        kind = str(action.get("kind") or "nurture")
        link = unsubscribe_link(self.funnel.sender.unsubscribe_url or "", lead, self.secret)
        context = templates.sample_context(self.funnel, action.get("variant"), kind, link, profile, lead)
        if "owner" in context:
            owner = state.owner if isinstance(state, LeadState) else None
            context["owner"] = {"name": (owner or "").split("@")[0], "email": owner or ""}
        if "magnet" in context:
            magnet = next((m for m in self.funnel.lead_magnets if m.name == action.get("magnet")), None)
            if magnet is not None:
                context["magnet"] = {"title": magnet.title, "kind": magnet.kind, "name": magnet.name}
        with templates.render_session():
            rendered = templates.render(self.funnel.template_dir, str(action.get("template")), context)
        msg = EmailMessage()
        msg["From"] = formataddr((self.sender_name, self.sender_address))
        msg["To"] = lead
        msg["Subject"] = _header(rendered.subject, "the subject")
        msg["Message-ID"] = f"<{key}@{self.domain}>"
        msg["List-Unsubscribe"] = f"<{_header(link, 'the unsubscribe link')}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Fnl-Idempotency-Key"] = key
        if self.funnel.sender.reply_to:
            msg["Reply-To"] = self.funnel.sender.reply_to
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        msg = self.message(action, key)
        self._connect().send_message(msg)
        self.sent += 1

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except smtplib.SMTPException:
                pass
