"""The engine core: one pure transition function over the plan.

    step(plan, state, event, shared) -> Result(state, actions, shared)

The runtime, the trace and the simulator all call this, so a dry run and production
cannot disagree. The rules, in the order one step applies them:

1. Catch up to the event's minute: decay the score (whole periods in the sender's
   timezone, `engine.score`), breach an SLA whose deadline has passed, and run every
   step due at or before this minute. So an email due at 09:00 goes out before an
   unsubscribe, open or CRM event stamped 09:00, whatever the seconds say.
2. Apply the event. Engagement (open, click, reply) counts only for an email the lead
   was sent, once per email and kind unless the funnel counts repeats; machine-made
   opens and clicks are recorded, not scored. An unsubscribe is honoured at once and
   forever; a complaint also suppresses the address, as a hard bounce or
   `soft_bounce_limit` soft bounces in a row do. A new opt-in or `profile.updated`
   updates the profile, and with it fit, segment and persona. A CRM event that answers
   a pending SLA meets it.
3. Stage transitions, each checked once, in declaration order (a lead can pass several
   stages on one event), with handoff on entering a handoff stage. An unsubscribed lead
   makes no engagement-driven move: only transitions `on: crm.<event>` (sales acting)
   still apply, and a handoff then says "do not email".
4. Leave sequences whose exit criteria hold, that the stage suppresses, or whose
   segment or persona no longer matches; enter sequences whose entry now holds (each at
   most once per lead); run the steps now due, enforcing consent, unsubscribes, quiet
   hours in the lead's timezone and the frequency cap, here and nowhere else.

Escalation: a handoff with `escalate` acts on its SLA's breach, once: after
`sla_breached` (at the minute after the deadline) it emits `escalated` with the owner who
let it pass, the rep who owns the lead from then on (`reassign: true`: the next of the
handoff's own list, skipping that owner, in a round-robin turn of its own; `{to: REP}`:
that rep), and who is told (addresses, or `manager` from `managers`), a `notify` for each
(and for the new owner when the handoff notifies its owner), and a new deadline of
`escalate.sla` from the breach's minute on the handoff's clock. A CRM event that would
answer the first SLA answers that one; its breach is reported and not escalated again.

Double opt-in: an opt-in through a lead magnet with `double_opt_in` does not create the
lead. It waits (`Prospect.pending`: the magnet, the consent text, the minute, the profile)
and the magnet's confirmation email goes out at once: it is transactional (sent before
any marketing consent, never to an address that unsubscribed or is suppressed). An
`optin.confirmed` before the window ends creates the lead exactly as a single opt-in of
the same magnet would at that minute (stage, points, delivery, consent recorded with the
opt-in's and the confirmation's times); at the end of the window the opt-in expires and a
later opt-in starts over. While it waits, the lead is not a lead: no nurture, scoring or
handoff, and its activity is held as any activity before an opt-in is; an unsubscribe,
complaint or hard bounce of the confirmation email cancels it and holds for good.

Every decision that changes what a lead gets says why, once, when it is made: a send
held back by quiet hours, its step's `at:` time or the cap is `deferred` (from, to, and
the rules in words); a step whose `when` is false or `unless` true is `skipped`; a CRM
event that moves, scores, answers, starts and ends nothing is `ignored`, as is engagement
with an email this lead was not sent (never scored). A `notify: {to: owner}` step reached
before any handoff gave the lead an owner notifies nobody: it is `skipped` ("the lead has
no owner"), and the sequence goes on. An engagement-driven move held back from an
unsubscribed lead is `not_moved`, unless a CRM-driven transition took the lead to that
stage in the same step. The words are built only then.

Activity from someone who has not opted in yet (a site visit in an export) is held,
bounded, and applied at the opt-in minute in order; engagement with email before any
email was sent is ignored with a reason.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import timezone
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

from . import clock
from . import evaluate as ev
from . import plan as p
from . import score as sc
from .state import (CLOCK, ENGAGEMENT, HELD_FOR_MINUTES, MAX_HELD, OPTIN_CONFIRMED, RECONFIRM_AFTER_MINUTES, Action,
                    Event, LeadState, Pending, Prospect, Running, Shared, iso)
from .units import format_clock

MAX_SENDS_KEPT = 1000
State = Union[LeadState, Prospect, None]
_LABEL = {"email.opened": "open", "email.clicked": "click", "email.replied": "reply", "email.delivered": "delivery"}
# Predicates that read a fact: the event behind each, narrowed by the name they are given.
FACTS = {"opened": "email.opened", "clicked": "email.clicked", "replied": "email.replied", "visited": "site.visited",
          "downloaded": "magnet.downloaded", "attended": "webinar.attended", "registered": "webinar.registered"}


@dataclass(frozen=True)
class Result:
    state: State
    actions: Tuple[Action, ...]
    shared: Shared


def _replace(state: LeadState, **changes: Any) -> LeadState:
    """`dataclasses.replace` for the lead's state, without its per-call look at every
    field (the engine makes a new state on every step): the same fields, these changed."""
    new = object.__new__(LeadState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


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
        self.unsubscribed_at = s.unsubscribed_at
        self.bounced = s.bounced
        self.soft_bounces = s.soft_bounces
        self.owner = s.owner
        self.sla_deadline = s.sla_deadline
        self.sla_stage = s.sla_stage
        self.sla_escalated = s.sla_escalated
        self.emails_sent = s.emails_sent
        self.points = list(s.points)

    def freeze(self, now: int, cap_minutes: Optional[int]) -> LeadState:
        sends = self.sends
        if cap_minutes is not None:
            sends = [t for t in sends if t > now - cap_minutes]
        return _replace(self.s, profile=tuple(sorted(self.profile.items())), stage=self.stage,
                       entered=tuple(sorted(self.entered.items())), score=self.score, score_at=self.score_at,
                       unsubscribed=self.unsubscribed, unsubscribed_at=self.unsubscribed_at, bounced=self.bounced,
                       soft_bounces=self.soft_bounces, owner=self.owner, sla_deadline=self.sla_deadline,
                       sla_stage=self.sla_stage, sla_escalated=self.sla_escalated,
                       facts=tuple(sorted(self.facts.items())),
                       running=tuple(self.running), finished=tuple(self.finished),
                       sends=tuple(sends[-MAX_SENDS_KEPT:]), emails_sent=self.emails_sent,
                       last_at=max(now, self.s.last_at), points=tuple(self.points))


class _Step:
    """One application of an event: the plan, the lead, the clock and the output."""

    def __init__(self, plan: p.Plan, lead: _Lead, event: Event, shared: Shared) -> None:
        self.plan = plan
        self.lead = lead
        self.event = event
        self.now = event.at
        self.shared = shared
        self.actions: List[Action] = []
        self.creating: Optional[Event] = None  # the event that created the lead, in this step
        self.answering = True  # whether a CRM event may answer a pending SLA
        self.used = False  # whether the event moved, scored, answered, started or ended anything
        self.stage_at_event = lead.stage  # the stage the event found the lead in

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
            return sc.shown(self.lead.score)
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
        if name == "unsubscribed":
            return self.lead.unsubscribed
        if name == "bounced":
            return self.lead.bounced
        if name in FACTS:
            return self.call(name, [], {})
        return None

    def group(self, groups: Tuple[p.Group, ...]) -> Optional[str]:
        return next((g.name for g in groups if ev.holds(g.when.tree, self.resolve)), None)

    def call(self, name: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        arg = args[0] if args else None
        key = FACTS.get(name)
        if key is not None:
            seen = self.fact(f"{key}.{arg}" if arg else key)
            if seen is None:
                return False
            since = kwargs.get("since")
            if since is not None:
                # By minute: something in the minute a stage was entered is not after it.
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
        if name in FACTS:  # `replied` reads as itself, not as `replied=True`
            return name
        return f"{name}={self.var(name)}"

    @property
    def timezone(self) -> str:
        return self.plan.policies.default_timezone

    # -- 1. catching up to the minute ---------------------------------------------
    def catch_up(self) -> None:
        """Everything due at or before this minute happens before the event."""
        self.decay()
        self.sla_breach()
        self.exits(by_event=False)
        self.run_due()

    def decay(self) -> None:
        """Bring the score to `now` (`engine.score`): the factor once per period boundary
        crossed in the sender's timezone; with a window, the points still inside it."""
        d = self.plan.scoring.decay
        if d is not None and d.window_minutes is not None:
            self.lead.score, self.lead.points = sc.windowed(self.lead.points, d.factor, d.every_minutes,
                                                            d.window_minutes, self.now, self.timezone)
        elif d is not None:
            self.lead.score = sc.decayed(self.lead.score, d.factor, d.every_minutes, self.lead.score_at, self.now,
                                         self.timezone)
        self.lead.score_at = max(self.now, self.lead.score_at)

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
    def handle(self, event: Event) -> None:
        """Apply one event at `now`, then the transitions and SLA it may cause."""
        self.event = event
        self.used = event is self.creating
        self.stage_at_event = self.lead.stage
        self.apply_event()
        self.sla_answer()  # before transitions: the event that makes a handoff does not answer it
        self.transitions()

    def ignore(self, reason: str) -> None:
        self.act("ignored", event=self.event.type, reason=reason)

    def apply_event(self) -> None:
        e = self.event
        if e.type == CLOCK:
            return
        if e.type == OPTIN_CONFIRMED:
            s = self.lead.s
            confirmed = f" (it confirmed at {iso(s.consent_at)})" if s.opted_in_at is not None else ""
            self.ignore(f"optin.confirmed ignored: {s.lead} is already in the funnel{confirmed}")
            return
        if e.type in ENGAGEMENT:
            self.engage(e)
            return
        kind = "magnet.downloaded" if e.type == "optin" else e.type
        detail = e.detail
        self.lead.facts[kind] = self.now
        if detail and detail in known_details(self.plan):  # a page nothing asks about is not kept
            self.lead.facts[f"{kind}.{detail}"] = self.now
        if e.type == "email.delivered":
            self.lead.soft_bounces = 0
            points = self.points(kind, detail)
            if points and not self.was_sent(e, points):
                return
            self.add_points(points)
            return
        if e.type in ("profile.updated", "lead.imported"):
            self.update_profile(e.profile)  # an import of a known lead refreshes its profile
            return
        if e.type in ("optin", "magnet.downloaded") and e.magnet:
            magnet = self.plan.magnet(e.magnet)
            if e.type == "optin" and self.creating is None:
                self.update_profile(e.profile)
                if magnet is not None:
                    self.act("consent_recorded", magnet=magnet.name, consent=magnet.consent, basis="consent")
            if magnet is not None and (self.lead.s.source != e.magnet or e is self.creating):
                self.add_points(magnet.score)
            if magnet is not None and magnet.delivers:
                self.deliver(magnet)
        points = self.points(kind, detail)
        self.add_points(points)
        if points:
            self.used = True
        if e.type in ("email.unsubscribed", "email.complained"):
            if not self.lead.unsubscribed:
                self.lead.unsubscribed = True
                self.lead.unsubscribed_at = self.now
            if e.type == "email.complained" and not self.lead.bounced:
                self.lead.bounced = True
                self.act("suppressed", reason="spam complaint: no email of any kind from now on")
        elif e.type == "email.bounced":
            self.bounce(e)

    def engage(self, e: Event) -> None:
        """An open, click or reply: real only for an email this lead was sent."""
        label = _LABEL[e.type]
        template = e.template
        if not template:
            self.ignore(f"{label} ignored: the event names no email (give its `template`)")
            return
        if not self.was_sent(e):
            return
        self.lead.soft_bounces = 0
        if e.machine:
            self.act("recorded", event=e.type, reason=f"{label} of {template} is machine-made (privacy proxy or "
                                                      "link scanner): recorded, not scored")
            return
        key = f"{e.type}.{template}"
        first = key not in self.lead.facts
        self.lead.facts[e.type] = self.now
        self.lead.facts[key] = self.now
        if first or self.plan.scoring.count_repeats:
            self.add_points(self.points(e.type, template))
        else:
            self.act("not_scored", event=e.type,
                     reason=f"{label} of {template} already counted (each email scores once per kind)")

    def was_sent(self, e: Event, points: Optional[int] = None) -> bool:
        """Whether the email an event names was sent to this lead; if not, a line says the
        event is not scored, and why."""
        template = e.template or ""
        if self.fact(f"email.sent.{template}") is not None:
            return True
        known = any(t.name == template for t in self.plan.templates)
        why = "not sent to this lead" if known else "no such email in this funnel"
        if template in confirm_templates(self.plan):
            why = "a double opt-in confirmation email is transactional, not counted"
        label = _LABEL[e.type]
        if points is None:
            self.ignore(f"{label} of {template} ignored, not scored: {why}")
        else:  # a delivery still tells that the address works; only its points are withheld
            self.act("not_scored", event=e.type, template=template, reason=f"{label} of {template} ({why})")
        return False

    def bounce(self, e: Event) -> None:
        if self.lead.bounced:
            return
        if e.bounce == "soft":
            self.lead.soft_bounces += 1
            limit = self.plan.policies.soft_bounce_limit
            if self.lead.soft_bounces < limit:
                return
            reason = f"{limit} soft bounces in a row: the address is suppressed"
        else:
            reason = "hard bounce: the address is suppressed"
        self.lead.bounced = True
        self.act("suppressed", reason=reason)

    def update_profile(self, profile: Any) -> None:
        """New profile values (validated by `step`); segment and persona follow them."""
        if profile:
            self.lead.profile.update(profile)

    def deliver(self, magnet: p.Magnet) -> None:
        """The lead magnet's delivery email goes out at once: the lead asked for it, so
        quiet hours and the frequency cap do not hold it back; unsubscribes do."""
        if self.lead.unsubscribed or self.lead.bounced:
            self.act("not_sent", template=magnet.delivers, reason=self.no_email_reason())
            return
        self.lead.emails_sent += 1
        self.lead.facts["email.sent"] = self.now
        self.lead.facts[f"email.sent.{magnet.delivers}"] = self.now
        self.act("send_email", sequence=None, step=None, template=magnet.delivers, variant=None, kind="delivery",
                 magnet=magnet.name)

    def no_email_reason(self) -> str:
        if self.lead.unsubscribed and self.lead.unsubscribed_at is not None:
            return f"unsubscribed at {iso(self.lead.unsubscribed_at)}"
        return "the address is suppressed" if self.lead.bounced else "unsubscribed"

    # -- 3. stages ----------------------------------------------------------------
    def transitions(self) -> None:
        # An engagement-driven move held back from an unsubscribed lead is said where it
        # would have happened, unless a CRM-driven transition took the lead to that same
        # stage in this step: then nothing was held back, and the note would contradict
        # the move on the next line.
        held: List[Tuple[int, str, Action]] = []
        reached: List[str] = []
        for t in self.plan.transitions:
            if self.lead.stage not in t.sources:
                continue
            if t.on is not None and not _matches(t.on, self.event):
                continue
            if not ev.holds(t.when.tree if t.when else None, self.resolve):
                continue
            if self.lead.unsubscribed and not (t.on or "").startswith("crm."):
                if self.event.type != CLOCK:
                    self.act("not_moved", to=t.to, transition=t.id,
                             reason=f"{self.no_email_reason()}: engagement no longer moves the lead "
                                    f"(only `on: crm.<event>` transitions do)")
                    held.append((len(self.actions) - 1, t.to, self.actions.pop()))
                continue
            reached.append(t.to)
            reasons = []
            self.used = True
            if t.on is not None:
                reasons.append(f"{t.on} happened")
            if t.when is not None:
                reasons.append(ev.explain(t.when.tree, self.resolve, self.describe_var))
            self.enter_stage(t.to, f"{t.to} because " + " and ".join(r for r in reasons if r), t.id)
        for index, to, note in reversed(held):
            if to not in reached:
                self.actions.insert(index, note)

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
        key, reps = handoff_pool(rule, self.lead.profile)
        if not reps:
            self.act("handoff_failed", stage=rule.stage, reason="no rep to assign")
            return
        owner, self.shared = self.shared.take(key, reps)
        if self.lead.sla_deadline is not None:
            self.act("sla_superseded", stage=self.lead.sla_stage, owner=self.lead.owner,
                     deadline=iso(self.lead.sla_deadline), reason=f"the lead reached {rule.stage} before anyone "
                                                                  "followed up")
        self.lead.owner = owner
        deadline = self.deadline(rule, rule.sla_minutes, self.now)
        self.lead.sla_deadline = deadline
        self.lead.sla_stage = rule.stage if deadline is not None else None
        self.lead.sla_escalated = False
        detail: Dict[str, Any] = {"stage": rule.stage, "owner": owner,
                                  "sla_deadline": iso(deadline) if deadline is not None else None}
        message = f"{self.lead.s.lead} reached {rule.stage}; owner {owner}"
        if self.lead.unsubscribed or self.lead.bounced:
            detail["do_not_email"] = self.no_email_reason()
            message += f"; do not email: {self.no_email_reason()}"
        self.act("handoff", **detail)
        for target in rule.notify:
            self.act("notify", to=target if target != "owner" else owner, message=message)

    def deadline(self, rule: p.Handoff, minutes: Optional[int], start: int) -> Optional[int]:
        """The last minute of an SLA of `minutes` from `start`, on the handoff's clock."""
        if minutes is None:
            return None
        pol = self.plan.policies
        hours = (pol.business_days, pol.business_from, pol.business_to) \
            if rule.sla_clock == "business" and pol.business_from is not None else None
        return clock.business_deadline(start, minutes, hours, self.timezone)  # type: ignore[arg-type]

    # -- 4. SLA -------------------------------------------------------------------
    def sla_breach(self) -> None:
        """A deadline past: `sla_breached` the minute after it, then the handoff's
        escalation, once; the breach of the deadline an escalation set is only reported."""
        deadline = self.lead.sla_deadline
        if deadline is None or self.now <= deadline:
            return
        again = self.lead.sla_escalated
        self.act("sla_breached", at=deadline + 1, stage=self.lead.sla_stage, owner=self.lead.owner,
                 deadline=iso(deadline), **({"escalated": True} if again else {}))
        self.lead.sla_deadline = None
        self.lead.sla_escalated = False
        rule = self.plan.handoff_for(self.lead.sla_stage or "")
        if rule is not None and rule.escalate is not None and not again:
            self.escalate(rule, rule.escalate, deadline)

    def escalate(self, rule: p.Handoff, esc: p.Escalation, missed: int) -> None:
        """The escalation of a breached SLA, at the breach's minute: who is told, who
        owns the lead from then on (the next rep of the handoff's own list in a turn of
        its own, or a named one), and the new deadline, counted from the breach."""
        at, owner = missed + 1, self.lead.owner
        new_owner, why = owner, ""
        if esc.reassign == "to" and esc.to is not None:
            new_owner = esc.to
        elif esc.reassign == "next":
            key, reps = handoff_pool(rule, self.lead.profile)
            others = tuple(dict.fromkeys(r for r in reps if r != owner))
            if others:
                new_owner, self.shared = self.shared.take(f"!escalate {key}", others)
            else:
                why = "no other rep in the handoff's list to reassign to"
        managers = dict(esc.managers)
        told: List[str] = []
        for target in esc.notify:
            if target == "manager" and managers.get(owner or "") is None:
                why += ("; " if why else "") + f"no manager of {owner} in `managers` to tell"
            address = managers.get(owner or "") if target == "manager" else target
            if address is not None and address not in told:
                told.append(address)
        deadline = self.deadline(rule, esc.sla_minutes, at)
        self.lead.owner = new_owner
        self.lead.sla_deadline = deadline
        self.lead.sla_escalated = deadline is not None
        detail: Dict[str, Any] = {"stage": rule.stage, "owner": owner, "to": new_owner if new_owner != owner else None,
                                  "notify": tuple(told), "deadline": iso(missed),
                                  "sla_deadline": iso(deadline) if deadline is not None else None}
        if why:
            detail["reason"] = why
        self.act("escalated", at=at, **detail)
        message = f"{self.lead.s.lead} escalated: {owner} did not follow up on {rule.stage} by {iso(missed)}"
        message += f"; owner now {new_owner}" if new_owner != owner else ""
        if self.lead.unsubscribed or self.lead.bounced:
            message += f"; do not email: {self.no_email_reason()}"
        tell = told + ([new_owner] if new_owner != owner and "owner" in rule.notify and new_owner not in told
                       and new_owner is not None else [])
        for target in tell:
            self.act("notify", at=at, to=target, message=message)

    def sla_answer(self) -> None:
        if self.lead.sla_deadline is None or not self.answering or not self.event.type.startswith("crm."):
            return
        rule = self.plan.handoff_for(self.lead.sla_stage or "")
        if rule is not None and rule.answered_by and not any(_matches(on, self.event) for on in rule.answered_by):
            return
        self.act("sla_met", stage=self.lead.sla_stage, owner=self.lead.owner, by=self.event.type,
                 deadline=iso(self.lead.sla_deadline), **({"escalated": True} if self.lead.sla_escalated else {}))
        self.lead.sla_deadline = None
        self.lead.sla_escalated = False
        self.used = True

    def unused_crm(self) -> None:
        """A CRM event that moved, scored, answered, started and ended nothing gets a
        line saying so, and why: no transition from the lead's stage takes it, or the one
        that does needs a condition that does not hold."""
        e = self.event
        if self.used or not e.type.startswith("crm."):
            return
        stage = self.stage_at_event
        waiting = [t for t in self.plan.transitions if stage in t.sources and t.on is not None and _matches(t.on, e)]
        when = waiting[0].when if waiting else None
        if when is not None:
            t = waiting[0]
            why = f"the transition {stage} → {t.to} on {t.on} needs {when.source}, which does not hold"
        elif _mentioned(self.plan, e):
            why = f"no transition from {stage} on {e.type}"
        else:
            why = f"this funnel has no transition, entry or sequence on {e.type}"
        rule = self.plan.handoff_for(self.lead.sla_stage or "") if self.lead.sla_deadline is not None else None
        if rule is not None and rule.answered_by:
            why += f"; the SLA for {rule.stage} is answered by {', '.join(rule.answered_by)} only"
        self.ignore(f"{e.type} ignored: {why}")

    # -- 5. sequences ---------------------------------------------------------------
    def suppressed(self, seq: p.Sequence) -> bool:
        stage = self.plan.stage(self.lead.stage)
        return stage is not None and (seq.kind in stage.suppress or seq.name in stage.suppress)

    def exit_reason(self, seq: p.Sequence, by_event: bool = True) -> Optional[str]:
        if self.lead.unsubscribed or self.lead.bounced:
            return self.no_email_reason()
        if self.suppressed(seq):
            return f"suppressed in {self.lead.stage}"
        if seq.segment is not None and self.var("segment") != seq.segment:
            return f"segment is now {self.var('segment') or 'none'}"
        if seq.persona is not None and self.var("persona") != seq.persona:
            return f"persona is now {self.var('persona') or 'none'}"
        x = seq.exit
        if x is not None:
            if x.stage_at_least and self.plan.stage_index(self.lead.stage) >= self.plan.stage_index(x.stage_at_least) >= 0:
                return f"reached {self.lead.stage}"
            if by_event and any(_matches(on, self.event) for on in x.on):
                return f"{self.event.type} happened"
            if x.when is not None and ev.holds(x.when.tree, self.resolve):
                return f"exit condition holds: {x.when.source}"
        return None

    def exits(self, by_event: bool = True) -> None:
        keep = []
        for run in self.lead.running:
            seq = self.plan.sequence(run.sequence)
            reason = "removed from the plan" if seq is None else self.exit_reason(seq, by_event)
            if reason is None:
                keep.append(run)
                continue
            if by_event and seq is not None and seq.exit is not None and \
                    any(_matches(on, self.event) for on in seq.exit.on):
                self.used = True  # the event ended it
            unsent = _unsent(seq, run.index) if seq is not None else []
            if unsent and (self.lead.unsubscribed or self.lead.bounced):
                more = f" and {len(unsent) - 1} later" if len(unsent) > 1 else ""
                reason = f"{reason}; not sent: {unsent[0]}{more}"
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
                if seq.on is not None:  # the event started it
                    self.used = True

    def settle(self) -> None:
        self.exits()
        self.enrol()
        self.run_due()

    def run_due(self) -> None:
        order = self.plan.sequence_rank
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
        skip = self.skip_reason(step) if step.action in ("send", "notify", "exit") else None
        if skip is not None:
            self.act("skipped", at=at, sequence=seq.name, step=step.id, action=step.action, template=step.template,
                     kind=seq.kind, reason=skip)
        elif step.action == "send":
            holds: List[Tuple[str, str]] = []
            moment = self.send_time(run.due, step, seq, holds)
            if moment > run.due:  # held back by quiet hours, `at` or the cap: wait in place
                self.replace_run(run, replace(run, due=moment))
                reasons = list(dict.fromkeys(reason for _, reason in holds))
                self.act("deferred", at=at, sequence=seq.name, step=step.id, template=step.template, kind=seq.kind,
                         rules=tuple(dict.fromkeys(rule for rule, _ in holds)), **{"from": iso(run.due)},
                         to=iso(moment), reason="; then ".join(reasons))
                return
            self.send(seq, step, moment)
            at = moment
        elif step.action == "notify" and step.notify_to == "owner" and self.lead.owner is None:
            self.act("skipped", at=at, sequence=seq.name, step=step.id, action=step.action, template=None,
                     kind=seq.kind, to="owner", reason="the lead has no owner (no handoff yet)")
        elif step.action == "notify":
            self.act("notify", at=at, to=self.lead.owner if step.notify_to == "owner" else step.notify_to,
                     message=step.message, sequence=seq.name, step=step.id)
        elif step.action == "exit":
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

    def skip_reason(self, step: p.Step) -> Optional[str]:
        """Why a step does not run now (its `when` is false or its `unless` true), or None."""
        if step.when is not None and not ev.holds(step.when.tree, self.resolve):
            return f"when {step.when.source} does not hold"
        if step.unless is not None and ev.holds(step.unless.tree, self.resolve):
            return f"unless {step.unless.source} holds"
        return None

    def send_time(self, due: int, step: p.Step, seq: p.Sequence, holds: Optional[List[Tuple[str, str]]] = None) -> int:
        """Earliest moment at or after `due` that respects `at`, quiet hours and the cap.
        Each rule that pushes the moment later adds (rule, reason in words) to `holds`."""
        pol = self.plan.policies
        tz = self.lead.profile.get(pol.timezone_attribute) or pol.default_timezone
        moment = due
        for _ in range(8):  # each rule can only push later; settles in a few rounds
            before = moment
            if step.at_minute is not None:
                moved = clock.next_local(moment, step.at_minute, tz)
                if moved != moment and holds is not None:
                    holds.append(("at", f"the step sends at {format_clock(step.at_minute)} {_zone_label(tz)}"))
                moment = moved
            if pol.quiet_from is not None and pol.quiet_to is not None:
                moved = clock.after_quiet(moment, pol.quiet_from, pol.quiet_to, tz)
                if moved != moment and holds is not None:
                    holds.append(("quiet_hours", f"quiet hours {format_clock(pol.quiet_from)}–"
                                                 f"{format_clock(pol.quiet_to)} {_zone_label(tz)}"))
                moment = moved
            if pol.cap_max is not None and pol.cap_per_minutes and (not pol.cap_applies_to
                                                                    or seq.kind in pol.cap_applies_to):
                window = [t for t in self.lead.sends if moment - pol.cap_per_minutes < t <= moment]
                if len(window) >= pol.cap_max:
                    moment = window[len(window) - pol.cap_max] + pol.cap_per_minutes
                    if holds is not None:
                        holds.append(("frequency_cap", f"frequency cap {pol.cap_max} per "
                                                       f"{_duration(pol.cap_per_minutes)}: {len(window)} "
                                                       f"{'email' if len(window) == 1 else 'emails'} since "
                                                       f"{iso(window[0])}"))
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

    # -- the new lead ----------------------------------------------------------------
    def enter(self, held: Tuple[Event, ...]) -> None:
        """A lead just created: consent, fit points, CRM, a handoff if its first stage
        has one; then the activity held from before it, in order, and last the event
        that created it (its profile is the newest)."""
        s = self.lead.s
        creating = self.creating = self.event
        times: Dict[str, Any] = {"opted_in_at": iso(s.opted_in_at), "confirmed_at": iso(s.consent_at)} \
            if s.opted_in_at is not None else {}
        self.act("consent_recorded", magnet=s.source, consent=s.consent, basis=s.basis, **times)
        self.add_points(sum(fp.points for fp in self.plan.scoring.fit if ev.holds(fp.when.tree, self.resolve)))
        rule = self.plan.handoff_for(s.stage)
        self.act("crm_update", stage=(rule.crm_stage if rule and rule.crm_stage else s.stage))
        if rule is not None:
            self.handoff(rule)
        # Nothing from before the lead existed, nor the event that created it, answers
        # the SLA of a handoff made at entry.
        self.answering = False
        for old in held:
            self.event = old
            if old.at < self.now - HELD_FOR_MINUTES:
                self.ignore(f"{old.summary()} from {iso(old.at)} ignored: more than 30 days before the lead "
                            "entered the funnel")
                continue
            if old.type == "profile.updated":
                problem = validate_profile(self.plan, {**self.lead.profile, **dict(old.profile)})
                if problem:
                    self.ignore(f"profile.updated from {iso(old.at)} ignored: {problem}")
                    continue
            self.act("applied", event=old.type, reason=f"{old.summary()} from {iso(old.at)}, held until the "
                                                       "lead entered the funnel")
            self.handle(replace(old, at=self.now))
            self.exits()  # sequences and exits `on:` this event see it, as they would live
            self.enrol()
            self.unused_crm()
        self.update_profile(creating.profile)  # the newest profile wins over held updates
        self.handle(creating)
        self.answering = True


