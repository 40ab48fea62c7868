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
(`FNL_SMTP_PASSWORD`, with `FNL_SMTP_USER`, or the variables the runtime config names);
neither is read from YAML or written to a log. With DKIM (`DkimSigner`, the runtime
config's `dkim:`), each message is signed with the private key in the environment variable
the config names, over the headers a receiver judges (`DKIM_HEADERS`), before it is sent.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import smtplib
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, Dict, Optional
from urllib.parse import urlencode, urlsplit

from .. import templates
from ..errors import UsageError
from ..model import Funnel
from ..plan import Plan
from ..state import LeadState, Prospect, parse_time
from . import loop
from .db import Database, sender_of

ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def _unsubscribe_signature(lead: str, sender: str, secret: bytes) -> str:
    # A link that names its sender signs it with the lead (an unsubscribe covers that sender
    # in whichever funnel's server it reaches); links sent before that sign the lead alone.
    text = f"unsubscribe:{sender}:{lead}" if sender else lead
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def unsubscribe_link(base: str, lead: str, secret: bytes, sender: str = "") -> str:
    """The sender's unsubscribe address with the lead, the sender (its From address, whose
    suppression list the unsubscribe goes on) and their signature (HMAC-SHA256)."""
    query = {"lead": lead, **({"sender": sender} if sender else {}),
             "sig": _unsubscribe_signature(lead, sender, secret)}
    return base + ("&" if "?" in base else "?") + urlencode(query)


def verify(lead: str, sig: str, secret: bytes, sender: str = "") -> bool:
    """Whether an unsubscribe link's signature is the lead's (and the sender's it names)."""
    return hmac.compare_digest(_unsubscribe_signature(lead, sender, secret), sig)


def _confirm_signature(lead: str, magnet: str, secret: bytes) -> str:
    # Signed with a purpose of its own, so an unsubscribe link's signature never confirms.
    return hmac.new(secret, f"confirm:{lead}:{magnet}".encode("utf-8"), hashlib.sha256).hexdigest()


def confirm_link(base: str, lead: str, magnet: str, secret: bytes) -> str:
    """The sender's double opt-in confirmation address (`sender.confirm_url`) with the
    lead, the lead magnet and their signature (HMAC-SHA256 of `confirm:LEAD:MAGNET`)."""
    query = urlencode({"lead": lead, "magnet": magnet, "sig": _confirm_signature(lead, magnet, secret)})
    return base + ("&" if "?" in base else "?") + query


def verify_confirm(lead: str, magnet: str, sig: str, secret: bytes) -> bool:
    """Whether a confirmation link's signature is the lead's, for that lead magnet."""
    return hmac.compare_digest(_confirm_signature(lead, magnet, secret), sig)


class Suppressed(loop.Suppressed):
    """An email the lead may no longer get: it unsubscribed, or its address is suppressed,
    after the send was decided and before it was delivered (consent first)."""


# The headers a DKIM signature covers (one absent from a message is signed as absent, so it
# cannot be added on the way).
# Lines of up to RFC 5322's 998 characters: a long header (the List-Unsubscribe link) stays
# one plain line rather than folded into encoded words a mail program would not read.
POLICY = policy.SMTP.clone(max_line_length=998)
DKIM_HEADERS = ("From", "To", "Subject", "Message-ID", "Date", "List-Unsubscribe", "List-Unsubscribe-Post",
                "MIME-Version", "Content-Type")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DkimSigner:
    """Signs messages (DKIM, RFC 6376: rsa-sha256, relaxed/relaxed, `DKIM_HEADERS`) with the
    private key (PEM) in the environment variable `key_env`. The key is checked by signing
    once when made: UsageError, before anything is sent, for a key that is missing or is
    not one. The key is never written anywhere, and no message quotes it."""

    def __init__(self, selector: str, domain: str, key_env: str, origin: str = "") -> None:
        where = f"{origin}: " if origin else ""
        try:
            import dkim
        except ImportError:
            raise UsageError(f"{where}DKIM signing needs dkimpy, which is not installed",
                             'install it with pip install "fnl[dkim]"') from None
        pem = os.environ.get(key_env, "")
        if not pem.strip():
            raise UsageError(f"{where}the DKIM private key is not in the environment: {key_env} is not set",
                             f"set {key_env} to the private key (PEM) in fnl run's environment; the config only "
                             "names the variable")
        self._dkim = dkim
        self._key = pem.replace("\\n", "\n").strip().encode("utf-8", "replace") + b"\n"  # one-line env values too
        self.selector, self.domain, self.key_env = selector, domain, key_env
        try:
            self.sign(f"From: fnl@{domain}\r\nSubject: key check\r\n\r\nkey check\r\n".encode("ascii"))
        except Exception:  # noqa: BLE001 - dkim.KeyFormatError, or its key parser's own errors: not a key
            raise UsageError(f"{where}{key_env} does not hold a DKIM private key (PEM, RSA)",
                             f"set {key_env} to the PEM text of the private key whose public key is published at "
                             f"{selector}._domainkey.{domain}") from None

    def sign(self, raw: bytes) -> bytes:
        """The DKIM-Signature header (CRLF line ends) for a message's bytes, to put first."""
        signature: bytes = self._dkim.sign(raw, self.selector.encode("ascii"), self.domain.encode("ascii"), self._key,
                                           include_headers=[h.encode("ascii") for h in DKIM_HEADERS],
                                           canonicalize=(b"relaxed", b"relaxed"))
        return signature


def _header(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{what} holds a line break: not sent")
    return value


class Smtp:
    """Sends `send_email` actions to an SMTP server (`smtp://HOST:PORT`)."""

    def __init__(self, url: str, funnel: Funnel, plan: Plan, db: Database, *, starttls: Optional[bool] = None,
                 user_env: Optional[str] = None, password_env: Optional[str] = None,
                 dkim: Optional[DkimSigner] = None, origin: str = "") -> None:
        """`user_env` and `password_env` name the variables of the SMTP user and password,
        which must then be set; without them, FNL_SMTP_USER and FNL_SMTP_PASSWORD are used
        when both are set. `starttls`: True always, False never, None when logging in."""
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
        asking = [m.name for m in funnel.lead_magnets if m.double_opt_in is not None]
        if asking and not funnel.sender.confirm_url:
            raise UsageError(f"{plan.funnel} has no sender.confirm_url for the confirmation link of its double "
                             f"opt-in ({', '.join(asking)})",
                             "add sender.confirm_url (https, routed to fnl serve's /confirm) to the definition")
        self.host, self.port = parts.hostname, parts.port or 25
        self.funnel, self.plan, self.db = funnel, plan, db
        self.secret = secret.encode("utf-8")
        self.sender_name, self.sender_address = parseaddr(funnel.sender.from_)
        self.domain = self.sender_address.rpartition("@")[2] or "localhost"
        self.client: Optional[smtplib.SMTP] = None
        self.sent = 0
        self.dkim = dkim
        self.starttls = starttls
        if user_env is not None or password_env is not None:  # named by the config: both must be set
            for name, what in ((user_env, "user"), (password_env, "password")):
                if not name or not os.environ.get(name):
                    raise UsageError(f"{origin or 'the SMTP adapter'}: the SMTP {what} is not in the environment: "
                                     f"{name or what + '_env'} is not set",
                                     "set it in fnl run's environment; the config only names the variable")
            self.user, self.password = os.environ.get(user_env or ""), os.environ.get(password_env or "")
        else:
            self.user, self.password = os.environ.get("FNL_SMTP_USER"), os.environ.get("FNL_SMTP_PASSWORD")
        if self.user and self.password and starttls is False and self.host not in LOOPBACK:
            raise UsageError(f"{origin or 'the SMTP adapter'}: starttls: false would send the SMTP password to "
                             f"{self.host} in the clear",
                             "use starttls: true (or leave it out), or a server on this machine (127.0.0.1)")

    def takes(self, action: Dict[str, Any]) -> bool:
        return action.get("type") == "send_email"

    def _connect(self) -> smtplib.SMTP:
        if self.client is None:
            self.client = smtplib.SMTP(self.host, self.port, timeout=30)
            user, password = self.user, self.password
            if self.starttls or (self.starttls is None and user and password):
                self.client.starttls()
            if user and password:
                self.client.login(user, password)
        return self.client

    def message(self, action: Dict[str, Any], key: str) -> EmailMessage:
        lead = str(action.get("lead", ""))
        if not ADDRESS.match(lead):
            raise ValueError("the lead's ID is not one plain email address: not sent")
        state = self.db.state(lead)
        if isinstance(state, LeadState) and (state.unsubscribed or state.bounced):
            raise Suppressed("the lead unsubscribed after this email was decided" if state.unsubscribed else
                             "the address was suppressed after this email was decided")
        listed = self.db.suppressed(lead)
        if listed is not None:  # this address, whatever lead it came back as
            raise Suppressed(f"the address is on the suppression list ({listed})")
        waiting = self.db.opt_out_waiting(lead)
        if waiting is not None:  # consent first, even before the engine's clock reaches it
            raise Suppressed(f"the address's {waiting} is in the inbox, not applied yet")
        profile = state.profile_dict() if isinstance(state, LeadState) else {}
        kind = str(action.get("kind") or "nurture")
        link = unsubscribe_link(self.funnel.sender.unsubscribe_url or "", lead, self.secret,
                                sender_of(self.funnel.sender.from_))
        if kind in templates.WITH_CONFIRM:  # the lead's own signed link; a visit to it is `optin.confirmed`
            confirm = confirm_link(self.funnel.sender.confirm_url or "", lead, str(action.get("magnet") or ""),
                                   self.secret)
            if isinstance(state, Prospect) and state.pending is not None:
                profile = dict(state.pending.profile)  # what the opt-in waiting for confirmation gave
            context = templates.sample_context(self.funnel, action.get("variant"), kind, link, profile, lead,
                                               confirm_url=_header(confirm, "the confirmation link"))
        else:
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
        msg = EmailMessage(policy=POLICY)
        msg["From"] = formataddr((self.sender_name, self.sender_address))
        msg["To"] = lead
        msg["Subject"] = _header(rendered.subject, "the subject")
        msg["Message-ID"] = f"<{key}@{self.domain}>"
        if isinstance(action.get("at"), str):  # when the engine decided it: the same in a repeat
            msg["Date"] = formatdate(parse_time(action["at"]) * 60, usegmt=True)
        msg["List-Unsubscribe"] = f"<{_header(link, 'the unsubscribe link')}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Fnl-Idempotency-Key"] = key
        # Which email this is, for the sending service's events that come back (fnl serve
        # reads it from SES's headers, and from SendGrid's unique arguments).
        msg["X-Fnl-Template"] = _header(str(action.get("template")), "the template's name")
        msg["X-SMTPAPI"] = json.dumps({"unique_args": {"fnl_template": str(action.get("template")),
                                                       "fnl_sender": sender_of(self.funnel.sender.from_)}})
        if self.funnel.sender.reply_to:
            msg["Reply-To"] = self.funnel.sender.reply_to
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        self.send(self.message(action, key))

    def send(self, msg: EmailMessage) -> None:
        """Send a message `message` made (DKIM-signed if the adapter signs)."""
        if self.dkim is None:
            self._connect().send_message(msg)
        else:  # signed over the very bytes sent
            raw = msg.as_bytes(policy=POLICY)
            try:
                signature = self.dkim.sign(raw)
            except self.dkim._dkim.DKIMException as exc:
                raise ValueError(f"the message cannot be DKIM-signed ({type(exc).__name__}): not sent") from None
            self._connect().sendmail(self.sender_address, [str(msg["To"])], signature + raw)
        self.sent += 1

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except smtplib.SMTPException:
                pass
