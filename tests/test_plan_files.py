"""`fnl plan OLD.json NEW`: a plan file is untrusted input, read like a definition.

Whatever the file holds, `fnl plan` answers with a located problem (exit 1) or a usage
error (exit 3, for a file that is not a plan at all), never an internal error (exit 4),
within 2 seconds and 300 MB. Problems carry the file, line, column and JSON path:
FNL701 for a file that cannot be read as JSON (size, encoding, syntax, nesting,
numbers), FNL702 for JSON that does not match `schemas/plan.schema.json`.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from click.testing import CliRunner

import fnl
from conftest import REPO, clean_env
from engine import plan as P
from engine import planfile
from engine.errors import ProblemsFound
from engine.pipeline import plan_for

ACME = str(REPO / "funnels" / "acme")


@pytest.fixture(scope="module")
def compiled() -> Dict[str, Any]:
    return json.loads(P.dumps(plan_for(ACME)))


def invoke(*args: Any) -> Any:
    result = CliRunner().invoke(fnl.cli, [str(a) for a in args])
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def write_json(tmp_path: Path, data: Any, name: str = "old.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def located(output: str, path: Path, code: str) -> re.Match:
    """The first `file:line:col: error CODE [path]: message` line of `code`."""
    m = re.search(rf"^{re.escape(str(path))}:(\d+):(\d+): error {code}(?: (\S+))?: (.+)$", output, re.M)
    assert m, output
    return m


# -- the shapes that used to reach a TypeError, ValueError or KeyError in the diff -------------

def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def change(data: Dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        here = data
        for part in parents:
            here = here[part]
        here[last] = value
    return change


MALFORMED = {
    "sequences-not-a-list": ("sequences", "x"),
    "sequence-not-an-object": ("sequences.0", 7),
    "steps-wait-a-string": ("sequences.0.steps.0.wait_minutes", "3d"),
    "threshold-three-items": ("scoring.thresholds.0", ["mql", 40, 1]),
    "threshold-name-a-number": ("scoring.thresholds.0.0", 1),
    "points-a-string": ("scoring.events.0.points", "ten"),
    "decay-factor-a-list": ("scoring.decay", {"factor": [1], "every_minutes": 1, "window_minutes": None}),
    "stage-index-null": ("stages.0.index", None),
    "transition-sources-a-string": ("transitions.0.sources", "subscriber"),
    "fit-not-a-condition": ("fit", "industry == 'saas'"),
    "template-hash-a-number": ("templates.0.sha256", 12),
    "handoff-routes-flat": ("handoff.0.assign.routes", ["na", "x"]),
    "policies-a-list": ("policies", []),
    "variant-weight-a-string": ("sequences.0.steps.0.variants", [{"name": "a", "weight": "1"}]),
    "magnet-score-a-float": ("lead_magnets.0.score", 1.5),
    "tree-unknown-op": ("fit.tree", {"op": "xor", "args": [{"lit": 1}]}),
    "content-hash-short": ("content_hash", "sha256:abc"),
    "unknown-key": ("colour", "blue"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_plan_is_a_located_problem(tmp_path, compiled, name):
    where, value = MALFORMED[name]
    data = copy.deepcopy(compiled)
    _set(where, value)(data)
    path = write_json(tmp_path, data)
    for argv in (("plan", path, ACME), ("plan", ACME, path), ("plan", "--format", "json", path, path)):
        result = invoke(*argv)
        assert result.exit_code == 1, result.output
        m = located(result.output, path, "FNL702")
        assert int(m.group(1)) > 1 or where in ("colour",), result.output  # a real line, not just the top
    expected = where.rsplit(".", 1)[0] if name == "unknown-key" else where
    dotted = re.sub(r"\.(\d+)", r"[\1]", expected) if expected != "colour" else ""
    out = invoke("plan", path, ACME).output
    if dotted:
        assert any(line.split(": error FNL702 ", 1)[-1].startswith(dotted) for line in out.splitlines()), out


def test_the_location_points_at_the_value(tmp_path, compiled):
    data = copy.deepcopy(compiled)
    data["scoring"]["thresholds"][0][1] = "forty"
    path = write_json(tmp_path, data)
    out = invoke("plan", path, ACME).output
    m = located(out, path, "FNL702")
    line, column = int(m.group(1)), int(m.group(2))
    assert m.group(3) == "scoring.thresholds[0][1]"
    assert path.read_text(encoding="utf-8").splitlines()[line - 1][column - 1:].startswith('"forty"')


# -- unreadable as JSON ------------------------------------------------------------------------

def test_deep_nesting_is_located_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    start = time.monotonic()
    result = invoke("plan", path, ACME)
    assert time.monotonic() - start < 2
    assert result.exit_code == 1
    m = located(result.output, path, "FNL701")
    assert (m.group(1), m.group(2)) == ("1", str(planfile.MAX_DEPTH + 1))
    assert "nesting is deeper than" in m.group(4)


def test_deep_nesting_inside_a_valid_looking_plan(tmp_path, compiled):
    data = copy.deepcopy(compiled)
    tree: Any = {"lit": 1}
    for _ in range(400):  # 800 levels: more than a plan may have, fewer than Python's parser limit
        tree = {"op": "not", "args": [tree]}
    data["fit"] = {"source": "deep", "tree": tree}
    path = write_json(tmp_path, data)
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1
    m = located(result.output, path, "FNL701")
    assert int(m.group(1)) > 1


def test_a_deep_but_allowed_condition_is_read(tmp_path, compiled):
    data = copy.deepcopy(compiled)
    tree: Any = {"var": "fit"}
    for _ in range(200):  # as deep as a long chain of `or` compiles to
        tree = {"op": "or", "args": [tree, {"var": "fit"}]}
    data["fit"] = {"source": "fit or fit", "tree": tree}
    path = write_json(tmp_path, data)
    result = invoke("plan", path, ACME)
    assert result.exit_code == 0, result.output
    assert "fit" in result.output
    data["fit"]["tree"]["args"][1] = {"var": 7}  # and a problem deep down is still located
    path = write_json(tmp_path, data, "bad.json")
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1
    located(result.output, path, "FNL702")


@pytest.mark.parametrize("text,line,column,words", [
    ('{"format_version": 2,\n  "funnel": "x",,\n}', 2, 17, "not valid JSON"),
    ('{"format_version": 2, "funnel": "x"', 1, 36, "not valid JSON"),
    ('{"format_version": 2, "a": NaN}', 1, 28, "NaN"),
    ('{"format_version": 2, "a": -Infinity}', 1, 28, "Infinity"),
    ('{"format_version": 2,\n "a": 1e999}', 2, 7, "too large"),
    ('{"format_version": 2, "a": ' + "9" * 5000 + "}", 1, 28, "too long"),
    ("", 1, 1, "not valid JSON"),
], ids=["syntax", "truncated", "nan", "infinity", "huge-float", "huge-int", "empty"])
def test_json_that_cannot_be_read(tmp_path, text, line, column, words):
    path = tmp_path / "old.json"
    path.write_text(text, encoding="utf-8")
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1, result.output
    m = located(result.output, path, "FNL701")
    assert (int(m.group(1)), int(m.group(2))) == (line, column), result.output
    assert words in m.group(4)


def test_not_utf8_is_located(tmp_path, compiled):
    path = tmp_path / "old.json"
    path.write_bytes(json.dumps(compiled, indent=2).encode("utf-8").replace(b'"acme-b2b"', b'"acme-b\xe92b"', 1))
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1
    m = located(result.output, path, "FNL701")
    assert "UTF-8" in m.group(4) and int(m.group(1)) > 1


def test_size_is_bounded_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(planfile, "MAX_BYTES", 1000)
    path = tmp_path / "old.json"
    path.write_text('{"format_version": 2, "x": "' + "a" * 2000 + '"}', encoding="utf-8")
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1
    assert "larger than" in located(result.output, path, "FNL701").group(4)


class _Growing:
    """A file object whose size on disk says nothing: read() keeps giving bytes."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> "_Growing":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def read(self, n: int) -> bytes:
        self.calls += 1
        return b" " * n


