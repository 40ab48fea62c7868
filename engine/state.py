"""What flows through the engine: events in, actions out, and each lead's state.

All three are frozen values with a JSON form, so the runtime can store state in
SQLite, the trace can print it, and the simulator can compare it. Times are whole
minutes since 1970-01-01 UTC.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Event types the engine understands. Email events carry the template they are about;
# site visits the page; webinar events the webinar; CRM events are `crm.<name>`. `clock`
# is time passing for a lead (`tick` is accepted as its older name).
EMAIL_EVENTS = ("email.delivered", "email.opened", "email.clicked", "email.replied", "email.bounced",
                "email.unsubscribed", "email.complained")
# Engagement: what a lead does with an email it was sent. It counts (and scores) only for
# an email the lead was sent, once per email and kind unless the funnel counts repeats.
ENGAGEMENT = ("email.opened", "email.clicked", "email.replied")
CLOCK = "clock"
CLOCK_ALIASES = ("tick",)
# `optin.confirmed`: the lead followed the link of a double opt-in's confirmation email.
OPTIN_CONFIRMED = "optin.confirmed"
OTHER_EVENTS = ("optin", OPTIN_CONFIRMED, "lead.imported", "magnet.downloaded", "site.visited", "webinar.registered",
                "webinar.attended", "profile.updated", CLOCK) + CLOCK_ALIASES
WEBINAR_EVENTS = ("webinar.registered", "webinar.attended")
_CRM = re.compile(r"crm\.[a-z][a-z0-9_]*\Z")


def minutes(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int((moment - EPOCH).total_seconds() // 60)


# The instants fnl accepts in events and for --until. Steps and deadlines computed from
# them may run later; `iso` still prints those.
FIRST_YEAR, LAST_YEAR = 1900, 9000


def iso(minute: int, second: int = 0) -> str:
    try:
        moment = datetime.fromtimestamp(minute * 60 + second, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):  # beyond year 9999: a wait of centuries
        return f"{'after 9999' if minute > 0 else 'before 0001'} (minute {minute})"
    return f"{moment.year:04d}-{moment.strftime('%m-%dT%H:%M:%S')}Z"  # %Y is not padded for early years


def parse_instant(text: str) -> Tuple[int, int]:
    """ISO 8601 (`2026-03-02T09:30:15Z`, offsets allowed; no zone means UTC) → (minute,
    second within it). The engine works in whole minutes; the second only orders the
    events of one minute."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"`{text}` is not an ISO 8601 time such as 2026-03-02T09:30:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(f"`{text}` is outside the times fnl accepts (years {FIRST_YEAR} to {LAST_YEAR})")
    seconds = (moment - EPOCH) // timedelta(seconds=1)  # floor, also before 1970
    return seconds // 60, seconds % 60


def parse_time(text: str) -> int:
    """ISO 8601 → whole minutes since the epoch (see `parse_instant`)."""
    return parse_instant(text)[0]


def is_event_type(kind: str) -> bool:
    return kind in EMAIL_EVENTS or kind in OTHER_EVENTS or bool(_CRM.match(kind))


@dataclass(frozen=True)
class Event:
    """Something that happened to a lead, or the clock (`clock`; `tick` is read as it)."""

    type: str
    at: int
    lead: str
    magnet: Optional[str] = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    template: Optional[str] = None
    page: Optional[str] = None
    second: int = 0  # within the minute: orders the events of one minute, nothing else
    machine: bool = False  # an open or click the sending service marks as machine-made
    bounce: Optional[str] = None  # email.bounced: "hard" (default) or "soft"
    entry: Optional[str] = None  # lead.imported: the entry it comes through
    line: int = field(default=0, compare=False)  # where it came from (a line of an events file), for messages
    webinar: Optional[str] = None  # webinar.registered / webinar.attended: which webinar

    def __post_init__(self) -> None:
        if self.type in CLOCK_ALIASES:  # one name for the clock, whatever the caller wrote
            object.__setattr__(self, "type", CLOCK)

    @property
    def detail(self) -> str:
        if self.type.startswith("email."):
            return self.template or ""
        if self.type == "site.visited":
            return self.page or ""
        if self.type in ("optin", OPTIN_CONFIRMED, "magnet.downloaded"):
            return self.magnet or ""
        if self.type == "lead.imported":
            return self.entry or ""
        if self.type in WEBINAR_EVENTS:
            return self.webinar or ""
        return ""

    def summary(self) -> str:
        """The event in a few words: its type and the magnet, template, page or webinar it names."""
        extra = self.magnet or self.template or self.page or self.webinar
        return self.type + (f" {extra}" if extra else "")

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.type, "at": iso(self.at, self.second), "lead": self.lead}
        for key in ("magnet", "template", "page", "bounce", "entry", "webinar"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.machine:
            out["machine"] = True
        if self.profile:
            out["profile"] = dict(self.profile)
        return out


@dataclass(frozen=True)
class Action:
    """Something the engine asks the outside world to do."""

    # send_email | deferred | skipped | handoff | notify | crm_update | stage_changed | enter_sequence |
    # exit_sequence | ignored | not_scored | recorded | held | applied | suppressed | not_sent | not_moved |
    # sla_* | escalated | left_out | rejected
    type: str
    at: int
    lead: str
    detail: Tuple[Tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.detail).get(key, default)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.type, "at": iso(self.at), "lead": self.lead}
        out.update(dict(self.detail))
        return out


