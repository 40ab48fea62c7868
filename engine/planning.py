"""Pairs of plans for `fnl plan`: two paths, or the working tree against a revision.

Each plan comes with the definition it was compiled from (a plan file has none), so the
diff can point at lines; files of a revision are named as git names them, `REV:path`."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Iterator, List, Tuple

from . import plan as p
from .diff import Side, read_templates
from .errors import ProblemsFound, UsageError
from .pipeline import compiled_for, compiled_for_source
from .plan import Plan
from .revision import Revision, repo_root
from .sources import Source, discover, real


def _empty(name: str) -> Plan:
    """The plan of a definition that does not exist (yet): nothing in it."""
    return p.Plan(p.FORMAT_VERSION, name, "sha256:none", p.Sender("", None, "", None), (), (), (), None, (), (), (),
                  (), p.Scoring((), (), None, (), False), (), (), (),
                  p.Policies(None, None, (), None, None, "timezone", "UTC", 3, (), None, None), ())


def load_plan(path: str) -> Side:
    """A plan from a compiled plan JSON file (read as untrusted input, every problem
    located: `engine.planfile`), or from a definition, with the definition."""
    if path.endswith(".json") and Path(path).is_file():
        from .planfile import read
        from .sources import display_path

        return Side(read(Path(path), display_path(Path(path))))
    compiled = compiled_for(path)
    return Side(compiled.plan, compiled.funnel, templates=read_templates(compiled.funnel))


def plans_between(old: str, new: str) -> Tuple[Side, Side]:
    with _cannot_plan(new, "the old plan file" if old.endswith(".json") else "the old definition"):
        old_side = load_plan(old)
    with _cannot_plan(new, "the new plan file" if new.endswith(".json") else "the new definition"):
        new_side = load_plan(new)
    return old_side, new_side


@contextmanager
def _cannot_plan(shown: str, side: str) -> Iterator[None]:
    """Problems that stop `fnl plan` end with a line saying which plan cannot be made,
    and which side of it has how many errors."""
    try:
        yield
    except ProblemsFound as exc:
        n = sum(1 for p in exc.problems if p.severity == "error") or len(exc.problems)
        exc.context = (f"fnl plan: cannot plan {shown}: {side} has {n} error{'' if n == 1 else 's'} "
                       f"(fix {'it' if n == 1 else 'them'}, then run fnl plan again)")
        raise


def plans_against_base(rev: str, paths: Tuple[str, ...]) -> List[Tuple[Side, Side]]:
    root = Path(real(repo_root(Path.cwd())) or repo_root(Path.cwd()))
    pairs: List[Tuple[Side, Side]] = []
    with Revision(root, rev) as base:
        for raw in paths:
            here = Path(real(raw) or os.path.abspath(raw))
            try:
                rel = PurePosixPath(here.relative_to(root).as_posix())
            except ValueError:
                raise UsageError(f"{raw} is outside the git repository {root}", "name a path inside it") from None
            current = discover((raw,)) if os.path.lexists(raw) else []
            with _named_at(base.dir, rev):
                then = base.add_definition(rel)
                old_sources = _discover_at(then)
                for source in old_sources:
                    base.add_templates(source)
            old_by = {_key(s, base.dir): s for s in old_sources}
            new_by = {_key(s, root): s for s in current}
            renames = ((str(base.dir) + os.sep, f"{rev}:"),)
            for key in sorted(set(old_by) | set(new_by)):
                shown = _shown(new_by[key]) if key in new_by else key
                with _cannot_plan(shown, f"the old definition ({rev})"), _named_at(base.dir, rev):
                    then_side = compiled_for_source(old_by[key]) if key in old_by else None
                with _cannot_plan(shown, "the new definition"):
                    now_side = compiled_for_source(new_by[key]) if key in new_by else None
                name = (now_side or then_side).plan.funnel  # type: ignore[union-attr]
                # The revision's template files are read now: its copy is gone once the plans are compared.
                pairs.append((Side(then_side.plan, then_side.funnel, renames, read_templates(then_side.funnel))
                              if then_side else Side(_empty(name)),
                              Side(now_side.plan, now_side.funnel, templates=read_templates(now_side.funnel))
                              if now_side else Side(_empty(name))))
            if not old_by and not new_by:
                raise UsageError(f"{raw}: no definitions here or at {rev}", "name a definition file or directory")
    return pairs


@contextmanager
def _named_at(copy: Path, rev: str) -> Iterator[None]:
    """Problems and errors in the copy of a revision name its files as git does,
    `REV:path`, not by the temporary folder they were read from."""
    prefix = str(copy) + os.sep

    def name(text: str) -> str:
        text = text.replace(f"the repository {copy}", str(copy)).replace(prefix, f"{rev}:")
        return text.replace(str(copy), f"the repository at {rev}")

    try:
        yield
    except ProblemsFound as exc:
        raise ProblemsFound(tuple(replace(p, location=replace(p.location, file=name(p.location.file)),
                                          message=name(p.message), help=name(p.help)) for p in exc.problems)) from None
    except UsageError as exc:
        raise UsageError(name(exc.message), name(exc.help)) from None


def _shown(source: Source) -> str:
    """A definition as users name it: its file or folder, relative to here."""
    from .sources import display_path

    return display_path(source.path) if source.path is not None else source.name


def _discover_at(path: Path) -> List[Source]:
    return discover((str(path),)) if os.path.lexists(path) else []


def _key(source: Source, root: Path) -> str:
    first = source.files[0] if source.files else source.path or Path(source.name)
    # The file (or refused link) itself, not where a link leads.
    here = Path(real(first.parent) or os.path.abspath(first.parent)) / first.name
    try:
        rel = here.relative_to(root)
    except ValueError:
        rel = here
    # A split definition is keyed by its directory, a single file by itself.
    return str(rel.parent if source.files and first.name == "funnel.yaml" else rel)
