"""A template file that nothing sends.

Every `.j2` email in the template directory should be sent by some step or delivered
by some lead magnet; an unused one is usually a step that was renamed or removed.
Partials (files or folders starting with `_`) are not emails and are not checked.

Fails:
    templates/acme/saas/old-teaser.j2 exists, and no `send:` names saas/old-teaser

Passes:
    every template is named by a `send:` or a lead magnet's `delivers:`
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import Location
from ...sources import display_path
from .. import Finding
from ..context import Context

ID = "FNL209"
NAME = "unused-template"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    used = {name for name, _path, _purpose in ctx.sends}
    for name in ctx.template_names:
        if name not in used:
            path = Path(ctx.funnel.template_dir) / f"{name}.j2"
            yield Finding(("templates",), f"template `{name}` is never sent",
                          "send it from a sequence step, or delete the file",
                          location=Location(display_path(path), 1, 1))
