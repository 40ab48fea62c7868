"""Every lint rule against its own failing and passing example definition.

`tests/cases/lint/<ID>/` holds `fail.yaml` and `pass.yaml` (or `fail/` and `pass/`
directories with a `funnel.yaml`, for rules that need their own templates or a split
definition). A failing case starts with header lines

    # expect: FNL201 16:16 template `nurture/insigt` does not exist
    # expect: FNL221 templates/nurture/insight.j2:3:10 `lead.frist_name`

giving every finding of that rule: its line and column (in the case file, or in the file
named relative to the case file's directory) and a piece of its message or help. The
tests run the real pipeline in-process and are parametrised over the registry, so a rule
without cases fails here.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import List, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.check import check_paths  # noqa: E402
from engine.errors import SEVERITIES, Problem  # noqa: E402
from engine.lint.registry import BY_ID, RULES  # noqa: E402
from engine.lint.runner import Selection  # noqa: E402

LINT_CASES = REPO / "tests" / "cases" / "lint"
SHARED_TEMPLATES = LINT_CASES / "_templates"
EXPECT = re.compile(r"^# expect: (FNL\d{3}) (?:(\S+):)?(\d+):(\d+) (.+)$")

Spot = Tuple[str, Path, int, int]  # (code, file, line, column)


@dataclass(frozen=True)
class Case:
    rule: str
    kind: str  # fail | pass
    target: Path  # what the pipeline is pointed at: a file or a split-definition directory
    header_file: Path  # the file carrying the comments and `# expect:` lines


def _case(rule: str, kind: str) -> Case:
    folder = LINT_CASES / rule
    single = folder / f"{kind}.yaml"
    split = folder / kind
    if single.is_file():
        return Case(rule, kind, single, single)
    if (split / "funnel.yaml").is_file():
        return Case(rule, kind, split, split / "funnel.yaml")
    pytest.fail(f"{rule} has no {kind} case: add {single.relative_to(REPO)} "
                f"or {(split / 'funnel.yaml').relative_to(REPO)}")


def _expectations(case: Case) -> List[Tuple[Spot, str]]:
    out = []
    for line in case.header_file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        m = EXPECT.match(line)
        if m:
            code, rel, row, col, text = m.groups()
            file = (case.header_file.parent / rel) if rel else case.header_file
            out.append(((code, file.resolve(), int(row), int(col)), text))
    return out


def _spot(p: Problem) -> Spot:
    return (p.code, Path(p.location.file).resolve(), p.location.line, p.location.column)


def _run(case: Case, selection: Selection) -> List[Problem]:
    return [p for checked in check_paths((str(case.target),), selection) for p in checked.problems]


def _assert_schema_valid(case: Case, problems: List[Problem]) -> None:
    structural = [f"{p.code} {p.location.line}:{p.location.column} {p.message}" for p in problems
                  if p.code.startswith(("FNL0", "FNL1"))]
    assert not structural, f"{case.header_file.relative_to(REPO)} is not a valid definition: {structural}"


def _describe(problems: List[Problem]) -> str:
    return "\n".join(f"  {p.code} {p.location.file}:{p.location.line}:{p.location.column} {p.message} "
                     f"(help: {p.help})" for p in problems) or "  (none)"


RULE_IDS = [r.ID for r in RULES]


def test_registry_has_every_rule_once() -> None:
    assert len(RULES) == 48
    assert len(set(RULE_IDS)) == len(RULE_IDS)
    assert RULE_IDS == sorted(RULE_IDS)


def test_readme_states_the_number_of_rules() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stated = re.findall(r"\b(\d+) lint rules\b", readme)
    assert stated and all(int(n) == len(RULES) for n in stated), f"README says {stated} lint rules, not {len(RULES)}"


def test_every_case_folder_belongs_to_a_rule() -> None:
    folders = {p.name for p in LINT_CASES.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders - set(BY_ID) == set(), "case folders for rules that are not in the registry"


@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_rule_metadata_and_docstring(rule: ModuleType) -> None:
    assert re.fullmatch(r"FNL[2-5]\d\d", rule.ID)
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.NAME)
    assert rule.SEVERITY in SEVERITIES
    assert callable(rule.check)
    doc = (rule.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else ""
    assert summary and summary.endswith(".") and len(summary) <= 100, f"{rule.ID}: needs a one-line summary"
    assert "Fails:" in doc, f"{rule.ID}: docstring has no failing example"
    assert "Passes:" in doc, f"{rule.ID}: docstring has no passing example"
    assert doc.index("Fails:") < doc.index("Passes:")


@pytest.mark.parametrize("rule", RULE_IDS)
@pytest.mark.parametrize("kind", ["fail", "pass"])
def test_case_starts_with_a_comment(rule: str, kind: str) -> None:
    case = _case(rule, kind)
    lines = case.header_file.read_text(encoding="utf-8").splitlines()
    described = [ln for ln in lines if ln.startswith("#") and not EXPECT.match(ln)]
    assert lines and lines[0].startswith("#") and described, \
        f"{case.header_file.relative_to(REPO)} must start with a comment saying what it shows"
    assert any(ln.startswith("fnl: 1") for ln in lines), "a case is a complete definition"
    bad = [ln for ln in lines if ln.startswith("# expect:") and not EXPECT.match(ln)]
    assert not bad, f"malformed expect lines: {bad}"
    if kind == "pass":
        assert not _expectations(case), "a passing case expects nothing"


@pytest.mark.parametrize("rule", RULE_IDS)
def test_fail_case_reports_exactly_the_expected_findings(rule: str) -> None:
    case = _case(rule, "fail")
    expected = _expectations(case)
    assert expected, f"{case.header_file.relative_to(REPO)} has no `# expect: {rule} LINE:COL text` line"
    assert all(spot[0] == rule for spot, _ in expected), "a fail case expects findings of its own rule only"
    problems = _run(case, Selection(select=(rule,)))
    _assert_schema_valid(case, problems)
    found = sorted(_spot(p) for p in problems)
    assert found == sorted(spot for spot, _ in expected), \
        f"{rule} found:\n{_describe(problems)}\nexpected:\n" + "\n".join(f"  {s} {t}" for s, t in expected)
    for spot, text in expected:
        here = [p for p in problems if _spot(p) == spot]
        assert any(text in p.message or text in p.help for p in here), \
            f"no finding at {spot} says {text!r}:\n{_describe(here)}"
    for p in problems:
        assert p.severity == BY_ID[rule].SEVERITY
        assert p.message and p.help, "every finding says what is wrong and how to fix it"


@pytest.mark.parametrize("rule", RULE_IDS)
def test_pass_case_is_clean_for_its_rule(rule: str) -> None:
    case = _case(rule, "pass")
    problems = _run(case, Selection(select=(rule,)))
    _assert_schema_valid(case, problems)
    assert not [p for p in problems if p.code == rule], f"{rule} fired on its passing case:\n{_describe(problems)}"


@pytest.mark.parametrize("rule", RULE_IDS)
@pytest.mark.parametrize("kind", ["fail", "pass"])
def test_whole_registry_runs_on_case(rule: str, kind: str) -> None:
    """Every rule runs on every case without raising (an exception in a rule is a bug).
    Passing cases are realistic, clean definitions: no rule finds anything in them, except
    FNL209 for the shared template folder, which holds more templates than one case sends."""
    case = _case(rule, kind)
    problems = _run(case, Selection())
    _assert_schema_valid(case, problems)
    if kind == "pass":
        noise = [p for p in problems
                 if not (p.code == "FNL209" and SHARED_TEMPLATES in Path(p.location.file).resolve().parents)]
        assert not noise, f"passing case of {rule} is not clean:\n{_describe(noise)}"


# ---------------------------------------------------------------- rules on hostile input

HEAD = """\
fnl: 1
funnel: acme-b2b
sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield, IL 62701, USA"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "funnel.yaml"
    path.write_text(HEAD + text, encoding="utf-8")
    return path


