"""Steps after an unconditional `exit: true` can never run.

Fails:
    steps:
      - {send: a}
      - {exit: true}
      - {wait: 2d, send: b}          # never sent

Passes:
    steps:
      - {send: a}
      - {exit: true, when: "replied"}
      - {wait: 2d, send: b}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL307"
NAME = "step-after-exit"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        for step in seq.steps:
            if step.exit and step.when is None and step.unless is None and step.index < len(seq.steps) - 1:
                dead = len(seq.steps) - step.index - 1
                yield Finding(seq.steps[step.index + 1].path,
                              f"{dead} step{'s' if dead > 1 else ''} after an unconditional exit can never run",
                              "remove them, or give the exit a `when:`")
