"""The plan: the one executable artifact the runtime and the simulator both run.

A plan is data, not closures: tables of stages, steps, points and thresholds, and
conditions as small JSON expression trees that can be evaluated for one lead or for a
column of leads. It serialises to canonical JSON (sorted keys, fixed separators) so
the same definition gives byte-identical plans on any machine, and it carries a
content hash of everything it depends on, templates included.

Condition trees:
    {"lit": 40}                         a constant (thresholds are resolved to these)
    {"attr": "industry"}                a profile attribute
    {"var": "score"}                    an engine value: score, stage, fit, segment, …
    {"op": "and", "args": [a, b]}       and, or, not, ==, !=, <, <=, >, >=, in, not in, + - * /, neg
    {"list": [a, b]}                    a list literal
    {"call": "visited", "args": [...], "kwargs": {"since": {"lit": "mql"}}}
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

FORMAT_VERSION = 2
Tree = Dict[str, Any]


@dataclass(frozen=True)
class Cond:
    source: str
    tree: Tree


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    enum: Optional[Tuple[Any, ...]]
    minimum: Optional[float]
    maximum: Optional[float]
    required: bool


@dataclass(frozen=True)
class Group:
    name: str
    when: Cond


@dataclass(frozen=True)
class Stage:
    name: str
    index: int
    terminal: bool
    sales_owned: bool
    suppress: Tuple[str, ...]  # sequence kinds and names suppressed while in this stage


# A field with this metadata is left out of the plan's JSON while it is None (and is
# optional in the plan schema), so a feature added later changes the plan, and its hash,
# only of the funnels that use it.
OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True)
class DoubleOptIn:
    """A lead magnet's double opt-in: the confirmation email, and how long it stays valid."""

    confirm: str  # the template of the confirmation email
    within_minutes: int


@dataclass(frozen=True)
class Magnet:
    name: str
    kind: str
    consent: str
    enters: str
    score: int
    delivers: Optional[str]
    double_opt_in: Optional[DoubleOptIn] = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Entry:
    """A CRM event or an import that creates a lead in a stage, with its basis for email."""

    name: str
    on: str
    enters: str
    basis: str
    consent: str


@dataclass(frozen=True)
class Points:
    event: str  # full event name, e.g. site.visited.pricing
    base: str  # site.visited
    detail: str  # pricing ('' for the base event)
    points: int


@dataclass(frozen=True)
class FitPoints:
    when: Cond
    points: int


@dataclass(frozen=True)
class Decay:
    factor: float
    every_minutes: int
    window_minutes: Optional[int]


@dataclass(frozen=True)
class Scoring:
    events: Tuple[Points, ...]
    fit: Tuple[FitPoints, ...]
    decay: Optional[Decay]
    thresholds: Tuple[Tuple[str, int], ...]
    count_repeats: bool


@dataclass(frozen=True)
class Transition:
    id: str
    sources: Tuple[str, ...]
    to: str
    when: Optional[Cond]
    on: Optional[str]


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int


@dataclass(frozen=True)
class Step:
    id: str
    index: int
    wait_minutes: int
    at_minute: Optional[int]
    action: str  # send | notify | exit | wait
    template: Optional[str]
    variants: Tuple[Variant, ...]
    when: Optional[Cond]
    unless: Optional[Cond]
    notify_to: Optional[str]
    message: Optional[str]


@dataclass(frozen=True)
class Exit:
    stage_at_least: Optional[str]
    when: Optional[Cond]
    on: Tuple[str, ...]


@dataclass(frozen=True)
class Sequence:
    name: str
    kind: str
    marketing: bool
    stages: Tuple[str, ...]
    segment: Optional[str]
    persona: Optional[str]
    when: Optional[Cond]
    on: Optional[str]
    priority: int
    exit: Optional[Exit]
    steps: Tuple[Step, ...]


@dataclass(frozen=True)
class Assignment:
    kind: str
    reps: Tuple[str, ...]
    by: Optional[str]
    routes: Tuple[Tuple[str, Tuple[str, ...]], ...]
    default: Tuple[str, ...]


@dataclass(frozen=True)
class Escalation:
    """What a breached SLA leads to: who is told, who owns the lead next, a new deadline."""

    notify: Tuple[str, ...]  # addresses, or `manager`: the breaching owner's, from `managers`
    managers: Tuple[Tuple[str, str], ...]  # rep -> manager
    reassign: str  # none | next (the handoff's own list, skipping the owner, in a turn of its own) | to
    to: Optional[str]  # the rep of reassign `to`
    sla_minutes: Optional[int]  # the owner's new deadline, counted from the escalation


@dataclass(frozen=True)
class Handoff:
    stage: str
    assign: Assignment
    sla_minutes: Optional[int]
    notify: Tuple[str, ...]
    suppress: Tuple[str, ...]
    crm_stage: Optional[str]
    sla_clock: str  # calendar | business
    answered_by: Tuple[str, ...]  # CRM events that meet the SLA; empty: any crm.<event>
    escalate: Optional[Escalation] = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Policies:
    cap_max: Optional[int]
    cap_per_minutes: Optional[int]
    cap_applies_to: Tuple[str, ...]
    quiet_from: Optional[int]
    quiet_to: Optional[int]
    timezone_attribute: str
    default_timezone: str
    soft_bounce_limit: int
    business_days: Tuple[int, ...]  # 0 = Monday; empty when no business hours are set
    business_from: Optional[int]
    business_to: Optional[int]


