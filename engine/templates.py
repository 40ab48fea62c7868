"""Email templates: loading, static checks and rendering in a Jinja2 sandbox.

A template is one file, `<name>.j2` under the funnel's template directory, with the
blocks `subject`, `html` and `text` (and optionally `preheader`). Files and folders whose
name starts with `_` are partials and layouts, not emails. Templates come from pull
requests, so they render in `SandboxedEnvironment` with `StrictUndefined`: no attribute
access to Python internals, and a misspelt variable is an error, not an empty string.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import signal
import threading
import re
import stat
from functools import lru_cache
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Set, Tuple

import jinja2
from jinja2 import meta, nodes
import jinja2.sandbox
from jinja2.sandbox import SandboxedEnvironment

SUFFIX = ".j2"
PARTS = ("subject", "html", "text")
MAX_TEMPLATE_BYTES = 256 * 1024
# Names a template may use besides `lead.<attribute>`.
GLOBALS = ("lead", "sender", "unsubscribe_url", "variant", "owner", "magnet", "funnel")
SENDER_FIELDS = ("from", "reply_to", "postal_address", "unsubscribe_url", "timezone")
OWNER_FIELDS = ("name", "email")
MAGNET_FIELDS = ("title", "kind", "name")
UNSUBSCRIBE_PROBE = "https://unsubscribe.fnl.invalid/t/LEADTOKEN"


@dataclass(frozen=True)
class TemplateIssue:
    kind: str  # syntax | undefined | parts | render
    message: str
    line: int
    column: int
    help: str = ""


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str
    blocks: Tuple[str, ...]
    issues: Tuple[TemplateIssue, ...]
    sha256: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str
    html: str
    text: str


MAX_OUTPUT = 1024 * 1024  # characters one part may render to
RENDER_SECONDS = 2.0
MAX_REPEAT = 100_000  # longest string or list `*` may build


class RenderBudget(Exception):
    """A template that renders too much or for too long (a hostile or runaway loop)."""

    def __init__(self, message: str, part: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.part = part


class Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, plus bounds on `*` and `**`: `{{ 'x' * 10**9 }}` would otherwise
    build a gigabyte before any other check could run."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Filters whose numeric argument sets the size of what they build.
        for name in ("center", "indent", "wordwrap", "truncate", "format"):
            if name in self.filters:
                self.filters[name] = _bounded_filter(self.filters[name], name)
        self.filters["join"] = _bounded_join(self.filters["join"])

    def wrap_str_format(self, value: Any) -> Any:
        """`'{:999999999}'.format(1)`: check the format string before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = getattr(value, "__self__", "")

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if isinstance(text, str):
                _check_widths(text)
            return wrapped(*args, **kwargs)

        return guarded

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            _check_widths(left)
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise jinja2.sandbox.SecurityError("exponent larger than 1000")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
                    raise jinja2.sandbox.SecurityError(f"repetition longer than {MAX_REPEAT:,}")
        return super().call_binop(context, operator, left, right)


_WIDTH = re.compile(r"%[-+ #0]*(\d+)|%[-+ #0]*\d*\.(\d+)|{[^{}]*:[^{}]*?(\d{5,})[^{}]*}")


def _check_widths(fmt: str) -> None:
    """Refuse format strings whose width or precision would build a huge string."""
    for m in _WIDTH.finditer(fmt):
        width = next(int(g) for g in m.groups() if g)
        if width > MAX_REPEAT:
            raise jinja2.sandbox.SecurityError(f"format width {width:,} is larger than {MAX_REPEAT:,}")


