"""Every code fnl prints can be looked up: `fnl rules CODE` (or its name) prints a page
with what it means, an example that gets it and the fix; `fnl help` has the topics.

A code added to `engine/codes.py` needs its page in `engine/docs.py` (PAGES); these
tests say which is missing. Where a page's examples can run, they do: the "Fails:"
example gets the code and the "Passes:" one does not.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import pytest

from conftest import MINIMAL

import fnl
from engine import docs, language
from engine.codes import CODES
from engine.lint.registry import RULES

CODE_IDS = sorted(CODES)
RULE_IDS = [r.ID for r in RULES]


def cli(capsys: pytest.CaptureFixture, *args: str) -> Tuple[int, str, str]:
    capsys.readouterr()
    code = fnl.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sections(page: str) -> dict:
    """The indented example under each of "Fails:" and "Passes:"."""
    found = {}
    for head in ("Fails:", "Passes:"):
        m = re.search(rf"^{head}\n((?:    .*\n?|\n)+)", page, re.MULTILINE)
        found[head] = m.group(1).strip() if m else ""
    return found


def assert_is_a_page(page: str, code: str) -> None:
    assert page.startswith(code + " "), page[:80]
    examples = sections(page)
    assert examples["Fails:"], f"{code}: the page has no example under Fails:"
    assert examples["Passes:"], f"{code}: the page has no fixed example under Passes:"
    assert page.index("Fails:") < page.index("Passes:")


# -- every code has a page ------------------------------------------------------------

@pytest.mark.parametrize("code", CODE_IDS)
def test_every_printed_code_has_a_page(code: str) -> None:
    assert code in docs.BY_CODE, f"{code} is in engine/codes.py but has no page: add it to PAGES in engine/docs.py"
    page = docs.BY_CODE[code]
    assert page.explanation and page.fails and page.passes and page.fix
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", page.name)
    assert page.check in docs.CHECKS and page.severity in ("error", "warning", "info")


def test_every_code_in_fnls_source_has_a_page() -> None:
    """A code written anywhere in engine/ (a behaviour model's, an expectation's, a rule's)
    can be looked up with `fnl rules CODE`, so none is printed without a page."""
    engine = Path(__file__).resolve().parent.parent / "engine"
    written = {code for path in engine.rglob("*.py")
               for code in re.findall(r"[\"'](FNL\d{3})[\"'\]]", path.read_text(encoding="utf-8"))}
    assert len(written) > 60
    missing = sorted(code for code in written if docs.lookup(code) is None)
    assert not missing, f"codes fnl prints without a page: {missing}"


def test_every_page_is_of_a_code_fnl_prints() -> None:
    assert sorted(docs.BY_CODE) == CODE_IDS


@pytest.mark.parametrize("code", CODE_IDS)
def test_fnl_rules_prints_a_codes_page_by_id_and_by_name(capsys: pytest.CaptureFixture, code: str) -> None:
    exit_code, out, err = cli(capsys, "rules", code)
    assert exit_code == 0, err
    assert_is_a_page(out, code)
    assert CODES[code] in out and "\nFix: " in out
    by_name = cli(capsys, "rules", docs.BY_CODE[code].name)
    assert by_name[0] == 0 and by_name[1] == out
    assert cli(capsys, "rules", code.lower())[1] == out


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_fnl_rules_prints_a_rules_page_by_id_and_by_name(capsys: pytest.CaptureFixture, rule_id: str) -> None:
    rule = next(r for r in RULES if r.ID == rule_id)
    exit_code, out, err = cli(capsys, "rules", rule_id)
    assert exit_code == 0, err
    assert_is_a_page(out, rule_id)
    assert cli(capsys, "rules", rule.NAME) == (0, out, "")


def test_no_name_answers_for_two_codes() -> None:
    names = [r.NAME for r in RULES] + [p.name for p in docs.PAGES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("asked, suggested", [
    ("FNL1000", "FNL100"), ("fnl5055", "FNL505"), ("FNL0166", "FNL016"),
    ("unknwn-key", "unknown-key"), ("unknown-stag", "unknown-stage"),
])
def test_a_made_up_code_gets_did_you_mean(capsys: pytest.CaptureFixture, asked: str, suggested: str) -> None:
    exit_code, out, err = cli(capsys, "rules", asked)
    assert exit_code == 3 and out == ""
    assert f"no rule {asked!r}" in err and f"did you mean {suggested}?" in err


def test_a_query_like_nothing_says_where_the_lists_are(capsys: pytest.CaptureFixture) -> None:
    exit_code, _, err = cli(capsys, "rules", "zzzz")
    assert exit_code == 3 and "fnl help codes" in err


def test_the_rule_list_points_at_codes_and_topics(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, err = cli(capsys, "rules")
    assert exit_code == 0
    assert [line.split()[0] for line in out.splitlines() if line.strip()] == RULE_IDS  # one rule a line
    assert "fnl help codes" in err
    for topic in docs.TOPICS:
        assert topic.name in err


# -- the examples on the pages are true --------------------------------------------------

RUNNABLE = [p for p in docs.PAGES if p.check]


def _run_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                 page: docs.CodePage, text: str) -> str:
    monkeypatch.chdir(tmp_path)
    funnel = tmp_path / "funnels" / "example.yaml"
    funnel.parent.mkdir(exist_ok=True)
    body = docs.example(text)
    if page.check == "definition":
        funnel.write_text(MINIMAL + body, encoding="utf-8")
        args: List[str] = ["validate", "funnels/example.yaml"]
    elif page.check == "file":
        funnel.write_text(body, encoding="utf-8")
        args = ["validate", "funnels/example.yaml"]
    elif page.check == "events":
        funnel.write_text(MINIMAL, encoding="utf-8")
        (tmp_path / "events.jsonl").write_text(body, encoding="utf-8")
        args = ["trace", "funnels/example.yaml", "--events", "events.jsonl"]
    else:
        assert page.check == "plan"
        funnel.write_text(MINIMAL, encoding="utf-8")
        (tmp_path / "old-plan.json").write_text(body, encoding="utf-8")
        args = ["plan", "old-plan.json", "funnels/example.yaml"]
    exit_code, out, err = cli(capsys, *args)
    assert exit_code in (0, 1), err
    return out + err


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.code for p in RUNNABLE])
def test_the_failing_example_gets_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture, page: docs.CodePage) -> None:
    printed = _run_example(tmp_path, monkeypatch, capsys, page, page.fails)
    assert re.search(rf"\b{page.code}\b", printed), f"{page.code}: its Fails: example does not get it:\n{printed}"


@pytest.mark.parametrize("page", [p for p in RUNNABLE if p.check != "plan"],
                         ids=[p.code for p in RUNNABLE if p.check != "plan"])
def test_the_passing_example_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture, page: docs.CodePage) -> None:
    printed = _run_example(tmp_path, monkeypatch, capsys, page, page.passes)
    assert not re.search(rf"\b{page.code}\b", printed), f"{page.code}: its Passes: example still gets it:\n{printed}"


def test_the_decay_rule_page_example_is_its_lint_case_and_fails_as_the_page_says(
        capsys: pytest.CaptureFixture) -> None:
    """A lint rule's page shows a fragment; for FNL509 the fragment is what its lint case
    holds, word for word, with the emails the comment names (days 0, 3 and 7), so the
    page's claim runs: the 12h half-life gets FNL509 and the page's fix does not."""
    examples = sections(docs.lookup("FNL509") or "")
    cases = Path(__file__).resolve().parent / "cases" / "lint" / "FNL509"
    fail, passing = cases / "fail.yaml", cases / "pass.yaml"
    assert docs.example(examples["Fails:"]) in fail.read_text(encoding="utf-8")
    assert "days 0, 3 and 7" in examples["Fails:"]
    assert "      - {wait: 3d, send: nurture/capability}\n      - {wait: 4d, send: nurture/case-study}\n" \
        in fail.read_text(encoding="utf-8")
    assert any(line.strip().startswith(examples["Passes:"])
               for line in passing.read_text(encoding="utf-8").splitlines())
    _code, out, _err = cli(capsys, "validate", "--select", "FNL509", str(fail))
    assert "FNL509" in out and "`mql` (60; " in out, out
    _code, out, _err = cli(capsys, "validate", "--select", "FNL509", str(passing))
    assert "FNL509" not in out, out


def test_most_pages_run_their_examples() -> None:
    # Only what cannot be written as text (bytes, sizes, folders, unreachable fallbacks) is read-only.
    assert len(RUNNABLE) >= len(docs.PAGES) * 2 // 3


def test_example_text_is_what_a_file_holds() -> None:
    assert docs.example("    a:\n      b: 1\n") == "a:\n  b: 1\n"
    assert docs.example("    key<U+200B>: 1") == "key\u200b: 1\n"


# -- fnl help ---------------------------------------------------------------------------

def test_help_lists_its_topics(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, _ = cli(capsys, "help")
    assert exit_code == 0
    for topic in docs.TOPICS:
        assert re.search(rf"^  {topic.name}\s+{re.escape(topic.summary)}$", out, re.MULTILINE)


def test_help_conditions_is_the_language_reference(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, _ = cli(capsys, "help", "conditions")
    assert exit_code == 0 and out == language.text()


def test_help_codes_lists_every_code_and_rule(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, _ = cli(capsys, "help", "codes")
    assert exit_code == 0
    listed = [line.split()[0] for line in out.splitlines() if re.match(r"FNL\d{3}\s", line)]
    assert listed == CODE_IDS + RULE_IDS


def test_help_of_a_command_is_its_help(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, _ = cli(capsys, "help", "validate")
    assert exit_code == 0 and out.startswith("Usage: fnl validate") and "--select" in out


def test_help_of_a_code_is_its_page(capsys: pytest.CaptureFixture) -> None:
    assert cli(capsys, "help", "FNL110")[1] == cli(capsys, "rules", "FNL110")[1]


def test_help_of_an_unknown_topic_suggests_one(capsys: pytest.CaptureFixture) -> None:
    exit_code, out, err = cli(capsys, "help", "condtions")
    assert exit_code == 3 and out == "" and "did you mean conditions?" in err
