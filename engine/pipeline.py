"""From a path to a plan: the stages chained for commands that need one definition."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from .check import Checked, check_source
from .compile import compile_funnel
from .errors import ProblemsFound, UsageError
from .lint.runner import Selection
from .model import Funnel
from .plan import Plan
from .sources import Source, discover


def one_source(path: str) -> Source:
    sources = discover((path,))
    if len(sources) != 1:
        names = ", ".join(s.name for s in sources[:4])
        raise UsageError(f"{path} holds {len(sources)} definitions ({names}{', …' if len(sources) > 4 else ''})",
                         "name one definition: a file, or a directory with funnel.yaml")
    return sources[0]


def checked_funnel(source: Source) -> Tuple[Funnel, Checked]:
    """The typed funnel of a definition that has no errors (warnings are allowed)."""
    checked = check_source(source, Selection())
    errors = tuple(p for p in checked.problems if p.severity == "error")
    if errors or checked.funnel is None:
        raise ProblemsFound(errors or checked.problems)
    return checked.funnel, checked


def plan_for(path: str) -> Plan:
    funnel, _ = checked_funnel(one_source(path))
    return compile_funnel(funnel)


def plan_for_source(source: Source) -> Plan:
    funnel, _ = checked_funnel(source)
    return compile_funnel(funnel)


@dataclass(frozen=True)
class Compiled:
    """A plan with the definition it was compiled from: the typed funnel, whose document
    knows the file, line and column of every node (for `fnl plan` to point at)."""

    plan: Plan
    funnel: Funnel


def compiled_for(path: str) -> Compiled:
    return compiled_for_source(one_source(path))


def compiled_for_source(source: Source) -> Compiled:
    funnel, _ = checked_funnel(source)
    return Compiled(compile_funnel(funnel), funnel)


def is_plan_file(path: str) -> bool:
    return Path(path).is_file() and path.endswith(".json")
