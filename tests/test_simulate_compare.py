"""`fnl simulate --compare OTHER / --base REV`, `fnl plan --forecast` and `fnl simulate
--sensitivity`: common random numbers make a funnel's difference with itself exactly zero,
a change moves only the leads it touches, and bad input gets one line and the right exit
code before any lead is simulated."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import pytest
from click.testing import CliRunner

import fnl
from conftest import REPO, clean_env, run_fnl
from engine.errors import EXIT_PROBLEMS, EXIT_USAGE, ProblemsFound, UsageError
from engine.pipeline import plan_for
from engine.simulate import compare as cmp
from engine.simulate import sensitivity as sens
from engine.simulate.behavior import load_behavior
from engine.simulate.figures import Estimate

REFERENCE = "funnels/reference.yaml"
LEADS = 300


def lower_threshold(folder: Path, threshold: int = 30) -> Path:
    """The reference funnel with a lower MQL threshold, with its templates, under `folder`."""
    shutil.copytree(REPO / "templates" / "reference", folder / "templates" / "reference")
    (folder / "funnels").mkdir(parents=True, exist_ok=True)
    text = (REPO / REFERENCE).read_text(encoding="utf-8")
    assert "    mql: 40\n" in text
    out = folder / "funnels" / "lower.yaml"
    out.write_text(text.replace("    mql: 40\n", f"    mql: {threshold}\n"), encoding="utf-8")
    return out


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git repository holding the reference funnel and its behaviour model, committed: a clean tree."""
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    (tmp_path / "funnels").mkdir()
    for name in ("reference.yaml", "reference.behavior.yaml"):
        shutil.copy(REPO / "funnels" / name, tmp_path / "funnels" / name)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "reference")
    return tmp_path


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=clean_env())


def differences(c: cmp.Comparison) -> dict:
    return {r.key: r.difference for r in c.rows}


# -- common random numbers ----------------------------------------------------------------

def test_a_funnel_compared_with_itself_differs_by_exactly_zero() -> None:
    c = cmp.compare(REFERENCE, REFERENCE, leads=LEADS, runs=2)
    assert c.rows and c.rejected == 0
    keys = [r.key for r in c.rows]
    assert {"leads", "stages.mql.reached", "stages.sql.reached", "rates.mql", "rates.sql", "emails_per_lead",
            "unsubscribes", "sla_breaches"} <= set(keys)
    for row in c.rows:
        d = row.difference
        assert isinstance(d, Estimate) and d.mean == d.lo == d.hi == 0, row
        assert row.funnel == row.other
    assert (cmp.difference(c.row("rates.mql").difference, "share")) == "0"


def test_a_lower_mql_threshold_gives_more_mqls_and_leaves_the_other_leads_alone(tmp_path: Path) -> None:
    lower = lower_threshold(tmp_path)
    c = cmp.compare(REFERENCE, str(lower), leads=LEADS)
    d = differences(c)
    assert d["stages.mql.reached"] < 0 and d["rates.mql"] < 0  # REFERENCE minus the lower threshold
    assert d["leads"] == 0 and d["stages.subscriber.reached"] == 0

    # Lead by lead: one that never reaches mql under the lower threshold never reaches it
    # under the higher one either, and lives exactly the same life in both funnels.
    from engine.simulate.run import simulate

    high, low = plan_for(REFERENCE), plan_for(str(lower))
    model = load_behavior(REPO / "funnels" / "reference.behavior.yaml", high)
    a = simulate(high, model, seed=3, leads=LEADS, horizon=model.horizon_minutes, start=c.start, engine="per-lead")
    b = simulate(low, model, seed=3, leads=LEADS, horizon=model.horizon_minutes, start=c.start, engine="per-lead")
    by_id = {r.id: r for r in a.leads}
    untouched = [r for r in b.leads if "mql" not in r.reached]
    assert len(untouched) > LEADS // 2
    for r in untouched:
        other = by_id[r.id]
        assert (other.reached, other.stage, other.sends, other.unsubscribed_at, other.emails) == \
               (r.reached, r.stage, r.sends, r.unsubscribed_at, r.emails)
    moved = [r for r in b.leads if "mql" in r.reached and "mql" not in by_id[r.id].reached]
    assert moved  # the change did something, to other leads


