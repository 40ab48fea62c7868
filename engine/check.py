"""The `fnl validate` pipeline for many paths: discover, load, validate, lint, collect.

Every definition is checked and every problem collected before anything is reported;
one broken file never hides another. Lint runs on definitions that pass the schema.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from . import baseline
from .errors import SEVERITIES, Problem
from .lint.runner import Selection, lint
from .load import Document
from .model import Funnel, build
from .sources import Source, discover, load_source
from .validate import validate


@dataclass(frozen=True)
class Checked:
    """One definition and what was found in it."""

    source: Source
    problems: Tuple[Problem, ...]
    document: Optional[Document]
    funnel: Optional[Funnel] = None


def _place(p: Problem) -> Tuple[str, int, int, str]:
    return (p.location.file, p.location.line, p.location.column, p.code)


def check_source(source: Source, selection: Optional[Selection] = None,
                 buffers: Optional[Mapping[str, bytes]] = None) -> Checked:
    """Load, validate and (unless `selection` is None) lint one definition; the files in
    `buffers` (real path -> contents: an editor's unsaved text) are read from there."""
    loaded = load_source(source, buffers)
    if loaded.document is None:
        return Checked(source, loaded.problems, None)
    # A value the loader already complained about gets no second complaint from the schema.
    seen = {_place(p)[:3] for p in loaded.problems}
    found = [p for p in validate(loaded.document) if _place(p)[:3] not in seen]
    problems = sorted(loaded.problems + tuple(found), key=_place)
    if problems:
        return Checked(source, tuple(problems), None)
    funnel = build(loaded.document)
    findings = lint(funnel, selection) if selection is not None else ()
    return Checked(source, findings, loaded.document, funnel)


def check_paths(paths: Tuple[str, ...], selection: Optional[Selection] = Selection()) -> List[Checked]:
    """Check every definition under `paths`. Raises UsageError for a bad path. Their
    templates share one render clock (`templates.CHECK_RENDER_SECONDS`, and one budget
    for slow renders), so slow templates cannot add up over many funnels."""
    from . import templates

    clock = templates.RenderClock(templates.CHECK_RENDER_SECONDS, scope="this command's templates")
    with templates.render_session(clock):
        return [check_source(source, selection) for source in discover(paths)]


def without_baseline(results: List[Checked], accepted: Counter, anchor: Optional[Path] = None) -> List[Checked]:
    """Results with the baseline's accepted findings removed (paths are keyed relative to
    `anchor`, the baseline file's folder)."""
    pairs = [(r.source.name, p) for r in results for p in r.problems]
    keep = {id(p) for _, p in baseline.new_only(pairs, accepted, anchor)}
    return [replace(r, problems=tuple(p for p in r.problems if id(p) in keep)) for r in results]


def failing(results: List[Checked], fail_on: str) -> bool:
    """Whether any problem is at or above the `fail_on` severity."""
    if fail_on == "never":
        return False
    limit = SEVERITIES.index(fail_on)
    return any(SEVERITIES.index(p.severity) <= limit for r in results for p in r.problems)