_DETAILS: Dict[int, Tuple[p.Plan, FrozenSet[str]]] = {}  # by id(plan); holding the plan keeps its id unique


def groups(plan: p.Plan, state: LeadState, at: Optional[int] = None) -> Tuple[Optional[str], Optional[str]]:
    """The segment and persona a lead is in (at minute `at`, its last step by default), by
    the same evaluation the engine's conditions use."""
    step = _Step(plan, _Lead(state), Event(CLOCK, state.last_at if at is None else at, state.lead), Shared())
    return step.group(plan.segments), step.group(plan.personas)


def known_details(plan: p.Plan) -> FrozenSet[str]:
    """Every page, template, lead magnet or entry name the plan can ask about: the only
    event details worth keeping as facts (a lead visiting 20,000 distinct pages must not
    grow its state by 20,000 entries)."""
    cached = _DETAILS.get(id(plan))
    if cached is not None and cached[0] is plan:
        return cached[1]
    names = {t.name for t in plan.templates} | {m.name for m in plan.lead_magnets} | {e.name for e in plan.entries}
    names |= {e.detail for e in plan.scoring.events if e.detail}
    conds = [plan.fit] + [g.when for g in plan.segments + plan.personas] + [t.when for t in plan.transitions]
    conds += [f.when for f in plan.scoring.fit]
    for seq in plan.sequences:
        conds += [seq.when, seq.exit.when if seq.exit else None]
        conds += [c for step in seq.steps for c in (step.when, step.unless)]
    for cond in conds:
        stack = [cond.tree] if cond is not None else []
        while stack:
            node = stack.pop()
            if "call" in node:
                names.update(a["lit"] for a in node["args"] if isinstance(a.get("lit"), str))
            stack.extend(node.get("args", []))
            stack.extend(node.get("list", []))
            stack.extend(node.get("kwargs", {}).values())
    if len(_DETAILS) > 64:
        _DETAILS.clear()
    _DETAILS[id(plan)] = (plan, frozenset(names))
    return _DETAILS[id(plan)][1]


