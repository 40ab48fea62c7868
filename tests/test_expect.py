"""Expectations as CI gates for `fnl simulate`: the grammar (good lines and bad ones, each
bad one located), judging the mean and, with --strict, the whole interval, finding the file
beside the funnel, and real runs of `fnl simulate funnels/acme` that pass and fail."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from conftest import REPO, clean_env, run_fnl, write
from engine import validate
from engine.errors import EXIT_PROBLEMS, EXIT_USAGE, Location, ProblemsFound
from engine.simulate import expect
from engine.simulate.expect import FLAGS, METRICS, STAGE_METRICS, Expectation, judge, parse

STAGES = ("subscriber", "mql", "sql", "opportunity", "customer", "disqualified")
ACME = "funnels/acme"


# -- the grammar ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed", [
    ("sql_rate >= 0.03", ("sql_rate", "sql_rate", ">=", 0.03, None)),
    ("sql_rate>=0.03", ("sql_rate", "sql_rate", ">=", 0.03, None)),
    ("  max_emails_in_7d <= 3 ", ("max_emails_in_7d", "max_emails_in_7d", "<=", 3.0, None)),
    ("sla_breaches == 0", ("sla_breaches", "sla_breaches", "==", 0.0, None)),
    ("leads > 1e3", ("leads", "leads", ">", 1000.0, None)),
    ("bounce_rate < .01", ("bounce_rate", "bounce_rate", "<", 0.01, None)),
    ("sql_rate >= 3%", ("sql_rate", "sql_rate", ">=", 0.03, None)),
    ("sql_rate >= 3 %", ("sql_rate", "sql_rate", ">=", 0.03, None)),
    ("rep_load <= capacity", ("rep_load", "rep_load", "<=", "capacity", None)),
    ("mql_rate between 0.05 and 0.2", ("mql_rate", "mql_rate", "between", 0.05, 0.2)),
    ("mql_rate between 5% and 20%", ("mql_rate", "mql_rate", "between", 0.05, 0.2)),
    ("customer_leads >= 1", ("customer_leads", "customer_leads", ">=", 1.0, None)),
    ("no_marketing_to_open_opportunities", ("no_marketing_to_open_opportunities",
                                            "marketing_to_open_opportunities", "==", 0.0, None)),
    ("no_sla_breaches", ("no_sla_breaches", "sla_breaches", "==", 0.0, None)),
])
def test_good_lines_parse(text: str, parsed: tuple) -> None:
    got = parse(text, STAGES)
    assert got[:3] == parsed[:3] and got[4] == parsed[4]
    assert got[3] == parsed[3] if isinstance(parsed[3], str) else math.isclose(got[3], parsed[3])


# (line, code, column of the problem in the line, words in the message, words in the help)
BAD = [
    ("sq_rate >= 0.03", "FNL812", 0, "`sq` is not a stage", "`sql_rate`"),
    ("emails_per_week <= 3", "FNL812", 0, "not a metric", "`emails_per_lead`"),
    ("leads >= mql_lead", "FNL812", 9, "`mql_lead`", "`mql_leads`"),
    ("no_marketing_to_open_oportunities", "FNL812", 0, "not a metric", "`no_marketing_to_open_opportunities`"),
    ("sql_rate = 0.03", "FNL813", 9, "`=` is not a comparison", "`==`"),
    ("sql_rate => 0.03", "FNL813", 9, "not a comparison", "`>=`"),
    ("3 >= max_emails_in_7d", "FNL813", 0, "does not start with a metric", "start with the metric"),
    ("mql_rate >= 5", "FNL813", 12, "is a share", "5%"),
    ("mql_rate between 0.5 and 0.1", "FNL813", 17, "is empty", "between 0.1 and 0.5"),
    ("mql_rate between 0.1 0.5", "FNL813", 21, "takes two numbers", "between 0.05 and 0.2"),
    ("sql_rate >= 0.03 and leads > 3", "FNL813", 17, "unexpected `and`", "one comparison a line"),
    ("sql_rate >=", "FNL813", 11, "nothing after", "sql_rate >= 0.03"),
    ("sql_rate", "FNL813", 8, "needs a comparison", "sql_rate >= 0.03"),
    ("no_sla_breaches > 3", "FNL813", 16, "takes no comparison", "alone"),
    ("sql_rate $ 3", "FNL813", 9, "cannot read `$`", "METRIC OP NUMBER"),
    ("sql_rate >= 1e999", "FNL813", 12, "not a finite number", "0.03"),
    ("   ", "FNL813", 0, "empty", "sql_rate"),
]


@pytest.mark.parametrize("text, code, offset, message, help", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_lines_say_what_and_where(text: str, code: str, offset: int, message: str, help: str) -> None:
    with pytest.raises(expect._Bad) as caught:
        parse(text, STAGES)
    bad = caught.value
    assert (bad.code, bad.offset) == (code, offset), (bad.code, bad.offset, bad.message)
    assert message in bad.message and help in bad.help, (bad.message, bad.help)


@pytest.fixture(scope="module")
def acme():
    from engine.pipeline import plan_for
    from engine.simulate import find_behavior, load_behavior

    plan = plan_for(str(REPO / ACME))
    return plan, load_behavior(find_behavior(str(REPO / ACME)), plan)


def test_each_bad_line_of_a_file_is_located(tmp_path: Path, acme) -> None:
    lines = [b[0] for b in BAD if b[0].strip()]
    body = "expect:\n" + "".join(f"  - {json.dumps(t)}\n" if t.endswith(":") else f"  - {t}\n" for t in lines)
    path = write(tmp_path, "x.expect.yaml", body)
    with pytest.raises(ProblemsFound) as caught:
        expect.load_expectations(path, *acme)
    found = [(p.code, p.location.line, p.location.column) for p in caught.value.problems]
    # Each item starts at column 5 (`  - `); the problem is at its offset in the line.
    wanted = [(code, 2 + i, 5 + offset) for i, (_, code, offset, _, _) in enumerate(b for b in BAD if b[0].strip())]
    assert found == wanted
    assert all(p.source_line and p.help for p in caught.value.problems)


def test_schema_problems_are_located_and_the_funnel_is_checked(tmp_path: Path, acme) -> None:
    with pytest.raises(ProblemsFound) as caught:
        expect.load_expectations(write(tmp_path, "a.expect.yaml", "expect: sql_rate >= 0.03\n"), *acme)
    [p] = caught.value.problems
    assert p.code == "FNL102" and (p.location.line, p.location.column) == (1, 9)
    with pytest.raises(ProblemsFound) as caught:
        expect.load_expectations(write(tmp_path, "b.expect.yaml", "expct: [leads > 1]\n"), *acme)
    assert {p.code for p in caught.value.problems} <= {"FNL100", "FNL101"}
    with pytest.raises(ProblemsFound) as caught:
        expect.load_expectations(write(tmp_path, "c.expect.yaml", "funnel: other\nexpect: [leads > 1]\n"), *acme)
    [p] = caught.value.problems
    assert p.code == "FNL814" and p.location.line == 1 and "`other`" in p.message


def test_capacity_needs_a_behaviour_model_with_capacity(tmp_path: Path, acme) -> None:
    import dataclasses

    plan, behavior = acme
    path = write(tmp_path, "x.expect.yaml", "expect:\n  - rep_load <= capacity\n")
    assert len(expect.load_expectations(path, plan, behavior)) == 1
    with pytest.raises(ProblemsFound) as caught:
        expect.load_expectations(path, plan, dataclasses.replace(behavior, capacity=None))
    [p] = caught.value.problems
    assert p.code == "FNL814" and (p.location.line, p.location.column) == (2, 17)


def test_the_schema_documents_every_metric_and_flag() -> None:
    text = json.dumps(validate.schema("expect"))
    for name in [*METRICS, *FLAGS, *(f"S{s}" for s in STAGE_METRICS)]:
        assert f"`{name}`" in text, name
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in [*METRICS, *FLAGS]:
        assert f"`{name}`" in readme, f"{name} is not in the README's table of metrics"


# -- judging --------------------------------------------------------------------------------

def line(text: str, at: int = 3) -> Expectation:
    name, metric, op, bound, upper = parse(text, STAGES)
    return Expectation(text, name, metric, op, bound, upper, Location("g.expect.yaml", at, 5))


def runs(metric: str, values: Sequence[float], **more: float) -> List[Dict[str, Optional[float]]]:
    return [{metric: v, **more} for v in values]


def test_one_run_is_judged_on_its_value() -> None:
    gate = judge([line("sql_rate >= 0.03"), line("sql_rate < 0.03"), line("sql_rate == 0.021")],
                 runs("sql_rate", [0.021]))
    assert [j.passed for j in gate.results] == [False, True, True]
    [problem] = expect.problems(gate)
    assert problem.code == "FNL811" and (problem.location.line, problem.location.column) == (3, 5)
    assert problem.message == "expectation sql_rate >= 0.03 failed: 0.021"
    assert "the value of the run" in problem.help


def test_several_runs_judge_the_mean_and_strict_the_interval() -> None:
    values = [0.028, 0.031, 0.033, 0.030, 0.034]  # mean 0.0312, interval about 0.0283-0.0341
    ok = line("sql_rate >= 0.03")
    lenient = judge([ok], runs("sql_rate", values)).results[0]
    assert lenient.passed and lenient.runs == 5 and math.isclose(lenient.value, 0.0312)
    assert lenient.lo < 0.03 < lenient.value < lenient.hi
    strict = judge([ok], runs("sql_rate", values), strict=True)
    assert not strict.results[0].passed
    [problem] = expect.problems(strict)
    assert problem.message.startswith("expectation sql_rate >= 0.03 failed: 0.0312 (95 % interval 0.02")
    assert problem.message.endswith(" over 5 runs)")
    assert "whole 95 % interval" in problem.help and "more --runs" in problem.help
    # Well clear of the bound, the interval passes too.
    assert judge([line("sql_rate >= 0.02")], runs("sql_rate", values), strict=True).results[0].passed


@pytest.mark.parametrize("text, values, lenient, strict", [
    ("mql_rate between 0.05 and 0.2", [0.1, 0.12, 0.11], True, True),
    ("mql_rate between 0.05 and 0.2", [0.05, 0.19, 0.21], True, False),
    ("mql_rate between 0.05 and 0.2", [0.25, 0.26], False, False),
    ("max_emails_in_7d <= 3", [3, 3, 3], True, True),
    ("max_emails_in_7d <= 3", [2, 3, 4], True, False),
    ("max_emails_in_7d < 3", [3, 3], False, False),
    ("leads > 100", [90, 120, 130], True, False),
    ("sla_breaches == 0", [0, 0, 0], True, True),
    ("sla_breaches == 0", [0, 0, 1], False, False),
    ("no_marketing_to_open_opportunities", [0, 0], True, True),
])
def test_operators(text: str, values: List[float], lenient: bool, strict: bool) -> None:
    x = line(text)
    measured = runs(x.metric, values)
    assert judge([x], measured).results[0].passed is lenient
    assert judge([x], measured, strict=True).results[0].passed is strict


def test_a_metric_on_the_right_is_compared_by_its_mean() -> None:
    x = line("rep_load <= capacity")
    assert judge([x], runs("rep_load", [6, 8, 7], capacity=8)).results[0].passed
    gate = judge([x], runs("rep_load", [9, 10], capacity=8))
    assert not gate.results[0].passed
    assert "(capacity 8)" in expect.problems(gate)[0].message


def test_no_marketing_counts_nurture_and_broadcast_after_the_handoff() -> None:
    from types import SimpleNamespace as NS

    from engine.pipeline import plan_for
    from engine.simulate import tally
    from engine.simulate.run import LeadRecord, Send

    plan = plan_for(str(REPO / "funnels/reference.yaml"))
    handed = LeadRecord(0, "l0", "m", 0, created=True, handed_off_at=1000)
    other = LeadRecord(1, "l1", "m", 0, created=True)
    sends = [Send(0, 999, "n", "a", "t", None, "nurture"), Send(0, 1000, "n", "b", "t", None, "nurture"),
             Send(0, 1001, "n", "c", "t", None, "nurture"), Send(0, 2000, "b", "d", "t", None, "broadcast"),
             Send(0, 3000, "s", "e", "t", None, "sales"), Send(1, 5000, "n", "f", "t", None, "nurture")]
    run = NS(tally=tally.from_records(plan, 0, 7 * 1440, (handed, other), sends, ()))
    figs = NS(emails=NS(sent=6, per_lead_mean=3.0, per_lead_p95=5, per_lead_max=5, max_in_7_days=5),
              deferrals=NS(quiet_hours=1, frequency_cap=2, at=0), reps=(), leads=2, unsubscribes=0,
              unsubscribed_leads=0, bounces=0, sla_breaches=0, stages=())
    m = expect.measure(run, figs)
    assert m["marketing_to_open_opportunities"] == 2  # the nurture at 1001 and the broadcast; not the sales email
    assert m["handoffs"] == 1 and m["deferrals"] == 3 and m["max_marketing_emails_in_7d"] == 4
    assert m["capacity"] is None and m["rep_load"] == 0


# -- finding the file -----------------------------------------------------------------------

def test_found_beside_the_funnel_and_never_merged(tmp_path: Path) -> None:
    from conftest import MINIMAL

    single = write(tmp_path, "x.yaml", MINIMAL)
    gate = write(tmp_path, "x.expect.yaml", "expect: [leads > 0]\n")
    assert expect.find_expectations(single) == gate
    split = tmp_path / "acme"
    write(split, "funnel.yaml", MINIMAL)
    write(split, "other.expect.yaml", "expect: [leads > 0]\n")
    assert expect.find_expectations(split) == split / "other.expect.yaml"
    write(split, "acme.expect.yaml", "expect: [leads > 0]\n")
    assert expect.find_expectations(split) == split / "acme.expect.yaml"
    (split / "acme.expect.yaml").unlink()
    write(split, "more.expect.yml", "expect: [leads > 0]\n")
    with pytest.raises(ProblemsFound) as caught:
        expect.find_expectations(split)
    assert caught.value.problems[0].code == "FNL814" and "--expect" in caught.value.problems[0].help
    # Definition discovery skips expectations: the split funnel validates as before.
    proc = run_fnl("validate", split)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    named = run_fnl("validate", split / "other.expect.yaml")
    assert named.returncode == EXIT_USAGE and "expectations file" in named.stderr


# -- real runs ------------------------------------------------------------------------------

def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "fnl.py", "simulate", ACME, "--leads", "300", *args], cwd=REPO,
                          capture_output=True, text=True, env=clean_env(), timeout=300)


def test_the_shipped_expectations_hold(tmp_path: Path) -> None:
    proc = simulate()
    assert proc.returncode == 0, proc.stderr
    # sales.yaml's `expect:` block first, then acme.expect.yaml beside the funnel.
    assert "Expectations (funnels/acme/sales.yaml and funnels/acme/acme.expect.yaml): 7 of 7 hold" in proc.stdout
    assert proc.stderr == ""


def test_a_failed_expectation_exits_1_with_its_located_line(tmp_path: Path) -> None:
    gates = write(tmp_path, "gates.expect.yaml",
                  "funnel: acme-b2b\nexpect:\n  - mql_rate >= 0.05\n  - sql_rate >= 0.5\n  - no_sla_breaches\n")
    proc = simulate("--expect", str(gates), "--format", "json")
    assert proc.returncode == EXIT_PROBLEMS, proc.stderr
    doc = json.loads(proc.stdout)  # the report comes first, whole
    items = doc["expectations"]
    assert [(i["text"], i["passed"]) for i in items] == [
        ("mql_rate >= 0.05", True), ("sql_rate >= 0.5", False), ("no_sla_breaches", False)]
    assert {"name", "text", "value", "lo", "hi", "passed"} <= set(items[0])
    errors = [ln for ln in proc.stderr.splitlines() if " error FNL811" in ln]
    head = f"{gates}:4:5: error FNL811: expectation sql_rate >= 0.5 failed: "
    assert errors[0].startswith(head)  # then the run's figure, to 4 digits
    assert math.isclose(float(errors[0][len(head):]), items[1]["value"], abs_tol=1e-4) and items[1]["value"] < 0.5
    assert errors[1].startswith(f"{gates}:5:5: error FNL811: expectation no_sla_breaches failed: sla_breaches is ")
    assert proc.stderr.count("  help: ") == 2


def test_runs_and_strict_on_a_real_funnel(tmp_path: Path) -> None:
    probe = write(tmp_path, "probe.expect.yaml", "expect:\n  - sql_rate >= 0\n")
    first = simulate("--expect", str(probe), "--runs", "3", "--leads", "150", "--format", "json")
    assert first.returncode == 0, first.stderr
    [item] = json.loads(first.stdout)["expectations"]
    assert item["lo"] < item["value"] < item["hi"]
    # A bound between the interval's low end and the mean: the mean holds, the interval does not.
    bound = round((item["lo"] + item["value"]) / 2, 6)
    gates = write(tmp_path, "gates.expect.yaml", f"expect:\n  - sql_rate >= {bound}\n  - leads > 0\n")
    lenient = simulate("--expect", str(gates), "--runs", "3", "--leads", "150")
    assert lenient.returncode == 0, lenient.stderr
    assert "2 of 2 hold" in lenient.stdout and "over 3 runs)" in lenient.stdout
    strict = simulate("--expect", str(gates), "--runs", "3", "--leads", "150", "--strict")
    assert strict.returncode == EXIT_PROBLEMS
    assert "1 of 2 hold (--strict)" in strict.stdout
    [error] = [ln for ln in strict.stderr.splitlines() if "FNL811" in ln]
    assert error.startswith(f"{gates}:2:5: error FNL811: expectation sql_rate >= {bound} failed: ")
    assert "(95 % interval " in error and error.endswith(" over 3 runs)")
    assert "more --runs narrow it" in strict.stderr


def test_a_missing_expect_file_is_a_usage_error() -> None:
    proc = simulate("--expect", "nowhere.expect.yaml")
    assert proc.returncode == EXIT_USAGE and "--expect nowhere.expect.yaml: no such file" in proc.stderr
