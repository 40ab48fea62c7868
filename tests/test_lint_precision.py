"""Findings that are precise before they are plentiful.

Each test writes a small, complete definition (and its templates) under tmp_path and runs
the real pipeline in-process: loops judged by their conditions, sequences without exit
that handoffs already stop, score thresholds out of realistic reach, decay that is far
too fast, A/B variant names in templates, unclosed template tags located at their
opening, causes reported before (and instead of) their consequences, and suppression
comments that give no reason or name no rule.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.check import check_paths  # noqa: E402
from engine.errors import Problem  # noqa: E402
from engine.lint.runner import Selection  # noqa: E402

HEAD = """\
fnl: 1
funnel: acme-b2b
templates: templates
sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield, IL 62701, USA"}
"""
ENTRY = "entries: {imported: {on: lead.imported, enters: subscriber, basis: legitimate_interest}}\n"

EMAIL = """\
{% block subject %}SUBJECT{% endblock %}
{% block html -%}
<p>Hi,</p>
<p>BODY</p>
<p style="font-size:12px">{{ sender.postal_address }} &middot; <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
{%- endblock %}
{% block text -%}
Hi,

BODY

{{ sender.postal_address }}
Unsubscribe: {{ unsubscribe_url }}
{%- endblock %}
"""


def funnel(tmp_path: Path, body: str, templates: Dict[str, str] = {}, sends: Sequence[str] = ()) -> Path:
    """A definition (HEAD + body) with the templates given, and a plain email for every
    other name in `sends`."""
    for name in sends:
        if name not in templates:
            write_template(tmp_path, name, EMAIL.replace("SUBJECT", f"About {name}").replace(
                "BODY", "Pipeline velocity, win rate and cycle length tell you where deals stall."))
    for name, text in templates.items():
        write_template(tmp_path, name, text)
    path = tmp_path / "funnel.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def write_template(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "templates" / f"{name}.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def lint(path: Path, *select: str) -> List[Problem]:
    return [p for c in check_paths((str(path),), Selection(tuple(select))) for p in c.problems]


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def spots(problems: List[Problem]) -> List[tuple]:
    return [(p.code, p.location.line) for p in problems]


# ---------------------------------------------------------------- FNL303: loops judged by their conditions

LOOP = """\
stages: [subscriber, mql, sql, customer, lost]
terminal_stages: [customer, lost]
scoring:
  events: {email.opened: 5, email.clicked: 10, site.visited: 10}
  decay: {half_life: 30d}
  thresholds: {mql: 40, recycle: 20}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: mql, to: subscriber, when: "BACK"}
  - {from: mql, to: sql, when: "replied"}
  - {from: sql, to: customer, on: crm.deal_won}
  - {from: sql, to: lost, on: crm.deal_lost}
