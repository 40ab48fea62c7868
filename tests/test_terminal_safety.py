"""Text from input never reaches a terminal raw, and machine output is always UTF-8.

A YAML string can hold any character through its escapes (`"\\e[2J"` clears the screen,
`"\\r"` overwrites a line, `"\\e]0;…\\a"` retitles the window), and a file name can hold
bytes that are not UTF-8. fnl escapes every such character in one place
(`engine.terminal`) before text or GitHub output shows it, and writes JSON and SARIF
that are valid UTF-8 whatever the file names.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import fnl
from conftest import MINIMAL, REPO, clean_env, write
from engine.errors import Location, Problem
from engine.terminal import encodable, escape, escape_lines, for_json

# What a terminal acts on: C0 (but newline, which fnl lays out itself), DEL, C1, and
# the invisible line and direction controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# ...and everything `escape` changes: newline and the bidi marks too.
ESCAPED = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

HOSTILE = {
    "clear-screen": ("\\e[2J", "\x1b[2J", "\\x1b[2J"),
    "carriage-return": ("ok\\rEVIL", "ok\rEVIL", "ok\\rEVIL"),
    "bell": ("ding\\a", "ding\x07", "ding\\x07"),
    "nul": ("a\\0b", "a\x00b", "a\\x00b"),
    "osc-title": ("\\e]0;pwned\\a", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    "c1-csi": ("\\x9b31m", "\x9b31m", "\\x9b31m"),
    "del": ("a\\x7fb", "a\x7fb", "a\\x7fb"),
    "line-separator": ("a\\Lb", "a\u2028b", "a\\u2028b"),
    "paragraph-separator": ("a\\Pb", "a\u2029b", "a\\u2029b"),
    "bidi-override": ("a\\u202Eb", "a\u202eb", "a\\u202eb"),
}


# -- the function ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_escape_makes_each_control_visible(name):
    _, raw, shown = HOSTILE[name]
    assert escape(raw) == shown


def test_escape_leaves_ordinary_text_alone():
    text = "Café ✓ 𝔘 — C:\\path\\file.yaml `score >= 40` 50% {a: 1}"
    assert escape(text) is text or escape(text) == text


def test_escape_of_non_utf8_file_names_shows_the_byte():
    name = os.fsdecode(b"caf\xe9.yaml")  # surrogateescape: U+DCE9
    assert escape(name) == "caf\\xe9.yaml"
    assert encodable(name) == "caf\\xe9.yaml"
    assert escape("\ud800") == "\\ud800"


def test_escape_takes_any_value():
    assert escape(ValueError("a\x1bb")) == "a\\x1bb"
    assert escape(3) == "3"


def test_escape_lines_keeps_newlines_only():
    assert escape_lines("a\x1b\nb\r\n") == "a\\x1b\nb\\r\n"


def test_for_json_makes_every_string_encodable():
    doc = {"file\udcff": ["a\udce9", {"k": "\ud800"}], "n": 1, "ok": "é\x1b"}
    out = for_json(doc)
    text = json.dumps(out, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate left
    assert out == {"file\\xff": ["a\\xe9", {"k": "\\ud800"}], "n": 1, "ok": "é\x1b"}


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text())
def test_escaped_text_is_safe_encodable_and_stable(text):
    shown = escape(text)
    assert RAW.search(shown.replace("\n", "")) is None and "\n" not in shown
    shown.encode("utf-8")
    assert escape(shown) == shown
    if ESCAPED.search(text) is None and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert shown == text


# -- the reporters -----------------------------------------------------------------------------

def hostile_definition(tmp_path: Path, yaml_escape: str, name: str = "bad.yaml") -> Path:
    # The hostile text in a key (an unknown key: message and dotted path) and in a value
    # (a wrong enum: message).
    return write(tmp_path, name, MINIMAL + f'"x{yaml_escape}y": 1\nsequences:\n  s:\n    kind: "k{yaml_escape}"\n'
                 "    stage: subscriber\n    steps: [{send: a/b}]\n")


def invoke(*args) -> "CliRunner":
    return CliRunner().invoke(fnl.cli, [str(a) for a in args])


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("fmt", ["text", "github"])
def test_validate_output_shows_controls_escaped(tmp_path, name, fmt):
    yaml_escape, _, shown = HOSTILE[name]
    path = hostile_definition(tmp_path, yaml_escape)
    result = invoke("validate", "--format", fmt, path)
    assert result.exit_code == 1, result.output
    assert RAW.search(result.output) is None, repr(result.output)
    # The value's message shows it visibly (GitHub's own escaping of `%` comes on top).
    assert f"k{shown}".replace("%", "%25" if fmt == "github" else "%") in result.output
    if name == "clear-screen" and fmt == "text":  # and the key, in the dotted path and the message
        assert f": error FNL100 x{shown}y: unknown key `x{shown}y`" in result.output


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_machine_formats_keep_the_real_characters(tmp_path, fmt):
    path = hostile_definition(tmp_path, "\\e[2J\\x9b\\L")
    result = invoke("validate", "--format", fmt, path)
    assert result.exit_code == 1
    assert RAW.search(result.output) is None, repr(result.output)  # C1 and U+2028 as \u escapes, like C0
    doc = json.loads(result.output)
    if fmt == "json":
        messages = [p["message"] for d in doc["definitions"] for p in d["problems"]]
    else:
        messages = [r["message"]["text"] for r in doc["runs"][0]["results"]]
    assert any("k\x1b[2J\x9b\u2028" in m for m in messages)  # consumers get the real text


def test_the_quoted_source_line_is_cleaned_too(tmp_path):
    path = hostile_definition(tmp_path, "\\e[2J")
    out = invoke("validate", path).output
    assert RAW.search(out) is None
    assert re.search(r"^\s+\d+ \| ", out, re.M)


def test_error_lines_escape_paths_and_messages(tmp_path):
    result = invoke("validate", tmp_path / "gone\x1b[2J.yaml")
    assert result.exit_code == 3
    assert "gone\\x1b[2J.yaml" in result.output and RAW.search(result.output) is None


def test_control_characters_in_a_file_name(tmp_path):
    path = write(tmp_path, "evil\x1b]0;pwned\x07\r.yaml", MINIMAL + "colour: blue\n")
    for fmt in ("text", "github"):
        out = invoke("validate", "--format", fmt, path).output
        assert RAW.search(out) is None, repr(out)
        assert "evil\\x1b]0;pwned\\x07\\r.yaml".replace("%", "%25") in out.replace("%3A", ":")


def test_plan_output_escapes_what_the_plans_hold(tmp_path):
    source = (REPO / "funnels" / "reference.yaml").read_text(encoding="utf-8")
    old = write(tmp_path, "funnels/old.yaml", source)
    fit = "when: \"industry in ['saas', 'finance']\""
    assert fit in source
    new = write(tmp_path, "funnels/new.yaml", source.replace(fit, fit[:-1] + " and first_name != '\\e[2J\\r'\""))
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    for fmt in ("text", "markdown"):
        result = invoke("plan", "--format", fmt, old, new)
        assert result.exit_code == 0, result.output
        assert RAW.search(result.output) is None, repr(result.output)
        assert "first_name != '\\x1b[2J\\r'" in result.output


def test_plan_text_escapes_names_from_a_plan_file(tmp_path):
    result = invoke("compile", REPO / "funnels" / "reference.yaml")
    data = json.loads(result.output)
    data["funnel"] = "ref\x1b[2J\u2028"
    data["sequences"][0]["name"] = "seq\x07\r"
    path = write(tmp_path, "old.json", json.dumps(data))
    for fmt in ("text", "markdown"):
        out = invoke("plan", "--format", fmt, path, REPO / "funnels" / "reference.yaml").output
        assert RAW.search(out) is None, repr(out)
        assert "seq\\x07\\r" in out
    data["sequences"][0]["name"] = "seq\x9b\u2029"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = invoke("plan", "--format", "json", path, REPO / "funnels" / "reference.yaml").output
    assert RAW.search(out) is None, repr(out)
    changes = json.loads(out)["plans"][0]["changes"]
    assert any("seq\x9b\u2029" in c["path"] for c in changes)


# -- file names that are not UTF-8 -------------------------------------------------------------

@pytest.fixture
def latin1_named(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse file names that are not UTF-8")
    directory = tmp_path / "defs"
    directory.mkdir()
    raw_name = os.path.join(os.fsencode(directory), b"caf\xe9.yaml")
    try:
        with open(raw_name, "wb") as fh:
            fh.write((MINIMAL + "colour: blue\n").encode("utf-8"))
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    return directory


@pytest.mark.parametrize("fmt", ["json", "sarif", "text", "github"])
def test_non_utf8_file_name_gives_valid_utf8_output(latin1_named, fmt):
    r = subprocess.run([sys.executable, "fnl.py", "validate", "--format", fmt, str(latin1_named)], cwd=REPO,
                       capture_output=True, timeout=60, env=clean_env(PYTHONIOENCODING="utf-8"))
    assert r.returncode == 1, r.stderr
    out = r.stdout.decode("utf-8")  # strict: valid UTF-8 or this raises
    assert "Traceback" not in out + r.stderr.decode("utf-8", "replace")
    if fmt == "json":
        files = [p["file"] for d in json.loads(out)["definitions"] for p in d["problems"]]
        assert files and all(f.endswith("caf\\xe9.yaml") for f in files)
    elif fmt == "sarif":
        uri = json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.endswith("caf%E9.yaml")  # the real byte, percent-encoded
    else:
        assert "caf\\xe9.yaml" in out


def test_non_utf8_file_name_in_process(latin1_named):
    for fmt in ("json", "sarif", "text", "github"):
        result = invoke("validate", "--format", fmt, latin1_named)
        assert result.exit_code == 1
        result.output.encode("utf-8")
        if fmt in ("json", "sarif"):
            json.loads(result.output)


def test_reporters_escape_every_field():
    from engine.check import Checked
    from engine.report import REPORTERS
    from engine.sources import Source

    p = Problem("FNL100", "bad \x1b[2J", Location("f\x07\udce9.yaml", 2, 3), ("a\rb", 0), "help \x9b",
                related=("FNL999 also \u2028",))
    results = [Checked(Source("n", (Path("f.yaml"),)), (p,), None)]
    for fmt, render in REPORTERS.items():
        out = render(results, True)
        out.encode("utf-8")
        if fmt in ("text", "github"):
            assert RAW.search(out.replace("\n", "")) is None, (fmt, out)
        else:
            json.loads(out)


@pytest.mark.parametrize("command", [["compile"], ["graph"], ["graph", "--format", "dot"]])
def test_compile_and_graph_print_no_control_character_from_the_definition(tmp_path, command):
    """A description and a condition literal with ESC, U+2028 and NEL: the plan and the graph
    still carry them (as escapes), and nothing reaches the terminal raw."""
    repo = Path(__file__).resolve().parent.parent
    shutil.copytree(repo / "templates", tmp_path / "templates")
    (tmp_path / "funnels").mkdir()
    text = (repo / "funnels" / "reference.yaml").read_text(encoding="utf-8")
    edited = text.replace(
        "description: Benchmark workload - opt-in, six-email nurture, scoring, MQL, SQL handoff and three sales "
        "emails.", 'description: "Bench\\x1b[2J\\u2028mark\\x85"').replace(
        'when: "fit and score >= thresholds.mql and not unsubscribed"',
        "when: \"fit and score >= thresholds.mql and not unsubscribed and first_name != 'a\\x1b[2J\\u2028'\"")
    assert edited.count("\\x1b[2J") == 2
    path = tmp_path / "funnels" / "reference.yaml"
    path.write_text(edited, encoding="utf-8")
    r = subprocess.run([sys.executable, str(repo / "fnl.py"), *command, str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not [c for c in "\x1b\u2028\x85" if c in r.stdout]
    if command == ["compile"]:
        plan = json.loads(r.stdout)
        assert plan["transitions"][0]["when"]["tree"]["args"][1]["args"][1]["lit"] == "a\x1b[2J\u2028"
