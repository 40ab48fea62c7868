"""The engine core: one pure transition function over the plan.

    step(plan, state, event, shared) -> Result(state, actions, shared)

The runtime, the trace and the simulator all call this, so a dry run and production
cannot disagree. Within one event the order is fixed:

1. bring the score up to date (decay, in whole periods since the epoch);
2. apply the event: facts for predicates, points, unsubscribe and bounce;
3. stage transitions, each checked once, in declaration order (so a lead can pass
   through several stages on one event), with handoff on entering a handoff stage;
4. leave sequences whose exit criteria hold or that the new stage suppresses;
5. enter sequences whose entry now holds (each sequence at most once per lead);
6. run every step that is due, enforcing consent, unsubscribes, quiet hours in the
   lead's timezone and the frequency cap, here and nowhere else.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

from . import evaluate as ev
from . import plan as p
from .state import Action, Event, LeadState, Running, Shared

MAX_SENDS_KEPT = 1000


@dataclass(frozen=True)
class Result:
    state: Optional[LeadState]
    actions: Tuple[Action, ...]
    shared: Shared


class _Lead:
    """Mutable working copy of a LeadState for the length of one step."""

    def __init__(self, s: LeadState) -> None:
        self.s = s
        self.profile = dict(s.profile)
        self.entered = dict(s.entered)
        self.facts = dict(s.facts)
        self.running = list(s.running)
        self.finished = list(s.finished)
        self.sends = list(s.sends)
        self.stage = s.stage
        self.score = s.score
        self.score_at = s.score_at
        self.unsubscribed = s.unsubscribed
        self.bounced = s.bounced
        self.owner = s.owner
        self.sla_deadline = s.sla_deadline
        self.emails_sent = s.emails_sent
        self.points = list(s.points)

    def freeze(self, now: int, cap_minutes: Optional[int]) -> LeadState:
        sends = self.sends
        if cap_minutes is not None:
            sends = [t for t in sends if t > now - cap_minutes]
        return replace(self.s, profile=tuple(sorted(self.profile.items())), stage=self.stage,
                       entered=tuple(sorted(self.entered.items())), score=self.score, score_at=self.score_at,
                       unsubscribed=self.unsubscribed, bounced=self.bounced, owner=self.owner,
                       sla_deadline=self.sla_deadline, facts=tuple(sorted(self.facts.items())),
                       running=tuple(self.running), finished=tuple(self.finished),
                       sends=tuple(sends[-MAX_SENDS_KEPT:]), emails_sent=self.emails_sent, last_at=now,
                       points=tuple(self.points))


class _Step:
    """One application of an event: the plan, the lead, the clock and the output."""

    def __init__(self, plan: p.Plan, lead: _Lead, event: Event, shared: Shared) -> None:
        self.plan = plan
        self.lead = lead
        self.event = event
        self.now = event.at
        self.shared = shared
        self.actions: List[Action] = []
        self.created = False

    # -- reading the lead ---------------------------------------------------------
    def act(self, action_type: str, at: Optional[int] = None, **detail: Any) -> None:
        self.actions.append(Action(action_type, self.now if at is None else at, self.lead.s.lead,
                                   tuple(sorted(detail.items()))))

    def fact(self, key: str) -> Optional[int]:
        return self.lead.facts.get(key)

    def resolve(self, node: p.Tree) -> Any:
        if "attr" in node:
            return self.lead.profile.get(node["attr"])
        if "var" in node:
            return self.var(node["var"])
        return self.call(node["call"], [ev.evaluate(a, self.resolve) for a in node["args"]],
                         {k: ev.evaluate(v, self.resolve) for k, v in node["kwargs"].items()})

    def var(self, name: str) -> Any:
        if name == "score":
            return round(self.lead.score, 6)
        if name == "stage":
            return self.lead.stage
        if name == "fit":
            return self.plan.fit is not None and ev.holds(self.plan.fit.tree, self.resolve)
        if name == "segment":
            return self.group(self.plan.segments)
        if name == "persona":
            return self.group(self.plan.personas)
        if name == "email":
            return self.lead.s.lead
        if name == "emails_sent":
            return self.lead.emails_sent
        if name in ("opened", "clicked", "replied", "visited", "downloaded", "attended"):
            return self.call(name, [], {})
        return None

    def group(self, groups: Tuple[p.Group, ...]) -> Optional[str]:
        return next((g.name for g in groups if ev.holds(g.when.tree, self.resolve)), None)

    def call(self, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        arg = args[0] if args else None
        key = {"opened": "email.opened", "clicked": "email.clicked", "replied": "email.replied",
               "visited": "site.visited", "downloaded": "magnet.downloaded", "attended": "webinar.attended"}.get(name)
        if key is not None:
            seen = self.fact(f"{key}.{arg}" if arg else key)
            if seen is None:
                return False
            since = kwargs.get("since")
            if since is not None:
                entered = self.lead.entered.get(since)
                return entered is not None and seen > entered
            return True
        if name == "stage_at_least":
            return self.plan.stage_index(self.lead.stage) >= self.plan.stage_index(str(arg)) >= 0
        if name == "days_since":
            if arg == "optin":
                start: Optional[int] = self.lead.s.consent_at
            elif arg == "last_email":
                start = self.fact("email.sent")
            else:
                start = self.lead.entered.get(str(arg))
            return None if start is None else (self.now - start) / 1440
        return None

    def describe_var(self, name: str) -> str:
        if name == "fit" and self.plan.fit is not None:
            names = _names(self.plan.fit.tree)
            values = ", ".join(f"{n}={self.lead.profile.get(n)}" for n in names)
            return f"fit: {values}" if values else "fit"
        return f"{name}={self.var(name)}"

    # -- 1. score -----------------------------------------------------------------
    def decay(self) -> None:
        """Bring the score to `now`: multiply by the factor once per whole period
        boundary crossed. With a window, the score is recomputed from the points still
        inside it, each decayed from when it was earned."""
        d = self.plan.scoring.decay
        if d is not None and d.window_minutes is not None:
            every = d.every_minutes if d.every_minutes > 0 else 0
            self.lead.points = [(t, n) for t, n in self.lead.points if t > self.now - d.window_minutes]
            self.lead.score = sum(n * (d.factor ** (self.now // every - t // every) if every else 1.0)
                                  for t, n in self.lead.points)
        elif d is not None and d.every_minutes > 0:
            periods = self.now // d.every_minutes - self.lead.score_at // d.every_minutes
            if periods > 0:
                self.lead.score *= d.factor ** periods
        self.lead.score_at = self.now

    def add_points(self, points: float) -> None:
        if not points:
            return
        self.lead.score += points
        d = self.plan.scoring.decay
        if d is not None and d.window_minutes is not None:
            self.lead.points.append((self.now, points))

    def points(self, kind: str, detail: str) -> int:
        narrow = next((e.points for e in self.plan.scoring.events if e.base == kind and e.detail == detail and detail),
                      None)
        if narrow is not None:
            return narrow
        return next((e.points for e in self.plan.scoring.events if e.base == kind and not e.detail), 0)

    # -- 2. the event -------------------------------------------------------------
    def apply_event(self) -> None:
        e = self.event
        if e.type == "tick":
            return
        kind = "magnet.downloaded" if e.type == "optin" else e.type
        detail = e.detail
        self.lead.facts[kind] = self.now
        if detail:
            self.lead.facts[f"{kind}.{detail}"] = self.now
        if e.type == "profile.updated":
            self.lead.profile.update(e.profile)
            return
        if e.type in ("optin", "magnet.downloaded") and e.magnet:
            magnet = self.plan.magnet(e.magnet)
            if magnet is not None and (self.lead.s.source != e.magnet or self.created):
                self.add_points(magnet.score)
            if magnet is not None and magnet.delivers:
                self.deliver(magnet)
        self.add_points(self.points(kind, detail))
        if e.type == "email.unsubscribed":
            self.lead.unsubscribed = True
        elif e.type == "email.bounced":
            self.lead.bounced = True

    def deliver(self, magnet: p.Magnet) -> None:
        """The lead magnet's delivery email goes out at once: the lead asked for it, so
        quiet hours and the frequency cap do not hold it back; unsubscribes do."""
        if self.lead.unsubscribed or self.lead.bounced:
            return
        self.lead.emails_sent += 1
        self.lead.facts["email.sent"] = self.now
        self.lead.facts[f"email.sent.{magnet.delivers}"] = self.now
        self.act("send_email", sequence=None, step=None, template=magnet.delivers, variant=None, kind="delivery",
                 magnet=magnet.name)

    # -- 3. stages ----------------------------------------------------------------
    def transitions(self) -> None:
        for t in self.plan.transitions:
            if self.lead.stage not in t.sources:
                continue
            if t.on is not None and not _matches(t.on, self.event):
                continue
            if not ev.holds(t.when.tree if t.when else None, self.resolve):
                continue
            reasons = []
            if t.on is not None:
                reasons.append(f"{t.on} happened")
            if t.when is not None:
                reasons.append(ev.explain(t.when.tree, self.resolve, self.describe_var))
            self.enter_stage(t.to, f"{t.to} because " + " and ".join(r for r in reasons if r), t.id)

    def enter_stage(self, stage: str, because: str, transition: str) -> None:
        before = self.lead.stage
        self.lead.stage = stage
        self.lead.entered[stage] = self.now
        self.act("stage_changed", None, **{"from": before, "to": stage, "because": because,  # type: ignore[arg-type]
                                           "transition": transition})
        rule = self.plan.handoff_for(stage)
        self.act("crm_update", stage=(rule.crm_stage if rule and rule.crm_stage else stage))
        if rule is not None:
            self.handoff(rule)

    def handoff(self, rule: p.Handoff) -> None:
        a = rule.assign
        reps: Tuple[str, ...] = a.reps
        key = f"{rule.stage}"
        if a.kind == "territory":
            value = str(self.lead.profile.get(a.by or "", ""))
            routes = dict(a.routes)
            reps = routes.get(value, a.default)
            key = f"{rule.stage}:{value if value in routes else '*'}"
        if not reps:
            self.act("handoff_failed", stage=rule.stage, reason="no rep to assign")
            return
        owner, self.shared = self.shared.take(key, reps)
        self.lead.owner = owner
        self.lead.sla_deadline = self.now + rule.sla_minutes if rule.sla_minutes is not None else None
        self.act("handoff", stage=rule.stage, owner=owner,
                 sla_deadline=_iso(self.lead.sla_deadline) if self.lead.sla_deadline is not None else None)
        for target in rule.notify:
            self.act("notify", to=target if target != "owner" else owner,
                     message=f"{self.lead.s.lead} reached {rule.stage}; owner {owner}")

    # -- 4/5. sequences -----------------------------------------------------------
    def suppressed(self, seq: p.Sequence) -> bool:
        stage = self.plan.stage(self.lead.stage)
        return stage is not None and (seq.kind in stage.suppress or seq.name in stage.suppress)

    def exit_reason(self, seq: p.Sequence) -> Optional[str]:
        if self.lead.unsubscribed:
            return "unsubscribed"
        if self.lead.bounced:
            return "bounced"
        if self.suppressed(seq):
            return f"suppressed in {self.lead.stage}"
        x = seq.exit
        if x is not None:
            if x.stage_at_least and self.plan.stage_index(self.lead.stage) >= self.plan.stage_index(x.stage_at_least) >= 0:
                return f"reached {self.lead.stage}"
            if any(_matches(on, self.event) for on in x.on):
                return f"{self.event.type} happened"
            if x.when is not None and ev.holds(x.when.tree, self.resolve):
                return f"exit condition holds: {x.when.source}"
        return None

    def exits(self) -> None:
        keep = []
        for run in self.lead.running:
            seq = self.plan.sequence(run.sequence)
            reason = "removed from the plan" if seq is None else self.exit_reason(seq)
            if reason is None:
                keep.append(run)
                continue
            self.act("exit_sequence", sequence=run.sequence, reason=reason)
        self.lead.running = keep

    def may_enter(self, seq: p.Sequence) -> bool:
        if seq.name in self.lead.finished or any(r.sequence == seq.name for r in self.lead.running):
            return False
        if self.lead.unsubscribed or self.lead.bounced or self.suppressed(seq):
            return False
        if seq.on is not None and not _matches(seq.on, self.event):
            return False
        if seq.stages and self.lead.stage not in seq.stages:
            return False
        if seq.segment is not None and self.var("segment") != seq.segment:
            return False
        if seq.persona is not None and self.var("persona") != seq.persona:
            return False
        if not ev.holds(seq.when.tree if seq.when else None, self.resolve):
            return False
        return self.exit_reason(seq) is None

    def enrol(self) -> None:
        for seq in self.plan.sequences:
            if seq.steps and self.may_enter(seq):
                first = seq.steps[0]
                self.lead.running.append(Running(seq.name, first.id, 0, self.now + first.wait_minutes, self.now))
                self.lead.finished.append(seq.name)
                self.act("enter_sequence", sequence=seq.name)

    # -- 6. due steps ---------------------------------------------------------------
    def run_due(self) -> None:
        order = {s.name: (-s.priority, i) for i, s in enumerate(self.plan.sequences)}
        for _ in range(10_000):  # bounded: each pass advances or defers one step
            due = [r for r in self.lead.running if r.due <= self.now and r.sequence in order]
            if not due:
                return
            run = min(due, key=lambda r: (r.due, order[r.sequence]))
            self.advance(run)

    def advance(self, run: Running) -> None:
        seq = self.plan.sequence(run.sequence)
        assert seq is not None
        step = seq.steps[run.index]
        nxt: Optional[Running] = None
        at = run.due
        if step.action == "send" and self.should_run(step):
            moment = self.send_time(run.due, step, seq)
            if moment > run.due:  # held back by quiet hours, `at` or the cap: wait in place
                self.replace_run(run, replace(run, due=moment))
                return
            self.send(seq, step, moment)
            at = moment
        elif step.action == "notify" and self.should_run(step):
            self.act("notify", at=at, to=self.lead.owner if step.notify_to == "owner" else step.notify_to,
                     message=step.message, sequence=seq.name, step=step.id)
        elif step.action == "exit" and self.should_run(step):
            self.act("exit_sequence", at=at, sequence=seq.name, reason=f"step {step.id}")
            self.replace_run(run, None)
            return
        if run.index + 1 < len(seq.steps):
            following = seq.steps[run.index + 1]
            nxt = Running(seq.name, following.id, run.index + 1, at + following.wait_minutes, run.started)
        else:
            self.act("exit_sequence", at=at, sequence=seq.name, reason="completed")
        self.replace_run(run, nxt)

    def replace_run(self, old: Running, new: Optional[Running]) -> None:
        i = self.lead.running.index(old)
        if new is None:
            del self.lead.running[i]
        else:
            self.lead.running[i] = new

    def should_run(self, step: p.Step) -> bool:
        if step.when is not None and not ev.holds(step.when.tree, self.resolve):
            return False
        return not (step.unless is not None and ev.holds(step.unless.tree, self.resolve))

    def send_time(self, due: int, step: p.Step, seq: p.Sequence) -> int:
        """Earliest moment at or after `due` that respects `at`, quiet hours and the cap."""
        pol = self.plan.policies
        tz = self.lead.profile.get(pol.timezone_attribute) or pol.default_timezone
        moment = due
        for _ in range(8):  # each rule can only push later; settles in a few rounds
            before = moment
            if step.at_minute is not None:
                moment = _next_local(moment, step.at_minute, tz)
            if pol.quiet_from is not None and pol.quiet_to is not None:
                moment = _after_quiet(moment, pol.quiet_from, pol.quiet_to, tz)
            if pol.cap_max is not None and pol.cap_per_minutes and (not pol.cap_applies_to
                                                                    or seq.kind in pol.cap_applies_to):
                window = [t for t in self.lead.sends if moment - pol.cap_per_minutes < t <= moment]
                if len(window) >= pol.cap_max:
                    moment = window[len(window) - pol.cap_max] + pol.cap_per_minutes
            if moment == before:
                return moment
        return moment

    def send(self, seq: p.Sequence, step: p.Step, moment: int) -> None:
        variant = _variant(self.lead.s.lead, seq.name, step)
        self.lead.sends.append(moment)
        self.lead.emails_sent += 1
        self.lead.facts["email.sent"] = moment
        self.lead.facts[f"email.sent.{step.template}"] = moment
        self.act("send_email", at=moment, sequence=seq.name, step=step.id, template=step.template, variant=variant,
                 kind=seq.kind)


def _names(tree: p.Tree) -> List[str]:
    out: List[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if "attr" in node and node["attr"] not in out:
            out.append(node["attr"])
        stack.extend(reversed(node.get("args", [])))
        stack.extend(reversed(node.get("list", [])))
    return out


def _matches(on: str, event: Event) -> bool:
    kind = "magnet.downloaded" if event.type == "optin" else event.type
    return on == kind or (bool(event.detail) and on == f"{kind}.{event.detail}")


def _variant(lead: str, sequence: str, step: p.Step) -> Optional[str]:
    """A/B variant by a stable hash of lead and step: the same lead always gets the
    same variant, on any machine, and weights hold over many leads."""
    if not step.variants:
        return None
    total = sum(v.weight for v in step.variants)
    if total <= 0:
        return step.variants[0].name
    h = int.from_bytes(hashlib.sha256(f"{lead}\x00{sequence}\x00{step.id}".encode()).digest()[:8], "big")
    bucket = h % total
    for v in step.variants:
        if bucket < v.weight:
            return v.name
        bucket -= v.weight
    return step.variants[-1].name  # pragma: no cover


@lru_cache(maxsize=256)
def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return timezone.utc


def _local(minute: int, tz: str) -> datetime:
    return datetime.fromtimestamp(minute * 60, tz=timezone.utc).astimezone(_zone(str(tz)))


def _to_minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def _next_local(minute: int, at: int, tz: str) -> int:
    """The first moment >= minute whose local time of day is `at`."""
    local = _local(minute, tz)
    target = local.replace(hour=at // 60, minute=at % 60, second=0, microsecond=0)
    if target < local.replace(second=0, microsecond=0):
        target = (target + timedelta(days=1)).replace(hour=at // 60, minute=at % 60)
    return max(minute, _to_minute(target))


def _after_quiet(minute: int, start: int, end: int, tz: str) -> int:
    local = _local(minute, tz)
    mod = local.hour * 60 + local.minute
    inside = start <= mod < end if start <= end else (mod >= start or mod < end)
    if not inside:
        return minute
    return _next_local(minute, end, tz)


def _iso(minute: int) -> str:
    from .state import iso

    return iso(minute)


def validate_profile(plan: p.Plan, profile: Dict[str, Any]) -> Optional[str]:
    """Why a lead's profile does not fit the plan's declared attributes, or None."""
    declared = {a.name: a for a in plan.profile}
    for key in profile:
        if key not in declared and key != "email":
            return f"unknown profile attribute `{key}`"
    for a in plan.profile:
        value = profile.get(a.name)
        if value is None:
            if a.required:
                return f"required attribute `{a.name}` is missing"
            continue
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
            return f"`{a.name}` is too large (integers must fit in 64 bits)"
        ok = {"string": isinstance(value, str), "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(float(value))}.get(a.type, True)
        if not ok:
            return f"`{a.name}` must be {a.type}, not {type(value).__name__}"
        if a.enum is not None and value not in a.enum:
            return f"`{a.name}` must be one of {', '.join(map(str, a.enum))}, not {value!r}"
        if isinstance(value, str) and len(value) > 1000:
            return f"`{a.name}` is longer than 1000 characters"
        if a.minimum is not None and isinstance(value, (int, float)) and value < a.minimum:
            return f"`{a.name}` must be at least {a.minimum}"
        if a.maximum is not None and isinstance(value, (int, float)) and value > a.maximum:
            return f"`{a.name}` must be at most {a.maximum}"
    return None


def new_lead(plan: p.Plan, event: Event) -> Tuple[Optional[LeadState], Optional[str]]:
    """The state of a lead created by an opt-in, or why the opt-in is rejected."""
    magnet = plan.magnet(event.magnet or "")
    if magnet is None:
        known = ", ".join(m.name for m in plan.lead_magnets) or "none defined"
        return None, f"opt-in names unknown lead magnet `{event.magnet}` (known: {known})"
    profile = dict(event.profile)
    problem = validate_profile(plan, profile)
    if problem:
        return None, problem
    state = LeadState(lead=event.lead, profile=tuple(sorted(profile.items())), stage=magnet.enters,
                      entered=((magnet.enters, event.at),), score=0.0, score_at=event.at,
                      consent=magnet.consent, consent_at=event.at, source=magnet.name, last_at=event.at)
    return state, None


def step(plan: p.Plan, state: Optional[LeadState], event: Event, shared: Shared = Shared()) -> Result:
    """Apply one event to one lead. Pure: the inputs are not changed."""
    created = False
    if state is None:
        if event.type != "optin":
            return Result(None, (Action("rejected", event.at, event.lead,
                                        (("reason", f"unknown lead: the first event must be an opt-in, not {event.type}"),)),),
                          shared)
        state, problem = new_lead(plan, event)
        if state is None:
            return Result(None, (Action("rejected", event.at, event.lead, (("reason", problem),)),), shared)
        created = True
    if event.at < state.last_at:
        return Result(state, (Action("rejected", event.at, event.lead,
                                     (("reason", f"event at {_iso(event.at)} is older than the lead's last event "
                                                 f"({_iso(state.last_at)}); send events in time order"),)),), shared)
    if event.type == "profile.updated":
        merged = {**dict(state.profile), **dict(event.profile)}
        problem = validate_profile(plan, merged)
        if problem:
            return Result(state, (Action("rejected", event.at, event.lead, (("reason", problem),)),), shared)
    work = _Step(plan, _Lead(state), event, shared)
    if created:
        work.created = True
        work.act("consent_recorded", magnet=state.source, consent=state.consent)
        work.add_points(sum(fp.points for fp in plan.scoring.fit if ev.holds(fp.when.tree, work.resolve)))
        rule = plan.handoff_for(state.stage)
        work.act("crm_update", stage=(rule.crm_stage if rule and rule.crm_stage else state.stage))
        if rule is not None:
            work.handoff(rule)
    work.decay()
    work.apply_event()
    work.transitions()
    work.exits()
    work.enrol()
    work.run_due()
    return Result(work.lead.freeze(work.now, plan.policies.cap_per_minutes), tuple(work.actions), work.shared)
