"""Pages for everything fnl can print a code for, and the `fnl help` topics.

`fnl rules CODE` answers for every code: the lint rules (FNL2xx-FNL5xx) by their
docstrings, and the codes of `engine.codes.CODES` (reading files, the schema, conditions,
events and plan files) by the pages here. Each is found by its ID or by its name
(`fnl rules unknown-key`, `fnl rules unknown-stage`), and each page says what the code
means, shows a definition (or file) that gets it under "Fails:", the same put right
under "Passes:", and how to fix it.

A page's `check` says how its examples can be run, so tests can show that the "Fails:"
example really gets the code and the "Passes:" one does not:

- "definition": appended to a small definition that is otherwise clean;
- "file": the whole definition file;
- "events": an events file for `fnl trace` of that small definition;
- "plan": an old plan file for `fnl plan OLD NEW` (only "Fails:" runs);
- "": not runnable (bytes, sizes, folders), shown for reading only.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from .codes import CODES

CHECKS = ("definition", "file", "events", "plan", "")


@dataclass(frozen=True)
class CodePage:
    """What one code means, an example that gets it, the example put right, the fix."""

    code: str
    name: str
    explanation: str
    fails: str
    passes: str
    fix: str
    severity: str = "error"
    check: str = ""

    @property
    def summary(self) -> str:
        return CODES.get(self.code, "")


def _page(code: str, name: str, explanation: str, fails: str, passes: str, fix: str,
          check: str = "", severity: str = "error") -> CodePage:
    return CodePage(code, name, explanation.strip(), fails.strip("\n"), passes.strip("\n"), fix.strip(),
                    severity, check)


PAGES: Tuple[CodePage, ...] = (
    # -- FNL0xx: reading files ---------------------------------------------------
    _page("FNL001", "not-utf8", """
fnl reads definitions as UTF-8 text. A file saved as UTF-16 (Windows editors call it
"Unicode"), a file with Latin-1 bytes such as 0xE9 for "é", or a binary file that happens
to end in .yaml cannot be read reliably, so fnl stops at the first bad byte.""", """
    funnels/acme.yaml saved as "Unicode (UTF-16 LE)", or with the byte 0xE9 in
    postal_address: "1 Rue de l'Église"
""", """
    the same file saved as UTF-8 (the default of most editors and of git)
""", "Save the file as UTF-8. In VS Code: the encoding in the status bar, then \"Save with Encoding\"."),
    _page("FNL002", "yaml-syntax", """
