"""SARIF 2.1.0 for code-scanning dashboards, with rule metadata for every code used."""
from __future__ import annotations

import json
from pathlib import PurePath
from urllib.parse import quote
from typing import Any, Dict, List

from .. import __version__
from ..check import Checked
from ..terminal import for_json, json_text
from ..codes import DOCS_URL, describe

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _rule(rid: str) -> Dict[str, Any]:
    """SARIF rule metadata: lint rules carry their name, severity and documentation."""
    from ..lint.registry import BY_ID
    from ..lint.runner import rule_meta

    rule: Dict[str, Any] = {"id": rid, "name": rid, "shortDescription": {"text": describe(rid) or rid},
                            "helpUri": f"{DOCS_URL}{rid}"}
    if rid in BY_ID:
        meta = rule_meta(BY_ID[rid])
        rule["name"] = meta["name"]
        rule["shortDescription"] = {"text": meta["summary"]}
        rule["fullDescription"] = {"text": meta["doc"]}
        rule["help"] = {"text": meta["doc"]}
        rule["defaultConfiguration"] = {"level": _LEVEL.get(meta["severity"], "error")}
    return rule


def render(results: List[Checked], verbose: bool = False) -> str:
    problems = [p for r in results for p in r.problems]
    rule_ids = sorted({p.code for p in problems})
    index = {rid: i for i, rid in enumerate(rule_ids)}
    rules = [_rule(rid) for rid in rule_ids]
    sarif_results: List[Dict[str, Any]] = []
    for p in problems:
        text = p.message + (f" Help: {p.help}" if p.help else "")
        result: Dict[str, Any] = {
            "ruleId": p.code,
            "ruleIndex": index[p.code],
            "level": _LEVEL.get(p.severity, "error"),
            "message": {"text": text},
            "locations": [{
                "physicalLocation": {
                    # A name that is not UTF-8 keeps its bytes, percent-encoded.
                    "artifactLocation": {"uri": quote(PurePath(p.location.file).as_posix(), safe="/",
                                                      errors="surrogateescape")},
                    "region": {"startLine": p.location.line, "startColumn": p.location.column},
                },
            }],
        }
        if p.path:
            result["locations"][0]["logicalLocations"] = [{"fullyQualifiedName": p.dotted_path, "kind": "member"}]
        sarif_results.append(result)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "fnl",
                "version": __version__,
                "informationUri": "https://fnl.dev",
                "rules": rules,
            }},
            "results": sarif_results,
            # fnl counts columns in characters, as editors show them.
            "columnKind": "unicodeCodePoints",
        }],
    }
    return json_text(json.dumps(for_json(doc), indent=2, ensure_ascii=False)) + "\n"
