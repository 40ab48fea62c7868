"""`fnl report --base REV`: the pull-request comment that says what a change does.

For each definition the change touches, computed and nothing guessed: the plan diff in
the definition's own words (`engine.diff`, as `fnl plan --format markdown` prints it),
the forecast of the new definition beside the base branch's, with common random numbers
and 95 % intervals of the difference (`engine.simulate.compare`, as `fnl plan
--forecast`), and the funnel's graph as a Mermaid flowchart (`engine.graph`). The first
line is a marker, so a workflow can edit its earlier comment instead of adding one.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

MARKER = "<!-- fnl-report -->"


def pr_report(base: str, paths: Sequence[str], leads: Optional[int] = None, runs: int = 5,
              progress: Optional[Callable[[int, int, int], None]] = None) -> str:
    from .. import diff as d
    from .. import graph
    from ..planning import plans_against_base
    from ..simulate.compare import for_plans, plan_section

    pairs = plans_against_base(base, tuple(paths) or ("funnels",))
    diffs = [d.diff(old, new) for old, new in pairs]
    forecasts = for_plans(pairs, leads=leads, runs=runs, progress=progress)
    changed = [x for x in diffs if x.changed]
    out = [MARKER, f"## fnl: what this change does (against `{base}`)", ""]
    if not changed:
        out += ["No definition's plan changes: leads get the same email at the same times.", ""]
    sections = []
    for (old, new), x, delta in zip(pairs, diffs, forecasts):
        if not x.changed:
            continue
        parts = [d.render_markdown(x).rstrip("\n")]
        if delta is not None:
            parts.append(plan_section(delta, "markdown").strip("\n"))
        if new.plan.stages:
            parts.append("<details><summary>The funnel after this change</summary>\n\n```mermaid\n"
                         + graph.mermaid(new.plan).rstrip("\n") + "\n```\n\n</details>")
        sections.append("\n\n".join(parts))
    out.append("\n\n---\n\n".join(sections))
    return "\n".join(out).rstrip("\n") + "\n"
