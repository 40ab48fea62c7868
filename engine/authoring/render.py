"""`fnl render`: what a lead will actually receive.

One template for one lead (`preview`): the lead's profile from a JSON file, or a
synthetic lead of a persona and/or segment (`synthetic_lead`: the first profile, from
the attributes' own values and the numbers the conditions compare them with, that the
funnel's own conditions put in that persona and segment). Every A/B variant the funnel
sends the template with is rendered. Rendering is the engine's: the same sandbox, the
same strict undefined names, the same worker with its memory and time limits
(`engine.templates.render`); the variables are the ones the email gets when it is sent
(`templates.sample_context` for the email's kind: an owner for sales and post-sale
email, the lead magnet for a delivery).

Every email of the funnel (`gallery`): one self-contained HTML page, in sequence order,
for a synthetic lead of each segment and persona the sequences address, each variant
side by side. The page loads nothing: every email sits in a sandboxed frame of its own
(no scripts), its remote images and style sheets are replaced by a placeholder before it
is embedded, and a Content-Security-Policy forbids any fetch that would be left.
"""
from __future__ import annotations

import difflib
import html
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import core
from .. import templates
from ..errors import Location, Problem, ProblemsFound, UsageError
from ..model import Funnel
from ..plan import Plan
from ..state import LeadState

MAX_LEAD_BYTES = 1 << 20  # a lead file is one lead's profile
MAX_SEARCH = 20_000  # profiles tried for a synthetic lead


@dataclass(frozen=True)
class Email:
    """One template rendered for one lead and variant."""

    template: str
    variant: Optional[str]
    kind: str  # the sequence kind it is sent as (or `delivery`)
    rendered: templates.Rendered


# -- the lead -------------------------------------------------------------------------------

def lead_from_file(path: str, plan: Plan) -> Dict[str, Any]:
    """A lead's profile from a JSON object, checked as the engine checks an opt-in's."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LEAD_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--lead {path}: cannot read: {exc.strerror or exc}",
                         "give a JSON file with the lead's profile, such as {\"first_name\": \"Ana\"}") from None
    if len(data) > MAX_LEAD_BYTES:
        raise UsageError(f"--lead {path}: larger than {MAX_LEAD_BYTES // 1024} KB",
                         "a lead file holds one lead's profile attributes")
    try:
        profile = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"--lead {path}: not UTF-8 text", "save the file as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--lead {path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}",
                         "write one JSON object, such as {\"first_name\": \"Ana\", \"industry\": \"saas\"}") from None
    if not isinstance(profile, dict):
        raise UsageError(f"--lead {path}: a JSON {type(profile).__name__}, not an object",
                         "write one JSON object of profile attributes, such as {\"first_name\": \"Ana\"}")
    profile.pop("email", None)
    problem = core.validate_profile(plan, profile)
    if problem:
        names = ", ".join(a.name for a in plan.profile)
        raise UsageError(f"--lead {path}: {problem}", f"the funnel's profile attributes are: {names}")
    return profile


def _groups(plan: Plan, profile: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """(segment, persona) of a profile, by the engine's own conditions (`core.groups`)."""
    state = LeadState(lead="", profile=tuple(sorted(profile.items())), stage="", entered=(), score=0.0, score_at=0,
                      consent="", consent_at=0, source="")
    return core.groups(plan, state)


def _literals(plan: Plan) -> Dict[str, List[Any]]:
    """Per attribute, the values the group conditions compare it with."""
    out: Dict[str, List[Any]] = {}
    trees = [g.when.tree for g in plan.segments + plan.personas] + ([plan.fit.tree] if plan.fit else [])
    stack = list(trees)
    while stack:
        node = stack.pop()
        args = node.get("args", [])
        if node.get("op") and len(args) == 2:
            for mine, other in ((args[0], args[1]), (args[1], args[0])):
                if "attr" in mine:
                    if "lit" in other:
                        out.setdefault(mine["attr"], []).append(other["lit"])
                    for item in other.get("list", []):
                        if "lit" in item:
                            out.setdefault(mine["attr"], []).append(item["lit"])
        stack.extend(args)
        stack.extend(node.get("list", []))
    return out


