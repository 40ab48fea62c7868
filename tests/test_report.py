"""`fnl report --base REV`: the pull-request comment, from a real git repository with a
real change, checked with real parsers: markdown-it for the markdown, Mermaid's own parser
(Node, tests/js) for the graph."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from conftest import REPO, run_fnl
from test_graph import mermaid_parse


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.email=ci@example.com", "-c", "user.name=CI", *args],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The example funnels and templates, committed, then the reference funnel's MQL
    threshold lowered in the working tree."""
    shutil.copytree(REPO / "funnels", tmp_path / "funnels")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    path = tmp_path / "funnels" / "reference.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("mql: 40", "mql: 30", 1), encoding="utf-8")
    return tmp_path


def report(repo: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "report", "--base", "HEAD",
                           *args], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_comment_says_the_change_its_forecast_and_the_graph(repo: Path, tmp_path: Path) -> None:
    text = report(repo, "funnels/", "--leads", "600", "--runs", "3")
    assert text.startswith("<!-- fnl-report -->\n## fnl: what this change does (against `HEAD`)")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    # Only the changed definition: the others' plans are the same.
    assert headings[:2] == ["fnl: what this change does (against `HEAD`)", "fnl plan: `reference`"]
    assert not any("acme" in h or "newsletter" in h for h in headings)
    cells = [t.content for t in tokens if t.type == "inline"]
    assert "MQL threshold" in cells and "`40`" in cells and "`30`" in cells
    assert any(h.startswith("Forecast (NEW minus OLD") for h in headings)
    assert any(c.startswith("reached mql") for c in cells) and any(c.startswith("MQL rate") for c in cells)
    rows, row = [], []
    for t in tokens:
        if t.type == "tr_open":
            row = []
        elif t.type == "inline" and row is not None:
            row.append(t.content)
        elif t.type == "tr_close":
            rows.append(row)
    mql = next(r for r in rows if r and r[0].startswith("MQL rate"))
    assert mql[3].startswith("+") and "pp to" in mql[3]  # a lower threshold: more MQLs, with its interval
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.info for f in fences] == ["mermaid"]
    graph = tmp_path / "graph.mmd"
    graph.write_text(fences[0].content, encoding="utf-8")
    parsed = mermaid_parse(graph)
    assert parsed.returncode == 0 and parsed.stdout.startswith("ok"), parsed.stdout + parsed.stderr


def test_no_change_says_so(repo: Path) -> None:
    _git(repo, "commit", "-qam", "the change")
    text = report(repo, "funnels/reference.yaml")
    assert "No definition's plan changes" in text and "```mermaid" not in text


def test_a_base_that_does_not_exist_is_a_usage_error(repo: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "report", "--base", "no-such-rev", "funnels/"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "no-such-rev" in proc.stderr.splitlines()[0]
    assert "Traceback" not in proc.stderr
    assert run_fnl("report", "funnels/").returncode == 3  # --base is required
