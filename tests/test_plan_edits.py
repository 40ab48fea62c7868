"""`fnl plan` on real edits: for every kind of key in the definition language, one edit to
a real definition, and the exact line a reviewer reads, with the place it points at.

Each row of the table writes a definition to a temporary folder twice, as `funnels/old.yaml`
and `funnels/new.yaml` (or as folders, for a definition split across files), makes one edit
to the new copy, compares the two the way `fnl plan OLD NEW` does, and checks the change
lines of the text output exactly: sign, words, and the file and line the change is at. The
line is found by searching the edited file for a piece of it, so a change that points at the
wrong line fails. What was removed points at the old file. The JSON and markdown outputs of
the same comparison must carry the same changes at the same places.

The kitchen-sink definition below uses every key of `schemas/funnel.schema.json`; a few rows
edit the bundled examples instead (`funnels/reference.yaml` for a decay factor,
`funnels/acme/` for a split definition and a long list of reps).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from click.testing import CliRunner

from conftest import REPO, run_fnl

from engine import diff as d
from engine.planning import plans_between

SINK = """\
fnl: 1
funnel: sink
description: Every key of the definition language, for the table of edits fnl plan is tested with.
templates: ../templates/sink

sender:
  from: "Sink Co <hello@sink.example>"
  reply_to: team@sink.example
  postal_address: "Sink Co, 1 Main Street, Springfield, IL 62701, USA"
  timezone: America/New_York
  unsubscribe_url: https://sink.example/unsubscribe

profile:
  first_name: {type: string, required: true, description: From the form.}
  company: {type: string}
  industry:
    enum: [saas, finance]
    required: true
  employees: {type: integer, minimum: 1, maximum: 100000, examples: [120]}
  role: {enum: [vp, manager]}
  region: {enum: [na, emea]}
  timezone: {type: string, format: timezone}
  tz: {type: string, format: timezone}

personas:
  executive: {when: "role == 'vp'", description: Signs.}
  manager: {when: "role == 'manager'"}

segments:
  saas: {when: "industry == 'saas'"}
  finance: {when: "industry == 'finance'", description: Banks.}

fit:
  when: "employees >= 50"
  description: Fifty people or more.

stages: [subscriber, mql, sql, customer, lost]
terminal_stages: [customer, lost]

entries:
  imported:
    on: lead.imported
    enters: subscriber
    basis: consent
    consent: "I agree to receive email from Sink Co."
    description: Leads from the events team.
  won:
    on: crm.deal_won
    enters: customer
    basis: contract

crm:
  events: [renewal_due, usage_milestone]

lead_magnets:
  guide:
    kind: ebook
    title: "The guide"
    consent: >-
      I agree to receive email from Sink Co about the guide, our events and our products.
      I can unsubscribe at any time with one click.
    enters: subscriber
    score: 10
    delivers: magnets/guide
    segment: saas

scoring:
  events:
    email.opened: 3
    email.clicked: 8
    email.replied: 25
    site.visited.pricing: 20
  fit:
    - {when: "employees >= 200", points: 15, description: Mid-market.}
    - {when: "persona == 'executive'", points: 10}
  decay: {half_life: 30d, window: 90d}
  thresholds: {mql: 40, sql: 90}
  count_repeats: false

transitions:
  - {from: subscriber, to: mql, when: "fit and score >= thresholds.mql", description: Qualified.}
  - {from: mql, to: sql, when: "replied or visited('pricing', since='mql') or score >= thresholds.sql"}
  - {from: [subscriber, mql, sql], to: lost, on: crm.deal_lost}
  - {from: sql, to: customer, on: crm.deal_won}

sequences:
  nurture-saas:
    kind: nurture
    description: Education for software companies.
    stage: [subscriber, mql]
    segment: saas
    priority: 50
    steps:
      - {send: nurture/welcome}
      - {wait: 3d, send: nurture/case-study, variants: {a: 50, b: 50}}
      - {wait: 4d, send: nurture/webinar, unless: "clicked('nurture/case-study')"}
      - {wait: 8d, send: nurture/expert, id: expert-call, when: "clicked('nurture/case-study')", at: "10:00"}
    exit: {stage_at_least: sql}

  executive-brief:
    kind: broadcast
    stage: [subscriber, mql]
    persona: executive
    priority: 10
    steps:
      - {wait: 14d, send: nurture/brief}
    exit: {when: "replied"}

  deal:
    kind: sales
    on: crm.demo_booked
    steps:
      - {send: sales/recap}
      - wait: 3d
        when: "not replied"
        notify:
          to: owner
          message: >-
            Three days since the demo and no reply yet. Call the champion, or mark the lead
            lost in the CRM.
      - {wait: 4d, exit: true}
    exit: {on: [crm.deal_won, crm.deal_lost]}

  onboarding:
    kind: onboarding
    stage: customer
    when: "employees >= 10"
    steps:
      - {send: customers/welcome}

  retention:
    kind: retention
    stage: customer
    on: crm.renewal_due
    steps:
      - {send: customers/renewal}

  expansion:
    kind: expansion
    stage: customer
    on: crm.usage_milestone
    steps:
      - {send: customers/more-seats}

handoff:
  sql:
    description: SDRs call within four working hours.
    assign:
      round_robin: [ana@sink.example, ben@sink.example]
    sla: 4h
    sla_clock: business
    answered_by: [crm.demo_booked]
    notify: [crm, owner]
    suppress: [nurture, broadcast]
    crm_stage: Sales Qualified Lead
  customer:
    assign:
      territory:
        by: region
        routes:
          na: [cy@sink.example]
          emea: [di@sink.example]
        default: [cy@sink.example]
    sla: 2d
    notify: [crm]
    suppress: [nurture, broadcast, sales]
  lost:
    assign: {owner: ops@sink.example}

policies:
  frequency_cap: {max: 3, per: 7d, applies_to: [nurture, broadcast]}
  quiet_hours: {from: "20:00", to: "08:00"}
  business_hours: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}
  timezone_attribute: timezone
  soft_bounce_limit: 3

expect:
  - sql_rate >= 0.01
