"""Schema validation with messages a reviewer would write.

jsonschema reports what failed in schema terms ("'x' does not match '^[a-z]…'"). This
module turns each failure into one located problem in funnel terms: the unknown key and
the key you probably meant, the duration format with an example, the missing field and
what it is for. Several failures at one location collapse into the most relevant one;
the others travel along as `related` for `-v`.

Conditions are parsed here too, so a syntax error points at its column in the file, and so
are the lines of a definition's `expect:` block (`engine/expectations.py`: grammar and
metric names only, nothing simulated), so a typo in a CI gate fails `fnl validate`.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib.util
import json
import marshal
import os
import re
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import fastjsonschema

from . import expectations, expr
from .cache import cache_dir
from .errors import JsonPath, Problem, json_path
from .load import Document
from .units import parse_duration

if TYPE_CHECKING:  # jsonschema is imported only to explain a document that fails the fast check
    import jsonschema
    from jsonschema.exceptions import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def _schema_text(name: str) -> str:
    """The schema from the source tree, or from the installed `fnl_schemas` package."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    from importlib.resources import files

    return files("fnl_schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")

# What a pattern means, in words, with an example of a valid value.
_PATTERN_HELP = {
    "^[0-9]+[mhdw]([0-9]+[mhdw])*$": "write a duration: a number and a unit (m, h, d, w), such as `2d` or `1d12h`",
    "^[a-z][a-z0-9_-]*$": "use lower-case letters, digits, `-` and `_`, starting with a letter, such as `nurture-saas`",
    "^[a-z][a-z0-9_]*$": "use lower-case letters, digits and `_`, starting with a letter, such as `company_size`",
    "^[a-z][a-z0-9-]*$": "use lower-case letters, digits and `-`, starting with a letter, such as `acme-b2b`",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "write a 24-hour time as a quoted string, such as \"20:00\"",
    "^https://": "use an https:// address",
}


@lru_cache(maxsize=None)
def schema(name: str = "funnel") -> Dict[str, Any]:
    loaded: Dict[str, Any] = json.loads(_schema_text(name))
    return loaded


@lru_cache(maxsize=None)
def _validator(name: str = "funnel") -> "jsonschema.Draft7Validator":
    import jsonschema

    return jsonschema.Draft7Validator(schema(name))


@lru_cache(maxsize=None)
def _fast_check(name: str = "funnel") -> Callable[[Any], Any]:
    """A compiled validator that only answers valid or not, several times faster than
    jsonschema; jsonschema still explains every invalid document.

    fastjsonschema writes the validator as Python source (hundreds of kilobytes for the
    funnel schema), and compiling that took most of a command's startup. Its bytecode is
    kept in fnl's cache folder (`cache_dir`), named by a hash of the schema, the
    fastjsonschema version and the Python version, and loaded from there; a folder fnl
    cannot write to, or a damaged file, just means compiling again."""
    text = _schema_text(name)
    key = hashlib.sha256("\x00".join((text, fastjsonschema.VERSION, sys.version,
                                      importlib.util.MAGIC_NUMBER.hex())).encode()).hexdigest()[:20]
    folder = cache_dir()
    path = folder / f"schema-{name}-{key}.marshal" if folder is not None else None
    if path is not None and path.is_file():
        try:
            code = marshal.loads(path.read_bytes())
            if isinstance(code, types.CodeType):
                namespace: Dict[str, Any] = {}
                exec(code, namespace)  # fastjsonschema's generated validator, from the schema fnl ships
                return namespace["__fnl_validate__"]  # type: ignore[no-any-return]
        except Exception:  # damaged, or not the validator: made again below
            pass
    # A deep copy each time: fastjsonschema annotates the schema it is given.
    check = fastjsonschema.compile(copy.deepcopy(schema(name)))
    if path is not None:
        try:
            source = fastjsonschema.compile_to_code(copy.deepcopy(schema(name)))
            # The generated module's entry point is the function fastjsonschema.compile gave.
            code = compile(f"{source}\n__fnl_validate__ = {check.__name__}\n", f"<fnl {name} schema validator>",
                           "exec")
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(marshal.dumps(code))
            os.replace(partial, path)  # whole or not at all, whoever writes it first
        except OSError:
            pass  # nowhere to keep it: compiled again next time
    return check