def _duration(minutes: int) -> str:
    """A policy's period as the definition writes it: `7d`, `24h`, `90m`."""
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def _zone_label(tz: str) -> str:
    """A lead's timezone as the rules used it: a name that is no timezone counts as UTC."""
    if clock.zone(str(tz)) is timezone.utc and tz not in ("UTC", "Etc/UTC"):
        return f"UTC ({tz} is not a timezone)"
    return str(tz)


def _unsent(seq: p.Sequence, index: int) -> List[str]:
    return [s.template for s in seq.steps[index:] if s.action == "send" and s.template]


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


def _mentioned(plan: p.Plan, event: Event) -> bool:
    """Whether any transition, entry, sequence (entry or exit `on:`), SLA answer or
    scoring entry of the plan names this event."""
    ons = [t.on for t in plan.transitions if t.on is not None]
    ons += [x.on for x in plan.entries]
    for seq in plan.sequences:
        ons += [seq.on] if seq.on is not None else []
        ons += list(seq.exit.on) if seq.exit is not None else []
    for rule in plan.handoff:
        ons += list(rule.answered_by)
    ons += [pt.event for pt in plan.scoring.events]
    return any(_matches(on, event) for on in ons)


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


def creates_lead(plan: p.Plan, event: Event) -> bool:
    """Whether this event creates a lead fnl does not know yet: an opt-in, or the event
    of an entry (a CRM event or an import)."""
    return event.type == "optin" or (event.type.startswith("crm.") or event.type == "lead.imported") and \
        plan.entry_for(event.type, event.entry) is not None


