"""The `fnl validate` pipeline for many paths: discover, load, validate, collect.

Every definition is checked and every problem collected before anything is reported;
one broken file never hides another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import Problem
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


def check_source(source: Source) -> Checked:
    loaded = load_source(source)
    if loaded.document is None:
        return Checked(source, loaded.problems, None)
    # A value the loader already complained about gets no second complaint from the schema.
    seen = {(p.location.file, p.location.line, p.location.column) for p in loaded.problems}
    found = [p for p in validate(loaded.document)
             if (p.location.file, p.location.line, p.location.column) not in seen]
    problems = sorted(loaded.problems + tuple(found),
                      key=lambda p: (p.location.file, p.location.line, p.location.column, p.code))
    if problems:
        return Checked(source, tuple(problems), None)
    return Checked(source, (), loaded.document, build(loaded.document))


def check_paths(paths: Tuple[str, ...]) -> List[Checked]:
    """Check every definition under `paths`. Raises UsageError for a bad path."""
    return [check_source(source) for source in discover(paths)]
