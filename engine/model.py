"""The typed funnel model: frozen dataclasses built from a schema-valid document.

Nothing downstream of validation sees dicts. Every element keeps the JSON path it came
from, so lint and compile can point back at the source through `Funnel.document`.
Durations are normalised to minutes and conditions are parsed once, here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from . import expr
from .errors import JsonPath
from .clock import in_window
from .load import Document
from .units import format_duration, parse_clock, parse_duration  # noqa: F401 - re-exported

BUILTIN_CRM_EVENTS = ("demo_booked", "opportunity_opened", "deal_won", "deal_lost")
MARKETING_KINDS = ("nurture", "broadcast")
POST_SALE_KINDS = ("onboarding", "retention", "expansion")

@dataclass(frozen=True)
class Condition:
    source: str
    tree: expr.Node
    path: JsonPath


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    enum: Optional[Tuple[Any, ...]]
    minimum: Optional[float]
    maximum: Optional[float]
    format: Optional[str]
    required: bool
    path: JsonPath


@dataclass(frozen=True)
class Named:
    """A persona, a segment or the fit (ICP) condition."""

    name: str
    when: Condition
    path: JsonPath


@dataclass(frozen=True)
class Sender:
    from_: str
    reply_to: Optional[str]
    postal_address: str
    timezone: str
    unsubscribe_url: Optional[str]
    # Base URL of the double opt-in confirmation page (`fnl serve`'s /confirm); the SMTP
    # adapter appends each lead's signed link. Not part of the plan.
    confirm_url: Optional[str] = None


# How long a double opt-in's confirmation stays valid when `within` is not given.
CONFIRM_WITHIN_DEFAULT = "7d"


@dataclass(frozen=True)
class DoubleOptIn:
    """`double_opt_in:` of a lead magnet: the confirmation email and its window."""

    confirm: str
    within_minutes: int
    path: JsonPath


@dataclass(frozen=True)
class LeadMagnet:
    name: str
    kind: str
    title: str
    consent: Optional[str]
    enters: str
    score: int
    delivers: Optional[str]
    segment: Optional[str]
    path: JsonPath
    double_opt_in: Optional[DoubleOptIn] = None


@dataclass(frozen=True)
class Entry:
    """A way in without a lead magnet: a CRM event or an import creates the lead."""

    name: str
    on: str  # crm.<event> or lead.imported
    enters: str
    basis: str  # consent | contract | legitimate_interest
    consent: Optional[str]
    path: JsonPath


@dataclass(frozen=True)
class FitRule:
    when: Condition
    points: int
    path: JsonPath


@dataclass(frozen=True)
class Decay:
    """Score decay: multiply by `factor` every `every_minutes` (a half-life is converted)."""

    factor: float
    every_minutes: int
    half_life_minutes: Optional[int]
    window_minutes: Optional[int]
    path: JsonPath


@dataclass(frozen=True)
class Scoring:
    events: Tuple[Tuple[str, int], ...]
    fit: Tuple[FitRule, ...]
    decay: Optional[Decay]
    thresholds: Tuple[Tuple[str, int], ...]
    path: JsonPath
    count_repeats: bool = False

    def threshold(self, name: str) -> Optional[int]:
        return dict(self.thresholds).get(name)


@dataclass(frozen=True)
class Transition:
    index: int
    sources: Tuple[str, ...]
    to: str
    when: Optional[Condition]
    on: Optional[str]
    description: str
    path: JsonPath


@dataclass(frozen=True)
class Notify:
    to: str
    message: str


@dataclass(frozen=True)
class Step:
    index: int
    id: str
    wait_minutes: int
    send: Optional[str]
    variants: Tuple[Tuple[str, int], ...]
    when: Optional[Condition]
    unless: Optional[Condition]
    notify: Optional[Notify]
    exit: bool
    at: Optional[int]  # minutes after midnight, lead's local time
    path: JsonPath


@dataclass(frozen=True)
class ExitCriteria:
    stage_at_least: Optional[str]
    when: Optional[Condition]
    on: Tuple[str, ...]
    path: JsonPath


@dataclass(frozen=True)
class Sequence:
    name: str
    kind: str
    description: str
    stages: Tuple[str, ...]
    segment: Optional[str]
    persona: Optional[str]
    when: Optional[Condition]
    on: Optional[str]
    steps: Tuple[Step, ...]
    exit: Optional[ExitCriteria]
    priority: int
    path: JsonPath

    @property
    def is_marketing(self) -> bool:
        return self.kind in MARKETING_KINDS


@dataclass(frozen=True)
class Assignment:
    kind: str  # round_robin | territory | owner
    reps: Tuple[str, ...]  # round_robin list, or the single owner
    by: Optional[str]
    routes: Tuple[Tuple[str, Tuple[str, ...]], ...]
    default: Tuple[str, ...]
    path: JsonPath


@dataclass(frozen=True)
class Escalation:
    """`handoff.STAGE.escalate:`: what a breached SLA leads to, once per handoff."""

    notify: Tuple[str, ...]  # addresses, or `manager` (the breaching owner's, from `managers`)
    managers: Tuple[Tuple[str, str], ...]  # rep -> manager
    reassign: str  # none | next (the handoff's own list, skipping the owner) | to
    to: Optional[str]  # the rep of `reassign: {to: ...}`
    sla_minutes: Optional[int]  # the new owner's deadline, from the escalation on
    path: JsonPath


@dataclass(frozen=True)
class Handoff:
    stage: str
    assign: Assignment
    sla_minutes: Optional[int]
    notify: Tuple[str, ...]
    suppress: Tuple[str, ...]
    crm_stage: Optional[str]
    path: JsonPath
    sla_clock: str = "calendar"  # calendar | business
    answered_by: Tuple[str, ...] = ()  # CRM events that meet the SLA; () means any crm.<event>
    escalate: Optional[Escalation] = None


@dataclass(frozen=True)
class FrequencyCap:
    max: int
    per_minutes: int
    applies_to: Tuple[str, ...]
    path: JsonPath


@dataclass(frozen=True)
class QuietHours:
    start: int  # minutes after midnight
    end: int
    path: JsonPath

    def contains(self, minute_of_day: int) -> bool:
        return in_window(minute_of_day, self.start, self.end)

    @property
    def length_minutes(self) -> int:
        return (self.end - self.start) % 1440


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessHours:
    days: Tuple[int, ...]  # 0 = Monday
    start: int  # minutes after midnight, sender's timezone
    end: int
    path: JsonPath


@dataclass(frozen=True)
class Policies:
    frequency_cap: Optional[FrequencyCap]
    quiet_hours: Optional[QuietHours]
    timezone_attribute: str
    soft_bounce_limit: int = 3
    business_hours: Optional[BusinessHours] = None


@dataclass(frozen=True)
class Funnel:
    name: str
    description: str
    template_dir: Path
    sender: Sender
    profile: Tuple[Attribute, ...]
    personas: Tuple[Named, ...]
    segments: Tuple[Named, ...]
    fit: Optional[Named]
    stages: Tuple[str, ...]
    terminal_stages: Tuple[str, ...]
    lead_magnets: Tuple[LeadMagnet, ...]
    crm_events: Tuple[str, ...]
    scoring: Scoring
    transitions: Tuple[Transition, ...]
    sequences: Tuple[Sequence, ...]
    handoff: Tuple[Handoff, ...]
    policies: Policies
    document: Document = field(compare=False, repr=False)
    entries: Tuple[Entry, ...] = ()

    def attribute(self, name: str) -> Optional[Attribute]:
        return next((a for a in self.profile if a.name == name), None)

    def sequence(self, name: str) -> Optional[Sequence]:
        return next((s for s in self.sequences if s.name == name), None)

    def stage_index(self, stage: str) -> int:
        return self.stages.index(stage) if stage in self.stages else -1


def _condition(data: Dict[str, Any], key: str, path: JsonPath) -> Optional[Condition]:
    source = data.get(key)
    if source is None:
        return None
    return Condition(source, expr.parse(source), path + (key,))


def _stages(value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _template_dir(doc: Document, data: Dict[str, Any], name: str) -> Path:
    """The template folder (inside the definition's tree; one fnl refuses holds nothing,
    and the loader has reported why)."""
    from .sources import templates_folder  # sources loads documents; the model does not need it otherwise

    return templates_folder(doc, name)[0]


def _step(i: int, raw: Dict[str, Any], path: JsonPath) -> Step:
    notify = raw.get("notify")
    send = raw.get("send")
    default_id = send.rsplit("/", 1)[-1] if send else ("notify" if notify else "exit" if raw.get("exit") else "wait")
    return Step(
        index=i,
        id=raw.get("id") or default_id,
        wait_minutes=parse_duration(raw.get("wait", "0m")),
        send=send,
        variants=tuple((raw.get("variants") or {}).items()),
        when=_condition(raw, "when", path),
        unless=_condition(raw, "unless", path),
        notify=Notify(notify["to"], notify["message"]) if notify else None,
        exit=bool(raw.get("exit")),
        at=parse_clock(raw["at"]) if "at" in raw else None,
        path=path,
    )


def _unique_step_ids(steps: Tuple[Step, ...]) -> Tuple[Step, ...]:
    """Default IDs come from template names and may repeat; number the repeats so every
    step ID is stable and unique within its sequence."""
    seen: Dict[str, int] = {}
    out = []
    for step in steps:
        n = seen.get(step.id, 0) + 1
        seen[step.id] = n
        out.append(step if n == 1 else Step(**{**step.__dict__, "id": f"{step.id}-{n}"}))
    return tuple(out)


def _sequence(name: str, raw: Dict[str, Any]) -> Sequence:
    path: JsonPath = ("sequences", name)
    exit_raw = raw.get("exit")
    exit_ = None
    if exit_raw:
        exit_ = ExitCriteria(exit_raw.get("stage_at_least"), _condition(exit_raw, "when", path + ("exit",)),
                             tuple(exit_raw.get("on") or ()), path + ("exit",))
    steps = tuple(_step(i, s, path + ("steps", i)) for i, s in enumerate(raw["steps"]))
    return Sequence(name, raw["kind"], raw.get("description", ""), _stages(raw.get("stage")), raw.get("segment"),
                    raw.get("persona"), _condition(raw, "when", path), raw.get("on"), _unique_step_ids(steps),
                    exit_, int(raw.get("priority", 0)), path)


def _assignment(raw: Dict[str, Any], path: JsonPath) -> Assignment:
    if "round_robin" in raw:
        return Assignment("round_robin", tuple(raw["round_robin"]), None, (), (), path)
    if "owner" in raw:
        return Assignment("owner", (raw["owner"],), None, (), (), path)
    t = raw["territory"]
    routes = tuple((str(k), tuple(v)) for k, v in t["routes"].items())
    return Assignment("territory", (), t["by"], routes, tuple(t.get("default") or ()), path)


def _escalation(raw: Optional[Dict[str, Any]], path: JsonPath) -> Optional[Escalation]:
    if raw is None:
        return None
    reassign = raw.get("reassign", False)
    kind = "to" if isinstance(reassign, dict) else "next" if reassign else "none"
    return Escalation(tuple(raw.get("notify") or ()), tuple((raw.get("managers") or {}).items()), kind,
                      reassign.get("to") if isinstance(reassign, dict) else None,
                      parse_duration(raw["sla"]) if "sla" in raw else None, path)


def _double_opt_in(magnet: Dict[str, Any], name: str) -> Optional[DoubleOptIn]:
    raw = magnet.get("double_opt_in")
    if raw is None:
        return None
    return DoubleOptIn(raw["confirm"], parse_duration(raw.get("within", CONFIRM_WITHIN_DEFAULT)),
                       ("lead_magnets", name, "double_opt_in"))


def _decay(raw: Optional[Dict[str, Any]]) -> Optional[Decay]:
    if not raw:
        return None
    window = parse_duration(raw["window"]) if "window" in raw else None
    path: JsonPath = ("scoring", "decay")
    if "half_life" in raw:
        half = parse_duration(raw["half_life"])
        # Applied once a day, which is how scores are reported and compared.
        factor = 0.5 ** (1440 / half) if half else 0.0
        return Decay(factor, 1440, half, window, path)
    if "factor" in raw:
        return Decay(float(raw["factor"]), parse_duration(raw["every"]), None, window, path)
    return Decay(1.0, 1440, None, window, path)


def _business_hours(raw: Optional[Dict[str, Any]]) -> Optional[BusinessHours]:
    if not raw:
        return None
    days = tuple(sorted(WEEKDAYS.index(d) for d in raw.get("days") or WEEKDAYS[:5]))
    return BusinessHours(days, parse_clock(raw["from"]), parse_clock(raw["to"]), ("policies", "business_hours"))


def _enum_type(values: Optional[Any]) -> str:
    """An attribute's type when only its enum is given: the type its values share."""
    if not values:
        return "string"
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def build(doc: Document) -> Funnel:
    """The typed model of a schema-valid document with valid condition syntax."""
    d = doc.data
    sender_raw = d["sender"]
    sender = Sender(sender_raw["from"], sender_raw.get("reply_to"), sender_raw["postal_address"],
                    sender_raw.get("timezone", "UTC"), sender_raw.get("unsubscribe_url"), sender_raw.get("confirm_url"))
    profile = tuple(
        Attribute(name, a.get("type") or _enum_type(a.get("enum")), tuple(a["enum"]) if "enum" in a else None,
                  a.get("minimum"), a.get("maximum"), a.get("format"), bool(a.get("required", False)),
                  ("profile", name))
        for name, a in (d.get("profile") or {}).items())

    def named(group: str) -> Tuple[Named, ...]:
        return tuple(Named(n, _condition(b, "when", (group, n)), (group, n))  # type: ignore[arg-type]
                     for n, b in (d.get(group) or {}).items())

    fit = Named("fit", _condition(d["fit"], "when", ("fit",)), ("fit",)) if "fit" in d else None  # type: ignore[arg-type]
    stages = tuple(d["stages"])
    magnets = tuple(
        LeadMagnet(n, m["kind"], m.get("title", n), m.get("consent"), m["enters"], int(m.get("score", 0)),
                   m.get("delivers"), m.get("segment"), ("lead_magnets", n), _double_opt_in(m, n))
        for n, m in (d.get("lead_magnets") or {}).items())
    sc = d.get("scoring") or {}
    scoring = Scoring(
        tuple((sc.get("events") or {}).items()),
        tuple(FitRule(_condition(r, "when", ("scoring", "fit", i)), int(r["points"]), ("scoring", "fit", i))  # type: ignore[arg-type]
              for i, r in enumerate(sc.get("fit") or [])),
        _decay(sc.get("decay")),
        tuple((sc.get("thresholds") or {}).items()),
        ("scoring",), bool(sc.get("count_repeats", False)))
    transitions = tuple(
        Transition(i, _stages(t["from"]), t["to"], _condition(t, "when", ("transitions", i)), t.get("on"),
                   t.get("description", ""), ("transitions", i))
        for i, t in enumerate(d.get("transitions") or []))
    handoff = tuple(
        Handoff(stage, _assignment(h["assign"], ("handoff", stage, "assign")),
                parse_duration(h["sla"]) if "sla" in h else None, tuple(h.get("notify") or ()),
                tuple(h.get("suppress") or ()), h.get("crm_stage"), ("handoff", stage),
                h.get("sla_clock", "calendar"), tuple(h.get("answered_by") or ()),
                _escalation(h.get("escalate"), ("handoff", stage, "escalate")))
        for stage, h in (d.get("handoff") or {}).items())
    pol = d.get("policies") or {}
    cap = pol.get("frequency_cap")
    quiet = pol.get("quiet_hours")
    policies = Policies(
        FrequencyCap(cap["max"], parse_duration(cap["per"]), tuple(cap.get("applies_to") or ()),
                     ("policies", "frequency_cap")) if cap else None,
        QuietHours(parse_clock(quiet["from"]), parse_clock(quiet["to"]), ("policies", "quiet_hours")) if quiet else None,
        pol.get("timezone_attribute", "timezone"), int(pol.get("soft_bounce_limit", 3)),
        _business_hours(pol.get("business_hours")))
    entries = tuple(Entry(n, e["on"], e["enters"], e["basis"], e.get("consent"), ("entries", n))
                    for n, e in (d.get("entries") or {}).items())
    return Funnel(
        name=d["funnel"], description=d.get("description", ""), template_dir=_template_dir(doc, d, d["funnel"]),
        sender=sender, profile=profile, personas=named("personas"), segments=named("segments"), fit=fit,
        stages=stages, terminal_stages=tuple(d.get("terminal_stages") or stages[-1:]), lead_magnets=magnets,
        crm_events=BUILTIN_CRM_EVENTS + tuple(e for e in (d.get("crm") or {}).get("events", ())
                                              if e not in BUILTIN_CRM_EVENTS),
        scoring=scoring, transitions=transitions,
        sequences=tuple(_sequence(n, s) for n, s in (d.get("sequences") or {}).items()),
        handoff=handoff, policies=policies, document=doc, entries=entries)
