"""What `fnl serve` takes in: the bytes and headers of a request, turned into events for
the inbox and refusals with their reasons. No I/O and no clock of its own: the caller
passes the time, the keys and the certificate, and stores what comes out.

Five sources:

- fnl's own format (`POST /events`): JSON Lines, one JSON object or a JSON array of
  events as `fnl trace --events` reads them, signed with `FNL_SIGNING_KEY` as the webhook
  adapter signs (HMAC-SHA256 of "timestamp.body") within a replay window;
- one-click unsubscribe links (RFC 8058), signed per lead by the SMTP adapter;
- double opt-in confirmation links, signed per lead and lead magnet by the SMTP adapter;
- SendGrid's Event Webhook, signed with ECDSA P-256 over timestamp + payload;
- Amazon SES events delivered by SNS, signed with RSA (SHA1 or SHA256) over SNS's
  canonical string, with a certificate from an SNS host.

Every field is untrusted. Each event is checked on its own (`event_from_json`, then the
limits and characters below) and refused with one reason, never with an exception, so one
bad event never stops the others. A reason never quotes a value at length; callers escape
reasons before showing them on a terminal.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..state import Event, event_from_json, iso
from .smtp import ADDRESS
from .smtp import verify as verify_link
from .smtp import verify_confirm
from .webhook import signature

MAX_BODY = 1024 * 1024  # bytes of one request
REPLAY_WINDOW = 300  # seconds either side of now for a signed timestamp
MAX_EVENTS = 20_000  # events (array items, lines, recipients) in one request
MAX_LISTED = 500  # refusals listed one by one in an answer; the rest are counted
MAX_NAME = 200  # characters of a magnet, template, page, entry or webinar name
MAX_LEAD = 320  # characters of a lead (an address's longest form)
MAX_PROFILE = 100  # attributes in one event's profile
MAX_KEY = 64  # characters of an attribute name
MAX_VALUE = 2000  # characters of an attribute's text value
MAX_LIST = 100  # items of an attribute's list value
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z in unix seconds
NAMES = ("magnet", "template", "page", "entry", "webinar")

# Characters that may act on a terminal, a log reader or a mail header: C0 and C1
# controls (CR and LF among them), DEL, line and paragraph separators, bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
# Template syntax (Jinja2's openers): data is never a template.
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")
_DIGITS = re.compile(r"[0-9]{1,12}\Z")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_SNS_HOST = re.compile(r"sns\.[a-z0-9]+(?:-[a-z0-9]+)+\.amazonaws\.com\Z")


class Refused(Exception):
    """A whole request refused: its HTTP status and one reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def unauthorized(reason: str) -> Refused:
    return Refused(401, reason)


def forbidden(reason: str) -> Refused:
    return Refused(403, reason)


def bad_request(reason: str) -> Refused:
    return Refused(400, reason)


@dataclass(frozen=True)
class Refusal:
    """One event of a request that was not accepted: its place in the request (from 0:
    the array item, the line of JSON Lines, the SendGrid item or the SES recipient) and why."""

    index: int
    reason: str

    def to_json(self) -> Dict[str, Any]:
        return {"index": self.index, "reason": self.reason}


@dataclass(frozen=True)
class Parsed:
    """A request's events to store, the ones refused, and notes for the operator's log;
    with `senders`, beside each event the sender (From address) of the email it is about,
    when the source says it ("" when not), whose suppression list an opt-out goes on."""

    events: Tuple[Event, ...]
    refused: Tuple[Refusal, ...] = ()
    notes: Tuple[str, ...] = ()
    senders: Tuple[str, ...] = ()

    def refused_json(self) -> List[Dict[str, Any]]:
        """The refusals for an answer: the first MAX_LISTED one by one, then one line
        counting the rest."""
        listed = [r.to_json() for r in self.refused[:MAX_LISTED]]
        rest = len(self.refused) - MAX_LISTED
        if rest > 0:
            listed.append({"index": self.refused[MAX_LISTED].index,
                           "reason": f"and {rest:,} more events refused from here on, not listed"})
        return listed


# -- the checks every event goes through ------------------------------------------------------

