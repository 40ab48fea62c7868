"""What the schema shows passes as shown.

Editors offer the schema's `examples` as completions and show them on hover, so each
must be something fnl accepts. A whole-definition example (the schema's top level) must
pass `fnl validate` with no findings at all when written to `funnels/`; it is the README's
tour. Every other example is a fragment: it is put in its place in that definition (with
what surrounds it taken from the enclosing examples where the tour has nothing there), and
then nothing may be reported at or inside that place, except by the reference rules
(FNL2xx), which judge a fragment's names against a definition that does not declare them.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import pytest

from conftest import REPO
from test_readme import tour_data

from engine.check import check_paths
from engine.errors import Problem

SCHEMA: Dict[str, Any] = json.loads((REPO / "schemas" / "funnel.schema.json").read_text(encoding="utf-8"))

Key = Union[str, int]  # a property name, "*" for any entry of a map, 0 for an item of a list
Step = Tuple[Key, Dict[str, Any]]  # a key and the schema of what it holds


def deref(node: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in node:
        target: Any = SCHEMA
        for token in node["$ref"][2:].split("/"):
            target = target[token]
        node = target
    return node


@dataclass(frozen=True)
class Example:
    pointer: str  # JSON pointer of the example in the schema
    value: Any
    places: Tuple[Tuple[Step, ...], ...]  # every place a definition can hold it


def _walk(node: Dict[str, Any], pointer: str, steps: Tuple[Step, ...], found: Dict[str, List[Any]]) -> None:
    if "$ref" in node:
        pointer = node["$ref"][1:]
        node = deref(node)
    for i, value in enumerate(node.get("examples") or []):
        entry = found.setdefault(f"{pointer}/examples/{i}", [value, []])
        entry[1].append(steps)
    for key, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{pointer}/properties/{key}", steps + ((key, deref(sub)),), found)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _walk(extra, f"{pointer}/additionalProperties", steps + (("*", deref(extra)),), found)
    items = node.get("items")
    if isinstance(items, dict):
        _walk(items, f"{pointer}/items", steps + ((0, deref(items)),), found)
    for keyword in ("anyOf", "oneOf", "allOf"):
        for i, branch in enumerate(node.get(keyword) or []):
            _walk(branch, f"{pointer}/{keyword}/{i}", steps, found)


def examples() -> List[Example]:
    found: Dict[str, List[Any]] = {}
    _walk(SCHEMA, "", (), found)
    return [Example(pointer, value, tuple(places)) for pointer, (value, places) in found.items()]


def _exists(doc: Any, steps: Tuple[Step, ...]) -> bool:
    """Whether the tour has every container on the way to this place."""
    for key, _ in steps[:-1]:
        if key == "*":
            if not isinstance(doc, dict) or not doc:
                return False
            doc = next(iter(doc.values()))
        elif key == 0:
            if not isinstance(doc, list) or not doc:
                return False
            doc = doc[0]
        else:
            if not isinstance(doc, dict) or key not in doc:
                return False
            doc = doc[key]
    return True


def place(doc: Any, steps: Tuple[Step, ...], value: Any, alone: bool = False,
          container: Dict[str, Any] = SCHEMA) -> Tuple[Any, Tuple[Key, ...]]:
    """`doc` with `value` at the place `steps` leads to, and the path it is at. A
    container the tour lacks on the way is taken from that place's first example.

    With `alone`, for keys that exclude each other (a step's `send` and `notify`, an
    assignment's `round_robin` and `territory`, a decay's `half_life` and `factor`), each
    object on the way is the container's own example that has the key, or else only its
    required keys."""
    if not steps:
        return copy.deepcopy(value), ()
    (key, node), rest = steps[0], steps[1:]
    filler = copy.deepcopy((node.get("examples") or [None])[0])
    if key == "*":
        doc = doc if isinstance(doc, dict) else {}
        name = next(iter(doc), "example")
        inner, path = place(doc.get(name, filler), rest, value, alone, node)
        return {**doc, name: inner}, (name,) + path
    if key == 0:
        items = list(doc) if isinstance(doc, list) else []
        inner, path = place(items[0] if items else filler, rest, value, alone, node)
        return [inner] + items[1:], (0,) + path
    doc = doc if isinstance(doc, dict) else {}
    if alone and container is not SCHEMA:
        shown = [e for e in container.get("examples") or [] if isinstance(e, dict) and key in e]
        doc = copy.deepcopy(shown[0]) if shown else {k: v for k, v in doc.items()
                                                         if k in container.get("required", ())}
    inner, path = place(doc.get(key, filler), rest, value, alone, node)
    return {**doc, key: inner}, (key,) + path


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's layout: funnels/ beside templates/."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "funnels").mkdir()
    return root


def check(root: Path, name: str, data: Any) -> List[Problem]:
    path = root / "funnels" / f"{name}.yaml"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return [p for checked in check_paths((str(path),)) for p in checked.problems]


def show(problems: List[Problem]) -> str:
    return "\n".join(f"  {p.code} {p.dotted_path}: {p.message}" for p in problems)


EXAMPLES = examples()
FRAGMENTS = [e for e in EXAMPLES if not e.pointer.startswith("/examples/")]


def _every_examples_list(node: Any, pointer: str = "", names: bool = False) -> List[str]:
    """Every `examples` keyword in the schema (not a property called `examples`)."""
    out: List[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "examples" and not names:
                out.append(pointer)
            else:
                out += _every_examples_list(value, f"{pointer}/{key}", key in ("properties", "definitions"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _every_examples_list(value, f"{pointer}/{i}")
    return out


def test_the_walk_finds_every_example_of_the_schema() -> None:
    text = json.dumps(SCHEMA)
    unused = [f"/definitions/{name}" for name in SCHEMA["definitions"] if f'"#/definitions/{name}"' not in text]
    offered = {p for p in _every_examples_list(SCHEMA) if not any(p.startswith(u) for u in unused)}
    assert {e.pointer.rsplit("/examples/", 1)[0] for e in EXAMPLES} == offered
    assert any(e.pointer.startswith("/definitions/step/") for e in EXAMPLES)
    assert any(e.pointer.startswith("/examples/") for e in EXAMPLES)


def test_place_builds_what_the_tour_lacks() -> None:
    by = next(e for e in EXAMPLES if e.pointer.endswith("/assign/properties/territory/properties/by/examples/0"))
    doc, path = place({"handoff": {"sql": {"sla": "1d"}}}, by.places[0], "industry")
    assert path == ("handoff", "sql", "assign", "territory", "by")
    assert doc["handoff"]["sql"]["sla"] == "1d"
    territory = doc["handoff"]["sql"]["assign"]["territory"]
    assert territory["by"] == "industry" and territory["routes"], "the rest comes from the territory's example"


def test_the_top_level_example_is_the_readme_tour() -> None:
    # Both are shown to users as "a definition"; they are one definition.
    assert SCHEMA["examples"] == [tour_data()], "make the schema's top-level example the README's tour"


@pytest.mark.parametrize("index", range(len(SCHEMA["examples"])))
def test_a_whole_definition_example_validates_clean(layout: Path, index: int) -> None:
    problems = check(layout, f"example-{index}", SCHEMA["examples"][index])
    assert problems == [], "the schema's example fails `fnl validate`:\n" + show(problems)


def _judged(problems: List[Problem], path: Tuple[Key, ...]) -> List[Problem]:
    return [p for p in problems if tuple(p.path[:len(path)]) == path and not p.code.startswith("FNL2")]


@pytest.mark.parametrize("example", FRAGMENTS, ids=[e.pointer for e in FRAGMENTS])
def test_a_fragment_example_passes_in_its_place(layout: Path, example: Example) -> None:
    tour = tour_data()
    places = sorted(example.places, key=lambda steps: not _exists(tour, steps))
    doc, path = place(tour, places[0], example.value)
    problems = check(layout, "fragment", doc)
    if any(p.code < "FNL200" for p in problems):  # a sibling it excludes: put it there alone
        doc, path = place(tour, places[0], example.value, alone=True)
        problems = check(layout, "fragment", doc)
    structural = [p for p in problems if p.code < "FNL200"]
    assert not structural, (f"{example.pointer} ({json.dumps(example.value)}) at {path} makes the tour "
                            f"fail the schema:\n{show(structural)}")
    judged = _judged(problems, path)
    assert not judged, f"{example.pointer} ({json.dumps(example.value)}) at {path}:\n{show(judged)}"


def test_the_fragment_check_catches_consent_without_an_unsubscribe(layout: Path) -> None:
    consent = next(e for e in FRAGMENTS if e.pointer.endswith("/lead_magnets/additionalProperties/properties/"
                                                              "consent/examples/0"))
    doc, path = place(tour_data(), consent.places[0], "I agree to receive email from Acme.")
    assert [p.code for p in _judged(check(layout, "consent", doc), path)] == ["FNL403"]