@dataclass(frozen=True)
class Running:
    """A sequence a lead is in: the next step (by stable ID and index) and when it is due."""

    sequence: str
    step_id: str
    index: int
    due: int
    started: int
    variant_seed: str = ""


@dataclass(frozen=True)
class LeadState:
    lead: str
    profile: Tuple[Tuple[str, Any], ...]
    stage: str
    entered: Tuple[Tuple[str, int], ...]  # stage -> minute last entered
    score: float
    score_at: int  # minute the score was last brought up to date
    consent: str
    consent_at: int
    source: str  # lead magnet of the opt-in, or the entry of an import or CRM event
    basis: str = "consent"  # consent | contract | legitimate_interest: why fnl may email the lead
    unsubscribed: bool = False
    unsubscribed_at: Optional[int] = None
    bounced: bool = False  # the address is suppressed: a hard bounce, soft bounces or a complaint
    soft_bounces: int = 0  # soft bounces since the last delivery, open, click or reply
    owner: Optional[str] = None
    sla_deadline: Optional[int] = None  # the last minute of a pending SLA; None once answered or breached
    sla_stage: Optional[str] = None
    facts: Tuple[Tuple[str, int], ...] = ()  # event key -> last minute seen
    running: Tuple[Running, ...] = ()
    finished: Tuple[str, ...] = ()  # sequences a lead has been through (never restarted)
    sends: Tuple[int, ...] = ()  # recent send minutes, for the frequency cap
    emails_sent: int = 0
    last_at: int = 0
    # (minute, points) of every scoring event, kept only when the decay has a window.
    points: Tuple[Tuple[int, float], ...] = ()
    # Double opt-in: the minute of the opt-in that the lead confirmed at `consent_at` (the
    # minute it entered); None for every other way in.
    opted_in_at: Optional[int] = None
    # Whether the pending SLA (`sla_deadline`) is the one an escalation started: its breach
    # is reported and not escalated again.
    sla_escalated: bool = False

    def profile_dict(self) -> Dict[str, Any]:
        return dict(self.profile)

    def to_json(self) -> Dict[str, Any]:
        return {
            "lead": self.lead, "profile": dict(self.profile), "stage": self.stage,
            "entered": {k: iso(v) for k, v in self.entered}, "score": round(self.score, 6),
            "consent": self.consent, "consent_at": iso(self.consent_at), "source": self.source,
            "basis": self.basis, "unsubscribed": self.unsubscribed,
            "unsubscribed_at": iso(self.unsubscribed_at) if self.unsubscribed_at is not None else None,
            "bounced": self.bounced, "owner": self.owner,
            "sla_deadline": iso(self.sla_deadline) if self.sla_deadline is not None else None,
            "running": [{"sequence": r.sequence, "step": r.step_id, "due": iso(r.due)} for r in self.running],
            "finished": list(self.finished), "emails_sent": self.emails_sent,
            **({"opted_in_at": iso(self.opted_in_at)} if self.opted_in_at is not None else {}),
            **({"sla_escalated": True} if self.sla_escalated else {}),
        }


# Activity held for a lead that has not opted in yet: bounded, and only recent activity
# counts once the lead opts in.
MAX_HELD = 100
HELD_FOR_MINUTES = 30 * 1440


# A repeated opt-in while one waits for its confirmation sends the confirmation again
# only this long after the last one: see `core` (double opt-in).
RECONFIRM_AFTER_MINUTES = 1440