def _schema_errors(data: Any, name: str = "funnel") -> Iterator[ValidationError]:
    try:
        _fast_check(name)(data)
        return iter(())
    except fastjsonschema.JsonSchemaException:
        return _validator(name).iter_errors(data)


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """Descend into anyOf/oneOf to the branch the value was meant for: the one whose
    type matched. If no branch's type matched, the union error itself is the leaf."""
    if error.context and error.validator in ("anyOf", "oneOf"):
        branches: Dict[Any, List[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0] if sub.schema_path else 0, []).append(sub)
        typed = [errs for errs in branches.values()
                 if not any(e.validator == "type" and not e.relative_path for e in errs)]
        if len(typed) == 1:
            for sub in typed[0]:
                yield from _leaves(sub)
            return
    yield error


def _subschema_title(error: ValidationError) -> str:
    sch = error.schema if isinstance(error.schema, dict) else {}
    return str(sch.get("title", ""))


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "…"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def _example(error: ValidationError) -> str:
    sch = error.schema if isinstance(error.schema, dict) else {}
    examples = sch.get("examples") or []
    if examples:
        return f"for example: {json.dumps(examples[0], ensure_ascii=False)}"
    return ""


def _extra_keys(error: ValidationError) -> List[Tuple[str, str]]:
    """(unknown key, the allowed key it probably misspells or "") for an
    additionalProperties failure."""
    sch = error.schema if isinstance(error.schema, dict) else {}
    inst = error.instance
    if error.validator != "additionalProperties" or not isinstance(inst, dict):
        return []
    allowed = sorted((sch.get("properties") or {}).keys())
    extras = [k for k in inst if k not in allowed and not any(
        re.search(pat, k) for pat in (sch.get("patternProperties") or {}))]
    out = []
    for key in extras:
        guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        out.append((key, guess[0] if guess else ""))
    return out


def _missing_keys(error: ValidationError) -> List[str]:
    inst = error.instance
    if error.validator != "required" or not isinstance(inst, dict) or not isinstance(error.validator_value, list):
        return []
    return [k for k in error.validator_value if k not in inst]


@dataclasses.dataclass(frozen=True)
class _Typos:
    """Per mapping: the required keys that are missing, and the unknown keys that
    misspell one of them (`stgae` for `stage`). The misspelling is the cause, so it is
    reported and the missing key is not."""

    missing: Dict[JsonPath, Tuple[str, ...]]
    misspelt: Dict[JsonPath, Dict[str, str]]  # path -> {required key: the unknown key that misspells it}

    @staticmethod
    def of(leaves: List[ValidationError]) -> "_Typos":
        missing: Dict[JsonPath, List[str]] = {}
        guesses: Dict[JsonPath, Dict[str, str]] = {}
        for leaf in leaves:
            path: JsonPath = tuple(leaf.absolute_path)
            for key in _missing_keys(leaf):
                missing.setdefault(path, [])
                if key not in missing[path]:
                    missing[path].append(key)
            for key, guess in _extra_keys(leaf):
                if guess:
                    guesses.setdefault(path, {}).setdefault(guess, key)
        misspelt = {path: {g: k for g, k in found.items() if g in missing.get(path, ())}
                    for path, found in guesses.items()}
        return _Typos({p: tuple(v) for p, v in missing.items()}, {p: v for p, v in misspelt.items() if v})


