"""`fnl lsp`: the language server editors start, on standard input and output.

Every finding of `fnl validate` (strict YAML, schema, every lint rule, templates) becomes
a diagnostic while you type: when a definition is opened, changed (after a short pause)
and saved. The checks are `fnl validate`'s own (`engine.check.check_source`, with the
lint settings of the nearest `fnl.toml` or `[tool.fnl]` and its baseline); nothing here
re-implements one.

Editors send what is in their buffers, saved or not. fnl's loader reads a definition's
files from disk, so while the server checks, reading one of them gives the open buffer's
text instead (`check_source`'s `buffers`): the same loader's checks (size bound,
encoding, strict YAML) apply to the buffer under the real file's name. For a split definition (a folder holding `funnel.yaml`), the section files
that are not open and the templates are read from disk as usual. Templates are always read
from disk: their findings follow the saved files, and saving a template checks the open
definitions again.

A problem belongs to the file its location names, so findings in a section file or in a
template (`.j2`) are published to that file. A YAML file is checked when it is part of a
split definition or, on its own, when it looks like a definition (a top-level `fnl:` or
`funnel:` key, or a modeline naming the funnel schema): other YAML (CI workflows, compose
files) and behaviour models get no diagnostics.

Quick fixes, where the fix is mechanical:
  * a "did you mean `X`?" finding (an unknown key, stage, attribute, predicate, sequence,
    template or enum value) replaces the misspelt word with `X`;
  * a `send:` (or `delivers:`, or a template predicate) naming a template that does not
    exist (FNL201) creates `<name>.j2` from a stub with the subject, HTML and text blocks,
    the postal address and the unsubscribe link.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from lsprotocol import types

from .. import templates
from ..check import Checked, check_source, without_baseline
from ..errors import FnlError, Location, Problem
from ..lint.registry import RULES
from ..lint.runner import Selection, check_codes
from ..load import MAX_BYTES
from ..sources import REFUSED, YAML_SUFFIXES, Source, discover, display_path, is_behaviour_model, real

try:  # pygls 2
    from pygls.lsp.server import LanguageServer
except ImportError:  # pragma: no cover - pygls 1.x
    from pygls.server import LanguageServer  # type: ignore[no-redef,attr-defined]
from pygls.uris import from_fs_path, to_fs_path

log = logging.getLogger(__name__)

NAME = "fnl"
SOURCE = "fnl"
# How long typing must pause before a changed buffer is checked.
DEBOUNCE_SECONDS = 0.25
# Files read to place findings that are in no open buffer (a section file, a template).
MAX_READ = MAX_BYTES
UNKNOWN_TEMPLATE = "FNL201"
# Findings about something defined and never used: shown faded, as editors show dead code.
UNUSED = frozenset(rule.ID for rule in RULES if rule.NAME.startswith("unused") or rule.NAME == "variant-unused")

SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}

# A single-file definition: a top-level `fnl:` or `funnel:` key, or the funnel schema's modeline.
_DEFINITION = re.compile(r"^(?:fnl|funnel)[ \t]*:|^#[ \t]*yaml-language-server:.*\b(?:funnel|section)\.schema\.json",
                         re.MULTILINE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WORD = re.compile(r"[\w.\-/]+")
_MEANT = re.compile(r"did you mean (?:`([^`]+)`|'([^']+)')\?")
_NAMED = re.compile(r"`([^`]+)`|'([^']+)'")
_MISSING_TEMPLATE = re.compile(r"template `([^`]+)` does not exist")


# -- checking buffers ---------------------------------------------------------------------


def looks_like_definition(text: str) -> bool:
    """Whether a YAML file on its own is a funnel definition (see the module's doc)."""
    return bool(_DEFINITION.search(text))


def source_of(path: Path, text: str) -> Optional[Source]:
    """The definition a YAML file belongs to (the whole split definition for a section
    file), or None when it is not a funnel definition."""
    if path.suffix not in YAML_SUFFIXES or is_behaviour_model(path.name):
        return None
    if not os.path.isfile(path):  # not saved yet: on its own
        return Source(display_path(path), (path,), path=path) if looks_like_definition(text) else None
    found = discover((str(path),))
    if not found:
        return None
    source = found[0]
    split = source.path is not None and source.path != path
    return source if split or looks_like_definition(text) else None


def check(source: Source, texts: Mapping[str, str]) -> Checked:
    """`fnl validate` for one definition, with open buffers in place of their files: the
    same lint settings (`fnl.toml` / `[tool.fnl]` nearest the definition) and baseline."""
    from .. import baseline, config

    settings = config.find(Path(source.files[0]).parent if source.files else None)
    if settings.source:
        check_codes(settings.select, f"{settings.source}: select")
        check_codes(settings.ignore, f"{settings.source}: ignore")
    selection = Selection(settings.select, settings.ignore)
    clock = templates.RenderClock(templates.CHECK_RENDER_SECONDS, scope="this definition's templates")
    buffers = {path: text.encode("utf-8", "replace") for path, text in texts.items()}
    with templates.render_session(clock):
        checked = check_source(source, selection, buffers)
    if settings.baseline:
        anchor = Path(settings.baseline)
        checked = without_baseline([checked], baseline.read(anchor), anchor.parent)[0]
    return checked


# -- positions ----------------------------------------------------------------------------


def lines_of(text: str) -> List[str]:
    """Lines as LSP counts them (\\n, \\r\\n and \\r end a line)."""
    return _LINE_BREAK.split(text)


def units(text: str, encoding: str) -> int:
    """The length of `text` in the position encoding agreed with the client."""
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True)
class Token:
    """What a finding underlines on its line (character offsets), and the part a rename
    replaces: the same, or inside the quotes of a quoted value."""

    start: int
    end: int
    inner_start: int
    inner_end: int

    def text(self, line: str) -> str:
        return line[self.inner_start:self.inner_end]