""" + ENTRY


@pytest.mark.parametrize("back", [
    "score < thresholds.recycle",                     # the standard recycle rule: a gap from 20 to 40
    "score < 20 and not clicked",
    "score <= 39.5 and score > 45",                   # never holds at all
    "not (score >= 20)",
])
def test_a_loop_whose_conditions_exclude_each_other_is_fine(tmp_path: Path, back: str) -> None:
    path = funnel(tmp_path, LOOP.replace("BACK", back))
    assert lint(path, "FNL303") == []


@pytest.mark.parametrize("back, witness", [
    ("score < 50", "`40 <= score < 50`"),            # overlapping: from 40 to 50 a lead bounces
    ("score < thresholds.mql + 10", None),            # arithmetic: fnl cannot exclude it
    ("not replied or score < 45", "`score >= 40 and not replied`"),
])
def test_a_loop_whose_conditions_overlap_says_which_let_it_bounce(tmp_path: Path, back: str,
                                                                   witness: str) -> None:
    path = funnel(tmp_path, LOOP.replace("BACK", back))
    [problem] = lint(path, "FNL303")
    assert problem.location.line == line_of(path, "to: subscriber")
    assert problem.message.startswith("transitions form a loop subscriber → mql → subscriber")
    assert "`score >= thresholds.mql` (subscriber → mql)" in problem.message
    assert f"`{back}` (mql → subscriber)" in problem.message
    if witness:
        assert problem.message.endswith(f"as for a lead with {witness}")
    assert "gap between the scores" in problem.help


def test_a_loop_closed_by_a_crm_event_is_not_a_bounce(tmp_path: Path) -> None:
    body = LOOP.replace("BACK", "score < 20").replace(
        "  - {from: sql, to: lost, on: crm.deal_lost}\n",
        "  - {from: sql, to: mql, on: crm.deal_lost}\n  - {from: sql, to: lost, on: crm.lead_disqualified}\n")
    path = funnel(tmp_path, body + "crm: {events: [lead_disqualified]}\n")
    assert lint(path, "FNL303") == []


def test_a_loop_over_a_flag_and_its_negation_cannot_bounce(tmp_path: Path) -> None:
    body = LOOP.replace("BACK", "score < 20").replace(
        '  - {from: mql, to: sql, when: "replied"}\n',
        "  - {from: mql, to: sql, when: \"visited('pricing', since='subscriber')\"}\n"
        "  - {from: sql, to: mql, when: \"not visited and score < 60\"}\n")
    path = funnel(tmp_path, body)
    assert lint(path, "FNL303") == []
    path.write_text(path.read_text().replace("not visited and", "not visited('demo') and"), encoding="utf-8")
    [problem] = lint(path, "FNL303")
    assert "mql → sql → mql" in problem.message
    assert "visited('pricing', since='subscriber')" in problem.message and "not visited('demo')" in problem.message


@pytest.mark.parametrize("forward", ["attended('q3-live', since='subscriber')",
                                     "score < 50 and visited('pricing', since='subscriber')"])
def test_a_loop_whose_move_needs_an_event_since_entering_the_stage_cannot_bounce(tmp_path: Path,
                                                                                  forward: str) -> None:
    body = LOOP.replace("BACK", "score < 20").replace('"score >= thresholds.mql"', f'"{forward}"')
    path = funnel(tmp_path, body)
    assert lint(path, "FNL303") == []
    # since= another stage than the one it leaves does not reset on the way round
    path.write_text(path.read_text().replace("since='subscriber'", "since='sql'"), encoding="utf-8")
    [problem] = lint(path, "FNL303")
    assert "subscriber → mql → subscriber" in problem.message


def test_enum_choices_that_exclude_each_other(tmp_path: Path) -> None:
    body = ("profile: {industry: {enum: [saas, finance]}}\n" + LOOP.replace("BACK", "industry != 'saas'")
            .replace('"replied"', '"replied"').replace('when: "score >= thresholds.mql"',
                                                        "when: \"score >= thresholds.mql and industry == 'saas'\""))
    path = funnel(tmp_path, body)
    assert lint(path, "FNL303") == []


# ---------------------------------------------------------------- suppression comments

SUPPRESSIBLE = """\
stages: [subscriber, mql]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {send: nurture/insight}
      - {wait: 2d, send: nurture/case-study, variants: {a: 50, b: 30}}  COMMENT
    exit: {stage_at_least: mql}