def test_size_counts_bytes_read_not_the_file_system(tmp_path, monkeypatch):
    path = tmp_path / "old.json"
    path.write_text("{}", encoding="utf-8")  # st_size 2; what is read is unbounded
    growing = _Growing()
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: growing)
    with pytest.raises(ProblemsFound) as exc:
        planfile.read(path, "old.json")
    assert exc.value.problems[0].code == "FNL701" and "larger than" in exc.value.problems[0].message
    assert growing.calls == 1


# -- not a plan at all: usage errors ------------------------------------------------------------

@pytest.mark.parametrize("text,where", [
    ('{"format_version": 99}', ":1:20:"),
    ('[1, 2, 3]', ":1:1:"),
    ('{"name": "package"}', ":1:1:"),
    ('"just a string"', ":1:1:"),
    ('{"format_version": true}', ":1:20:"),
])
def test_a_file_that_is_not_a_plan_is_a_usage_error(tmp_path, text, where):
    path = tmp_path / "other.json"
    path.write_text(text, encoding="utf-8")
    result = invoke("plan", path, ACME)
    assert result.exit_code == 3, result.output
    assert f"fnl: error: {path}{where} not an fnl plan" in result.output
    assert "help: " in result.output


def test_a_format_1_plan_is_upgraded_and_compared(tmp_path, compiled):
    data = copy.deepcopy(compiled)
    data["format_version"] = 1
    del data["entries"]
    del data["scoring"]["count_repeats"]
    for key in ("soft_bounce_limit", "business_days", "business_from", "business_to"):
        del data["policies"][key]
    for h in data["handoff"]:
        del h["sla_clock"], h["answered_by"]
    path = write_json(tmp_path, data)
    result = invoke("plan", "--detailed-exitcode", path, ACME)
    # acme has no entries and runs with the defaults format-1 plans ran with: nothing changes.
    assert result.exit_code == 0, result.output
    assert result.output == "Plan for acme-b2b: No changes.\n"
    data["handoff"][0]["sla_minutes"] = "1h"  # and a format-1 file is checked like any other
    path = write_json(tmp_path, data, "bad.json")
    result = invoke("plan", path, ACME)
    assert result.exit_code == 1
    assert located(result.output, path, "FNL702").group(3) == "handoff[0].sla_minutes"