def token_at(line: str, column: int) -> Token:
    """The token at 0-based `column`: a quoted value, a name (letters, digits, `_ . - /`),
    a run of white space, or the characters up to the next space."""
    if not line:
        return Token(0, 0, 0, 0)
    if column >= len(line):
        return Token(len(line) - 1, len(line), len(line) - 1, len(line))
    ch = line[column]
    if ch in "'\"":
        i = column + 1
        while i < len(line):
            if ch == '"' and line[i] == "\\":
                i += 2
                continue
            if line[i] == ch:
                if ch == "'" and line[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return Token(column, i + 1, column + 1, i)
            i += 1
        return Token(column, len(line), column + 1, len(line))
    word = _WORD.match(line, column)
    if word:
        return Token(column, word.end(), column, word.end())
    end = column + 1
    if ch.isspace():
        while end < len(line) and line[end].isspace():
            end += 1
    else:
        while end < len(line) and not line[end].isspace():
            end += 1
    return Token(column, end, column, end)


def lsp_range(lines: List[str], line_no: int, start: int, end: int, encoding: str) -> types.Range:
    """The range of characters `start`..`end` of 0-based line `line_no`."""
    text = lines[line_no] if 0 <= line_no < len(lines) else ""
    return types.Range(types.Position(line_no, units(text[:start], encoding)),
                       types.Position(line_no, units(text[:end], encoding)))


# -- findings to diagnostics and fixes ------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """A quick fix for one diagnostic: a rename at `range` (of `old_text`, at characters
    `start`..`end` of line `line`), or creating `path` with `new_text`."""

    title: str
    range: Optional[types.Range] = None
    new_text: str = ""
    path: Optional[Path] = None
    old_text: str = ""
    line: int = 0
    start: int = 0
    end: int = 0

    def still_applies(self, text: str) -> bool:
        """Whether the word to rename is still where it was in `text`, the open buffer."""
        lines = lines_of(text)
        return self.line < len(lines) and lines[self.line][self.start:self.end] == self.old_text


@dataclass
class Found:
    """One definition's findings in one file: diagnostics, each with its fixes, and the
    buffer version they were computed from (None for what was read from disk)."""

    items: List[Tuple[types.Diagnostic, List[Fix]]]
    version: Optional[int]


def message_of(p: Problem) -> str:
    """The diagnostic's text: the message, the fix, and the less relevant alternatives."""
    out = p.message
    if p.help:
        out += f"\nfix: {p.help}"
    out += "".join(f"\nalso: {r}" for r in p.related)
    return out