def test_cycle_search_is_fast_when_every_stage_can_skip_ahead(tmp_path: Path) -> None:
    """Forty stages where a lead can jump from any stage to any later one: 2^38 paths, no
    cycle. Definitions come from pull requests, so the lint must not hang on them."""
    import time

    stages = [f"s{i:02d}" for i in range(40)]
    rows = [f"  - {{from: [{', '.join(stages[:i])}], to: {stages[i]}, when: \"score >= {i}\"}}"
            for i in range(1, len(stages))]
    path = _write(tmp_path, f"stages: [{', '.join(stages)}]\n"
                  "entries: {imported: {on: lead.imported, enters: s00, basis: legitimate_interest}}\n"
                  "transitions:\n" + "\n".join(rows) + "\n")
    started = time.perf_counter()
    assert [p for c in check_paths((str(path),), Selection()) for p in c.problems] == []
    assert time.perf_counter() - started < 5
    # Sales moving the lead back on a CRM event closes a loop, but not an automatic one.
    text = path.read_text()
    path.write_text(text + "  - {from: s38, to: s00, on: crm.deal_lost}\n", encoding="utf-8")
    assert [p for c in check_paths((str(path),), Selection(select=("FNL303",))) for p in c.problems] == []
    # An automatic move back that can hold with every move forward: one finding, at that move.
    path.write_text(text + "  - {from: s38, to: s00, when: \"replied\"}\n", encoding="utf-8")
    started = time.perf_counter()
    found = [p for c in check_paths((str(path),), Selection(select=("FNL303",))) for p in c.problems]
    assert time.perf_counter() - started < 5
    assert [p.location.line for p in found] == [len(path.read_text().splitlines())]
    assert found[0].message.startswith("transitions form a loop s00 → s01 → s02")
    assert "s37 → s38 → s00 that a lead can bounce round" in found[0].message
    assert found[0].message.endswith("as for a lead with `score >= 38 and replied`")
    # Back only below the first threshold: no score is both, so no loop can bounce.
    path.write_text(text + "  - {from: s38, to: s00, when: \"score < 1\"}\n", encoding="utf-8")
    started = time.perf_counter()
    assert [p for c in check_paths((str(path),), Selection(select=("FNL303",))) for p in c.problems] == []
    assert time.perf_counter() - started < 5