The file is not valid YAML: an unclosed bracket or quote, an indentation that does not
line up, a tab used for indentation. The message is the YAML parser's, at the place it
gave up, which may be just after the real mistake.""", """
    fnl: 1
    funnel: acme-b2b
    stages: [subscriber, mql
""", """
    fnl: 1
    funnel: acme-b2b
    stages: [subscriber, mql]
""", "Close the bracket or quote, or line the indentation up with its siblings (spaces, not tabs).",
          check="file"),
    _page("FNL003", "several-documents", """
A definition is one YAML document. A `---` line in the middle of a file starts a second
document, which fnl would otherwise silently ignore or merge.""", """
    fnl: 1
    funnel: acme-b2b
    ---
    fnl: 1
    funnel: acme-emea
""", """
    fnl: 1
    funnel: acme-b2b
""", "Give each funnel its own file (`funnels/acme-b2b.yaml`, `funnels/acme-emea.yaml`), or remove the `---`.",
          check="file"),
    _page("FNL004", "empty-file", """
The file holds no YAML document: it has no bytes, or only comments and blank lines. An
empty file is usually a definition that was never written or was cut by a bad merge.""", """
    # the acme funnel, to be written
""", """
    # the acme funnel
    fnl: 1
    funnel: acme-b2b
""", "Write the definition, or delete the file.", check="file"),
    _page("FNL005", "file-too-large", """
fnl reads definitions of at most 1 MiB. Definitions come from pull requests, so a size
limit keeps a generated or pasted file from exhausting memory; a real funnel is a few
kilobytes.""", """
    funnels/acme.yaml of 3 MiB, with a data export pasted into `profile:`
""", """
    funnels/acme/funnel.yaml, nurture.yaml, sales.yaml ... each well under 1 MiB
""", "Remove the pasted data, or split the definition into a folder: `funnel.yaml` plus one file per "
         "section (`fnl validate funnels/acme`)."),
    _page("FNL006", "unreadable", """
fnl could not, or would not, read a file or folder: it does not exist or may not be
read, it is a pipe or device, it is a link to a folder or to a file outside the
definition's repository, or `templates:` names a folder outside the definition's git
repository (outside a repository: outside the folder above the one holding the
definition).""", """
    templates: ../../shared-templates
""", """
    templates: ../templates/acme
""", "Point at a folder inside the repository (copy shared templates into it), or give the file the "
         "permissions to be read.", check="definition"),
    _page("FNL007", "split-file-not-mapping", """
In a definition split across a folder, every YAML file holds top-level sections
(`sequences:`, `scoring:`, ...) that merge into one definition. A file holding a list or
a single value has no sections to merge.""", """
    # funnels/acme/steps.yaml
    - {send: saas/industry-insight}
    - {wait: 2d, send: saas/capability}
""", """
    # funnels/acme/nurture.yaml
    sequences:
      nurture-saas:
        kind: nurture
        stage: subscriber
        steps:
          - {send: saas/industry-insight}
          - {wait: 2d, send: saas/capability}
""", "Put the content under the section it belongs to, as in `funnel.yaml`."),
    _page("FNL008", "defined-twice", """
Files of a split definition merge section by section and entry by entry; the same
top-level value, or the same entry of a section, in two files would make one of them
win silently.""", """
    # funnels/acme/funnel.yaml
    sequences:
      nurture-saas: {kind: nurture, stage: subscriber, steps: [...]}
    # funnels/acme/nurture.yaml
    sequences:
      nurture-saas: {kind: nurture, stage: subscriber, steps: [...]}
""", """
    # funnels/acme/nurture.yaml only
    sequences:
      nurture-saas: {kind: nurture, stage: subscriber, steps: [...]}
""", "Keep each entry in one file; the message names the first place it is defined."),
    _page("FNL010", "yaml11-boolean", """
`yes`, `no`, `on`, `off`, `y` and `n` are booleans to YAML 1.1 tools (PyYAML, many CI
tools) and text to YAML 1.2 tools, so the same file means different things to different
readers. fnl refuses them rather than guess.""", """
    profile:
      vip: {type: boolean, required: yes}
""", """
    profile:
      vip: {type: boolean, required: true}
""", "Write `true` or `false`, or quote the word if you mean the text (`\"yes\"`).", check="definition"),
    _page("FNL011", "ambiguous-value", """
A value YAML tools read differently: `08:00` is a base-60 number to YAML 1.1 and text
to YAML 1.2; `012` is octal to some and twelve to others; hex, underscores and similar
spellings disagree too.""", """
    policies:
      quiet_hours: {from: 20:00, to: 08:00}
""", """
    policies:
      quiet_hours: {from: "20:00", to: "08:00"}
""", "Quote the value: times of day and codes with leading zeros are text.", check="definition"),
    _page("FNL012", "number-too-large", """
A number that is not finite (`.inf`, `.nan`), or so large it overflows to infinity or
would take fnl a long time to read. No setting of a funnel needs such a number.""", """
    scoring:
      events: {email.opened: 1e400}
""", """
    scoring:
      events: {email.opened: 5}
""", "Use an ordinary number; the schema says each setting's range.", check="definition"),
    _page("FNL013", "anchor-or-tag", """
Anchors (`&name`), aliases (`*name`) and tags (`!!python/...`, `!custom`) are not allowed:
aliases can expand a small file into a huge one, tags can ask a YAML library to build
objects, and neither is needed to say a funnel.""", """
    policies:
      frequency_cap: &cap {max: 3, per: 7d}
""", """
    policies:
      frequency_cap: {max: 3, per: 7d}
""", "Write the value out where it is used (a split definition keeps repeated parts short).",
          check="definition"),
    _page("FNL014", "too-deep", """
A definition nested more than 64 levels deep, or holding more than 100,000 values, or a
folder of definitions nested more than 64 levels deep. The limits bound the memory and
time one pull request can cost; real definitions are a few levels deep.""", """
    steps: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ ... ]]]]
