"""Fuzzing the command line: every input is exit 0, 1, 2 or 3 with a located message.

Exit 4 ("internal error") is for fnl's own bugs, so no input may cause it: not a
mutated definition, not a random template, not a line of garbage in an events file, not
a hand-edited plan file. Each test here mutates real inputs (the example funnels,
tests/cases, their templates, the acme events, compiled plans) and runs the CLI in
process (click's CliRunner on `fnl.cli`), asserting the exit code and that no traceback
or "internal error" reaches the output.

The run is reproducible (`derandomize=True`) and small by default, so CI stays fast
(about 20 seconds for the whole file). For a longer hunt:

    FNL_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py

which runs that many examples per test (still derandomized; add FNL_FUZZ_SEED=<n> to
explore other inputs). A failure prints the command and its output; hypothesis shrinks
the input first.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, List, Sequence, Tuple

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import fnl
from conftest import REPO

EXAMPLES = int(os.environ.get("FNL_FUZZ_EXAMPLES", "0") or 0)
SEED = os.environ.get("FNL_FUZZ_SEED")


def budget(default: int) -> Callable[[Any], Any]:
    """Hypothesis settings: `default` examples per test (FNL_FUZZ_EXAMPLES overrides),
    derandomized unless FNL_FUZZ_SEED asks for another part of the input space."""
    sets = settings(max_examples=EXAMPLES or default, derandomize=SEED is None, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)
    if SEED is None:
        return sets
    return lambda f: seed(int(SEED))(sets(f))


# Characters and snippets that have broken parsers, terminals and reporters before.
ODD = [
    "\x1b[2J", "\x1b]0;pwned\x07", "\x1b]8;;https://x.example\x1b\\link\x1b]8;;\x1b\\", "\r", "\x07", "\x00",
    "\x7f", "\x9b31m", "\u2028", "\u2029", "\u202e", "\u2066", "\ufeff", "\u200b", "\u0301", "é", "𝔘", "ǅ", "İ",
    "\\e[2J", "\\x1b", "\\u2028", "\\0", "9" * 400, "1e999", "-1e999", "-0", "0x1F", "0o17", "1_000", "012",
    "NaN", ".nan", ".inf", "-.inf", "~", "null", "yes", "off", "&a", "*a", "!!python/object:os.system",
    "<<: *a", "{", "}", "[", "]", "- ", ": ", ":", "'", '"', "\t", "\\", "%", "#", "---", "...", "|", ">",
    "{{", "}}", "{%", "%}", "2026-02-30T25:61:00Z", "99999-01-01T00:00:00Z", "P1D", "0d", "99999999w",
    "crm.", "email.", "site.visited.", "thresholds.mql", "score >= ", "((((((", "not not not",
    " or ".join(["fit"] * 300), " and ".join(["score > 1"] * 150), "(" * 60 + "fit" + ")" * 60, "-" * 500 + "1",
]
ODD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80", b"\x00", b"\x1b[2J", b"\r\n", b"\r",
             b"[" * 2000, b"{a: " * 300, b"- " * 500, b"\t", b"\xef\xbb\xbf"]

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

RUNNER = CliRunner()


def run(args: Sequence[str], allowed: Iterable[int] = (0, 1, 3), terminal: bool = False) -> Any:
    """Run fnl in process; fail on an exit code outside `allowed`, a traceback, an
    internal error, or (with `terminal`) a raw control character in the output."""
    result = RUNNER.invoke(fnl.cli, list(args), catch_exceptions=True)
    both = result.output  # stdout and stderr, interleaved (click 8.2 and later)
    shown = "fnl " + " ".join(repr(a) if re.search(r"\s", a) else a for a in args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{shown} raised {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in set(allowed), f"{shown} exited {result.exit_code}:\n{both[-3000:]}"
    assert "Traceback" not in both, f"{shown}:\n{both[-3000:]}"
    assert "internal error" not in both, f"{shown}:\n{both[-3000:]}"
    if terminal:
        bad = CONTROL.search(both)
        assert bad is None, f"{shown} printed a raw {bad.group()!r}:\n{both[-3000:]!r}"
    return result


# -- mutations ---------------------------------------------------------------------------------

def _pick(draw: Any, n: int) -> int:
    return draw(st.integers(0, max(n - 1, 0)))


def mutate_bytes(draw: Any, raw: bytes) -> bytes:
    op = draw(st.sampled_from(["flip", "delete", "insert", "insert_bytes", "duplicate", "swap_lines", "truncate"]))
    n = len(raw)
    if op == "flip" and n:
        i = _pick(draw, n)
        return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    if op == "delete" and n:
        i = _pick(draw, n)
        return raw[:i] + raw[i + draw(st.integers(1, 64)):]
    if op == "insert":
        i = _pick(draw, n + 1)
        piece = draw(st.sampled_from(ODD) | st.text(max_size=8))
        return raw[:i] + piece.encode("utf-8", "surrogatepass") + raw[i:]
    if op == "insert_bytes":
        i = _pick(draw, n + 1)
        return raw[:i] + draw(st.sampled_from(ODD_BYTES)) + raw[i:]
    if op == "duplicate" and n:
        i = _pick(draw, n)
        span = raw[i:i + draw(st.integers(1, 200))]
        return raw[:i] + span * draw(st.integers(2, 5)) + raw[i:]
    if op == "swap_lines":
        lines = raw.split(b"\n")
        if len(lines) > 1:
            i, j = _pick(draw, len(lines)), _pick(draw, len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if op == "truncate" and n:
        return raw[:_pick(draw, n)]
    return raw


SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.sampled_from([10 ** 30, -(10 ** 20)])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(ODD) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(ODD), inner, max_size=3),
                      max_leaves=6)


def _nodes(data: Any, path: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out.extend(_nodes(v, path + (k,)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_nodes(v, path + (i,)))
    return out


def _get(data: Any, path: Tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def mutate_data(draw: Any, data: Any) -> Any:
    """One structural change: delete, replace, swap a key with its value, nest deeply,
    or turn a number huge."""
    nodes = _nodes(data)
    path = nodes[_pick(draw, len(nodes))]
    op = draw(st.sampled_from(["delete", "replace", "swap", "nest", "huge", "rename", "listify"]))
    if not path:
        return draw(VALUES) if op == "replace" else data
    parent = _get(data, path[:-1])
    key = path[-1]
    value = parent[key]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = draw(VALUES)
    elif op == "swap" and isinstance(parent, dict) and isinstance(value, (str, int, float, bool)) and value is not None:
        del parent[key]
        parent[value if not isinstance(value, float) else str(value)] = key
    elif op == "nest":
        depth = draw(st.integers(1, 120))
        for _ in range(depth):
            value = [value] if draw(st.booleans()) else {"x": value}
        parent[key] = value
    elif op == "huge":
        parent[key] = draw(st.sampled_from([2 ** 64, -(2 ** 63) - 1, 10 ** 400, 1e308, float("inf"), -0.0, 2 ** 31]))
    elif op == "rename" and isinstance(parent, dict):
        del parent[key]
        parent[draw(st.sampled_from(ODD) | st.text(max_size=10))] = value
    elif op == "listify":
        parent[key] = [value, value]
    return data


@st.composite
def mutated(draw: Any, seeds: Sequence[Tuple[str, str]], dump: Callable[[Any], str]) -> Tuple[str, bytes]:
    """A seed file, changed structurally (parse, mutate, dump) and/or byte by byte."""
    name, text = draw(st.sampled_from(seeds))
    raw = text.encode("utf-8")
    if draw(st.booleans()):
        try:
            data = yaml.safe_load(text) if not name.endswith(".json") else json.loads(text)
        except (yaml.YAMLError, ValueError):
            data = None
        if data is not None:
            for _ in range(draw(st.integers(1, 3))):
                data = mutate_data(draw, data)
            try:
                raw = dump(data).encode("utf-8", "surrogatepass")
            except (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError):
                pass
    for _ in range(draw(st.integers(0 if raw != text.encode("utf-8") else 1, 4))):
        raw = mutate_bytes(draw, raw)
    return name, raw


def _yaml_dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=200)


def _json_dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


# -- a scratch copy of the examples ------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory: Any) -> Path:
    """funnels/ and templates/ copied, so mutated files sit where their template paths lead."""
    base = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "funnels", base / "funnels")
    shutil.copytree(REPO / "templates", base / "templates")
    return base


_COUNTER = itertools.count()


def fresh(root: Path, suffix: str) -> Path:
    """A new file name for each example: no cache keyed by path can serve a stale answer."""
    return root / "funnels" / f"fz{next(_COUNTER)}{suffix}"


def _seeds_from(paths: Iterable[Path]) -> List[Tuple[str, str]]:
    out = []
    for path in sorted(paths):
        try:
            out.append((path.name, path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return out


DEFINITIONS = _seeds_from([REPO / "funnels" / "reference.yaml", REPO / "funnels" / "newsletter-to-demo.yaml",
                           *sorted((REPO / "tests" / "cases").rglob("*.y*ml"))])
ACME_FILES = sorted(p.name for p in (REPO / "funnels" / "acme").glob("*.yaml"))


# -- definitions -------------------------------------------------------------------------------

@budget(100)
@given(case=mutated(DEFINITIONS, _yaml_dump), fmt=st.sampled_from(["text", "json", "github", "sarif"]))
def test_fuzz_single_file_definitions(root, case, fmt):
    _, raw = case
    path = fresh(root, ".yaml")
    path.write_bytes(raw)
    result = run(["validate", "--format", fmt, str(path)], terminal=fmt in ("text", "github"))
    if fmt in ("json", "sarif"):
        json.loads(result.stdout_bytes.decode("utf-8"))  # valid UTF-8 and valid JSON, whatever the input
    run(["compile", str(path)])
    run(["graph", str(path)])
    run(["plan", str(REPO / "funnels" / "reference.yaml"), str(path)], allowed=(0, 1, 3))


@budget(40)
@given(which=st.sampled_from(ACME_FILES), data=st.data())
def test_fuzz_split_definition(root, which, data):
    directory = root / "funnels" / f"fzacme{next(_COUNTER)}"
    shutil.copytree(REPO / "funnels" / "acme", directory)
    seeds = _seeds_from([directory / which])
    _, raw = data.draw(mutated(seeds, _yaml_dump))
    (directory / which).write_bytes(raw)
    run(["validate", str(directory)], terminal=True)
    run(["compile", str(directory)])
    run(["plan", "--detailed-exitcode", str(REPO / "funnels" / "acme"), str(directory)], allowed=(0, 1, 2, 3))


# -- templates ---------------------------------------------------------------------------------

JINJA = [
    "{{ lead.first_name }}", "{{ lead.company }}", "{{ owner.name }}", "{{ sender.postal_address }}",
    "{{ unsubscribe_url }}", "{{ lead.first_name|upper }}", "{{ lead.nope }}", "{{ nope }}", "{{ 9**9**9 }}",
    "{{ 'x' * 100000000 }}", "{{ range(10**9)|list }}", "{{ ''.__class__.__mro__ }}", "{{ lead.__class__ }}",
    "{{ lipsum(1000) }}", "{{ cycler }}", "{{ self }}", "{{ config }}", "{% for i in range(10**8) %}x{% endfor %}",
    "{% if lead.first_name %}hi{% endif %}", "{% if %}", "{% endif %}", "{% for %}", "{% block subject %}",
    "{% block html %}", "{% block text %}", "{% endblock %}", "{% include '_partials/footer.html.j2' %}",
    "{% include '../../../etc/passwd' %}", "{% include 'nope.j2' %}", "{% extends 'x' %}", "{% import 'x' as y %}",
    "{% raw %}", "{% endraw %}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{% set x = 1 %}",
    "{{", "}}", "{%", "%}", "{#", "#}", "<p>", "</p>", "<a href='javascript:x'>", "\x1b[2J", "\x00", "\r\n",
]


@st.composite
def template_text(draw: Any) -> bytes:
    pieces = draw(st.lists(st.sampled_from(JINJA) | st.text(max_size=10), max_size=12))
    body = "".join(pieces)
    if draw(st.booleans()):  # shaped like an email, so rendering gets further
        body = ("{% block subject %}" + body[:40] + "{% endblock %}{% block html %}" + body
                + "{% endblock %}{% block text %}" + body + "{% endblock %}")
    raw = body.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        raw = mutate_bytes(draw, raw)
    return raw


TEMPLATE_NAMES = sorted(str(p.relative_to(REPO / "templates" / "reference"))
                        for p in (REPO / "templates" / "reference").rglob("*.j2"))


@budget(50)
@given(which=st.sampled_from(TEMPLATE_NAMES), raw=template_text())
def test_fuzz_templates(root, which, raw):
    n = next(_COUNTER)
    shutil.copytree(REPO / "templates" / "reference", root / "templates" / f"fz{n}")
    (root / "templates" / f"fz{n}" / which).write_bytes(raw)
    definition = root / "funnels" / f"fzt{n}.yaml"
    definition.write_text((REPO / "funnels" / "reference.yaml").read_text(encoding="utf-8")
                          .replace("templates: ../templates/reference", f"templates: ../templates/fz{n}"),
                          encoding="utf-8")
    run(["validate", str(definition)], terminal=True)
    run(["compile", str(definition)])
    run(["plan", str(REPO / "funnels" / "reference.yaml"), str(definition)])


# -- events ------------------------------------------------------------------------------------

EVENT_TYPES = ["optin", "lead.imported", "email.delivered", "email.opened", "email.clicked", "email.replied",
               "email.bounced", "email.unsubscribed", "email.complained", "site.visited", "magnet.downloaded",
               "webinar.registered", "webinar.attended", "profile.updated", "crm.demo_booked", "crm.deal_won",
               "crm.", "tick", "nope", ""]
TIMES = st.sampled_from(["2026-03-02T14:30:00Z", "2026-03-02T14:30:00+05:30", "2026-03-02", "2026-02-30T00:00:00Z",
                         "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "now", "", "\x1b[2J",
                         "2026-03-02T14:30:00.123456789Z", "2026-W10-1"]) | st.datetimes().map(
    lambda d: d.isoformat() + "Z")
LEADS = st.sampled_from(["dana@loopwise.example", "sam@x.example", "", "\x1b[2J@x", "a" * 300, "é@x.example"])
PROFILE = st.fixed_dictionaries({}, optional={
    "first_name": SCALARS, "industry": st.sampled_from(["saas", "manufacturing", "finance"]) | SCALARS,
    "employees": st.integers(-10, 10 ** 6) | SCALARS, "timezone": st.sampled_from(["UTC", "Mars/Base", ""]),
    "role": SCALARS, "region": SCALARS, "company": SCALARS})
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES) | st.text(max_size=10), "at": TIMES, "lead": LEADS},
    optional={"magnet": st.sampled_from(["whitepaper", "guide", "roi-calculator", "nope"]) | SCALARS,
              "profile": PROFILE | VALUES, "template": st.sampled_from(["saas/capability", "nurture/day-0"]) | SCALARS,
              "page": st.sampled_from(["pricing", "docs"]) | SCALARS, "machine": SCALARS,
              "bounce": st.sampled_from(["hard", "soft"]) | SCALARS, "entry": SCALARS, "extra": VALUES})


@st.composite
def event_lines(draw: Any) -> bytes:
    seeds = (REPO / "tests" / "events" / "acme-dana.jsonl").read_text(encoding="utf-8").splitlines()
    lines: List[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["event", "event", "seed", "garbage", "value"]))
        if kind == "event":
            lines.append(json.dumps(draw(EVENT), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"))
        elif kind == "seed":
            lines.append(mutate_bytes(draw, draw(st.sampled_from(seeds)).encode("utf-8")))
        elif kind == "garbage":
            lines.append(draw(st.sampled_from(ODD_BYTES) | st.binary(max_size=20)))
        else:
            lines.append(json.dumps(draw(VALUES)).encode("utf-8", "surrogatepass"))
    return b"\n".join(lines)


@budget(80)
@given(raw=event_lines(), funnel=st.sampled_from(["acme", "reference.yaml"]), fmt=st.sampled_from(["text", "json"]),
       until=st.sampled_from([None, "2026-07-01T00:00:00Z", "2026-01-01T00:00:00Z", "garbage", "9999-12-31T00:00:00Z"]))
def test_fuzz_trace_events(root, raw, funnel, fmt, until):
    path = fresh(root, ".jsonl")
    path.write_bytes(raw)
    args = ["trace", str(REPO / "funnels" / funnel), "--events", str(path), "--format", fmt]
    run(args + (["--until", until] if until else []))


# -- the other commands -----------------------------------------------------------------------

@budget(60)
@given(args=st.lists(st.sampled_from(["FNL301", "fnl301", "FNL", "FNL9", "x", "", "\x1b[2J", "--help", "-v",
                                      "--format", "json", "funnel", "plan", "--select", "--fail-on", "never"])
                     | st.text(max_size=6), max_size=3),
       command=st.sampled_from(["rules", "schema", "validate", "compile", "graph", "plan", "trace"]))
def test_fuzz_arguments(root, args, command):
    run([command, *args] + ([str(REPO / "funnels" / "reference.yaml")] if command == "validate" and args else []),
        terminal=True)


# -- plan files --------------------------------------------------------------------------------

def _compiled(name: str) -> str:
    result = RUNNER.invoke(fnl.cli, ["compile", str(REPO / "funnels" / name)])
    assert result.exit_code == 0, result.output
    return result.stdout


PLANS = [("acme.json", _compiled("acme")), ("reference.json", _compiled("reference.yaml"))]


def _format1(text: str) -> str:
    """The same plan as an old format-1 file (before entries and the other format-2 fields)."""
    data = json.loads(text)
    data["format_version"] = 1
    data.pop("entries", None)
    data["scoring"].pop("count_repeats", None)
    for key in ("soft_bounce_limit", "business_days", "business_from", "business_to"):
        data["policies"].pop(key, None)
    for h in data["handoff"]:
        h.pop("sla_clock", None)
        h.pop("answered_by", None)
    return json.dumps(data, indent=2)


PLANS.append(("acme-v1.json", _format1(PLANS[0][1])))


@budget(120)
@given(case=mutated(PLANS, _json_dump), fmt=st.sampled_from(["text", "markdown", "json"]),
       side=st.sampled_from(["old", "new", "both"]))
def test_fuzz_plan_files(root, case, fmt, side):
    name, raw = case
    path = fresh(root, ".json")
    path.write_bytes(raw)
    original = root / "funnels" / ("reference.yaml" if name.startswith("reference") else "acme")
    old, new = {"old": (path, original), "new": (original, path), "both": (path, path)}[side]
    result = run(["plan", "--format", fmt, "--detailed-exitcode", str(old), str(new)], allowed=(0, 1, 2, 3),
                 terminal=fmt != "json")
    if fmt == "json" and result.exit_code in (0, 2):
        json.loads(result.stdout_bytes.decode("utf-8"))
