"""Editors: every example file's first-line modeline points the real yaml-language-server at
a schema under which the file is clean.

A split definition's section files (`funnels/acme/nurture.yaml` and friends) hold only
some of the funnel's sections, so they use `schemas/section.schema.json`: the funnel schema
without its required keys (`engine/section_schema.py` derives it; the committed file must
be what it derives). `funnel.yaml`, which holds the funnel's required keys, keeps the
whole-funnel schema.

The language server runs in node from tests/js (`npm install` there; CI does), once for all
files: `tests/js/yaml_ls_check.mjs` opens each file in it over stdio, as an editor would,
and prints the diagnostics it publishes.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import jsonschema
import pytest

from conftest import REPO, run_fnl, built_package
from engine.load import parse_text
from engine.section_schema import COMMAND, dumps, section_schema

JS = REPO / "tests" / "js"
SCHEMAS = REPO / "schemas"
FUNNEL_SCHEMA: Dict[str, Any] = json.loads((SCHEMAS / "funnel.schema.json").read_text(encoding="utf-8"))
MODELINE = re.compile(r"# yaml-language-server: \$schema=(?P<path>\S+)\Z")

# Every YAML file of the examples: definitions, sections, behaviour models and expectations.
EXAMPLES = sorted((REPO / "funnels").rglob("*.yaml"))
# The folders of split definitions (a folder holding funnel.yaml) and their section files.
SPLIT = sorted(p.parent for p in (REPO / "funnels").rglob("funnel.yaml"))
SECTIONS = sorted(p for d in SPLIT for p in d.rglob("*.yaml")
                  if p.name != "funnel.yaml" and not p.name.endswith((".behavior.yaml", ".expect.yaml")))


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def modeline(path: Path) -> Optional[Path]:
    """The schema file the first line points at, resolved from the file's folder."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = MODELINE.match(first)
    return (path.parent / m.group("path")).resolve() if m else None


def load(path: Path) -> Any:
    """The file's data as fnl reads it (YAML 1.2: `on:` is a key, not `true`)."""
    loaded = parse_text(rel(path), path.read_text(encoding="utf-8"))
    assert loaded.document is not None and not loaded.problems, loaded.problems
    return loaded.document.data


# -- the section schema is generated ---------------------------------------------------

def test_the_committed_section_schema_is_what_the_generator_derives():
    on_disk = (SCHEMAS / "section.schema.json").read_text(encoding="utf-8")
    assert on_disk == dumps(section_schema(FUNNEL_SCHEMA)), (
        f"schemas/section.schema.json is out of date with schemas/funnel.schema.json; run `{COMMAND}`")


def test_the_section_schema_drops_only_what_one_file_cannot_hold():
    before = copy.deepcopy(FUNNEL_SCHEMA)
    section = section_schema(FUNNEL_SCHEMA)
    assert FUNNEL_SCHEMA == before, "section_schema must not change its argument"
    jsonschema.Draft7Validator.check_schema(section)
    assert section["$id"].endswith("/section.schema.json") and section["title"] != FUNNEL_SCHEMA["title"]
    # No key of the whole funnel is required of one file, nor any key of a mapping section:
    # the directory's files merge section by section, so `sender.from` may be in another file.
    assert "required" not in section and FUNNEL_SCHEMA["required"]
    split_up = {k for k, v in FUNNEL_SCHEMA["properties"].items() if v.get("type") == "object" and "required" in v}
    assert split_up and not [k for k in split_up if "required" in section["properties"][k]]
    # Everything else is the funnel schema's: closed at the top, strict inside every entry.
    assert section["additionalProperties"] is False
    assert section["definitions"] == FUNNEL_SCHEMA["definitions"]
    for key, prop in FUNNEL_SCHEMA["properties"].items():
        kept = {k: v for k, v in prop.items() if not (k == "required" and key in split_up)}
        assert section["properties"][key] == kept, key


def test_fnl_schema_section_prints_it():
    result = run_fnl("schema", "section")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((SCHEMAS / "section.schema.json").read_text(encoding="utf-8"))


def test_the_section_schema_ships_with_the_others(tmp_path: Path):
    """setuptools' build of the package (what pip installs) puts it in `fnl_schemas`."""
    lib = built_package(tmp_path)
    shipped = lib / "fnl_schemas" / "section.schema.json"
    assert shipped.read_text(encoding="utf-8") == (SCHEMAS / "section.schema.json").read_text(encoding="utf-8")


# -- the modelines ---------------------------------------------------------------------

def test_there_are_split_examples_with_sections():
    assert REPO / "funnels" / "acme" in SPLIT and len(SECTIONS) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=rel)
def test_every_example_names_the_schema_for_what_it_holds(path: Path):
    if path.name.endswith(".behavior.yaml"):
        wanted = "behavior"
    elif path.name.endswith(".expect.yaml"):
        wanted = "expect"
    elif path in SECTIONS:
        wanted = "section"
    else:
        wanted = "funnel"
    target = modeline(path)
    assert target == SCHEMAS / f"{wanted}.schema.json", (
        f"{rel(path)}: the first line should be `# yaml-language-server: $schema=<path to "
        f"schemas/{wanted}.schema.json>`")


