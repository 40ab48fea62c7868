"""The runtime config file of `fnl run --config FILE`: where actions go, how many emails a
sending domain may send, and how long the database keeps what it no longer needs.

    # yaml-language-server: $schema=../schemas/runtime.schema.json
    fnl-runtime: 1
    actions:
      - smtp: {host: smtp.acme.example, port: 587, user_env: FNL_SMTP_USER, password_env: FNL_SMTP_PASSWORD,
               dkim: {selector: s1, domain: acme.example, key_env: FNL_DKIM_KEY}}
      - webhook: {url: https://crm.example/hooks/fnl}
      - jsonl: {path: actions.jsonl}        # "-": standard output
    limits:                                 # per sending domain: the domain of the funnel's From
      acme.example: {rate: 100/h, warmup: [{day: 1, max: 50}, {day: 2, max: 100}, {day: 8, max: 1000}]}
    retention: {events: 400d, delivered_actions: 400d}

The file is read by the strict loader (`load.load_file`) and checked against
`schemas/runtime.schema.json` by the definitions' own machinery
(`validate.schema_problems`), so every problem is one located line with its fix, and an
unknown key names the key meant. Secrets are never in the file: it names the environment
variables that hold them (`*_env`), a key that would hold one (`password:`) is refused with
where to put it instead, and no problem ever shows a line that may hold one.

`--actions` strings are the same entries (`from_actions`): `smtp://HOST:PORT` is
`smtp: {host: HOST, port: PORT}`, `webhook:URL` is `webhook: {url: URL}`, `jsonl:FILE` is
`jsonl: {path: FILE}`. `open_adapters` builds the adapters of either.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from ..errors import JsonPath, Problem, ProblemsFound, UsageError, json_path
from ..load import Document, load_file
from ..units import format_duration, parse_duration
from .db import Database

SCHEMA_NAME = "runtime"
MIN_WINDOW = 1440  # retention: at least a day
MAX_WINDOW = 3650 * 1440  # and at most ten years, as every duration of fnl's
ADAPTERS_HELP = "give jsonl:FILE, jsonl:- for standard output, smtp://HOST:PORT or webhook:URL"

# Words of a key that would hold a secret in the file, and the `*_env` key that names where it is instead.
_SECRET_WORDS = re.compile(r"pass(word|wd|phrase)?|secret|token|api_?key|private_?key|credential")
_SECRET_NAMES = ("key", "pem", "user", "username", "login")
_ENV_FOR = {"password": "password_env", "passwd": "password_env", "pass": "password_env", "user": "user_env",
            "username": "user_env", "login": "user_env", "key": "key_env", "private_key": "key_env",
            "privatekey": "key_env", "pem": "key_env"}
_KEYS_ON_LINE = re.compile(r"([A-Za-z0-9_-]+)[\"']?\s*:(\s|$)")


def secret_key(key: str) -> bool:
    """Whether a key would hold a secret (`password`, `api_key`, `user`), not name one (`*_env`)."""
    name = key.lower().replace("-", "_")
    return not name.endswith("_env") and (name in _SECRET_NAMES or bool(_SECRET_WORDS.search(name)))


# -- the config -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dkim:
    """DKIM signing of the SMTP adapter's messages; the private key (PEM) is in `key_env`."""

    selector: str
    domain: str
    key_env: str


@dataclass(frozen=True)
class SmtpOut:
    """The SMTP adapter. Without `user_env`, it logs in when FNL_SMTP_USER and
    FNL_SMTP_PASSWORD are both set (as `--actions smtp://` always has); with it, the two
    variables it names must be set."""

    host: str
    port: int = 25
    starttls: Optional[bool] = None  # None: STARTTLS when logging in
    user_env: Optional[str] = None
    password_env: Optional[str] = None
    dkim: Optional[Dkim] = None
    origin: str = field(default="", compare=False)  # where it was given, for messages


@dataclass(frozen=True)
class WebhookOut:
    url: str
    origin: str = field(default="", compare=False)


@dataclass(frozen=True)
class JsonlOut:
    path: str  # "-" is standard output
    origin: str = field(default="", compare=False)


AdapterConfig = Union[SmtpOut, WebhookOut, JsonlOut]


@dataclass(frozen=True)
class Rate:
    count: int
    per: int  # minutes: 60 (an hour) or 1440 (a day)

    def __str__(self) -> str:
        return f"{self.count}/{'h' if self.per == 60 else 'd'}"


@dataclass(frozen=True)
class WarmupDay:
    day: int
    max: int


