"""`fnl lsp`: a real LSP session over standard input and output with `python fnl.py lsp`.

The client here writes the JSON-RPC framing itself (Content-Length headers), so the test
sees exactly the bytes an editor would. Every read has a deadline: a server that hangs
fails the test instead of hanging the suite. Definitions are copies of the repository's
own (the reference funnel, the split acme funnel) with their templates beside them, so
the relative `templates:` paths work as they do in the repository.
"""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import REPO

pytest.importorskip("pygls", reason="fnl lsp needs pygls: pip install -e '.[lsp]'")

from engine.authoring import lsp  # noqa: E402
from engine.errors import Location, Problem  # noqa: E402

WAIT = 30.0  # seconds any one answer may take before the test fails


class Client:
    """An LSP client over a pipe to `python fnl.py lsp`."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "fnl.py", "lsp"], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.inbox: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.published: List[Dict[str, Any]] = []  # every publishDiagnostics, in order
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            headers: Dict[str, str] = {}
            while True:
                line = out.readline()
                if not line:
                    self.inbox.put(None)
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                headers[name.strip().lower()] = value.strip()
            self.inbox.put(json.loads(out.read(int(headers["content-length"])).decode("utf-8")))

    def send(self, message: Dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: Dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def _next(self, deadline: float) -> Dict[str, Any]:
        try:
            message = self.inbox.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"no answer from fnl lsp within {WAIT:g} s; stderr:\n{self.stderr()}") from None
        if message is None:
            raise AssertionError(f"fnl lsp closed its output; stderr:\n{self.stderr()}")
        if message.get("method") == "textDocument/publishDiagnostics":
            self.published.append(message["params"])
        elif "method" in message and "id" in message:  # a request from the server: nothing to add
            self.send({"id": message["id"], "result": None})
        return message

    def request(self, method: str, params: Any) -> Any:
        self.ids += 1
        ident = self.ids
        self.send({"id": ident, "method": method, "params": params})
        deadline = time.monotonic() + WAIT
        while True:
            message = self._next(deadline)
            if message.get("id") == ident and "method" not in message:
                assert "error" not in message, message
                return message.get("result")

    def mark(self) -> int:
        """Where the diagnostics published from now on start. A request answered first
        is a barrier: what the server wrote before its answer has been read."""
        self.request("textDocument/codeAction", {"textDocument": {"uri": "file:///barrier.yaml"},
                                                 "range": {"start": {"line": 0, "character": 0},
                                                           "end": {"line": 0, "character": 0}},
                                                 "context": {"diagnostics": []}})
        return len(self.published)

    def diagnostics(self, uri: str, since: int, version: Optional[int] = None) -> List[Dict[str, Any]]:
        """The first diagnostics published for `uri` after mark `since` (for `version`)."""
        deadline = time.monotonic() + WAIT
        seen = since
        while True:
            for params in self.published[seen:]:
                if params["uri"] == uri and (version is None or params.get("version") == version):
                    return list(params["diagnostics"])
            seen = len(self.published)
            self._next(deadline)

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")[-4000:]

    def close(self) -> int:
        """shutdown, then exit: the server's exit status (after checking that it logged
        no traceback)."""
        assert self.request("shutdown", None) is None
        self.send({"method": "exit"})
        try:
            code = self.proc.wait(timeout=WAIT)
        finally:
            self.kill()
        assert "Traceback" not in self.stderr(), self.stderr()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)
        if not self.log.closed:
            self.log.close()


CAPABILITIES = {
    "general": {"positionEncodings": ["utf-16"]},
    "textDocument": {
        "synchronization": {"didSave": True, "dynamicRegistration": False},
        "publishDiagnostics": {"versionSupport": True, "relatedInformation": False},
        "codeAction": {"codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["quickfix"]}}},
    },
    "workspace": {"workspaceEdit": {"documentChanges": True, "resourceOperations": ["create"]}},
}


@pytest.fixture
def client(tmp_path: Path):
    c = Client(tmp_path / "lsp-stderr.log")
    result = c.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": CAPABILITIES})
    caps = result["capabilities"]
    assert caps["codeActionProvider"] and caps["textDocumentSync"]["save"] is not None
    c.notify("initialized", {})
    yield c
    c.kill()


class Doc:
    """An open document: its text and version, kept as the editor keeps them."""

    def __init__(self, client: Client, path: Path, text: Optional[str] = None) -> None:
        self.client, self.path, self.uri = client, path, path.as_uri()
        self.text = path.read_text(encoding="utf-8") if text is None else text
        self.version = 1
        since = client.mark()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": self.uri, "languageId": "yaml",
                                                                "version": 1, "text": self.text}})
        self.opened = since

    def change(self, text: str) -> int:
        since = self.client.mark()
        self.version += 1
        self.text = text
        self.client.notify("textDocument/didChange", {"textDocument": {"uri": self.uri, "version": self.version},
                                                      "contentChanges": [{"text": text}]})
        return since

    def replace(self, old: str, new: str) -> int:
        assert old in self.text, old
        return self.change(self.text.replace(old, new, 1))

    def save(self) -> int:
        since = self.client.mark()
        self.path.write_text(self.text, encoding="utf-8")
        self.client.notify("textDocument/didSave", {"textDocument": {"uri": self.uri}})
        return since

    def current(self, since: int) -> List[Dict[str, Any]]:
        """The diagnostics for this document's current version."""
        return self.client.diagnostics(self.uri, since, self.version)

    def position(self, needle: str, line_hint: str = "") -> Dict[str, int]:
        """Where `needle` starts (on the first line containing `line_hint` and `needle`)."""
        for n, line in enumerate(self.text.split("\n")):
            if needle in line and line_hint in line:
                return {"line": n, "character": line.index(needle)}
        raise AssertionError(needle)