@pytest.mark.parametrize("path", SECTIONS, ids=rel)
def test_a_section_file_passes_its_schema_but_not_the_whole_funnels(path: Path):
    data = load(path)
    jsonschema.Draft7Validator(section_schema(FUNNEL_SCHEMA)).validate(data)
    missing = [e.message for e in jsonschema.Draft7Validator(FUNNEL_SCHEMA).iter_errors(data)
               if e.validator == "required" and not e.path]
    assert missing, f"{rel(path)} holds the whole funnel's required keys: it needs no section schema"


@pytest.mark.parametrize("folder", SPLIT, ids=rel)
def test_the_funnel_file_of_a_split_definition_holds_the_required_keys(folder: Path):
    jsonschema.Draft7Validator(FUNNEL_SCHEMA).validate(load(folder / "funnel.yaml"))


# -- the real yaml-language-server -----------------------------------------------------

def language_server_missing() -> Optional[str]:
    """Why yaml-language-server cannot run here, or None."""
    if shutil.which("node") is None:
        return ("node is not installed: yaml-language-server runs in node "
                "(install node and npm, then `npm install` in tests/js)")
    if not (JS / "node_modules" / "yaml-language-server").is_dir():
        return "tests/js/node_modules/yaml-language-server is missing: run `npm install` in tests/js (CI does)"
    return None


def language_server(files: List[Path]) -> Dict[Path, List[Dict[str, Any]]]:
    """The diagnostics the real yaml-language-server publishes for each file, opened together."""
    reason = language_server_missing()
    if reason:
        pytest.skip(reason)
    done = subprocess.run(["node", str(JS / "yaml_ls_check.mjs"), *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return {Path(k): v for k, v in json.loads(done.stdout).items()}


NURTURE = REPO / "funnels" / "acme" / "nurture.yaml"
TO_SECTION = "# yaml-language-server: $schema=../../schemas/section.schema.json"
TO_FUNNEL = "# yaml-language-server: $schema=../../schemas/funnel.schema.json"


@pytest.fixture(scope="module")
def diagnostics(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[Dict[str, Any]]]:
    """One server for every example and for copies of a section file, made wrong on purpose,
    in a folder laid out like this repository (so their modelines resolve as written)."""
    root = tmp_path_factory.mktemp("editor")
    shutil.copytree(SCHEMAS, root / "schemas")
    folder = root / "funnels" / "acme"
    folder.mkdir(parents=True)
    text = NURTURE.read_text(encoding="utf-8")
    assert text.splitlines()[0] == TO_SECTION
    nested = re.sub(r"^    stage: ", "    stagee: ", text, count=1, flags=re.MULTILINE)
    copies = {
        "section": text,
        "top-typo": text.replace("\nsequences:\n", "\nsequnces:\n"),
        "nested-typo": nested,
        "whole-funnel": text.replace(TO_SECTION, TO_FUNNEL, 1),
        # A mapping section split across files: half of `sender` is a whole section file.
        "half-sender": f'{TO_SECTION}\nsender:\n  postal_address: "1 Main St, Springfield"\n',
    }
    assert len({copies[k] for k in copies}) == len(copies)
    for name, content in copies.items():
        (folder / f"{name}.yaml").write_text(content, encoding="utf-8")
    found = language_server([*EXAMPLES, *(folder / f"{name}.yaml" for name in copies)])
    out = {rel(p): found[p] for p in EXAMPLES}
    out.update({name: found[folder / f"{name}.yaml"] for name in copies})
    return out


def line_of(text: str, pattern: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if re.match(pattern, line))


@pytest.mark.parametrize("path", EXAMPLES, ids=rel)
def test_the_language_server_finds_nothing_wrong_with_an_example(path: Path, diagnostics):
    assert diagnostics[rel(path)] == [], json.dumps(diagnostics[rel(path)], indent=2)


def test_a_misspelled_top_level_key_in_a_section_file_is_an_error(diagnostics):
    found = diagnostics["top-typo"]
    assert [d for d in found if "sequnces" in d["message"]
            and d["line"] == line_of(NURTURE.read_text(encoding="utf-8"), r"sequences:")], found
    assert all("one section file" in d["source"] for d in found), found


def test_a_misspelled_key_inside_a_section_file_is_an_error(diagnostics):
    found = diagnostics["nested-typo"]
    assert [d for d in found if "stagee" in d["message"]
            and d["line"] == line_of(NURTURE.read_text(encoding="utf-8"), r"    stage: ")], found


def test_a_section_file_is_clean_on_the_section_schema_and_not_on_the_whole_funnels(diagnostics):
    """The bug this schema fixes: on the whole-funnel schema a section file shows one
    "Missing property" per required key of the funnel."""
    assert diagnostics["section"] == []
    missing = sorted(d["message"] for d in diagnostics["whole-funnel"])
    assert missing == sorted(f'Missing property "{key}".' for key in FUNNEL_SCHEMA["required"])


def test_part_of_a_mapping_section_is_a_whole_section_file(diagnostics):
    assert diagnostics["half-sender"] == []