def _candidates(attribute: Any, literals: List[Any]) -> List[Any]:
    """Values to try for an attribute: its own sample first, its enum, the values the
    conditions name (and a step either side of a number), and missing if optional."""
    out: List[Any] = [templates.sample_value(attribute)]
    out += list(attribute.enum or ())
    for lit in literals:
        if isinstance(lit, bool):
            out.append(lit)
        elif isinstance(lit, (int, float)) and attribute.type in ("integer", "number"):
            step = 1 if attribute.type == "integer" else 0.5
            out += [lit, lit - step, lit + step] if attribute.type == "number" else [int(lit), int(lit) - 1,
                                                                                     int(lit) + 1]
        elif isinstance(lit, str) and attribute.type == "string":
            out.append(lit)
    if attribute.type == "boolean":
        out += [True, False]
    if not attribute.required:
        out.append(None)
    unique: List[Any] = []
    for value in out:
        if value not in unique or (value is not None and type(value) is not type(unique[unique.index(value)])):
            unique.append(value)
    return unique


def synthetic_lead(funnel: Funnel, plan: Plan, segment: Optional[str] = None,
                   persona: Optional[str] = None) -> Dict[str, Any]:
    """A profile the funnel puts in `segment` and `persona` (either may be None: any),
    as the engine evaluates them; a UsageError naming what no profile reaches."""
    for what, name, found in (("segment", segment, plan.segments), ("persona", persona, plan.personas)):
        if name is not None and name not in {g.name for g in found}:
            known = ", ".join(g.name for g in found) or "none"
            raise UsageError(f"--{what} {name}: no such {what} in {plan.funnel} (its {what}s: {known})",
                             f"name one of the funnel's {what}s")
    literals = _literals(plan)
    attributes = list(funnel.profile)
    choices = [_candidates(a, literals.get(a.name, [])) for a in attributes]
    for n, values in enumerate(itertools.product(*choices)):
        if n >= MAX_SEARCH:
            break
        profile = {a.name: v for a, v in zip(attributes, values) if v is not None}
        if core.validate_profile(plan, profile) is not None:
            continue
        got = _groups(plan, profile)
        if (segment is None or got[0] == segment) and (persona is None or got[1] == persona):
            return profile
    wanted = " and ".join(f"{w} {n}" for w, n in (("segment", segment), ("persona", persona)) if n)
    raise UsageError(f"no profile of {plan.funnel}'s attributes is in {wanted} (tried the attributes' own values and "
                     "the values its conditions name)",
                     "give the lead with --lead FILE, a JSON object of its profile attributes")


# -- rendering ----------------------------------------------------------------------------------

def _sent_as(plan: Plan, name: str) -> Tuple[str, Tuple[Optional[str], ...]]:
    """The kind the template is sent as (its first sequence's, or `delivery`) and its variants."""
    for seq in plan.sequences:
        for step in seq.steps:
            if step.template == name:
                return seq.kind, tuple(v.name for v in step.variants) or (None,)
    if any(m.delivers == name for m in plan.lead_magnets):
        return "delivery", (None,)
    return "nurture", (None,)


def _render(funnel: Funnel, plan: Plan, name: str, profile: Dict[str, Any], kind: str,
            variant: Optional[str]) -> templates.Rendered:
    context = templates.sample_context(funnel, variant, kind, funnel.sender.unsubscribe_url or "", profile)
    try:
        return templates.render(funnel.template_dir, name, context)
    except templates.RenderFailure as exc:
        path = funnel.template_dir / f"{name}{templates.SUFFIX}"
        which = f" (variant {variant})" if variant else ""
        problem = Problem("FNL224", f"`{name}`{which} fails to render for this lead: {exc.message}",
                          Location(str(path), exc.line, exc.column),
                          help="fix the expression on this line; templates render in a sandbox")
        raise ProblemsFound((problem,)) from None


