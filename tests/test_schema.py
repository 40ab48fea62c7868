"""The funnel JSON Schema as a contract: valid draft-07, closed objects, documented
properties, no keywords from later drafts, examples that pass their own schema, and an
independent validator (check-jsonschema) that agrees with fnl."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import jsonschema
import pytest

from conftest import CASES, REPO

SCHEMA_PATH = REPO / "schemas" / "funnel.schema.json"
SCHEMA: Dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

DRAFT7_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "readOnly", "writeOnly", "examples",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength",
    "pattern", "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains", "maxProperties",
    "minProperties", "required", "additionalProperties", "definitions", "properties", "patternProperties",
    "dependencies", "propertyNames", "const", "enum", "type", "format", "contentMediaType", "contentEncoding",
    "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
}
LATER_KEYWORDS = {"$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
                  "$vocabulary", "unevaluatedProperties", "unevaluatedItems", "dependentRequired",
                  "dependentSchemas", "prefixItems", "minContains", "maxContains"}

Walked = Tuple[str, Dict[str, Any], bool]  # (JSON pointer, subschema, inside a predicate: if / not)


def walk(schema: Any, pointer: str = "", predicate: bool = False) -> Iterator[Walked]:
    """Every subschema, wherever the draft-07 grammar allows one."""
    if not isinstance(schema, dict):
        return
    yield pointer, schema, predicate
    for key in ("properties", "patternProperties", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            yield from walk(sub, f"{pointer}/{key}/{name}", predicate)
    for key in ("additionalProperties", "additionalItems", "contains", "propertyNames", "then", "else"):
        yield from walk(schema.get(key), f"{pointer}/{key}", predicate)
    for key in ("if", "not"):
        yield from walk(schema.get(key), f"{pointer}/{key}", True)
    items = schema.get("items")
    if isinstance(items, list):
        for i, sub in enumerate(items):
            yield from walk(sub, f"{pointer}/items/{i}", predicate)
    else:
        yield from walk(items, f"{pointer}/items", predicate)
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            yield from walk(sub, f"{pointer}/{key}/{i}", predicate)
    for name, sub in (schema.get("dependencies") or {}).items():
        if isinstance(sub, dict):
            yield from walk(sub, f"{pointer}/dependencies/{name}", predicate)


def deref(sub: Dict[str, Any], root: Dict[str, Any]) -> Dict[str, Any]:
    ref = sub.get("$ref")
    if not ref:
        return sub
    assert ref.startswith("#/"), f"only local references: {ref}"
    target: Any = root
    for token in ref[2:].split("/"):
        target = target[token.replace("~1", "/").replace("~0", "~")]
    return deref(target, root)


def _is_object(sub: Dict[str, Any]) -> bool:
    t = sub.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t) or "properties" in sub


# Each rule is a function from a schema to what breaks it, so it can be shown to catch
# a bad schema as well as pass the real one.

def open_objects(schema: Dict[str, Any]) -> List[str]:
    bad = []
    for pointer, sub, predicate in walk(schema):
        if predicate or not _is_object(sub):
            continue
        extra = sub.get("additionalProperties")
        if extra is False:
            continue
        if isinstance(extra, dict) and ("type" in extra or "$ref" in extra):
            continue
        bad.append(f"{pointer or '/'}: additionalProperties is {json.dumps(extra)}")
    return bad


def undocumented_properties(schema: Dict[str, Any]) -> List[str]:
    bad = []
    for pointer, sub, predicate in walk(schema):
        if predicate:
            continue
        for name, prop in (sub.get("properties") or {}).items():
            target = deref(prop, schema)
            missing = [k for k in ("title", "description", "examples") if not (prop.get(k) or target.get(k))]
            if missing:
                bad.append(f"{pointer}/properties/{name}: no {', '.join(missing)}")
    return bad


def foreign_keywords(schema: Dict[str, Any]) -> List[str]:
    bad = []
    for pointer, sub, _ in walk(schema):
        for key in sub:
            if key in LATER_KEYWORDS:
                bad.append(f"{pointer or '/'}: `{key}` is not draft-07")
            elif key not in DRAFT7_KEYWORDS:
                bad.append(f"{pointer or '/'}: unknown keyword `{key}`")
    return bad


def bare_one_ofs(schema: Dict[str, Any]) -> List[str]:
    """`oneOf` only with branches told apart by type or by a `const` discriminator; a
    bare `oneOf` fails confusingly when a value matches two branches."""
    bad = []
    for pointer, sub, _ in walk(schema):
        branches = [deref(b, schema) for b in sub.get("oneOf") or []]
        if not branches:
            continue
        types = [b.get("type") for b in branches]
        if all(isinstance(t, str) for t in types) and len(set(types)) == len(types):
            continue
        consts = [{k for k, v in (b.get("properties") or {}).items() if "const" in v} for b in branches]
        if consts and set.intersection(*consts):
            continue
        bad.append(f"{pointer}/oneOf")
    return bad


def failing_examples(schema: Dict[str, Any]) -> List[str]:
    root = jsonschema.Draft7Validator(schema)
    bad = []
    for pointer, sub, predicate in walk(schema):
        if predicate:
            continue
        for i, example in enumerate(sub.get("examples") or []):
            for error in root.evolve(schema=sub).iter_errors(example):
                bad.append(f"{pointer}/examples/{i}: {error.message}")
    return bad


SUBSCHEMAS: List[Walked] = list(walk(SCHEMA))


def test_walk_sees_the_whole_schema():
    # Guard against a walker that silently skips parts: it must reach nested definitions.
    pointers = {p for p, _, _ in SUBSCHEMAS}
    assert "" in pointers
    assert any(p.startswith("/definitions/") for p in pointers)
    assert any("/additionalProperties" in p for p in pointers)
    assert any(p.endswith("/items") for p in pointers)
    assert len(SUBSCHEMAS) > 50


def test_schema_is_valid_draft07():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert jsonschema.validators.validator_for(SCHEMA) is jsonschema.Draft7Validator
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_every_object_schema_is_closed_or_a_typed_map():
    bad = open_objects(SCHEMA)
    assert not bad, "objects must be closed (false) or maps with typed values:\n" + "\n".join(bad)


def test_every_property_is_documented():
    bad = undocumented_properties(SCHEMA)
    assert not bad, "\n".join(bad)


def test_only_draft07_keywords():
    bad = foreign_keywords(SCHEMA)
    assert not bad, "\n".join(bad)


def test_no_later_keyword_anywhere_in_the_text():
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    for key in LATER_KEYWORDS:
        assert f'"{key}"' not in text, key


def test_no_bare_one_of():
    bad = bare_one_ofs(SCHEMA)
    assert not bad, "bare oneOf at:\n" + "\n".join(bad)


def test_examples_satisfy_their_own_schema():
    bad = failing_examples(SCHEMA)
    assert not bad, "\n".join(bad)


def test_top_level_example_is_a_complete_definition():
    example = SCHEMA["examples"][0]
    assert set(SCHEMA["required"]) <= set(example)


DOC = {"title": "T", "description": "D", "examples": [1]}
BAD_SCHEMAS = [
    (open_objects, {"type": "object", "properties": {}}),
    (open_objects, {"definitions": {"x": {"type": "object", "additionalProperties": True}}}),
    (open_objects, {"type": "array", "items": {"type": "object", "additionalProperties": {}}}),
    (open_objects, {"type": "object", "additionalProperties": {"type": "object", "properties": {"a": DOC}}}),
    (undocumented_properties, {"properties": {"a": {"type": "integer", "title": "A", "description": "B"}},
                               "additionalProperties": False}),
    (undocumented_properties, {"definitions": {"d": {"type": "integer"}},
                               "properties": {"a": {"$ref": "#/definitions/d"}}}),
    (foreign_keywords, {"$defs": {}}),
    (foreign_keywords, {"properties": {"a": {"prefixItems": [{}]}}}),
    (foreign_keywords, {"type": "object", "unevaluatedProperties": False}),
    (foreign_keywords, {"dependentRequired": {"a": ["b"]}}),
    (foreign_keywords, {"items": {"typo_keyword": 1}}),
    (bare_one_ofs, {"oneOf": [{"type": "string"}, {"type": "string", "pattern": "a"}]}),
    (bare_one_ofs, {"properties": {"a": {"oneOf": [{"required": ["x"]}, {"required": ["y"]}]}}}),
    (failing_examples, {"properties": {"a": {"type": "integer", "examples": ["one"]}}}),
]


@pytest.mark.parametrize("rule,schema", BAD_SCHEMAS,
                         ids=[f"{r.__name__}-{i}" for i, (r, _) in enumerate(BAD_SCHEMAS)])
def test_each_rule_catches_a_bad_schema(rule, schema):
    assert rule(schema), f"{rule.__name__} let a bad schema through"


def test_rules_accept_good_shapes():
    good = {"type": "object", "additionalProperties": False,
            "properties": {"a": dict(DOC, type="integer"), "b": {"$ref": "#/definitions/b"},
                           "m": dict(DOC, type="object", additionalProperties={"type": "integer"}, examples=[{"x": 1}]),
                           "u": dict(DOC, oneOf=[{"type": "string"}, {"type": "integer"}])},
            "definitions": {"b": dict(DOC, type="integer")},
            "if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}
    for rule in (open_objects, undocumented_properties, foreign_keywords, bare_one_ofs, failing_examples):
        assert rule(good) == [], rule.__name__


def test_schema_alone_rejects_an_empty_rep_list():
    funnel = {"fnl": 1, "funnel": "a", "sender": {"from": "a@b.example", "postal_address": "1 Main St"},
              "stages": ["mql", "sql"], "handoff": {"sql": {"assign": {"round_robin": []}}}}
    assert not jsonschema.Draft7Validator(SCHEMA).is_valid(funnel)


# -- an independent validator --------------------------------------------------------

def _check_jsonschema() -> List[str]:
    """The check-jsonschema of this Python environment first (CI's virtualenv), then any on PATH."""
    try:
        import check_jsonschema  # noqa: F401

        return [sys.executable, "-m", "check_jsonschema"]
    except ImportError:
        exe = shutil.which("check-jsonschema")
        if exe is None:
            pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
        return [exe]


def run_check_jsonschema(files: List[Path]) -> Tuple[int, Dict[str, Any]]:
    result = subprocess.run(
        [*_check_jsonschema(), "--schemafile", str(SCHEMA_PATH), "-o", "json", *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def _failed(report: Dict[str, Any]) -> set:
    return {str((REPO / e["filename"]).resolve()) for e in report["errors"] + report["parse_errors"]}


def test_check_jsonschema_accepts_the_example_funnels():
    examples = sorted(p for p in (REPO / "funnels").glob("*.yaml") if not p.name.endswith(".behavior.yaml"))
    if not examples:
        pytest.skip("no single-file examples under funnels/ (split definitions are merged by fnl only)")
    code, report = run_check_jsonschema(examples)
    assert code == 0, json.dumps(report["errors"], indent=2)


def test_check_jsonschema_accepts_the_valid_cases():
    files = sorted((CASES / "valid").glob("*.yaml"))
    code, report = run_check_jsonschema(files)
    assert code == 0, json.dumps(report["errors"], indent=2)


SCHEMA_CODES = re.compile(r"#\s*expect:\s*FNL10\d\s")


def _schema_only_cases() -> List[Path]:
    """Single-file invalid cases whose every expected problem is a schema problem
    (FNL100-FNL109): any validator of the schema must reject them."""
    out = []
    for path in sorted((CASES / "invalid").glob("*.yaml")):
        expects = [line for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"#\s*expect:", line)]
        if expects and all(SCHEMA_CODES.match(line) for line in expects):
            out.append(path)
    return out


def test_check_jsonschema_rejects_the_schema_invalid_cases():
    cases = _schema_only_cases()
    assert len(cases) >= 15
    code, report = run_check_jsonschema(cases)
    assert code == 1
    accepted = sorted(p.name for p in cases if str(p.resolve()) not in _failed(report))
    assert accepted == [], f"check-jsonschema accepted: {accepted}"


# -- a key one level too far left ------------------------------------------------------

MISINDENTED = """\
fnl: 1
funnel: acme-b2b
sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield"}
stages: [subscriber, mql, sql]
sequences:
  welcome:
    kind: nurture
    stage: subscriber
    steps: [{send: shared/welcome}]
  exit: {stage_at_least: sql}
"""


def test_a_dedented_sequence_key_is_reported_as_misindented_under_the_sequence_above(tmp_path):
    from conftest import check, write

    problems = check(write(tmp_path, "f.yaml", MISINDENTED))
    assert [(p.code, p.location.line, p.location.column) for p in problems] == [("FNL100", 10, 3)]
    assert problems[0].message == "`exit` looks mis-indented: it is a key of a sequence, not a sequence name"
    assert problems[0].help == "indent it under `welcome`, the sequence above it"
    assert not problems[0].related


def test_a_valid_sequence_named_like_a_sequence_key_is_a_sequence(tmp_path):
    from conftest import check, write

    text = MISINDENTED.replace("  exit: {stage_at_least: sql}\n",
                               "  exit:\n    kind: nurture\n    stage: mql\n    steps: [{send: shared/welcome}]\n")
    assert [p for p in check(write(tmp_path, "f.yaml", text)) if p.code.startswith("FNL1")] == []