def _explain(error: ValidationError, doc: Document, typos: Optional[_Typos] = None) -> List[Problem]:
    """One or more problems for one schema failure."""
    typos = typos or _Typos({}, {})
    path: JsonPath = tuple(error.absolute_path)
    v = error.validator
    inst = error.instance
    sch = error.schema if isinstance(error.schema, dict) else {}
    in_names = "propertyNames" in error.schema_path

    def at(p: JsonPath, code: str, message: str, help: str = "", key: bool = False) -> Problem:
        loc = doc.locate(p, key=key)
        return Problem(code, message, loc, p, help, source_line=doc.source_line(loc))

    if in_names:
        help = _PATTERN_HELP.get(str(sch.get("pattern", "")), "")
        if not help and "email" in str(sch.get("pattern", "")):
            help = "use a known event such as `email.opened`, `site.visited.pricing` or `crm.demo_booked`"
        return [at(path + (inst,), "FNL104", f"`{_show(inst)}` is not a valid name here", help or "rename the key",
                   key=True)]

    if v == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted((sch.get("properties") or {}).keys())
        out = []
        for key, meant in _extra_keys(error):
            help = f"did you mean `{meant}`?" if meant else f"allowed keys here: {', '.join(allowed)}"
            if meant and typos.misspelt.get(path, {}).get(meant) == key:
                help += f" (`{meant}` is required here, and missing)"
            where = f" in {json_path(path)}" if path else " at the top level"
            out.append(at(path + (key,), "FNL100", f"unknown key `{key}`{where}", help, key=True))
        return out
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        misspelt = typos.misspelt.get(path, {})
        if missing in misspelt:
            return []  # the unknown key that misspells it is reported, with `did you mean`
        prop = (sch.get("properties") or {}).get(missing, {})
        what = prop.get("description", "") if isinstance(prop, dict) else ""
        help = f"add `{missing}:`" + (f" ({what.rstrip('.')})" if what else "")
        if "then" in error.schema_path or "anyOf" in error.schema_path:
            kind = inst.get("kind") if isinstance(inst, dict) else None
            if kind == "sales":
                help = "a sales sequence starts on a CRM event: add `on: crm.demo_booked` (or another event)"
            elif kind in ("nurture", "broadcast"):
                help = f"a {kind} sequence needs the `stage` whose leads it mails, such as `stage: subscriber`"
        every = [k for k in error.validator_value if isinstance(inst, dict) and k not in inst
                 and k not in misspelt] if isinstance(error.validator_value, list) else []
        where = f" in {json_path(path)}" if path else ""
        if len(every) > 1 and "then" not in error.schema_path and "anyOf" not in error.schema_path:
            names = ", ".join(f"`{k}`" for k in every)
            return [at(path, "FNL101", f"missing required keys {names}{where}",
                       f"add {', '.join(f'`{k}:`' for k in every)}", key=True)]
        return [at(path, "FNL101", f"missing required key `{missing}`{where}", help, key=True)]
    if v == "type":
        want = error.validator_value
        wants = [want] if isinstance(want, str) else list(want)
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wants)
        help = _example(error)
        if isinstance(inst, str) and "integer" in wants and inst.strip().lstrip("-").isdigit():
            help = f"remove the quotes: {inst.strip()}"
        return [at(path, "FNL102", f"expected {words}, found {_type_name(inst)}", help)]
    if v == "enum":
        options = [str(o) for o in error.validator_value]
        guess = difflib.get_close_matches(str(inst), options, n=1, cutoff=0.5)
        help = f"did you mean `{guess[0]}`?" if guess else f"use one of: {', '.join(options)}"
        return [at(path, "FNL103", f"`{_show(inst)}` is not allowed here; expected one of {', '.join(options)}", help)]
    if v == "const":
        return [at(path, "FNL103", f"expected {json.dumps(error.validator_value)}, found {_show(inst)}",
                   f"write {json.dumps(error.validator_value)}" + (
                       " (the only language version so far)" if path == ("fnl",) else ""))]
    if v == "pattern":
        help = _PATTERN_HELP.get(str(error.validator_value), "")
        if not help:
            ex = _example(error)
            help = ex or f"it must match {error.validator_value}"
        title = _subschema_title(error) or "value"
        return [at(path, "FNL104", f"`{_show(inst)}` is not a valid {title.lower()}", help)]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than"}[v]
        low = sch.get("minimum", sch.get("exclusiveMinimum"))
        high = sch.get("maximum", sch.get("exclusiveMaximum"))
        span = f"use a number from {low} to {high}" if low is not None and high is not None else \
            f"use a number {word} {error.validator_value}"
        return [at(path, "FNL105", f"{_show(inst)} is out of range: must be {word} {error.validator_value}", span)]
    if v in ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"):
        if v == "maxProperties" and error.validator_value == 1:
            keys = ", ".join(f"`{k}`" for k in inst)
            return [at(path, "FNL108", f"choose one: {keys} cannot be combined",
                       f"keep exactly one of: {', '.join(sorted((sch.get('properties') or {}).keys()))}")]
        if v == "minProperties" and error.validator_value == 1:
            return [at(path, "FNL106", f"{json_path(path)} is empty",
                       f"give one of: {', '.join(sorted((sch.get('properties') or {}).keys()))}")]
        kind = {"minItems": "items", "maxItems": "items", "minProperties": "entries", "maxProperties": "entries",
                "minLength": "characters", "maxLength": "characters"}[v]
        bound = "at least" if v.startswith("min") else "at most"
        if error.validator_value == 1:
            kind = {"items": "item", "entries": "entry", "characters": "character"}[kind]
        return [at(path, "FNL106", f"needs {bound} {error.validator_value} {kind}", _example(error))]
    if v == "uniqueItems":
        seen: Dict[str, int] = {}
        for i, item in enumerate(inst):
            k = json.dumps(item, sort_keys=True)
            if k in seen:
                return [at(path + (i,), "FNL107", f"`{_show(item)}` is listed twice (first as item {seen[k] + 1})",
                           "remove the repeat")]
            seen[k] = i
    if v == "dependencies":
        needs = error.validator_value
        for key, req in needs.items():
            if isinstance(inst, dict) and key in inst and isinstance(req, list):
                for r in req:
                    if r not in inst:
                        return [at(path + (key,), "FNL108", f"`{key}` needs `{r}` beside it", f"add `{r}:` or remove `{key}`", key=True)]
    if v == "not" and isinstance(inst, dict):
        present = [k for k in ("send", "notify", "exit", "half_life", "factor") if k in inst]
        if {"half_life", "factor"} <= set(present):
            return [at(path, "FNL108", "decay takes `half_life` or `factor` with `every`, not both",
                       "keep one way of saying how fast points fade")]
        return [at(path, "FNL108", f"a step does one thing, but this one has {' and '.join(f'`{k}`' for k in present)}",
                   "split it into two steps")]
    if v == "anyOf" and isinstance(inst, dict) and all(
            isinstance(b, dict) and set(b) == {"required"} for b in error.validator_value):
        either = " or ".join(f"`{b['required'][0]}`" for b in error.validator_value)
        return [at(path, "FNL101", f"needs {either}", f"add {either}")]
    if v in ("anyOf", "oneOf"):
        kinds = []
        for branch in error.validator_value:
            t = branch.get("type") if isinstance(branch, dict) else None
            if isinstance(t, str) and _TYPE_WORDS.get(t) not in kinds:
                kinds.append(_TYPE_WORDS.get(t, t))
        if kinds:
            return [at(path, "FNL102", f"expected {' or '.join(kinds)}, found {_type_name(inst)}", _example(error))]
    return [at(path, "FNL109", error.message[:200], _example(error))]