""" + ENTRY
AB = EMAIL.replace("SUBJECT", "{% if variant == 'b' %}30% faster{% else %}How Northwind cut their cycle{% endif %}")


def suppressible(tmp_path: Path, comment: str) -> Path:
    return funnel(tmp_path, SUPPRESSIBLE.replace("COMMENT", comment),
                  {"nurture/case-study": AB.replace("BODY", "Northwind's story.")}, ("nurture/insight",))


def test_a_suppression_with_its_reason_is_quiet(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[FNL309] variant b is throttled while legal reviews it")
    assert lint(path) == []


@pytest.mark.parametrize("comment", ["# fnl: ignore[FNL309]", "# fnl: ignore[FNL309]   ", "# fnl: ignore[FNL309] -"])
def test_a_suppression_without_a_reason_is_a_finding(tmp_path: Path, comment: str) -> None:
    path = suppressible(tmp_path, comment)
    [problem] = lint(path)
    assert (problem.code, problem.severity) == ("FNL022", "warning")
    assert problem.location.line == line_of(path, "fnl: ignore")
    assert problem.location.column == path.read_text().splitlines()[problem.location.line - 1].index("#") + 1
    assert problem.message == "suppression of FNL309 gives no reason"
    assert "# fnl: ignore[FNL309] <why" in problem.help
    assert lint(path, "FNL3") == []  # it still silences FNL309; FNL022 is not selected


def test_a_suppression_of_an_unknown_rule_says_so_and_guesses(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[FNL390] variant b is throttled")
    problems = lint(path)
    assert spots(problems) == [("FNL309", line_of(path, "variants")), ("FNL021", line_of(path, "fnl: ignore"))]
    unknown = problems[1]
    assert unknown.message == ("suppression of FNL390: `FNL390` is not the ID of a lint rule, so the comment "
                               "silences nothing")
    assert unknown.help.startswith("did you mean FNL309?")
    assert "problem it silenced is gone" not in unknown.help


def test_a_suppression_naming_a_prefix_asks_for_the_whole_id(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[FNL3] variant b is throttled")
    problems = lint(path)
    assert spots(problems) == [("FNL309", line_of(path, "variants")), ("FNL021", line_of(path, "fnl: ignore"))]
    assert "whole rule IDs, not a prefix: such as FNL301" in problems[1].help


def test_a_stale_suppression_says_the_rule_finds_nothing_there(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[FNL309, FNL405] variant b is throttled")
    [problem] = lint(path)
    assert problem.code == "FNL020"
    assert problem.message == "suppression of FNL405 matches nothing on this line or the next"
    assert problem.help.startswith("FNL405 no longer finds anything here: remove the comment")



def test_a_suppression_of_the_wrong_rule_asks_for_the_one_reported_there(tmp_path: Path) -> None:
    """The ID was mistyped rather than the problem fixed: FNL309 is reported on the very
    line, so the hint names it instead of saying the problem is gone."""
    path = suppressible(tmp_path, "# fnl: ignore[FNL405] variant b is throttled")
    problems = lint(path)
    assert spots(problems) == [("FNL309", line_of(path, "variants")), ("FNL020", line_of(path, "fnl: ignore"))]
    stale = problems[1]
    assert stale.help.startswith("did you mean FNL309, reported on this line? write `# fnl: ignore[FNL309] <reason>`")
    assert "no longer finds" not in stale.help


def test_a_suppression_may_name_the_rule_by_its_name(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[variant-weights] variant b is throttled while legal reviews it")
    assert lint(path) == []
    path = suppressible(tmp_path, "# fnl: ignore[variant-weights, send-in-quiet-hours] variant b is throttled")
    [problem] = lint(path)
    assert problem.code == "FNL020"
    assert problem.message == "suppression of FNL405 matches nothing on this line or the next"


def test_a_suppression_of_an_unknown_name_guesses_by_name(tmp_path: Path) -> None:
    path = suppressible(tmp_path, "# fnl: ignore[variant-weight] variant b is throttled")
    problems = lint(path)
    assert spots(problems) == [("FNL309", line_of(path, "variants")), ("FNL021", line_of(path, "fnl: ignore"))]
    assert problems[1].message == ("suppression of variant-weight: `variant-weight` is not the ID or name of a "
                                   "lint rule, so the comment silences nothing")
    assert problems[1].help.startswith("did you mean variant-weights?")

# ---------------------------------------------------------------- FNL306: no exit, but every later stage stops it

NO_EXIT = """\
stages: [subscriber, mql, sql, customer]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
  - {from: mql, to: sql, when: "replied"}
  - {from: sql, to: customer, on: crm.deal_won}
sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {send: nurture/insight}
      - {wait: 3d, send: nurture/case-study}
handoff:
  HANDOFF
""" + ENTRY


def test_no_exit_is_fine_where_every_later_stage_suppresses_the_sequence(tmp_path: Path) -> None:
    for suppress in ("[nurture, broadcast]", "[nurture]"):
        path = funnel(tmp_path, NO_EXIT.replace("HANDOFF", f"sql: {{assign: {{owner: ana@acme.example}}, "
                                                f"suppress: {suppress}}}"), sends=("nurture/insight",
                                                                                   "nurture/case-study"))
        assert lint(path, "FNL306") == []


def test_no_exit_where_only_some_later_stages_suppress_names_the_others(tmp_path: Path) -> None:
    body = NO_EXIT.replace("stage: [subscriber, mql]", "stage: subscriber").replace(
        "HANDOFF", "sql: {assign: {owner: ana@acme.example}, suppress: [nurture]}")
    path = funnel(tmp_path, body, sends=("nurture/insight", "nurture/case-study"))
    [problem] = lint(path, "FNL306")
    assert problem.severity == "error"
    assert problem.message == ("nurture sequence `nurture` has no exit criteria: leads that move on to `mql` keep "
                               "getting it (a handoff suppresses it only in `sql` or `customer`)")
    assert problem.help.startswith("add `exit: {stage_at_least: mql}`, or `suppress: [nurture]` to a handoff at `mql`")


def test_no_exit_and_no_suppression_is_still_an_error(tmp_path: Path) -> None:
    body = NO_EXIT.replace("HANDOFF", "sql: {assign: {owner: ana@acme.example}, suppress: [broadcast]}")
    path = funnel(tmp_path, body, sends=("nurture/insight", "nurture/case-study"))
    [problem] = lint(path, "FNL306")
    assert "leads that move on to `sql` or `customer` keep getting it" in problem.message


# ---------------------------------------------------------------- causes before consequences

MISSPELT_STAGE = """\
stages: [subscriber, mql, opportunity, customer, orphan]
terminal_stages: [customer, orphan]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
  - {from: mql, to: oportunity, on: crm.opportunity_opened}
  - {from: opportunity, to: customer, on: crm.deal_won}
