"""Shared helpers: where the repository is, how to run the CLI, and a minimal funnel.

Tests import the engine from the repository root (not an installed copy), so the root
goes on sys.path first; the CLI runs as a real subprocess from the same root.

A few tests check fnl's output with real outside tools and skip where one is missing.
With FNL_REQUIRE_ALL=1 (CI sets it, in .ci/run) a skip fails instead, saying what to install.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CASES = REPO / "tests" / "cases"

# A small definition that passes the schema and every lint rule, as users would write it.
MINIMAL = """\
fnl: 1
funnel: acme-b2b
sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield"}
stages: [subscriber, customer]
transitions: [{from: subscriber, to: customer, on: crm.deal_won}]
entries: {imported: {on: lead.imported, enters: subscriber, basis: legitimate_interest}}
"""


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment for a subprocess: no CI format switch and no colour switch unless asked for."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "FORCE_COLOR", "NO_COLOR")}
    env.update(extra)
    return env


def run_fnl(*args: Union[str, Path], env: Optional[Dict[str, str]] = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """`python fnl.py ARGS` from the repository root, as a user or CI would run it."""
    return subprocess.run(
        [sys.executable, "fnl.py", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=env if env is not None else clean_env(),
    )


def write(directory: Path, name: str, content: Union[str, bytes]) -> Path:
    """Write a file (creating parent folders) and return its path."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def check(*paths: Union[str, Path]):
    """Every problem the `validate` pipeline finds under `paths`."""
    from engine.check import check_paths

    return [p for checked in check_paths(tuple(str(p) for p in paths)) for p in checked.problems]


def spots(problems: Sequence) -> List[Tuple[str, int, int]]:
    """(code, line, column) of each problem, sorted."""
    return sorted((p.code, p.location.line, p.location.column) for p in problems)


REQUIRE_ALL = os.environ.get("FNL_REQUIRE_ALL", "") not in ("", "0")
WHOLE_SUITE = ("the whole suite needs the test extra (pip install -e \".[test]\"), git, Graphviz `dot` "
               "(apt-get install graphviz), and node 20.19+ with npm and `npm install` in tests/js "
               "(Mermaid's parser, yaml-language-server); .ci/run installs all of them")


def _no_skipping(report: pytest.TestReport | pytest.CollectReport) -> None:
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
        report.outcome = "failed"
        report.longrepr = f"skipped, but FNL_REQUIRE_ALL=1 runs every test: {reason}\n{WHOLE_SUITE}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    _no_skipping(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    _no_skipping(outcome.get_result())


@pytest.fixture(autouse=True)
def _no_ci_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI calls must not pick the GitHub format because CI runs on Actions, nor
    colour their output because the shell running the tests asks for colour."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def built_package(tmp_path: Path) -> Path:
    """The package as setuptools' build of it (what pip installs, from pyproject.toml) lays
    it out, in `tmp_path/lib`."""
    import shutil

    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name in ("pyproject.toml", "README.md", "fnl.py"):
        shutil.copy2(REPO / name, src / name)
    for name in ("engine", "schemas"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import setup; "
                            f"sys.argv = ['setup.py', '-q', 'build_py', '--build-lib', {str(lib)!r}]; setup()"],
                           cwd=src, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    return lib


def open_offline(path: Path, inspect: Any, viewport: Tuple[int, int] = (1200, 900)) -> Tuple[Any, List[str]]:
    """Open a page in Debian's headless Chromium (playwright) with every request that
    would leave it aborted: (what `inspect(page)` returns, the console errors and
    warnings, page errors and requests that tried to leave). Skips without Chromium or
    playwright (FNL_REQUIRE_ALL turns that into a failure)."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install -e \".[test]\")")
    problems: List[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("file:", "data:", "about:")):
            r.continue_()
        else:
            problems.append(f"request left the page: {url}")
            r.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.route("**/*", route)
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_load_state("networkidle")
            got = inspect(page)
        finally:
            browser.close()
    return got, problems


# -- real servers on loopback, for the runtime's tests ------------------------------------

@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback (aiosmtpd): (its port, the messages it accepted)."""
    import socket

    controller_mod = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is not installed (the test extra)")
    got: List[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            got.append(envelope.content)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = controller_mod.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, got
    finally:
        controller.stop()


@pytest.fixture
def receiver():
    """A real HTTP server on loopback that records every request; each new idempotency key
    is answered 503 twice before 200 (so every delivery is retried), and every request to
    /down is answered 500."""
    import http.server
    import threading

    seen: List[Tuple[str, Dict[str, str], bytes]] = []
    tries: Dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, dict(self.headers), body))
            key = self.headers.get("Idempotency-Key", "")
            tries[key] = tries.get(key, 0) + 1
            self.send_response(500 if self.path == "/down" else 503 if tries[key] <= 2 else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
