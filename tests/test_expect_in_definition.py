"""Expectations written in the funnel definition itself (a top-level `expect:` block): the
schema takes it, `fnl validate` reads its lines (FNL812, FNL813 located in the funnel's
YAML, in any file of a split funnel), `fnl simulate` judges it (FNL811 at its line) along
with the `*.expect.yaml` beside the funnel, `--expect FILE` replaces both, and the compiled
plan is the same with or without it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from click.testing import CliRunner, Result

import fnl
from conftest import MINIMAL, REPO, clean_env, write
from engine import validate
from engine.errors import EXIT_OK, EXIT_PROBLEMS
from engine.simulate.expect import FLAGS, METRICS, STAGE_METRICS

LEADS = ("--leads", "200")
FUNNEL = "funnels/reference.yaml"
BESIDE = "funnels/reference.expect.yaml"


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the reference funnel, its behaviour model and its templates, as a user's
    repository holds them; the working directory is its root."""
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    for name in ("reference.yaml", "reference.behavior.yaml"):
        write(tmp_path, f"funnels/{name}", (REPO / "funnels" / name).read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def add_block(root: Path, lines: List[str], file: str = FUNNEL) -> List[int]:
    """Append an `expect:` block to `file`; the line number of each expectation."""
    path = root / file
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    first = text.count("\n") + 2  # `expect:` is on the line after the text, its items below
    path.write_text(text + "expect:\n" + "".join(f"  - {line}\n" for line in lines), encoding="utf-8")
    return [first + i for i in range(len(lines))]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(fnl.cli, list(args))


def located(stderr: str, code: str) -> List[Tuple[str, int, int, str]]:
    """(file, line, column, message) of each `file:line:col: error CODE...` line."""
    out = []
    for text in stderr.splitlines():
        head, sep, message = text.partition(f": error {code}")
        if sep:
            file, line, column = head.rsplit(":", 2)
            out.append((file, int(line), int(column), message.lstrip(": ")))
    return out


# -- the schema -----------------------------------------------------------------------------

def test_the_funnel_schema_takes_the_block_as_the_file_does() -> None:
    funnel, gates = validate.schema("funnel"), validate.schema("expect")
    block, listed = funnel["properties"]["expect"], gates["properties"]["expect"]
    assert funnel["additionalProperties"] is False and "expect" not in funnel["required"]
    # The same items and limits, and the same words for the grammar and the metrics.
    assert block["items"] == listed["items"]
    assert (block["type"], block["minItems"], block["maxItems"]) == ("array", listed["minItems"], listed["maxItems"])
    assert block["description"].endswith(listed["description"])
    text = json.dumps(block)
    for name in [*METRICS, *FLAGS, *(f"S{s}" for s in STAGE_METRICS)]:
        assert f"`{name}`" in text, name
    assert "--expect FILE" in block["description"] and "content hash" in block["description"]
    assert "`expect:` block" in gates["description"]


# -- fnl validate ---------------------------------------------------------------------------

def test_a_typo_in_the_block_fails_validate_located_in_the_funnel(layout: Path) -> None:
    lines = add_block(layout, ["leads > 0", "sql_rat >= 0.03", "mql_rate = 0.2", "'sq_rate >= 1%'"])
    result = invoke("validate", FUNNEL)
    assert result.exit_code == EXIT_PROBLEMS, result.output
    out = result.stdout
    assert f"{FUNNEL}:{lines[1]}:5: error FNL812 expect[1]: `sql_rat` is not a metric fnl knows" in out
    assert "help: did you mean `sql_rate`?" in out
    assert f"{FUNNEL}:{lines[2]}:14: error FNL813 expect[2]: `=` is not a comparison" in out
    # In quotes, the column is still that of the name in the file (after the quote).
    assert f"{FUNNEL}:{lines[3]}:6: error FNL812 expect[3]: `sq_rate`: `sq` is not a stage of the funnel" in out
    assert "Found 3 problems" in out


def test_the_json_report_of_validate_carries_the_located_problem(layout: Path) -> None:
    [line] = add_block(layout, ["emails_per_week <= 3"])
    result = invoke("validate", "--format", "json", FUNNEL)
    assert result.exit_code == EXIT_PROBLEMS
    problems = [p for d in json.loads(result.stdout)["definitions"] for p in d["problems"]]
    [p] = problems
    assert p["code"] == "FNL812" and p["severity"] == "error"
    assert (p["line"], p["column"]) == (line, 5) and p["file"].endswith("reference.yaml")
    assert "`emails_per_lead`" in p["help"]


def test_a_good_block_validates_clean_and_a_bad_item_is_the_schemas(layout: Path) -> None:
    add_block(layout, ["sql_rate >= 0.03", "mql_rate between 5% and 40%", "rep_load <= capacity", "no_sla_breaches"])
    assert invoke("validate", FUNNEL).exit_code == EXIT_OK
    write(layout, "funnels/other.yaml", MINIMAL + "expect:\n  - 3\n  - customer_rate >= 2\n")
    result = invoke("validate", "funnels/other.yaml")
    assert result.exit_code == EXIT_PROBLEMS
    found = [(p[1], p[2]) for code in ("FNL102", "FNL813") for p in located(result.stdout, code)]
    assert found == [(8, 5), (9, 22)], result.stdout  # the number is the schema's; the share is the grammar's


def test_in_a_split_funnel_the_block_goes_in_any_file_but_only_one(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    write(folder, "funnel.yaml", MINIMAL)
    write(folder, "gates.yaml", "# CI gates\nexpect:\n  - customer_rate >= 1%\n  - customr_leads > 0\n")
    result = invoke("validate", str(folder))
    assert result.exit_code == EXIT_PROBLEMS
    [(file, line, column, message)] = located(result.stdout, "FNL812")
    assert (Path(file).name, line, column) == ("gates.yaml", 4, 5)
    assert "`customr` is not a stage" in message and "did you mean `customer_leads`?" in result.stdout
    write(folder, "gates.yaml", "expect:\n  - customer_rate >= 1%\n")
    assert invoke("validate", str(folder)).exit_code == EXIT_OK
    write(folder, "more.yaml", "expect:\n  - leads > 0\n")
    result = invoke("validate", str(folder))
    assert result.exit_code == EXIT_PROBLEMS
    assert "FNL008" in result.stdout and "`expect` is defined twice" in result.stdout


def test_validate_does_not_import_the_simulator() -> None:
    """`fnl validate` reads the block with the light grammar module: no simulator, no numpy."""
    code = ("import sys, engine.check, engine.validate, engine.expectations; "
            "print(sorted(m for m in sys.modules if m.startswith('engine.simulate') or m == 'numpy'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- the plan -------------------------------------------------------------------------------

def test_the_block_does_not_change_the_plan(layout: Path) -> None:
    before = invoke("compile", FUNNEL)
    assert before.exit_code == EXIT_OK, before.output
    add_block(layout, ["sql_rate >= 0.03", "no_marketing_to_open_opportunities"])
    after = invoke("compile", FUNNEL)
    assert after.exit_code == EXIT_OK, after.output
    assert after.stdout == before.stdout  # byte for byte, content hash included
    assert json.loads(after.stdout)["content_hash"] == json.loads(before.stdout)["content_hash"]
    assert "expect" not in after.stdout


# -- fnl simulate ---------------------------------------------------------------------------

def test_simulate_judges_the_block_and_fails_at_its_line(layout: Path) -> None:
    lines = add_block(layout, ["leads > 0", "sql_rate >= 0.9"])
    result = invoke("simulate", FUNNEL, *LEADS)
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert f"Expectations ({FUNNEL}): 1 of 2 hold" in result.stdout
    [(file, line, column, message)] = located(result.stderr, "FNL811")
    assert (file, line, column) == (FUNNEL, lines[1], 5)
    assert message.startswith("expectation sql_rate >= 0.9 failed: 0.")
    assert "help: sql_rate: the share of the leads that ever reached `sql`" in result.stderr


def test_a_real_process_fails_with_the_funnels_file_and_line(layout: Path) -> None:
    lines = add_block(layout, ["emails_sent > 0", "no_sla_breaches", "sql_rate >= 0.9"])
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "simulate", FUNNEL, *LEADS, "--format", "json"],
                          cwd=layout, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == EXIT_PROBLEMS, proc.stderr
    items = json.loads(proc.stdout)["expectations"]  # the report comes first, whole
    assert [(i["text"], i["file"], i["line"], i["column"]) for i in items] == [
        (t, FUNNEL, n, 5) for t, n in zip(["emails_sent > 0", "no_sla_breaches", "sql_rate >= 0.9"], lines)]
    assert [i["passed"] for i in items] == [True, True, False]
    errors = [ln for ln in proc.stderr.splitlines() if " error " in ln]
    assert len(errors) == 1 and errors[0].startswith(f"{FUNNEL}:{lines[2]}:5: error FNL811: expectation sql_rate")
    assert "Traceback" not in proc.stderr


def test_a_typo_in_the_block_stops_simulate_before_any_lead(layout: Path) -> None:
    lines = add_block(layout, ["leads > 0", "sql_rat >= 0.03"])
    result = invoke("simulate", FUNNEL, *LEADS)
    assert result.exit_code == EXIT_PROBLEMS
    assert result.stdout == ""  # no report: nothing was simulated
    [(file, line, column, _)] = located(result.stderr, "FNL812")
    assert (file, line, column) == (FUNNEL, lines[1], 5) and "did you mean `sql_rate`?" in result.stderr


def test_the_block_and_the_file_beside_are_both_judged_each_at_its_own_place(layout: Path) -> None:
    lines = add_block(layout, ["leads > 0", "sql_rate >= 0.9"])
    write(layout, BESIDE, "funnel: reference\nexpect:\n  - emails_sent > 0\n  - mql_rate >= 0.95\n")
    result = invoke("simulate", FUNNEL, *LEADS, "--format", "json")
    assert result.exit_code == EXIT_PROBLEMS, result.output
    items = json.loads(result.stdout)["expectations"]
    assert [(i["text"], i["file"], i["line"]) for i in items] == [
        ("leads > 0", FUNNEL, lines[0]), ("sql_rate >= 0.9", FUNNEL, lines[1]),
        ("emails_sent > 0", BESIDE, 3), ("mql_rate >= 0.95", BESIDE, 4)]
    assert [(f, n, c) for f, n, c, _ in located(result.stderr, "FNL811")] == [(FUNNEL, lines[1], 5), (BESIDE, 4, 5)]
    text = invoke("simulate", FUNNEL, *LEADS)
    assert f"Expectations ({FUNNEL} and {BESIDE}): 2 of 4 hold" in text.stdout


def test_problems_of_the_block_and_the_file_are_reported_together(layout: Path) -> None:
    """The block is valid (validate passed) but asks for capacity the behaviour model does
    not give (FNL814, only simulate knows); the file beside has its own typo (FNL812)."""
    [line] = add_block(layout, ["rep_load <= capacity"])
    write(layout, BESIDE, "expect:\n  - handofs > 0\n")
    result = invoke("simulate", FUNNEL, *LEADS)
    assert result.exit_code == EXIT_PROBLEMS and result.stdout == ""
    [(file, at, column, message)] = located(result.stderr, "FNL814")
    assert (file, at, column) == (FUNNEL, line, 17) and "`capacity` needs the reps' capacity" in message
    [(file, at, column, _)] = located(result.stderr, "FNL812")
    assert (file, at, column) == (BESIDE, 2, 5) and "did you mean `handoffs`?" in result.stderr


def test_expect_file_replaces_the_block_and_the_file_beside(layout: Path) -> None:
    add_block(layout, ["sql_rate >= 0.9"])  # would fail
    write(layout, BESIDE, "expect:\n  - mql_rate >= 0.95\n")  # would fail too
    gates = write(layout, "gates/release.expect.yaml", "expect:\n  - leads > 0\n  - emails_sent > 0\n")
    result = invoke("simulate", FUNNEL, *LEADS, "--expect", "gates/release.expect.yaml", "--format", "json")
    assert result.exit_code == EXIT_OK, result.output
    items = json.loads(result.stdout)["expectations"]
    assert [(i["text"], i["file"]) for i in items] == [("leads > 0", "gates/release.expect.yaml"),
                                                       ("emails_sent > 0", "gates/release.expect.yaml")]
    assert gates.is_file() and result.stderr == ""
    text = invoke("simulate", FUNNEL, *LEADS, "--expect", "gates/release.expect.yaml")
    assert "Expectations (gates/release.expect.yaml): 2 of 2 hold" in text.stdout


def test_runs_and_strict_judge_the_blocks_mean_and_interval(layout: Path) -> None:
    lines = add_block(layout, ["leads > 0", "emails_sent >= 1"])
    lenient = invoke("simulate", FUNNEL, "--leads", "100", "--runs", "3", "--format", "json")
    assert lenient.exit_code == EXIT_OK, lenient.output
    items = json.loads(lenient.stdout)["expectations"]
    assert all(i["passed"] and i["lo"] <= i["value"] <= i["hi"] for i in items)
    assert [i["line"] for i in items] == lines