""" + ENTRY


def test_a_misspelt_stage_is_reported_without_the_stages_it_cuts_off(tmp_path: Path) -> None:
    path = funnel(tmp_path, MISSPELT_STAGE)
    problems = lint(path)
    # `orphan` is out of reach whatever the spelling: that one is a problem of its own.
    assert spots(problems) == [("FNL301", line_of(path, "stages:")), ("FNL204", line_of(path, "oportunity"))]
    assert problems[0].message == "no lead can reach stage `orphan`"
    assert problems[1].help == "did you mean `opportunity`?"
    # Without the rule that reports the cause, its consequences are still reported.
    cut_off = lint(path, "FNL301")
    assert sorted(p.message for p in cut_off) == ["no lead can reach stage `customer`",
                                                  "no lead can reach stage `opportunity`",
                                                  "no lead can reach stage `orphan`"]


def test_a_misspelt_entry_stage_is_reported_alone(tmp_path: Path) -> None:
    body = MISSPELT_STAGE.replace("oportunity", "opportunity").replace("enters: subscriber", "enters: subscribr")
    body = body.replace("stages: [subscriber, mql, opportunity, customer, orphan]",
                        "stages: [subscriber, mql, opportunity, customer]").replace("customer, orphan]", "customer]")
    path = funnel(tmp_path, body)
    problems = lint(path)
    assert spots(problems) == [("FNL204", line_of(path, "subscribr"))]


# ---------------------------------------------------------------- FNL220: syntax errors where the mistake is

ONE_EMAIL = """\
profile: {company: {type: string}}
stages: [subscriber, mql]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
sequences:
  nurture: {kind: nurture, stage: subscriber, steps: [{send: nurture/insight}], exit: {stage_at_least: mql}}
""" + ENTRY


@pytest.mark.parametrize("body, line, column, tag, reached", [
    ("<p>Hi,</p>\n<p>{% if lead.company %}At {{ lead.company }}, deals stall.</p>", 5, 4,
     "{% if lead.company %}", "`{% endblock %}` on line 7"),
    ("<ul>\n{%- for n in [1, 2] %}<li>{{ n }}</li>\n</ul>", 5, 1, "{%- for n in [1, 2] %}",
     "`{% endblock %}` on line 8"),
    ("<p>{% if lead.company %}{% if lead.company|length > 3 %}At {{ lead.company }}{% endif %}</p>", 4, 4,
     "{% if lead.company %}", "`{% endblock %}` on line 6"),
])
def test_an_unclosed_tag_is_reported_at_its_opening(tmp_path: Path, body: str, line: int, column: int, tag: str,
                                                    reached: str) -> None:
    template = EMAIL.replace("SUBJECT", "Three numbers").replace("<p>BODY</p>", body, 1).replace("BODY", "Deals.")
    path = funnel(tmp_path, ONE_EMAIL, {"nurture/insight": template})
    [problem] = lint(path, "FNL220")
    assert (problem.location.line, problem.location.column) == (line, column)
    assert problem.location.file.endswith("nurture/insight.j2")
    assert problem.message == (f"nurture/insight: template syntax: `{tag}` is never closed: Jinja2 reached "
                               f"{reached} still inside it")
    end = "endif" if "if" in tag else "endfor"
    assert problem.help.startswith(f"add `{{% {end} %}}` where the")


def test_a_block_left_open_at_the_end_is_reported_at_the_block(tmp_path: Path) -> None:
    template = EMAIL.replace("SUBJECT", "Three numbers").replace("BODY", "Deals.")
    template = template[:template.rindex("{%- endblock %}")]
    path = funnel(tmp_path, ONE_EMAIL, {"nurture/insight": template})
    [problem] = lint(path, "FNL220")
    assert (problem.location.line, problem.location.column) == (line_of(tmp_path / "templates/nurture/insight.j2",
                                                                        "block text"), 1)
    assert "`{% block text -%}` is never closed: Jinja2 reached the end of the template" in problem.message


def test_a_misspelt_end_tag_is_reported_at_the_tag_with_a_guess(tmp_path: Path) -> None:
    template = EMAIL.replace("SUBJECT{% endblock %}", "Three numbers{% endblok %}").replace("BODY", "Deals.")
    path = funnel(tmp_path, ONE_EMAIL, {"nurture/insight": template})
    [problem] = lint(path, "FNL220")
    assert (problem.location.line, problem.location.column) == (1, 33)
    assert problem.help == "did you mean `{% endblock %}`?"


# ---------------------------------------------------------------- FNL225, FNL226: A/B variant names in templates

AB_TRACK = """\
stages: [subscriber, mql]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {send: nurture/case-study, variants: {curiosity: 50, numbers: 50}}
      - {wait: 3d, send: nurture/insight}
    exit: {stage_at_least: mql}
  broadcast:
    kind: broadcast
    stage: subscriber
    steps:
      - {wait: 7d, send: nurture/case-study, variants: {story: 50, numbers: 50}}
    exit: {stage_at_least: mql}
