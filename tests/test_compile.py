"""`fnl compile`: the plan is deterministic, schema-valid, round-trips, and its content
hash follows exactly what the runtime depends on (definition semantics and template
files), not formatting or comments.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import plan as P  # noqa: E402
from engine.compile import compile_funnel  # noqa: E402
from engine.errors import ProblemsFound  # noqa: E402
from engine.pipeline import checked_funnel, one_source, plan_for  # noqa: E402

EXAMPLES = {
    "acme": ("funnels/acme", "templates/acme"),
    "newsletter-to-demo": ("funnels/newsletter-to-demo.yaml", "templates/newsletter-to-demo"),
    "reference": ("funnels/reference.yaml", "templates/reference"),
}
SCHEMA_FILE = REPO / "schemas" / "plan.schema.json"


def fnl(*args: Any, cwd: Path = REPO, seed: str = "0") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    env["PYTHONHASHSEED"] = seed
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def copy_example(tmp_path: Path, name: str) -> Path:
    """The example and its templates in tmp_path, in the same relative layout (so the
    definition's `templates:` path still points at them). Returns the definition path."""
    definition, templates = EXAMPLES[name]
    for rel in (definition, templates):
        src, dst = REPO / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    return tmp_path / definition


def trees(value: Any) -> Iterator[Dict[str, Any]]:
    """Every condition tree node anywhere in a plan's JSON form."""
    if isinstance(value, dict):
        if any(k in value for k in ("lit", "attr", "var", "op", "call", "list")):
            yield value
        for v in value.values():
            yield from trees(v)
    elif isinstance(value, list):
        for v in value:
            yield from trees(v)


# -- determinism --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_compile_is_byte_identical_in_process(name):
    first = P.dumps(plan_for(str(REPO / EXAMPLES[name][0])))
    second = P.dumps(plan_for(str(REPO / EXAMPLES[name][0])))
    assert first == second
    assert first.endswith("\n") and json.loads(first)["funnel"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_compile_is_byte_identical_across_processes_seeds_and_directories(name, tmp_path):
    definition = REPO / EXAMPLES[name][0]
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    ra = fnl("compile", EXAMPLES[name][0], "-o", a, seed="0")
    rb = fnl("compile", EXAMPLES[name][0], "-o", b, seed="0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc = fnl("compile", definition, "-o", c, cwd=elsewhere, seed="4242")
    for r in (ra, rb, rc):
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    data = a.read_bytes()
    assert data == b.read_bytes() == c.read_bytes()
    # and the same bytes as the in-process compiler and as stdout
    assert data == P.dumps(plan_for(str(definition))).encode("utf-8")
    out = fnl("compile", EXAMPLES[name][0], seed="random")
    assert out.returncode == 0 and out.stdout.encode("utf-8") == data
    assert f"Wrote {a}" in ra.stderr


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_plan_does_not_depend_on_where_the_files_are(name, tmp_path):
    copied = copy_example(tmp_path, name)
    assert P.dumps(plan_for(str(copied))) == P.dumps(plan_for(str(REPO / EXAMPLES[name][0])))


# -- schema and round trip ------------------------------------------------------------------

def test_schema_file_is_generated_from_the_dataclasses():
    text = json.dumps(P.json_schema(), indent=2, sort_keys=True) + "\n"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == text
    jsonschema.Draft7Validator.check_schema(json.loads(text))


def test_fnl_schema_plan_prints_the_plan_schema():
    r = fnl("schema", "plan")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_plan_validates_against_the_plan_schema(name):
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    data = json.loads(P.dumps(plan_for(str(REPO / EXAMPLES[name][0]))))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(content_hash="md5:1234"),
    lambda d: d.update(format_version=P.FORMAT_VERSION + 1),
    lambda d: d.pop("sequences"),
    lambda d: d.update(surprise=True),
    lambda d: d["sequences"][0]["steps"][0].update(wait_minutes="2d"),
    lambda d: d["transitions"][0].update(when={"source": "x", "tree": {"op": "xor", "args": [{"lit": 1}]}}),
    lambda d: d["transitions"][0].update(when={"source": "x", "tree": {"lit": 1, "attr": "industry"}}),
])
def test_the_plan_schema_rejects_broken_plans(mutate):
    """The schema is not vacuous: each of these breaks it."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    data = json.loads(P.dumps(plan_for(str(REPO / "funnels/acme"))))
    mutate(data)
    assert list(jsonschema.Draft7Validator(schema).iter_errors(data))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_plan_round_trips_through_json(name):
    plan = plan_for(str(REPO / EXAMPLES[name][0]))
    text = P.dumps(plan)
    back = P.from_dict(json.loads(text))
    assert back == plan
    assert P.dumps(back) == text
    # the content hash is the hash of the body: anyone can check it from the JSON alone
    assert P.body_hash(json.loads(text)) == plan.content_hash
    assert plan.content_hash.startswith("sha256:") and len(plan.content_hash) == len("sha256:") + 64


def test_from_dict_refuses_other_formats():
    data = json.loads(P.dumps(plan_for(str(REPO / "funnels/reference.yaml"))))
    with pytest.raises(ValueError):
        P.from_dict({**data, "format_version": P.FORMAT_VERSION + 1})
    with pytest.raises(ValueError):
        P.from_dict({k: v for k, v in data.items() if k != "sender"})


# -- the content hash follows the semantics ---------------------------------------------------

def _includers(template_dir: Path, partial: str) -> List[str]:
    """Templates (by plan name) whose file includes the partial."""
    out = []
    for path in sorted(template_dir.rglob("*.j2")):
        rel = path.relative_to(template_dir).as_posix()[: -len(".j2")]
        if not rel.startswith("_") and partial in path.read_text(encoding="utf-8"):
            out.append(rel)
    return out


def test_content_hash_changes_when_a_partial_changes(tmp_path):
    definition = copy_example(tmp_path, "acme")
    before = plan_for(str(definition))
    footer = tmp_path / "templates/acme/_partials/footer.txt.j2"
    footer.write_text(footer.read_text(encoding="utf-8") + "Acme Analytics is a registered trademark.\n",
                      encoding="utf-8")
    after = plan_for(str(definition))
    assert after.content_hash != before.content_hash
    changed = sorted(a.name for a, b in zip(before.templates, after.templates) if a.sha256 != b.sha256)
    assert [t.name for t in before.templates] == [t.name for t in after.templates]
    sent = {t.name for t in before.templates}
    expected = sorted(n for n in _includers(tmp_path / "templates/acme", "_partials/footer.txt.j2") if n in sent)
    assert expected and changed == expected


def test_content_hash_changes_when_a_sent_template_changes_but_not_an_unsent_file(tmp_path):
    definition = copy_example(tmp_path, "reference")
    before = plan_for(str(definition))
    (tmp_path / "templates/reference/notes.txt").write_text("not a template\n", encoding="utf-8")
    assert plan_for(str(definition)).content_hash == before.content_hash
    day5 = tmp_path / "templates/reference/nurture/day-5.j2"
    day5.write_text(day5.read_text(encoding="utf-8").replace("{% endblock %}", " {% endblock %}", 1),
                    encoding="utf-8")
    after = plan_for(str(definition))
    assert after.content_hash != before.content_hash
    assert [t.name for a, t in zip(before.templates, after.templates) if a.sha256 != t.sha256] == ["nurture/day-5"]


def test_content_hash_changes_when_a_wait_changes(tmp_path):
    definition = copy_example(tmp_path, "acme")
    before = json.loads(P.dumps(plan_for(str(definition))))
    nurture = definition / "nurture.yaml"
    text = nurture.read_text(encoding="utf-8")
    line = "      - {wait: 3d, send: saas/capability}"
    assert text.count(line) == 1
    nurture.write_text(text.replace(line, "      - {wait: 4d, send: saas/capability}"), encoding="utf-8")
    after = json.loads(P.dumps(plan_for(str(definition))))
    assert after["content_hash"] != before["content_hash"]
    # exactly one value moved: that step's wait, by one day
    seq = next(i for i, s in enumerate(before["sequences"]) if s["name"] == "nurture-saas")
    step = next(i for i, s in enumerate(before["sequences"][seq]["steps"]) if s["template"] == "saas/capability")
    assert before["sequences"][seq]["steps"][step]["wait_minutes"] == 3 * 1440
    after["sequences"][seq]["steps"][step]["wait_minutes"] -= 1440
    assert {k: v for k, v in after.items() if k != "content_hash"} == \
           {k: v for k, v in before.items() if k != "content_hash"}


def test_comments_and_formatting_do_not_change_the_plan(tmp_path):
    definition = copy_example(tmp_path, "acme")
    before = P.dumps(plan_for(str(definition)))
    nurture = definition / "nurture.yaml"
    text = nurture.read_text(encoding="utf-8")
    text = text.replace("# Top-of-funnel education", "# Edited comment: top-of-funnel education")
    text = text.replace("      - {wait: 3d, send: saas/capability}",
                        "      # a comment between steps\n      - wait: 3d\n        send: saas/capability   # block style")
    nurture.write_text(text + "\n# trailing comment\n", encoding="utf-8")
    assert yaml.safe_load(text) == yaml.safe_load((REPO / "funnels/acme/nurture.yaml").read_text(encoding="utf-8"))
    assert P.dumps(plan_for(str(definition))) == before


# -- what compile resolves ----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_step_ids_are_unique_and_named_after_what_the_step_does(name):
    plan = plan_for(str(REPO / EXAMPLES[name][0]))
    for seq in plan.sequences:
        ids = [s.id for s in seq.steps]
        assert len(set(ids)) == len(ids), (seq.name, ids)
        assert [s.index for s in seq.steps] == list(range(len(seq.steps)))
        for s in seq.steps:
            if s.action == "send":
                assert s.id == s.template.rsplit("/", 1)[-1] or s.id.startswith(s.template.rsplit("/", 1)[-1] + "-")


def test_step_ids_survive_inserting_and_retiming_steps(tmp_path):
    definition = copy_example(tmp_path, "reference")
    before = {s.name: [(st.id, st.template) for st in s.steps] for s in plan_for(str(definition)).sequences}
    text = definition.read_text(encoding="utf-8")
    text = text.replace("      - {wait: 0d, send: nurture/day-0}\n",
                        "      - {wait: 0d, send: nurture/day-0}\n      - {wait: 1d, send: nurture/day-14, id: bonus}\n")
    text = text.replace("      - {wait: 3d, send: nurture/day-5}", "      - {wait: 2d, send: nurture/day-5}")
    definition.write_text(text, encoding="utf-8")
    after = {s.name: [(st.id, st.template) for st in s.steps] for s in plan_for(str(definition)).sequences}
    assert after["sales-support"] == before["sales-support"]
    assert [x for x in after["nurture"] if x[0] != "bonus"] == before["nurture"]
    assert after["nurture"][1] == ("bonus", "nurture/day-14")


def test_a_repeated_email_without_its_own_id_is_refused(tmp_path):
    """Numbering repeats by position would rename them when a step is inserted earlier
    and move leads in flight; so a repeat needs an explicit ID (lint FNL310)."""
    definition = copy_example(tmp_path, "reference")
    text = definition.read_text(encoding="utf-8")
    text = text.replace("      - {wait: 7d, send: nurture/day-21}\n",
                        "      - {wait: 7d, send: nurture/day-21}\n      - {wait: 1d, send: nurture/day-0}\n")
    definition.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemsFound) as caught:
        plan_for(str(definition))
    assert [p.code for p in caught.value.problems] == ["FNL310"]
    assert "repeats `day-0` without its own `id`" in caught.value.problems[0].message


def test_inserting_an_earlier_repeat_does_not_rename_later_steps(tmp_path):
    definition = copy_example(tmp_path, "reference")
    text = definition.read_text(encoding="utf-8")
    text = text.replace("      - {wait: 7d, send: nurture/day-21}\n",
                        "      - {wait: 7d, send: nurture/day-21}\n"
                        "      - {id: last-reminder, wait: 1d, send: nurture/day-0}\n")
    definition.write_text(text, encoding="utf-8")
    before = plan_for(str(definition)).sequence("nurture")
    last_id = before.steps[-1].id
    assert last_id == "last-reminder"
    # a second "day-0" reminder is inserted after day-9; the existing final step is unchanged
    definition.write_text(text.replace("      - {wait: 5d, send: nurture/day-14}\n",
                                       "      - {id: mid-reminder, wait: 1d, send: nurture/day-0}\n"
                                       "      - {wait: 4d, send: nurture/day-14}\n"),
                          encoding="utf-8")
    after = plan_for(str(definition)).sequence("nurture")
    moved = next(s for s in after.steps if s.id == last_id)
    assert moved.index == len(after.steps) - 1  # the same step as before, still the last one


def test_thresholds_are_resolved_into_condition_trees():
    plan = plan_for(str(REPO / "funnels/acme"))
    data = json.loads(P.dumps(plan))
    declared = yaml.safe_load((REPO / "funnels/acme/scoring.yaml").read_text(encoding="utf-8"))
    thresholds = declared["scoring"]["thresholds"]
    nodes = list(trees(data))
    assert nodes
    assert not [n for n in nodes if str(n.get("var", "")).startswith("thresholds")]
    # subscriber -> mql: `fit and score >= thresholds.mql` becomes score >= {"lit": 40}
    to_mql = next(t for t in plan.transitions if t.to == "mql")
    assert to_mql.when.source == "fit and score >= thresholds.mql"
    assert to_mql.when.tree == {"op": "and", "args": [
        {"var": "fit"}, {"op": ">=", "args": [{"var": "score"}, {"lit": thresholds["mql"]}]}]}
    to_sql = next(t for t in plan.transitions if t.to == "sql" and t.when is not None)
    assert {"op": ">=", "args": [{"var": "score"}, {"lit": thresholds["sql"]}]} in list(trees(to_sql.when.tree))
    # profile attributes become attr nodes, engine values var nodes
    assert plan.fit.tree["args"][0] == {"op": "in", "args": [
        {"attr": "industry"}, {"list": [{"lit": "saas"}, {"lit": "finance"}]}]}
    assert dict(plan.scoring.thresholds) == thresholds


def test_a_changed_threshold_changes_the_literal(tmp_path):
    definition = copy_example(tmp_path, "acme")
    scoring = definition / "scoring.yaml"
    scoring.write_text(scoring.read_text(encoding="utf-8").replace("    mql: 40", "    mql: 55"), encoding="utf-8")
    plan = plan_for(str(definition))
    to_mql = next(t for t in plan.transitions if t.to == "mql")
    assert {"lit": 55} in list(trees(to_mql.when.tree)) and {"lit": 40} not in list(trees(to_mql.when.tree))


def test_stages_carry_their_suppressions_and_the_plan_pins_every_sent_template():
    plan = plan_for(str(REPO / "funnels/acme"))
    by = {s.name: s for s in plan.stages}
    assert by["subscriber"].suppress == () and by["mql"].suppress == ()
    # suppression holds from the handoff stage on: sql and opportunity stop marketing,
    # customer also stops sales email
    assert set(by["sql"].suppress) == {"nurture", "broadcast"}
    assert set(by["customer"].suppress) == {"nurture", "broadcast", "sales"}
    assert by["sql"].sales_owned and not by["mql"].sales_owned and not by["customer"].sales_owned
    sent = {s.template for q in plan.sequences for s in q.steps if s.template}
    delivered = {m.delivers for m in plan.lead_magnets if m.delivers}
    assert {t.name for t in plan.templates} == sent | delivered
    assert all(len(t.sha256) == 64 for t in plan.templates)


def test_compile_in_process_matches_the_pipeline():
    funnel, _ = checked_funnel(one_source(str(REPO / "funnels/reference.yaml")))
    assert P.dumps(compile_funnel(funnel)) == P.dumps(plan_for(str(REPO / "funnels/reference.yaml")))


# -- errors -----------------------------------------------------------------------------------------

def test_compiling_a_definition_with_lint_errors_exits_1_with_the_location(tmp_path):
    definition = copy_example(tmp_path, "reference")
    text = definition.read_text(encoding="utf-8")
    bad = "      - {wait: 4d, send: nurture/day-99}"
    text = text.replace("      - {wait: 4d, send: nurture/day-9}", bad)
    definition.write_text(text, encoding="utf-8")
    line = text.splitlines().index(bad) + 1
    column = bad.index("nurture/day-99") + 1
    out = tmp_path / "plan.json"
    r = fnl("compile", "funnels/reference.yaml", "-o", out, cwd=tmp_path)
    assert r.returncode == 1
    assert f"funnels/reference.yaml:{line}:{column}:" in r.stderr
    assert "FNL201" in r.stderr and "nurture/day-99" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not out.exists()


def test_compiling_a_broken_yaml_file_exits_1(tmp_path):
    definition = copy_example(tmp_path, "reference")
    definition.write_text(definition.read_text(encoding="utf-8") + "stages: [again]\n", encoding="utf-8")
    r = fnl("compile", "funnels/reference.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "funnels/reference.yaml:" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_compiling_a_missing_path_exits_3(tmp_path):
    r = fnl("compile", tmp_path / "nope.yaml")
    assert r.returncode == 3
    assert "nope.yaml" in r.stderr and "Traceback" not in r.stderr
