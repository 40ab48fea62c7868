"""Benchmark input: many single-file funnel definitions, each as big as the biggest example.

The base is the biggest clean definition under `funnels/` (a directory definition is
merged into one document first). Each generated file differs from the others (funnel
name, order of sequences, a few numbers), so no tool can win by caching one parse.
Until an example exists, a built-in synthetic definition of realistic size stands in.
"""
from __future__ import annotations

import shutil

import copy
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python3 bench/x.py`: the engine lives one level up
    sys.path.insert(0, str(REPO))

from engine.check import check_source  # noqa: E402
from engine.errors import FnlError  # noqa: E402
from engine.sources import discover  # noqa: E402


@dataclass(frozen=True)
class Base:
    """The definition every generated file is a variation of, and where it came from."""

    origin: str  # a path under funnels/, or "synthetic"
    data: Dict[str, Any]
    note: str = ""  # why the origin was chosen, when it is not the obvious one
    templates: Dict[str, str] = field(default_factory=dict)  # name -> text, when they exist nowhere yet


def base_definition(funnels: Path = REPO / "funnels") -> Base:
    """The biggest definition under `funnels/` that fnl accepts, else the synthetic one."""
    try:
        sources = discover((str(funnels),)) if funnels.is_dir() else []
    except FnlError:  # e.g. a directory with no YAML in it yet
        sources = []
    by_size = sorted(sources, key=lambda s: sum(f.stat().st_size for f in s.files), reverse=True)
    skipped: List[str] = []
    for source in by_size:
        checked = check_source(source)
        doc = checked.document
        if doc is not None and isinstance(doc.data, dict):
            data = dict(doc.data)
            data["templates"] = str(_template_dir(doc.data, Path(doc.locate(("templates",)).file),
                                                  source.files[0]))
            note = f"skipped {', '.join(skipped)}: not clean" if skipped else ""
            return Base(_from_repo(source.name), data, note)
        skipped.append(_from_repo(source.name))
    return synthetic_base(f"{', '.join(skipped)} not clean" if skipped else "no example under funnels/ yet")


def _from_repo(name: str) -> str:
    try:
        return Path(name).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return name


def _template_dir(data: Dict[str, Any], holder: Path, root: Path) -> Path:
    """The definition's template directory as an absolute path, so that copies written
    elsewhere under other funnel names still find the same templates. Same rule as fnl:
    `templates:` relative to the file that says it, else `templates/<funnel>` in the
    nearest enclosing directory that has a `templates/` folder."""
    if isinstance(data.get("templates"), str):
        return (holder.parent / data["templates"]).resolve()
    start = root.resolve().parent
    found = next((d for d in (start, *start.parents) if (d / "templates").is_dir()), start)
    return found / "templates" / str(data.get("funnel"))


def vary(data: Dict[str, Any], index: int, seed: int) -> Dict[str, Any]:
    """A deterministic variation of `data` that stays clean: a new funnel name, the
    sequences in another order, and some scores and priorities one point higher.

    Numbers only go up where that cannot create a finding: a higher event score or
    opt-in score only makes thresholds easier to reach, and priorities only order sends."""
    rng = random.Random(f"{seed}:{index}")
    out = copy.deepcopy(data)
    out["funnel"] = f"{str(out.get('funnel', 'bench'))[:50]}-{index:06d}"
    if isinstance(out.get("description"), str):
        out["description"] = f"{out['description']} (benchmark copy {index})"
    scoring: Dict[str, Any] = out["scoring"] if isinstance(out.get("scoring"), dict) else {}
    _bump(scoring.get("events"), rng, 1000)
    for rule in scoring["fit"] if isinstance(scoring.get("fit"), list) else []:
        _bump(rule, rng, 1000, ("points",))
    for name in ("lead_magnets", "sequences"):
        for entry in (out.get(name) or {}).values() if isinstance(out.get(name), dict) else []:
            _bump(entry, rng, 100 if name == "sequences" else 1000, ("priority", "score"))
    if isinstance(out.get("sequences"), dict):
        names = list(out["sequences"])
        rng.shuffle(names)
        out["sequences"] = {n: out["sequences"][n] for n in names}
    return out


def _bump(entries: Any, rng: random.Random, limit: int, keys: Optional[Tuple[str, ...]] = None) -> None:
    """Add 0 or 1 to positive integers below `limit` in a mapping (only `keys`, if given)."""
    if not isinstance(entries, dict):
        return
    for key, value in entries.items():
        if (keys is None or key in keys) and type(value) is int and 0 < value < limit:
            entries[key] = value + rng.randint(0, 1)


class _Dumper(yaml.SafeDumper):
    """`yaml.safe_dump` without anchors, and with quotes where fnl wants them.

    PyYAML writes `08:00` plain (its YAML 1.1 resolver needs a leading 1-9 for base 60),
    but fnl rejects every plain `NN:NN` as ambiguous, so number-like strings are quoted."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if value[:1] in "0123456789+-." else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(data: Any) -> str:
    """YAML text of `data` that fnl and other YAML readers read back as `data`."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_corpus(directory: Path, count: int, seed: int, base: Optional[Base] = None) -> List[Path]:
    """Write `count` varied definitions as YAML files into `directory`; return their paths.
    A base that brings its own templates gets them in `directory/templates`."""
    base = base or base_definition()
    data = base.data
    folder = directory / "templates"
    if base.templates:
        for name, text in base.templates.items():
            (folder / f"{name}.j2").parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.j2").write_text(text, encoding="utf-8")
        data = {**data, "templates": "templates"}
    elif isinstance(data.get("templates"), str) and Path(data["templates"]).is_dir():
        # fnl reads templates only inside the definition's own tree: copy them beside
        # the corpus, as a repository would hold them.
        shutil.copytree(data["templates"], folder, dirs_exist_ok=True)
        data = {**data, "templates": "templates"}
    paths = []
    for i in range(count):
        path = directory / f"funnel-{i:06d}.yaml"
        path.write_text(dump(vary(data, i, seed)), encoding="utf-8")
        paths.append(path)
    return paths


# -- the synthetic stand-in --------------------------------------------------------------
# Shaped like a mid-market B2B funnel: typed profile, personas, segments, fit, scoring
# with decay, stage transitions, a dozen 5-step sequences, handoff and policies. About
# 40 KB of YAML, which is what a real definition of that scope comes to.

_INDUSTRIES = ["saas", "manufacturing", "finance", "healthcare", "retail", "logistics", "education", "other"]
_ROLES = ["ic", "manager", "director", "vp", "cxo"]
_PERSONAS = ["executive", "practitioner", "buyer", "finance", "it"]
_KINDS = ["nurture"] * 6 + ["broadcast", "sales", "sales", "onboarding", "retention", "expansion"]
_TOPICS = ["industry-insight", "capability", "case-study", "roi-guide", "webinar-invite",
           "benchmark", "checklist", "customer-story", "pricing-explainer", "last-call"]
_MAGNETS = ["whitepaper", "ebook", "calculator", "webinar", "checklist", "template", "trial", "newsletter"]
# The attributes conditions use, typed so that every compared value is possible...
_USED: Dict[str, Dict[str, Any]] = {
    "first_name": {"type": "string", "required": True, "examples": ["Priya"]},
    "industry": {"enum": _INDUSTRIES, "required": True, "examples": ["saas", "finance"]},
    "employees": {"type": "integer", "minimum": 1, "maximum": 1000000, "examples": [12, 250, 4000]},
    "role": {"enum": _ROLES, "examples": ["vp", "ic"]},
    "region": {"enum": ["emea", "na", "latam", "apac"], "examples": ["emea"]},
    "department": {"enum": ["finance", "it", "security", "marketing", "sales", "operations"]},
    "timezone": {"type": "string", "format": "timezone", "examples": ["Europe/Berlin", "America/Chicago"]},
    "is_customer": {"type": "boolean", "examples": [False]},
}
# ...and the ones only templates and reports would use.
_OTHER = ["annual_revenue", "country", "vertical", "seats", "territory", "locale", "arr", "trial_active",
          "hq_country", "sub_region", "headcount_growth", "plan", "nps"]
_OTHER_TYPES: List[Dict[str, Any]] = [{"type": "number", "minimum": 0, "examples": [1.5, 20.25]},
                                      {"type": "string", "format": "country", "examples": ["DE", "US", "BR"]},
                                      {"type": "integer", "minimum": 0, "examples": [3, 40]},
                                      {"type": "boolean", "examples": [True]}]
_PROSE = ("It is filled from the opt-in form or from enrichment; the sales team reviews it every week, "
          "corrects it in the CRM, and the CRM syncs the corrected value back every night.")


def _profile() -> Dict[str, Any]:
    profile = {name: {**spec, "enum": list(spec["enum"])} if "enum" in spec else dict(spec)
               for name, spec in _USED.items()}
    profile.update({name: dict(_OTHER_TYPES[i % len(_OTHER_TYPES)]) for i, name in enumerate(_OTHER)})
    for name, attr in profile.items():
        attr["description"] = f"Lead attribute `{name}`. {_PROSE}"
    return profile


def _step(seq: int, kind: str, j: int) -> Dict[str, Any]:
    topic = _TOPICS[(seq + j) % len(_TOPICS)]
    wait = ["1h", "3d", "5d", "1w", "1w"][j]  # at most two sends in any week: under the cap of 3
    if j == 4 and kind == "sales":
        return {"id": f"s{j + 1}-handback", "wait": wait, "notify": {
            "to": "owner", "message": f"Lead finished sales track {seq} without replying; call or hand back."},
            "when": "fit and score >= thresholds.mql and not replied"}
    step: Dict[str, Any] = {"id": f"s{j + 1}-{topic}", "wait": wait, "send": f"{kind}/{topic}"}
    if j == 2:
        step["variants"] = {"short": 50, "long": 30, "story": 20}
    if j in (0, 1, 3):
        step["when"] = f"employees >= {50 * (seq + 1)} and role in ['director', 'vp', 'cxo'] and region != 'apac'"
    if j >= 2:
        step["unless"] = (f"clicked('{kind}/{_TOPICS[seq % len(_TOPICS)]}') or replied "
                          f"or score >= thresholds.sql or visited('pricing', since='mql')")
    return step


def _sequence(i: int) -> Dict[str, Any]:
    kind = _KINDS[i]
    seq: Dict[str, Any] = {
        "kind": kind,
        "description": (f"Track {i} ({kind}): teaches the problem first, then shows how customers like the "
                        f"reader solved it, then asks for a short call once the lead has shown real interest. "
                        f"Owned by the lifecycle team; copy is reviewed every quarter with sales, and the "
                        f"results of each A/B test decide which variant becomes the default next quarter."),
    }
    if kind == "sales":
        seq["on"] = "crm.demo_booked" if i % 2 else "crm.opportunity_opened"
    elif kind in ("onboarding", "retention", "expansion"):
        seq["stage"] = ["customer"]
    else:
        seq["stage"] = "subscriber" if i % 3 else ["subscriber", "mql"]
        seq["segment"] = _INDUSTRIES[i % len(_INDUSTRIES)]
    if i % 2 == 0:
        seq["persona"] = _PERSONAS[i % len(_PERSONAS)]
    seq["when"] = f"region in ['emea', 'na'] and employees >= {20 + i}"
    seq["steps"] = [_step(i, kind, j) for j in range(5)]
    seq["exit"] = {"stage_at_least": "sql" if kind in ("nurture", "broadcast") else "customer",
                   "when": f"score >= {100 + i} or replied", "on": ["email.replied", "crm.demo_booked"]}
    seq["priority"] = 10 + i
    return seq


_TEMPLATE = """{%% block subject %%}{{ lead.first_name }}, %(title)s{%% endblock %%}
{%% block preheader %%}Five minutes on %(title)s, with numbers from teams like yours.{%% endblock %%}
{%% block html -%%}
<p>Hi {{ lead.first_name }},</p>
<p>%(body)s</p>
<p><a href="https://acme.example/%(slug)s?utm_source=email">Read the full story</a></p>
<p style="font-size:12px">{{ sender.postal_address }}<br>
<a href="{{ unsubscribe_url }}">Unsubscribe</a> with one click, at any time.</p>
{%%- endblock %%}
{%% block text -%%}
Hi {{ lead.first_name }},

%(body)s

Read the full story: https://acme.example/%(slug)s?utm_source=email

{{ sender.postal_address }}
Unsubscribe: {{ unsubscribe_url }}
{%%- endblock %%}
"""


def synthetic_templates(data: Dict[str, Any]) -> Dict[str, str]:
    """A small, clean email template for every template the definition sends or delivers."""
    names = {step["send"] for seq in data["sequences"].values() for step in seq["steps"] if "send" in step}
    names |= {magnet["delivers"] for magnet in data["lead_magnets"].values()}
    body = ("Most teams we talk to spend the first hour of every week rebuilding the same report. "
            "Here is how three of them stopped, and what they did with the time.")
    return {name: _TEMPLATE % {"title": name.split("/")[-1].replace("-", " "), "body": body,
                               "slug": name.replace("/", "-")} for name in sorted(names)}


def synthetic_base(note: str) -> Base:
    data = synthetic_definition()
    return Base("synthetic", data, note, synthetic_templates(data))


def synthetic_definition() -> Dict[str, Any]:
    """A clean definition of realistic size, used until funnels/ has an example."""
    stages = ["subscriber", "mql", "sql", "opportunity", "customer", "disqualified"]
    sequences = {f"{_KINDS[i]}-track-{i:02d}": _sequence(i) for i in range(len(_KINDS))}
    sent = sorted({step["send"] for seq in sequences.values() for step in seq["steps"] if "send" in step})
    return {
        "fnl": 1,
        "funnel": "bench-synthetic",
        "description": "Synthetic B2B funnel of realistic size, used by the benchmarks until an example exists.",
        "templates": "templates",  # write_corpus points this at the templates it writes
        "sender": {"from": "Acme <hello@acme.example>", "reply_to": "sales@acme.example",
                   "postal_address": "1 Main St, Springfield, IL 62701, USA", "timezone": "America/Chicago",
                   "unsubscribe_url": "https://acme.example/unsubscribe"},
        "profile": _profile(),
        "personas": {
            "executive": {"when": "role in ['vp', 'cxo']", "description": "Signs the contract and owns the budget."},
            "practitioner": {"when": "role in ['ic', 'manager']", "description": "Uses the product every day."},
            "buyer": {"when": "role == 'director'", "description": "Runs the evaluation and the shortlist."},
            "finance": {"when": "department == 'finance'", "description": "Approves the spend."},
            "it": {"when": "department in ['it', 'security']", "description": "Reviews security and SSO."},
        },
        "segments": {s: {"when": f"industry == '{s}'",
                         "description": f"Companies in {s} with at least ten people; they get their own track."}
                     for s in _INDUSTRIES},
        "fit": {"when": "industry in ['saas', 'finance', 'healthcare'] and employees >= 50 and region != 'apac'",
                "description": "Mid-market and up in our three best industries."},
        "stages": stages,
        "terminal_stages": ["customer", "disqualified"],
        "lead_magnets": {
            f"{k}-{s}": {"kind": k, "title": f"The {k} for {s} teams", "consent": (
                "I agree to receive email from Acme about this offer and related products. "
                "I can unsubscribe at any time."), "enters": "subscriber", "score": 10 + n,
                "delivers": f"magnets/{k}", "segment": s}
            for n, (k, s) in enumerate(zip(_MAGNETS, _INDUSTRIES))
        },
        "crm": {"events": ["asset_downloaded", "renewal_due", "trial_started", "seat_limit_reached"]},
        "scoring": {
            "events": {"email.opened": 2, "email.clicked": 8, "email.replied": 25, "site.visited": 5,
                       "site.visited.pricing": 20, "site.visited.docs": 6, "magnet.downloaded": 10,
                       "webinar.registered": 10, "webinar.attended": 25, "crm.demo_booked": 40,
                       "email.unsubscribed": -50, "email.bounced": -20,
                       **{f"site.visited.{page}": 4 + n for n, page in enumerate(
                           ["features", "integrations", "security", "customers", "blog", "careers", "partners"])},
                       **{f"email.clicked.{name}": 3 + n % 10 for n, name in enumerate(sent)}},
            "fit": [{"when": f"employees >= {50 * 2 ** n} and industry != 'other'", "points": 5 * (n + 1),
                     "description": f"Company size band {n}."} for n in range(8)],
            "decay": {"half_life": "30d", "window": "180d"},
            "thresholds": {"mql": 40, "sql": 80, "hot": 150},
        },
        "transitions": [
            {"from": "subscriber", "to": "mql", "when": "fit and score >= thresholds.mql",
             "description": "Fit leads with enough engagement."},
            {"from": ["subscriber", "mql"], "to": "sql", "on": "crm.demo_booked"},
            {"from": "mql", "to": "sql", "when": "score >= thresholds.sql and replied or score >= thresholds.hot"},
            {"from": "sql", "to": "opportunity", "on": "crm.opportunity_opened"},
            {"from": "opportunity", "to": "customer", "on": "crm.deal_won"},
            {"from": ["subscriber", "mql", "sql"], "to": "disqualified",
             "when": "not fit and days_since('optin') > 180"},
        ],
        "sequences": sequences,
        "handoff": {
            "sql": {"assign": {"territory": {"by": "region", "routes": {
                "emea": ["eva@acme.example", "emil@acme.example"], "na": ["ana@acme.example", "ben@acme.example"]},
                "default": ["ana@acme.example"]}}, "sla": "1d", "notify": ["crm", "owner", "slack"],
                "suppress": ["nurture", "broadcast"], "description": "SDRs call within four hours."},
            "opportunity": {"assign": {"owner": "sales-lead@acme.example"}, "sla": "1d", "suppress": ["nurture"]},
        },
        "policies": {"frequency_cap": {"max": 3, "per": "7d", "applies_to": ["nurture", "broadcast"]},
                     "quiet_hours": {"from": "20:00", "to": "08:00"}, "timezone_attribute": "timezone"},
    }