def new_lead(plan: p.Plan, event: Event) -> Tuple[Optional[LeadState], Optional[str]]:
    """The state of a lead created by an opt-in or an entry, or why it is rejected."""
    if event.type == "optin":
        magnet = plan.magnet(event.magnet or "")
        if magnet is None:
            known = ", ".join(m.name for m in plan.lead_magnets) or "none defined"
            return None, f"opt-in names unknown lead magnet `{event.magnet}` (known: {known})"
        stage, consent, source, basis = magnet.enters, magnet.consent, magnet.name, "consent"
    else:
        entry = plan.entry_for(event.type, event.entry)
        if entry is None:
            return None, f"no entry of this funnel takes `{event.type}`"
        stage, consent, source, basis = entry.enters, entry.consent or entry.basis, entry.name, entry.basis
    profile = dict(event.profile)
    problem = validate_profile(plan, profile)
    if problem:
        return None, problem
    state = LeadState(lead=event.lead, profile=tuple(sorted(profile.items())), stage=stage,
                      entered=((stage, event.at),), score=0.0, score_at=event.at,
                      consent=consent, consent_at=event.at, source=source, basis=basis, last_at=event.at)
    return state, None


def handoff_pool(rule: p.Handoff, profile: Mapping[str, Any]) -> Tuple[str, Tuple[str, ...]]:
    """The reps a handoff picks its owner from, and the key of their round-robin turn in
    `Shared`: the rule's reps, or the territory's that the lead's profile routes it to.
    Every handoff with one key takes the next turn, in (minute, lead) order."""
    a = rule.assign
    if a.kind == "territory":
        value = str(profile.get(a.by or "", ""))
        routes = dict(a.routes)
        return f"{rule.stage}:{value if value in routes else '*'}", routes.get(value, a.default)
    return f"{rule.stage}", a.reps