def _quote(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def text_problem(name: str, value: str, limit: int = MAX_NAME) -> Optional[str]:
    """Why a text field of an event cannot be stored, or None."""
    if len(value) > limit:
        return f"`{name}` is {len(value):,} characters long (at most {limit:,})"
    control = _CONTROL.search(value)
    if control is not None:
        return f"`{name}` holds a control or invisible layout character (U+{ord(control.group()):04X})"
    if _TEMPLATE.search(value):
        return f"`{name}` holds template syntax ({{{{, {{% or {{#}}): event data is never a template"
    return None


def _value_problem(name: str, value: Any) -> Optional[str]:
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"`{name}` is not a finite number"
    if isinstance(value, str):
        return text_problem(name, value, MAX_VALUE)
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            return f"`{name}` lists {len(value):,} values (at most {MAX_LIST})"
        for item in value:
            if isinstance(item, (list, dict)):
                return f"`{name}` nests lists or objects: attribute values are plain values"
            problem = _value_problem(name, item)
            if problem:
                return problem
        return None
    return f"`{name}` is an object: attribute values are plain values"


def event_problem(event: Event) -> Optional[str]:
    """Why an event `event_from_json` read cannot be stored all the same (sizes,
    characters, template syntax, nesting), or None."""
    problem = text_problem("lead", event.lead, MAX_LEAD)
    if problem:
        return problem
    for name in NAMES:
        value = getattr(event, name)
        if value is not None:
            problem = text_problem(name, value)
            if problem:
                return problem
    if len(event.profile) > MAX_PROFILE:
        return f"`profile` has {len(event.profile):,} attributes (at most {MAX_PROFILE})"
    for key, value in event.profile.items():
        problem = text_problem("profile attribute name", key, MAX_KEY) or _value_problem(f"profile.{key}"[:80], value)
        if problem:
            return problem
    return None


def to_event(data: Any, index: int) -> Tuple[Optional[Event], Optional[Refusal]]:
    """One untrusted JSON value as an event, or its refusal."""
    try:
        event = event_from_json(data, "event")
    except ValueError as exc:
        return None, Refusal(index, str(exc).removeprefix("event: "))
    except (RecursionError, TypeError, OverflowError) as exc:  # what JSON values can still do to a parser
        return None, Refusal(index, f"not an event: {type(exc).__name__}")
    problem = event_problem(event)
    if problem:
        return None, Refusal(index, problem)
    return event, None


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"field {_quote(key)} is given twice")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(text: str) -> Any:
    """Strict JSON: no NaN or Infinity, no key given twice. ValueError with a short
    reason for anything else, a nesting too deep among them."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON: it nests too deeply") from None
    except ValueError as exc:  # a key twice, a constant, a number with thousands of digits
        message = str(exc)
        raise ValueError("invalid JSON: a number has thousands of digits" if "digits" in message else
                         f"invalid JSON: {message[:120]}") from None


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start + 1})") from None


# -- fnl's own format -------------------------------------------------------------------------

def check_fnl_signature(secret: bytes, timestamp: Optional[str], sig: Optional[str], body: bytes,
                        now: float) -> None:
    """Refused (401) unless `sig` is the HMAC-SHA256 of "timestamp.body" with `secret`
    and the timestamp is within REPLAY_WINDOW seconds of `now`."""
    if not timestamp:
        raise unauthorized("no X-Fnl-Timestamp header: sign each request (see `fnl serve --help`)")
    if not sig:
        raise unauthorized("no X-Fnl-Signature header: sign each request (see `fnl serve --help`)")
    if not _DIGITS.match(timestamp):
        raise unauthorized("X-Fnl-Timestamp is not a time in unix seconds")
    if not _HEX64.match(sig):
        raise unauthorized("X-Fnl-Signature is not 64 hexadecimal digits")
    if not hmac.compare_digest(signature(secret, timestamp, body), sig.lower()):
        raise unauthorized("X-Fnl-Signature does not match the body and timestamp (or another key signed it)")
    off = int(timestamp) - now
    if abs(off) > REPLAY_WINDOW:
        raise unauthorized(f"X-Fnl-Timestamp is {abs(off):,.0f} s {'ahead of' if off > 0 else 'behind'} this "
                           f"server's clock (at most {REPLAY_WINDOW} s): sign it again now")


def parse_fnl(body: bytes) -> Parsed:
    """The events of a request in fnl's format: a JSON array, one JSON object, or JSON
    Lines. Refused (400) only when the body as a whole is unreadable (an array that is
    not JSON, no events at all, too many)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    head = body.lstrip(b" \t\r\n")[:1]
    if head == b"[":
        try:
            array = load_json(_decode(body))
        except ValueError as exc:
            raise bad_request(f"the body starts a JSON array but is {exc}") from None
        if not isinstance(array, list):
            raise bad_request("the body is not one JSON array")
        return _collect(list(enumerate(array)))
    whole: Any = None
    try:
        whole = load_json(_decode(body))
    except ValueError:
        pass  # JSON Lines, or lines to refuse one by one
    if isinstance(whole, dict):
        return _collect([(0, whole)])
    if whole is not None:
        raise bad_request("the body is JSON but neither an event object nor an array of them")
    items: List[Tuple[int, Any]] = []
    refused: List[Refusal] = []
    for number, raw in enumerate(body.split(b"\n")):
        raw = raw.removesuffix(b"\r")
        if not raw.strip():
            continue
        if len(items) + len(refused) >= MAX_EVENTS:
            raise bad_request(f"the body holds more than {MAX_EVENTS:,} events: send fewer per request")
        try:
            items.append((number, load_json(_decode(raw))))
        except ValueError as exc:
            refused.append(Refusal(number, str(exc).replace(" (line 1, column ", " (column ")))
    return _collect(items, refused)