def apply(text: str, edits: List[Dict[str, Any]]) -> str:
    """`text` with LSP text edits applied (ASCII text: characters are UTF-16 units)."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(pos: Dict[str, int]) -> int:
        return starts[pos["line"]] + pos["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        text = text[:offset(edit["range"]["start"])] + edit["newText"] + text[offset(edit["range"]["end"]):]
    return text


def reference_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    (tmp_path / "funnels").mkdir()
    shutil.copy(REPO / "funnels" / "reference.yaml", tmp_path / "funnels" / "reference.yaml")
    return tmp_path / "funnels" / "reference.yaml"


def quick_fixes(client: Client, doc: Doc, diag: Dict[str, Any]) -> List[Dict[str, Any]]:
    actions = client.request("textDocument/codeAction", {
        "textDocument": {"uri": doc.uri}, "range": diag["range"],
        "context": {"diagnostics": [diag], "only": ["quickfix"]}})
    return [a for a in actions or [] if a.get("kind") == "quickfix"]


def only(diagnostics: List[Dict[str, Any]], code: str) -> Dict[str, Any]:
    found = [d for d in diagnostics if d.get("code") == code]
    assert len(found) == 1, diagnostics
    return found[0]


def test_a_session_on_the_reference_funnel(client: Client, tmp_path: Path) -> None:
    funnel = reference_copy(tmp_path)
    workflow = tmp_path / "ci.yml"
    workflow.write_text("name: ci\non: [push]\njobs: {}\n", encoding="utf-8")
    other = Doc(client, workflow)  # YAML that is not a funnel: fnl says nothing about it
    doc = Doc(client, funnel)
    assert doc.current(doc.opened) == []
    assert all(p["uri"] != other.uri for p in client.published)

    # A misspelt section: the schema's finding, on the key, with the fix; the quick fix renames it.
    since = doc.replace("\nsequences:", "\nsequnces:")
    diag = only(doc.current(since), "FNL100")
    where = doc.position("sequnces:")
    assert diag["range"] == {"start": where, "end": {"line": where["line"], "character": len("sequnces")}}
    assert diag["source"] == "fnl" and diag["severity"] == 1
    assert diag["message"] == "unknown key `sequnces` at the top level\nfix: did you mean `sequences`?"
    [fix] = quick_fixes(client, doc, diag)
    assert fix["title"] == "Change `sequnces` to `sequences`" and fix["isPreferred"]
    [change] = fix["edit"]["documentChanges"]
    assert change["textDocument"] == {"uri": doc.uri, "version": doc.version}
    since = doc.change(apply(doc.text, change["edits"]))
    assert "\nsequences:" in doc.text and doc.current(since) == []

    # Lint findings, not only the schema's: a transition to an unknown stage, an unknown attribute.
    since = doc.replace("    to: sql\n", "    to: sqll\n")
    diagnostics = doc.current(since)
    stage = only(diagnostics, "FNL204")
    assert stage["range"]["start"] == doc.position("sqll") and stage["range"]["end"]["character"] == \
        doc.position("sqll")["character"] + 4
    assert "did you mean `sql`?" in stage["message"]
    [fix] = quick_fixes(client, doc, stage)
    since = doc.change(apply(doc.text, fix["edit"]["documentChanges"][0]["edits"]))
    assert doc.current(since) == []
    since = doc.replace("score >= thresholds.mql", "scor >= thresholds.mql")
    attribute = only(doc.current(since), "FNL208")
    assert attribute["range"]["start"] == doc.position("scor >=")
    assert attribute["message"] == ("`scor` is not a profile attribute or engine name\nfix: did you mean `score`?")
    [fix] = quick_fixes(client, doc, attribute)
    since = doc.change(apply(doc.text, fix["edit"]["documentChanges"][0]["edits"]))
    assert doc.current(since) == []

    # A `send:` to a template that does not exist: the quick fix creates it from a stub.
    day7 = tmp_path / "templates" / "reference" / "sales" / "day-7.j2"
    since = doc.replace("send: sales/day-7}", "send: sales/follow-up}")
    missing = only(doc.current(since), "FNL201")
    assert missing["range"]["start"] == doc.position("sales/follow-up")
    assert missing["range"]["end"]["character"] == doc.position("sales/follow-up")["character"] + len("sales/follow-up")
    assert missing["message"].startswith("template `sales/follow-up` does not exist")
    # day-7 is now sent by no one: that finding is in the template, and published there.
    unused = only(client.diagnostics(day7.as_uri(), since), "FNL209")
    assert unused["message"].startswith("template `sales/day-7` is never sent") and unused["severity"] == 2
    [create] = [f for f in quick_fixes(client, doc, missing) if f["title"].startswith("Create template")]
    new_file, text_edit = create["edit"]["documentChanges"]
    target = tmp_path / "templates" / "reference" / "sales" / "follow-up.j2"
    assert new_file == {"kind": "create", "uri": target.as_uri(),
                        "options": {"overwrite": False, "ignoreIfExists": False}}
    assert text_edit["textDocument"]["uri"] == target.as_uri()
    stub = apply("", text_edit["edits"])
    for part in ("{% block subject %}", "{% block html", "{% block text", "{{ unsubscribe_url }}",
                 "{{ sender.postal_address }}"):
        assert part in stub
    target.write_text(stub, encoding="utf-8")  # as the editor applies the edit, then saves the file
    template = Doc(client, target, stub)
    since = template.save()  # saving a template checks the open definitions again
    assert doc.current(since) == []
    client.mark()  # the stub is a complete email: no finding in it either
    assert all(not p["diagnostics"] for p in client.published[since:] if p["uri"] == target.as_uri())
    since = doc.replace("send: sales/follow-up}", "send: sales/day-7}")
    assert doc.current(since) == []
    assert client.diagnostics(day7.as_uri(), since) == []  # cleared: day-7 is sent again
    assert only(client.diagnostics(target.as_uri(), since), "FNL209")["message"].startswith(
        "template `sales/follow-up` is never sent")
    client.notify("textDocument/didClose", {"textDocument": {"uri": template.uri}})
    target.unlink()
    since = doc.save()
    assert doc.current(since) == []
    assert client.diagnostics(target.as_uri(), since) == []

    # Malformed YAML: one diagnostic, where the fix is, and the server goes on.
    good = doc.text
    since = doc.replace("  decay: {factor", "\tdecay: {factor")
    [tab] = doc.current(since)
    assert tab["code"] == "FNL002" and "tab" in tab["message"]
    assert tab["range"]["start"] == {"line": doc.position("\tdecay")["line"], "character": 0}
    since = doc.change(good + 'extra: "never closed\n')
    [quote] = doc.current(since)
    assert quote["code"] == "FNL002" and "never closed" in quote["message"]
    assert quote["range"]["start"] == doc.position('"never closed')
    since = doc.change(good)
    assert doc.current(since) == []

    # Saving checks the file as saved.
    since = doc.save()
    assert doc.current(since) == []
    assert client.close() == 0


def test_a_split_definition_publishes_to_its_section_files(client: Client, tmp_path: Path) -> None:
    shutil.copytree(REPO / "funnels" / "acme", tmp_path / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", tmp_path / "templates" / "acme")
    folder = tmp_path / "funnels" / "acme"
    nurture = Doc(client, folder / "nurture.yaml")  # a section file: checked as its whole definition
    assert nurture.current(nurture.opened) == []

    since = nurture.replace("    segment: saas\n", "    segment: saass\n")
    diag = only(nurture.current(since), "FNL202")
    assert diag["range"]["start"] == nurture.position("saass")
    assert diag["message"] == "segment `saass` is not defined\nfix: did you mean `saas`?"
    # `saas` is now used by no sequence: that finding is in funnel.yaml (not open), and published there.
    root_uri = (folder / "funnel.yaml").as_uri()
    unused = only(client.diagnostics(root_uri, since), "FNL210")
    assert unused["message"].startswith("segment `saas` is not used by any sequence")
    assert unused["range"]["start"] == {"line": 79, "character": 2}  # `  saas:` under `segments:`
    [fix] = quick_fixes(client, nurture, diag)
    since = nurture.change(apply(nurture.text, fix["edit"]["documentChanges"][0]["edits"]))
    assert nurture.current(since) == [] and client.diagnostics(root_uri, since) == []

    # Two unsaved buffers of one definition are checked together: a segment renamed in
    # nurture.yaml is wrong until funnel.yaml (also open, also unsaved) defines it.
    since = nurture.replace("    segment: saas\n", "    segment: software\n")
    unknown = only(nurture.current(since), "FNL202")
    assert unknown["range"]["start"] == nurture.position("software", "segment:")
    root = Doc(client, folder / "funnel.yaml")
    assert only(root.current(root.opened), "FNL210")["message"].startswith("segment `saas` is not used")
    since = root.replace("segments:\n  saas:", "segments:\n  software:")
    assert root.current(since) == [] and client.diagnostics(nurture.uri, since) == []
    assert "  software:" not in (folder / "funnel.yaml").read_text(encoding="utf-8")  # on disk: as it was
    since = root.change(root.path.read_text(encoding="utf-8"))
    assert only(root.current(since), "FNL210") and only(client.diagnostics(nurture.uri, since), "FNL202")
    since = nurture.change(nurture.path.read_text(encoding="utf-8"))
    assert nurture.current(since) == [] and client.diagnostics(root.uri, since) == []

    since = nurture.save()
    assert nurture.current(since) == []
    assert client.close() == 0


@pytest.mark.parametrize("line, column, underlined", [
    ("sequnces:", 0, "sequnces"),
    ("    when: \"fit and scor >= thresholds.mql\"", 19, "scor"),
    ("    when: \"score >= thresholds.mqll\"", 20, "thresholds.mqll"),
    ("  - {wait: 0d, send: 'sales/day-22'}", 21, "'sales/day-22'"),
    ("\tdecay: {factor: 0.98}", 0, "\t"),
    ("{% block subject %}", 0, "{%"),
    ("ends here", 9, "e"),
    ("", 0, ""),
])
def test_a_finding_underlines_its_token(line: str, column: int, underlined: str) -> None:
    token = lsp.token_at(line, column)
    assert line[token.start:token.end] == underlined


def test_a_rename_is_offered_only_for_the_word_the_finding_names() -> None:
    def problem(message: str, help: str) -> Problem:
        return Problem("FNL100", message, Location("f.yaml"), help=help)

    assert lsp.meant(problem("unknown key `sequnces` at the top level", "did you mean `sequences`?"),
                     "sequnces") == "sequences"
    assert lsp.meant(problem("`repliedd(…)` is not an engine predicate", "did you mean `replied(…)`?"),
                     "repliedd") == "replied"
    assert lsp.meant(problem("`industry` can never be 'financ'", "did you mean 'finance'?"), "financ") == "finance"
    # Not the word under the finding, or not a plain name: no edit.
    assert lsp.meant(problem("unknown key `sequnces` at the top level", "did you mean `sequences`?"), "fnl") is None
    assert lsp.meant(problem("`half_life: 3h` decays too fast", "did you mean `half_life: 3d`?"), "half_life") is None


def test_positions_count_utf16_units() -> None:
    assert lsp.units("subject: 🚀 ", "utf-16") == len("subject: ") + 2 + 1
    assert lsp.units("subject: 🚀 ", "utf-32") == len("subject: ") + 2
    assert lsp.units("é", "utf-8") == 2