@dataclass(frozen=True)
class Sender:
    from_: str
    reply_to: Optional[str]
    postal_address: str
    unsubscribe_url: Optional[str]
    # Where a double opt-in's confirmation link goes (fnl serve's /confirm); left out of the
    # plan's JSON when unset, so plans without it keep their text and hash.
    confirm_url: Optional[str] = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Template:
    name: str
    sha256: str


@dataclass(frozen=True)
class Plan:
    format_version: int
    funnel: str
    content_hash: str
    sender: Sender
    profile: Tuple[Attribute, ...]
    personas: Tuple[Group, ...]
    segments: Tuple[Group, ...]
    fit: Optional[Cond]
    stages: Tuple[Stage, ...]
    lead_magnets: Tuple[Magnet, ...]
    entries: Tuple[Entry, ...]
    crm_events: Tuple[str, ...]
    scoring: Scoring
    transitions: Tuple[Transition, ...]
    sequences: Tuple[Sequence, ...]
    handoff: Tuple[Handoff, ...]
    policies: Policies
    templates: Tuple[Template, ...]

    # Lookups by name, made once per plan (the engine asks for stages on every step; a
    # plan is frozen, so these never go stale). Not fields: no part of the plan's JSON.
    @functools.cached_property
    def _by_name(self) -> Tuple[Dict[str, Stage], Dict[str, Sequence], Dict[str, Magnet], Dict[str, Handoff]]:
        return ({s.name: s for s in reversed(self.stages)}, {s.name: s for s in reversed(self.sequences)},
                {m.name: m for m in reversed(self.lead_magnets)}, {h.stage: h for h in reversed(self.handoff)})

    @functools.cached_property
    def sequence_rank(self) -> Dict[str, Tuple[int, int]]:
        """Each sequence's place when several have a step due at once: priority first,
        then the order of the definition."""
        return {s.name: (-s.priority, i) for i, s in enumerate(self.sequences)}

    def stage(self, name: str) -> Optional[Stage]:
        return self._by_name[0].get(name)

    def stage_index(self, name: str) -> int:
        st = self._by_name[0].get(name)
        return st.index if st else -1

    def sequence(self, name: str) -> Optional[Sequence]:
        return self._by_name[1].get(name)

    def magnet(self, name: str) -> Optional[Magnet]:
        return self._by_name[2].get(name)

    def entry_for(self, event_type: str, name: Optional[str]) -> Optional[Entry]:
        """The entry through which an event creates a lead, if any."""
        return next((e for e in self.entries if e.on == event_type
                     and (event_type != "lead.imported" or name is None or e.name == name)), None)

    def reps(self) -> Tuple[str, ...]:
        """Every rep a handoff can assign to, in the order the handoffs first name them."""
        return tuple(dict.fromkeys(rep for h in self.handoff for rep in (
            *h.assign.reps, *(r for _, route in h.assign.routes for r in route), *h.assign.default)))

    def handoff_for(self, stage: str) -> Optional[Handoff]:
        return self._by_name[3].get(stage)

    def threshold(self, name: str) -> Optional[int]:
        return dict(self.scoring.thresholds).get(name)


# -- JSON -----------------------------------------------------------------------------

def _omitted(f: dataclasses.Field, value: Any) -> bool:  # type: ignore[type-arg]
    return value is None and bool(f.metadata.get("omit_none"))


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _omitted(f, getattr(value, f.name))}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def to_dict(plan: Plan) -> Dict[str, Any]:
    return _to_json(plan)  # type: ignore[no-any-return]


def dumps(plan: Plan) -> str:
    """Canonical JSON: sorted keys, two-space indent, UTF-8, trailing newline; DEL, C1
    controls and invisible layout characters as `\\u` escapes (the same values), so a plan
    printed to a terminal cannot act on it."""
    from .terminal import json_text

    return json_text(json.dumps(to_dict(plan), indent=2, sort_keys=True, ensure_ascii=False)) + "\n"


def body_hash(body: Dict[str, Any]) -> str:
    """Hash of a plan body without its own `content_hash` field."""
    clean = {k: v for k, v in body.items() if k != "content_hash"}
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=None)
def _hints(tp: Any) -> Dict[str, Any]:
    """A dataclass's field types, worked out once (string annotations are compiled)."""
    return typing.get_type_hints(tp)