""" + ENTRY


def ab_email(test: str) -> str:
    return EMAIL.replace("SUBJECT", f"{{% if {test} %}}Week two at Northwind{{% else %}}Northwind, 30% faster"
                                    "{% endif %}").replace("BODY", "Northwind's story.")


@pytest.mark.parametrize("test, guess", [
    ('variant == "curiousity"', "curiosity"),
    ("variant != 'numbrs'", "numbers"),
    ("variant in ['story', 'stroy']", "story"),
    ("variant not in ('curiosity', 'numbers', 'control')", None),
    ("'curiousity' == variant", "curiosity"),
])
def test_a_variant_name_no_sending_step_has_is_located_with_a_guess(tmp_path: Path, test: str, guess: str) -> None:
    path = funnel(tmp_path, AB_TRACK, {"nurture/case-study": ab_email(test)}, ("nurture/insight",))
    [problem] = lint(path, "FNL225")
    bad = {"curiosity": "curiousity", "numbers": "numbrs", "story": "stroy", None: "control"}[guess]
    source = (tmp_path / "templates/nurture/case-study.j2").read_text().splitlines()[0]
    assert (problem.location.line, problem.location.column) == (1, source.index(bad) )
    assert problem.location.file.endswith("templates/nurture/case-study.j2")
    # Both steps that send it count: story is a variant of the broadcast's step only.
    assert problem.message.startswith(f"`{bad}` in `variant " if "in " in test else "`")
    assert f"{bad}" in problem.message.split("` names")[0]
    assert problem.message.endswith("` names no variant of the steps that send this email "
                                    "(they have `curiosity`, `numbers`, `story`)")
    assert "no step sending it" not in problem.message
    assert problem.help == (f"did you mean `{guess}`?" if guess else "compare with one of `curiosity`, `numbers`, "
                            "`story`, or add `control` to the step's `variants:`")


def test_variant_names_of_every_sending_step_are_known(tmp_path: Path) -> None:
    path = funnel(tmp_path, AB_TRACK, {"nurture/case-study": ab_email("variant in ['curiosity', 'story']")},
                  ("nurture/insight",))
    assert lint(path) == []


def test_an_email_sent_as_variants_that_never_reads_variant_is_a_warning(tmp_path: Path) -> None:
    path = funnel(tmp_path, AB_TRACK, sends=("nurture/insight", "nurture/case-study"))
    problems = lint(path)
    assert [(p.code, p.severity, p.location.line) for p in problems] == [
        ("FNL226", "warning", line_of(path, "{curiosity: 50")), ("FNL226", "warning", line_of(path, "{story: 50"))]
    assert problems[0].message == ("the variants `curiosity` and `numbers` of nurture/case-study are the same email: "
                                   "the template never reads `variant`, so the A/B test compares nothing")
    assert "`{% if variant == 'numbers' %}" in problems[0].help


# ---------------------------------------------------------------- FNL501, FNL509: what a lead can score

SCORED = """\
stages: [subscriber, mql, sql]
scoring:
  events: EVENTS
  DECAY
  thresholds: {mql: MQL}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
  - {from: mql, to: sql, when: "replied"}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {send: nurture/a}
      - {wait: 2d, send: nurture/b}
      - {wait: 3d, send: nurture/c}
      - {wait: 4d, send: nurture/d}
      - {wait: 5d, send: nurture/e}
      - {wait: 7d, send: nurture/f}
    exit: {stage_at_least: sql}
  sales:
    kind: sales
    stage: sql
    steps:
      - {send: sales/a}
      - {wait: 2d, send: sales/b}
    exit: {on: [crm.deal_won]}
handoff:
  sql: {assign: {owner: ana@acme.example}, suppress: [nurture, broadcast]}