def _reject(state: State, event: Event, shared: Shared, reason: str) -> Result:
    return Result(state, (Action("rejected", event.at, event.lead, (("reason", reason),)),), shared)


def _before_entry(plan: p.Plan, state: Optional[Prospect], event: Event, shared: Shared) -> Result:
    """An event for someone who is not a lead yet: held until they enter, or ignored."""
    if event.type == CLOCK:
        return Result(state, (), shared)
    if event.type == "lead.imported":
        names = ", ".join(e.name for e in plan.entries if e.on == "lead.imported") or "none"
        return _reject(state, event, shared, f"import names no entry of this funnel (`entry`: {names})")
    if event.type.startswith("email."):
        note = (f"{event.summary()} ignored: {event.lead} has not entered the funnel, so no email was sent to it")
        return Result(state, (Action("ignored", event.at, event.lead, (("event", event.type), ("reason", note))),),
                      shared)
    # Activity more than 30 days older than this event can never apply; past that, the
    # most recent MAX_HELD events are kept.
    held = tuple(e for e in (state.held if state is not None else ()) if e.at >= event.at - HELD_FOR_MINUTES)
    actions = []
    if len(held) >= MAX_HELD:
        oldest, held = held[0], held[len(held) - MAX_HELD + 1:]
        note = (f"{oldest.summary()} from {iso(oldest.at)} dropped: only the latest {MAX_HELD} events are held for "
                "a lead that has not opted in")
        actions.append(Action("ignored", event.at, event.lead, (("event", oldest.type), ("reason", note))))
    prospect = replace(state, held=held + (event,), last_at=event.at) if state is not None \
        else Prospect(event.lead, held + (event,), event.at)
    until = f"confirms its opt-in to {state.pending.magnet}" if state is not None and state.pending is not None \
        else "opts in"
    note = f"{event.summary()} held until {event.lead} {until} (applied then, in order)"
    actions.append(Action("held", event.at, event.lead, (("event", event.type), ("reason", note))))
    return Result(prospect, tuple(actions), shared)


