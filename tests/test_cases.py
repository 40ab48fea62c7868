"""Data-driven acceptance cases from tests/cases/.

Convention (later lint rules add cases the same way):

* `valid/*.yaml`, and `valid/<dir>/` holding `funnel.yaml` (a split definition), must
  validate with no problems.
* `invalid/*.yaml`, and `invalid/<dir>/funnel.yaml`, start with comment lines: one says
  what the case tests, and one or more say what must be reported:

      # expect: CODE LINE:COL text
      # expect: CODE FILE:LINE:COL text      (FILE relative to the case directory)

  The set of (code, file, line, column) reported must equal the expected set exactly,
  and each `text` must appear in that problem's message or help.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import CASES, REPO, check, run_fnl

EXPECT = re.compile(r"#\s*expect:\s*(?P<code>FNL\d{3})\s+(?:(?P<file>[^\s:]+):)?(?P<line>\d+):(?P<col>\d+)"
                    r"(?:\s+(?P<text>.*\S))?\s*$")

# Cases that expose engine bugs: they stay strict xfails until the engine is fixed.
KNOWN_BUGS: Dict[str, str] = {
}


@dataclass(frozen=True)
class Expected:
    code: str
    file: Path
    line: int
    col: int
    text: str


def _case_root(case: Path) -> Path:
    return case / "funnel.yaml" if case.is_dir() else case


def _cases(kind: str) -> List[Path]:
    folder = CASES / kind
    found = sorted(folder.glob("*.yaml")) + sorted(d for d in folder.iterdir()
                                                    if d.is_dir() and (d / "funnel.yaml").is_file())
    return sorted(found, key=lambda p: p.name)


def _header(path: Path) -> List[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def expectations(case: Path) -> List[Expected]:
    root = _case_root(case)
    base = case if case.is_dir() else case.parent
    out = []
    for line in _header(root):
        if not re.match(r"#\s*expect:", line):
            continue
        m = EXPECT.match(line)
        assert m, f"{root}: malformed expect line: {line!r}"
        file = (base / m["file"]).resolve() if m["file"] else root.resolve()
        assert file.is_file(), f"{root}: expect line names a missing file: {line!r}"
        out.append(Expected(m["code"], file, int(m["line"]), int(m["col"]), m["text"] or ""))
    return out


def _absolute(file: str) -> Path:
    path = Path(file)
    return (path if path.is_absolute() else Path.cwd() / path).resolve()


def _param(case: Path):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.name])] if case.name in KNOWN_BUGS else []
    return pytest.param(case, id=case.name, marks=marks)


VALID = _cases("valid")
INVALID = _cases("invalid")


def test_there_are_enough_cases():
    assert len(VALID) >= 5
    assert len(INVALID) >= 25
    assert set(KNOWN_BUGS) <= {c.name for c in INVALID}, "a KNOWN_BUGS entry names no case"


@pytest.mark.parametrize("case", [_param(c) for c in VALID])
def test_valid_case(case: Path):
    assert _header(_case_root(case)), f"{case}: start the case with a comment saying what it tests"
    problems = check(case)
    assert problems == [], "\n".join(f"{p.code} {p.location}: {p.message}" for p in problems)


@pytest.mark.parametrize("case", [_param(c) for c in INVALID])
def test_invalid_case(case: Path):
    header = _header(_case_root(case))
    assert any(not re.match(r"#\s*expect:", h) for h in header), f"{case}: say what the case tests in a comment"
    expected = expectations(case)
    assert expected, f"{case}: an invalid case needs at least one `# expect:` line"

    problems = check(case)
    got: Dict[Tuple[str, Path, int, int], list] = {}
    for p in problems:
        got.setdefault((p.code, _absolute(p.location.file), p.location.line, p.location.column), []).append(p)
    want = {(e.code, e.file, e.line, e.col) for e in expected}

    def show(keys) -> str:
        return "\n".join(f"  {c} {f.relative_to(REPO) if f.is_relative_to(REPO) else f}:{line}:{col}"
                         + "".join(f"  {p.message} | {p.help}" for p in got.get((c, f, line, col), []))
                         for c, f, line, col in sorted(keys))

    assert set(got) == want, f"\nunexpected:\n{show(set(got) - want)}\nmissing:\n{show(want - set(got))}"
    for e in expected:
        texts = [p.message + "\n" + p.help for p in got[(e.code, e.file, e.line, e.col)]]
        assert any(e.text in t for t in texts), f"{e.code} {e.line}:{e.col}: {e.text!r} not in {texts}"
    for p in problems:
        assert p.message.strip(), f"{p.code} at {p.location} has no message"


def test_expect_line_parser():
    m = EXPECT.match("# expect: FNL008 other.yaml:3:3 defined twice")
    assert (m["code"], m["file"], m["line"], m["col"], m["text"]) == ("FNL008", "other.yaml", "3", "3", "defined twice")
    m = EXPECT.match("# expect: FNL100 12:5 did you mean `steps`?")
    assert (m["file"], m["line"], m["col"], m["text"]) == (None, "12", "5", "did you mean `steps`?")
    assert EXPECT.match("# expect: FNL100 twelve:5 x") is None


def test_cli_agrees_on_all_valid_cases():
    result = run_fnl("validate", *(c.relative_to(REPO) for c in VALID))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checked {len(VALID)} definitions: no problems." in result.stdout


def test_cli_reports_every_invalid_case_in_one_run():
    cases = [c for c in INVALID if c.name not in KNOWN_BUGS]
    result = run_fnl("validate", "--format", "json", *(c.relative_to(REPO) for c in cases))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    import json

    report = json.loads(result.stdout)
    assert report["summary"]["definitions"] == len(cases)
    assert report["summary"]["with_problems"] == len(cases)
    assert report["summary"]["problems"] == sum(len(expectations(c)) for c in cases)
