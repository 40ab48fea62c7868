"""Compiled email templates are kept in fnl's cache folder between commands (`engine/cache.py`,
`templates._Compiled`), and never change what a template renders: each process below is a
new command, rendering real template files from disk."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from conftest import REPO

TEMPLATE = """{% block subject %}Hello {{ first_name }} ({{ version }}){% endblock %}
{% block text %}Text {{ version }} for {{ first_name }}{% endblock %}
{% block html %}<p>Html {{ version }} for {{ first_name }}</p>{% endblock %}
"""

RENDER = """
import json, sys
from pathlib import Path
from engine import templates
got = templates.render(Path(sys.argv[1]), "welcome", {"first_name": "<Ana>", "version": sys.argv[2]})
print(json.dumps({"subject": got.subject, "text": got.text, "html": got.html}))
"""


def render(root: Path, cache: str, version: str) -> Dict[str, str]:
    """One command's render of `root/welcome.j2`, with FNL_CACHE_DIR=cache."""
    env = {**os.environ, "FNL_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", RENDER, str(root), version], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    return json.loads(proc.stdout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "welcome.j2").write_text(TEMPLATE, encoding="utf-8")
    return folder


def entries(cache: Path) -> list:
    return sorted(p for p in cache.glob("templates-*/*") if p.is_file())


def test_templates_compile_once_and_are_read_back(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = render(root, str(cache), "1")
    assert first == {"subject": "Hello <Ana> (1)", "text": "Text 1 for <Ana>", "html": "<p>Html 1 for &lt;Ana&gt;</p>"}
    kept = entries(cache)
    assert len(kept) == 2, kept  # the text parts and the HTML part: two modes of the sandbox
    assert len({p.parent for p in kept}) == 2
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    assert render(root, str(cache), "1") == first
    assert {p: p.stat().st_mtime_ns for p in entries(cache)} == stamps  # read back, not written again


def test_an_edited_template_renders_its_new_text(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    render(root, str(cache), "1")
    (root / "welcome.j2").write_text(TEMPLATE.replace("Hello", "Welcome back"), encoding="utf-8")
    assert render(root, str(cache), "1")["subject"] == "Welcome back <Ana> (1)"


def test_a_damaged_or_unwritable_cache_only_means_compiling_again(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    expected = render(root, str(cache), "2")
    for path in entries(cache):
        path.write_bytes(b"not bytecode at all")
    assert render(root, str(cache), "2") == expected
    for path in entries(cache):
        path.write_bytes(path.read_bytes()[:12])  # cut short after the header
    assert render(root, str(cache), "2") == expected
    blocked = tmp_path / "a-file"
    blocked.write_text("x", encoding="utf-8")
    assert render(root, str(blocked / "below"), "2") == expected  # a folder under a file cannot be made
    assert render(root, "off", "2") == expected
    assert not list(Path(REPO).glob("off"))  # `off` is no folder name


def test_validate_keeps_its_templates_and_says_the_same(tmp_path: Path) -> None:
    """`fnl validate` of the example funnels, with a cold and then a warm cache: the same
    output, and the warm run compiles no template."""
    cache = tmp_path / "cache"
    env = {**os.environ, "FNL_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "fnl.py", "validate", "funnels/", "--format", "json"]
    cold = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert entries(cache), "nothing was kept"
    stamps = {p: p.stat().st_mtime_ns for p in entries(cache)}
    warm = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert (cold.returncode, cold.stdout) == (warm.returncode, warm.stdout)
    assert {p: p.stat().st_mtime_ns for p in entries(cache)} == stamps