def test_from_dict_checks_the_schema(compiled):
    data = copy.deepcopy(compiled)
    data["sequences"] = "x"
    with pytest.raises(ValueError, match="not a valid fnl plan"):
        P.from_dict(data)
    assert P.from_dict(copy.deepcopy(compiled)) == plan_for(ACME)


# -- time and memory, in a real process ---------------------------------------------------------

def test_large_hostile_plan_files_stay_within_2s_and_300mb(tmp_path):
    cases = {
        "deep.json": "[" * 1_000_000 + "]" * 1_000_000,
        "brackets.json": "[" + "[]," * 690_000 + "[" * 2000 + "]" * 2001,
        "numbers.json": '{"format_version": 2, "x": [' + ",".join(["1"] * 1_000_000) + "]}",
        "objects.json": '{"format_version": 2, "x": [' + ",".join(['{"a": [1, "\\u001b"]}'] * 90_000) + "]}",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        # CPU seconds of the whole process, imports included (wall time would measure the
        # machine's load as well), and its peak resident memory.
        code = ("import resource, sys; sys.path.insert(0, sys.argv.pop(1)); "
                "import fnl; rc = fnl.run(sys.argv[1:]); u = resource.getrusage(resource.RUSAGE_SELF); "
                # VmHWM starts afresh at exec; ru_maxrss keeps the forking test process's peak.
                "hwm = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')); "
                "print(f'@@ {u.ru_utime + u.ru_stime:.3f} {hwm}', file=sys.stderr); sys.exit(rc)")
        r = subprocess.run([sys.executable, "-c", code, str(REPO), "plan", str(path),
                            str(REPO / "funnels" / "reference.yaml")],
                           capture_output=True, text=True, timeout=60, env=clean_env(), cwd=REPO)
        assert r.returncode in (1, 3), (name, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
        seconds, rss_kb = r.stderr.rsplit("@@ ", 1)[1].split()
        assert float(seconds) < 2, (name, seconds)
        assert int(rss_kb) < 300 * 1024, (name, rss_kb)