def meant(p: Problem, word: str) -> Optional[str]:
    """The name a "did you mean `X`?" finding suggests for `word`, the token it points at:
    only a plain name, and only when the finding names `word` itself."""
    m = _MEANT.search(p.help)
    if m is None or not word:
        return None
    guess = m.group(1) or m.group(2)
    if guess.endswith("(…)"):
        guess = guess[:-len("(…)")]
    if guess == word or not _WORD.fullmatch(guess):
        return None
    named = [a or b for a, b in _NAMED.findall(p.message)]
    return guess if any(n == word or n == f"{word}(…)" for n in named) else None


# A draft for the author to write over: each placeholder says what belongs in its place.
TEMPLATE_STUB = """\
{{% block subject %}}(the subject of {name}){{% endblock %}}
{{% block preheader %}}(the line inboxes show after the subject){{% endblock %}}
{{% block html -%}}
<p>Hi,</p>
<p>(what this email says)</p>
{footer_html}{{%- endblock %}}
{{% block text -%}}
Hi,

(what this email says)

{footer_text}{{%- endblock %}}
"""


def template_stub(name: str) -> str:
    """A new email template: every part, with the postal address and unsubscribe link
    the compliance rules ask for (the same footer `fnl init` writes)."""
    from .starter import FOOTER_HTML, FOOTER_TEXT

    return TEMPLATE_STUB.format(name=name, footer_html=FOOTER_HTML.format(), footer_text=FOOTER_TEXT.format())


def missing_template(p: Problem, checked: Checked) -> Optional[Tuple[str, Path]]:
    """The template a FNL201 finding asks for and its file, when fnl may create it: a plain
    name inside the funnel's template folder, not there yet."""
    m = _MISSING_TEMPLATE.fullmatch(p.message) if p.code == UNKNOWN_TEMPLATE else None
    if m is None or checked.funnel is None:
        return None
    folder = Path(checked.funnel.template_dir)
    name = m.group(1)
    parts = name.split("/")
    if folder == REFUSED or not all(_WORD.fullmatch(part) and part not in (".", "..") for part in parts):
        return None
    path = folder.joinpath(*parts[:-1], parts[-1] + templates.SUFFIX)
    return None if os.path.lexists(path) else (name, path)


def diagnostic(p: Problem, lines: List[str], encoding: str,
               checked: Checked, fixable: bool) -> Tuple[types.Diagnostic, List[Fix]]:
    """One problem as a diagnostic on its own file (whose text is `lines`), with its fixes
    (renames only when `fixable`: the text is the one the editor shows)."""
    line_no = max(p.location.line - 1, 0)
    line = lines[line_no] if line_no < len(lines) else ""
    tok = token_at(line, max(p.location.column - 1, 0))
    diag = types.Diagnostic(
        range=lsp_range(lines, line_no, tok.start, tok.end, encoding),
        message=message_of(p),
        severity=SEVERITY.get(p.severity, types.DiagnosticSeverity.Error),
        code=p.code,
        source=SOURCE,
        tags=[types.DiagnosticTag.Unnecessary] if p.code in UNUSED else None,
    )
    fixes: List[Fix] = []
    word = tok.text(line)
    guess = meant(p, word) if fixable else None
    if guess is not None:
        fixes.append(Fix(f"Change `{word}` to `{guess}`",
                         lsp_range(lines, line_no, tok.inner_start, tok.inner_end, encoding), guess,
                         old_text=word, line=line_no, start=tok.inner_start, end=tok.inner_end))
    create = missing_template(p, checked)
    if create is not None:
        name, path = create
        fixes.append(Fix(f"Create template `{name}` ({display_path(path)}) from a stub", path=path,
                         new_text=template_stub(name)))
    return diag, fixes


