"""Email templates: loading, static checks and rendering in a Jinja2 sandbox.

A template is one file, `<name>.j2` under the funnel's template directory, with the
blocks `subject`, `html` and `text` (and optionally `preheader`). Files and folders whose
name starts with `_` are partials and layouts, not emails. Templates come from pull
requests, so they render in `SandboxedEnvironment` with `StrictUndefined`: no attribute
access to Python internals, and a misspelt variable is an error, not an empty string.
Rendering is bounded: every value a template builds is checked for size, parts for
output, renders for time (per template, and per funnel or command), and they run in a
worker process under a memory limit (`render_box`). Templates that would crash Jinja's
parser or Python's compiler are syntax errors, located.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import signal
import threading
import re
import stat
import sys
import time
import types
from functools import lru_cache
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Set, Tuple

import jinja2
from jinja2 import meta, nodes
import jinja2.compiler
import jinja2.sandbox
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from . import render_box

SUFFIX = ".j2"
PARTS = ("subject", "html", "text")
MAX_TEMPLATE_BYTES = 256 * 1024
# Names a template may use besides `lead.<attribute>`.
GLOBALS = ("lead", "sender", "unsubscribe_url", "variant", "owner", "magnet", "funnel", "confirm_url")
SENDER_FIELDS = ("from", "reply_to", "postal_address", "unsubscribe_url", "timezone")
OWNER_FIELDS = ("name", "email")
MAGNET_FIELDS = ("title", "kind", "name")
UNSUBSCRIBE_PROBE = "https://unsubscribe.fnl.invalid/t/LEADTOKEN"
# The link of a double opt-in's confirmation email in previews and lint renders; the
# sending side puts the lead's real link there (its visit is the `optin.confirmed` event).
CONFIRM_PROBE = "https://confirm.fnl.invalid/t/LEADTOKEN"


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
    cpu: float = field(default=0.0, compare=False)  # CPU seconds the render took, for the slow-render budget


MAX_OUTPUT = 1024 * 1024  # characters one part may render to
RENDER_SECONDS = 1.0  # deadline of one template (they render in milliseconds)
COMMAND_RENDER_SECONDS = 5.0  # all the templates of one funnel, together
CHECK_RENDER_SECONDS = 30.0  # all the templates `fnl validate` renders, over every funnel it checks
# Of that, what slow renders may use together: a render slower than SLOW_RENDER_SECONDS
# (an email renders in milliseconds) or past its deadline counts whole. Twenty templates
# that loop forever, or that each stop just short of their deadline, cost 0.8 s, not
# twenty deadlines.
STALL_SECONDS = 0.8
SLOW_RENDER_SECONDS = 0.1
MAX_REPEAT = 100_000  # largest count or width that builds a string or list (`*`, `ljust`, `{:N}`)
MAX_VALUE = MAX_OUTPUT  # longest string, list or mapping any expression may produce
MAX_NESTING = 30  # brackets inside brackets, `not not ...`, tags inside tags
MAX_DEPTH = 60  # depth of one expression: chained filters, attributes, operators
MAX_DIGITS = 100  # digits in a number literal
MAX_LITERAL_BITS = 333  # a literal's value, in bits: about 10**100, whatever base it is written in
MAX_LOOPS = 16  # `for` inside `for`
MAX_INT_BITS = 100_000  # largest number a template may compute (about 30,000 digits)


class RenderBudget(Exception):
    """A template that renders too much or for too long (a hostile or runaway loop)."""

    def __init__(self, message: str, part: str = "") -> None:
        super().__init__(message, part)
        self.message = message
        self.part = part


class RenderFailure(Exception):
    """Why a template failed to render, as the worker process reports it: a message
    and the template line (its traceback stays in the worker). `kind` is `error`,
    `size` (a value past the sandbox's bounds), `memory`, `time` or `skipped` (the
    render clock ran out before this template)."""

    def __init__(self, message: str, line: int = 1, kind: str = "error", part: str = "", column: int = 1) -> None:
        super().__init__(message, line, kind, part, column)
        self.message = message
        self.line = line
        self.kind = kind
        self.part = part
        self.column = column

    def __str__(self) -> str:
        return self.message


class TooBig(jinja2.sandbox.SecurityError):
    """A value, count or width past the sandbox's bounds on size."""