def test_zero_length_frequency_cap_window_is_refused(tmp_path: Path) -> None:
    """`per: 0d` passes the schema's pattern but caps nothing; validation refuses it at its place."""
    path = _write(tmp_path, """\
stages: [subscriber, mql]
scoring:
  events: {email.opened: 1, email.clicked: 2}
  decay: {half_life: 30d, window: 30d}
  thresholds: {mql: 40}
transitions:
  - {from: subscriber, to: mql, when: "score >= thresholds.mql"}
sequences:
  a:
    {kind: nurture, stage: subscriber, steps: [{send: intro}, {send: proof}, {send: demo}], exit: {on: [email.replied]}}
  b:
    {kind: broadcast, stage: subscriber, steps: [{send: intro}, {send: offer}], exit: {stage_at_least: mql}}
policies:
  frequency_cap: {max: 1, per: 0d}
""")
    problems = [p for c in check_paths((str(path),), Selection()) for p in c.problems]
    assert [(p.code, p.dotted_path) for p in problems] == [("FNL111", "policies.frequency_cap.per")]
    assert "must be longer than zero" in problems[0].message


@pytest.mark.parametrize("condition, message", [
    ("visited('pricing', 'demo')", "`visited` takes at most one argument, not 2"),
    ("clicked(5)", "`clicked` takes a quoted name"),
    ("visited('pricing', since='mql', since='sql')", "`visited` gives `since=` twice"),
    ("attended('x', 'y')", "`attended` takes at most one argument, not 2"),
    ("stage_at_least()", "`stage_at_least` takes one argument, not 0"),
    ("days_since('optin', since='mql')", "`days_since` does not take `since=`"),
    ("replied or visited('pricing', since='mql')", None),
])
def test_predicate_signatures(tmp_path: Path, condition: str, message: str) -> None:
    path = _write(tmp_path, f"""\
stages: [subscriber, mql]
transitions:
  - {{from: subscriber, to: mql, when: "{condition}"}}
""")
    [result] = check_paths((str(path),), Selection(select=("FNL208",)))
    assert [p.message for p in result.problems] == ([message] if message else [])
