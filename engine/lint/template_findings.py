"""Walks over the templates a funnel sends, shared by the template rules."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .. import templates
from ..errors import JsonPath, Location
from ..sources import display_path
from ..templates import Rendered
from . import Finding
from .context import Context


def template_location(ctx: Context, name: str, line: int, column: int = 1) -> Location:
    path = Path(ctx.funnel.template_dir) / f"{name}.j2"
    return Location(display_path(path), line, column)


def template_issues(ctx: Context, kind: str) -> Iterator[Finding]:
    """Static issues of one kind in every template that exists and is sent (or is an
    email in the directory), located in the template file."""
    names: Set[str] = set(ctx.template_names)
    first_use: Dict[str, JsonPath] = {}
    for name, path, _purpose in ctx.sends:
        first_use.setdefault(name, path)
    for name in sorted(names):
        tpl = ctx.template(name)
        if tpl is None:
            continue
        for issue in tpl.issues:
            if issue.kind == kind:
                yield Finding(first_use.get(name, ("templates",)), f"{name}: {issue.message}", issue.help,
                              location=template_location(ctx, name, issue.line, issue.column))


def each_render(ctx: Context, purposes: Optional[Tuple[str, ...]] = None
                ) -> Iterator[Tuple[str, JsonPath, Optional[str], Rendered]]:
    """(template, path of first send, variant, rendered) for each sent template that
    renders cleanly; with `purposes`, only templates sent for those purposes."""
    seen: Set[str] = set()
    for name, path, purpose in ctx.sends:
        if name in seen or (purposes is not None and purpose not in purposes):
            continue
        seen.add(name)
        tpl = ctx.template(name)
        if tpl is None or tpl.issues:
            continue
        for variant, result in renders(ctx, name):
            if isinstance(result, Rendered):
                yield name, path, variant, result


def renders(ctx: Context, name: str) -> List[Tuple[Optional[str], Any]]:
    """`ctx.renders(name)`, on the funnel's render clock: all its templates together
    get `templates.COMMAND_RENDER_SECONDS` (a command-wide `templates.render_session`,
    when one is open, wins), so twenty slow templates cannot hold lint up for a minute."""
    clock = ctx._cache.get("render-clock")  # the context's cache lives as long as the funnel's lint
    if clock is None:
        clock = ctx._cache["render-clock"] = templates.RenderClock(scope="this funnel's templates")
    with templates.render_session(clock):
        return ctx.renders(name)


def variant_sends(ctx: Context) -> Dict[str, List[Tuple[JsonPath, Tuple[str, ...]]]]:
    """Template -> (path of each step sending it, the A/B variants it is sent with: the
    names of positive weight, () without variants), in definition order."""
    out: Dict[str, List[Tuple[JsonPath, Tuple[str, ...]]]] = {}
    for seq in ctx.funnel.sequences:
        for step in seq.steps:
            if step.send:
                out.setdefault(step.send, []).append((step.path, tuple(v for v, w in step.variants if w > 0)))
    return out