""", """
    steps:
      - {send: saas/industry-insight}
""", "Flatten the value; a generated file that nests this deep is usually generated wrongly."),
    _page("FNL015", "complex-key", """
A mapping key must be a plain name. YAML allows lists and mappings as keys (`[a, b]: x`,
`? {a: 1}`), but no part of a definition is keyed that way, and JSON cannot say it.""", """
    profile:
      [industry, size]: {type: string}
""", """
    profile:
      industry: {type: string}
      size: {type: string}
""", "Give each key its own line.", check="definition"),
    _page("FNL016", "duplicate-key", """
The same key twice in one mapping. YAML tools disagree on which one wins (most keep the
last silently), so a duplicate usually hides an edit that does nothing.""", """
    profile:
      industry: {enum: [saas, finance]}
      industry: {type: string}
""", """
    profile:
      industry: {enum: [saas, finance]}
""", "Keep one of them; the message says where the first is.", check="definition"),
    _page("FNL017", "invisible-character", """
A key contains an invisible character (a zero-width space, a byte-order mark, a
direction mark), usually pasted from a document or chat. It looks like the key
without it, but is a different key to every tool.""", """
    profile:
      industry<U+200B>: {type: string}      # a zero-width space after `industry`
""", """
    profile:
      industry: {type: string}
""", "Retype the key; the message names the character.", check="definition"),
    _page("FNL020", "unused-suppression", """
A `# fnl: ignore[CODE] reason` comment silences CODE on its own line and the next. When
the problem it silenced is gone (fixed, or moved to another line), the comment would
silently hide the next real problem there, so it is reported.""", """
    policies:
      frequency_cap: {max: 3, per: 7d}   # fnl: ignore[FNL401] it was over the cap
""", """
    policies:
      frequency_cap: {max: 3, per: 7d}
""", "Remove the comment, or move it to the line the finding is now on (or the line above).",
          check="definition", severity="warning"),
    _page("FNL021", "unknown-suppression", """
A `# fnl: ignore[...]` comment names a code that is not a lint rule's ID: a typo, a
prefix (`FNL5`), or a code of reading or the schema (FNL0xx, FNL1xx), which a comment
cannot silence. The comment silences nothing, so the problem it was meant for is still
reported.""", """
    policies:
      business_hours: {from: "09:00", to: "17:00"}
    handoff:
      customer:
        assign: {owner: ana@acme.example}
        sla: 4h  # fnl: ignore[FNL550] an on-call account manager answers evening handoffs
""", """
    policies:
      business_hours: {from: "09:00", to: "17:00"}
    handoff:
      customer:
        assign: {owner: ana@acme.example}
        sla: 4h  # fnl: ignore[FNL505] an on-call account manager answers evening handoffs
""", "Name the rule by its full ID, as the finding prints it (`fnl rules` lists them); fix problems of "
         "reading and the schema instead of silencing them.", check="definition", severity="warning"),
    _page("FNL022", "suppression-without-reason", """
A `# fnl: ignore[CODE]` comment without a reason after the brackets. A suppression is a
decision someone made; the next reviewer needs to know why it is right here, and when it
stops being right.""", """
    policies:
      business_hours: {from: "09:00", to: "17:00"}
    handoff:
      customer:
        assign: {owner: ana@acme.example}
        sla: 4h  # fnl: ignore[FNL505]
""", """
    policies:
      business_hours: {from: "09:00", to: "17:00"}
    handoff:
      customer:
        assign: {owner: ana@acme.example}
        sla: 4h  # fnl: ignore[FNL505] an on-call account manager answers evening handoffs
""", "Say why after the brackets: `# fnl: ignore[FNL505] <why this is right here>`.",
          check="definition", severity="warning"),
    # -- FNL1xx: the schema and the condition language -----------------------------
    _page("FNL100", "unknown-key", """