""" + ENTRY
NURTURE = tuple(f"nurture/{c}" for c in "abcdef") + ("sales/a", "sales/b")


def scored(tmp_path: Path, events: str, decay: str, mql: int, extra: str = "") -> Path:
    body = SCORED.replace("EVENTS", events).replace("DECAY", decay).replace("MQL", str(mql)) + extra
    return funnel(tmp_path, body, sends=NURTURE)


def test_a_threshold_far_above_realistic_engagement_is_found_though_visits_score(tmp_path: Path) -> None:
    """The old bound went silent as soon as a site visit scored; the realistic one does not."""
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, site.visited: 2}", "decay: {half_life: 14d}", 400)
    [problem] = lint(path, "FNL501")
    assert problem.location.line == line_of(path, "thresholds:")
    # The sales emails go out only after sql, so they do not count toward mql.
    assert problem.message == ("threshold `mql` is 400, but a lead scores at most about 60 in its first 30 days: "
                               "6 emails × up to 15 (5 open + 10 click) + a site visit twice a week (2 each), "
                               "decaying with a 14d half-life")
    assert problem.help == ("lower it to what engaged leads reach, or score more events (the estimate assumes every "
                            "email opened, clicked and replied to the day it arrives, a site visit twice a week, "
                            "each at the best page's points)")


def test_a_threshold_far_above_a_keen_leads_pricing_visits_and_webinars_is_found(tmp_path: Path) -> None:
    """A pricing page worth 20 and a webinar worth 30 are scored, as in nearly every real
    funnel; 400 is still out of reach for a lead that engages with every email, looks at
    pricing twice a week and attends a webinar a month."""
    events = "{email.opened: 5, email.clicked: 10, email.replied: 25, site.visited.pricing: 20, webinar.attended: 30}"
    path = scored(tmp_path, events, "decay: {half_life: 30d}", 400, "crm: {events: []}\n")
    [problem] = lint(path, "FNL501")
    assert "twice a week (20 each) + one `webinar.attended` a month (30 each)" in problem.message
    assert lint(scored(tmp_path, events, "decay: {half_life: 30d}", 150, "crm: {events: []}\n"), "FNL501") == []


@pytest.mark.parametrize("mql", [40, 55])
def test_a_threshold_keen_leads_reach_passes(tmp_path: Path, mql: int) -> None:
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, site.visited: 2}", "decay: {half_life: 14d}", mql)
    assert lint(path, "FNL5") == []


def test_without_decay_visits_add_up_over_the_window(tmp_path: Path) -> None:
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, site.visited: 10}", "", 400)
    [problem] = lint(path, "FNL501")
    assert "at most about 180 in its first 30 days: 6 emails × up to 15 (5 open + 10 click) + a site visit twice a " \
           "week (10 each)" in problem.message
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, site.visited: 10}", "", 180)
    assert lint(path, "FNL501") == []


def test_other_repeatable_events_count_once_a_month(tmp_path: Path) -> None:
    path = scored(tmp_path, "{email.clicked: 10, webinar.attended: 25}", "", 400, "crm: {events: []}\n")
    [problem] = lint(path, "FNL501")
    assert "6 emails × up to 10 (10 click) + one `webinar.attended` a month (25 each)" in problem.message
    assert problem.message.startswith("threshold `mql` is 400, but a lead scores at most about 85 ")
    assert "each other repeatable event once a month" in problem.help


def test_with_nothing_repeatable_and_no_decay_the_bound_is_exact(tmp_path: Path) -> None:
    path = scored(tmp_path, "{email.opened: 1, email.clicked: 2, email.replied: 3}", "", 37)
    [problem] = lint(path, "FNL501")
    assert problem.message == ("threshold `mql` is 37, but a lead can score at most 36: 6 emails × up to 6 (1 open + "
                               "2 click + 3 reply)")
    assert lint(scored(tmp_path, "{email.opened: 1, email.clicked: 2, email.replied: 3}", "", 36), "FNL501") == []


def test_counting_repeats_multiplies_email_engagement(tmp_path: Path) -> None:
    events = "{email.opened: 1, email.clicked: 2, email.replied: 3}\n  count_repeats: true"
    path = scored(tmp_path, events, "decay: {half_life: 90d}", 200)
    [problem] = lint(path, "FNL501")
    assert "6 emails × 18 (3 open + 6 click + 9 reply), each counted 3 times" in problem.message


def test_a_lead_gets_one_segments_track(tmp_path: Path) -> None:
    """Six emails for saas leads, two for finance leads: a lead gets one track, not eight emails."""
    body = SCORED.replace("EVENTS", "{email.clicked: 10, site.visited: 1}").replace(
        "DECAY", "decay: {half_life: 30d}").replace("MQL", "120")
    body = body.replace("    kind: nurture\n    stage: subscriber\n",
                        "    kind: nurture\n    stage: subscriber\n    segment: saas\n")
    body = body.replace("  sales:\n", """\
  finance-track:
    kind: nurture
    stage: subscriber
    segment: finance
    steps: [{send: nurture/a}, {wait: 1d, send: nurture/b}]
    exit: {stage_at_least: sql}
  sales:
""")
    profile = ("profile: {industry: {enum: [saas, finance]}}\n"
               "segments: {saas: {when: \"industry == 'saas'\"}, finance: {when: \"industry == 'finance'\"}}\n")
    path = funnel(tmp_path, profile + body, sends=NURTURE)
    [problem] = lint(path, "FNL501")
    assert "6 emails × up to 10 (10 click) + a site visit twice a week (1 each)" in problem.message


def test_a_half_life_in_the_wrong_unit_is_the_cause_not_the_threshold(tmp_path: Path) -> None:
    events = "{email.opened: 5, email.clicked: 10, email.replied: 25}"
    path = scored(tmp_path, events, "decay: {half_life: 12h}", 60)
    [problem] = lint(path)
    assert (problem.code, problem.location.line) == ("FNL509", line_of(path, "half_life"))
    assert problem.message == ("a half-life of 12h is far shorter than the typical 4d between emails: by the next "
                               "email a lead keeps 0.4% of an email's points, so `mql` (60; at most about 42) is out "
                               "of reach")
    assert problem.help.startswith("did you mean `half_life: 12d`? With it a lead could score about ")
    # Asked alone, FNL501 still reports the threshold (its cause did not run).
    assert [p.code for p in lint(path, "FNL501")] == ["FNL501"]


def test_factor_every_hour_is_a_unit_mistake_too(tmp_path: Path) -> None:
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, email.replied: 25}",
                  "decay: {factor: 0.5, every: 1h}", 60)
    [problem] = lint(path, "FNL509")
    assert problem.location.line == line_of(path, "every: 1h")
    assert problem.message.startswith("decay ×0.5 every 1h (a half-life of 1h) is far shorter than the typical 4d")
    assert "keeps almost none of an email's points" in problem.message
    assert problem.help.startswith("did you mean `every: 1w`? With it a lead could score about ")


@pytest.mark.parametrize("decay", ["decay: {half_life: 12d}", "decay: {half_life: 2d}",
                                   "decay: {factor: 0.9, every: 1d}"])
def test_a_decay_thresholds_survive_is_fine(tmp_path: Path, decay: str) -> None:
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, email.replied: 25}", decay, 60)
    assert lint(path, "FNL5") == []


def test_a_threshold_another_unit_would_not_rescue_is_still_the_thresholds_problem(tmp_path: Path) -> None:
    """Points evaporating is FNL509 however high the threshold; the threshold that even
    the longer unit leaves out of reach is FNL501's."""
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10}", "decay: {half_life: 12h}", 1000)
    problems = lint(path, "FNL5")
    assert sorted(p.code for p in problems) == ["FNL501", "FNL509"]
    fast = next(p for p in problems if p.code == "FNL509")
    assert fast.message.endswith("so points evaporate between emails instead of adding up")
    assert fast.help == "did you mean `half_life: 12d`?"


@pytest.mark.parametrize("mql", [20, 30])
def test_points_evaporating_between_emails_is_reported_however_low_the_threshold(tmp_path: Path, mql: int) -> None:
    """A lead reaches a low threshold with one email, but nothing it does adds up: the
    12h half-life against emails days apart is the mistake, not the threshold."""
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, email.replied: 25}", "decay: {half_life: 12h}", mql)
    [problem] = lint(path, "FNL5")
    assert (problem.code, problem.location.line) == ("FNL509", line_of(path, "half_life"))
    assert problem.message == ("a half-life of 12h is far shorter than the typical 4d between emails: by the next "
                               "email a lead keeps 0.4% of an email's points, so points evaporate between emails "
                               "instead of adding up")
    assert problem.help == "did you mean `half_life: 12d`?"


@pytest.mark.parametrize("decay", ["decay: {half_life: 1d}", "decay: {half_life: 1d12h}", "decay: {half_life: 600w}"])
def test_a_decay_near_the_gap_or_without_a_plausible_longer_unit_is_not_a_unit_mistake(tmp_path: Path,
                                                                                     decay: str) -> None:
    path = scored(tmp_path, "{email.opened: 5, email.clicked: 10, email.replied: 25}", decay, 20)
    assert "FNL509" not in [p.code for p in lint(path, "FNL5")]


