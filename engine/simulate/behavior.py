"""The behaviour model: how synthetic leads act when `fnl simulate` forecasts a funnel.

A funnel definition says what fnl does; a behaviour model says what leads, sales reps and
the CRM do in return: how many leads arrive through each lead magnet and when, the mix of
their profile attributes, how often they open, click, reply, unsubscribe and bounce, how
often they visit the website, when in their day all this happens, and how sales and the
CRM answer a handoff. It is its own YAML file (`schemas/behavior.schema.json`), read by the
same strict loader as definitions, checked by the same located schema messages, and then
against the compiled plan: every segment, persona, template, stage, lead magnet,
attribute, value, CRM event and rep it names must be the funnel's.

Where it lives (`find_behavior`): beside a single-file funnel `funnels/x.yaml` as
`funnels/x.behavior.yaml`; in a split funnel's folder `funnels/acme/` as
`funnels/acme/acme.behavior.yaml`, or as the one `*.behavior.yaml` in that folder.
Definition discovery skips these files, so one inside a split funnel is never merged.

Without a file, `DEFAULTS.behavior(plan)` gives a model from documented assumptions,
and `Behavior.assumptions` lists, in words, everything fnl assumed (also the parts a
file leaves out), for the report to print.

Email rates fall back from the most specific level to the least, rate by rate:
template variant > template > persona > segment > attribute value > default. Per email
the draws go: bounce; if delivered, unsubscribe; if not unsubscribed, open; if opened,
click and reply, independently.

Limits, beyond the loader's (1 MiB, 64 levels, 100,000 values): at most 10,000,000
expected leads in all, a horizon from 1d to 3650d, durations and delays up to 3650d,
1,000 arrivals, 1,000 values weighed per attribute, 100 CRM reactions of at most 20
outcomes, 100 pages, 10,000 leads a week per rep.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..codes import CODES as ALL_CODES
from ..errors import JsonPath, Location, Problem, ProblemsFound, UsageError
from ..load import Document, inside, load_file
from ..plan import Plan
from ..sources import BEHAVIOUR_SUFFIXES, ROOT_FILE, display_path
from ..units import format_duration, parse_clock, parse_duration
from .. import validate

FORMAT_VERSION = 1
SCHEMA_NAME = "behavior"
SUFFIXES: Tuple[str, ...] = BEHAVIOUR_SUFFIXES

MAX_LEADS = 10_000_000
MIN_HORIZON = 1440
MAX_HORIZON = 3650 * 1440
MAX_DURATION = 3650 * 1440
MAX_LISTED = 100_000  # folder entries looked at when searching for a behaviour model
DAY = 1440
RATE_NAMES = ("open", "click", "reply", "unsubscribe", "bounce")

# Problem codes of behaviour models (loading and the schema use the FNL0xx and FNL1xx codes).
CODES: Dict[str, str] = {code: ALL_CODES[code] for code in ("FNL801", "FNL802", "FNL803", "FNL804", "FNL805")}

# Loader messages speak of definitions; a behaviour model reads better in its own words.
_LOADER_HELP = {
    "FNL004": "add a behaviour model (start with `behavior: 1`) or delete the file",
    "FNL005": "a behaviour model needs far less; remove what fnl's defaults already assume",
    "FNL014": "flatten the structure; behaviour models never nest this deep or hold this many values",
}


# -- the model --------------------------------------------------------------------------

@dataclass(frozen=True)
class Delay:
    """A delay in minutes: `fixed` (always `low`), `uniform` (from `low` to `high`), or
    `exponential` (mean `mean`, cut off at `high` when given)."""

    kind: str
    low: int
    high: Optional[int]
    mean: Optional[int]

    @property
    def longest(self) -> Optional[int]:
        """The longest this delay can be; None for an exponential delay without a cut-off."""
        if self.kind == "fixed":
            return self.low
        if self.kind == "exponential" and self.mean == 0:
            return 0
        return self.high

    def describe(self) -> str:
        if self.kind == "fixed":
            return format_duration(self.low)
        if self.kind == "uniform":
            return f"{format_duration(self.low)} to {format_duration(self.high or 0)}"
        cap = f", at most {format_duration(self.high)}" if self.high is not None else ""
        return f"mean {format_duration(self.mean or 0)}{cap}"


@dataclass(frozen=True)
class Hours:
    """A window of the day in the lead's timezone, in minutes after midnight: `start`
    included, `end` (1 to 1440) not; `start > end` wraps past midnight."""

    start: int
    end: int

    def contains(self, minute_of_day: int) -> bool:
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end

    @property
    def minutes(self) -> int:
        return (self.end - self.start) % DAY or DAY


@dataclass(frozen=True)
class Timing:
    """When in the day leads act. `day` is `spread` (within `hours`, after the delays) or
    `same_minute` (a lead's whole day at minute `at`, in the order opt-in, due emails and
    their engagement, visit; stage changes follow)."""

    day: str
    at: int
    hours: Hours
    open_delay: Delay
    click_delay: Delay
    reply_delay: Delay

    @property
    def same_minute(self) -> bool:
        return self.day == "same_minute"


@dataclass(frozen=True)
class AttributeMix:
    """How one profile attribute is drawn: `choice` among `values` (each with its share,
    the shares adding up to 1), `uniform` or `log_uniform` from `low` to `high` (whole
    numbers when `integer`), or `synthetic` (a made-up text per lead). `missing` is the
    share of leads without the attribute."""

    name: str
    kind: str
    values: Tuple[Tuple[Any, float], ...]
    low: Optional[float]
    high: Optional[float]
    integer: bool
    missing: float
    path: JsonPath


@dataclass(frozen=True)
class Confirm:
    """How the opt-ins of a lead magnet with double opt-in confirm: the share that do,
    and how long after the confirmation email."""

    rate: float
    delay: Delay


@dataclass(frozen=True)
class Arrival:
    """Leads coming in through one lead magnet (`kind` magnet) or entry (`kind` entry):
    `leads` spread uniformly, or `per_day` on average (Poisson), from minute `start`
    (included) to `end` (not) of the simulation. `profile` replaces the file-wide mix for
    the attributes it names."""

    source: str
    kind: str
    leads: Optional[int]
    per_day: Optional[float]
    start: int
    end: int
    profile: Tuple[AttributeMix, ...]
    path: JsonPath
    confirm: Optional[Confirm] = None  # a lead magnet with double opt-in only

    @property
    def expected_leads(self) -> float:
        if self.leads is not None:
            return float(self.leads)
        return (self.per_day or 0.0) * (self.end - self.start) / DAY


@dataclass(frozen=True)
class Rates:
    """Email probabilities set at one level; None where the level leaves a rate to the next."""

    open: Optional[float] = None
    click: Optional[float] = None
    reply: Optional[float] = None
    unsubscribe: Optional[float] = None
    bounce: Optional[float] = None
    path: JsonPath = ()

    def get(self, name: str) -> Optional[float]:
        value = getattr(self, name)
        return None if value is None else float(value)


@dataclass(frozen=True)
class EmailRates:
    """Every probability for one email to one lead. `click` and `reply` are given an open;
    `open` is given delivered and not unsubscribed."""

    open: float
    click: float
    reply: float
    unsubscribe: float
    bounce: float


@dataclass(frozen=True)
class TemplateRates:
    template: str
    rates: Rates
    variants: Tuple[Tuple[str, Rates], ...]


@dataclass(frozen=True)
class AttributeRates:
    attribute: str
    values: Tuple[Tuple[Any, Rates], ...]


@dataclass(frozen=True)
class EmailModel:
    """Email rates with their fallbacks (template variant > template > persona > segment >
    attribute value > default, rate by rate)."""

    default: EmailRates
    by_attribute: Tuple[AttributeRates, ...]
    by_segment: Tuple[Tuple[str, Rates], ...]
    by_persona: Tuple[Tuple[str, Rates], ...]
    by_template: Tuple[TemplateRates, ...]

    def layers(self, template: Optional[str] = None, *, variant: Optional[str] = None,
               persona: Optional[str] = None, segment: Optional[str] = None,
               profile: Optional[Mapping[str, Any]] = None) -> Tuple[Rates, ...]:
        """The levels that apply to one email to one lead, most specific first."""
        out: List[Rates] = []
        t = next((t for t in self.by_template if t.template == template), None)
        if t is not None:
            v = dict(t.variants).get(variant or "")
            if v is not None:
                out.append(v)
            out.append(t.rates)
        for name, group in ((persona, self.by_persona), (segment, self.by_segment)):
            found = dict(group).get(name or "")
            if found is not None:
                out.append(found)
        for attr in self.by_attribute:
            if profile is not None and attr.attribute in profile:
                value = profile[attr.attribute]
                match = next((r for v, r in attr.values if v == value and type(v) is type(value)), None)
                if match is not None:
                    out.append(match)
        return tuple(out)

    def rates_for(self, template: Optional[str] = None, *, variant: Optional[str] = None,
                  persona: Optional[str] = None, segment: Optional[str] = None,
                  profile: Optional[Mapping[str, Any]] = None) -> EmailRates:
        """The resolved rates for one email (`template`, A/B `variant`) to one lead."""
        layers = self.layers(template, variant=variant, persona=persona, segment=segment, profile=profile)

        def pick(name: str) -> float:
            return next((v for v in (layer.get(name) for layer in layers) if v is not None),
                        getattr(self.default, name))

        return EmailRates(**{name: pick(name) for name in RATE_NAMES})


@dataclass(frozen=True)
class Visits:
    """Website visits, drawn once a day per lead in `stages` that has not unsubscribed:
    probability `daily`, or `after_click_daily` on the day of a click and the
    `after_click_minutes` after it (in days: 7d is the click's day and six more). A visit
    is to page `p` with its share in `pages`; the rest are visits to other pages."""

    daily: float
    after_click_daily: float
    after_click_minutes: int
    pages: Tuple[Tuple[str, float], ...]
    stages: Tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """A CRM event (`crm.<event>`) that follows a trigger with a probability, after a delay."""

    event: str
    probability: float
    delay: Delay
    path: JsonPath


@dataclass(frozen=True)
class Reaction:
    """What follows a lead entering `after_stage`, or a CRM event `after_event`: at most
    one of `outcomes` (their probabilities add up to at most 1; the rest: nothing). An
    outcome of a stage is dropped if the lead has left the stage before it happens; an
    outcome of a CRM event always happens."""

    name: str
    after_stage: Optional[str]
    after_event: Optional[str]
    outcomes: Tuple[Outcome, ...]
    description: str
    path: JsonPath


@dataclass(frozen=True)
class Capacity:
    """Handed-off leads each rep can take a week: `reps` lists every rep of the funnel's
    handoffs that has a capacity (from `reps:` or the file-wide `leads_per_week`)."""

    leads_per_week: Optional[float]
    reps: Tuple[Tuple[str, float], ...]

    def for_rep(self, rep: str) -> Optional[float]:
        return dict(self.reps).get(rep, self.leads_per_week)


@dataclass(frozen=True)
class Behavior:
    """A checked behaviour model for one plan, every part resolved (defaults filled in and
    listed in `assumptions`)."""

    funnel: str
    source: Optional[str]  # the file it was read from; None for fnl's defaults
    description: str
    horizon_minutes: int
    arrivals: Tuple[Arrival, ...]
    profile: Tuple[AttributeMix, ...]  # one per attribute of the funnel's profile, in its order
    email: EmailModel
    visits: Visits
    timing: Timing
    crm: Tuple[Reaction, ...]
    capacity: Optional[Capacity]
    assumptions: Tuple[str, ...]

    @property
    def expected_leads(self) -> float:
        return sum(a.expected_leads for a in self.arrivals)

    def attribute(self, name: str, arrival: Optional[Arrival] = None) -> Optional[AttributeMix]:
        """How `name` is drawn, for the leads of `arrival` when given."""
        if arrival is not None:
            own = next((m for m in arrival.profile if m.name == name), None)
            if own is not None:
                return own
        return next((m for m in self.profile if m.name == name), None)


# -- defaults ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Defaults:
    """What fnl assumes where no behaviour model says otherwise: typical B2B email figures
    (opens are given delivery, clicks and replies are given an open)."""

    horizon: str = "90d"
    leads: int = 1000
    arrival_window: str = "30d"
    open: float = 0.25
    click: float = 0.12
    reply: float = 0.01
    unsubscribe: float = 0.003
    bounce: float = 0.005
    visit_daily: float = 0.02
    visit_after_click: float = 0.10
    visit_after_click_for: str = "7d"
    page_share: float = 0.10  # each page the funnel names; all of them together at most `pages_total`
    pages_total: float = 0.50
    hours: Tuple[str, str] = ("08:00", "18:00")
    at: str = "09:00"
    open_delay: Tuple[str, str] = ("4h", "3d")  # mean, longest
    click_delay: Tuple[str, str] = ("2m", "1h")
    reply_delay: Tuple[str, str] = ("3h", "2d")
    confirm_rate: float = 0.7  # double opt-in: the share of opt-ins confirmed
    confirm_delay: Tuple[str, str] = ("1h", "2d")
    number_high: int = 1000  # the top of a number attribute's range when the funnel gives no maximum

    def behavior(self, plan: Plan) -> Behavior:
        """A behaviour model for any plan from these assumptions alone."""
        return _Build(Document({"behavior": FORMAT_VERSION}, ("<defaults>",)), plan, None, self).build()

    def assumptions(self, plan: Plan) -> Tuple[str, ...]:
        """The lines the report prints when there is no behaviour file."""
        return self.behavior(plan).assumptions


DEFAULTS = Defaults()


def default_behavior(plan: Plan) -> Behavior:
    return DEFAULTS.behavior(plan)


# -- finding and loading ----------------------------------------------------------------

def is_behavior_file(path: Union[str, Path]) -> bool:
    return Path(path).name.endswith(SUFFIXES)


def find_behavior(funnel_path: Union[str, Path]) -> Optional[Path]:
    """The behaviour model beside a funnel, or None. For `funnels/x.yaml` it is
    `funnels/x.behavior.yaml` (or `.yml`); for a split funnel `funnels/acme/` (or its
    `funnel.yaml`) it is `funnels/acme/acme.behavior.yaml`, else the one `*.behavior.yaml`
    directly in that folder. Two candidates, or a link that leads out of the funnel's
    folder, raise ProblemsFound naming them."""
    return find_beside(funnel_path, SUFFIXES, "FNL805", "behaviour model", "--behavior")


def find_beside(funnel_path: Union[str, Path], suffixes: Tuple[str, ...], code: str, what: str,
                option: str) -> Optional[Path]:
    """The file of a kind (`suffixes`, such as `.behavior.yaml`) beside a funnel, or None:
    `funnels/x<suffix>` for `funnels/x.yaml`; `funnels/acme/acme<suffix>` for a split
    funnel, else the one `*<suffix>` directly in its folder. Two candidates, or a link out
    of the funnel's folder, raise ProblemsFound with `code`, calling the file `what` and
    pointing at `option`."""
    path = Path(funnel_path)
    if path.is_file() and path.name == ROOT_FILE:
        path = path.parent
    if path.is_dir():
        folder = path
        name = Path(os.path.abspath(path)).name
        found = _existing(folder / f"{name}{s}" for s in suffixes)
        if not found:
            found = _existing(folder / entry for entry in _listing(folder) if entry.endswith(suffixes))
    elif path.is_file():
        folder = path.parent
        stem = next((path.name[:-len(s)] for s in (".yaml", ".yml") if path.name.endswith(s)), path.name)
        found = _existing(folder / f"{stem}{s}" for s in suffixes)
    else:
        return None
    if len(found) > 1:
        more = f" and {len(found) - 2} more" if len(found) > 2 else ""
        names = f"`{display_path(found[0])}` and `{display_path(found[1])}`{more}"
        raise ProblemsFound((Problem(
            code, f"{names} are all {what}s of {display_path(path)}: fnl cannot tell which to use",
            Location(display_path(found[1])),
            help=f"keep one, name the one to use `{Path(os.path.abspath(folder)).name}{suffixes[0]}`, "
                 f"or name it with {option} FILE"),))
    if not found:
        return None
    if not inside(found[0], folder):
        raise ProblemsFound((Problem(
            code, f"{what} is a link to a file outside the funnel's folder",
            Location(display_path(found[0])),
            help=f"replace the link with the file itself, or name the file with {option} FILE"),))
    return found[0]


def _listing(folder: Path) -> List[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in islice(entries, MAX_LISTED))
    except OSError:
        return []


def _existing(paths: Iterator[Path]) -> List[Path]:
    return [p for p in paths if p.is_file()]


def load_behavior(path: Union[str, Path], plan: Plan, edit: Optional[Callable[[Any], Any]] = None) -> Behavior:
    """Read, check and build the behaviour model at `path` for `plan`. Raises
    ProblemsFound with every located problem (the file, the schema, then what the funnel
    does not have or what cannot happen), or UsageError if there is no such file.
    `edit` changes the file's data before it is checked (`fnl simulate --sweep`): a
    changed value is checked as if written, at its place in the file."""
    file = Path(path)
    if not file.exists() and not file.is_symlink():
        raise UsageError(f"{path}: no such behaviour model",
                         "check the path; without --behavior fnl uses the *.behavior.yaml beside the funnel")
    if file.is_dir():
        raise UsageError(f"{path}: is a folder, not a behaviour model",
                         "name the *.behavior.yaml file itself")
    loaded = load_file(file, display_path(file))
    loader_problems = tuple(_reword(p) for p in loaded.problems)
    if loaded.document is None:
        raise ProblemsFound(_sorted(loader_problems))
    doc = loaded.document
    if edit is not None:
        doc = dataclasses.replace(doc, data=edit(doc.data))
    seen = {_place(p)[:3] for p in loader_problems}
    problems = list(loader_problems) + [p for p in schema_problems(doc) if _place(p)[:3] not in seen]
    if problems:
        raise ProblemsFound(_sorted(problems))
    build = _Build(doc, plan, doc.files[0], DEFAULTS)
    behavior = build.build()
    if build.problems:
        raise ProblemsFound(_sorted(build.problems))
    return behavior


def check_behavior(path: Union[str, Path], plan: Plan) -> Tuple[Problem, ...]:
    """The problems of a behaviour model, none if it loads clean."""
    try:
        load_behavior(path, plan)
    except ProblemsFound as exc:
        return tuple(exc.problems)
    return ()


def schema_problems(doc: Document) -> List[Problem]:
    """Schema problems of a behaviour model, one per location, explained as for funnels."""
    return validate.schema_problems(doc, SCHEMA_NAME)


def _reword(p: Problem) -> Problem:
    help = _LOADER_HELP.get(p.code, p.help.replace("fnl definitions", "behaviour models")
                            .replace("definition", "behaviour model"))
    return dataclasses.replace(p, message=p.message.replace("definition", "behaviour model"), help=help)


def _place(p: Problem) -> Tuple[str, int, int, str]:
    return (p.location.file, p.location.line, p.location.column, p.code)


def _sorted(problems: Sequence[Problem]) -> Tuple[Problem, ...]:
    return tuple(sorted(problems, key=_place))


# -- checking and building --------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{x * 100:.4g} %"


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _key_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Build:
    """Checks a schema-valid behaviour document against a plan and builds the model;
    every problem is collected, nothing raises."""

    def __init__(self, doc: Document, plan: Plan, source: Optional[str], defaults: Defaults) -> None:
        self.doc = doc
        self.plan = plan
        self.source = source
        self.d = defaults
        self.data: Dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
        self.problems: List[Problem] = []
        self.assumptions: List[str] = []
        self.funnel_name = plan.funnel
        self.of = f"of funnel `{plan.funnel}`"

    # -- helpers ------------------------------------------------------------------------
    def error(self, code: str, path: JsonPath, message: str, help: str, key: bool = False) -> None:
        loc = self.doc.locate(path, key=key)
        self.problems.append(Problem(code, message, loc, path, help, source_line=self.doc.source_line(loc)))

    def unknown(self, path: JsonPath, what: str, name: str, known: Sequence[str], key: bool = True,
                plural: str = "") -> None:
        """`name` is not `what` (a phrase such as "a segment of funnel `x`"); did you mean…"""
        guess = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        if guess:
            help = f"did you mean `{guess[0]}`?"
        elif known:
            help = f"{plural or 'use one of'}: {_names(list(known))}"
        else:
            help = "the funnel has none; remove this entry"
        self.error("FNL801", path, f"`{name}` is not {what}", help, key=key)

    def assume(self, text: str) -> None:
        where = f"not in {self.source}" if self.source else "no behaviour file"
        self.assumptions.append(f"{text} ({where}; default)")

    def duration(self, path: JsonPath, text: str) -> int:
        minutes = parse_duration(text)
        if minutes > MAX_DURATION:
            self.error("FNL803", path, f"`{text}` is longer than ten years", "use a duration of at most 3650d")
            return MAX_DURATION
        return minutes

    def delay(self, path: JsonPath, value: Any) -> Delay:
        if isinstance(value, str):
            return Delay("fixed", self.duration(path, value), None, None)
        body: Dict[str, Any] = value
        got = {k: self.duration(path + (k,), v) for k, v in body.items()}
        if "min" in got and "mean" in got:
            self.error("FNL802", path + ("mean",), "a delay takes `min` and `max` (uniform) or `mean` "
                       "(exponential), not `min` with `mean`", "keep one way of saying how long", key=True)
        elif "mean" in got:
            if "max" in got and got["max"] < got["mean"]:
                self.error("FNL802", path + ("max",), f"the longest delay ({body['max']}) is shorter than the "
                           f"mean ({body['mean']})", "make `max` longer than `mean`, or leave it out")
            return Delay("exponential", 0, got.get("max"), got["mean"])
        elif "min" in got and "max" in got:
            if got["min"] > got["max"]:
                self.error("FNL802", path + ("max",), f"the longest delay ({body['max']}) is shorter than the "
                           f"shortest ({body['min']})", "swap `min` and `max`")
            return Delay("uniform", got["min"], got["max"], None)
        elif "min" in got:
            self.error("FNL802", path + ("min",), "a delay with `min` needs `max`: it is uniform between them",
                       "add `max:`, or write the delay as a duration such as `1d`", key=True)
        elif "max" in got:
            self.error("FNL802", path + ("max",), "a delay with only `max` does not say how long it usually is",
                       "add `min:` (uniform between them) or `mean:` (exponential), or write a duration", key=True)
        else:
            self.error("FNL802", path, "the delay is empty", "write a duration such as `2d`, `{min: 1d, max: 5d}` "
                       "or `{mean: 3d, max: 14d}`")
        return Delay("fixed", 0, None, None)

    def default_delay(self, pair: Tuple[str, str]) -> Delay:
        return Delay("exponential", 0, parse_duration(pair[1]), parse_duration(pair[0]))

    # -- the whole model ----------------------------------------------------------------
    def build(self) -> Behavior:
        data = self.data
        if isinstance(data.get("funnel"), str) and data["funnel"] != self.plan.funnel:
            self.error("FNL804", ("funnel",), f"this behaviour model is for funnel `{data['funnel']}`, "
                       f"not `{self.plan.funnel}`",
                       f"use the model written for `{self.plan.funnel}`, or change this to `funnel: "
                       f"{self.plan.funnel}` if it is meant for it")
        horizon = self.horizon()
        timing = self.timing()
        arrivals = self.arrivals(horizon, timing)
        profile = self.profile_section()
        email = self.email()
        visits = self.visits(horizon)
        crm = self.crm()
        capacity = self.capacity()
        return Behavior(
            funnel=self.plan.funnel, source=self.source, description=str(data.get("description", "")),
            horizon_minutes=horizon, arrivals=arrivals, profile=profile, email=email, visits=visits,
            timing=timing, crm=crm, capacity=capacity, assumptions=tuple(self.assumptions))

    def horizon(self) -> int:
        if "horizon" not in self.data:
            self.assume(f"horizon: {self.d.horizon}")
            return parse_duration(self.d.horizon)
        text = self.data["horizon"]
        minutes = parse_duration(text)
        if minutes > MAX_HORIZON:
            self.error("FNL803", ("horizon",), f"a horizon of `{text}` is longer than ten years",
                       "forecast at most 3650d; a funnel's behaviour that far out is a guess")
            return MAX_HORIZON
        if minutes < MIN_HORIZON:
            self.error("FNL803", ("horizon",), f"a horizon of `{text}` is shorter than a day",
                       "forecast at least 1d")
            return MIN_HORIZON
        return minutes

    # -- timing -------------------------------------------------------------------------
    def timing(self) -> Timing:
        body: Dict[str, Any] = self.data.get("timing", {})
        base: JsonPath = ("timing",)
        day = body.get("day", "spread")
        at = parse_clock(self.d.at)
        if day == "same_minute":
            at = parse_clock(body["at"]) if "at" in body else at
            if "at" not in body:
                self.assume(f"timing: a lead's day happens at {self.d.at} local time")
            for key in ("hours", "delays"):
                if key in body:
                    self.error("FNL802", base + (key,), f"`{key}` has no effect with `day: same_minute`: "
                               "everything of a lead's day happens in the one minute `at`",
                               f"remove `{key}`, or use `day: spread`", key=True)
        elif "at" in body:
            self.error("FNL802", base + ("at",), "`at` applies only with `day: same_minute`",
                       "remove `at`, or add `day: same_minute`", key=True)
        if "hours" in body:
            start, end = parse_clock(body["hours"]["from"]), parse_clock(body["hours"]["to"])
            if start == end:
                self.error("FNL802", base + ("hours",), f"the window from {body['hours']['from']} to "
                           f"{body['hours']['to']} is empty", "give an end after the start, such as "
                           "`{from: \"08:00\", to: \"18:00\"}`, or \"00:00\" to \"24:00\" for the whole day")
            hours = Hours(start, end)
        else:
            hours = Hours(parse_clock(self.d.hours[0]), parse_clock(self.d.hours[1]))
            if day != "same_minute":
                self.assume(f"timing: leads act from {self.d.hours[0]} to {self.d.hours[1]} in their timezone")
        delays: Dict[str, Any] = body.get("delays", {})
        out = {}
        for name, pair, what in (("open", self.d.open_delay, "opens come a mean {} after delivery"),
                                 ("click", self.d.click_delay, "clicks come a mean {} after the open"),
                                 ("reply", self.d.reply_delay, "replies come a mean {} after the open")):
            if name in delays:
                out[name] = self.delay(base + ("delays", name), delays[name])
            else:
                out[name] = self.default_delay(pair)
                if day != "same_minute":
                    self.assume(f"timing: {what.format(pair[0])} (at most {pair[1]})")
        return Timing(day, at, hours, out["open"], out["click"], out["reply"])

    def confirm(self, path: JsonPath, name: str, body: Optional[Dict[str, Any]]) -> Optional[Confirm]:
        """How the opt-ins through lead magnet `name` confirm, when it asks for double
        opt-in (fnl's assumption where `body`, the arrival's `confirm`, is not given)."""
        magnet = self.plan.magnet(name)
        if magnet is None or magnet.double_opt_in is None:
            if body is not None:
                self.error("FNL802", path + ("confirm",), f"`{name}` does not ask for double opt-in, so its opt-ins "
                           "have nothing to confirm", "remove `confirm`, or add `double_opt_in` to the lead magnet "
                           "in the funnel", key=True)
            return None
        body = body or {}
        rate = float(body["rate"]) if "rate" in body else self.d.confirm_rate
        if "delay" in body:
            delay = self.delay(path + ("confirm", "delay"), body["delay"])
        else:
            delay = self.default_delay(self.d.confirm_delay)
        if "rate" not in body or "delay" not in body:
            self.assume(f"arrivals: {_pct(rate)} of the opt-ins through `{name}` confirm them (double opt-in), "
                        f"{delay.describe()} after the confirmation email")
        return Confirm(rate, delay)

    # -- arrivals -----------------------------------------------------------------------
    def arrivals(self, horizon: int, timing: Timing) -> Tuple[Arrival, ...]:
        magnets = [m.name for m in self.plan.lead_magnets]
        entries = [e.name for e in self.plan.entries]
        ways = magnets + [e for e in entries if e not in magnets]
        if "arrivals" not in self.data:
            if not ways:
                self.assume("arrivals: none (the funnel has no lead magnets or entries)")
                return ()
            spread = min(parse_duration(self.d.arrival_window), horizon)
            each, rest = divmod(self.d.leads, len(ways))
            out = []
            for i, name in enumerate(ways):
                kind = "magnet" if name in magnets else "entry"
                out.append(Arrival(name, kind, each + (1 if i < rest else 0), None, 0, spread, (), (),
                                   self.confirm(("arrivals", name), name, None)))
            over = f"split evenly over {_names(ways)}" if len(ways) > 1 else f"through {_names(ways)}"
            self.assume(f"arrivals: {self.d.leads:,} leads over the first {format_duration(spread)}, {over}")
            return tuple(out)
        body: Dict[str, Any] = self.data["arrivals"]
        out = []
        for name, spec in body.items():
            path: JsonPath = ("arrivals", name)
            if name not in ways:
                self.unknown(path, f"a lead magnet or entry {self.of}", name, ways,
                             plural="its lead magnets and entries")
                continue
            if name in magnets and name in entries:
                self.error("FNL801", path, f"`{name}` is both a lead magnet and an entry of funnel "
                           f"`{self.funnel_name}`", "rename one of them in the funnel", key=True)
                continue
            kind = "magnet" if name in magnets else "entry"
            leads, per_day = spec.get("leads"), spec.get("per_day")
            if leads is None and per_day is None:
                self.error("FNL802", path, f"arrivals through `{name}` say neither how many nor how often",
                           "add `leads:` (a count over the window) or `per_day:` (an average rate)", key=True)
                continue
            if leads is not None and per_day is not None:
                self.error("FNL802", path + ("per_day",), "choose one: `leads` and `per_day` cannot be combined",
                           "keep `leads` (a count over the window) or `per_day` (an average rate)", key=True)
                continue
            window: Dict[str, Any] = spec.get("window", {})
            start = self.duration(path + ("window", "start"), window["start"]) if "start" in window else 0
            end = self.duration(path + ("window", "end"), window["end"]) if "end" in window else horizon
            if end <= start:
                self.error("FNL802", path + ("window",), f"the window is empty: it ends ({format_duration(end)}) "
                           f"no later than it starts ({format_duration(start)})", "give an `end` after `start`")
                continue
            if end > horizon:
                self.error("FNL802", path + ("window", "end") if "end" in window else path + ("window",),
                           f"the window ends at {format_duration(end)}, after the horizon "
                           f"({format_duration(horizon)}): leads arriving then are never simulated",
                           f"end it at {format_duration(horizon)} at the latest, or lengthen `horizon`")
                continue
            if timing.same_minute and (start % DAY or end % DAY):
                self.error("FNL802", path + ("window",), "with `day: same_minute` a window holds whole days",
                           "give `start` and `end` in days, such as `{start: 0d, end: 30d}`")
                continue
            mixes = self.mixes(path + ("profile",), spec.get("profile", {}))
            out.append(Arrival(name, kind, leads, None if per_day is None else float(per_day), start, end, mixes,
                               path, self.confirm(path, name, spec.get("confirm"))))
        for name in ways:
            if name not in body:
                what = "lead magnet" if name in magnets else "entry"
                self.assumptions.append(f"arrivals: no leads come in through {what} `{name}` (the behaviour file "
                                        "gives it none)")
        total = sum(a.expected_leads for a in out)
        if total > MAX_LEADS:
            self.error("FNL803", ("arrivals",), f"the arrivals add up to {total:,.0f} leads; fnl simulates at most "
                       f"{MAX_LEADS:,}", "lower the counts and rates (a forecast's shares do not need more "
                       "leads), or shorten the windows", key=True)
        return tuple(out)

    # -- profile ------------------------------------------------------------------------
    def profile_section(self) -> Tuple[AttributeMix, ...]:
        given = {m.name: m for m in self.mixes(("profile",), self.data.get("profile", {}))}
        out = []
        for attr in self.plan.profile:
            if attr.name in given:
                out.append(given[attr.name])
            else:
                mix = self.default_mix(attr)
                out.append(mix)
                self.assume(f"profile: {attr.name} {self.describe_mix(mix)}")
        return tuple(out)

    def describe_mix(self, mix: AttributeMix) -> str:
        if mix.kind == "choice":
            if len(mix.values) == 1:
                return f"is always {_key_text(mix.values[0][0])}"
            return "drawn evenly from " + ", ".join(_key_text(v) for v, _ in mix.values)
        if mix.kind in ("uniform", "log_uniform"):
            spread = "log-uniformly" if mix.kind == "log_uniform" else "uniformly"
            return f"drawn {spread} from {mix.low:g} to {mix.high:g}"
        return "made up per lead"

    def default_mix(self, attr: Any) -> AttributeMix:
        path: JsonPath = ()
        if attr.enum:
            share = 1.0 / len(attr.enum)
            return AttributeMix(attr.name, "choice", tuple((v, share) for v in attr.enum), None, None, False, 0.0, path)
        if attr.type == "boolean":
            return AttributeMix(attr.name, "choice", ((True, 0.5), (False, 0.5)), None, None, False, 0.0, path)
        if attr.type in ("integer", "number"):
            low = attr.minimum if attr.minimum is not None else 1
            high = attr.maximum if attr.maximum is not None else max(low, 1) * self.d.number_high
            kind = "log_uniform" if low > 0 and high / low >= 100 else "uniform"
            return AttributeMix(attr.name, kind, (), float(low), float(high), attr.type == "integer", 0.0, path)
        if attr.name == self.plan.policies.timezone_attribute:
            return AttributeMix(attr.name, "choice", ((self.plan.policies.default_timezone, 1.0),), None, None,
                                False, 0.0, path)
        return AttributeMix(attr.name, "synthetic", (), None, None, False, 0.0, path)

    def mixes(self, base: JsonPath, body: Dict[str, Any]) -> Tuple[AttributeMix, ...]:
        attrs = {a.name: a for a in self.plan.profile}
        out = []
        for name, spec in body.items():
            path = base + (name,)
            attr = attrs.get(name)
            if attr is None:
                self.unknown(path, f"a profile attribute {self.of}", name, list(attrs), plural="its attributes")
                continue
            mix = self.mix(path, attr, spec)
            if mix is not None:
                out.append(mix)
        return tuple(out)

    def mix(self, path: JsonPath, attr: Any, spec: Dict[str, Any]) -> Optional[AttributeMix]:
        missing = float(spec.get("missing", 0.0))
        if missing > 0 and attr.required:
            self.error("FNL802", path + ("missing",), f"`{attr.name}` is required by the funnel: every lead has it",
                       "remove `missing`", key=True)
            return None
        numeric = attr.type in ("integer", "number") and not attr.enum
        if "weights" in spec and numeric:
            self.error("FNL802", path + ("weights",), f"`{attr.name}` is a number: give a `range`, not `weights`",
                       "for example `range: {min: 10, max: 5000}`", key=True)
            return None
        if "range" in spec and not numeric:
            self.error("FNL802", path + ("range",), f"`{attr.name}` is not a number: give `weights` per value, "
                       "not a `range`", "for example `weights: {a: 70, b: 30}`", key=True)
            return None
        if "distribution" in spec and "range" not in spec:
            self.error("FNL802", path + ("distribution",), "`distribution` says how a `range` is spread, and there "
                       "is no `range`", "add `range: {min: …, max: …}` or remove `distribution`", key=True)
            return None
        if "weights" in spec:
            values = self.weights(path + ("weights",), attr, spec["weights"])
            if values is None:
                return None
            return AttributeMix(attr.name, "choice", values, None, None, False, missing, path)
        if "range" in spec:
            return self.value_range(path, attr, spec, missing)
        mix = self.default_mix(attr)
        return dataclasses.replace(mix, missing=missing, path=path)

    def weights(self, path: JsonPath, attr: Any, weights: Dict[str, float]) -> Optional[Tuple[Tuple[Any, float], ...]]:
        allowed: Optional[Dict[str, Any]] = None
        if attr.enum:
            allowed = {_key_text(v): v for v in attr.enum}
        elif attr.type == "boolean":
            allowed = {"true": True, "false": False}
        zone = attr.name == self.plan.policies.timezone_attribute and not attr.enum
        values: List[Tuple[Any, float]] = []
        ok = True
        for key, weight in weights.items():
            if allowed is not None:
                if key not in allowed:
                    self.unknown(path + (key,), f"a value of `{attr.name}`", key, list(allowed), plural="its values")
                    ok = False
                    continue
                values.append((allowed[key], float(weight)))
            else:
                if zone and not validate.known_zone(key):
                    guess = difflib.get_close_matches(key, sorted(_zones()), n=1, cutoff=0.6)
                    self.error("FNL802", path + (key,), f"`{key}` is not a known timezone",
                               f"did you mean `{guess[0]}`?" if guess else
                               "use an IANA timezone name such as America/New_York or Europe/Berlin", key=True)
                    ok = False
                    continue
                values.append((key, float(weight)))
        if not ok:
            return None
        total = sum(w for _, w in values)
        if total <= 0:
            self.error("FNL802", path, "every weight is 0: no value can be drawn", "give at least one value a weight "
                       "above 0")
            return None
        return tuple((v, w / total) for v, w in values)

    def value_range(self, path: JsonPath, attr: Any, spec: Dict[str, Any], missing: float) -> Optional[AttributeMix]:
        low, high = spec["range"]["min"], spec["range"]["max"]
        where = path + ("range",)
        integer = attr.type == "integer"
        if integer:
            for key, value in (("min", low), ("max", high)):
                if isinstance(value, float) and not value.is_integer():
                    self.error("FNL802", where + (key,), f"`{attr.name}` is an integer, and {value:g} is not",
                               f"use a whole number such as {math.floor(value)}")
                    return None
        if low > high:
            self.error("FNL802", where + ("max",), f"the range ends ({high:g}) below where it starts ({low:g})",
                       "swap `min` and `max`")
            return None
        if attr.minimum is not None and low < attr.minimum:
            self.error("FNL802", where + ("min",), f"{low:g} is below the funnel's minimum for `{attr.name}` "
                       f"({attr.minimum:g})", f"start the range at {attr.minimum:g} or above")
            return None
        if attr.maximum is not None and high > attr.maximum:
            self.error("FNL802", where + ("max",), f"{high:g} is above the funnel's maximum for `{attr.name}` "
                       f"({attr.maximum:g})", f"end the range at {attr.maximum:g} or below")
            return None
        kind = spec.get("distribution", "uniform")
        if kind == "log_uniform" and low <= 0:
            self.error("FNL802", where + ("min",), "a log-uniform range must start above 0",
                       "raise `min` above 0, or use `distribution: uniform`")
            return None
        return AttributeMix(attr.name, kind, (), float(low), float(high), integer, missing, path)

    # -- email --------------------------------------------------------------------------
    def rates(self, path: JsonPath, body: Dict[str, Any]) -> Rates:
        values = {k: float(body[k]) for k in RATE_NAMES if k in body}
        if values.get("open") == 0:
            for name in ("click", "reply"):
                if values.get(name, 0) > 0:
                    self.error("FNL802", path + (name,), f"`{name}` is {values[name]:g} but `open` is 0 here: "
                               f"{'a click' if name == 'click' else 'a reply'} is drawn only for an opened email",
                               f"`{name}` is given an open; set `open` above 0, or `{name}: 0`")
        return Rates(path=path, **values)

    def email(self) -> EmailModel:
        body: Dict[str, Any] = self.data.get("email", {})
        base: JsonPath = ("email",)
        given = self.rates(base + ("default",), body.get("default", {}))
        by_attribute = self.by_attribute(base + ("by_attribute",), body.get("by_attribute", {}))
        by_segment = self.by_group(base + ("by_segment",), body.get("by_segment", {}), "segment",
                                   [g.name for g in self.plan.segments])
        by_persona = self.by_group(base + ("by_persona",), body.get("by_persona", {}), "persona",
                                   [g.name for g in self.plan.personas])
        by_template = self.by_template(base + ("by_template",), body.get("by_template", {}))
        covered = self.covered(by_attribute)
        words = {"open": "opens", "click": "clicks", "reply": "replies", "unsubscribe": "unsubscribes",
                 "bounce": "bounces"}
        of = {"open": "of delivered emails", "click": "of opened emails", "reply": "of opened emails",
              "unsubscribe": "of delivered emails", "bounce": "of emails sent"}
        default: Dict[str, float] = {}
        for name in RATE_NAMES:
            value = given.get(name)
            if value is None:
                value = getattr(self.d, name)
                if name not in covered:
                    self.assume(f"{words[name]}: {_pct(value)} {of[name]}")
            default[name] = value
        resolved = EmailRates(**default)
        layers = [given] + [r for a in by_attribute for _, r in a.values] + [r for _, r in by_segment + by_persona] + \
            [t.rates for t in by_template] + [r for t in by_template for _, r in t.variants]
        if resolved.open == 0 and not any((r.open or 0) > 0 for r in layers):
            # No email can be opened; a click or reply set anywhere (outside a level that says
            # `open: 0` itself, already reported) could never happen.
            for r in layers:
                rate = next((n for n in ("click", "reply") if (r.get(n) or 0) > 0), None)
                if rate is not None and r.open is None:
                    self.error("FNL802", r.path + (rate,), f"`{rate}` is {r.get(rate):g} but no email can be "
                               "opened (`open` is 0 everywhere)",
                               f"`{rate}` is given an open; set `open` above 0 somewhere, or `{rate}: 0`")
                    break
        return EmailModel(resolved, by_attribute, by_segment, by_persona, by_template)

    def covered(self, by_attribute: Tuple[AttributeRates, ...]) -> Set[str]:
        """Rates every lead gets from an attribute value (a required enum attribute with the
        rate set for each of its values), so the default for them never applies."""
        attrs = {a.name: a for a in self.plan.profile}
        out: Set[str] = set()
        for ar in by_attribute:
            attr = attrs[ar.attribute]
            if not attr.required or not attr.enum:
                continue
            for name in RATE_NAMES:
                have = {_key_text(v) for v, r in ar.values if r.get(name) is not None}
                if have >= {_key_text(v) for v in attr.enum}:
                    out.add(name)
        return out

    def by_attribute(self, base: JsonPath, body: Dict[str, Any]) -> Tuple[AttributeRates, ...]:
        attrs = {a.name: a for a in self.plan.profile}
        setters: Dict[str, str] = {}
        out = []
        for name, values in body.items():
            path = base + (name,)
            attr = attrs.get(name)
            if attr is None:
                self.unknown(path, f"a profile attribute {self.of}", name, list(attrs), plural="its attributes")
                continue
            if attr.enum:
                allowed: Dict[str, Any] = {_key_text(v): v for v in attr.enum}
            elif attr.type == "boolean":
                allowed = {"true": True, "false": False}
            else:
                self.error("FNL802", path, f"rates by `{name}` need an attribute with listed values (an enum or a "
                           f"boolean), and `{name}` is "
                           f"{'a number' if attr.type in ('integer', 'number') else 'free text'}",
                           "set rates by a segment or persona whose condition tests it instead", key=True)
                continue
            items = []
            for key, rates_body in values.items():
                if key not in allowed:
                    self.unknown(path + (key,), f"a value of `{name}`", key, list(allowed), plural="its values")
                    continue
                items.append((allowed[key], self.rates(path + (key,), rates_body)))
            sets = [r for r in RATE_NAMES if any(r in v for v in values.values())]
            clash = next((r for r in sets if r in setters), None)
            if clash is not None:
                self.error("FNL802", path, f"`{clash}` is set by both `{setters[clash]}` and `{name}`: a lead has a "
                           "value of each, and only one rate can apply",
                           f"set `{clash}` through one attribute only, or by segment or persona", key=True)
                continue
            setters.update((r, name) for r in sets)
            out.append(AttributeRates(name, tuple(items)))
        return tuple(out)

    def by_group(self, base: JsonPath, body: Dict[str, Any], what: str,
                 known: List[str]) -> Tuple[Tuple[str, Rates], ...]:
        out = []
        for name, rates_body in body.items():
            if name not in known:
                self.unknown(base + (name,), f"a {what} {self.of}", name, known, plural=f"its {what}s")
                continue
            out.append((name, self.rates(base + (name,), rates_body)))
        return tuple(out)

    def by_template(self, base: JsonPath, body: Dict[str, Any]) -> Tuple[TemplateRates, ...]:
        known = [t.name for t in self.plan.templates]
        variants: Dict[str, Set[str]] = {}
        for seq in self.plan.sequences:
            for step in seq.steps:
                if step.template:
                    variants.setdefault(step.template, set()).update(v.name for v in step.variants)
        out = []
        for name, spec in body.items():
            path = base + (name,)
            if name not in known:
                self.unknown(path, f"a template funnel `{self.funnel_name}` sends", name, known,
                             plural="the templates it sends")
                continue
            own = sorted(variants.get(name, set()))
            items = []
            for vname, vbody in spec.get("variants", {}).items():
                if vname not in own:
                    if own:
                        self.unknown(path + ("variants", vname), f"an A/B variant of `{name}`", vname, own,
                                     plural="its variants")
                    else:
                        self.error("FNL801", path + ("variants", vname), f"`{name}` has no A/B variants",
                                   "remove `variants`, or add `variants:` to the step that sends it", key=True)
                    continue
                items.append((vname, self.rates(path + ("variants", vname), vbody)))
            rates_body = {k: v for k, v in spec.items() if k != "variants"}
            out.append(TemplateRates(name, self.rates(path, rates_body), tuple(items)))
        return tuple(out)

    # -- visits -------------------------------------------------------------------------
    def known_pages(self) -> List[str]:
        pages = {p.detail for p in self.plan.scoring.events if p.base == "site.visited" and p.detail}
        for tree in _trees(self.plan):
            pages.update(_visited_pages(tree))
        return sorted(pages)

    def visits(self, horizon: int) -> Visits:
        body: Dict[str, Any] = self.data.get("visits", {})
        base: JsonPath = ("visits",)
        if "daily" in body:
            daily = float(body["daily"])
        else:
            daily = self.d.visit_daily
            self.assume(f"visits: {_pct(daily)} of leads visit the website on a given day")
        if "after_click" in body:
            after = body["after_click"]
            raised = float(after["daily"])
            minutes = self.duration(base + ("after_click", "for"), after["for"])
            if minutes == 0:
                self.error("FNL802", base + ("after_click", "for"), "`for: 0d` raises the visit probability for no "
                           "time at all", "give a duration such as `7d`, or remove `after_click`")
        elif "visits" in self.data:
            raised, minutes = daily, 0
        else:
            raised, minutes = self.d.visit_after_click, parse_duration(self.d.visit_after_click_for)
            self.assume(f"visits: {_pct(raised)} a day in the {self.d.visit_after_click_for} after a click "
                        "(the day of the click included)")
        known = self.known_pages()
        if "pages" in body:
            pages = []
            for name, share in body["pages"].items():
                guess = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                if name not in known and guess:
                    self.error("FNL801", base + ("pages", name), f"no part of funnel `{self.funnel_name}` mentions "
                               f"page `{name}`", f"did you mean `{guess[0]}`?", key=True)
                    continue
                pages.append((name, float(share)))
            total = sum(s for _, s in pages)
            if total > 1 + 1e-9:
                self.error("FNL802", base + ("pages",), f"the page shares add up to {total:g}: more visits than "
                           "there are", "make them add up to at most 1 (the rest are visits to other pages)", key=True)
        else:
            share = min(self.d.page_share, self.d.pages_total / len(known)) if known else 0.0
            pages = [(p, share) for p in known]
            if known:
                self.assume(f"visits: {_pct(share)} of visits go to each page the funnel names "
                            f"({', '.join(known)})")
        stages = [s.name for s in self.plan.stages]
        if "stages" in body:
            chosen = []
            for i, name in enumerate(body["stages"]):
                if name not in stages:
                    self.unknown(base + ("stages", i), f"a stage {self.of}", name, stages, plural="its stages")
                else:
                    chosen.append(name)
        else:
            chosen = [s.name for s in self.plan.stages if not s.terminal]
        return Visits(daily, raised, minutes, tuple(pages), tuple(chosen))

    # -- CRM and sales ------------------------------------------------------------------
    def crm(self) -> Tuple[Reaction, ...]:
        if "crm" not in self.data:
            self.assume("CRM: no demos, opportunities, deals or other CRM events happen")
            return ()
        events = list(self.plan.crm_events)
        stages = [s.name for s in self.plan.stages]
        out = []
        for name, spec in self.data["crm"].items():
            path: JsonPath = ("crm", name)
            after = spec["after"]
            after_stage = after_event = None
            if after.startswith("crm."):
                if after[4:] not in events:
                    self.unknown(path + ("after",), f"a CRM event {self.of}", after, [f"crm.{e}" for e in events],
                                 key=False,
                                 plural="its CRM events")
                    continue
                after_event = after
            elif after in stages:
                after_stage = after
            else:
                hint = f"did you mean `crm.{after}`?" if after in events else ""
                guess = difflib.get_close_matches(after, stages, n=1, cutoff=0.6)
                self.error("FNL801", path + ("after",), f"`{after}` is not a stage {self.of}",
                           hint or (f"did you mean `{guess[0]}`?" if guess else
                                    f"name a stage ({_names(stages)}) or a CRM event (`crm.<event>`)"))
                continue
            outcomes = []
            total = 0.0
            for event, body in spec["outcomes"].items():
                opath = path + ("outcomes", event)
                if event[4:] not in events:
                    self.unknown(opath, f"a CRM event {self.of}", event, [f"crm.{e}" for e in events],
                                 plural="its CRM events")
                    continue
                delay = self.delay(opath + ("delay",), body["delay"]) if "delay" in body else \
                    Delay("fixed", 0, None, None)
                probability = float(body["probability"])
                total += probability
                outcomes.append(Outcome(event, probability, delay, opath))
            if total > 1 + 1e-9:
                self.error("FNL802", path + ("outcomes",), f"the outcomes' probabilities add up to {total:g}; at most "
                           "one of them happens, so they add up to at most 1",
                           "lower them; what is left below 1 is the share for which nothing follows", key=True)
            out.append(Reaction(name, after_stage, after_event, tuple(outcomes), str(spec.get("description", "")),
                                path))
        self.instant_cycles(out)
        return tuple(out)

    def instant_cycles(self, reactions: List[Reaction]) -> None:
        """A chain of reactions with no delay that leads back to where it started would
        repeat forever within one minute."""
        edges: Dict[str, List[Tuple[str, Optional[Outcome]]]] = {}
        for r in reactions:
            start = r.after_event or f"stage:{r.after_stage}"
            for o in r.outcomes:
                if o.delay.longest == 0:
                    edges.setdefault(start, []).append((o.event, o))
        for t in self.plan.transitions:
            if t.on and t.on.startswith("crm."):
                edges.setdefault(t.on, []).append((f"stage:{t.to}", None))
        reported: Set[JsonPath] = set()
        for r in reactions:
            start = r.after_event or f"stage:{r.after_stage}"
            stack: List[Tuple[str, Optional[Outcome]]] = [(start, None)]
            seen: Set[str] = set()
            while stack:
                node, via = stack.pop()
                for nxt, outcome in edges.get(node, []):
                    first = via or outcome
                    if nxt == start and first is not None and first.path not in reported:
                        reported.add(first.path)
                        self.error("FNL802", first.path, f"`{first.event}` follows at once and leads back to "
                                   f"`{start.replace('stage:', '')}`: the chain would repeat forever in one minute",
                                   "give one outcome in the chain a delay, such as `delay: 1d`", key=True)
                    elif nxt not in seen:
                        seen.add(nxt)
                        stack.append((nxt, first))

    def capacity(self) -> Optional[Capacity]:
        if "sales" not in self.data:
            if self.plan.handoff:
                self.assume("sales capacity: not given; the report shows each rep's load without a limit")
            return None
        body: Dict[str, Any] = self.data["sales"]
        reps = list(self.plan.reps())
        per_week = float(body["leads_per_week"]) if "leads_per_week" in body else None
        listed: Dict[str, float] = {}
        for rep, value in body.get("reps", {}).items():
            if rep not in reps:
                self.unknown(("sales", "reps", rep), f"a rep the handoffs {self.of} assign", rep, reps,
                             plural="its reps")
                continue
            listed[rep] = float(value)
        resolved = tuple((rep, listed.get(rep, per_week)) for rep in reps if rep in listed or per_week is not None)
        return Capacity(per_week, tuple((r, float(v)) for r, v in resolved if v is not None))


def _trees(plan: Plan) -> Iterator[Any]:
    """Every compiled condition tree of a plan."""
    conds: List[Any] = [g.when for g in (*plan.personas, *plan.segments)]
    conds.append(plan.fit)
    conds.extend(t.when for t in plan.transitions)
    for seq in plan.sequences:
        conds.append(seq.when)
        if seq.exit is not None:
            conds.append(seq.exit.when)
        for step in seq.steps:
            conds.extend((step.when, step.unless))
    for cond in conds:
        if cond is not None:
            yield cond.tree


def _visited_pages(tree: Any) -> Iterator[str]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("call") == "visited":
                args = node.get("args") or []
                if args and isinstance(args[0], dict) and isinstance(args[0].get("lit"), str):
                    yield args[0]["lit"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


_ZONES: Optional[Set[str]] = None


def _zones() -> Set[str]:
    global _ZONES
    if _ZONES is None:
        from zoneinfo import available_timezones

        _ZONES = set(available_timezones())
    return _ZONES


__all__ = [
    "AttributeMix", "AttributeRates", "Arrival", "Behavior", "Capacity", "CODES", "DEFAULTS", "Defaults", "Delay",
    "EmailModel", "EmailRates", "Hours", "MAX_LEADS", "Outcome", "Rates", "Reaction", "TemplateRates", "Timing",
    "Visits", "check_behavior", "default_behavior", "find_behavior", "find_beside", "is_behavior_file", "load_behavior",
    "schema_problems",
]
