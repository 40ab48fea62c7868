"""`fnl plan` with a definition that has lint errors: the findings, then one line
saying which plan cannot be made and why, and exit 1."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO, run_fnl

SAMPLES = REPO / "tests" / "samples"
BEFORE = SAMPLES / "plan-newsletter-before.yaml"
AFTER = SAMPLES / "plan-newsletter-after.yaml"


def broken(tmp_path: Path, stages: str = "stages: [subscriber, mql, sql, sql]") -> Path:
    """The after sample with a lint error (a stage named twice), written in tmp_path."""
    text = AFTER.read_text(encoding="utf-8")
    assert text.count("stages: [subscriber, mql, sql]") == 1
    assert text.count("templates: ../../templates/newsletter-to-demo") == 1
    text = text.replace("stages: [subscriber, mql, sql]", stages).replace(
        "templates: ../../templates/newsletter-to-demo", "templates: ../templates/newsletter-to-demo")
    shutil.copytree(REPO / "templates" / "newsletter-to-demo", tmp_path / "templates" / "newsletter-to-demo")
    path = tmp_path / "funnels" / "x.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    return path


def test_a_new_definition_with_an_error_says_the_plan_cannot_be_made(tmp_path):
    path = broken(tmp_path)
    r = run_fnl("plan", BEFORE, path)
    shown = path.as_posix()
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
    assert " error FNL" in r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1] == (
        f"fnl plan: cannot plan {shown}: the new definition has 1 error (fix it, then run fnl plan again)")


def test_an_old_definition_with_an_error_names_the_old_side(tmp_path):
    path = broken(tmp_path)
    r = run_fnl("plan", path, AFTER.relative_to(REPO))
    assert r.returncode == 1 and r.stdout == ""
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("fnl plan: cannot plan tests/samples/plan-newsletter-after.yaml: the old definition has ")


def test_other_commands_print_only_the_findings(tmp_path):
    path = broken(tmp_path)
    r = run_fnl("graph", path)
    assert r.returncode == 1 and " error FNL" in r.stderr and "cannot plan" not in r.stderr
