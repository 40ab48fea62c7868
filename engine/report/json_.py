"""Machine output: versioned JSON with 1-based positions and JSON pointers."""
from __future__ import annotations

import json
from typing import Any, Dict, List

from .. import __version__
from ..check import Checked
from ..terminal import for_json, json_text
from ..errors import Problem, json_pointer

FORMAT_VERSION = 1


def problem_dict(p: Problem) -> Dict[str, Any]:
    return {
        "file": p.location.file,
        "line": p.location.line,
        "column": p.location.column,
        "code": p.code,
        "severity": p.severity,
        "path": p.dotted_path,
        "pointer": json_pointer(p.path),
        "message": p.message,
        "help": p.help,
        "related": list(p.related),
    }


def render(results: List[Checked], verbose: bool = False) -> str:
    doc = {
        "format_version": FORMAT_VERSION,
        "tool": {"name": "fnl", "version": __version__},
        "summary": {
            "definitions": len(results),
            "with_problems": sum(1 for r in results if r.problems),
            "problems": sum(len(r.problems) for r in results),
        },
        "definitions": [
            {"name": r.source.name, "files": [str(f) for f in r.source.files],
             "problems": [problem_dict(p) for p in r.problems]}
            for r in results
        ],
    }
    return json_text(json.dumps(for_json(doc), indent=2, ensure_ascii=False)) + "\n"