def _too_big(value: Any) -> Any:
    """`value`, or TooBig when it is a string, list or mapping longer than MAX_VALUE
    or a number past MAX_INT_BITS. Every value a template computes passes here, so no
    expression can build on a huge intermediate."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) and len(value) > MAX_VALUE:
        raise TooBig(f"a value longer than {MAX_VALUE:,} characters or items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TooBig(f"a number larger than 2**{MAX_INT_BITS:,}")
    return value


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_REPEAT:
        raise TooBig(f"{what} {value:,} is larger than {MAX_REPEAT:,}")


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined that also fails when printed inside a list (`[Undefined]`)."""

    __slots__ = ()
    __repr__ = jinja2.StrictUndefined._fail_with_undefined_error  # type: ignore[assignment]


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Jinja's code generator, with `~` (concatenation) checked like any other value."""

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.checked(")
        super().visit_Concat(node, frame)
        self.write(")")


_SPEC_NUMBER = re.compile(r"\d+")


class _BoundedFormatter(jinja2.sandbox.SandboxedFormatter):
    """`str.format` in the sandbox, refusing a width or precision (also one given as
    an argument, `'{:{w}}'.format(1, w=N)`) that would build a huge string."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _SPEC_NUMBER.findall(format_spec):
            if len(number) > 6 or int(number) > MAX_REPEAT:
                raise TooBig(f"format width {number} is larger than {MAX_REPEAT:,}")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, jinja2.sandbox.SandboxedEscapeFormatter):
    pass


# Methods of str whose integer argument is the size of what they build.
_PADDING = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs"])


class Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, plus a bound on the size of every value a template builds:
    arithmetic and `~`, calls of methods, filters and `format` are checked before (when
    a count or width is the size of the result) and after. Without it `{{ 'x' * 10**9 }}`
    would build a gigabyte before any other check could run. What still slips through
    in one C-level step is stopped by the worker's memory limit (`render_box`)."""

    intercepted_binops = frozenset(["*", "**", "%", "+", "-", "/", "//"])
    code_generator_class = _CodeGenerator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, func in list(self.filters.items()):
            self.filters[name] = _bounded_filter(func, name)

    def checked(self, value: Any) -> Any:
        return _too_big(value)

    def _parse(self, source: str, name: Optional[str], filename: Optional[str]) -> nodes.Template:
        return _guarded_parse(self, super()._parse, source, name, filename)

    def _compile(self, source: str, filename: str) -> Any:
        try:
            return super()._compile(source, filename)
        except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
            detail = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
            raise _syntax_error(f"the template cannot be compiled ({detail})", 1, 1, None, filename,
                                "simplify the template: it is nested too deeply") from None

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Fail at once, rather than yield an undefined that `map(attribute=...)` or a
        list would print as `Undefined`."""
        raise jinja2.sandbox.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def wrap_str_format(self, value: Any) -> Any:
        """`str.format` and `format_map`, with widths and precisions bounded."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) \
                or value.__name__ not in ("format", "format_map"):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        str_type = type(text)
        is_map = value.__name__ == "format_map"
        formatter: _BoundedFormatter
        if isinstance(text, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=text.escape)
        else:
            formatter = _BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs = args[0]
                args = ()
            return _too_big(str_type(formatter.vformat(text, args, kwargs)))  # type: ignore[no-any-return]

        return functools.update_wrapper(wrapper, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805,B902
        owner = getattr(__obj, "__self__", None)
        method = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and method in _PADDING:
            for value in list(args) + list(kwargs.values()):
                _check_count(value, f"`{method}` width")
        if isinstance(owner, str) and method in ("join", "replace") and args:
            _check_join(owner, args, method)
        result = _too_big(super().call(__context, __obj, *args, **kwargs))
        if isinstance(owner, (list, dict, set)):
            _too_big(owner)  # `append`, `extend`, `update` grew it
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise TooBig("exponent larger than 1000")
        if operator in ("**", "*") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() * right if operator == "**" else left.bit_length() + right.bit_length()
            if bits > MAX_INT_BITS:
                raise TooBig(f"a number larger than 2**{MAX_INT_BITS:,}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
                    raise TooBig(f"repetition longer than {MAX_REPEAT:,}")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_VALUE:
                raise TooBig(f"a value longer than {MAX_VALUE:,} characters or items")
        return _too_big(super().call_binop(context, operator, left, right))


_WIDTH = re.compile(r"%[-+ #0]*(\d+)|%[-+ #0]*\d*\.(\d+)|{[^{}]*:[^{}]*?(\d{5,})[^{}]*}")
_STAR = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\*|\d*\.\*)")


def _check_widths(fmt: str) -> None:
    """Refuse format strings whose width or precision would build a huge string."""
    for m in _WIDTH.finditer(fmt):
        width = next(int(g) for g in m.groups() if g)
        if width > MAX_REPEAT:
            raise TooBig(f"format width {width:,} is larger than {MAX_REPEAT:,}")


def _check_percent(fmt: str, values: Any) -> None:
    """`fmt % values`: literal widths, and widths given as `*` by the values."""
    _check_widths(fmt)
    if _STAR.search(fmt):
        for value in values if isinstance(values, tuple) else (values,):
            _check_count(value, "format width")


def _check_join(sep: str, args: Tuple[Any, ...], method: str) -> None:
    if method == "join":
        items = args[0]
        if isinstance(items, (list, tuple, str)) and len(sep) * max(len(items) - 1, 0) > MAX_VALUE:
            raise TooBig(f"`join` would build more than {MAX_VALUE // 1024} KiB")
    elif len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = sep.count(args[0]) if args[0] else len(sep) + 1
        if len(sep) + count * len(args[1]) > MAX_VALUE:
            raise TooBig(f"`replace` would build more than {MAX_VALUE // 1024} KiB")


# Filters whose numeric arguments set the size of what they build. `tojson`'s indent
# multiplies with the depth and length of the data, so it gets a small bound of its own.
_SIZED_FILTERS = frozenset(["center", "indent", "wordwrap", "truncate", "batch", "slice"])


def _bounded_filter(func: Any, name: str) -> Any:
    """`func` with its size arguments bounded before it runs and its result after."""
    skip = 2 if getattr(func, "jinja_pass_arg", None) is not None else 1  # the context and the value

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name in _SIZED_FILTERS:
            for value in list(args[skip:]) + list(kwargs.values()):
                _check_count(value, f"`{name}` size")
        if name == "indent" and args and isinstance(args[0], str):
            width = kwargs.get("width", args[1] if len(args) > 1 else 4)
            size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            if len(args[0]) + args[0].count("\n") * abs(size) > MAX_VALUE:
                raise TooBig(f"`indent` would build more than {MAX_VALUE // 1024} KiB")
        elif name == "tojson":
            indent = kwargs.get("indent", args[2] if len(args) > 2 else None)
            if isinstance(indent, int) and not 0 <= indent <= 16 or isinstance(indent, str) and len(indent) > 16:
                raise TooBig("`tojson` indent is larger than 16")
        elif name == "format" and args and isinstance(args[0], str):
            _check_percent(args[0], tuple(args[1:]))
        elif name == "join" and len(args) > 1:
            value = args[1]
            items = list(value) if not isinstance(value, (str, bytes)) else list(str(value))
            sep = str(args[2] if len(args) > 2 else kwargs.get("d", ""))
            if len(sep) * max(len(items) - 1, 0) + sum(len(str(i)) for i in items) > MAX_VALUE:
                raise TooBig(f"`join` would build more than {MAX_VALUE // 1024} KiB")
            args = args[:1] + (items,) + args[2:]
        return _too_big(func(*args, **kwargs))

    if hasattr(func, "jinja_pass_arg"):
        guarded.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return functools.update_wrapper(guarded, func)


# Tags that open a block closed by `{% end<tag> %}` (`set` only in its block form).
_OPENERS = frozenset(["for", "if", "block", "macro", "call", "filter", "with", "autoescape", "trans", "set"])


def _limits_issue(env: jinja2.Environment, source: str) -> Optional[Tuple[str, int, int, str]]:
    """(what, line, column, help) for the first thing in `source` that would crash
    Jinja's parser or Python's compiler (both recurse, and Python refuses long integer
    literals): deep nesting of brackets, tags or `not`, a number with too many digits."""
    pos = 0
    brackets = tags = run = 0
    tag: List[str] = []
    try:
        for _line, token, value in env.lexer.tokeniter(source, None):
            found = source.find(value, pos) if value else -1
            at = found if found >= 0 else pos
            pos = at + len(value)
            if token in ("whitespace", "data", "comment", "linecomment"):
                continue
            problem = None
            if token == "operator" and value in "([{":
                brackets += 1
                if brackets > MAX_NESTING:
                    problem = (f"brackets nested more than {MAX_NESTING} deep", "flatten the expression; "
                               "use `{% set %}` for intermediate values")
            elif token == "operator" and value in ")]}":
                brackets = max(brackets - 1, 0)
            if token in ("name", "operator") and value in ("not", "-", "+"):
                run += 1
                if run > MAX_NESTING:
                    problem = (f"more than {MAX_NESTING} `not`, `-` or `+` in a row", "write the condition once")
            else:
                run = 0
            if token in ("integer", "float") and len(value.replace("_", "")) > MAX_DIGITS:
                problem = (f"a number with more than {MAX_DIGITS} digits", "no email needs such a number")
            if token == "block_begin":
                tag = []
            elif token == "block_end" and tag:
                if tag[0].startswith("end"):
                    tags = max(tags - 1, 0)
                elif tag[0] in _OPENERS and (tag[0] != "set" or "=" not in tag):
                    tags += 1
                    if tags > MAX_NESTING:
                        problem = (f"tags nested more than {MAX_NESTING} deep", "split the template into partials "
                                   "or macros")
            elif token in ("name", "operator"):
                tag.append(value)
            if problem is not None:
                line = source.count("\n", 0, at) + 1
                return problem[0], line, at - (source.rfind("\n", 0, at) + 1) + 1, problem[1]
    except jinja2.TemplateSyntaxError:
        return None  # the parser reports it, located
    return None


def _deepest(tree: nodes.Node) -> Optional[Tuple[nodes.Node, bool]]:
    """(the first node nested deeper than MAX_DEPTH, False) or (a loop inside more than
    MAX_LOOPS loops, True), or None. Jinja's compiler and Python's recurse over the
    tree, and Python allows only 20 nested loops. Walks without recursing."""
    stack: List[Tuple[nodes.Node, int, int]] = [(tree, 0, 0)]
    while stack:
        node, depth, loops = stack.pop()
        if depth > MAX_DEPTH:
            return node, False
        if isinstance(node, nodes.For):
            loops += 1
            if loops > MAX_LOOPS:
                return node, True
        stack.extend((child, depth + 1, loops) for child in node.iter_child_nodes())
    return None


def _syntax_error(message: str, line: int, column: int, name: Optional[str], filename: Optional[str],
                  help: str = "") -> jinja2.TemplateSyntaxError:
    exc = jinja2.TemplateSyntaxError(message, line, name, filename)
    exc.column = column  # type: ignore[attr-defined]
    exc.help = help  # type: ignore[attr-defined]
    return exc


def _tag_column(source: str, line: int) -> int:
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    found = [i for i in (text.find("{{"), text.find("{%")) if i >= 0]
    return min(found) + 1 if found else 1


def _guarded_parse(env: jinja2.Environment, parse: Any, source: str, name: Optional[str],
                   filename: Optional[str]) -> nodes.Template:
    """`parse(source, name, filename)`, with everything that would crash the parser or
    the compiler turned into a located TemplateSyntaxError."""
    try:
        tree = parse(source, name, filename)
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        limit = _limits_issue(env, source)  # only now: lexing twice would slow every template down
        if limit is not None:
            what, line, column, help = limit
            raise _syntax_error(what, line, column, name, filename, help) from None
        raise _syntax_error(f"the template cannot be parsed ({type(exc).__name__})", 1, 1, name, filename,
                            "simplify the template: it is nested too deeply or holds a huge literal") from None
    deep = _deepest(tree)
    if deep is not None:
        node, loops = deep
        line = getattr(node, "lineno", 1) or 1
        what = (f"loops nested more than {MAX_LOOPS} deep" if loops else
                f"an expression nested more than {MAX_DEPTH} deep (chained filters, attributes or operators)")
        raise _syntax_error(what, line, _tag_column(source, line), name, filename,
                            "split it with `{% set %}`, macros or partials")
    huge = next((c for c in tree.find_all(nodes.Const)
                 if isinstance(c.value, int) and c.value.bit_length() > MAX_LITERAL_BITS), None)
    if huge is not None:
        # Hexadecimal, octal and binary literals pass the parser (Python converts them
        # without a digit limit), then fail as the compiler writes them out in decimal.
        line = getattr(huge, "lineno", 1) or 1
        raise _syntax_error(f"a number with more than {MAX_DIGITS} digits", line, _tag_column(source, line), name,
                            filename, "no email needs such a number")
    return tree


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
        # Checked before Jinja opens the file: a link out of the directory is never read.
        root = self.searchpath[0]
        filename = os.path.join(root, *jinja2.loaders.split_template_path(template))
        if os.path.lexists(filename):
            problem = check_file(Path(root), Path(filename))
            if problem is not None:  # reported as an include of a file not in the directory
                raise jinja2.TemplateNotFound(template)
        return super().get_source(environment, template)


def check_file(root: Path, path: Path) -> Optional[str]:
    """Why a template file cannot be used, or None: a link out of the directory, a pipe
    or device, a loop of links."""
    from .sources import real  # realpath that survives a chain of links too long to follow

    target, base = real(path), real(root)
    if target is None:
        return "is a chain of too many links"
    if base is None or not target.startswith(base.rstrip(os.sep) + os.sep):
        return "is a link to a file outside the template directory"
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, device or folder)"
    return None


class _Compiled(jinja2.FileSystemBytecodeCache):
    """Jinja's compiled templates kept in fnl's cache folder (`engine.cache`), so a
    command does not compile every template again: an entry is found by the template's
    name and file and used only for the same source (Jinja checks its checksum); the
    folder is named by everything else the code depends on (`_compiled`). A folder fnl
    cannot write to, or a damaged entry, means compiling, as without the cache."""

    def load_bytecode(self, bucket: Any) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, ValueError, EOFError, TypeError):
            bucket.reset()

    def dump_bytecode(self, bucket: Any) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _compiled(html: bool) -> Optional[_Compiled]:
    """The bytecode cache for one mode of the sandbox: its folder is named by a hash of
    this module (the sandbox's code generator), Jinja's and Python's versions and the
    mode, so code compiled under any other is never loaded."""
    from .cache import cache_dir

    folder = cache_dir()
    if folder is None:
        return None
    try:
        source = Path(__file__).read_bytes()
    except OSError:
        return None
    key = hashlib.sha256(b"\0".join((source, jinja2.__version__.encode(), sys.version.encode(),
                                      b"html" if html else b"text"))).hexdigest()[:20]
    return _Compiled(str(folder / f"templates-{key}"))