def _read(path: Path) -> Optional[str]:
    """A file's text from disk (regular files only, bounded), or None."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_READ:
            return None
        with open(path, "rb") as fh:
            return fh.read(MAX_READ).decode("utf-8", "replace")
    except OSError:
        return None


# -- the server -----------------------------------------------------------------------------


class FnlServer(LanguageServer):  # type: ignore[misc]
    """The language server: checks, what it published, and the fixes behind them."""

    def __init__(self) -> None:
        from .. import __version__

        super().__init__(NAME, __version__)
        # uri -> definition key -> findings of that definition in that file
        self.found: Dict[str, Dict[str, Found]] = {}
        # uri of an open document -> the definition it was last checked as part of
        self.member: Dict[str, str] = {}
        self.pending: Dict[str, asyncio.TimerHandle] = {}
        self.shut_down = False

    # - documents -
    def text_of(self, uri: str) -> Tuple[str, Optional[int]]:
        doc = self.workspace.get_text_document(uri)
        return doc.source, doc.version

    def open_uris(self) -> List[str]:
        return list(self.workspace.text_documents.keys())

    def buffers(self) -> Tuple[Dict[str, str], Dict[str, str]]:
        """Open YAML buffers by real path, and the URI of every open file by real path."""
        texts: Dict[str, str] = {}
        uris: Dict[str, str] = {}
        for uri in self.open_uris():
            path = _path(uri)
            key = real(path) if path is not None else None
            if key is None:
                continue
            uris[key] = uri
            if path is not None and path.suffix in YAML_SUFFIXES:
                texts[key] = self.text_of(uri)[0]
        return texts, uris

    @property
    def encoding(self) -> str:
        value = getattr(self.workspace, "position_encoding", None)
        return str(getattr(value, "value", value) or "utf-16")

    # - scheduling -
    def schedule(self, uri: str, delay: float) -> None:
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.pending[uri] = loop.call_later(delay, self.check_now, uri)

    def check_now(self, uri: str) -> None:
        self.pending.pop(uri, None)
        try:
            self.check_uri(uri)
        except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the server
            log.exception("checking %s", uri)
            self.log(f"fnl: internal error while checking {uri}: {type(exc).__name__}: {exc}")

    def log(self, message: str) -> None:
        if hasattr(self, "window_log_message"):
            self.window_log_message(types.LogMessageParams(types.MessageType.Error, message))
        else:  # pragma: no cover - pygls 1.x
            getattr(self, "show_message_log")(message, types.MessageType.Error)

    def publish(self, uri: str) -> None:
        found = self.found.get(uri, {})
        diagnostics = [d for f in found.values() for d, _ in f.items]
        versions = {f.version for f in found.values()}
        version = versions.pop() if len(versions) == 1 else None
        if hasattr(self, "text_document_publish_diagnostics"):
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, diagnostics, version))
        else:  # pragma: no cover - pygls 1.x
            getattr(self, "publish_diagnostics")(uri, diagnostics, version)

    def record(self, key: str, by_uri: Dict[str, Found]) -> None:
        """Replace what definition `key` found, and publish every file that changed."""
        touched = set(by_uri)
        for uri, per_key in self.found.items():
            if key in per_key:
                touched.add(uri)
                del per_key[key]
        for uri, found in by_uri.items():
            self.found.setdefault(uri, {})[key] = found
        for uri in sorted(touched):
            self.publish(uri)
            if not self.found.get(uri):
                self.found.pop(uri, None)

    # - checking -
    def check_uri(self, uri: str) -> None:
        path = _path(uri)
        if path is None:
            return
        if path.suffix == templates.SUFFIX:
            self.recheck_definitions()
            return
        if path.suffix not in YAML_SUFFIXES or uri not in self.workspace.text_documents:
            return
        text, _ = self.text_of(uri)
        texts, uris = self.buffers()
        previous = self.member.get(uri)
        try:
            source = source_of(path, text)
        except FnlError as exc:
            self.usage_problem(uri, exc)
            return
        if source is None:
            self.member.pop(uri, None)
            if previous is not None:
                self.forget(previous)
            return
        self.record(f"usage:{uri}", {})  # a problem that stopped an earlier check is gone
        key = definition_key(source)
        if previous is not None and previous != key:
            self.forget(previous)
        for f in source.files:  # every open file of this definition is now checked as part of it
            member = uris.get(real(f) or "")
            if member is not None:
                self.member[member] = key
        self.member[uri] = key
        try:
            checked = check(source, texts)
        except FnlError as exc:
            self.usage_problem(uri, exc, key)
            return
        self.record(key, self.place(checked, texts, uris))

    def usage_problem(self, uri: str, exc: FnlError, key: Optional[str] = None) -> None:
        """A problem that stops a check (an unreadable settings file, too many files), on
        the first line of the document."""
        message = f"fnl: {exc.message}" + (f"\nfix: {exc.help}" if exc.help else "")
        diag = types.Diagnostic(types.Range(types.Position(0, 0), types.Position(0, 0)), message,
                                severity=types.DiagnosticSeverity.Error, source=SOURCE)
        self.record(key or f"usage:{uri}", {uri: Found([(diag, [])], None)})

    def place(self, checked: Checked, texts: Mapping[str, str], uris: Mapping[str, str]) -> Dict[str, Found]:
        """Every problem on the file it is in; every file of the definition is in the
        answer, with no diagnostics when it has no problems."""
        files = {display_path(f): f for f in checked.source.files}
        here = real(Path.cwd()) or os.getcwd()
        home = checked.source.files[0] if checked.source.files else None
        out: Dict[str, Found] = {}
        cache: Dict[str, Tuple[List[str], Optional[int], bool]] = {}

        def uri_of(path: Path) -> Tuple[str, str]:
            key = real(path) or os.path.abspath(path)
            return key, uris.get(key) or from_fs_path(os.path.abspath(path)) or path.as_uri()

        def text_for(key: str, uri: str) -> Tuple[List[str], Optional[int], bool]:
            if uri not in cache:
                if key in texts:
                    cache[uri] = (lines_of(texts[key]), self.text_of(uri)[1], True)
                else:
                    disk = _read(Path(key))
                    shown = self.text_of(uri)[0] if uri in self.workspace.text_documents else disk
                    cache[uri] = (lines_of(disk or ""), None, disk is not None and shown == disk)
            return cache[uri]

        for f in checked.source.files:
            _, uri = uri_of(f)
            version = self.text_of(uri)[1] if uri in self.workspace.text_documents else None
            out[uri] = Found([], version)
        for p in checked.problems:
            target = files.get(p.location.file)
            if target is None:
                target = Path(os.path.join(here, p.location.file))  # relative to the working folder, or absolute
            if not os.path.isfile(target) and (real(target) or "") not in texts and home is not None:
                # a folder (a link not followed, a folder too deep): said on the definition's first file
                p = Problem(p.code, f"{p.location.file}: {p.message}", Location(str(home), 1, 1),
                            p.path, p.help, p.severity, related=p.related)
                target = home
            key, uri = uri_of(target)
            lines, version, fixable = text_for(key, uri)
            found = out.setdefault(uri, Found([], version))
            found.items.append(diagnostic(p, lines, self.encoding, checked, fixable))
        return out

    def forget(self, key: str) -> None:
        """Withdraw a definition's findings (it is closed, or a file left it)."""
        self.record(key, {})

    def recheck_definitions(self) -> None:
        """Check every open definition again (a template changed on disk)."""
        seen: Set[str] = set()
        for uri in self.open_uris():
            key = self.member.get(uri)
            if key is not None and key not in seen:
                seen.add(key)
                self.check_now(uri)

    def fixes_at(self, uri: str, where: types.Range) -> List[Tuple[types.Diagnostic, Fix, Optional[int]]]:
        out: List[Tuple[types.Diagnostic, Fix, Optional[int]]] = []
        for found in self.found.get(uri, {}).values():
            for diag, fixes in found.items:
                if _overlaps(diag.range, where):
                    out.extend((diag, fix, found.version) for fix in fixes)
        return out