@dataclass(frozen=True)
class Limit:
    """The sending limits of one domain."""

    domain: str
    rate: Optional[Rate] = None
    warmup: Tuple[WarmupDay, ...] = ()

    def cap(self, day: int) -> Optional[int]:
        """The most emails on warm-up day `day` (1: the day of the first send), or None
        without a warm-up: the entry of the last day up to it (the first before it)."""
        if not self.warmup:
            return None
        found = self.warmup[0].max
        for entry in self.warmup:
            if entry.day <= day:
                found = entry.max
        return found


@dataclass(frozen=True)
class Retention:
    events: Optional[int] = None  # minutes: applied events older than this keep only their ID
    delivered_actions: Optional[int] = None  # minutes: delivered actions older than this go


@dataclass(frozen=True)
class RuntimeConfig:
    actions: Tuple[AdapterConfig, ...] = ()
    limits: Tuple[Limit, ...] = ()
    retention: Optional[Retention] = None
    source: Optional[str] = field(default=None, compare=False)  # the file, if any

    def limit(self, domain: str) -> Optional[Limit]:
        return next((limit for limit in self.limits if limit.domain == domain.lower()), None)


# -- reading the file ---------------------------------------------------------------------------

def _secret_problem(problem: Problem) -> Problem:
    """An unknown key that would hold a secret: said as such, with the `*_env` key to use."""
    key = str(problem.path[-1])
    env = _ENV_FOR.get(key.lower().replace("-", "_"), "")
    where = f" in {json_path(problem.path[:-1])}" if problem.path[:-1] else ""
    fix = (f"put it in an environment variable and name the variable: `{env}: FNL_...`" if env else
           "put it in an environment variable; the file names such variables with `*_env` keys")
    return dataclasses.replace(problem, message=f"`{key}`{where} would hold a secret, and secrets are never "
                               "written in the runtime config", help=fix, source_line="", related=())


def _quiet(problem: Problem) -> Problem:
    """A problem that may show a secret (a value under a `*_env` key, or a line of one):
    said without the value and without the line."""
    path = problem.path
    if path and isinstance(path[-1], str) and path[-1].endswith("_env") and problem.code in ("FNL104", "FNL106"):
        problem = dataclasses.replace(problem, message=f"`{path[-1]}` must be the name of an environment variable "
                                      "(capital letters, digits and _), not what it holds",
                                      help="write the variable's name, such as FNL_SMTP_PASSWORD, and set the "
                                           "value in the environment")
    if any(isinstance(p, str) and p.endswith("_env") for p in path) or \
            any(secret_key(m.group(1)) for m in _KEYS_ON_LINE.finditer(problem.source_line)):
        problem = dataclasses.replace(problem, source_line="", related=())
    return problem


def _explained(problems: List[Problem]) -> List[Problem]:
    out = []
    for problem in problems:
        if problem.code == "FNL100" and problem.path and secret_key(str(problem.path[-1])):
            out.append(_secret_problem(problem))
            continue
        if problem.code == "FNL104" and len(problem.path) == 2 and problem.path[0] == "limits":
            problem = dataclasses.replace(problem, message=f"`{problem.path[1]}` is not a sending domain",
                                          help="write the domain of the funnel's From address, in lower case, "
                                               "such as acme.example")
        elif problem.code == "FNL104" and problem.path and problem.path[-1] == "rate":
            problem = dataclasses.replace(problem, help="write N/h (at most N emails an hour) or N/d (a day), "
                                                        "such as 100/h")
        out.append(_quiet(problem))
    return out


def _checks(doc: Document) -> List[Problem]:
    """What the schema cannot say: the warm-up's days start at 1 and go up, a retention
    window is a day to ten years, and one SMTP adapter at most (an email would go twice)."""
    data = doc.data
    problems: List[Problem] = []

    def at(path: JsonPath, code: str, message: str, help: str) -> None:
        loc = doc.locate(path)
        problems.append(Problem(code, message, loc, path, help, source_line=doc.source_line(loc)))

    for domain, limit in (data.get("limits") or {}).items():
        days = [entry["day"] for entry in limit.get("warmup") or ()]
        for i, day in enumerate(days):
            if i == 0 and day != 1:
                at(("limits", domain, "warmup", 0, "day"), "FNL105", f"the warm-up starts on day 1, not day {day}",
                   "make the first entry `{day: 1, max: N}`: the day of the domain's first send")
            elif i and day <= days[i - 1]:
                at(("limits", domain, "warmup", i, "day"), "FNL105",
                   f"day {day} is listed after day {days[i - 1]}: the warm-up's days go up, each once",
                   "list the days in order, each once")
    for key, window in (data.get("retention") or {}).items():
        minutes = parse_duration(window)
        if not MIN_WINDOW <= minutes <= MAX_WINDOW:
            what = "shorter than a day" if minutes < MIN_WINDOW else "longer than ten years"
            at(("retention", key), "FNL111", f"`{window}` is {what}", "keep a window of 1d to 3650d, such as 400d")
    smtp = [i for i, entry in enumerate(data.get("actions") or ()) if "smtp" in entry]
    for i in smtp[1:]:
        at(("actions", i, "smtp"), "FNL107", "a second smtp adapter: every email would go out twice",
           "keep one smtp adapter")
    return problems