def preview(funnel: Funnel, plan: Plan, name: str, profile: Dict[str, Any],
            variant: Optional[str] = None) -> List[Email]:
    """The template for this lead, in each variant the funnel sends it with (or `variant`)."""
    known = [t.name for t in plan.templates]
    if name not in known:
        close = difflib.get_close_matches(name, known, 1)
        raise UsageError(f"{name}: no such template in {plan.funnel}",
                         f"did you mean `{close[0]}`?" if close else f"its templates: {', '.join(known[:12])}"
                         + (", …" if len(known) > 12 else ""))
    kind, variants = _sent_as(plan, name)
    if variant is not None:
        if variant not in variants:
            raise UsageError(f"--variant {variant}: {name} is sent in {', '.join(str(v) for v in variants if v)}"
                             if any(variants) else f"--variant {variant}: {name} has no A/B variants",
                             "leave --variant out to render every variant")
        variants = (variant,)
    with templates.render_session():
        return [Email(name, v, kind, _render(funnel, plan, name, profile, kind, v)) for v in variants]


def audience_note(plan: Plan, name: str, profile: Dict[str, Any]) -> Optional[str]:
    """Why this lead would never get the template, when its segment or persona is not one
    of those its sequences address; None when it can."""
    segment, persona = _groups(plan, profile)
    sending = [seq for seq in plan.sequences if any(step.template == name for step in seq.steps)]
    if not sending or any((seq.segment is None or seq.segment == segment) and
                          (seq.persona is None or seq.persona == persona) for seq in sending):
        return None
    who = ", ".join(f"{seq.name} (" + " and ".join(x for x in (seq.segment and f"segment {seq.segment}",
                                                              seq.persona and f"persona {seq.persona}") if x) + ")"
                    for seq in sending)
    this = " and ".join(x for x in (f"segment {segment or 'none'}" if plan.segments else "",
                                    f"persona {persona or 'none'}" if plan.personas else "") if x)
    return f"a lead in {this} never gets {name}: it is sent by {who}"


def text_of(emails: Sequence[Email]) -> str:
    """What a terminal shows: per variant, the subject, preheader and text part."""
    out = []
    for e in emails:
        head = f"── {e.template}" + (f", variant {e.variant}" if e.variant else "") + f" ({e.kind}) "
        out.append(head + "─" * max(3, 72 - len(head)))
        out.append(f"Subject: {e.rendered.subject}")
        if e.rendered.preheader:
            out.append(f"Preheader: {e.rendered.preheader}")
        out.append("")
        out.append(e.rendered.text.rstrip("\n"))
        out.append("")
    return "\n".join(out)


def html_files(emails: Sequence[Email], output: Optional[str]) -> List[Tuple[Path, str]]:
    """Where each variant's HTML part goes: into `output` when it is a folder (it exists,
    or ends with `/`), as `output` itself for one email or `output` with the variant
    before its suffix for several (`x.a.html`); without `output`, `<template>.html`
    (`.<variant>.html`) in the working directory."""
    base = emails[0].template.replace("/", "-")
    folder: Optional[Path] = None
    if not output:
        folder = Path(".")
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        folder = Path(output)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot make the directory: {exc.strerror or exc}",
                             "name a directory you can write to") from None
    files = []
    for e in emails:
        if folder is not None:
            path = folder / (f"{base}.{e.variant}.html" if e.variant else f"{base}.html")
        elif len(emails) == 1:
            path = Path(output or "")
        else:
            target = Path(output or "")
            path = target.with_name(f"{target.stem}.{e.variant}{target.suffix or '.html'}")
        files.append((path, e.rendered.html))
    return files


# -- the gallery -----------------------------------------------------------------------------------