A key the schema does not know in this place: a misspelling, or a key that belongs in
another section. The help suggests the closest known key; `fnl schema` lists them all.""", """
    policies:
      frequency_cap: {max: 3, pre: 7d}
""", """
    policies:
      frequency_cap: {max: 3, per: 7d}
""", "Correct the spelling, or move the key to the section it belongs to.", check="definition"),
    _page("FNL101", "missing-key", """
A key this section needs is missing, such as the end of the quiet hours, or a
transition with neither `when` nor `on`.""", """
    policies:
      quiet_hours: {from: "20:00"}
""", """
    policies:
      quiet_hours: {from: "20:00", to: "08:00"}
""", "Add the key the message names; the help says what it is for.", check="definition"),
    _page("FNL102", "wrong-type", """
A value of the wrong type: text where a number is expected, a single value where a list
is, a list where a mapping is. Quoting a number makes it text.""", """
    policies:
      frequency_cap: {max: "3", per: 7d}
""", """
    policies:
      frequency_cap: {max: 3, per: 7d}
""", "Write the value as the type the message says (remove the quotes around numbers).",
          check="definition"),
    _page("FNL103", "not-allowed-value", """
A value that is not one of the values this key allows, such as a sequence `kind` or an
attribute `type` fnl does not know. The message lists the allowed values.""", """
    profile:
      industry: {type: text}
""", """
    profile:
      industry: {type: string}
""", "Use one of the values the message lists (the help suggests the closest).", check="definition"),
    _page("FNL104", "bad-format", """
A value or name in the wrong format: a duration that is not a number and a unit (`7d`),
a name that is not a lower-case slug, an event name fnl does not know, a template path
with a `.j2` suffix, an email address that is not one.""", """
    policies:
      frequency_cap: {max: 3, per: 7 days}
""", """
    policies:
      frequency_cap: {max: 3, per: 7d}
""", "Write the value in the format the help shows: durations as `30m`, `4h`, `2d` or `1w`; names as "
         "`lower-case-slugs`.", check="definition"),
    _page("FNL105", "out-of-range", """
A number outside the range the key allows, such as scoring points over 1,000, a
negative threshold or variant weights over 100.""", """
    scoring:
      events: {email.opened: 5000}
""", """
    scoring:
      events: {email.opened: 5}
""", "Use a number in the range the message gives.", check="definition"),
    _page("FNL106", "wrong-count", """
Too few or too many items: an empty list where at least one item is needed (an enum
with no values, a round robin with no reps), an empty mapping, or a text too long.""", """
    profile:
      industry: {enum: []}
""", """
    profile:
      industry: {enum: [saas, finance]}
""", "Give at least (or at most) as many items as the message says, or remove the key.",
          check="definition"),
    _page("FNL107", "listed-twice", """
The same item twice in a list whose items must be unique, such as stages, terminal
stages or the sequence kinds a handoff suppresses. The repeat is reported.""", """
    terminal_stages: [customer, customer]
""", """
    terminal_stages: [customer]
""", "Remove the repeat.", check="definition"),
    _page("FNL108", "keys-conflict", """
Keys that cannot be combined, or a key that needs another beside it: a step that both
sends and notifies, an assignment with both `owner` and `round_robin`, a decay with both
`half_life` and `factor`, a `factor` without `every`.""", """
    scoring:
      decay: {half_life: 30d, factor: 0.9, every: 1d}
""", """
    scoring:
      decay: {half_life: 30d}
""", "Keep one of the keys the message names (split a step that does two things into two steps), or add "
         "the key it needs.", check="definition"),
    _page("FNL109", "schema-violation", """
A rule of the schema that none of FNL100-FNL108 describes more precisely; the message
quotes the schema's own words. With today's schema every violation has one of the more
precise codes, so this is a fallback you should rarely see.""", """
    a value the schema refuses for a reason other than an unknown or missing key, a type,
    an allowed value, a format, a range, a count, a repeat or a combination of keys
""", """
    the value as `fnl schema` describes it for that key