def confirm_templates(plan: p.Plan) -> FrozenSet[str]:
    """The templates of the lead magnets' double opt-in confirmation emails."""
    return frozenset(m.double_opt_in.confirm for m in plan.lead_magnets if m.double_opt_in is not None)


def _expire(state: Prospect) -> Tuple[Prospect, Action]:
    """An opt-in left unconfirmed to the end of its window: it ends, no email goes out."""
    pending = state.pending
    assert pending is not None
    note = (f"opt-in to {pending.magnet} from {iso(pending.at)} expired unconfirmed at {iso(pending.expires)} "
            f"(double opt-in within {_duration(pending.expires - pending.at)}); a new opt-in starts over")
    return replace(state, pending=None), Action("optin_expired", pending.expires, state.lead, (
        ("magnet", pending.magnet), ("opted_in_at", iso(pending.at)), ("reason", note)))


def _order(state: Optional[Prospect], event: Event, shared: Shared) -> Optional[Result]:
    if state is not None and event.at < state.last_at:
        return _reject(state, event, shared, f"event at {iso(event.at)} is older than the lead's last event "
                                             f"({iso(state.last_at)}); send events in time order")
    return None


def _no_email(state: Prospect) -> Optional[str]:
    """Why no email may go to someone who is not a lead yet, or None."""
    if state.unsubscribed_at is not None:
        return f"unsubscribed at {iso(state.unsubscribed_at)}"
    return "the address is suppressed" if state.bounced else None


