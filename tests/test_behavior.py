"""Behaviour models (`*.behavior.yaml`), the input of `fnl simulate`: the shipped ones load
clean against their funnels and pass an independent validator of
`schemas/behavior.schema.json`; the reference one says exactly what REFERENCE_FUNNEL.md
says; bad files give one located problem each; the model sits where `find_behavior`
looks; and without a file fnl's defaults are listed as assumptions."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import REPO, built_package
from engine.errors import EXIT_PROBLEMS, ProblemsFound, UsageError
from engine.pipeline import plan_for
from engine.plan import Plan
from engine.report.text import problem_block
from engine.simulate import DEFAULTS, Behavior, find_behavior, load_behavior
from engine.simulate.behavior import MAX_LEADS, Delay, EmailRates, Hours, check_behavior
from test_schema import (bare_one_ofs, failing_examples, foreign_keywords, open_objects, undocumented_properties,
                         walk)

SCHEMA_PATH = REPO / "schemas" / "behavior.schema.json"
SCHEMA: Dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

SHIPPED = [("funnels/reference.yaml", "funnels/reference.behavior.yaml"),
           ("funnels/newsletter-to-demo.yaml", "funnels/newsletter-to-demo.behavior.yaml"),
           ("funnels/acme", "funnels/acme/acme.behavior.yaml")]

_PLANS: Dict[str, Plan] = {}


def plan(funnel: str) -> Plan:
    if funnel not in _PLANS:
        _PLANS[funnel] = plan_for(str(REPO / funnel))
    return _PLANS[funnel]


# -- the shipped models -------------------------------------------------------------------

@pytest.mark.parametrize("funnel,model", SHIPPED)
def test_shipped_models_load_clean_and_are_found_beside_their_funnel(funnel, model):
    assert find_behavior(REPO / funnel) == REPO / model
    assert check_behavior(REPO / model, plan(funnel)) == ()
    behavior = load_behavior(REPO / model, plan(funnel))
    assert behavior.funnel == plan(funnel).funnel and behavior.source is not None
    assert behavior.expected_leads > 0
    # Every profile attribute of the funnel has a way to be drawn, in the funnel's order.
    assert [m.name for m in behavior.profile] == [a.name for a in plan(funnel).profile]
    # A shipped model says everything that moves the forecast: what it leaves to fnl is at
    # most made-up text and, where the funnel sets none, sales capacity.
    assert all(line.startswith("profile: first_name made up per lead") for line in behavior.assumptions), \
        behavior.assumptions


def test_the_reference_model_is_the_benchmark_spec():
    """REFERENCE_FUNNEL.md, item by item."""
    b = load_behavior(REPO / "funnels/reference.behavior.yaml", plan("funnels/reference.yaml"))
    assert b.horizon_minutes == 120 * 1440
    [arrival] = b.arrivals
    # Opt-in day uniform over days 0..29, one day being one engine minute.
    assert (arrival.source, arrival.kind, arrival.start, arrival.end) == ("guide", "magnet", 0, 30 * 1440)
    assert b.timing.same_minute and b.timing.at == 12 * 60
    assert b.attribute("industry").values == (("saas", 0.5), ("manufacturing", 0.3), ("finance", 0.2))
    assert b.attribute("industry").missing == 0
    opens = {"saas": 0.35, "manufacturing": 0.25, "finance": 0.30}
    for industry, open_ in opens.items():
        for template in [t.name for t in plan("funnels/reference.yaml").templates]:
            assert b.email.rates_for(template, profile={"industry": industry}) == \
                EmailRates(open=open_, click=0.20, reply=0.02, unsubscribe=0.005, bounce=0.0)
    v = b.visits
    assert (v.daily, v.after_click_daily, v.after_click_minutes) == (0.01, 0.05, 7 * 1440)
    assert v.pages == (("pricing", 0.3),) and v.stages == ("subscriber", "mql")
    assert b.crm == ()


def test_acme_rates_fall_back_from_the_most_specific_level():
    b = load_behavior(REPO / "funnels/acme/acme.behavior.yaml", plan("funnels/acme"))
    exec_saas = dict(persona="executive", segment="saas", profile={"industry": "saas"})
    # variant > template > persona > segment > default, rate by rate
    assert b.email.rates_for("saas/case-study", variant="b", **exec_saas) == \
        EmailRates(open=0.22, click=0.15, reply=0.015, unsubscribe=0.004, bounce=0.006)
    assert b.email.rates_for("saas/capability", **exec_saas).click == 0.07
    assert b.email.rates_for("saas/capability", segment="saas").open == 0.31
    assert b.email.rates_for("saas/capability").open == 0.27
    assert b.email.rates_for("magnets/roi-calculator", **exec_saas).open == 0.70
    assert [r.name for r in b.crm][:3] == ["acceptance", "time-to-opportunity", "win-rate"]
    assert b.capacity is not None and b.capacity.for_rep("kenji.sato@acme.example") == 8
    assert b.capacity.for_rep("ana.silva@acme.example") == 25
    webinar = next(a for a in b.arrivals if a.source == "webinar")
    assert b.attribute("role", webinar).values[0] == ("cxo", 0.1)
    assert b.attribute("role").values[0] == ("cxo", 0.06)


# -- the schema as a contract -------------------------------------------------------------

@pytest.mark.parametrize("rule", [open_objects, undocumented_properties, foreign_keywords, bare_one_ofs,
                                  failing_examples])
def test_schema_follows_the_rules_of_the_funnel_schema(rule):
    assert rule(SCHEMA) == []
    assert len(list(walk(SCHEMA))) > 40


def test_schema_is_draft07():
    import jsonschema

    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def _check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA_PATH),
                           *map(str, files)], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_check_jsonschema_accepts_the_shipped_models():
    pytest.importorskip("check_jsonschema")
    done = _check_jsonschema(*(REPO / m for _, m in SHIPPED))
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_jsonschema_rejects_what_the_schema_forbids(tmp_path):
    pytest.importorskip("check_jsonschema")
    bad = tmp_path / "bad.behavior.yaml"
    bad.write_text("behavior: 1\nemail:\n  default: {open: 1.5}\n", encoding="utf-8")
    done = _check_jsonschema(bad)
    assert done.returncode == 1 and "1.5" in done.stdout


def test_the_installed_schema_is_found(tmp_path):
    """What pip installs (setuptools' build of the package, from pyproject.toml) holds
    engine.simulate and the behaviour schema, and fnl finds the schema there."""
    lib = built_package(tmp_path)
    assert (lib / "fnl_schemas" / "behavior.schema.json").is_file()
    assert not (lib / "schemas").exists()  # so fnl must find the schema as the installed package
    # Without site (-S): no editable install of this checkout may answer for the package;
    # the dependencies come from site-packages, after the built copy.
    probe = ("import sys, json; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
             "import engine, engine.simulate; from engine.validate import schema; "
             "assert engine.__file__.startswith(sys.argv[1]), engine.__file__; "
             "print(json.dumps(schema('behavior')))")
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(lib), sysconfig.get_paths()["purelib"]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == SCHEMA


# -- bad files: one located problem each --------------------------------------------------

# (name, file text, line:column, code, words in the message, words in the help)
BAD = [
    ("probability above 1", "behavior: 1\nemail:\n  default: {open: 1.5}\n",
     "3:19", "FNL105", "1.5 is out of range: must be at most 1", "from 0 to 1"),
    ("negative rate", "behavior: 1\narrivals:\n  whitepaper: {per_day: -3}\n",
     "3:25", "FNL105", "-3 is out of range: must be at least 0", ""),
    ("unknown segment", "behavior: 1\nemail:\n  by_segment:\n    sass: {open: 0.3}\n",
     "4:5", "FNL801", "`sass` is not a segment of funnel `acme-b2b`", "did you mean `saas`?"),
    ("unknown template", "behavior: 1\nemail:\n  by_template:\n    saas/case-studdy: {click: 0.2}\n",
     "4:5", "FNL801", "`saas/case-studdy` is not a template funnel `acme-b2b` sends",
     "did you mean `saas/case-study`?"),
    ("unknown variant",
     "behavior: 1\nemail:\n  by_template:\n    saas/case-study:\n      variants: {c: {click: 0.2}}\n",
     "5:18", "FNL801", "`c` is not an A/B variant of `saas/case-study`", "`a`, `b`"),
    ("unknown persona", "behavior: 1\nemail:\n  by_persona: {executiv: {reply: 0.02}}\n",
     "3:16", "FNL801", "`executiv` is not a persona", "did you mean `executive`?"),
    ("unknown lead magnet", "behavior: 1\narrivals:\n  white-paper: {leads: 10}\n",
     "3:3", "FNL801", "`white-paper` is not a lead magnet or entry", "did you mean `whitepaper`?"),
    ("unknown attribute", "behavior: 1\nprofile:\n  industy: {weights: {saas: 1}}\n",
     "3:3", "FNL801", "`industy` is not a profile attribute", "did you mean `industry`?"),
    ("unknown attribute value", "behavior: 1\nprofile:\n  industry:\n    weights: {saas: 5, fintech: 1}\n",
     "4:24", "FNL801", "`fintech` is not a value of `industry`", "`saas`, `manufacturing`, `finance`"),
    ("unknown stage", "behavior: 1\nvisits:\n  stages: [subscriber, sqll]\n",
     "3:24", "FNL801", "`sqll` is not a stage", "did you mean `sql`?"),
    ("unknown CRM event", "behavior: 1\ncrm:\n  win:\n    after: crm.opportunity_opened\n"
     "    outcomes: {crm.deal_wonn: {probability: 0.3}}\n",
     "5:16", "FNL801", "`crm.deal_wonn` is not a CRM event", "did you mean `crm.deal_won`?"),
    ("a CRM event written as a stage", "behavior: 1\ncrm:\n  win:\n    after: deal_won\n"
     "    outcomes: {crm.renewal_due: {probability: 1, delay: 275d}}\n",
     "4:12", "FNL801", "`deal_won` is not a stage", "did you mean `crm.deal_won`?"),
    ("unknown rep", "behavior: 1\nsales:\n  reps: {ana.silva@acme.example: 20, ben@acme.example: 5}\n",
     "3:38", "FNL801", "`ben@acme.example` is not a rep", "did you mean `ben.okafor@acme.example`?"),
    ("misspelt page", "behavior: 1\nvisits:\n  pages: {pricng: 0.2}\n",
     "3:11", "FNL801", "page `pricng`", "did you mean `pricing`?"),
    ("unknown key", "behavior: 1\nemail:\n  defualt: {open: 0.3}\n",
     "3:3", "FNL100", "unknown key `defualt` in email", "did you mean `default`?"),
    ("wrong type", "behavior: 1\nhorizon: 120\n",
     "2:10", "FNL102", "expected a string, found an integer", ""),
    ("wrong type of a delay", "behavior: 1\ntiming:\n  delays: {open: 5}\n",
     "3:18", "FNL102", "expected a string or a mapping, found an integer", ""),
    ("not a duration", "behavior: 1\nhorizon: 4 months\n",
     "2:10", "FNL104", "`4 months` is not a valid duration", "such as `2d`"),
    ("hour outside the day", "behavior: 1\ntiming:\n  hours: {from: \"25:00\", to: \"18:00\"}\n",
     "3:17", "FNL104", "`25:00`", "24-hour time"),
    ("empty window of the day", "behavior: 1\ntiming:\n  hours: {from: \"08:00\", to: \"08:00\"}\n",
     "3:10", "FNL802", "window from 08:00 to 08:00 is empty", ""),
    ("click without an open", "behavior: 1\nemail:\n  default: {open: 0, click: 0.2}\n",
     "3:29", "FNL802", "`click` is 0.2 but `open` is 0 here", "given an open"),
    ("click where nothing is ever opened", "behavior: 1\nemail:\n  default: {open: 0}\n  by_template:\n"
     "    saas/capability: {click: 0.2}\n",
     "5:30", "FNL802", "no email can be opened", "given an open"),
    ("outcomes above 1", "behavior: 1\ncrm:\n  win:\n    after: crm.opportunity_opened\n    outcomes:\n"
     "      crm.deal_won: {probability: 0.6}\n      crm.deal_lost: {probability: 0.6}\n",
     "5:5", "FNL802", "add up to 1.2", "lower them"),
    ("page shares above 1", "behavior: 1\nvisits:\n  pages: {pricing: 0.7, careers: 0.6}\n",
     "3:3", "FNL802", "add up to 1.3", "at most 1"),
    ("missing share of a required attribute", "behavior: 1\nprofile:\n  industry: {missing: 0.1}\n",
     "3:14", "FNL802", "`industry` is required by the funnel", "remove `missing`"),
    ("range below the attribute's minimum", "behavior: 1\nprofile:\n  employees:\n    range: {min: 0, max: 50}\n",
     "4:18", "FNL802", "0 is below the funnel's minimum for `employees` (1)", ""),
    ("range backwards", "behavior: 1\nprofile:\n  employees:\n    range: {min: 500, max: 50}\n",
     "4:28", "FNL802", "the range ends (50) below where it starts (500)", "swap"),
    ("weights for a number", "behavior: 1\nprofile:\n  employees: {weights: {'10': 1}}\n",
     "3:15", "FNL802", "`employees` is a number: give a `range`", ""),
    ("all weights zero", "behavior: 1\nprofile:\n  region: {weights: {na: 0, emea: 0}}\n",
     "3:21", "FNL802", "every weight is 0", ""),
    ("unknown timezone", "behavior: 1\nprofile:\n  timezone: {weights: {Europe/Berln: 1}}\n",
     "3:24", "FNL802", "`Europe/Berln` is not a known timezone", "did you mean `Europe/Berlin`?"),
    ("one rate through two attributes", "behavior: 1\nemail:\n  by_attribute:\n    industry: {saas: {open: 0.3}}\n"
     "    region: {emea: {open: 0.2}}\n",
     "5:5", "FNL802", "`open` is set by both `industry` and `region`", "one attribute only"),
    ("rates by a number attribute", "behavior: 1\nemail:\n  by_attribute:\n    employees: {'50': {open: 0.3}}\n",
     "4:5", "FNL802", "rates by `employees` need an attribute with listed values", ""),
    ("same minute with hours", "behavior: 1\ntiming:\n  day: same_minute\n  hours: {from: \"08:00\", to: \"18:00\"}\n",
     "4:3", "FNL802", "`hours` has no effect with `day: same_minute`", ""),
    ("part days with same minute", "behavior: 1\ntiming: {day: same_minute}\narrivals:\n"
     "  webinar: {leads: 10, window: {start: 0d, end: 36h}}\n",
     "4:32", "FNL802", "whole days", ""),
    ("arrivals after the horizon", "behavior: 1\nhorizon: 60d\narrivals:\n"
     "  webinar: {leads: 10, window: {start: 0d, end: 90d}}\n",
     "4:49", "FNL802", "after the horizon (60d)", "lengthen `horizon`"),
    ("empty arrival window", "behavior: 1\narrivals:\n  webinar: {leads: 10, window: {start: 9d, end: 9d}}\n",
     "3:32", "FNL802", "the window is empty", ""),
    ("count and rate", "behavior: 1\narrivals:\n  webinar: {leads: 10, per_day: 2}\n",
     "3:24", "FNL802", "`leads` and `per_day` cannot be combined", ""),
    ("neither count nor rate", "behavior: 1\narrivals:\n  webinar: {window: {start: 0d, end: 9d}}\n",
     "3:3", "FNL802", "neither how many nor how often", "add `leads:`"),
    ("delay that contradicts itself", "behavior: 1\ntiming:\n  delays: {open: {min: 2d, max: 1d}}\n",
     "3:33", "FNL802", "shorter than the shortest", "swap"),
    ("delay with min and mean", "behavior: 1\ntiming:\n  delays: {open: {min: 2d, mean: 3d}}\n",
     "3:28", "FNL802", "not `min` with `mean`", ""),
    ("a chain with no delay", "behavior: 1\ncrm:\n  loop:\n    after: crm.renewal_due\n"
     "    outcomes: {crm.renewal_due: {probability: 0.5}}\n",
     "5:16", "FNL802", "repeat forever in one minute", "delay"),
    ("another funnel's model", "behavior: 1\nfunnel: reference\n",
     "2:9", "FNL804", "for funnel `reference`, not `acme-b2b`", ""),
    ("huge count", "behavior: 1\narrivals:\n  webinar: {leads: 100000000000}\n",
     "3:20", "FNL105", "must be at most 10000000", ""),
    ("huge rate", "behavior: 1\nhorizon: 3650d\narrivals:\n  whitepaper: {per_day: 100000}\n",
     "3:1", "FNL803", "add up to 365,000,000 leads", ""),
    ("100-year horizon", "behavior: 1\nhorizon: 36500d\n",
     "2:10", "FNL803", "longer than ten years", "3650d"),
    ("huge delay", "behavior: 1\ntiming:\n  delays: {reply: 5000d}\n",
     "3:19", "FNL803", "longer than ten years", ""),
    ("number too large for any size", "behavior: 1\nsales: {leads_per_week: 1e400}\n",
     "2:25", "FNL012", "overflows to infinity", ""),
    ("anchor", "behavior: 1\nemail:\n  default: {open: &o 0.3}\n",
     "3:19", "FNL013", "anchor `&o` is not allowed", "behaviour models do not use anchors"),
    ("tag", "behavior: 1\nhorizon: !!python/object:os.system 1d\n",
     "2:10", "FNL013", "tag", ""),
    ("deep nesting", "behavior: 1\ndescription: " + "[" * 70 + "]" * 70 + "\n",
     "2:77", "FNL014", "nesting is deeper than 64 levels", "behaviour models never nest this deep"),
    ("duplicate key", "behavior: 1\nhorizon: 30d\nhorizon: 60d\n",
     "3:1", "FNL016", "duplicate key `horizon`: first defined at line 2", ""),
    ("YAML 1.1 boolean", "behavior: 1\nemail:\n  default: {open: yes}\n",
     "3:19", "FNL010", "`yes` is ambiguous", ""),
    ("two documents", "behavior: 1\n---\nbehavior: 1\n",
     "2:1", "FNL003", "more than one YAML document", ""),
    ("empty file", "\n\n",
     "1:1", "FNL004", "file is empty", "start with `behavior: 1`"),
    ("not a mapping", "- behavior: 1\n",
     "1:1", "FNL102", "expected a mapping, found a list", ""),
    ("no version", "horizon: 30d\n",
     "1:1", "FNL101", "missing required key `behavior`", ""),
    ("YAML syntax", "behavior: 1\nemail: {default: {open: 0.3}\n",
     "2:8", "FNL002", "YAML syntax error", "not closed"),
]


@pytest.mark.parametrize("name,text,where,code,message,help", BAD, ids=[c[0] for c in BAD])
def test_a_bad_model_gives_one_located_problem(tmp_path, name, text, where, code, message, help):
    path = tmp_path / "acme.behavior.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemsFound) as caught:
        load_behavior(path, plan("funnels/acme"))
    problems = caught.value.problems
    shown = "\n".join(line for p in problems for line in problem_block(p, False))
    assert len(problems) == 1, shown
    [p] = problems
    assert caught.value.exit_code == EXIT_PROBLEMS
    assert f"{p.location.file}:{p.location.line}:{p.location.column}" == f"{path}:{where}", shown
    first = problem_block(p, False)[0]
    assert first.startswith(f"{path}:{where}: error {code}"), shown
    assert message in p.message, shown
    assert help in p.help, shown


def test_every_problem_is_collected_in_one_run(tmp_path):
    """One bad name does not hide the next: a reviewer sees them all at once."""
    path = tmp_path / "x.behavior.yaml"
    path.write_text("behavior: 1\nemail:\n  by_segment: {sass: {open: 0.3}}\n  by_persona: {exec: {open: 0.2}}\n"
                    "visits: {stages: [mqll]}\n", encoding="utf-8")
    problems = check_behavior(path, plan("funnels/acme"))
    assert [(p.location.line, p.code) for p in problems] == [(3, "FNL801"), (4, "FNL801"), (5, "FNL801")]


def test_a_file_that_does_not_exist_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as caught:
        load_behavior(tmp_path / "nope.behavior.yaml", plan("funnels/reference.yaml"))
    assert caught.value.exit_code == 3 and "no such behaviour model" in caught.value.message
    with pytest.raises(UsageError) as caught:
        load_behavior(tmp_path, plan("funnels/reference.yaml"))
    assert "is a folder" in caught.value.message


def test_hostile_sizes_stay_bounded(tmp_path):
    """A file far past the loader's bounds is refused before it is parsed."""
    path = tmp_path / "big.behavior.yaml"
    path.write_text("behavior: 1\ndescription: '" + "x" * (2 * 1024 * 1024) + "'\n", encoding="utf-8")
    [p] = check_behavior(path, plan("funnels/reference.yaml"))
    assert p.code == "FNL005" and "split" not in p.help
    many = tmp_path / "many.behavior.yaml"
    many.write_text("behavior: 1\nvisits:\n  stages: [" + "mql," * 100_001 + "mql]\n", encoding="utf-8")
    [p] = check_behavior(many, plan("funnels/reference.yaml"))
    assert (p.code, p.message) == ("FNL014", "behaviour model has more than 100,000 values")


# -- where the model is found -------------------------------------------------------------

def test_find_behavior_beside_a_single_file_funnel(tmp_path):
    funnel = tmp_path / "x.yaml"
    funnel.write_text("fnl: 1\n", encoding="utf-8")
    assert find_behavior(funnel) is None
    (tmp_path / "y.behavior.yaml").write_text("behavior: 1\n", encoding="utf-8")
    assert find_behavior(funnel) is None  # another funnel's model
    (tmp_path / "x.behavior.yml").write_text("behavior: 1\n", encoding="utf-8")
    assert find_behavior(funnel) == tmp_path / "x.behavior.yml"
    (tmp_path / "x.behavior.yaml").write_text("behavior: 1\n", encoding="utf-8")
    with pytest.raises(ProblemsFound) as caught:
        find_behavior(funnel)
    [p] = caught.value.problems
    assert p.code == "FNL805" and "x.behavior.yaml" in p.message and "x.behavior.yml" in p.message


def test_find_behavior_in_a_split_funnel(tmp_path):
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "funnel.yaml").write_text("fnl: 1\n", encoding="utf-8")
    assert find_behavior(folder) is None
    (folder / "q3.behavior.yaml").write_text("behavior: 1\n", encoding="utf-8")
    assert find_behavior(folder) == folder / "q3.behavior.yaml"  # the one model in the folder
    assert find_behavior(folder / "funnel.yaml") == folder / "q3.behavior.yaml"
    (folder / "q4.behavior.yaml").write_text("behavior: 1\n", encoding="utf-8")
    with pytest.raises(ProblemsFound) as caught:
        find_behavior(folder)
    [p] = caught.value.problems
    assert "q3.behavior.yaml" in p.message and "q4.behavior.yaml" in p.message
    assert "acme.behavior.yaml" in p.help
    (folder / "acme.behavior.yaml").write_text("behavior: 1\n", encoding="utf-8")
    assert find_behavior(folder) == folder / "acme.behavior.yaml"  # named after the folder: it wins