""", "Read the key's description in `fnl schema` (or hover over it in an editor) and write the value it "
         "describes."),
    _page("FNL110", "condition-syntax", """
A condition that does not parse: `=` instead of `==`, `&&` instead of `and`, an
unclosed string or bracket, a chained comparison (`40 <= score < 80`), or one past the
bounds (length, nesting, operators). The caret points at the character where parsing
stopped. `fnl help conditions` describes the language.""", """
    profile:
      industry: {enum: [saas, finance]}
    fit: {when: "industry = 'saas'"}
""", """
    profile:
      industry: {enum: [saas, finance]}
    fit: {when: "industry == 'saas'"}
""", "Write the condition as the help says: `==` to compare, `and`/`or`/`not`, quotes closed, "
         "`a < b and b < c` instead of a chain.", check="definition"),
    _page("FNL111", "duration-out-of-bounds", """
A duration the schema's format allows but no funnel can mean: zero where it must be
positive (a half-life, a cap window, a decay period) or over ten years.""", """
    scoring:
      decay: {half_life: 0d}
""", """
    scoring:
      decay: {half_life: 30d}
""", "Use a duration above zero and at most ten years (`30d`, `52w`).", check="definition"),
    _page("FNL112", "unknown-timezone", """
`sender.timezone` names a timezone the IANA database does not have. Quiet hours,
business hours and score decay are kept in this timezone, so it must be a real one.""", """
    fnl: 1
    funnel: acme-b2b
    sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St", timezone: US/Springfield}
    stages: [subscriber, customer]
""", """
    fnl: 1
    funnel: acme-b2b
    sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St", timezone: America/Chicago}
    stages: [subscriber, customer]
""", "Use an IANA name such as `America/New_York`, `Europe/Berlin` or `UTC`.", check="file"),
    # -- FNL6xx: events files (`fnl trace`) ------------------------------------------
    _page("FNL601", "events-unreadable", """
The events file cannot be read: it is not UTF-8, larger than 4 GiB, a pipe or device
rather than a regular file, or unreadable. Events are untrusted input, so fnl checks
the file before reading it.""", """
    fnl trace funnels/acme --events export.jsonl    # exported as UTF-16 ("Unicode text")
""", """
    fnl trace funnels/acme --events export.jsonl    # the same export as UTF-8
""", "Export the events as UTF-8 JSON Lines into a regular file."),
    _page("FNL602", "events-bad-json", """
A line of the events file is not one JSON object: a trailing comma, single quotes, a
line broken in two, a value that is not an object, or a line over 1 MiB.""", """
    {"type": "lead.imported", "at": "2026-03-02T14:30:00Z", "lead": "dana@loopwise.example", "entry": "imported",}
""", """
    {"type": "lead.imported", "at": "2026-03-02T14:30:00Z", "lead": "dana@loopwise.example", "entry": "imported"}
""", "Write one JSON object per line, as `json.dumps` writes it.", check="events"),
    _page("FNL603", "invalid-event", """
A line is JSON but not an event fnl can apply: an unknown `type`, a time that is not ISO
8601 with a timezone, a missing `lead`, a field of the wrong kind, or an event the engine
rejected (the message says why).""", """
    {"type": "lead.import", "at": "2026-03-02T14:30:00Z", "lead": "dana@loopwise.example", "entry": "imported"}
""", """
    {"type": "lead.imported", "at": "2026-03-02T14:30:00Z", "lead": "dana@loopwise.example", "entry": "imported"}
""", "Use an event type from `fnl trace --help` and the fields it lists.", check="events"),
    # -- FNL7xx: plan files (`fnl plan`) ---------------------------------------------
    _page("FNL701", "plan-unreadable", """