def _from_json(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_json(inner[0], value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)  # type: ignore[arg-type]
        kwargs = {}
        for f in dataclasses.fields(tp):
            key = f.name.rstrip("_")
            if key not in value and f.metadata.get("omit_none"):
                continue
            if key not in value:
                raise ValueError(f"missing `{key}` in {tp.__name__}")  # type: ignore[union-attr]
            kwargs[f.name] = _from_json(hints[f.name], value[key])
        return tp(**kwargs)  # type: ignore[operator]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        return tuple(_from_json(a, v) for a, v in zip(args, value))
    if origin is dict or tp is Tree:
        return dict(value)
    if tp is Any:
        return value
    return value


def _upgrade(data: Dict[str, Any]) -> Dict[str, Any]:
    """A format-1 plan (before entries, repeat counting, soft-bounce limits and SLA
    clocks) as format 2, with the defaults those plans ran with."""
    out = dict(data, format_version=FORMAT_VERSION, entries=[])
    if isinstance(out.get("scoring"), dict):
        out["scoring"] = dict(out["scoring"], count_repeats=False)
    if isinstance(out.get("policies"), dict):
        out["policies"] = dict(out["policies"], soft_bounce_limit=3, business_days=[], business_from=None,
                               business_to=None)
    if isinstance(out.get("handoff"), list):
        out["handoff"] = [dict(h, sla_clock="calendar", answered_by=[]) if isinstance(h, dict) else h
                          for h in out["handoff"]]
    return out


def from_dict(data: Dict[str, Any]) -> Plan:
    """A Plan from its JSON form. Raises ValueError for a plan of another format, or one
    that does not match the plan schema (checked first: nothing below trusts the data).
    To read a plan file with located problems, use `engine.planfile.read`."""
    if isinstance(data, dict) and data.get("format_version") == 1:
        data = _upgrade(data)
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not an fnl plan of format_version {FORMAT_VERSION}")
    import fastjsonschema

    from .validate import _fast_check

    try:
        _fast_check("plan")(data)
    except fastjsonschema.JsonSchemaException as exc:
        raise ValueError(f"not a valid fnl plan: {getattr(exc, 'message', exc)}") from None
    except RecursionError:
        raise ValueError("not a valid fnl plan: nested too deep") from None
    plan = _from_json(Plan, data)
    assert isinstance(plan, Plan)
    return plan


# -- schema ---------------------------------------------------------------------------

_TREE_SCHEMA: Dict[str, Any] = {
    "title": "Condition tree",
    "description": "A compiled condition: a constant, a profile attribute, an engine value, an operator, a list or "
                   "a predicate call.",
    "type": "object",
    "oneOf": [
        {"required": ["lit"], "properties": {"lit": {"type": ["string", "number", "boolean", "null"]}},
         "additionalProperties": False},
        {"required": ["attr"], "properties": {"attr": {"type": "string"}}, "additionalProperties": False},
        {"required": ["var"], "properties": {"var": {"type": "string"}}, "additionalProperties": False},
        {"required": ["op", "args"], "additionalProperties": False, "properties": {
            "op": {"enum": ["and", "or", "not", "neg", "==", "!=", "<", "<=", ">", ">=", "in", "not in",
                           "+", "-", "*", "/"]},
            "args": {"type": "array", "items": {"$ref": "#/definitions/Tree"}, "minItems": 1, "maxItems": 2}}},
        {"required": ["list"], "additionalProperties": False,
         "properties": {"list": {"type": "array", "items": {"$ref": "#/definitions/Tree"}}}},
        {"required": ["call", "args", "kwargs"], "additionalProperties": False, "properties": {
            "call": {"type": "string"}, "args": {"type": "array", "items": {"$ref": "#/definitions/Tree"}},
            "kwargs": {"type": "object", "additionalProperties": {"$ref": "#/definitions/Tree"}}}},
    ],
}


def _schema_for(tp: Any, defs: Dict[str, Any]) -> Dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return {"anyOf": [_schema_for(inner[0], defs), {"type": "null"}]}
    if tp is Tree or origin is dict:
        return {"$ref": "#/definitions/Tree"}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__  # type: ignore[union-attr]
        if name not in defs:
            defs[name] = {}
            hints = typing.get_type_hints(tp)
            props = {f.name.rstrip("_"): _schema_for(hints[f.name], defs) for f in dataclasses.fields(tp)}
            optional = {f.name.rstrip("_") for f in dataclasses.fields(tp) if f.metadata.get("omit_none")}
            defs[name] = {"title": name, "description": (tp.__doc__ or name).strip().splitlines()[0],
                          "type": "object", "properties": props, "required": sorted(set(props) - optional),
                          "additionalProperties": False}
        return {"$ref": f"#/definitions/{name}"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_for(args[0], defs)}
        return {"type": "array", "items": [_schema_for(a, defs) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    if tp is Any:
        return {}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}


def json_schema() -> Dict[str, Any]:
    """The JSON Schema of the plan format, derived from these dataclasses (so the
    schema file cannot drift from the code; a test compares them)."""
    defs: Dict[str, Any] = {"Tree": _TREE_SCHEMA}
    root = _schema_for(Plan, defs)
    plan_def = defs.pop("Plan")
    plan_def["properties"]["format_version"] = {"const": FORMAT_VERSION}
    plan_def["properties"]["content_hash"] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
    del root
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://fnl.dev/schemas/plan.schema.json",
            "title": "fnl plan", "description": "A compiled funnel: the artifact the runtime and the simulator execute.",
            **{k: v for k, v in plan_def.items() if k not in ("title", "description")}, "definitions": defs}