def test_find_behavior_refuses_a_link_out_of_the_funnels_folder(tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text("behavior: 1\n", encoding="utf-8")
    folder = tmp_path / "funnels"
    folder.mkdir()
    (folder / "x.yaml").write_text("fnl: 1\n", encoding="utf-8")
    (folder / "x.behavior.yaml").symlink_to(outside)
    with pytest.raises(ProblemsFound) as caught:
        find_behavior(folder / "x.yaml")
    assert "outside the funnel's folder" in caught.value.problems[0].message


def test_validate_skips_behaviour_models_in_a_split_funnel():
    done = subprocess.run([sys.executable, "fnl.py", "validate", "funnels/acme", "funnels/reference.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# -- defaults -------------------------------------------------------------------------------

@pytest.mark.parametrize("funnel", [f for f, _ in SHIPPED])
def test_defaults_give_a_model_for_any_funnel_and_say_what_they_assume(funnel):
    b = DEFAULTS.behavior(plan(funnel))
    assert isinstance(b, Behavior) and b.source is None
    assert b.expected_leads == DEFAULTS.leads
    assert b.email.default == EmailRates(open=0.25, click=0.12, reply=0.01, unsubscribe=0.003, bounce=0.005)
    assert "opens: 25 % of delivered emails (no behaviour file; default)" in b.assumptions
    assert all(line.endswith("(no behaviour file; default)") for line in b.assumptions)
    assert DEFAULTS.assumptions(plan(funnel)) == b.assumptions
    assert not b.timing.same_minute and b.timing.hours == Hours(8 * 60, 18 * 60)


def test_a_partial_model_lists_what_it_leaves_to_the_defaults(tmp_path):
    path = tmp_path / "x.behavior.yaml"
    path.write_text("behavior: 1\nemail:\n  default: {open: 0.4}\n", encoding="utf-8")
    b = load_behavior(path, plan("funnels/reference.yaml"))
    assert b.email.default.open == 0.4
    assert not any(line.startswith("opens:") for line in b.assumptions)
    assert f"clicks: 12 % of opened emails (not in {path}; default)" in b.assumptions


def test_delays_and_hours():
    assert Hours(22 * 60, 2 * 60).contains(23 * 60) and Hours(22 * 60, 2 * 60).contains(60)
    assert not Hours(22 * 60, 2 * 60).contains(12 * 60)
    assert Hours(0, 1440).contains(1439) and Hours(22 * 60, 2 * 60).minutes == 240
    assert Delay("exponential", 0, 4320, 240).describe() == "mean 4h, at most 3d"
    assert Delay("uniform", 1440, 14400, None).describe() == "1d to 10d"


def test_limits_are_the_documented_ones():
    from engine.simulate import behavior

    assert MAX_LEADS == 10_000_000
    assert "10,000,000" in behavior.__doc__ and "3650d" in behavior.__doc__
    arrival = SCHEMA["definitions"]["arrival"]["properties"]
    assert arrival["leads"]["maximum"] == MAX_LEADS


def _models(folder: Path) -> List[Path]:
    return sorted(folder.rglob("*.behavior.y*ml"))


def test_every_example_funnel_has_a_model():
    funnels = [p for p in (REPO / "funnels").iterdir()
               if (p.is_dir() and (p / "funnel.yaml").is_file()) or
               (p.suffix in (".yaml", ".yml") and not p.name.endswith((".behavior.yaml", ".behavior.yml")))]
    assert sorted(str(find_behavior(f)) for f in funnels) == sorted(map(str, _models(REPO / "funnels")))