def _condition_paths(data: Any) -> Iterator[Tuple[JsonPath, str]]:
    """Every condition string in a schema-valid-enough document."""
    if not isinstance(data, dict):
        return

    def items(section: Any) -> Iterator[Tuple[str, Any]]:
        return iter(section.items()) if isinstance(section, dict) else iter(())

    for group in ("personas", "segments"):
        for name, body in items(data.get(group)):
            if isinstance(body, dict) and isinstance(body.get("when"), str):
                yield (group, name, "when"), body["when"]
    fit = data.get("fit")
    if isinstance(fit, dict) and isinstance(fit.get("when"), str):
        yield ("fit", "when"), fit["when"]
    scoring = data.get("scoring")
    if isinstance(scoring, dict) and isinstance(scoring.get("fit"), list):
        for i, rule in enumerate(scoring["fit"]):
            if isinstance(rule, dict) and isinstance(rule.get("when"), str):
                yield ("scoring", "fit", i, "when"), rule["when"]
    if isinstance(data.get("transitions"), list):
        for i, t in enumerate(data["transitions"]):
            if isinstance(t, dict) and isinstance(t.get("when"), str):
                yield ("transitions", i, "when"), t["when"]
    for name, seq in items(data.get("sequences")):
        if not isinstance(seq, dict):
            continue
        if isinstance(seq.get("when"), str):
            yield ("sequences", name, "when"), seq["when"]
        if isinstance(seq.get("exit"), dict) and isinstance(seq["exit"].get("when"), str):
            yield ("sequences", name, "exit", "when"), seq["exit"]["when"]
        for i, step in enumerate(seq.get("steps") or [] if isinstance(seq.get("steps"), list) else []):
            if isinstance(step, dict):
                for key in ("when", "unless"):
                    if isinstance(step.get(key), str):
                        yield ("sequences", name, "steps", i, key), step[key]