"""

SINK_TEMPLATES = ("magnets/guide", "nurture/welcome", "nurture/case-study", "nurture/webinar", "nurture/expert",
                  "nurture/brief", "nurture/extra", "sales/recap", "customers/welcome", "customers/renewal",
                  "customers/more-seats")


def sink_template(name: str) -> str:
    return ("{% block subject %}" + name + " for {{ lead.first_name }}{% endblock %}\n"
            "{% block html -%}\n<p>Hi {{ lead.first_name }}, this is " + name + ".</p>\n"
            "<p>{{ sender.postal_address }} <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>\n{%- endblock %}\n"
            "{% block text -%}\nHi {{ lead.first_name }}, this is " + name + ".\n"
            "{{ sender.postal_address }} Unsubscribe: {{ unsubscribe_url }}\n{%- endblock %}\n")


@dataclass(frozen=True)
class Edit:
    """One edit and what `fnl plan` must say about it: each change line without its
    location, and where that location is (`new:TEXT` the line of the new file holding
    TEXT, `old:TEXT` the same in the old file, `file:PATH` line 1 of PATH)."""

    id: str
    old: str
    new: str
    lines: Tuple[Tuple[str, str], ...]
    base: str = "sink"
    file: str = ""  # the file to edit: one of a split definition, or a template
    swap: bool = False  # edit the old copy instead: what the edit removes is what the change adds

    def __str__(self) -> str:
        return self.id


def E(id: str, old: str, new: str, *lines: Tuple[str, str], base: str = "sink", file: str = "",
      swap: bool = False) -> Edit:
    return Edit(id, old, new, tuple(lines), base, file, swap)


def at(text: str) -> str:
    return f"new:{text}"


def was(text: str) -> str:
    return f"old:{text}"


NO_CHANGE: Tuple[Tuple[str, str], ...] = ()

EDITS: List[Edit] = [
    # -- sender ----------------------------------------------------------------------------
    E("sender.from", 'from: "Sink Co <hello@sink.example>"', 'from: "Sink Co Team <hello@sink.example>"',
      ('~ sender from "Sink Co <hello@sink.example>" → "Sink Co Team <hello@sink.example>"',
       at('from: "Sink Co Team'))),
    E("sender.reply_to", "reply_to: team@sink.example", "reply_to: sales@sink.example",
      ("~ sender reply_to team@sink.example → sales@sink.example", at("reply_to:"))),
    E("sender.reply_to removed", "  reply_to: team@sink.example\n", "",
      ("- sender reply_to team@sink.example", was("reply_to:"))),
    E("sender.postal_address", "1 Main Street, Springfield", "2 Main Street, Springfield",
      ('~ sender postal_address "Sink Co, 1 Main Street, Springfield, IL 62701, USA" → '
       '"Sink Co, 2 Main Street, Springfield, IL 62701, USA"', at("postal_address:"))),
    E("sender.timezone", "timezone: America/New_York", "timezone: Europe/Berlin",
      ("~ sender timezone America/New_York → Europe/Berlin", at("timezone: Europe/Berlin"))),
    E("sender.unsubscribe_url", "unsubscribe_url: https://sink.example/unsubscribe",
      "unsubscribe_url: https://sink.example/optout",
      ("~ sender unsubscribe_url https://sink.example/unsubscribe → https://sink.example/optout",
       at("unsubscribe_url:"))),
    E("sender.confirm_url", "unsubscribe_url: https://sink.example/unsubscribe",
      "unsubscribe_url: https://sink.example/unsubscribe\n  confirm_url: https://sink.example/confirm",
      ("+ sender confirm_url https://sink.example/confirm", at("confirm_url:"))),
    # -- profile ---------------------------------------------------------------------------
    E("profile.type", "employees: {type: integer,", "employees: {type: number,",
      ("~ profile employees: type integer → number", at("employees: {type: number"))),
    E("profile.enum", "enum: [saas, finance]", "enum: [saas, finance, retail]",
      ("~ profile industry: enum [saas, finance] → [saas, finance, retail]", at("enum: [saas, finance, retail]"))),
    E("profile.minimum", "minimum: 1, maximum: 100000", "minimum: 5, maximum: 100000",
      ("~ profile employees: minimum 1 → 5", at("minimum: 5"))),
    E("profile.maximum", "minimum: 1, maximum: 100000", "minimum: 1, maximum: 50000",
      ("~ profile employees: maximum 100000 → 50000", at("maximum: 50000"))),
    E("profile.required", "role: {enum: [vp, manager]}", "role: {enum: [vp, manager], required: true}",
      ("~ profile role: required false → true", at("role: {enum"))),
    E("profile added", "  company: {type: string}\n",
      "  company: {type: string}\n  seats: {type: integer, minimum: 1}\n",
      ("+ profile seats: integer, minimum 1", at("seats:"))),
    E("profile removed", "  company: {type: string}\n", "", ("- profile company: string", was("company:"))),
    E("profile.format", "  tz: {type: string, format: timezone}", "  tz: {type: string}", *NO_CHANGE),
    E("profile.description", "description: From the form.", "description: From the sign-up form.", *NO_CHANGE),
    E("profile.examples", "examples: [120]", "examples: [120, 400]", *NO_CHANGE),
    # -- personas, segments, fit -------------------------------------------------------------
    E("personas.when", "executive: {when: \"role == 'vp'\"", "executive: {when: \"role in ['vp', 'manager']\"",
      ("~ persona executive: when \"role == 'vp'\" → \"role in ['vp', 'manager']\"", at("executive:"))),
    E("personas added", "  manager: {when: \"role == 'manager'\"}\n",
      "  manager: {when: \"role == 'manager'\"}\n  champion: {when: \"role == 'manager' and employees >= 100\"}\n",
      ("+ persona champion: when \"role == 'manager' and employees >= 100\"", at("champion:"))),
    E("personas removed", "  manager: {when: \"role == 'manager'\"}\n", "",
      ("- persona manager: when \"role == 'manager'\"", was("manager: {when"))),
    E("personas.description", "description: Signs.", "description: Signs the contract.", *NO_CHANGE),
    E("segments.when", "finance: {when: \"industry == 'finance'\"", "finance: {when: \"industry in ['finance']\"",
      ("~ segment finance: when \"industry == 'finance'\" → \"industry in ['finance']\"", at("finance: {when"))),
    E("segments added", "  saas: {when: \"industry == 'saas'\"}\n",
      "  saas: {when: \"industry == 'saas'\"}\n  big: {when: \"employees >= 1000\"}\n",
      ("+ segment big: when \"employees >= 1000\"", at("big:"))),
    E("segments.description", "description: Banks.", "description: Banks and insurers.", *NO_CHANGE),
    E("fit.when", 'when: "employees >= 50"', 'when: "employees >= 100"',
      ('~ fit when "employees >= 50" → "employees >= 100"', at('when: "employees >= 100"'))),
    E("fit.description", "description: Fifty people or more.", "description: 50 or more.", *NO_CHANGE),
    # -- stages ----------------------------------------------------------------------------
    E("stages order", "stages: [subscriber, mql, sql, customer, lost]",
      "stages: [subscriber, mql, sql, lost, customer]",
      ("~ stages in order [subscriber, mql, sql, customer, lost] → [subscriber, mql, sql, lost, customer]",
       at("stages: [subscriber"))),
    # a stage needs a way in: one edit of the lines that say the stages and how leads enter
    E("stages added", "stages: [subscriber, mql, sql, customer, lost]\nterminal_stages: [customer, lost]\n\nentries:\n",
      "stages: [subscriber, mql, sql, customer, lost, partner]\nterminal_stages: [customer, lost, partner]\n\n"
      "entries:\n  referred: {on: lead.imported, enters: partner, basis: contract}\n",
      ("+ stage partner", at("stages: [subscriber")),
      ("~ terminal stages [customer, lost] → [customer, lost, partner]", at("terminal_stages:")),
      ("+ entry referred: on lead.imported, enters partner, basis contract", at("referred:"))),
    # -- lead magnets and entries ------------------------------------------------------------
    E("lead_magnets.kind", "kind: ebook", "kind: whitepaper",
      ("~ lead magnet guide: kind ebook → whitepaper", at("kind: whitepaper"))),
    E("lead_magnets.consent", "our events and", "our webinars and",
      ('~ lead magnet guide: consent "…the guide, our events and our products.…" → '
       '"…the guide, our webinars and our products.…"', at("consent: >-"))),
    E("lead_magnets.enters", "    enters: subscriber\n    score: 10", "    enters: mql\n    score: 10",
      ("~ lead magnet guide: enters subscriber → mql", at("enters: mql"))),
    E("lead_magnets.score", "score: 10", "score: 20", ("~ lead magnet guide: score 10 → 20", at("score: 20"))),
    E("lead_magnets.delivers", "delivers: magnets/guide", "delivers: nurture/extra",
      ("~ lead magnet guide: delivers magnets/guide → nurture/extra", at("delivers:")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2"),
      ("~ template magnets/guide: no longer sent (the file stays)", "file:templates/sink/magnets/guide.j2")),
    E("lead_magnets.double_opt_in", "delivers: magnets/guide\n    segment: saas",
      "delivers: magnets/guide\n    double_opt_in: {confirm: nurture/extra, within: 2d}\n    segment: saas",
      ("+ lead magnet guide: double opt-in confirm nurture/extra within 2d", at("double_opt_in:")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2")),
    E("lead_magnets.title", 'title: "The guide"', 'title: "The whole guide"', *NO_CHANGE),
    E("lead_magnets.segment", "delivers: magnets/guide\n    segment: saas",
      "delivers: magnets/guide\n    segment: finance",
      *NO_CHANGE),
    E("lead_magnets added", "\nscoring:\n",
      "  checklist: {kind: checklist, consent: \"Email me. I can unsubscribe at any time.\", enters: subscriber}\n"
      "\nscoring:\n",
      ("+ lead magnet checklist: checklist, enters subscriber", at("checklist:"))),
    E("entries.basis", '    basis: consent\n    consent: "I agree to receive email from Sink Co."\n',
      "    basis: legitimate_interest\n",
      ("~ entry imported: basis consent → legitimate_interest", at("basis: legitimate_interest")),
      ('- entry imported: consent "I agree to receive email from Sink Co."', was('consent: "I agree'))),
    E("entries.on", "    on: crm.deal_won\n    enters: customer", "    on: crm.renewal_due\n    enters: customer",
      ("~ entry won: on crm.deal_won → crm.renewal_due", at("on: crm.renewal_due\n    enters: customer"))),
    E("entries.enters", "    enters: subscriber\n    basis: consent", "    enters: mql\n    basis: consent",
      ("~ entry imported: enters subscriber → mql", at("enters: mql"))),
    E("entries.consent", 'consent: "I agree to receive email from Sink Co."',
      'consent: "I agree to receive email from Sink Co and its partners."',
      ('~ entry imported: consent "I agree to receive email from Sink Co." → '
       '"I agree to receive email from Sink Co and its partners."', at('consent: "I agree'))),
    E("entries removed", "  won:\n    on: crm.deal_won\n    enters: customer\n    basis: contract\n", "",
      ("- entry won: on crm.deal_won, enters customer, basis contract", was("  won:"))),
    E("entries.description", "description: Leads from the events team.", "description: Event leads.", *NO_CHANGE),
    E("crm.events", "events: [renewal_due, usage_milestone]", "events: [renewal_due, usage_milestone, churn_risk]",
      ("+ crm event churn_risk", at("events: [renewal_due"))),
    # -- scoring ---------------------------------------------------------------------------
    E("scoring.events", "email.opened: 3", "email.opened: 4", ("~ points for email.opened 3 → 4", at("email.opened:"))),
    E("scoring.events added", "    site.visited.pricing: 20\n",
      "    site.visited.pricing: 20\n    site.visited.docs: 5\n",
      ("+ points for site.visited.docs: 5", at("site.visited.docs:"))),
    E("scoring.events removed", "    email.replied: 25\n", "",
      ("- points for email.replied: 25", was("email.replied:"))),
    E("scoring.fit.points", "points: 15", "points: 20",
      ('~ fit points for "employees >= 200" 15 → 20', at("points: 20"))),
    E("scoring.fit.when", '{when: "employees >= 200"', '{when: "employees >= 500"',
      ('+ fit points for "employees >= 500": 15', at("employees >= 500")),
      ('- fit points for "employees >= 200": 15', was("employees >= 200"))),
    E("scoring.fit.description", "description: Mid-market.", "description: Mid-market and up.", *NO_CHANGE),
    E("scoring.decay.half_life", "half_life: 30d", "half_life: 60d",
      ("~ decay half-life 30d → 60d", at("decay:"))),
    E("scoring.decay.window", "window: 90d", "window: 60d", ("~ decay window 90d → 60d", at("decay:"))),
    E("scoring.decay form", "decay: {half_life: 30d, window: 90d}", "decay: {factor: 0.9, every: 7d, window: 90d}",
      ("~ decay half-life 30d → factor 0.9 every 7d", at("decay:"))),
    E("scoring.decay removed", "  decay: {half_life: 30d, window: 90d}\n", "",
      ("- decay: half-life 30d, window 90d", was("decay:"))),
    E("scoring.decay.factor", "decay: {factor: 0.98, every: 1d}", "decay: {factor: 0.95, every: 1d}",
      ("~ decay factor 0.98 → 0.95", at("decay:")), base="reference"),
    E("scoring.decay.every", "decay: {factor: 0.98, every: 1d}", "decay: {factor: 0.98, every: 7d}",
      ("~ decay every 1d → 7d", at("decay:")), base="reference"),
    E("scoring.decay.half_life written differently", "half_life: 30d", "half_life: 720h", *NO_CHANGE),
    E("scoring.thresholds", "thresholds: {mql: 40,", "thresholds: {mql: 50,",
      ("~ MQL threshold 40 → 50", at("thresholds:"))),
    E("scoring.thresholds added", "thresholds: {mql: 40, sql: 90}", "thresholds: {mql: 40, sql: 90, pql: 60}",
      ("+ PQL threshold: 60", at("thresholds:"))),
    E("scoring.count_repeats", "count_repeats: false", "count_repeats: true",
      ("~ scoring count_repeats false → true", at("count_repeats:"))),
    # -- transitions -----------------------------------------------------------------------
    E("transitions.when", 'when: "fit and score >= thresholds.mql"',
      'when: "fit and score >= thresholds.mql and not unsubscribed"',
      ('~ transition subscriber → mql: when "fit and score >= thresholds.mql" → '
       '"fit and score >= thresholds.mql and not unsubscribed"', at("to: mql"))),
    E("transitions.when long", "visited('pricing', since='mql') or score", "visited('demo', since='mql') or score",
      ("~ transition mql → sql: when \"replied or visited('pricing', since='mql') or…\" → "
       "\"replied or visited('demo', since='mql') or…\"", at("to: sql"))),
    E("transitions.on", "{from: sql, to: customer, on: crm.deal_won}", "{from: sql, to: customer, on: crm.demo_booked}",
      ("~ transition sql → customer: on crm.deal_won → crm.demo_booked", at("to: customer"))),
    E("transitions.from", "{from: [subscriber, mql, sql], to: lost", "{from: [mql, sql], to: lost",
      ("+ transition mql, sql → lost: on crm.deal_lost", at("to: lost")),
      ("- transition subscriber, mql, sql → lost: on crm.deal_lost", was("to: lost"))),
    E("transitions removed", "  - {from: sql, to: customer, on: crm.deal_won}\n", "",
      ("- transition sql → customer: on crm.deal_won", was("to: customer"))),
    E("transitions added", "  - {from: sql, to: customer, on: crm.deal_won}\n",
      "  - {from: sql, to: customer, on: crm.deal_won}\n  - {from: mql, to: lost, when: \"score < 0\"}\n",
      ('+ transition mql → lost: when "score < 0"', at('to: lost, when'))),
    E("transitions order",
      "  - {from: [subscriber, mql, sql], to: lost, on: crm.deal_lost}\n"
      "  - {from: sql, to: customer, on: crm.deal_won}\n",
      "  - {from: sql, to: customer, on: crm.deal_won}\n"
      "  - {from: [subscriber, mql, sql], to: lost, on: crm.deal_lost}\n",
      ('~ transitions checked in order ["subscriber → mql", "mql → sql", "subscriber, mql, sql → lost", '
       '"sql → customer"] → ["subscriber → mql", "mql → sql", "sql → customer", "subscriber, mql, sql → lost"]',
       at("transitions:"))),
    E("transitions.description", "description: Qualified.", "description: Marketing qualified.", *NO_CHANGE),
    # -- sequences -------------------------------------------------------------------------
    E("sequences.kind", "kind: broadcast", "kind: nurture",
      ("~ sequence executive-brief: kind broadcast → nurture",
       at("kind: nurture\n    stage: [subscriber, mql]\n    persona"))),
    E("sequences.stage", "    stage: [subscriber, mql]\n    segment: saas",
      "    stage: [subscriber]\n    segment: saas",
      ("~ sequence nurture-saas: stage [subscriber, mql] → [subscriber]", at("stage: [subscriber]\n"))),
    E("sequences.segment", "segment: saas\n    priority", "segment: finance\n    priority",
      ("~ sequence nurture-saas: segment saas → finance", at("segment: finance"))),
    E("sequences.persona", "persona: executive", "persona: manager",
      ("~ sequence executive-brief: persona executive → manager", at("persona: manager"))),
    E("sequences.when", 'when: "employees >= 10"', 'when: "employees >= 20"',
      ('~ sequence onboarding: when "employees >= 10" → "employees >= 20"', at('when: "employees >= 20"'))),
    E("sequences.on", "    on: crm.renewal_due\n    steps", "    on: crm.usage_milestone\n    steps",
      ("~ sequence retention: on crm.renewal_due → crm.usage_milestone",
       at("on: crm.usage_milestone\n    steps:\n      - {send: customers/renewal"))),
    E("sequences.priority", "priority: 50", "priority: 60",
      ("~ sequence nurture-saas: priority 50 → 60", at("priority: 60"))),
    E("sequences.exit.stage_at_least", "exit: {stage_at_least: sql}", "exit: {stage_at_least: customer}",
      ("~ sequence nurture-saas: exit stage_at_least sql → customer", at("stage_at_least:"))),
    E("sequences.exit.when", 'exit: {when: "replied"}', "exit: {when: \"replied or clicked('nurture/brief')\"}",
      ("~ sequence executive-brief: exit when \"replied\" → \"replied or clicked('nurture/brief')\"",
       at("exit: {when"))),
    E("sequences.exit.on", "exit: {on: [crm.deal_won, crm.deal_lost]}", "exit: {on: [crm.deal_won]}",
      ("~ sequence deal: exit on [crm.deal_won, crm.deal_lost] → [crm.deal_won]", at("exit: {on:"))),
    E("sequences.exit removed", "    exit: {when: \"replied\"}\n", "",
      ('- sequence executive-brief: exit when "replied"', was("exit: {when"))),
    E("sequences added", "\nhandoff:\n",
      "  upsell:\n    kind: expansion\n    stage: customer\n    steps:\n      - {wait: 30d, send: nurture/extra}\n"
      "\nhandoff:\n",
      ("+ sequence upsell: expansion, 1 email", at("upsell:")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2")),
    E("sequences removed", "  expansion:\n    kind: expansion\n    stage: customer\n    on: crm.usage_milestone\n"
      "    steps:\n      - {send: customers/more-seats}\n", "",
      ("- sequence expansion: expansion, 1 email", was("  expansion:")),
      ("~ template customers/more-seats: no longer sent (the file stays)",
       "file:templates/sink/customers/more-seats.j2")),
    E("sequences.description", "description: Education for software companies.",
      "description: Education for SaaS.", *NO_CHANGE),
    # -- steps -----------------------------------------------------------------------------
    E("steps.wait", "{wait: 3d, send: nurture/case-study", "{wait: 2d, send: nurture/case-study",
      ("~ step nurture-saas/case-study: wait 3d → 2d", at("send: nurture/case-study"))),
    E("steps.wait written differently", "{wait: 14d, send: nurture/brief}", "{wait: 2w, send: nurture/brief}",
      *NO_CHANGE),
    E("steps.send", "send: nurture/expert, id: expert-call", "send: nurture/extra, id: expert-call",
      ("~ step nurture-saas/expert-call: send nurture/expert → nurture/extra", at("id: expert-call")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2"),
      ("~ template nurture/expert: no longer sent (the file stays)", "file:templates/sink/nurture/expert.j2")),
    E("steps.variants", "variants: {a: 50, b: 50}", "variants: {a: 70, b: 30}",
      ("~ step nurture-saas/case-study: variant a 50 → 70", at("variants:")),
      ("~ step nurture-saas/case-study: variant b 50 → 30", at("variants:"))),
    E("steps.variants added", "- {send: nurture/welcome}", "- {send: nurture/welcome, variants: {a: 50, b: 50}}",
      ("+ step nurture-saas/welcome: variants {a: 50, b: 50}", at("send: nurture/welcome"))),
    E("steps.when", "when: \"clicked('nurture/case-study')\", at", "when: \"opened('nurture/case-study')\", at",
      ("~ step nurture-saas/expert-call: when \"clicked('nurture/case-study')\" → \"opened('nurture/case-study')\"",
       at("id: expert-call"))),
    E("steps.unless", "unless: \"clicked('nurture/case-study')\"", "unless: \"replied\"",
      ("~ step nurture-saas/webinar: unless \"clicked('nurture/case-study')\" → \"replied\"",
       at("send: nurture/webinar"))),
    E("steps.at", 'at: "10:00"', 'at: "09:30"',
      ("~ step nurture-saas/expert-call: at 10:00 → 09:30", at("id: expert-call"))),
    E("steps.at added", "- {send: nurture/welcome}", '- {send: nurture/welcome, at: "09:00"}',
      ("+ step nurture-saas/welcome: at 09:00", at("send: nurture/welcome"))),
    E("steps.notify.to", "          to: owner", "          to: crm",
      ("~ step deal/notify: notify to owner → crm", at("to: crm"))),
    E("steps.notify.message", "no reply yet. Call the champion", "no reply yet. Email the champion",
      ('~ step deal/notify: notify message "…and no reply yet. Call the champion, or…" → '
       '"…and no reply yet. Email the champion, or…"', at("message: >-"))),
    E("steps.exit", "{wait: 4d, exit: true}", "{wait: 5d, exit: true}",
      ("~ step deal/exit: wait 4d → 5d", at("exit: true"))),
    E("steps.action", "{wait: 4d, exit: true}", "{wait: 4d, send: nurture/extra, id: exit}",
      ("~ step deal/exit: exit → send nurture/extra", at("id: exit")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2")),
    E("steps added", "      - {wait: 14d, send: nurture/brief}\n",
      "      - {wait: 14d, send: nurture/brief}\n      - {wait: 7d, send: nurture/extra, unless: \"replied\"}\n",
      ("+ step executive-brief/extra: send nurture/extra after 7d, unless \"replied\"", at("send: nurture/extra")),
      ("+ template nurture/extra", "file:templates/sink/nurture/extra.j2")),
    E("steps removed", "      - {wait: 4d, send: nurture/webinar, unless: \"clicked('nurture/case-study')\"}\n", "",
      ("- step nurture-saas/webinar: send nurture/webinar after 4d, unless \"clicked('nurture/case-study')\"",
       was("send: nurture/webinar")),
      ("~ template nurture/webinar: no longer sent (the file stays)", "file:templates/sink/nurture/webinar.j2")),
    E("steps.id", "- {send: nurture/welcome}", "- {send: nurture/welcome, id: hello}",
      ("+ step nurture-saas/hello: send nurture/welcome", at("id: hello")),
      ("- step nurture-saas/welcome: send nurture/welcome", was("send: nurture/welcome"))),
    E("steps order",
      "      - {wait: 4d, send: nurture/webinar, unless: \"clicked('nurture/case-study')\"}\n"
      "      - {wait: 8d, send: nurture/expert, id: expert-call, when: \"clicked('nurture/case-study')\", "
      "at: \"10:00\"}\n",
      "      - {wait: 8d, send: nurture/expert, id: expert-call, when: \"clicked('nurture/case-study')\", "
      "at: \"10:00\"}\n"
      "      - {wait: 4d, send: nurture/webinar, unless: \"clicked('nurture/case-study')\"}\n",
      ("~ sequence nurture-saas: steps in order [welcome, case-study, webinar, expert-call] → "
       "[welcome, case-study, expert-call, webinar]", at("    steps:\n      - {send: nurture/welcome}"))),
    # -- handoff ---------------------------------------------------------------------------
    E("handoff.sla", "sla: 4h", "sla: 2h", ("~ handoff sql: sla 4h → 2h", at("sla: 2h"))),
    E("handoff.sla removed", "    sla: 2d\n", "", ("- handoff customer: sla 2d", was("sla: 2d"))),
    E("handoff.sla_clock", "sla_clock: business", "sla_clock: calendar",
      ("~ handoff sql: sla_clock business → calendar", at("sla_clock:"))),
    E("handoff.answered_by", "answered_by: [crm.demo_booked]", "answered_by: [crm.demo_booked, crm.deal_won]",
      ("~ handoff sql: answered_by [crm.demo_booked] → [crm.demo_booked, crm.deal_won]", at("answered_by:"))),
    E("handoff.answered_by removed", "    answered_by: [crm.demo_booked]\n", "",
      ("~ handoff sql: answered_by [crm.demo_booked] → any crm event", was("answered_by:"))),
    E("handoff.notify", "notify: [crm, owner]", "notify: [crm, owner, slack]",
      ("~ handoff sql: notify [crm, owner] → [crm, owner, slack]", at("notify: [crm, owner, slack]"))),
    E("handoff.notify removed", "    notify: [crm]\n", "",
      ("- handoff customer: notify [crm]", was("notify: [crm]\n"))),
    E("handoff.suppress", "suppress: [nurture, broadcast]\n    crm_stage", "suppress: [nurture, broadcast, expansion]\n"
      "    crm_stage", ("~ handoff sql: suppress [nurture, broadcast] → [nurture, broadcast, expansion]",
                       at("suppress: [nurture, broadcast, expansion]"))),
    E("handoff.crm_stage", "crm_stage: Sales Qualified Lead", "crm_stage: SQL",
      ('~ handoff sql: crm_stage "Sales Qualified Lead" → "SQL"', at("crm_stage:"))),
    E("handoff.round_robin", "round_robin: [ana@sink.example, ben@sink.example]",
      "round_robin: [ana@sink.example, ben@sink.example, cy@sink.example]",
      ("~ handoff sql: round_robin [ana@sink.example, ben@sink.example] → "
       "[ana@sink.example, ben@sink.example, cy@sink.example]", at("round_robin:"))),
    E("handoff.round_robin long", "        - chloe.martin@acme.example\n",
      "        - chloe.martin@acme.example\n        - dev.patel@acme.example\n",
      ("+ handoff sql: round_robin dev.patel@acme.example", at("dev.patel@")), base="acme", file="sales.yaml"),
    E("handoff.round_robin long removed", "        - ben.okafor@acme.example\n", "",
      ("- handoff sql: round_robin ben.okafor@acme.example", was("ben.okafor@")), base="acme", file="sales.yaml"),
    E("handoff.assign kind", "      round_robin: [ana@sink.example, ben@sink.example]\n",
      "      owner: ana@sink.example\n",
      ("- handoff sql: assign round_robin [ana@sink.example, ben@sink.example]", was("round_robin:")),
      ("+ handoff sql: assign owner ana@sink.example", at("owner: ana@"))),
    E("handoff.owner", "assign: {owner: ops@sink.example}", "assign: {owner: ana@sink.example}",
      ("~ handoff lost: owner ops@sink.example → ana@sink.example", at("owner: ana@"))),
    E("handoff.territory.routes", "emea: [di@sink.example]", "emea: [di@sink.example, ed@sink.example]",
      ("~ handoff customer: route emea [di@sink.example] → [di@sink.example, ed@sink.example]", at("emea:"))),
    E("handoff.territory.default", "default: [cy@sink.example]", "default: [di@sink.example]",
      ("~ handoff customer: territory default [cy@sink.example] → [di@sink.example]", at("default:"))),
    E("handoff.territory.by", "        by: region\n        routes:\n          na: [cy@sink.example]\n"
      "          emea: [di@sink.example]\n",
      "        by: industry\n        routes:\n          saas: [cy@sink.example]\n"
      "          finance: [di@sink.example]\n",
      ("~ handoff customer: territory by region → industry", at("by: industry")),
      ("+ handoff customer: route saas [cy@sink.example]", at("saas: [cy@")),
      ("+ handoff customer: route finance [di@sink.example]", at("finance: [di@")),
      ("- handoff customer: route na [cy@sink.example]", was("na: [cy@")),
      ("- handoff customer: route emea [di@sink.example]", was("emea: [di@"))),
    E("handoff removed", "  lost:\n    assign: {owner: ops@sink.example}\n", "",
      ("- handoff lost: owner ops@sink.example", was("  lost:"))),
    # read backwards: the old definition gets the edit, so the new one has what it removes
    E("handoff added", "  lost:\n    assign: {owner: ops@sink.example}\n", "",
      ("+ handoff lost: owner ops@sink.example", at("  lost:")), swap=True),
    E("handoff.sla added", "    sla: 2d\n", "", ("+ handoff customer: sla 2d", at("sla: 2d")), swap=True),
    E("handoff.escalate", "    crm_stage: Sales Qualified Lead\n",
      "    crm_stage: Sales Qualified Lead\n    escalate:\n      notify: [lead@sink.example, manager]\n"
      "      managers: {ana@sink.example: mo@sink.example, ben@sink.example: mo@sink.example}\n"
      "      reassign: true\n      sla: 2h\n",
      ("+ handoff sql: escalate notify [lead@sink.example, manager], managers ana@sink.example: mo@sink.example, "
       "ben@sink.example: mo@sink.example, reassign to the next rep, sla 2h", at("escalate:"))),
    E("handoff.escalate.reassign to", "    crm_stage: Sales Qualified Lead\n",
      "    crm_stage: Sales Qualified Lead\n    escalate: {reassign: {to: cy@sink.example}}\n",
      ("+ handoff sql: escalate reassign to cy@sink.example", at("escalate:"))),
    E("handoff.description", "description: SDRs call within four working hours.",
      "description: SDRs call within four hours.", *NO_CHANGE),
    # -- expectations: CI gates on a forecast, not part of the plan -------------------------
    E("expect", "- sql_rate >= 0.01", "- sql_rate >= 0.02", *NO_CHANGE),
    # -- policies --------------------------------------------------------------------------
    E("policies.frequency_cap.per", "per: 7d", "per: 14d",
      ("~ frequency cap 3 per 7d → 3 per 14d", at("frequency_cap:"))),
    E("policies.frequency_cap.max", "max: 3, per", "max: 4, per",
      ("~ frequency cap 3 per 7d → 4 per 7d", at("frequency_cap:"))),
    E("policies.frequency_cap.applies_to", "{max: 3, per: 7d, applies_to: [nurture, broadcast]}", "{max: 3, per: 7d}",
      ("~ frequency cap applies_to [nurture, broadcast] → all", was("frequency_cap:"))),
    E("policies.frequency_cap removed", "  frequency_cap: {max: 3, per: 7d, applies_to: [nurture, broadcast]}\n", "",
      ("- frequency cap: 3 per 7d, applies_to [nurture, broadcast]", was("frequency_cap:"))),
    E("policies.quiet_hours.from", 'quiet_hours: {from: "20:00"', 'quiet_hours: {from: "21:00"',
      ("~ quiet hours from 20:00 → 21:00", at("quiet_hours:"))),
    E("policies.quiet_hours.to", 'to: "08:00"', 'to: "07:30"', ("~ quiet hours to 08:00 → 07:30", at("quiet_hours:"))),
    E("policies.quiet_hours removed", '  quiet_hours: {from: "20:00", to: "08:00"}\n', "",
      ("- quiet hours: from 20:00 to 08:00", was("quiet_hours:"))),
    E("policies.business_hours.days", "days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat]",
      ("~ business hours days [mon, tue, wed, thu, fri] → [mon, tue, wed, thu, fri, sat]", at("business_hours:"))),
    E("policies.business_hours.from", 'from: "09:00"', 'from: "08:30"',
      ("~ business hours from 09:00 → 08:30", at("business_hours:"))),
    E("policies.business_hours.to", 'to: "17:00"', 'to: "18:00"',
      ("~ business hours to 17:00 → 18:00", at("business_hours:"))),
    E("policies.timezone_attribute", "timezone_attribute: timezone", "timezone_attribute: tz",
      ("~ timezone attribute timezone → tz", at("timezone_attribute:"))),
    E("policies.timezone_attribute default", "  timezone_attribute: timezone\n", "", *NO_CHANGE),
    E("policies.soft_bounce_limit", "soft_bounce_limit: 3", "soft_bounce_limit: 2",
      ("~ soft bounce limit 3 → 2", at("soft_bounce_limit:"))),
    # -- templates and the rest ------------------------------------------------------------
    # A template's edit reads as the words that changed, at the line of the template file.
    E("template file", "this is nurture/brief.</p>", "this is the brief.</p>",
      ('~ template nurture/brief: html "<p>Hi {{ lead.first_name }}, this is nurture/brief.</p>" → '
       '"<p>Hi {{ lead.first_name }}, this is the brief.</p>"', "file:templates/sink/nurture/brief.j2@the brief.</p>"),
      file="templates/sink/nurture/brief.j2"),
    E("template subject", "{% block subject %}nurture/brief for", "{% block subject %}The brief for",
      ('~ template nurture/brief: subject "nurture/brief for {{ lead.first_name }}" → '
       '"The brief for {{ lead.first_name }}"', "file:templates/sink/nurture/brief.j2@The brief for"),
      file="templates/sink/nurture/brief.j2"),
    E("template long line", 'Unsubscribe</a></p>', 'Stop these emails</a></p>',
      ('~ template nurture/brief: html "…}}\\">Unsubscribe</a></p>" → "…}}\\">Stop these emails</a></p>"',
       "file:templates/sink/nurture/brief.j2@Stop these emails"),
      file="templates/sink/nurture/brief.j2"),
    E("template line added", "this is nurture/brief.\n{{ sender", "this is nurture/brief.\nP.S. Reply any time.\n{{ sender",
      ('+ template nurture/brief: text "P.S. Reply any time."', "file:templates/sink/nurture/brief.j2@P.S. Reply"),
      file="templates/sink/nurture/brief.j2"),
    E("template line removed", "{% block text -%}\nHi {{ lead.first_name }}, this is nurture/brief.\n",
      "{% block text -%}\n",
      ('- template nurture/brief: text "Hi {{ lead.first_name }}, this is nurture/brief."',
       "file:templates/sink/nurture/brief.j2@this is nurture/brief.\n{{ sender"),
      file="templates/sink/nurture/brief.j2"),
    E("description", "description: Every key of the definition language,",
      "description: All the keys of the definition language,", *NO_CHANGE),
    E("split definition", "    sla: 1d\n", "    sla: 12h\n",
      ("~ handoff opportunity: sla 1d → 12h", at("sla: 12h")), base="acme", file="sales.yaml"),
]


@contextmanager
def cwd(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def setup(root: Path, base: str) -> Tuple[str, str]:
    """The base definition in `root` as `funnels/old…` and `funnels/new…`, with its templates;
    the two paths, relative to `root`."""
    if base == "sink":
        for name in ("old", "new"):
            (root / "funnels").mkdir(parents=True, exist_ok=True)
            (root / "funnels" / f"{name}.yaml").write_text(SINK, encoding="utf-8")
        for name in SINK_TEMPLATES:
            path = root / "templates" / "sink" / f"{name}.j2"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sink_template(name), encoding="utf-8")
        return "funnels/old.yaml", "funnels/new.yaml"
    if base == "reference":
        for name in ("old", "new"):
            (root / "funnels").mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / "funnels" / "reference.yaml", root / "funnels" / f"{name}.yaml")
        shutil.copytree(REPO / "templates" / "reference", root / "templates" / "reference")
        return "funnels/old.yaml", "funnels/new.yaml"
    assert base == "acme"
    for name in ("old", "new"):
        shutil.copytree(REPO / "funnels" / "acme", root / "funnels" / name,
                        ignore=shutil.ignore_patterns("*.behavior.yaml"))
    shutil.copytree(REPO / "templates" / "acme", root / "templates" / "acme")
    return "funnels/old", "funnels/new"


def apply(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_holding(path: Path, text: str) -> int:
    """The line where `text` (which may span lines) starts in `path`; it must occur once."""
    content = path.read_text(encoding="utf-8")
    assert content.count(text) == 1, f"{text!r} occurs {content.count(text)} times in {path}"
    return content[:content.index(text)].count("\n") + 1


def expected_line(edit: Edit, root: Path, old: str, new: str, text: str, where: str) -> str:
    """The change line a reviewer should read, with its location worked out from the files."""
    if edit.file and not edit.file.startswith("templates/"):
        old, new = f"{old}/{edit.file}", f"{new}/{edit.file}"
    if where.startswith("file:"):  # `file:PATH` line 1, `file:PATH@TEXT` the line holding TEXT
        path, _, snippet = where[5:].partition("@")
        if not snippet:
            return f"  {text}  ({path}:1)"
        copies = [root / path, root / path.replace("templates/", "templates-new/", 1)]  # as it was, as edited
        return f"  {text}  ({path}:{line_holding(next(p for p in copies if snippet in p.read_text()), snippet)})"
    side, snippet = where.split(":", 1)
    file = new if side == "new" else old
    return f"  {text}  ({file}:{line_holding(root / file, snippet)})"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("edit", EDITS, ids=str)
def test_an_edit_reads_as_the_definition_says_it(edit: Edit, tmp_path: Path) -> None:
    old, new = setup(tmp_path, edit.base)
    edited = old if edit.swap else new
    target = tmp_path / (edit.file if edit.file.startswith("templates/") else
                         f"{edited}/{edit.file}" if edit.file else edited)
    before = sha(target)
    if edit.file.startswith("templates/"):  # a template is shared by both sides: the new one gets a copy
        shutil.copytree(tmp_path / "templates", tmp_path / "templates-new")
        apply(tmp_path / new, "templates: ../templates/sink", "templates: ../templates-new/sink")
        target = tmp_path / edit.file.replace("templates/", "templates-new/", 1)
    apply(target, edit.old, edit.new)
    with cwd(tmp_path):
        diff = d.diff(*plans_between(old, new))
        text = d.render_text(diff)
        markdown = d.render_markdown(diff)
        data = d.to_json(diff)
    expected = [expected_line(edit, tmp_path, old, new, line.replace("{old}", before).replace("{new}", sha(target)),
                              where)
                for line, where in edit.lines]
    if edit.file.startswith("templates/"):
        expected = [e if e.startswith("  -") else  # what was removed is located in the old copy
                    e.replace(f"({edit.file}:", f"({edit.file.replace('templates/', 'templates-new/', 1)}:")
                    for e in expected]
    lines = text.splitlines()
    assert lines[0].startswith(f"Plan for {diff.funnel}: ")
    changes = lines[2:(lines.index("", 2) if "" in lines[2:] else len(lines))]
    assert changes == expected, text
    if not expected:
        assert text == f"Plan for {diff.funnel}: No changes.\n" and not diff.changed
        return
    # JSON: the same changes, each with its file, line and column, and the same words
    assert data["format_version"] == d.FORMAT_VERSION == 2
    assert [f"  {c['sign']} {c['text']}  ({c['location']['file']}:{c['location']['line']})"
            for c in data["changes"]] == expected
    sides = ["old" if where.startswith("old:") or (where.startswith("file:") and line.startswith("-")) else "new"
             for line, where in edit.lines]
    assert [c["location"]["side"] for c in data["changes"]] == sides
    # markdown: one row per change, with the values and the place
    rows = [ln for ln in markdown.splitlines() if ln.startswith("| ") and ln[2:3] in "+-~"]
    assert len(rows) == len(expected)
    for row, c in zip(rows, data["changes"], strict=True):
        assert f"`{c['location']['file']}:{c['location']['line']}`" in row
        for value in (c["before"], c["after"]):
            if value is not None:
                assert value.replace("|", "\\|") in row


def test_the_table_covers_every_key_of_the_schema() -> None:
    """Every property the schema declares is edited by some row (or said to change nothing)."""
    schema = json.loads((REPO / "schemas" / "funnel.schema.json").read_text(encoding="utf-8"))
    keys: set = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                keys.add(name)
                walk(sub)
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    edited = " ".join(f"{e.id} {e.old} {e.new}" for e in EDITS)
    # `fnl` has one value (1), `templates` names the folder whose files the template row edits,
    # and a change of `funnel` is two different funnels (test_two_different_funnels_…).
    missing = sorted(k for k in keys - {"fnl", "templates", "funnel"} if not re.search(rf"\b{re.escape(k)}\b", edited))
    assert missing == []


# -- the whole output, through the command line ----------------------------------------------

def sla_edit(root: Path) -> Tuple[str, str]:
    old, new = setup(root, "sink")
    apply(root / new, "sla: 4h", "sla: 2h")
    apply(root / new, 'quiet_hours: {from: "20:00"', 'quiet_hours: {from: "21:00"')
    return old, new


def test_plan_as_a_subprocess_prints_each_change_at_its_line(tmp_path: Path) -> None:
    old, new = sla_edit(tmp_path)
    r = run_fnl("plan", tmp_path / old, tmp_path / new, "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    sla = line_holding(tmp_path / new, "sla: 2h")
    quiet = line_holding(tmp_path / new, "quiet_hours:")
    # run from the repository, so the files outside it are named in full
    assert r.stdout == (f"Plan for sink: ~ 1 handoff, ~ 1 policy\n\n"
                        f"  ~ handoff sql: sla 4h → 2h  ({tmp_path / new}:{sla})\n"
                        f"  ~ quiet hours from 20:00 → 21:00  ({tmp_path / new}:{quiet})\n")
    assert r.stderr == ""


def test_plan_markdown_and_json_through_click(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fnl as cli

    old, new = sla_edit(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    md = runner.invoke(cli.cli, ["plan", "--format", "markdown", old, new])
    assert md.exit_code == 0, md.output
    sla, quiet = line_holding(tmp_path / new, "sla: 2h"), line_holding(tmp_path / new, "quiet_hours:")
    assert md.output.startswith("### fnl plan: `sink`\n\n**~ 1 handoff, ~ 1 policy**\n\n"
                                "| | change | before | after | where |\n|---|---|---|---|---|\n"
                                f"| ~ | handoff sql: sla | `4h` | `2h` | `{new}:{sla}` |\n"
                                f"| ~ | quiet hours from | `20:00` | `21:00` | `{new}:{quiet}` |\n\n<sub>sha256:")
    js = runner.invoke(cli.cli, ["plan", "--format", "json", old, new])
    assert js.exit_code == 0, js.output
    data = json.loads(js.output)
    assert data["format_version"] == 2
    [plan] = data["plans"]
    assert [(c["subject"], c["before"], c["after"], c["location"]["file"], c["location"]["line"])
            for c in plan["changes"]] == [("handoff sql: sla", "4h", "2h", new, sla),
                                          ("quiet hours from", "20:00", "21:00", new, quiet)]


def test_plan_files_have_no_lines_and_lose_no_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled plans compare in the same words; they have no lines to point at."""
    old, new = sla_edit(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, path in (("old.json", old), ("new.json", new)):
        r = run_fnl("compile", tmp_path / path, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
    r = run_fnl("plan", tmp_path / "old.json", tmp_path / "new.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Plan for sink: ~ 1 handoff, ~ 1 policy\n\n  ~ handoff sql: sla 4h → 2h\n" \
                       "  ~ quiet hours from 20:00 → 21:00\n"
    js = json.loads(run_fnl("plan", "--format", "json", tmp_path / "old.json", tmp_path / "new.json").stdout)
    assert [c["location"] for c in js["plans"][0]["changes"]] == [None, None]


def test_two_different_funnels_are_compared_with_a_warning_first(tmp_path: Path) -> None:
    old, new = setup(tmp_path, "sink")
    apply(tmp_path / new, "funnel: sink\n", "funnel: sink-v2\n")
    apply(tmp_path / new, "sla: 4h", "sla: 2h")
    r = run_fnl("plan", tmp_path / old, tmp_path / new, "--detailed-exitcode")
    assert r.returncode == 2, r.stderr  # a warning, not a failure: the changes are still shown
    lines = r.stdout.splitlines()
    assert lines[0] == ("warning: these are two different funnels: `sink` (old) and `sink-v2` (new), so every "
                        "difference between them is listed as a change; to see what a change to one funnel does, "
                        "compare two versions of it")
    assert lines[1] == "Plan for sink → sink-v2: ~ 1 handoff"
    assert lines[3] == f"  ~ handoff sql: sla 4h → 2h  ({tmp_path / new}:{line_holding(tmp_path / new, 'sla: 2h')})"
    md = run_fnl("plan", "--format", "markdown", tmp_path / old, tmp_path / new).stdout.splitlines()
    assert md[:4] == ["### fnl plan: `sink` → `sink-v2`", "", "> [!WARNING]", "> " + lines[0][len("warning: "):]]
    [plan] = json.loads(run_fnl("plan", "--format", "json", tmp_path / old, tmp_path / new).stdout)["plans"]
    assert (plan["funnel"], plan["old_funnel"], plan["warnings"]) == ("sink-v2", "sink", [lines[0][9:]])
    same = run_fnl("plan", tmp_path / old, tmp_path / old)
    assert same.stdout == "Plan for sink: No changes.\n"  # one funnel: no warning


def test_a_long_value_is_never_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handoff whose whole value is long, changed in three keys: three lines, each whole."""
    old, new = setup(tmp_path, "sink")
    apply(tmp_path / new, "sla: 4h", "sla: 2h")
    apply(tmp_path / new, "notify: [crm, owner]", "notify: [crm, owner, slack]")
    apply(tmp_path / new, "crm_stage: Sales Qualified Lead", "crm_stage: Sales Qualified Lead (inbound)")
    monkeypatch.chdir(tmp_path)
    text = d.render_text(d.diff(*plans_between(old, new)))
    assert "…" not in text
    assert [ln.split("  (")[0] for ln in text.splitlines()[2:]] == [
        "  ~ handoff sql: sla 4h → 2h",
        "  ~ handoff sql: notify [crm, owner] → [crm, owner, slack]",
        '  ~ handoff sql: crm_stage "Sales Qualified Lead" → "Sales Qualified Lead (inbound)"',
    ]


@pytest.mark.parametrize("a, b, shown", [
    ("short", "shorter", ('"short"', '"shorter"')),
    ("x" * 30 + " and the part that changes is here, " + "y" * 40,
     "x" * 30 + " and the bit that changes is here, " + "y" * 40,
     ('"…and the part that changes is…"', '"…and the bit that changes is…"')),
])
def test_long_texts_show_what_changed_with_words_around_it(a: str, b: str, shown: Tuple[str, str]) -> None:
    assert d._texts(a, b) == shown


def test_a_long_text_is_cut_between_words_not_inside_one() -> None:
    """Where the context around a change holds no space, the word it would cut is shown
    whole: `…attended('q3-webinar')`, never `…tended('q3-webinar')`."""
    from engine.diff import _texts

    old = "replied or visited('pricing', since='mql') or registered('q3-webinar') or attended('q3-webinar')"
    new = old + " or clicked('shared/webinar-invite')"
    assert _texts(old, new) == ('''"…attended('q3-webinar')"''',
                                '''"…attended('q3-webinar') or clicked('shared/webinar-invite')"''')