def _ask_to_confirm(plan: p.Plan, state: Optional[Prospect], event: Event, shared: Shared, magnet: p.Magnet) -> Result:
    """An opt-in through a magnet with double opt-in: it waits, and the confirmation
    email goes out (at most once per RECONFIRM_AFTER_MINUTES for the same magnet)."""
    doi = magnet.double_opt_in
    assert doi is not None
    late = _order(state, event, shared)
    if late is not None:
        return late
    prospect = state if state is not None else Prospect(event.lead)
    pending = prospect.pending
    profile = {**(dict(pending.profile) if pending is not None else {}), **dict(event.profile)}
    problem = validate_profile(plan, profile)
    if problem:
        return _reject(state, event, shared, problem)
    now, lead = event.at, event.lead
    prospect = replace(prospect, last_at=max(prospect.last_at, now))
    refused = _no_email(prospect)
    if refused is not None:
        note = f"{refused}: no confirmation email, so the opt-in to {magnet.name} cannot be confirmed"
        return Result(prospect, (Action("not_sent", now, lead, (("reason", note), ("template", doi.confirm))),),
                      shared)
    sent = pending.confirm_sent_at if pending is not None and pending.magnet == magnet.name else None
    if pending is not None and sent is not None and now - sent < RECONFIRM_AFTER_MINUTES:
        # The form sent twice, or by someone else typing this address: an address that has
        # not confirmed anything must not get a confirmation per submission. The first
        # email's link still confirms, until the same end of the window.
        note = (f"opt-in to {magnet.name} repeated: a confirmation went out at {iso(sent)}, and another goes out "
                f"at most once per {RECONFIRM_AFTER_MINUTES // 60}h; its link confirms until "
                f"{iso(pending.expires)}")
        kept = replace(pending, profile=tuple(sorted(profile.items())))
        return Result(replace(prospect, pending=kept),
                      (Action("not_sent", now, lead, (("reason", note), ("template", doi.confirm))),), shared)
    expires = now + doi.within_minutes
    replaced = f"; it replaces the opt-in to {pending.magnet} from {iso(pending.at)}" \
        if pending is not None and pending.magnet != magnet.name else ""
    note = (f"opt-in to {magnet.name} waits for confirmation until {iso(expires)} (double opt-in): {lead} enters "
            f"the funnel when it confirms{replaced}")
    waiting = Pending(magnet.name, magnet.consent, now, expires, tuple(sorted(profile.items())), now)
    return Result(replace(prospect, pending=waiting), (
        Action("optin_pending", now, lead, (("magnet", magnet.name), ("reason", note), ("until", iso(expires)))),
        Action("send_email", now, lead, (("kind", "confirmation"), ("magnet", magnet.name), ("sequence", None),
                                         ("step", None), ("template", doi.confirm), ("variant", None)))), shared)