def _collect(items: Sequence[Tuple[int, Any]], refused: Sequence[Refusal] = ()) -> Parsed:
    if len(items) + len(refused) > MAX_EVENTS:
        raise bad_request(f"the body holds more than {MAX_EVENTS:,} events: send fewer per request")
    if not items and not refused:
        raise bad_request("the body holds no events")
    events: List[Event] = []
    out = list(refused)
    for index, data in items:
        event, refusal = to_event(data, index)
        if event is not None:
            events.append(event)
        if refusal is not None:
            out.append(refusal)
    out.sort(key=lambda r: r.index)
    return Parsed(tuple(events), tuple(out))


# -- one-click unsubscribe ------------------------------------------------------------------

def unsubscribe_event(lead: Optional[str], sig: Optional[str], secret: bytes, now: float,
                      sender: str = "") -> Event:
    """The `email.unsubscribed` event of a signed unsubscribe link, at `now`; refused
    (403) unless the signature is the lead's, and the sender's when the link names one."""
    if not lead or not sig:
        raise forbidden("this unsubscribe link is incomplete: it needs its lead and sig")
    if (not _HEX64.match(sig) or len(lead) > MAX_LEAD or len(sender) > MAX_LEAD or _CONTROL.search(lead + sender)
            or not _encodes(lead + sender)):
        raise forbidden("this unsubscribe link is not valid")
    if not verify_link(lead, sig.lower(), secret, sender):
        raise forbidden("this unsubscribe link is not valid (its signature is not this lead's)")
    seconds = int(now)
    event, refusal = to_event({"type": "email.unsubscribed", "at": iso(seconds // 60, seconds % 60), "lead": lead}, 0)
    if event is None:
        raise forbidden(f"this unsubscribe link is not valid ({refusal.reason if refusal else 'no lead'})")
    return event


def confirm_event(lead: Optional[str], magnet: Optional[str], sig: Optional[str], secret: bytes,
                  now: float) -> Event:
    """The `optin.confirmed` event of a signed double opt-in confirmation link, at `now`;
    refused (403) unless the signature is the lead's for that lead magnet (an unsubscribe
    link's never is: it signs another text)."""
    if not lead or not magnet or not sig:
        raise forbidden("this confirmation link is incomplete: it needs its lead, magnet and sig")
    if (not _HEX64.match(sig) or len(lead) > MAX_LEAD or len(magnet) > MAX_LEAD or _CONTROL.search(lead + magnet)
            or not _encodes(lead + magnet)):
        raise forbidden("this confirmation link is not valid")
    if not verify_confirm(lead, magnet, sig.lower(), secret):
        raise forbidden("this confirmation link is not valid (its signature is not this lead's)")
    seconds = int(now)
    event, refusal = to_event({"type": "optin.confirmed", "at": iso(seconds // 60, seconds % 60), "lead": lead,
                               "magnet": magnet}, 0)
    if event is None:
        raise forbidden(f"this confirmation link is not valid ({refusal.reason if refusal else 'no lead'})")
    return event


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# -- SendGrid -------------------------------------------------------------------------------

def load_sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key as its settings show it (base64 of DER), or PEM;
    ValueError saying what is wrong."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ValueError("is not a public key (base64 DER, as SendGrid shows it, or PEM)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("is not an ECDSA P-256 public key, as SendGrid signs with")
    return key


def check_sendgrid_signature(key: ec.EllipticCurvePublicKey, sig: Optional[str], timestamp: Optional[str],
                             body: bytes) -> None:
    """Refused (403) unless `sig` (base64 DER ECDSA) signs timestamp + body with `key`."""
    if not sig or not timestamp:
        raise forbidden("no X-Twilio-Email-Event-Webhook-Signature or -Timestamp header: turn on the signed "
                        "Event Webhook")
    if not _DIGITS.match(timestamp):
        raise forbidden("X-Twilio-Email-Event-Webhook-Timestamp is not a time in unix seconds")
    try:
        raw = base64.b64decode(sig, validate=True)
        key.verify(raw, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise forbidden("the SendGrid signature does not match the body and timestamp (or another key signed "
                        "it)") from None


# SendGrid's event -> (fnl's event, bounce) ("classify": by the bounce's type and class).
_SENDGRID = {"delivered": ("email.delivered", None), "open": ("email.opened", None),
             "click": ("email.clicked", None), "spamreport": ("email.complained", None),
             "unsubscribe": ("email.unsubscribed", None), "group_unsubscribe": ("email.unsubscribed", None),
             "bounce": ("email.bounced", "classify"), "dropped": ("email.bounced", "hard"),
             "deferred": ("email.bounced", "soft")}
# Bounce classes that say nothing against the address itself (SendGrid's bounce_classification).
_SOFT_CLASSES = ("technical", "content", "reputation", "frequency or volume too high")


def parse_sendgrid(body: bytes) -> Parsed:
    """SendGrid's Event Webhook payload (a JSON array of events) as fnl's events. The
    template is the `fnl_template` custom argument when the message carried one."""
    try:
        items = load_json(_decode(body))
    except ValueError as exc:
        raise bad_request(f"the body is {exc}") from None
    if not isinstance(items, list):
        raise bad_request("the body is not a JSON array of SendGrid events")
    if len(items) > MAX_EVENTS:
        raise bad_request(f"the body holds more than {MAX_EVENTS:,} events")
    events: List[Event] = []
    refused: List[Refusal] = []
    senders: List[str] = []
    for index, item in enumerate(items):
        data, reason = _sendgrid_event(item)
        event, refusal = to_event(data, index) if data is not None else (None, Refusal(index, reason or "refused"))
        if event is not None:
            events.append(event)
            senders.append(_sender(item.get("fnl_sender")))
        if refusal is not None:
            refused.append(refusal)
    return Parsed(tuple(events), tuple(refused), senders=tuple(senders))


def _sender(value: Any) -> str:
    """The sender an ESP's event names (SendGrid's `fnl_sender` argument, SES's
    `mail.source`) as a suppression list's name, or "" when it names none that is one
    plain address."""
    if not isinstance(value, str) or len(value) > MAX_LEAD or _CONTROL.search(value):
        return ""
    address = (parseaddr(value)[1] or "").strip().lower()
    return address if ADDRESS.match(address) else ""


def _sendgrid_event(item: Any) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    if not isinstance(item, dict):
        return None, "not a SendGrid event (a JSON object)"
    kind = item.get("event")
    if not isinstance(kind, str):
        return None, "`event` is not a SendGrid event name"
    if kind not in _SENDGRID:
        return None, f"SendGrid event {_quote(kind)} is not one fnl uses: ignored"
    fnl_type, bounce = _SENDGRID[kind]
    lead, why = _address(item.get("email"), "email")
    if lead is None:
        return None, why
    at, why = _unix(item.get("timestamp"))
    if at is None:
        return None, why
    data: Dict[str, Any] = {"type": fnl_type, "at": at, "lead": lead}
    if bounce == "classify":
        data["bounce"] = _sendgrid_bounce(item)
    elif bounce:
        data["bounce"] = bounce
    if kind == "open" and item.get("sg_machine_open") is True:
        data["machine"] = True
    template = item.get("fnl_template")
    if template is not None:
        if not isinstance(template, str):
            return None, "`fnl_template` is not a template name"
        data["template"] = template
    return data, None


def _sendgrid_bounce(item: Dict[str, Any]) -> str:
    """"hard" when the address itself is refused; "soft" for a block (`type: blocked`)
    or a class that speaks of the message or the sender rather than the address."""
    if item.get("type") == "blocked":
        return "soft"
    classification = item.get("bounce_classification")
    if isinstance(classification, str) and classification.strip().lower() in _SOFT_CLASSES:
        return "soft"
    return "hard"


def _address(value: Any, name: str) -> Tuple[Optional[str], Optional[str]]:
    """A recipient's plain address (from `Name <address>` too), or why not."""
    if not isinstance(value, str):
        return None, f"`{name}` is not an email address"
    if len(value) > MAX_LEAD:
        return None, f"`{name}` is {len(value):,} characters long (at most {MAX_LEAD})"
    if _CONTROL.search(value):
        return None, f"`{name}` holds a control or invisible layout character"
    address = parseaddr(value)[1] if "<" in value else value.strip()
    if not ADDRESS.match(address):
        return None, f"`{name}` is not one plain email address"
    return address, None


def _unix(value: Any) -> Tuple[Optional[str], Optional[str]]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= LAST_SECOND:
        return None, "`timestamp` is not a time in unix seconds"
    return iso(value // 60, value % 60), None


# -- Amazon SES through SNS -------------------------------------------------------------------

# The fields SNS signs, in the order of its canonical string, by message type
# ("Subject" only when present).
SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SNS_HASH = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True)
class SnsMessage:
    """An SNS message's fields, as strings."""

    fields: Tuple[Tuple[str, str], ...]

    def get(self, name: str) -> str:
        return dict(self.fields).get(name, "")

    @property
    def type(self) -> str:
        return self.get("Type")

    def string_to_sign(self) -> bytes:
        """SNS's canonical string: each signed field present as "Name\\nvalue\\n"."""
        have = dict(self.fields)
        return "".join(f"{name}\n{have[name]}\n" for name in SNS_SIGNED[self.type]
                       if name in have).encode("utf-8")


def parse_sns(body: bytes) -> SnsMessage:
    """An SNS message (Notification, SubscriptionConfirmation, UnsubscribeConfirmation):
    refused (400) when it is not one."""
    try:
        data = load_json(_decode(body))
    except ValueError as exc:
        raise bad_request(f"not an SNS message: the body is {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("not an SNS message (a JSON object)")
    kind = data.get("Type")
    if kind not in SNS_SIGNED:
        raise bad_request(f"not an SNS message fnl takes: Type is {_quote(kind)}")
    required = [n for n in SNS_SIGNED[kind] if n != "Subject"] + ["Signature", "SignatureVersion", "SigningCertURL"]
    for name in required:
        if not isinstance(data.get(name), str) or not data[name]:
            raise bad_request(f"not an SNS message: `{name}` is missing or not text")
    if "Subject" in data and not isinstance(data["Subject"], str):
        raise bad_request("not an SNS message: `Subject` is not text")
    names = set(required) | ({"Subject"} if "Subject" in data else set())
    return SnsMessage(tuple(sorted((n, data[n]) for n in names)))


def cert_url_problem(url: str) -> Optional[str]:
    """Why SNS's SigningCertURL is not one fnl fetches a certificate from (https, on an
    `sns.<region>.amazonaws.com` host, a .pem path), or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "SigningCertURL is not a URL"
    if parts.scheme != "https":
        return "SigningCertURL is not https"
    if parts.username is not None or parts.password is not None or port not in (None, 443):
        return "SigningCertURL names a user or a port"
    if not _SNS_HOST.match(host):
        return "SigningCertURL is not on an sns.<region>.amazonaws.com host"
    if not parts.path.endswith(".pem") or parts.query or parts.fragment:
        return "SigningCertURL is not a .pem certificate"
    return None


def load_sns_cert(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM certificate; ValueError saying what is wrong."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("is not a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("is not an RSA certificate, as SNS signs with")
    return key


def check_sns_signature(message: SnsMessage, key: rsa.RSAPublicKey) -> None:
    """Refused (403) unless the message's Signature signs its canonical string with `key`
    (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA)."""
    algorithm = _SNS_HASH.get(message.get("SignatureVersion"))
    if algorithm is None:
        raise forbidden("the SNS SignatureVersion is neither 1 nor 2")
    try:
        raw = base64.b64decode(message.get("Signature"), validate=True)
        key.verify(raw, message.string_to_sign(), padding.PKCS1v15(), algorithm())
    except (binascii.Error, ValueError, InvalidSignature):
        raise forbidden("the SNS signature does not match the message (or another certificate signed it)") from None


def parse_ses(text: str) -> Parsed:
    """The SES event an SNS Notification carries (event publishing's `eventType`, or the
    feedback notifications' `notificationType`) as fnl's events, one per recipient."""
    try:
        data = load_json(text)
    except ValueError as exc:
        raise bad_request(f"the SNS Message is not an SES event: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("the SNS Message is not an SES event (a JSON object)")
    kind = data.get("eventType", data.get("notificationType"))
    mail = data.get("mail")
    if not isinstance(kind, str):
        raise bad_request("the SNS Message is not an SES event: no eventType or notificationType")
    if not isinstance(mail, dict):
        raise bad_request("the SES event has no `mail` object")
    template, why = _ses_template(mail)
    if why:
        return Parsed((), (Refusal(0, why),))
    mapped = _ses_mapping(kind, data, mail)
    if isinstance(mapped, str):
        return Parsed((), (Refusal(0, mapped),))
    fnl_type, bounce, detail, recipients = mapped
    at = detail.get("timestamp", mail.get("timestamp"))
    if not isinstance(recipients, list) or not recipients:
        return Parsed((), (Refusal(0, f"the SES {kind} event names no recipients"),))
    if len(recipients) > MAX_EVENTS:
        raise bad_request(f"the SES event names more than {MAX_EVENTS:,} recipients")
    events: List[Event] = []
    refused: List[Refusal] = []
    sender = _sender(mail.get("source"))
    for index, recipient in enumerate(recipients):
        if isinstance(recipient, dict):
            recipient = recipient.get("emailAddress")
        lead, why = _address(recipient, "emailAddress")
        if lead is None:
            refused.append(Refusal(index, why or "not an address"))
            continue
        item: Dict[str, Any] = {"type": fnl_type, "at": at, "lead": lead}
        if bounce:
            item["bounce"] = bounce
        if template is not None:
            item["template"] = template
        event, refusal = to_event(item, index)
        if event is not None:
            events.append(event)
        if refusal is not None:
            refused.append(refusal)
    return Parsed(tuple(events), tuple(refused), senders=(sender,) * len(events))


_SES_BOUNCE = {"Permanent": "hard", "Transient": "soft", "Undetermined": "soft"}


def _ses_mapping(kind: str, data: Dict[str, Any],
                 mail: Dict[str, Any]) -> Any:
    """(fnl's event, bounce, the event's detail object, its recipients), or a reason."""
    key = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery", "Open": "open",
           "Click": "click"}.get(kind)
    if key is None:
        return f"SES event {_quote(kind)} is not one fnl uses: ignored"
    detail = data.get(key)
    if not isinstance(detail, dict):
        return f"the SES {kind} event has no `{key}` object"
    if kind == "Bounce":
        bounce = _SES_BOUNCE.get(detail.get("bounceType"))  # type: ignore[arg-type]
        if bounce is None:
            return f"SES bounceType {_quote(detail.get('bounceType'))} is not Permanent, Transient or Undetermined"
        return "email.bounced", bounce, detail, detail.get("bouncedRecipients")
    if kind == "Complaint":
        return "email.complained", None, detail, detail.get("complainedRecipients")
    if kind == "Delivery":
        return "email.delivered", None, detail, detail.get("recipients")
    destination = mail.get("destination")
    if isinstance(destination, list) and len(destination) > 1:
        return f"the SES {kind} event is for a message to {len(destination)} recipients: it cannot be told whose"
    return ("email.opened" if kind == "Open" else "email.clicked"), None, detail, destination


def _ses_template(mail: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """fnl's template from the message's `X-Fnl-Template` header or its `fnl_template`
    message tag, when it carried one: (template, None), (None, None) or (None, reason)."""
    found: Any = None
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers[:500]:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-fnl-template":
                found = header.get("value")
                break
    tags = mail.get("tags")
    if found is None and isinstance(tags, dict) and isinstance(tags.get("fnl_template"), list) \
            and tags["fnl_template"]:
        found = tags["fnl_template"][0]
    if found is None:
        return None, None
    if not isinstance(found, str):
        return None, "the message's fnl template is not a name"
    return found, None