def definition_key(source: Source) -> str:
    where = source.path if source.path is not None else (source.files[0] if source.files else Path(source.name))
    return real(where) or os.path.abspath(where)


def _path(uri: str) -> Optional[Path]:
    if not uri.startswith("file:"):
        return None
    fs = to_fs_path(uri)
    return Path(fs) if fs else None


def _before(a: types.Position, b: types.Position) -> bool:
    return (a.line, a.character) < (b.line, b.character)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return not (_before(a.end, b.start) or _before(b.end, a.start))


def _supports(server: FnlServer, dotted: str) -> Any:
    value: Any = server.client_capabilities
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def code_actions(server: FnlServer, params: types.CodeActionParams) -> List[types.CodeAction]:
    """Quick fixes for the diagnostics in the requested range."""
    uri = params.text_document.uri
    document_changes = bool(_supports(server, "workspace.workspace_edit.document_changes"))
    operations = _supports(server, "workspace.workspace_edit.resource_operations") or []
    can_create = document_changes and types.ResourceOperationKind.Create in operations
    actions: List[types.CodeAction] = []
    shown = server.text_of(uri)[0] if uri in server.workspace.text_documents else None
    for diag, fix, version in server.fixes_at(uri, params.range):
        edit: Optional[types.WorkspaceEdit] = None
        if fix.path is None and fix.range is not None and (shown is None or fix.still_applies(shown)):
            change = types.TextEdit(fix.range, fix.new_text)
            if document_changes:
                edit = types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
                    types.OptionalVersionedTextDocumentIdentifier(uri, version), [change])])
            else:
                edit = types.WorkspaceEdit(changes={uri: [change]})
        elif fix.path is not None and can_create and not os.path.lexists(fix.path):
            new = from_fs_path(str(fix.path)) or fix.path.as_uri()
            edit = types.WorkspaceEdit(document_changes=[
                types.CreateFile(new, options=types.CreateFileOptions(overwrite=False, ignore_if_exists=False)),
                types.TextDocumentEdit(types.OptionalVersionedTextDocumentIdentifier(new, None),
                                       [types.TextEdit(types.Range(types.Position(0, 0), types.Position(0, 0)),
                                                       fix.new_text)]),
            ])
        if edit is not None:
            actions.append(types.CodeAction(fix.title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                                            edit=edit, is_preferred=fix.path is None))
    return actions


