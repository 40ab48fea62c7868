"""The README shows what fnl really does.

Every sample marked `<!-- sample: fnl ... -->` is the output of that command today, and
every `<!-- generated: ... -->` section is what its source renders (`python -m
tests.readme_samples --write` rewrites both). The tour ("A definition in N lines"),
written to `funnels/` beside `templates/`, passes `fnl validate` with no findings, and
is as long as its heading says.
"""
from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, List

import pytest

import readme_samples as rs
from conftest import REPO, run_fnl

from engine.load import parse_text

TEXT = rs.README.read_text(encoding="utf-8")
SAMPLES = rs.samples(TEXT)
SECTIONS = rs.sections(TEXT)
TOUR = re.compile(r"^## A definition in (?P<count>\d+) lines\n\n```yaml\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def tour_text() -> str:
    m = TOUR.search(rs.README.read_text(encoding="utf-8"))
    assert m, "README.md has no section \"A definition in N lines\" with a ```yaml block"
    return m.group("body")


@lru_cache(maxsize=1)
def _tour_json() -> str:
    loaded = parse_text("README.md", tour_text())
    assert loaded.document is not None and not loaded.problems, loaded.problems
    return json.dumps(loaded.document.data)


def tour_data() -> Any:
    """The tour as data, read by fnl's own loader (so `on:` is a key, not a boolean)."""
    return json.loads(_tour_json())


# -- samples ------------------------------------------------------------------------

def test_the_readme_shows_real_samples_of_each_command() -> None:
    commands = [s.command.split()[1] for s in SAMPLES]
    for command in ("validate", "trace", "plan"):
        assert command in commands, f"README.md has no `<!-- sample: fnl {command} ... -->`"


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.command for s in SAMPLES])
def test_a_sample_is_what_its_command_prints(sample: rs.Sample) -> None:
    printed = rs.run(sample.command)
    assert sample.shown == printed, (
        f"README.md:{sample.line}: the sample of `{sample.command}` is out of date; "
        "run `python -m tests.readme_samples --write`")


@pytest.mark.parametrize("section", SECTIONS, ids=[s.name for s in SECTIONS])
def test_a_generated_section_is_what_its_source_renders(section: rs.Section) -> None:
    assert section.shown == rs.section(section.name), (
        f"README.md:{section.line}: the generated section `{section.name}` is out of date; "
        "run `python -m tests.readme_samples --write`")


def test_the_conditions_section_is_generated() -> None:
    assert [s.name for s in SECTIONS].count("conditions") == 1
    assert TEXT.index("## Conditions") < TEXT.index("<!-- generated: conditions -->")


def test_regeneration_rewrites_a_stale_sample_and_section() -> None:
    stale = ("<!-- sample: fnl rules FNL999 -->\n```\nSTALE OUTPUT\n```\n\n"
             "<!-- generated: conditions -->\nSTALE TEXT\n<!-- end generated -->\n")
    fresh = rs.regenerated(stale, output=lambda command: f"output of {command}")
    assert "STALE" not in fresh
    assert "```\noutput of fnl rules FNL999\n```" in fresh
    assert rs.section("conditions") in fresh
    assert rs.samples(fresh)[0].shown == "output of fnl rules FNL999"
    assert rs.regenerated(fresh, output=lambda command: f"output of {command}") == fresh


def test_a_sample_runs_fnl_only() -> None:
    with pytest.raises(ValueError):
        rs.run("rm -rf /")


def test_regeneration_is_one_documented_command() -> None:
    development = TEXT[TEXT.index("## Development"):]
    assert "python -m tests.readme_samples --write" in development
    proc = run_fnl_module("--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_fnl_module(*args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tests.readme_samples", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=rs.environment())


# -- the tour -------------------------------------------------------------------------

def test_the_tour_is_as_long_as_its_heading_says() -> None:
    m = TOUR.search(TEXT)
    assert m is not None
    assert int(m.group("count")) == len(m.group("body").splitlines())


def test_the_tour_validates_clean_in_funnels(tmp_path: Path) -> None:
    """As a user would copy it: into funnels/ of a repository laid out like this one."""
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    name = tour_data()["funnel"]
    target = tmp_path / "funnels" / f"{name}.yaml"
    target.parent.mkdir()
    target.write_text(tour_text(), encoding="utf-8")
    proc = run_fnl("validate", target, "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    problems: List[Any] = [p for d in json.loads(proc.stdout)["definitions"] for p in d["problems"]]
    assert problems == []
    # Its `templates:` resolves from funnels/ to emails that exist there.
    folder = (target.parent / tour_data()["templates"]).resolve()
    assert folder.is_dir() and any(folder.rglob("*.j2"))
    # The schema line points at the schema from there too.
    first = tour_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/funnel.schema.json"
    assert (target.parent / "../schemas/funnel.schema.json").is_file()