@dataclass(frozen=True)
class Pending:
    """An opt-in through a lead magnet with double opt-in, waiting for the lead to
    confirm it (`optin.confirmed`) before minute `expires`."""

    magnet: str
    consent: str  # the consent text the lead agreed to at `at`
    at: int  # the minute of the opt-in (the latest one, when the form was sent again)
    expires: int  # the opt-in's minute plus the magnet's `within`: from then on it has expired
    profile: Tuple[Tuple[str, Any], ...] = ()  # the profile the opt-in gave
    confirm_sent_at: Optional[int] = None  # the last confirmation email; None when none could go out


@dataclass(frozen=True)
class Prospect:
    """Someone fnl has seen activity from (a site visit in an export, a CRM event) but
    who has not opted in or been imported yet. Their activity waits here and is applied
    at the entry minute, in order. With double opt-in, an opt-in waits here too
    (`pending`) until it is confirmed; an unsubscribe, complaint or hard bounce of its
    confirmation email is kept (`unsubscribed_at`, `bounced`) and holds once the lead
    enters."""

    lead: str
    held: Tuple[Event, ...] = ()
    last_at: int = 0
    pending: Optional[Pending] = None
    unsubscribed_at: Optional[int] = None
    bounced: bool = False


@dataclass(frozen=True)
class Shared:
    """State shared by all leads: round-robin positions per handoff list."""

    turns: Tuple[Tuple[str, int], ...] = ()

    def take(self, key: str, reps: Tuple[str, ...]) -> Tuple[str, "Shared"]:
        turns = dict(self.turns)
        n = turns.get(key, 0)
        turns[key] = n + 1
        return reps[n % len(reps)], Shared(tuple(sorted(turns.items())))


def event_from_json(data: Any, where: str = "event") -> Event:
    """An Event from untrusted JSON; ValueError with a clear message if malformed.
    Fields fnl does not use (`variant`, `campaign_id`: ESP exports carry many) are
    ignored; `unused_fields` names them."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or not is_event_type(kind):
        raise ValueError(f"{where}: `type` must be an event such as optin, email.opened, site.visited, crm.deal_won "
                         f"or clock, not {json.dumps(kind)[:40]}")
    at = data.get("at")
    if not isinstance(at, str):
        raise ValueError(f"{where}: `at` must be an ISO 8601 time string")
    lead = data.get("lead", "")
    if not isinstance(lead, str) or (kind not in (CLOCK,) + CLOCK_ALIASES and not lead) or len(lead) > 320:
        raise ValueError(f"{where}: `lead` must be the lead's ID or email (a non-empty string)")
    profile = data.get("profile", {})
    if not isinstance(profile, dict) or not all(isinstance(k, str) for k in profile):
        raise ValueError(f"{where}: `profile` must be an object of attribute values")
    for key in ("magnet", "template", "page", "entry", "webinar"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{where}: `{key}` must be a string")
    if "webinar" in data and kind not in WEBINAR_EVENTS:
        raise ValueError(f"{where}: `webinar` names the webinar of a webinar.registered or webinar.attended event "
                         "only")
    machine = data.get("machine", False)
    if not isinstance(machine, bool):
        raise ValueError(f"{where}: `machine` must be true or false")
    bounce = data.get("bounce")
    if bounce is not None and (kind != "email.bounced" or bounce not in ("hard", "soft")):
        raise ValueError(f"{where}: `bounce` is \"hard\" or \"soft\", on email.bounced events only")
    for name, value in [("lead", lead), *((k, data.get(k)) for k in ("magnet", "template", "page", "entry", "webinar")),
                        *(("profile", v) for v in list(profile) + list(profile.values()))]:
        if isinstance(value, str) and not _encodable(value):
            raise ValueError(f"{where}: `{name}` holds text that is not valid Unicode (a lone surrogate such as "
                             "\\ud800)")
    minute, second = parse_instant(at)
    return Event(kind, minute, lead, data.get("magnet"), profile, data.get("template"), data.get("page"), second,
                 machine, bounce, data.get("entry"), webinar=data.get("webinar"))


def unused_fields(data: Any) -> List[str]:
    """The fields of an event object that fnl does not read, sorted."""
    return sorted(k for k in data if k not in EVENT_FIELDS) if isinstance(data, dict) else []


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


EVENT_FIELDS = ("type", "at", "lead", "magnet", "profile", "template", "page", "entry", "webinar", "bounce", "machine")