def test_loops_over_many_different_flags_are_judged_quickly(tmp_path: Path) -> None:
    """Thirty moves forward, each on one of two clicks, and a move back only for a lead
    that never clicked: no loop can bounce, and the search must not try 2^30 paths."""
    import time

    stages = [f"s{i:02d}" for i in range(30)]
    rows = [f"  - {{from: {a}, to: {b}, when: \"clicked('x{i}') or clicked('y{i}')\"}}"
            for i, (a, b) in enumerate(zip(stages, stages[1:]))]
    body = (f"stages: [{', '.join(stages)}, done]\n"
            "entries: {imported: {on: lead.imported, enters: s00, basis: legitimate_interest}}\n"
            "transitions:\n" + "\n".join(rows) + "\n  - {from: s29, to: s00, when: \"not clicked\"}\n"
            "  - {from: s00, to: done, on: crm.deal_won}\n")
    path = funnel(tmp_path, body)
    started = time.perf_counter()
    assert lint(path, "FNL303") == []
    path.write_text(path.read_text().replace('"not clicked"', "\"not clicked('z')\""), encoding="utf-8")
    [problem] = lint(path, "FNL303")
    assert time.perf_counter() - started < 5
    witness = problem.message[problem.message.index("as for a lead with"):]
    assert "clicked('x0') and clicked('x1') and clicked('x10')" in witness
    assert witness.endswith("clicked('x9') and not clicked('z')`")


def test_when_conditions_are_too_many_to_compare_the_loop_is_still_reported(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.lint.rules import transition_cycle

    monkeypatch.setattr(transition_cycle, "MAX_STATES", 1)
    path = funnel(tmp_path, LOOP.replace("BACK", "score < 20"))
    [problem] = lint(path, "FNL303")
    assert problem.message.startswith("transitions form a loop subscriber → mql → subscriber, with more conditions "
                                      "than fnl can compare: `score >= thresholds.mql` (subscriber → mql); "
                                      "`score < 20` (mql → subscriber)")


# ---------------------------------------------------------------- FNL401: steps that exclude each other

CAP = """\
stages: [subscriber, mql]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {send: a}
      - {wait: 1d, send: b}
      - {wait: 1d, send: c, when: "attended('q3-live')"}
      - {wait: 1d, send: d, SECOND}
    exit: {stage_at_least: mql}
policies:
  frequency_cap: {max: 3, per: 7d}
""" + ENTRY


@pytest.mark.parametrize("second", ["unless: \"attended('q3-live')\"", "when: \"not attended('q3-live')\""])
def test_steps_that_exclude_each_other_count_once_against_the_cap(tmp_path: Path, second: str) -> None:
    path = funnel(tmp_path, CAP.replace("SECOND", second), sends="abcd")
    assert lint(path, "FNL401") == []


def test_steps_that_can_both_send_count_twice_and_the_window_reads_as_written(tmp_path: Path) -> None:
    path = funnel(tmp_path, CAP.replace("SECOND", "unless: \"attended('q4-live')\""), sends="abcd")
    [problem] = lint(path, "FNL401")
    assert problem.message == "`nurture` sends 4 emails within 7d from day 0, over the cap of 3"
    assert "no 7d holds" in problem.help


# ---------------------------------------------------------------- FNL402: only sequences that can start

NEVER = """\
stages: [subscriber, mql, sql, customer]
transitions:
  - {from: subscriber, to: mql, when: "score >= 40"}
  - {from: mql, to: sql, when: "replied"}
  - {from: sql, to: customer, on: crm.deal_won}
sequences:
  late-nurture:
    kind: nurture
    stage: sql
    steps: [{send: a}, {wait: 2d, send: b}]
    exit: {stage_at_least: customer}
  sql-news:
    kind: broadcast
    stage: sql
    steps: [{send: c}, {wait: 3d, send: d}]
    exit: {stage_at_least: customer}
handoff:
  sql:
    assign: {owner: ana@acme.example}
    suppress: [SUPPRESSED]
policies:
  frequency_cap: {max: 3, per: 7d}
""" + ENTRY


def test_a_sequence_that_can_never_start_runs_with_nothing(tmp_path: Path) -> None:
    path = funnel(tmp_path, NEVER.replace("SUPPRESSED", "nurture"), sends="abcd")
    assert [p.code for p in lint(path, "FNL211", "FNL402")] == ["FNL211"]
    path = funnel(tmp_path, NEVER.replace("SUPPRESSED", "lead-magnet"), sends="abcd")
    assert [p.code for p in lint(path, "FNL211", "FNL402")] == ["FNL402"]