def load_config(path: Union[str, Path]) -> RuntimeConfig:
    """The runtime config at `path`, checked. Raises ProblemsFound with every located
    problem, UsageError if there is no such file."""
    from .. import validate
    from ..sources import display_path

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path}: no such file" if not file.exists() else
                         f"--config {path}: not a file", "give the runtime config (YAML), such as runtime.yaml")
    loaded = load_file(file, display_path(file))
    if loaded.document is None:
        raise ProblemsFound(tuple(_explained(list(loaded.problems))))
    doc = loaded.document
    problems = _explained(list(loaded.problems) + validate.schema_problems(doc, SCHEMA_NAME))
    if not problems:
        problems = _checks(doc)
    if problems:
        problems.sort(key=lambda p: (p.location.line, p.location.column, p.code))
        raise ProblemsFound(tuple(problems))
    return _build(doc, file)


def _place(doc: Document, path: JsonPath) -> str:
    loc = doc.locate(path, key=True)
    return f"{loc.file}:{loc.line}:{loc.column}"


def _build(doc: Document, file: Path) -> RuntimeConfig:
    data = doc.data
    actions: List[AdapterConfig] = []
    for i, entry in enumerate(data.get("actions") or ()):
        (kind, body), = entry.items()
        origin = _place(doc, ("actions", i, kind))
        if kind == "smtp":
            dkim = body.get("dkim")
            actions.append(SmtpOut(body["host"], body.get("port", 25), body.get("starttls"), body.get("user_env"),
                                   body.get("password_env"),
                                   Dkim(dkim["selector"], dkim["domain"], dkim["key_env"]) if dkim else None,
                                   origin=origin))
        elif kind == "webhook":
            actions.append(WebhookOut(body["url"], origin=origin))
        else:
            target = body["path"]
            if target != "-" and not Path(target).is_absolute():
                target = (file.parent / target).as_posix()
            actions.append(JsonlOut(target, origin=origin))
    limits = []
    for domain, body in (data.get("limits") or {}).items():
        rate = None
        if "rate" in body:
            count, per = body["rate"].split("/")
            rate = Rate(int(count), 60 if per == "h" else 1440)
        limits.append(Limit(domain, rate, tuple(WarmupDay(e["day"], e["max"]) for e in body.get("warmup") or ())))
    retention = data.get("retention")
    return RuntimeConfig(tuple(actions), tuple(limits), Retention(
        parse_duration(retention["events"]) if "events" in retention else None,
        parse_duration(retention["delivered_actions"]) if "delivered_actions" in retention else None)
        if retention else None, doc.files[0] if doc.files else str(file))


# -- `--actions` strings --------------------------------------------------------------------------

def from_actions(strings: Sequence[str]) -> Tuple[AdapterConfig, ...]:
    """`--actions` strings as config entries; UsageError for one that is no adapter."""
    out: List[AdapterConfig] = []
    for text in strings:
        origin = f"--actions {text}"
        if text.startswith("smtp://"):
            parts = urlsplit(text)
            try:
                port = parts.port or 25
            except ValueError:
                port = 0
            if not parts.hostname or not port:
                raise UsageError(f"--actions {text}: not an SMTP address",
                                 "give smtp://HOST:PORT, such as smtp://127.0.0.1:25")
            out.append(SmtpOut(parts.hostname, port, origin=origin))
        elif text.startswith("webhook:"):
            out.append(WebhookOut(text[len("webhook:"):], origin=origin))
        elif text.startswith("jsonl:") and text != "jsonl:":
            out.append(JsonlOut(text[len("jsonl:"):], origin=origin))
        else:
            raise UsageError(f"--actions {text}: not an adapter", ADAPTERS_HELP)
    return tuple(out)


