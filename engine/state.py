"""What flows through the engine: events in, actions out, and each lead's state.

All three are frozen values with a JSON form, so the runtime can store state in
SQLite, the trace can print it, and the simulator can compare it. Times are whole
minutes since 1970-01-01 UTC.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional, Tuple

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Event types the engine understands. Email events carry the template they are about;
# site visits the page; CRM events are `crm.<name>`.
EMAIL_EVENTS = ("email.delivered", "email.opened", "email.clicked", "email.replied", "email.bounced",
                "email.unsubscribed")
OTHER_EVENTS = ("optin", "magnet.downloaded", "site.visited", "webinar.registered", "webinar.attended",
                "profile.updated", "tick")
_CRM = re.compile(r"crm\.[a-z][a-z0-9_]*\Z")


def minutes(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int((moment - EPOCH).total_seconds() // 60)


def iso(minute: int) -> str:
    moment = datetime.fromtimestamp(minute * 60, tz=timezone.utc)
    return f"{moment.year:04d}-{moment.strftime('%m-%dT%H:%M:%S')}Z"  # %Y is not padded for early years


def parse_time(text: str) -> int:
    """ISO 8601 (`2026-03-02T09:30:00Z`, offsets allowed; no zone means UTC) → minutes."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"`{text}` is not an ISO 8601 time such as 2026-03-02T09:30:00Z") from None
    return minutes(moment)


def is_event_type(kind: str) -> bool:
    return kind in EMAIL_EVENTS or kind in OTHER_EVENTS or bool(_CRM.match(kind))


@dataclass(frozen=True)
class Event:
    """Something that happened to a lead, or the clock (`tick`)."""

    type: str
    at: int
    lead: str
    magnet: Optional[str] = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    template: Optional[str] = None
    page: Optional[str] = None

    @property
    def detail(self) -> str:
        if self.type.startswith("email."):
            return self.template or ""
        if self.type == "site.visited":
            return self.page or ""
        if self.type in ("optin", "magnet.downloaded"):
            return self.magnet or ""
        return ""

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.type, "at": iso(self.at), "lead": self.lead}
        for key in ("magnet", "template", "page"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.profile:
            out["profile"] = dict(self.profile)
        return out


@dataclass(frozen=True)
class Action:
    """Something the engine asks the outside world to do."""

    type: str  # send_email | handoff | notify | crm_update | stage_changed | exit_sequence | enter_sequence | rejected
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
    source: str  # lead magnet of the opt-in
    unsubscribed: bool = False
    bounced: bool = False
    owner: Optional[str] = None
    sla_deadline: Optional[int] = None
    facts: Tuple[Tuple[str, int], ...] = ()  # event key -> last minute seen
    running: Tuple[Running, ...] = ()
    finished: Tuple[str, ...] = ()  # sequences a lead has been through (never restarted)
    sends: Tuple[int, ...] = ()  # recent send minutes, for the frequency cap
    emails_sent: int = 0
    last_at: int = 0
    # (minute, points) of every scoring event, kept only when the decay has a window.
    points: Tuple[Tuple[int, float], ...] = ()

    def profile_dict(self) -> Dict[str, Any]:
        return dict(self.profile)

    def to_json(self) -> Dict[str, Any]:
        return {
            "lead": self.lead, "profile": dict(self.profile), "stage": self.stage,
            "entered": {k: iso(v) for k, v in self.entered}, "score": round(self.score, 6),
            "consent": self.consent, "consent_at": iso(self.consent_at), "source": self.source,
            "unsubscribed": self.unsubscribed, "bounced": self.bounced, "owner": self.owner,
            "sla_deadline": iso(self.sla_deadline) if self.sla_deadline is not None else None,
            "running": [{"sequence": r.sequence, "step": r.step_id, "due": iso(r.due)} for r in self.running],
            "finished": list(self.finished), "emails_sent": self.emails_sent,
        }


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
    """An Event from untrusted JSON; ValueError with a clear message if malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = set(data) - {"type", "at", "lead", "magnet", "profile", "template", "page"}
    if unknown:
        raise ValueError(f"{where}: unknown field `{sorted(unknown)[0]}` (fields: type, at, lead, magnet, profile, "
                         "template, page)")
    kind = data.get("type")
    if not isinstance(kind, str) or not is_event_type(kind):
        raise ValueError(f"{where}: `type` must be an event such as optin, email.opened, site.visited, crm.deal_won "
                         f"or tick, not {json.dumps(kind)[:40]}")
    at = data.get("at")
    if not isinstance(at, str):
        raise ValueError(f"{where}: `at` must be an ISO 8601 time string")
    lead = data.get("lead", "")
    if not isinstance(lead, str) or (kind != "tick" and not lead) or len(lead) > 320:
        raise ValueError(f"{where}: `lead` must be the lead's ID or email (a non-empty string)")
    profile = data.get("profile", {})
    if not isinstance(profile, dict) or not all(isinstance(k, str) for k in profile):
        raise ValueError(f"{where}: `profile` must be an object of attribute values")
    for key in ("magnet", "template", "page"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{where}: `{key}` must be a string")
    return Event(kind, parse_time(at), lead, data.get("magnet"), profile, data.get("template"), data.get("page"))
