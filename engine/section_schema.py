"""The schema of one section file of a split definition, derived from the funnel schema.

A definition split across a directory (`funnels/acme/`) is merged section by section
(`engine.sources.merge`): a file may hold any top-level keys, and a mapping section such as
`sequences` or `sender` may be spread over several files, one entry per key. So no file on
its own has to hold the keys the whole funnel requires, and an editor checking a section
file against `schemas/funnel.schema.json` reports them missing.

`section_schema` is the funnel schema without those requirements: the top level's
`required` list, and the `required` list of each mapping section (whose keys may come from
different files). Everything else stays, so a misspelled top-level key is still an unknown
property (`additionalProperties: false`) and every entry inside a section (a sequence, a
lead magnet, a step) is checked as strictly as in the whole funnel: entries are never split.

`schemas/section.schema.json` is this function's output, committed;
`tests/test_editor_schema.py` fails when it differs, and

    python -m engine.section_schema --write

rewrites it (`--check` only says whether it is current).
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FUNNEL = SCHEMAS / "funnel.schema.json"
SECTION = SCHEMAS / "section.schema.json"
COMMAND = "python -m engine.section_schema --write"


def section_schema(funnel_schema: Dict[str, Any]) -> Dict[str, Any]:
    """The funnel schema as one section file of a split definition must meet it."""
    body = copy.deepcopy(funnel_schema)
    required = body.pop("required", [])
    for section in body.get("properties", {}).values():
        if isinstance(section, dict) and section.get("type") == "object":
            section.pop("required", None)
    head: Dict[str, Any] = {}
    if "$schema" in body:
        head["$schema"] = body.pop("$schema")
    if "$id" in body:
        head["$id"] = body.pop("$id").replace("funnel.schema.json", "section.schema.json")
    head["$comment"] = (f"Generated from funnel.schema.json by engine/section_schema.py; do not edit, "
                        f"run `{COMMAND}`.")
    head["title"] = "fnl funnel definition: one section file"
    body.pop("title", None)
    head["description"] = (
        "One file of a definition split across a directory (such as funnels/acme/nurture.yaml): "
        "any of the funnel's sections, checked as in the whole funnel except that no key is "
        "required here, since the directory's files are merged section by section and the "
        f"funnel's required keys ({', '.join(required)}) may be in another file.")
    body.pop("description", None)
    return {**head, **body}


def dumps(schema: Dict[str, Any]) -> str:
    """The committed form: two-space indents, UTF-8 as written, a final line feed."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated() -> str:
    """What `schemas/section.schema.json` must hold, from `schemas/funnel.schema.json`."""
    return dumps(section_schema(json.loads(FUNNEL.read_text(encoding="utf-8"))))


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--write"], ["--check"]):
        print("usage: python -m engine.section_schema --write | --check", file=sys.stderr)
        return 3
    wanted = generated()
    current = SECTION.read_text(encoding="utf-8") if SECTION.is_file() else None
    if wanted == current:
        print(f"{SECTION.name} is up to date")
        return 0
    if args == ["--write"]:
        SECTION.write_text(wanted, encoding="utf-8", newline="\n")
        print(f"rewrote {SECTION.name}")
        return 0
    print(f"{SECTION.name} is out of date with {FUNNEL.name}; run {COMMAND}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