@lru_cache(maxsize=64)
def environment(root: Path, html: bool = False) -> SandboxedEnvironment:
    """The sandbox. The HTML part renders with autoescaping, so lead data such as
    `<script>` in a name arrives as text; subject and text parts render unescaped.
    One environment per directory and mode, so compiled templates are reused (Jinja
    recompiles a template whose file changed), and kept between commands (`_Compiled`)."""
    return Sandbox(
        loader=RootedLoader(str(root)),
        undefined=_Undefined,
        autoescape=html,
        keep_trailing_newline=False,
        bytecode_cache=_compiled(html),
    )


def discover(root: Path) -> List[str]:
    """Email template names under root (partials excluded), sorted. The walk is bounded
    and follows no links to folders (templates behind one are not found)."""
    from .sources import Walked, walk

    try:
        if not root.is_dir():
            return []
    except OSError:
        return []
    names = []
    for folder, dirs, files, links in walk(root, Walked()):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        links[:] = []
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
    with open(path, "rb") as fh:  # never more than the limit, whatever the file's size
        raw = fh.read(MAX_TEMPLATE_BYTES + 1)
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
        issue = TemplateIssue("syntax", f"template syntax: {exc.message}", exc.lineno or 1, getattr(exc, "column", 1),
                              getattr(exc, "help", "") or _syntax_help(exc.message or ""))
        if not hasattr(exc, "column"):
            issue = _tag_issue(env, source, exc.lineno or 1, exc.message or "") or issue
        return Template(name, path, source, (), (issue,), digest)
    blocks = tuple(b.name for b in tree.find_all(nodes.Block))
    lines = source.splitlines()
    issues = _check_names(tree, lines, attributes)
    missing = [p for p in PARTS if p not in blocks]
    if missing:
        issues.append(TemplateIssue("parts", f"missing {', '.join(f'`{{% block {m} %}}`' for m in missing)}", 1, 1,
                                    "every email needs a subject line, an HTML part and a plain-text part"))
    return Template(name, path, source, blocks, tuple(issues), digest)