def make_server() -> FnlServer:
    server = FnlServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FnlServer, params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        if not uri.endswith(templates.SUFFIX):  # a template's findings are there already, from disk
            ls.schedule(uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FnlServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if not uri.endswith(templates.SUFFIX):  # templates are checked as saved
            ls.schedule(uri, DEBOUNCE_SECONDS)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: FnlServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FnlServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        pending = ls.pending.pop(uri, None)
        if pending is not None:
            pending.cancel()
        key = ls.member.pop(uri, None)
        if key is None:
            return
        others = [u for u, k in ls.member.items() if k == key and u in ls.workspace.text_documents]
        if others:
            ls.schedule(others[0], 0)  # the rest of the definition is still open: as on disk now
        else:
            ls.forget(key)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    def code_action(ls: FnlServer, params: types.CodeActionParams) -> List[types.CodeAction]:
        return code_actions(ls, params)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: FnlServer, *args: Any) -> None:
        ls.shut_down = True
        for handle in ls.pending.values():
            handle.cancel()
        ls.pending.clear()

    return server


def serve() -> None:
    """Run the server on standard input and output until the client says `exit`."""
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by mistake must not corrupt the protocol
    server = make_server()
    server.start_io(sys.stdin.buffer, protocol_out)
    if not server.shut_down:  # exit without shutdown (or the client went away): 1, as LSP says
        raise SystemExit(1)
