"""CI runs the README's test command with nothing skipped."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def run_pytest(directory: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "FNL_REQUIRE_ALL"}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(directory)],
                          cwd=directory, capture_output=True, text=True, timeout=120, env=environ)


def test_require_all_turns_a_skip_into_a_failure_that_says_what_to_install(tmp_path: Path) -> None:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_tools.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "def test_needs_a_tool():\n    pytest.skip('frobnicate is not installed')\n\n"
        "@pytest.mark.skipif(True, reason='no frobnicate here')\n"
        "def test_marked():\n    pass\n", encoding="utf-8")
    relaxed = run_pytest(tmp_path)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "1 passed, 2 skipped" in relaxed.stdout
    strict = run_pytest(tmp_path, FNL_REQUIRE_ALL="1")
    assert strict.returncode == 1, strict.stdout
    assert "skipped, but FNL_REQUIRE_ALL=1 runs every test: frobnicate is not installed" in strict.stdout
    assert "no frobnicate here" in strict.stdout
    assert "apt-get install graphviz" in strict.stdout and "npm install` in tests/js" in strict.stdout


def test_ci_runs_the_readme_test_command_and_requires_every_test() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert '.venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest' in readme
    assert '-m pip install -q -e ".[test]"\n' in script
    assert script.rstrip().endswith('FNL_REQUIRE_ALL=1 "$work/venv/bin/python" -m pytest')
    assert os.access(REPO / ".ci" / "run", os.X_OK)