def _bounded_filter(func: Any, name: str) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in list(args[1:]) + list(kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEAT:
                raise jinja2.sandbox.SecurityError(f"`{name}` size {value:,} is larger than {MAX_REPEAT:,}")
            if isinstance(value, str) and name == "format":
                _check_widths(value)
        if name == "format" and args and isinstance(args[0], str):
            _check_widths(args[0])
        return func(*args, **kwargs)

    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(guarded, attr, getattr(func, attr))
    return guarded


def _bounded_join(func: Any) -> Any:
    """`join` with a separator repeated between many items can build gigabytes from
    two small values; refuse a result larger than one part may be."""
    def guarded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, (str, bytes)) else list(str(value))
        if len(str(d)) * max(len(items) - 1, 0) + sum(len(str(i)) for i in items) > MAX_OUTPUT:
            raise jinja2.sandbox.SecurityError(f"`join` would build more than {MAX_OUTPUT // 1024} KiB")
        return func(eval_ctx, items, d, attribute)

    guarded.jinja_pass_arg = getattr(func, "jinja_pass_arg", None)  # type: ignore[attr-defined]
    return guarded


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt a render that runs past `seconds` (Unix, main thread; elsewhere the
    output bound still applies)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise RenderBudget(f"rendering took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class RootedLoader(jinja2.FileSystemLoader):
    """Loads only regular files inside the template directory: no links out of it (a
    pull request must not make fnl render /etc/passwd into an email), no pipes."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        root = self.searchpath[0]
        real = os.path.realpath(filename)
        if not real.startswith(os.path.realpath(root).rstrip(os.sep) + os.sep):
            raise jinja2.TemplateNotFound(f"{template} (outside the template directory)")
        return source, filename, uptodate


def check_file(root: Path, path: Path) -> Optional[str]:
    """Why a template file cannot be used, or None: a link out of the directory, a pipe
    or device, a loop of links."""
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(root).rstrip(os.sep) + os.sep):
        return "is a link to a file outside the template directory"
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, device or folder)"
    return None


@lru_cache(maxsize=64)
def environment(root: Path, html: bool = False) -> SandboxedEnvironment:
    """The sandbox. The HTML part renders with autoescaping, so lead data such as
    `<script>` in a name arrives as text; subject and text parts render unescaped.
    One environment per directory and mode, so compiled templates are reused (Jinja
    recompiles a template whose file changed)."""
    return Sandbox(
        loader=RootedLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=False,
    )


def discover(root: Path) -> List[str]:
    """Email template names under root (partials excluded), sorted."""
    if not root.is_dir():
        return []
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        rel = os.path.relpath(folder, root)
        for f in files:
            if f.endswith(SUFFIX) and not f.startswith(("_", ".")):
                path = f if rel == "." else f"{rel}/{f}"
                names.append(path.replace(os.sep, "/")[: -len(SUFFIX)])
    return sorted(names)


def _column(source_line: str, needle: str) -> int:
    idx = source_line.find(needle)
    return idx + 1 if idx >= 0 else 1


def _names_used(tree: nodes.Template) -> Iterator[Tuple[str, Optional[str], int]]:
    """(variable, attribute or None, line) for every variable read in the template."""
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    assigned |= {n.name for n in tree.find_all(nodes.Macro)}
    assigned |= {n.target for n in tree.find_all(nodes.Import)}
    for imp in tree.find_all(nodes.FromImport):
        assigned |= {name if isinstance(name, str) else name[1] for name in imp.names}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            if node.node.name not in assigned:
                yield node.node.name, node.attr, node.lineno
        elif isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) \
                and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            if node.node.name not in assigned:
                yield node.node.name, node.arg.value, node.lineno
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in assigned:
            yield node.name, None, node.lineno


def _check_names(tree: nodes.Template, lines: List[str], attributes: Tuple[str, ...]) -> List[TemplateIssue]:
    fields = {"lead": tuple(attributes) + ("email",), "sender": SENDER_FIELDS, "owner": OWNER_FIELDS,
              "magnet": MAGNET_FIELDS}
    issues = []
    seen: Set[Tuple[str, Optional[str], int]] = set()
    for var, attr, line in _names_used(tree):
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        if var not in GLOBALS and var not in ("loop", "self", "super", "range", "true", "false", "none"):
            unknown: Tuple[str, Optional[str], int] = (var, None, line)
            if unknown not in seen:
                seen.add(unknown)
                guess = difflib.get_close_matches(var, GLOBALS, n=1)
                issues.append(TemplateIssue(
                    "undefined", f"`{var}` is not a template variable", line, _column(text, var),
                    f"did you mean `{guess[0]}`?" if guess else f"available: {', '.join(GLOBALS)}"))
        elif attr is not None and var in fields and attr not in fields[var]:
            bad_field: Tuple[str, Optional[str], int] = (var, attr, line)
            if bad_field not in seen:
                seen.add(bad_field)
                guess = difflib.get_close_matches(attr, fields[var], n=1)
                what = "a profile attribute" if var == "lead" else f"a field of `{var}`"
                hint = f"did you mean `{var}.{guess[0]}`?" if guess else (
                    f"declare `{attr}` under `profile:`" if var == "lead" else f"fields: {', '.join(fields[var])}")
                issues.append(TemplateIssue("undefined", f"`{var}.{attr}` is not {what}", line,
                                            _column(text, f"{var}.{attr}") if f"{var}.{attr}" in text
                                            else _column(text, attr), hint))
    return issues


def load(root: Path, name: str, attributes: Tuple[str, ...] = ()) -> Optional[Template]:
    """Read and statically check one template; None if the file does not exist."""
    path = root / f"{name}{SUFFIX}"
    if not os.path.lexists(path):
        return None
    problem = check_file(root, path)
    if problem is not None:
        return Template(name, path, "", (), (TemplateIssue("syntax", f"template {problem}", 1, 1,
                                                           "make it a regular file in the template directory"),),
                        "unreadable")
    info = path.stat()
    return _load(root, name, attributes, info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=4096)
def _load(root: Path, name: str, attributes: Tuple[str, ...], _mtime: int, _size: int) -> Template:
    """`load`, cached by file identity (the last two arguments only key the cache)."""
    path = root / f"{name}{SUFFIX}"
    raw = path.read_bytes()[: MAX_TEMPLATE_BYTES + 1]
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_TEMPLATE_BYTES:
        return Template(name, path, "", (), (TemplateIssue("syntax", "template is larger than 256 KiB", 1, 1,
                                                           "split it; no email needs this much source"),), digest)
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Template(name, path, "", (), (TemplateIssue("syntax", "template is not UTF-8", 1, 1, "save it as UTF-8"),),
                        digest)
    env = environment(root)
    try:
        tree = env.parse(source, name=name, filename=str(path))
    except jinja2.TemplateSyntaxError as exc:
        line = exc.lineno or 1
        return Template(name, path, source, (), (TemplateIssue("syntax", f"template syntax: {exc.message}", line, 1,
                                                               _syntax_help(exc.message or "")),), digest)
    blocks = tuple(b.name for b in tree.find_all(nodes.Block))
    lines = source.splitlines()
    issues = _check_names(tree, lines, attributes)
    missing = [p for p in PARTS if p not in blocks]
    if missing:
        issues.append(TemplateIssue("parts", f"missing {', '.join(f'`{{% block {m} %}}`' for m in missing)}", 1, 1,
                                    "every email needs a subject line, an HTML part and a plain-text part"))
    return Template(name, path, source, blocks, tuple(issues), digest)


def _syntax_help(message: str) -> str:
    if "endblock" in message or "end of template" in message:
        return "a block or tag is not closed; check that every `{% block %}` has its `{% endblock %}`"
    if "unexpected '}'" in message:
        return "use `{{ ... }}` for values and `{% ... %}` for tags"
    return "fix the Jinja2 syntax at this line"


def _identity(path: str) -> Tuple[str, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=4096)
def _reads(root: Path, filename: str, _identity: Tuple[str, int, int]) -> Tuple[FrozenSet[str], Tuple[str, ...]]:
    """(variables the template reads, templates it includes or extends), from its AST."""
    if check_file(root, root / filename) is not None:
        return frozenset(), ()
    try:
        source = (root / filename).read_text(encoding="utf-8")
        tree = environment(root).parse(source)
    except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
        return frozenset(), ()
    refs = tuple(sorted(r for r in meta.find_referenced_templates(tree) if isinstance(r, str)))
    return frozenset(meta.find_undeclared_variables(tree)), refs


def _render_key(root: Path, name: str, context: Mapping[str, Any]) -> Tuple[Any, ...]:
    """What a render depends on: the files (with their identities) of the template and
    everything it includes, and the values of just the variables they read. Two funnels
    that share templates, profile and sender render them once between them."""
    base = os.fspath(root)
    files: Dict[str, Tuple[str, int, int]] = {}
    reads: set = set()
    todo = [f"{name}{SUFFIX}"]
    while todo and len(files) < 64:
        filename = todo.pop()
        if filename in files:
            continue
        ident = _identity(os.path.join(base, filename))
        files[filename] = ident
        variables, refs = _reads(root, filename, ident)
        reads |= variables
        todo.extend(refs)
    values = json.dumps({k: context.get(k) for k in sorted(reads)}, sort_keys=True, default=str)
    return (base, tuple(sorted(files.values())), values)


_RENDERED: Dict[Tuple[Any, ...], Any] = {}
_RENDER_CACHE_SIZE = 4096


def render(root: Path, name: str, context: Mapping[str, Any]) -> Rendered:
    """Render every part of a template in the sandbox. Raises jinja2 errors as they come.
    Renders are pure, so they are remembered by `_render_key`."""
    key = _render_key(root, name, context)
    if key in _RENDERED:
        cached = _RENDERED[key]
        if isinstance(cached, Exception):
            raise cached
        return cached  # type: ignore[no-any-return]
    try:
        result: Any = _render(root, name, context)
    except Exception as exc:  # noqa: BLE001 - remembered and raised again, as it came
        result = exc
    if len(_RENDERED) >= _RENDER_CACHE_SIZE:
        _RENDERED.clear()
    _RENDERED[key] = result
    if isinstance(result, Exception):
        raise result
    return result  # type: ignore[no-any-return]


def _render(root: Path, name: str, context: Mapping[str, Any]) -> Rendered:
    parts = {}
    with _deadline(RENDER_SECONDS):
        for html in (False, True):
            template = environment(root, html).get_template(f"{name}{SUFFIX}")
            ctx = template.new_context(dict(context))
            if template.filename and _top_level_code(template.filename):
                # Parts render block by block, which skips code outside the blocks (`set`,
                # `macro`, `import`): run the whole template once so its names exist.
                _bounded(template.root_render_func(ctx), "template")
            for part in (("html",) if html else ("subject", "preheader", "text")):
                block = template.blocks.get(part)
                parts[part] = _bounded(block(ctx), part) if block else ""
    return Rendered(parts["subject"].strip(), parts["preheader"].strip(), parts["html"], parts["text"])


@lru_cache(maxsize=4096)
def _top_level_code(filename: str) -> bool:
    try:
        tree = environment(Path(filename).parent).parse(Path(filename).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
        return False
    return any(isinstance(n, (nodes.Assign, nodes.Macro, nodes.Import, nodes.FromImport, nodes.AssignBlock))
               for n in tree.body)


def _bounded(chunks: Iterator[str], part: str) -> str:
    out: List[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise RenderBudget(f"the {part} part renders to more than {MAX_OUTPUT // 1024} KiB", part)
        out.append(chunk)
    return "".join(out)


def error_line(exc: BaseException, path: Path) -> int:
    """The template line a render error came from. Blocks are called directly, so the
    traceback holds frames of Jinja's generated Python code, not template lines; the
    compiled template's debug info maps them back (the last frame in `path` wins)."""
    line = 1
    if isinstance(exc, RenderBudget) and exc.part:
        # Raised outside the template's code: point at the block that rendered too much.
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        marker = re.compile(r"{%-?\s*block\s+" + exc.part + r"\b")
        return next((i for i, text in enumerate(lines, 1) if marker.search(text)), 1)
    tb = exc.__traceback__
    while tb is not None:
        compiled = tb.tb_frame.f_globals.get("__jinja_template__")
        if compiled is not None and tb.tb_frame.f_code.co_filename == str(path):
            line = compiled.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


_HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def links(html: str) -> List[str]:
    return _HREF.findall(html)


def sample_value(attribute: Any) -> Any:
    """A plausible value of a profile attribute for previews and lint renders."""
    if attribute.enum:
        return attribute.enum[0]
    if attribute.type == "integer":
        return int(attribute.minimum) if attribute.minimum is not None else 100
    if attribute.type == "number":
        return float(attribute.minimum) if attribute.minimum is not None else 100.0
    if attribute.type == "boolean":
        return True
    if attribute.format == "timezone":
        return "America/New_York"
    if attribute.format == "email":
        return "someone@example.com"
    return attribute.name.replace("_", " ").title()


# Which optional variables each kind of email gets: a rep only where sales owns the
# lead or the customer, a lead magnet only in its delivery email.
WITH_OWNER = ("sales", "onboarding", "retention", "expansion")
WITH_MAGNET = ("delivery",)


def sample_context(funnel: Any, variant: Optional[str] = None, purpose: str = "nurture",
                   unsubscribe_url: str = UNSUBSCRIBE_PROBE) -> Dict[str, Any]:
    """The variables a template sees for an email sent for `purpose` (a sequence kind,
    or `delivery`), filled with sample values from the profile."""
    lead = {a.name: sample_value(a) for a in funnel.profile}
    lead["email"] = "lead@example.com"
    s = funnel.sender
    sender = {"from": s.from_, "reply_to": s.reply_to or "", "postal_address": s.postal_address,
              "unsubscribe_url": s.unsubscribe_url or "", "timezone": s.timezone}
    out: Dict[str, Any] = {"lead": lead, "sender": sender, "unsubscribe_url": unsubscribe_url,
                           "variant": variant, "funnel": funnel.name}
    if purpose in WITH_OWNER:
        out["owner"] = {"name": "Sample Rep", "email": "rep@example.com"}
    if purpose in WITH_MAGNET:
        out["magnet"] = {"title": "Sample offer", "kind": "whitepaper", "name": "sample"}
    return out
