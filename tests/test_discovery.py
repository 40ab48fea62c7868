"""Which files a search of a folder reads: not what git ignores, not dependency, cache and
virtual-environment folders, not behaviour models; and always a path named on the
command line. The repositories are real (`git init` in tmp_path)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import MINIMAL, REPO, run_fnl, write
from engine import sources
from engine.sources import Skipped, discover, git_ignored

BROKEN = "fnl: 1\nfunnel: Not A Slug\n"


def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.example", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


def names(paths, top: Path) -> List[str]:
    found = [f for s in discover(tuple(str(p) for p in paths)) for f in s.files]
    return sorted(Path(os.path.relpath(os.path.abspath(f), top)).as_posix() for f in found)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a funnel, and broken YAML wherever a search must not look."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    write(root, ".gitignore", "build/\nout-*/\n*.local.yaml\n")
    write(root, "funnels/acme.yaml", MINIMAL)
    write(root, "funnels/build/generated.yaml", BROKEN)       # ignored folder
    write(root, "funnels/out-1/x.yml", BROKEN)                 # ignored by pattern
    write(root, "funnels/draft.local.yaml", BROKEN)            # ignored file
    write(root, "node_modules/pkg/action.yml", BROKEN)         # vendored, even if not ignored
    write(root, "funnels/__pycache__/x.yaml", BROKEN)
    write(root, "env1/pyvenv.cfg", "home = /usr/bin\n")        # a virtual environment by any name
    write(root, "env1/lib/site.yaml", BROKEN)
    write(root, "funnels/acme.behavior.yaml", "leads: 100\n")  # a behaviour model beside its funnel
    git("init", "-q", cwd=root)
    return root


def test_a_search_skips_ignored_vendored_and_behaviour_files(repo, monkeypatch):
    monkeypatch.chdir(repo)
    assert names(["."], repo) == ["funnels/acme.yaml"]
    result = run_fnl("validate", repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "Checked 1 definition: no problems.\n"


def test_tracked_files_are_read_even_where_git_ignores_their_folder(repo, monkeypatch):
    git("add", "-f", "funnels/build/generated.yaml", cwd=repo)
    monkeypatch.chdir(repo)
    assert names(["funnels"], repo) == ["funnels/acme.yaml", "funnels/build/generated.yaml"]


def test_a_folder_named_on_the_command_line_is_always_searched(repo, monkeypatch):
    monkeypatch.chdir(repo)
    assert names(["funnels/build"], repo) == ["funnels/build/generated.yaml"]
    assert names(["node_modules"], repo) == ["node_modules/pkg/action.yml"]
    assert names(["node_modules/pkg/action.yml", "funnels/draft.local.yaml"], repo) == [
        "funnels/draft.local.yaml", "node_modules/pkg/action.yml"]
    result = run_fnl("validate", repo / "funnels" / "build")
    assert result.returncode == 1 and "generated.yaml:2:9: error FNL104" in result.stdout


def test_git_ignored_names_what_git_ignores(repo):
    skipped = git_ignored(repo / "funnels")
    assert skipped.paths == {repo / "funnels" / p for p in ("build", "out-1", "draft.local.yaml")}
    assert git_ignored(repo / "funnels" / "build") == Skipped()  # named itself: nothing skipped


def test_without_git_or_outside_a_repository_only_vendored_folders_are_skipped(repo, tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    write(plain, "a.yaml", MINIMAL)
    write(plain, "build/b.yaml", MINIMAL)
    write(plain, "node_modules/c.yaml", BROKEN)
    assert git_ignored(plain) == Skipped()
    assert names([plain], plain) == ["a.yaml", "build/b.yaml"]
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert git_ignored(repo) == Skipped()
    monkeypatch.chdir(repo)
    assert "funnels/build/generated.yaml" in names(["funnels"], repo)


@pytest.mark.skipif(os.name != "posix", reason="the stand-in git is a shell script")
def test_a_git_that_fails_or_hangs_skips_nothing_and_is_stopped(repo, tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    write(fake, "git", "#!/bin/sh\nsleep 30\n").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sources, "GIT_TIMEOUT", 0.3)
    import time

    started = time.monotonic()
    assert git_ignored(repo) == Skipped()
    assert time.monotonic() - started < 5
    write(fake, "git", "#!/bin/sh\necho 'fatal: broken' >&2\nexit 128\n")
    assert git_ignored(repo) == Skipped()


def test_a_repository_fsmonitor_is_not_run(repo, tmp_path):
    marker = tmp_path / "ran"
    hook = write(tmp_path, "hook.sh", f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git("config", "core.fsmonitor", str(hook), cwd=repo)
    assert git_ignored(repo / "funnels").paths
    assert not marker.exists()


def test_a_split_definition_never_merges_ignored_vendored_or_behaviour_files(repo, monkeypatch):
    split = repo / "funnels" / "split"
    write(split, "funnel.yaml", MINIMAL)
    write(split, "sequences.behavior.yml", "sequences: {x: 1}\n")
    write(split, "build/extra.yaml", "funnel: other\n")
    write(split, "node_modules/extra.yaml", "funnel: other\n")
    monkeypatch.chdir(repo)
    [source] = [s for s in discover(("funnels",)) if s.name.endswith("split")]
    assert [f.as_posix() for f in source.files] == ["funnels/split/funnel.yaml"]
    result = run_fnl("validate", split)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_behaviour_model_named_on_the_command_line_is_a_usage_error(repo):
    result = run_fnl("validate", repo / "funnels" / "acme.behavior.yaml")
    assert result.returncode == 3
    assert "is a behaviour model (*.behavior.yaml), not a funnel definition" in result.stderr
    assert "fnl simulate" in result.stderr


def test_a_folder_holding_only_skipped_files_says_what_is_skipped(tmp_path):
    write(tmp_path, "node_modules/a.yaml", BROKEN)
    write(tmp_path, "m.behavior.yaml", "leads: 1\n")
    result = run_fnl("validate", tmp_path)
    assert result.returncode == 3
    assert "no YAML files" in result.stderr and "*.behavior.yaml" in result.stderr


def test_this_repository_validates_without_reading_node_modules(monkeypatch):
    if not (REPO / "tests" / "js" / "node_modules").is_dir():
        pytest.skip("tests/js/node_modules is not installed (npm install in tests/js)")
    monkeypatch.chdir(REPO)
    files = [f.as_posix() for s in discover(("tests",)) for f in s.files]
    assert files and not [f for f in files if "node_modules" in f]