def test_several_runs_give_intervals_of_the_paired_difference(tmp_path: Path) -> None:
    c = cmp.compare(REFERENCE, str(lower_threshold(tmp_path)), leads=150, runs=3)
    mql = c.row("stages.mql.reached")
    assert isinstance(mql.difference, Estimate) and mql.difference.lo <= mql.difference.mean <= mql.difference.hi
    assert mql.difference.mean < 0
    text = cmp.render(c, "text")
    assert "95 % interval" in text and "paired by seed" in text and " to " in text


def test_base_head_on_a_clean_tree_gives_zero_and_an_edit_shows(repo: Path) -> None:
    proc = run_in(repo, "simulate", "funnels/reference.yaml", "--base", "HEAD", "--leads", "150", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "comparison" and doc["other"] == "funnels/reference.yaml at HEAD"
    assert doc["differences"]["stages.mql.reached"]["funnel"] > 0
    assert all(v["difference"] == 0 for v in doc["differences"].values())

    path = repo / "funnels" / "reference.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    mql: 40\n", "    mql: 30\n"), encoding="utf-8")
    proc = run_in(repo, "simulate", "funnels/reference.yaml", "--base", "HEAD", "--leads", "150", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["differences"]["stages.mql.reached"]["difference"] > 0

    plan = run_in(repo, "plan", "--base", "HEAD", "funnels/reference.yaml", "--forecast", "--leads", "150")
    assert plan.returncode == 0, plan.stderr
    assert "MQL threshold 40 → 30" in plan.stdout
    diff_part, _, forecast = plan.stdout.partition("\nForecast (NEW minus OLD")
    assert forecast and "reached mql" in forecast and "One run" in forecast


# -- the command line ---------------------------------------------------------------------

def test_compare_on_the_command_line(tmp_path: Path) -> None:
    lower = lower_threshold(tmp_path)
    proc = run_fnl("simulate", REFERENCE, "--compare", lower, "--leads", "150")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Forecast difference: {REFERENCE} minus {lower}")
    assert "reached mql" in proc.stdout and "One run: the differences have no interval" in proc.stdout
    result = CliRunner().invoke(fnl.cli, ["simulate", REFERENCE, "--compare", str(lower), "--leads", "150",
                                          "--runs", "2", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| figure |" in result.output and "| reached mql |" in result.output
    assert "95 % interval" in result.output


def test_plan_without_forecast_is_unchanged_and_with_it_appends_a_section() -> None:
    before, after = "tests/samples/plan-newsletter-before.yaml", "tests/samples/plan-newsletter-after.yaml"
    plain = run_fnl("plan", before, after)
    forecast = run_fnl("plan", before, after, "--forecast", "--leads", "100")
    assert plain.returncode == forecast.returncode == 0, forecast.stderr
    assert forecast.stdout.startswith(plain.stdout)
    assert "Forecast (NEW minus OLD" not in plain.stdout and "Forecast (NEW minus OLD" in forecast.stdout
    md = run_fnl("plan", before, after, "--forecast", "--leads", "100", "--format", "markdown")
    assert "#### Forecast" in md.stdout and "| reached mql |" in md.stdout
    js = run_fnl("plan", before, after, "--forecast", "--leads", "100", "--format", "json")
    entry = json.loads(js.stdout)["plans"][0]
    assert entry["forecast"]["kind"] == "comparison" and "rates.mql" in entry["forecast"]["differences"]
    assert "forecast" not in json.loads(run_fnl("plan", before, after, "--format", "json").stdout)["plans"][0]
    lone = run_fnl("plan", before, after, "--runs", "3")
    assert lone.returncode == EXIT_USAGE and "--forecast" in lone.stderr


@pytest.mark.parametrize("args, code, words", [
    (("--compare", "no/such.yaml"), EXIT_USAGE, "--compare no/such.yaml: no such file"),
    (("--compare", "funnels/reference.behavior.yaml"), EXIT_USAGE, "not a funnel definition"),
    (("--compare", "README.md"), EXIT_PROBLEMS, "cannot compare with README.md"),
    (("--base", "no-such-revision-xyz"), EXIT_USAGE, "--base no-such-revision-xyz: unknown revision"),
    (("--base", "HEAD", "--compare", REFERENCE), EXIT_USAGE, "give one of --compare, --base, --sensitivity and --sweep"),
    (("--sensitivity", "--compare", REFERENCE), EXIT_USAGE, "give one of --compare, --base, --sensitivity and --sweep"),
    (("--compare", REFERENCE, "--runs", "0"), EXIT_USAGE, "--runs 0"),
])
def test_bad_input_gets_one_line_and_the_exit_code(args: Tuple[str, ...], code: int, words: str) -> None:
    proc = run_fnl("simulate", REFERENCE, "--leads", "50", *args)
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    if code == EXIT_USAGE:
        assert proc.stderr.startswith("fnl: error: ") and len(proc.stderr.splitlines()) <= 2  # the line and its help


def test_bad_input_raises_before_any_lead_is_simulated(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        cmp.compare(REFERENCE, str(tmp_path / "missing.yaml"), leads=10)
    with pytest.raises(UsageError):
        cmp.compare(REFERENCE, leads=10)  # neither --compare nor --base
    (tmp_path / "broken.yaml").write_text("fnl: 1\nfunnel: x\n", encoding="utf-8")
    with pytest.raises(ProblemsFound):
        cmp.compare(REFERENCE, str(tmp_path / "broken.yaml"), leads=10)


# -- sensitivity --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_sensitivity() -> sens.Sensitivity:
    return sens.sensitivity(REFERENCE, leads=LEADS)


def test_more_opens_never_mean_fewer_mqls(reference_sensitivity: sens.Sensitivity) -> None:
    row = next(r for r in reference_sensitivity.rows if r.key == "email.open")
    assert dict(row.up)["mql"] >= 0 and dict(row.down)["mql"] <= 0
    assert dict(row.up)["mql"] > dict(row.down)["mql"]


def test_the_table_is_sorted_by_impact(reference_sensitivity: sens.Sensitivity) -> None:
    s = reference_sensitivity
    impacts = [r.impact for r in s.rows]
    assert impacts == sorted(impacts, reverse=True) and impacts[0] > 0
    # The reference model has no bounces and no CRM: nothing to move there, and it says so.
    assert "email bounce rate" in s.unchanged and "CRM outcome probabilities" in s.unchanged
    assert {r.key for r in s.rows} == {"email.open", "email.click", "email.reply", "email.unsubscribe",
                                       "visits.daily"}
    text = sens.render(s, "text")
    lines = text.splitlines()
    where = [next(i for i, line in enumerate(lines) if line.startswith(f"  {r.label}  ")) for r in s.rows]
    assert where == sorted(where)
    assert "MQL -20 %" in text and "MQL +20 %" in text and "Nothing to move" in text


def test_moved_rates_stay_probabilities() -> None:
    plan = plan_for(REFERENCE)
    model = load_behavior(REPO / "funnels" / "reference.behavior.yaml", plan)
    for key, _, scale in sens.GROUPS:
        for factor in (0.8, 1.2, 100.0):
            moved = scale(model, factor)
            e = moved.email
            assert all(0 <= getattr(e.default, n) <= 1 for n in sens.RATE_NAMES)
            assert all(0 <= (r.get(n) or 0) <= 1 for a in e.by_attribute for _, r in a.values for n in sens.RATE_NAMES)
            assert 0 <= moved.visits.daily <= 1 and 0 <= moved.visits.after_click_daily <= 1
            assert all(sum(o.probability for o in reaction.outcomes) <= 1 + 1e-12 for reaction in moved.crm)
    opens = sens.GROUPS[0][2](model, 1.2).email
    assert [r.open for _, r in opens.by_attribute[0].values] == \
           [pytest.approx(r.open * 1.2) for _, r in model.email.by_attribute[0].values]


def test_sensitivity_on_the_command_line() -> None:
    proc = run_fnl("simulate", REFERENCE, "--sensitivity", "--leads", "100", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "sensitivity" and doc["step"] == 0.2 and doc["rates"]
    assert [r["impact"] for r in doc["rates"]] == sorted((r["impact"] for r in doc["rates"]), reverse=True)
    result = CliRunner().invoke(fnl.cli, ["simulate", REFERENCE, "--sensitivity", "--leads", "100",
                                          "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| rate |" in result.output