def runtime_config(path: Optional[str], action_strings: Sequence[str] = ()) -> RuntimeConfig:
    """What `fnl run` delivers with: the config file's (if any), its adapters followed by
    the `--actions` ones; with neither, every action to standard output (`jsonl:-`)."""
    config = load_config(path) if path is not None else RuntimeConfig()
    actions = config.actions + from_actions(action_strings)
    if not actions:
        actions = from_actions(("jsonl:-",))
    return dataclasses.replace(config, actions=actions)


# -- the adapters --------------------------------------------------------------------------------

def open_adapters(config: Union[RuntimeConfig, Sequence[str]], compiled: Any, db: Database,
                  stack: contextlib.ExitStack, now: Optional[Callable[[], int]] = None,
                  echo: Optional[Callable[[str], None]] = None) -> List[Any]:
    """The adapters `loop.deliver` hands actions to, in the order given, each closed with
    `stack`: for a config, or for `--actions` strings. The SMTP adapter of a sending domain
    with limits comes wrapped (`limits.Limited`), counting on `now` (the minute; the
    database's clock, where `fnl run` has taken the funnel, when not given). Raises
    UsageError, before anything is sent, for an adapter that cannot work (a file it cannot
    write, a secret not in the environment, a DKIM key that is not one)."""
    from .loop import Jsonl

    if not isinstance(config, RuntimeConfig):
        config = runtime_config(None, tuple(config))
    say = echo or _stdout
    clock = now or (lambda: _db_clock(db))
    outs: List[Any] = []
    for entry in config.actions:
        if isinstance(entry, SmtpOut):
            smtp = _smtp(entry, compiled, db)
            stack.callback(smtp.close)
            limit = config.limit(smtp.domain)
            if limit is not None:
                from .limits import Limited

                outs.append(Limited(smtp, limit, db, clock))
            else:
                outs.append(smtp)
        elif isinstance(entry, WebhookOut):
            from .webhook import Webhook

            outs.append(Webhook(entry.url))
        elif entry.path == "-":
            outs.append(Jsonl(say))
        else:
            try:
                fh = stack.enter_context(open(entry.path, "a", encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"{entry.origin or entry.path}: cannot write {entry.path}: {exc.strerror or exc}",
                                 "give a file you can write") from None

            def write(line: str, fh: Any = fh) -> None:
                fh.write(line + "\n")
                fh.flush()
            outs.append(Jsonl(write))
    return outs


def _stdout(line: str) -> None:
    import click

    click.echo(line)


def _db_clock(db: Database) -> int:
    clock = db.meta("clock")
    return int(clock) if clock is not None else int(time.time() // 60)


def _smtp(entry: SmtpOut, compiled: Any, db: Database) -> Any:
    from .smtp import DkimSigner, Smtp

    host = f"[{entry.host}]" if ":" in entry.host else entry.host
    signer = DkimSigner(entry.dkim.selector, entry.dkim.domain, entry.dkim.key_env, entry.origin) \
        if entry.dkim is not None else None
    return Smtp(f"smtp://{host}:{entry.port}", compiled.funnel, compiled.plan, db, starttls=entry.starttls,
                user_env=entry.user_env, password_env=entry.password_env, dkim=signer, origin=entry.origin)


def after_delivery(config: RuntimeConfig, db: Database, adapters: Sequence[Any], retain: bool = True) -> List[str]:
    """After a delivery: a line for each domain whose limits held emails back, and, with
    `retain`, the retention applied (if the config has one), with what it took: said only
    when it took something (the wall clock applies it once an hour, not after every
    round)."""
    from .limits import Limited

    notes = [note for adapter in adapters if isinstance(adapter, Limited) for note in adapter.summary()]
    if config.retention is not None and retain:
        from .retention import apply

        done = apply(db, config.retention)
        if done is not None and (done.events or done.actions):
            parts = []
            if config.retention.events is not None:
                parts.append(f"{done.events:,} applied event{'s' if done.events != 1 else ''} older than "
                             f"{format_duration(config.retention.events)} reduced to their ID")
            if config.retention.delivered_actions is not None:
                parts.append(f"{done.actions:,} delivered action{'s' if done.actions != 1 else ''} older than "
                             f"{format_duration(config.retention.delivered_actions)} deleted")
            notes.append("retention: " + ", ".join(parts))
    return notes


__all__ = ["RuntimeConfig", "SmtpOut", "WebhookOut", "JsonlOut", "Dkim", "Limit", "Rate", "WarmupDay", "Retention",
           "load_config", "from_actions", "runtime_config", "open_adapters", "after_delivery"]