A plan file given to `fnl plan` cannot be read as JSON: it is larger than 2 MiB, not
UTF-8, nested more than 512 levels, or not valid JSON (often a file cut short, or a
merge conflict inside it).""", """
    {"format_version": 1,
""", """
    fnl compile funnels/acme -o old-plan.json     # a plan as fnl writes it
""", "Compile the plan again with `fnl compile`, or compare against a git revision with "
         "`fnl plan --base REV`.", check="plan"),
    _page("FNL702", "plan-invalid", """
A plan file is JSON but does not match the plan schema (`fnl schema plan`): edited by
hand, written by another version of fnl, or not a plan at all.""", """
    {"format_version": 2, "funnel": "acme-b2b"}
""", """
    fnl compile funnels/acme -o old-plan.json     # a plan as fnl writes it
""", "Compile the plan again with the fnl you compare with, or use `fnl plan --base REV`.", check="plan"),
    # -- FNL80x: behaviour models of `fnl simulate` -------------------------------
    _page("FNL801", "behavior-unknown-name", """
A behaviour model (`*.behavior.yaml`, `fnl schema behavior`) speaks of the funnel by name:
its lead magnets and entries, profile attributes and their values, segments, personas,
templates and A/B variants, stages, pages, CRM events and sales reps. A name the funnel does
not have would make that part of the model apply to nobody, so it is refused; the message
suggests the closest name the funnel has.""", """
    arrivals:
      whitepaper:            # the funnel's lead magnet is `guide`
        leads: 1000
    email:
      by_industry:
        sass: {open: 0.3}    # the funnel's industries are saas, manufacturing, finance
""", """
    arrivals:
      guide:
        leads: 1000
    email:
      by_industry:
        saas: {open: 0.3}
""", "Use the name as the funnel writes it (the message says which names it has), or add the missing "
         "lead magnet, value or template to the funnel first."),
    _page("FNL802", "behavior-impossible", """
A behaviour model value that cannot happen: shares that add up to more than 1, a click
rate without an open rate, a window whose end comes before its start, an attribute range
outside the bounds the funnel's profile gives it, a delay whose longest is shorter than
its shortest, or a setting that has no effect with the timing chosen.""", """
    email:
      default: {open: 0.2, click: 1.4}
    arrivals:
      guide: {leads: 500, window: {start: 30d, end: 10d}}
""", """
    email:
      default: {open: 0.2, click: 0.14}
    arrivals:
      guide: {leads: 500, window: {start: 10d, end: 30d}}
""", "Give probabilities from 0 to 1 (a click or reply rate is a share of the opens), windows that "
         "start before they end, and ranges inside the attribute's bounds."),
    _page("FNL803", "behavior-too-big", """
A behaviour model size out of bounds: more leads than fnl simulates in one run, a horizon
longer than ten years or shorter than a day, or a duration or delay longer than ten years.
Sizes are checked before any lead is simulated, so an absurd model fails at once rather
than after hours.""", """
    horizon: 100y
    arrivals:
      guide: {leads: 1000000000}
""", """
    horizon: 365d
    arrivals:
      guide: {leads: 10000}
""", "Shares and per-lead figures do not depend on the size: simulate fewer leads (`--leads`) and a "
         "horizon of at most 3650d."),
    _page("FNL804", "behavior-other-funnel", """
A behaviour model says which funnel it describes (`funnel:`, the definition's `funnel:`
name). A model written for another funnel, often one copied from a neighbouring folder,
would put that funnel's rates on this one.""", """
    # funnels/acme/acme.behavior.yaml, beside the funnel `acme-b2b`
    behavior: 1
    funnel: reference
""", """
    behavior: 1
    funnel: acme-b2b
""", "Name this funnel in `funnel:`, or pass the right model with `fnl simulate --behavior FILE`."),
    _page("FNL805", "behavior-ambiguous", """
Without `--behavior`, `fnl simulate` uses the one `*.behavior.yaml` beside the funnel (in a
split funnel's folder, or next to a single-file funnel with the same stem). Two candidates,
or one that is a link leading out of the funnel's folder, cannot be chosen between safely.""", """
    funnels/acme/acme.behavior.yaml
    funnels/acme/acme-q4.behavior.yaml
""", """
    funnels/acme/acme.behavior.yaml
    scenarios/acme-q4.behavior.yaml      # fnl simulate funnels/acme --behavior scenarios/acme-q4.behavior.yaml
""", "Keep one behaviour model beside the funnel and pass the others with `--behavior FILE`."),
    # -- FNL81x: expectations of `fnl simulate` -----------------------------------
    _page("FNL811", "expectation-failed", """
An expectation in the definition's `expect:` block or its `*.expect.yaml` (or the file given
with `--expect`) does not hold for the forecast, so `fnl simulate` exits 1 after printing the
report, located at the expectation's line: a CI gate. With
`--runs R` the mean of the R runs is judged and its 95 % interval printed; with `--strict`
the whole interval must hold. The intervals are simulation noise only.""", """
    # funnels/acme/acme.expect.yaml, and a forecast with 2.1 % of the leads reaching sql
    expect:
      - sql_rate >= 0.03
""", """
    # the funnel changed so that more leads reach sql, or the bound says what is realistic
    expect:
      - sql_rate >= 0.02
""", "Change the funnel (or the behaviour model, if its rates are wrong) until the expectation holds, or "
         "change the expectation if it asked for too much. If only `--strict` fails, more `--runs` narrow "
         "the interval."),
    _page("FNL812", "unknown-metric", """
An expectation names a metric or flag that fnl does not have, or a stage the funnel does
not have in `STAGE_rate` or `STAGE_leads`. The metrics are a fixed list (see the README's
`fnl simulate` section or `fnl schema expect`); the message suggests the closest one. In the
definition's own `expect:` block, `fnl validate` reports it too, before any forecast.""", """
    expect:
      - sq_rate >= 0.03
      - emails_per_week <= 3
""", """
    expect:
      - sql_rate >= 0.03
      - max_emails_in_7d <= 3
""", "Use a metric from the list, or a stage of the funnel followed by `_rate` or `_leads`."),
    _page("FNL813", "bad-expectation", """
An expectation is one line: a metric, a comparison (`<`, `<=`, `>`, `>=`, `==`) and a number
or another metric; or `METRIC between A and B`; or a flag alone. Anything else cannot be
judged: a single `=`, the number first, two comparisons on one line, a share (a `_rate`)
above 1, a `between` whose first number is the larger. In the definition's own `expect:`
block, `fnl validate` reports it too, before any forecast.""", """
    expect:
      - sql_rate = 0.03
      - 3 >= max_emails_in_7d
      - mql_rate >= 5
""", """
    expect:
      - sql_rate == 0.03
      - max_emails_in_7d <= 3
      - mql_rate >= 5%
""", "Write `METRIC OP NUMBER`, with shares as 0.05 or 5%."),
    _page("FNL814", "expectations-mismatch", """
An expectations file that cannot be used for this funnel: its `funnel:` names another
funnel; two files beside the funnel could both be its expectations
(`funnels/acme/acme.expect.yaml` and another `*.expect.yaml`); the file is a link out of the
funnel's folder; or an expectation needs a figure the behaviour model cannot give, such as
`capacity` without `sales:` capacity.""", """
    funnel: acme-emea        # in funnels/acme/acme.expect.yaml, whose funnel is acme-b2b
    expect:
      - rep_load <= capacity # and the behaviour model has no sales: section
""", """
    funnel: acme-b2b
    expect:
      - rep_load <= 25
""", "Name the right funnel, keep one expectations file beside it (or pass `--expect FILE`), and give "
         "the behaviour model `sales: {leads_per_week: N}` before comparing with `capacity`."),
)

BY_CODE: Dict[str, CodePage] = {p.code: p for p in PAGES}
assert len(BY_CODE) == len(PAGES), "two pages share a code"


def code_page(page: CodePage) -> str:
    """A code's page, in the shape of a lint rule's: header, summary, explanation,
    Fails:, Passes:, Fix:."""
    return (f"{page.code} {page.name} ({page.severity})\n\n{page.summary}\n\n{page.explanation}\n\n"
            f"Fails:\n{_block(page.fails)}\n\nPasses:\n{_block(page.passes)}\n\nFix: {page.fix}")


def _block(text: str) -> str:
    """An example as the page shows it: indented four spaces, as in the page source."""
    return "\n".join(line.rstrip() for line in text.splitlines())


def example(text: str) -> str:
    """An example as a file holds it: the page's four-space indent removed, `<U+XXXX>`
    made the character it names."""
    lines = [line[4:] if line.startswith("    ") else line.lstrip() for line in text.splitlines()]
    body = "\n".join(lines) + "\n"
    return re.sub(r"<U\+([0-9A-F]{4,6})>", lambda m: chr(int(m.group(1), 16)), body)


def rule_page(rule: ModuleType) -> str:
    from .lint.runner import rule_meta

    meta = rule_meta(rule)
    return f"{meta['id']} {meta['name']} ({meta['severity']})\n\n{meta['doc']}"


def _rules() -> Tuple[ModuleType, ...]:
    from .lint.registry import RULES

    return RULES


def lookup(query: str) -> Optional[str]:
    """The page for a code or rule, by ID (any case) or by name; None if there is none."""
    wanted = query.strip()
    for rule in _rules():
        if wanted.upper() == rule.ID or wanted.lower() == rule.NAME:
            return rule_page(rule)
    for code in CODES:
        page = BY_CODE.get(code)
        if wanted.upper() == code:
            return code_page(page) if page else _bare_page(code)
        if page and wanted.lower() == page.name:
            return code_page(page)
    return None


def _bare_page(code: str) -> str:
    """A code added to CODES without a page yet: what CODES says, rather than nothing."""
    return f"{code}\n\n{CODES[code]}"


def known() -> List[str]:
    """Every ID and name `lookup` answers to."""
    out: List[str] = []
    for rule in _rules():
        out += [rule.ID, rule.NAME]
    for code in CODES:
        out.append(code)
        if code in BY_CODE:
            out.append(BY_CODE[code].name)
    return out


def suggest(query: str) -> Optional[str]:
    """The ID or name closest to a query `lookup` did not know."""
    wanted = query.strip()
    ids = [k for k in known() if k.startswith("FNL")]
    names = [k for k in known() if not k.startswith("FNL")]
    pool, probe = (ids, wanted.upper()) if wanted.upper().startswith("FNL") else (names, wanted.lower())
    guess = difflib.get_close_matches(probe, pool, n=1, cutoff=0.6)
    return guess[0] if guess else None


def code_listing() -> List[str]:
    """One line per code of CODES, as `fnl rules` lists the lint rules."""
    out = []
    for code, summary in CODES.items():
        page = BY_CODE.get(code)
        severity = page.severity if page else "error"
        name = page.name if page else ""
        out.append(f"{code}  {severity:<8} {name:<26} {summary}")
    return out


# -- help topics ----------------------------------------------------------------------

@dataclass(frozen=True)
class Topic:
    name: str
    summary: str


TOPICS: Tuple[Topic, ...] = (
    Topic("conditions", "The condition language: every name, predicate and operator, with examples."),
    Topic("codes", "Every code fnl prints: files, schema, conditions, events and plan files, then the lint rules."),
)


def topic_text(name: str) -> Optional[str]:
    if name == "conditions":
        from . import language

        return language.text()
    if name == "codes":
        from .lint.runner import rule_meta

        lines = ["Codes of files, the schema, conditions, events and plan files:", ""]
        lines += code_listing()
        lines += ["", "Lint rules:", ""]
        for rule in _rules():
            meta = rule_meta(rule)
            lines.append(f"{meta['id']}  {meta['severity']:<8} {meta['name']:<26} {meta['summary']}")
        lines += ["", "`fnl rules CODE` (or its name) prints one code's page: what it means, an example, the fix."]
        return "\n".join(lines) + "\n"
    return None


def topic_listing() -> str:
    width = max(len(t.name) for t in TOPICS)
    lines = ["Help topics (fnl help TOPIC):", ""]
    lines += [f"  {t.name:<{width}}  {t.summary}" for t in TOPICS]
    lines += ["", "Also: fnl help COMMAND (the same as fnl COMMAND --help), fnl help CODE (as fnl rules CODE)."]
    return "\n".join(lines) + "\n"