_UNKNOWN_TAG = re.compile(r"Encountered unknown tag '(\w+)'")
_INNERMOST = re.compile(r"innermost block that needs to be closed is '(\w+)'")
_LOOKING_FOR = re.compile(r"'(\w+)'")


@dataclass(frozen=True)
class _Tag:
    name: str
    line: int
    column: int
    words: Tuple[str, ...]  # the tag's name and what follows it, as Jinja lexes them
    text: str  # the tag as written, `{% if lead.company %}`

    @property
    def shown(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= 60 else f"{{% {self.name} … %}}"


def _tags(env: jinja2.Environment, source: str) -> Iterator[_Tag]:
    """Every `{% ... %}` tag of a template, with its position, in order."""
    pos = 0
    start: Optional[Tuple[int, int, int]] = None
    words: List[str] = []
    for line, token, value in env.lexer.tokeniter(source, None):
        found = source.find(value, pos) if value else -1
        at = found if found >= 0 else pos
        pos = at + len(value)
        if token == "block_begin":
            start = (line, at - (source.rfind("\n", 0, at) + 1) + 1, at)
            words = []
        elif token == "block_end" and start is not None and words:
            yield _Tag(words[0], start[0], start[1], tuple(words), source[start[2]:pos])
            start = None
        elif start is not None and token not in ("whitespace",):
            words.append(value)


def _tag_issue(env: jinja2.Environment, source: str, line: int, message: str) -> Optional[TemplateIssue]:
    """The issue located where the mistake is, not where Jinja noticed it: an unclosed
    tag at its opening `{%` (with which tag it is), an unknown tag at its `{%`."""
    unknown = _UNKNOWN_TAG.search(message)
    innermost = _INNERMOST.search(message)
    if not message.startswith("Unexpected end of template") and unknown is None:
        return None
    stack: List[_Tag] = []
    try:
        for tag in _tags(env, source):
            if unknown is not None and tag.line == line and tag.name == unknown.group(1):
                wanted = _LOOKING_FOR.findall(message.split("looking for", 1)[1]) if "looking for" in message else []
                known_end = tag.name.startswith("end") and tag.name[3:] in _OPENERS
                if innermost and known_end and stack and stack[-1].name == innermost.group(1):
                    return _unclosed(stack[-1], f"`{{% {tag.name} %}}` on line {tag.line}")
                guess = difflib.get_close_matches(tag.name, wanted, n=1, cutoff=0.6)
                help = (f"did you mean `{{% {guess[0]} %}}`?" if guess else
                        f"remove it, or open its `{{% {tag.name[3:]} %}}` first" if known_end else
                        "use a tag Jinja2 knows (if, for, block, set, macro, include...)")
                return TemplateIssue("syntax", f"template syntax: unknown tag `{{% {tag.name} %}}`", tag.line,
                                     tag.column, help)
            if tag.name.startswith("end"):
                opener = tag.name[3:]
                if any(t.name == opener for t in stack):
                    while stack and stack.pop().name != opener:
                        pass
            elif tag.name in _OPENERS and (tag.name != "set" or "=" not in tag.words):
                stack.append(tag)
    except jinja2.TemplateSyntaxError:
        return None
    if unknown is None and innermost and stack and stack[-1].name == innermost.group(1):
        return _unclosed(stack[-1], "the end of the template")
    return None


def _unclosed(tag: _Tag, reached: str) -> TemplateIssue:
    return TemplateIssue("syntax", f"template syntax: `{tag.shown}` is never closed: Jinja2 reached {reached} "
                                   f"still inside it", tag.line, tag.column,
                         f"add `{{% end{tag.name} %}}` where the {tag.name} should end, before {reached}")


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


def _bounded_text(path: Path) -> str:
    """A template file's text, read no further than the template size limit (ValueError past it)."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_TEMPLATE_BYTES + 1)
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
    return raw.decode("utf-8")


@lru_cache(maxsize=4096)
def _reads(root: Path, filename: str, _identity: Tuple[str, int, int]
           ) -> Tuple[FrozenSet[str], Tuple[str, ...], bool]:
    """(variables the template reads, templates it includes or extends, whether it has
    code outside its blocks), from its AST."""
    if check_file(root, root / filename) is not None:
        return frozenset(), (), False
    try:
        tree = environment(root).parse(_bounded_text(root / filename))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, jinja2.TemplateSyntaxError):
        return frozenset(), (), False
    refs = tuple(sorted(r for r in meta.find_referenced_templates(tree) if isinstance(r, str)))
    return frozenset(meta.find_undeclared_variables(tree)), refs, _has_top_level_code(tree)


@dataclass(frozen=True)
class VariantTest:
    """A comparison of `variant` with a name in a template: `variant == 'b'`."""

    file: str  # relative to the template folder: the email, or a partial it includes
    line: int
    column: int
    value: str
    text: str  # the comparison in words of the template: `variant == 'b'`


_VARIANT_OPS = {"eq": "==", "ne": "!=", "in": "in", "notin": "not in"}


def _variant_tests_in(tree: nodes.Template, filename: str, lines: List[str]) -> List[VariantTest]:
    out = []
    for node in tree.find_all(nodes.Compare):
        left = node.expr
        for operand in node.ops:
            right = operand.expr
            op = _VARIANT_OPS.get(operand.op)
            sides = [(left, right)] + ([(right, left)] if operand.op in ("eq", "ne") else [])
            for name, other in sides:
                if op is None or not (isinstance(name, nodes.Name) and name.name == "variant"):
                    continue
                items = other.items if isinstance(other, (nodes.List, nodes.Tuple)) else [other]
                for item in items:
                    if isinstance(item, nodes.Const) and isinstance(item.value, str):
                        line = item.lineno or node.lineno or 1
                        text = lines[line - 1] if 0 < line <= len(lines) else ""
                        quoted = next((q for q in (f"'{item.value}'", f'"{item.value}"') if q in text), "variant")
                        shown = f"variant {op} {item.value!r}" if op in ("==", "!=") else \
                            f"variant {op} [{', '.join(repr(i.value) for i in items if isinstance(i, nodes.Const))}]"
                        out.append(VariantTest(filename, line, _column(text, quoted), item.value, shown))
            left = right
    return out


@lru_cache(maxsize=4096)
def _variant_scan(root: Path, filename: str, _identity: Tuple[str, int, int]
                  ) -> Tuple[Tuple[VariantTest, ...], bool, Tuple[str, ...]]:
    """(comparisons of `variant` with a name, whether `variant` is read at all, the
    templates it includes or extends) of one file."""
    if check_file(root, root / filename) is not None:
        return (), False, ()
    try:
        source = _bounded_text(root / filename)
        tree = environment(root).parse(source)
        tests = tuple(_variant_tests_in(tree, filename, source.splitlines()))  # before meta: its code generator
        refs = tuple(sorted(r for r in meta.find_referenced_templates(tree) if isinstance(r, str)))  # folds constants
        reads = "variant" in meta.find_undeclared_variables(tree)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, MemoryError, jinja2.TemplateError):
        return (), False, ()  # what cannot be read or compiled is reported by the syntax and render rules
    return tests, reads, refs


def variant_tests(root: Path, name: str) -> Tuple[Tuple[VariantTest, ...], bool]:
    """Where an email (with the partials it includes) compares `variant` with a name,
    and whether it reads `variant` at all: an email that never does looks the same in
    every A/B variant."""
    base = os.fspath(root)
    seen: Set[str] = set()
    tests: List[VariantTest] = []
    reads = False
    todo = [f"{name}{SUFFIX}"]
    while todo and len(seen) < 64:
        filename = todo.pop()
        if filename in seen:
            continue
        seen.add(filename)
        found, read, refs = _variant_scan(root, filename, _identity(os.path.join(base, filename)))
        tests.extend(found)
        reads = reads or read
        todo.extend(refs)
    return tuple(tests), reads


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
        variables, refs, _top = _reads(root, filename, ident)
        reads |= variables
        todo.extend(refs)
    values = json.dumps({k: context.get(k) for k in sorted(reads)}, sort_keys=True, default=str)
    return (base, tuple(sorted(files.values())), values)


_RENDERED: Dict[Tuple[Any, ...], Any] = {}
_RENDER_CACHE_SIZE = 4096


class RenderClock:
    """What is left of the time one command may spend rendering templates."""

    def __init__(self, seconds: float = COMMAND_RENDER_SECONDS, scope: str = "this command's templates") -> None:
        self.seconds = seconds
        self.left = seconds
        self.scope = scope
        self.stall_left = min(STALL_SECONDS, seconds)  # time slow renders may still use


_CLOCKS: List[RenderClock] = []


@contextmanager
def render_session(clock: Optional[RenderClock] = None) -> Iterator[RenderClock]:
    """Renders inside share one clock (COMMAND_RENDER_SECONDS): past it, templates are
    not rendered but fail with a RenderFailure of kind `skipped`. Sessions nest; the
    outermost clock counts, so a command-wide session wins over a per-funnel one."""
    if _CLOCKS:
        yield _CLOCKS[0]
        return
    _CLOCKS.append(clock if clock is not None else RenderClock())
    try:
        yield _CLOCKS[0]
    finally:
        _CLOCKS.clear()


def render(root: Path, name: str, context: Mapping[str, Any]) -> Rendered:
    """Render every part of a template in the sandbox, in the worker process. Raises
    RenderFailure (or jinja2 errors, where there is no worker). Renders are pure, so
    they are remembered by `_render_key`."""
    key = _render_key(root, name, context)
    if key in _RENDERED:
        cached = _RENDERED[key]
        if isinstance(cached, Exception):
            raise cached
        return cached  # type: ignore[no-any-return]
    clock = _CLOCKS[0] if _CLOCKS else None
    if clock is not None and clock.left <= 0.05:
        raise RenderFailure(f"the {clock.seconds:g} s for rendering {clock.scope} ran out before it", 1, "skipped")
    if clock is not None and clock.stall_left <= 0.05:
        raise RenderFailure(f"the {STALL_SECONDS:g} s that slow templates may use together ran out before it",
                            1, "skipped")
    seconds = RENDER_SECONDS if clock is None else min(RENDER_SECONDS, clock.left)
    start = time.monotonic()
    try:
        filename = f"{name}{SUFFIX}"
        top_level = _reads(root, filename, _identity(os.path.join(os.fspath(root), filename)))[2]
        result: Any = render_box.run(_render_job, seconds, root, name, dict(context), seconds, top_level)
    except render_box.WorkerLost as lost:
        if lost.reason == "time":
            result = RenderFailure(f"rendering took longer than {seconds:g} s", 1, "time")
        else:
            result = RenderFailure(f"rendering needs more than {render_box.MEMORY_MB} MB of memory", 1, "memory")
    except Exception as exc:  # noqa: BLE001 - remembered and raised again, as it came
        result = exc
    if clock is not None:
        spent = time.monotonic() - start
        # A finished render costs the CPU time it took (a busy machine does not make it
        # dearer); anything else, the time it held the command up.
        clock.left -= result.cpu if isinstance(result, Rendered) else spent
        # A render that failed on its own (memory, size, an error) has its finding; what
        # counts is time: a render past its deadline, or one that finished slowly (by the
        # CPU time it took, so that a busy machine does not make fast templates slow).
        timed_out = isinstance(result, RenderFailure) and result.kind == "time"
        if timed_out:
            clock.stall_left -= spent
        elif isinstance(result, Rendered) and result.cpu > SLOW_RENDER_SECONDS:
            clock.stall_left -= result.cpu
    # A render cut short by what was left of the command's clock may pass with more time.
    if not (isinstance(result, RenderFailure) and result.kind == "time" and seconds < RENDER_SECONDS):
        if len(_RENDERED) >= _RENDER_CACHE_SIZE:
            _RENDERED.clear()
        _RENDERED[key] = result
    if isinstance(result, Exception):
        raise result
    return result  # type: ignore[no-any-return]


def _render_job(root: Path, name: str, context: Dict[str, Any], seconds: float,
                top_level: Optional[bool] = None) -> Rendered:
    """`_render`, run in the worker: failures come back as RenderFailure, located. The
    result carries the CPU time it took, which a busy machine does not inflate."""
    began = time.process_time()
    try:
        return dataclasses.replace(_render(root, name, context, seconds, top_level),
                                   cpu=time.process_time() - began)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - anything a template does is its failure
        path = root / f"{name}{SUFFIX}"
        line = error_line(exc, path)
        column = 1  # compiled templates map code back to lines only
        part = exc.part if isinstance(exc, RenderBudget) else ""
        if isinstance(exc, MemoryError):
            raise RenderFailure(f"rendering needs more than {render_box.MEMORY_MB} MB of memory", line,
                                "memory", column=column) from None
        if isinstance(exc, RenderBudget):
            kind = "time" if "longer than" in exc.message else "size"
            raise RenderFailure(exc.message, line, kind, part, column) from None
        if isinstance(exc, TooBig):
            raise RenderFailure(str(exc), line, "size", column=column) from None
        if isinstance(exc, jinja2.TemplateNotFound):
            message = f"it includes `{exc.name}`, which is not a file inside the template directory"
        elif isinstance(exc, RecursionError):
            message = ("it recurses or nests too deeply (a macro or include that calls itself, or data nested "
                       "thousands deep)")
        else:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise RenderFailure(message, line, "error", column=column) from None


def _render(root: Path, name: str, context: Mapping[str, Any], seconds: float = RENDER_SECONDS,
            top_level: Optional[bool] = None) -> Rendered:
    """Render in this process. `top_level`: whether the template has code outside its
    blocks, when the caller knows (found by parsing it otherwise)."""
    parts = {}
    with _deadline(seconds):
        for html in (False, True):
            template = environment(root, html).get_template(f"{name}{SUFFIX}")
            ctx = template.new_context(dict(context))
            if top_level is None and template.filename:
                top_level = _top_level_code(template.filename, _identity(template.filename))
            if top_level:
                # Parts render block by block, which skips code outside the blocks (`set`,
                # `macro`, `import`): run the whole template once so its names exist.
                _bounded(template.root_render_func(ctx), "template")
            for part in (("html",) if html else ("subject", "preheader", "text")):
                block = template.blocks.get(part)
                parts[part] = _bounded(block(ctx), part) if block else ""
    # Spaces and line ends around the subject are layout (`{% block subject %}` on its own
    # line); other separators (U+2028, NEL, VT, FF) are left for lint to see, not stripped.
    return Rendered(parts["subject"].strip(LAYOUT), parts["preheader"].strip(), parts["html"], parts["text"])


LAYOUT = " \t\r\n"


@lru_cache(maxsize=4096)
def _top_level_code(filename: str, _identity: Tuple[str, int, int] = ("", 0, 0)) -> bool:
    try:
        tree = environment(Path(filename).parent).parse(_bounded_text(Path(filename)))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, jinja2.TemplateSyntaxError):
        return False
    return _has_top_level_code(tree)


def _has_top_level_code(tree: nodes.Template) -> bool:
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
    if isinstance(exc, RenderFailure):
        return exc.line
    if isinstance(exc, RenderBudget) and exc.part:
        # Raised outside the template's code: point at the block that rendered too much.
        try:
            lines = _bounded_text(path).splitlines()
        except (OSError, UnicodeDecodeError, ValueError):
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
# lead or the customer, a lead magnet only in its delivery email and the confirmation
# email of its double opt-in, the confirmation link only in that one.
WITH_OWNER = ("sales", "onboarding", "retention", "expansion")
WITH_MAGNET = ("delivery", "confirmation")
WITH_CONFIRM = ("confirmation",)


def sample_context(funnel: Any, variant: Optional[str] = None, purpose: str = "nurture",
                   unsubscribe_url: str = UNSUBSCRIBE_PROBE,
                   lead_profile: Optional[Mapping[str, Any]] = None, email: str = "lead@example.com",
                   confirm_url: str = CONFIRM_PROBE) -> Dict[str, Any]:
    """The variables a template sees for an email sent for `purpose` (a sequence kind,
    `delivery`, or `confirmation`, which also gets `confirm_url`): the lead's profile
    (`lead_profile`, else sample values from the declared attributes) and address, and
    the rest."""
    lead = dict(lead_profile) if lead_profile is not None else {a.name: sample_value(a) for a in funnel.profile}
    lead["email"] = email
    s = funnel.sender
    sender = {"from": s.from_, "reply_to": s.reply_to or "", "postal_address": s.postal_address,
              "unsubscribe_url": s.unsubscribe_url or "", "timezone": s.timezone}
    out: Dict[str, Any] = {"lead": lead, "sender": sender, "unsubscribe_url": unsubscribe_url,
                           "variant": variant, "funnel": funnel.name}
    if purpose in WITH_OWNER:
        out["owner"] = {"name": "Sample Rep", "email": "rep@example.com"}
    if purpose in WITH_MAGNET:
        out["magnet"] = {"title": "Sample offer", "kind": "whitepaper", "name": "sample"}
    if purpose in WITH_CONFIRM:
        out["confirm_url"] = confirm_url
    return out
