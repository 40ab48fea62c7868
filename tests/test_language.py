"""The condition language is documented from one source, `engine/language.py`, and that
source covers everything the engine knows: every name and predicate of `engine/expr.py`
has an example that works, every operator is described, every place a definition holds
a condition has its schema description, generated.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, List, Set

import pytest

from conftest import REPO
from test_readme import tour_data

from engine import expr, language
from engine.check import check_paths
from engine.validate import _condition_paths

SCHEMA = json.loads((REPO / "schemas" / "funnel.schema.json").read_text(encoding="utf-8"))
TERMS = language.terms()


def test_every_name_and_predicate_has_an_example() -> None:
    assert language.missing_examples() == [], "add an example for each to EXAMPLES in engine/language.py"
    assert {t.name for t in TERMS} == set(expr.NAMES) | set(expr.PREDICATES)


def test_a_new_predicate_without_an_example_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(expr.PREDICATES, "webinar_no_show", "the lead registered but did not attend")
    assert language.missing_examples() == ["webinar_no_show"]


def _mentions(source: str, name: str) -> bool:
    tree = expr.parse(source)
    return any(n.parts[0] == name for n in expr.names(tree)) or any(c.name == name for c in expr.calls(tree))


@pytest.mark.parametrize("term", TERMS, ids=[t.name for t in TERMS])
def test_an_example_parses_and_uses_its_term(term: language.Term) -> None:
    assert _mentions(term.example, term.name), f"the example of `{term.name}` does not use it: {term.example}"
    for form in term.forms:
        expr.parse(re.sub(r"'<[^>]+>'", "'x'", form).replace("<name>", "mql"))


def _as_transition_condition(tmp_path: Path, conditions: List[str]) -> List[Any]:
    """Each condition as the `when` of a transition of the README's tour, checked."""
    shutil_copy(REPO / "templates", tmp_path / "templates")
    tour = tour_data()
    for source in conditions:
        tour["transitions"].append({"from": "subscriber", "to": "mql", "when": source})
    path = tmp_path / "funnels" / "language.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(tour), encoding="utf-8")
    return [p for c in check_paths((str(path),)) for p in c.problems]


def shutil_copy(source: Path, target: Path) -> None:
    import shutil

    if not target.exists():
        shutil.copytree(source, target)


def test_every_example_and_form_is_a_valid_condition(tmp_path: Path) -> None:
    """Not only parsed: the `unknown-name` rule (FNL208), which checks names and how
    predicates are called, accepts each in a real definition."""
    sources = [t.example for t in TERMS] + [o.example for o in language.OPERATORS]
    sources += [re.sub(r"'<[^>]+>'", "'x'", f.replace("'<stage>'", "'mql'")) for t in TERMS for f in t.forms
                if t.kind == "predicate"]
    sources += [p.example for p in language.PLACES if p.yaml != "personas.<name>.when"]  # no `role` in the tour
    problems = [p for p in _as_transition_condition(tmp_path, sources) if p.code in ("FNL110", "FNL208")]
    assert problems == [], "\n".join(f"{p.code} {p.message}" for p in problems)


def test_the_check_of_examples_can_fail(tmp_path: Path) -> None:
    problems = _as_transition_condition(tmp_path, ["stage_at_least()", "clikced('x')"])
    assert sorted(p.code for p in problems if p.code == "FNL208") == ["FNL208", "FNL208"]


def test_every_operator_of_the_grammar_is_described() -> None:
    described: Set[str] = {word for op in language.OPERATORS for symbol in op.symbols for word in symbol.split()}
    assert expr._OPERATORS <= described, expr._OPERATORS - described
    for op in language.OPERATORS:
        expr.parse(op.example)


def test_the_limits_are_the_parsers() -> None:
    text = language.limits()
    for limit in (expr.MAX_LENGTH, expr.MAX_DEPTH, expr.MAX_OPERATORS):
        assert f"{limit:,}" in text


# -- where conditions are, and what the schema says there ------------------------------------

def _pattern(path: tuple) -> str:
    """sequences.welcome.steps.0.when -> sequences.<name>.steps[].when, as PLACES write it."""
    out: List[str] = []
    for i, part in enumerate(path):
        if isinstance(part, int):
            out[-1] += "[]"
        elif i > 0 and path[i - 1] in ("personas", "segments", "sequences"):
            out.append("<name>")
        else:
            out.append(str(part))
    text = ".".join(out)
    return re.sub(r"^sequences\.<name>\.steps\[\]", "steps[]", text)


def test_the_places_are_every_place_validation_parses_a_condition() -> None:
    doc = {
        "personas": {"p": {"when": "a"}}, "segments": {"s": {"when": "a"}}, "fit": {"when": "a"},
        "scoring": {"fit": [{"when": "a", "points": 1}]}, "transitions": [{"when": "a"}],
        "sequences": {"q": {"when": "a", "exit": {"when": "a"}, "steps": [{"when": "a", "unless": "a"}]}},
    }
    found = {_pattern(path) for path, _ in _condition_paths(doc)}
    assert found == {p.yaml for p in language.PLACES}


def _at(pointer: str) -> Any:
    node: Any = SCHEMA
    for token in pointer.lstrip("/").split("/"):
        node = node[token]
    return node


@pytest.mark.parametrize("place", language.PLACES, ids=[p.yaml for p in language.PLACES])
def test_a_condition_property_is_described_by_the_source(place: language.Place) -> None:
    assert _at(place.pointer) == language.schema_property(place), (
        f"{place.pointer} is not what engine/language.py generates; run `python -m tests.readme_samples --write`")


def test_the_summary_names_every_name_and_predicate() -> None:
    summary = language.summary()
    for term in TERMS:
        assert term.name in summary
    assert language.EXAMPLES["replied"] in summary


def test_no_other_schema_string_is_a_condition() -> None:
    """Any property whose description speaks of conditions is one of the places."""
    pointers = {p.pointer for p in language.PLACES}
    stray = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and "Conditions read" in str(node.get("description", "")):
                if pointer not in pointers:
                    stray.append(pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}")

    walk(SCHEMA, "")
    assert stray == []


def test_regenerating_puts_a_stale_description_right() -> None:
    stale = copy.deepcopy(SCHEMA)
    place = language.PLACES[0]
    node: Any = stale
    for token in place.pointer.lstrip("/").split("/"):
        node = node[token]
    node["description"] = "stale"
    assert language.with_descriptions(stale) == SCHEMA
    assert language.main(["--check"]) == 0, "the schema is out of date: run `python -m tests.readme_samples --write`"
