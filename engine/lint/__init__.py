"""Semantic lint: rules a RevOps reviewer would check by hand, each a small module.

A rule module has `ID`, `NAME`, `SEVERITY`, a docstring that is its documentation
(first line the summary, then a failing and a passing example) and `check(ctx)`, a
generator of `Finding`s. `registry.RULES` lists them explicitly. `lint()` runs the
selected rules, places each finding at its source line, applies inline suppressions
and returns plain `Problem`s, the same values every other stage reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import JsonPath, Location

# A finding of another rule, by rule ID and path, that this finding follows from.
Cause = Tuple[str, JsonPath]


@dataclass(frozen=True)
class Finding:
    """What a rule found: a path into the definition (or an explicit location, for
    template files) and the words for the reviewer. `causes` names findings this one
    only follows from (a stage no lead reaches because a transition misspells it): when
    any of them is reported, this one is dropped, so the report leads with the cause."""

    path: JsonPath
    message: str
    help: str = ""
    key: bool = False
    location: Optional[Location] = None
    causes: Tuple[Cause, ...] = ()