_URL_ATTR = re.compile(r"""\b(src|srcset|background|poster|data)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.I)
_REMOTE = re.compile(r"(^|[\s,])(https?:)?//", re.I)
_REMOTE_URL = re.compile(r"""url\(\s*(["']?)\s*(https?:)?//[^)]*\)""", re.I)
_DROPPED = re.compile(r"<(script|link|meta|base|object|embed|iframe)\b[^>]*>(.*?</\1\s*>)?", re.I | re.S)
_PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-src 'self' about: data:; "
        "font-src data:; media-src data:")


def offline(email_html: str) -> str:
    """An email's HTML with nothing it would fetch: remote images and backgrounds become
    a blank placeholder, remote style URLs empty, scripts, links to style sheets, meta
    refreshes and embedded objects dropped. Links (`<a href>`) stay: nothing is fetched
    until someone clicks."""
    text = _DROPPED.sub("", email_html)
    text = _URL_ATTR.sub(lambda m: f'{m.group(1)}="{_PLACEHOLDER}"' if _REMOTE.search(m.group(2).strip("\"'"))
                         else m.group(0), text)
    return _REMOTE_URL.sub("url()", text)


def _audiences(plan: Plan) -> List[Tuple[Optional[str], Optional[str]]]:
    segments: List[Optional[str]] = [g.name for g in plan.segments] or [None]
    personas: List[Optional[str]] = [g.name for g in plan.personas] or [None]
    return list(itertools.product(segments, personas))


def gallery(funnel: Funnel, plan: Plan) -> str:
    """One self-contained page: every email of the funnel, in sequence order, for a lead
    of each segment and persona, variants side by side."""
    sections = []
    nav = []
    for segment, persona in _audiences(plan):
        try:
            profile = synthetic_lead(funnel, plan, segment, persona)
        except UsageError:
            continue  # no profile reaches this pair of groups: nobody gets these emails
        label = " · ".join(x for x in (segment and f"segment {segment}", persona and f"persona {persona}") if x) \
            or "every lead"
        anchor = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        nav.append(f'<li><a href="#{anchor}">{html.escape(label)}</a></li>')
        parts = [f'<section id="{anchor}"><h2>{html.escape(label)}</h2>',
                 f'<p class="lead">Lead: <code>{html.escape(json.dumps(profile, sort_keys=True))}</code></p>']
        blocks: List[Tuple[str, str, List[Tuple[str, Tuple[Optional[str], ...]]]]] = []
        for magnet in plan.lead_magnets:
            if magnet.delivers:
                blocks.append((f"Lead magnet {magnet.name}", "delivery", [(magnet.delivers, (None,))]))
        for seq in plan.sequences:
            if (seq.segment is not None and seq.segment != segment) or \
                    (seq.persona is not None and seq.persona != persona):
                continue
            steps: List[Tuple[str, Tuple[Optional[str], ...]]] = [
                (s.template, tuple(v.name for v in s.variants) or (None,)) for s in seq.steps
                if s.action == "send" and s.template]
            if steps:
                blocks.append((f"Sequence {seq.name}", seq.kind, steps))
        for title, kind, steps in blocks:
            parts.append(f"<h3>{html.escape(title)} <small>({html.escape(kind)})</small></h3>")
            for number, (name, variants) in enumerate(steps, 1):
                cards = []
                for variant in variants:
                    r = _render(funnel, plan, name, profile, kind, variant)
                    cards.append(
                        '<div class="card">'
                        f'<div class="meta">{html.escape(name)}'
                        f'{" · variant " + html.escape(variant) if variant else ""}</div>'
                        f'<div class="subject">{html.escape(r.subject)}</div>'
                        + (f'<div class="pre">{html.escape(r.preheader)}</div>' if r.preheader else "")
                        + f'<iframe sandbox="" title="{html.escape(name)}" '
                        f'srcdoc="{html.escape(offline(r.html), quote=True)}"></iframe>'
                        f'<details><summary>Text part</summary><pre>{html.escape(r.text)}</pre></details></div>')
                parts.append(f'<div class="step"><div class="n">{number}</div><div class="row">{"".join(cards)}</div>'
                             "</div>")
        parts.append("</section>")
        sections.append("".join(parts))
    title = f"{plan.funnel}: every email"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><nav><ul>{''.join(nav)}</ul></nav>{''.join(sections)}</body></html>\n")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#f6f7f9}
h1{font-size:22px}h2{margin-top:40px;border-bottom:1px solid #ccd;padding-bottom:4px}h3{margin:24px 0 8px}
nav ul{display:flex;flex-wrap:wrap;gap:8px;list-style:none;padding:0}nav a{padding:2px 8px;background:#e6e9ef;
border-radius:4px;text-decoration:none;color:inherit}.lead code{font-size:12px}
.step{display:flex;gap:12px;margin:8px 0}.n{font-weight:bold;width:24px;padding-top:6px}
.row{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #d7dbe2;border-radius:6px;
padding:8px;width:420px}.meta{font-size:12px;color:#57606a}.subject{font-weight:600;margin:4px 0}
.pre{font-size:12px;color:#57606a}iframe{width:100%;height:320px;border:1px solid #eee;background:#fff}
pre{white-space:pre-wrap;font-size:12px}
"""