def _confirmation_feedback(state: Prospect, event: Event, shared: Shared) -> Result:
    """What the sending service says about a confirmation email sent to someone who is
    not a lead yet. An unsubscribe, a complaint and a hard bounce are honoured at once and
    for good (they cancel a waiting opt-in, and hold once the address enters the
    funnel); engagement is not counted: the lead is not in the funnel."""
    now, lead, pending = event.at, event.lead, state.pending
    new = replace(state, last_at=max(state.last_at, now))
    actions: List[Action] = []
    what = f"the confirmation email {event.template}" if event.template else "the confirmation email"

    def note(kind: str, reason: str, **more: Any) -> None:
        actions.append(Action(kind, now, lead, tuple(sorted({**more, "reason": reason}.items()))))

    if event.type in ("email.unsubscribed", "email.complained") or \
            (event.type == "email.bounced" and event.bounce != "soft"):
        if event.type == "email.bounced":
            new = replace(new, bounced=True)
            note("suppressed", f"hard bounce of {what}: the address is suppressed")
        else:
            if new.unsubscribed_at is None:
                new = replace(new, unsubscribed_at=now)
            note("recorded", f"unsubscribe from {what}: no email of any kind goes to {lead}, also if it enters the "
                             "funnel later", event=event.type)
            if event.type == "email.complained" and not new.bounced:
                new = replace(new, bounced=True)
                note("suppressed", "spam complaint: no email of any kind from now on")
        if pending is not None:
            new = replace(new, pending=None)
            note("optin_cancelled", f"the opt-in to {pending.magnet} from {iso(pending.at)} is cancelled: "
                                    f"{_no_email(new)}", magnet=pending.magnet)
        return Result(new, tuple(actions), shared)
    label = _LABEL.get(event.type, event.type.split(".", 1)[1].replace("_", " "))
    note("ignored", f"{label} of {what} ignored: a confirmation email is transactional and {lead} has not entered "
                    "the funnel (it enters on optin.confirmed)", event=event.type)
    return Result(new, tuple(actions), shared)


def _double_opt_in(plan: p.Plan, state: Optional[Prospect], event: Event,
                   shared: Shared) -> Union[Result, Pending, None]:
    """Double opt-in for someone who is not a lead yet: the Result of an opt-in that
    waits, of a confirmation that cannot count, or of what the sending service says about
    a confirmation email; the Pending opt-in a confirmation confirms (`step` then creates
    the lead from it); None when the event is not about double opt-in."""
    pending = state.pending if state is not None else None
    if event.type == "optin":
        magnet = plan.magnet(event.magnet or "")
        if magnet is None or magnet.double_opt_in is None:
            return None  # a single opt-in (or an unknown magnet, which `new_lead` rejects)
        return _ask_to_confirm(plan, state, event, shared, magnet)
    if event.type == OPTIN_CONFIRMED:
        late = _order(state, event, shared)
        if late is not None:
            return late
        why = None
        if pending is None:
            why = "no opt-in waits for confirmation (none was made, or it expired: a new opt-in starts over)"
        elif event.magnet and event.magnet != pending.magnet:
            why = f"it confirms {event.magnet}, but the opt-in waiting is to {pending.magnet} (the latest)"
        if why is not None:
            kept = replace(state, last_at=max(state.last_at, event.at)) if state is not None else None
            return Result(kept, (Action("ignored", event.at, event.lead, (
                ("event", event.type), ("reason", f"optin.confirmed ignored: {why}"))),), shared)
        assert pending is not None
        problem = validate_profile(plan, {**dict(pending.profile), **dict(event.profile)})
        if problem:
            return _reject(state, event, shared, problem)
        return pending
    if state is not None and event.type.startswith("email.") and \
            (event.template in confirm_templates(plan) or (pending is not None and not event.template)):
        return _confirmation_feedback(state, event, shared)
    return None


def step(plan: p.Plan, state: State, event: Event, shared: Shared = Shared()) -> Result:
    """Apply one event to one lead. Pure: the inputs are not changed."""
    if isinstance(state, Prospect) and state.pending is not None and state.pending.expires <= event.at \
            and event.at >= state.last_at:
        state, expired = _expire(state)
        result = _step(plan, state, event, shared)
        return Result(result.state, (expired,) + result.actions, result.shared)
    return _step(plan, state, event, shared)


def _step(plan: p.Plan, state: State, event: Event, shared: Shared) -> Result:
    held: Tuple[Event, ...] = ()
    created = False
    dropped: Optional[Pending] = None  # an opt-in still waiting when the lead entered another way
    if state is None or isinstance(state, Prospect):
        early = _double_opt_in(plan, state, event, shared)
        if isinstance(early, Result):
            return early
        confirmed = early
        if confirmed is not None:  # the lead enters as the opt-in it confirms would, now
            event = Event("optin", event.at, event.lead, confirmed.magnet, {**dict(confirmed.profile),
                                                                             **dict(event.profile)},
                          second=event.second, line=event.line)
        elif not creates_lead(plan, event):
            return _before_entry(plan, state, event, shared)
        late = _order(state, event, shared)
        if late is not None:
            return late
        held = state.held if state is not None else ()
        lead, problem = new_lead(plan, event)
        if lead is None:
            return _reject(state, event, shared, problem or "rejected")
        if confirmed is not None:
            lead = replace(lead, consent=confirmed.consent, opted_in_at=confirmed.at)
        if state is not None and (state.unsubscribed_at is not None or state.bounced):
            # An unsubscribe or suppression from a confirmation email holds for good.
            lead = replace(lead, unsubscribed=state.unsubscribed_at is not None,
                           unsubscribed_at=state.unsubscribed_at, bounced=state.bounced)
        dropped = state.pending if state is not None and confirmed is None else None
        state, created = lead, True
    if event.at < state.last_at:
        return _reject(state, event, shared, f"event at {iso(event.at)} is older than the lead's last event "
                                             f"({iso(state.last_at)}); send events in time order")
    if not created and event.profile and event.type in ("profile.updated", "optin", "lead.imported"):
        problem = validate_profile(plan, {**dict(state.profile), **dict(event.profile)})
        if problem:
            return _reject(state, event, shared, problem)
    work = _Step(plan, _Lead(state), event, shared)
    if created and dropped is not None:
        work.act("optin_cancelled", magnet=dropped.magnet,
                 reason=f"the opt-in to {dropped.magnet} from {iso(dropped.at)} no longer waits for confirmation: "
                        f"{event.lead} entered through {state.source}")
    if created:
        work.enter(held)
    else:
        work.catch_up()
        work.handle(event)
    work.settle()
    if not created:
        work.unused_crm()
    return Result(work.lead.freeze(work.now, plan.policies.cap_per_minutes), tuple(work.actions), work.shared)