def check_conditions(doc: Document) -> List[Problem]:
    problems = []
    for path, source in _condition_paths(doc.data):
        try:
            expr.parse(source)
        except expr.ExprSyntaxError as exc:
            loc = doc.expression_location(path, exc.offset)
            problems.append(Problem("FNL110", f"condition syntax: {exc.message}", loc, path, exc.help,
                                    source_line=doc.source_line(loc)))
    return problems


# At one location, the most fundamental failure speaks first: a wrong type makes every
# other complaint about the value noise.
_PRIORITY = {"FNL102": 0, "FNL103": 1, "FNL104": 2, "FNL108": 3, "FNL101": 4, "FNL100": 5}


DURATION_KEYS = ("wait", "sla", "per", "half_life", "every", "window")
POSITIVE_KEYS = ("per", "half_life", "every")  # a zero here divides by zero or resets every score
MAX_DURATION = 3650 * 1440  # ten years, in minutes
_DURATION = re.compile(r"^[0-9]+[mhdw]([0-9]+[mhdw])*$")


def _walk(data: Any, path: JsonPath = ()) -> Iterator[Tuple[JsonPath, Any]]:
    stack: List[Tuple[JsonPath, Any]] = [(path, data)]
    while stack:
        here, value = stack.pop()
        yield here, value
        if isinstance(value, dict):
            stack.extend((here + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((here + (i,), v) for i, v in enumerate(value))


def check_values(doc: Document) -> List[Problem]:
    """What the schema cannot say: durations within bounds, a timezone that exists."""
    problems = []

    def at(path: JsonPath, message: str, help: str) -> Problem:
        loc = doc.locate(path)
        return Problem("FNL111", message, loc, path, help, source_line=doc.source_line(loc))

    for path, value in _walk(doc.data):
        if not path or path[-1] not in DURATION_KEYS or not isinstance(value, str) or not _DURATION.match(value):
            continue
        minutes = parse_duration(value)
        if minutes > MAX_DURATION:
            problems.append(at(path, f"`{value}` is longer than ten years", "use a duration of at most 3650d"))
        elif minutes == 0 and path[-1] in POSITIVE_KEYS:
            problems.append(at(path, f"`{path[-1]}` must be longer than zero", "use a duration such as `1d`"))
    sender = doc.data.get("sender") if isinstance(doc.data, dict) else None
    zone = sender.get("timezone") if isinstance(sender, dict) else None
    if isinstance(zone, str) and not known_zone(zone):
        loc = doc.locate(("sender", "timezone"))
        problems.append(Problem("FNL112", f"`{zone}` is not a known timezone", loc, ("sender", "timezone"),
                                "use an IANA timezone name such as America/New_York or Europe/Berlin",
                                source_line=doc.source_line(loc)))
    return problems


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA timezone this machine knows."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
        return True
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, OSError alike
        return False


@dataclasses.dataclass(frozen=True)
class _Misplaced:
    """A key of a named entry (`exit` of a sequence) that stands where the entries'
    names go (beside the sequence names), with an invalid value: it was meant to be
    indented under the entry above it, `previous`."""

    path: JsonPath  # sequences.exit
    noun: str  # sequence
    previous: Optional[str]  # the entry written just before it, if any
    emptied: bool = False  # that entry has no value: its keys are the ones dedented


def _resolve(sch: Any, name: str) -> Dict[str, Any]:
    while isinstance(sch, dict) and isinstance(sch.get("$ref"), str) and sch["$ref"].startswith("#/definitions/"):
        sch = schema(name)["definitions"][sch["$ref"].rsplit("/", 1)[1]]
    return sch if isinstance(sch, dict) else {}


def _noun(parent: JsonPath, child: Dict[str, Any]) -> str:
    """What one entry of a map of named entries is called: `sequence` in `sequences`."""
    key = str(parent[-1]) if parent and isinstance(parent[-1], str) else ""
    if key.endswith("ies"):
        return key[:-3].replace("_", " ") + "y"
    if key.endswith("s"):
        return key[:-1].replace("_", " ")
    return str(child.get("title") or "entry").lower()


def _misplaced_keys(data: Any, sch: Any, name: str, path: JsonPath = ()) -> Iterator[_Misplaced]:
    """Keys in a map of named entries that are keys of an entry: candidates for a line
    indented one level too little (`exit:` beside the sequence names)."""
    sch = _resolve(sch, name)
    if isinstance(data, dict):
        named = sch.get("properties") or {}
        child = _resolve(sch.get("additionalProperties"), name)
        entry_keys = child.get("properties") or {}
        previous: Optional[str] = None
        for key, value in data.items():
            if key in named:
                yield from _misplaced_keys(value, named[key], name, path + (key,))
                continue
            if child:
                before = data.get(previous) if previous is not None else None
                if key in entry_keys and not (isinstance(before, dict) and key in before):
                    yield _Misplaced(path + (key,), _noun(path, child), previous, before is None)
                    continue  # `when:` then `description:`, both dedented: both go under the entry above
                yield from _misplaced_keys(value, child, name, path + (key,))
            previous = key
    elif isinstance(data, list) and isinstance(sch.get("items"), dict):
        for i, item in enumerate(data):
            yield from _misplaced_keys(item, sch["items"], name, path + (i,))


def _misindented(leaves: List[ValidationError], doc: Document, name: str) -> Tuple[List[ValidationError], List[Problem]]:
    """Leaves not explained by a misplaced key, and one problem per misplaced key whose
    value fails the schema: a mis-indented line, not an entry missing every key."""
    failing = [tuple(leaf.absolute_path) for leaf in leaves]
    problems: List[Problem] = []
    for found in _misplaced_keys(doc.data, schema(name), name):
        size = len(found.path)
        if not any(p[:size] == found.path for p in failing):
            continue  # an entry that happens to be named `exit`, and is valid
        parent, key = found.path[:-1], found.path[-1]
        previous = parent + (found.previous,) if found.previous is not None else None
        leaves = [leaf for leaf in leaves if tuple(leaf.absolute_path)[:size] != found.path and not (
            tuple(leaf.absolute_path) == previous and (found.emptied or (
                _missing_keys(leaf) and set(_missing_keys(leaf)) <= {key})))]
        failing = [tuple(leaf.absolute_path) for leaf in leaves]
        under = f"`{found.previous}`, the {found.noun} above it" if found.previous is not None else \
            f"the {found.noun} it belongs to"
        loc = doc.locate(found.path, key=True)
        problems.append(Problem(
            "FNL100", f"`{key}` looks mis-indented: it is a key of a {found.noun}, not a {found.noun} name",
            loc, found.path, f"indent it under {under}", source_line=doc.source_line(loc)))
    return leaves, problems


def schema_problems(doc: Document, name: str = "funnel") -> List[Problem]:
    """The problems of a document against schema `name` (funnel or behavior), one per
    location: the likeliest cause where several errors meet, the others as related."""
    grouped: Dict[Tuple[str, int, int, str], List[Problem]] = {}
    leaves = [leaf for error in _schema_errors(doc.data, name) for leaf in _leaves(error)]
    leaves, misindented = _misindented(leaves, doc, name) if leaves else (leaves, [])
    for problem in misindented:
        loc = problem.location
        grouped[(loc.file, loc.line, loc.column, problem.code)] = [problem]
    typos = _Typos.of(leaves)
    for leaf in leaves:
        for problem in _explain(leaf, doc, typos):
            loc = problem.location
            grouped.setdefault((loc.file, loc.line, loc.column, problem.code if problem.code == "FNL100" else ""),
                               []).append(problem)
    problems: List[Problem] = []
    for entries in grouped.values():
        best = min(entries, key=lambda p: _PRIORITY.get(p.code, 9))
        others = tuple(dict.fromkeys(f"{p.code} {p.message}" for p in entries
                                     if p is not best and p.message != best.message))
        problems.append(dataclasses.replace(best, related=others))
    return problems


def validate(doc: Document) -> Tuple[Problem, ...]:
    """All schema, condition-syntax and expectation problems of a document, one per location."""
    problems = schema_problems(doc)
    problems.extend(check_conditions(doc))
    problems.extend(expectations.block_problems(doc))
    if not problems:
        problems.extend(check_values(doc))
    problems.sort(key=lambda p: (p.location.file, p.location.line, p.location.column, p.code))
    return tuple(problems)
