"""The installed fnl is the same program as the source tree: every engine package ships,
and the pre-commit hook and configuration work when pre-commit itself runs them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Dict

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# What a checkout holds that fnl needs to run and to be installed from.
PROJECT = ("fnl.py", "pyproject.toml", "README.md", ".pre-commit-config.yaml", ".pre-commit-hooks.yaml",
           "engine", "schemas", "funnels", "templates")


def pyproject() -> Dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_engine_package_is_in_the_wheel():
    config = pyproject()
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "engine").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "fnl_schemas" in listed and config["tool"]["setuptools"]["package-dir"]["fnl_schemas"] == "schemas"


def test_pre_commit_accepts_the_hook_and_the_dogfood_config():
    """pre-commit itself (a real client) validates the hook other repositories use and
    the configuration this repository runs."""
    for command, path in (("validate-manifest", ".pre-commit-hooks.yaml"),
                          ("validate-config", ".pre-commit-config.yaml")):
        done = subprocess.run([sys.executable, "-m", "pre_commit", command, path], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_dogfood_hook_installs_exactly_the_runtime_dependencies():
    """The repository's own hook runs fnl.py from the checkout in an environment pre-commit
    builds from `additional_dependencies`; anything pyproject adds must be there too."""
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    [hook] = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == "fnl-validate"]
    assert hook["language"] == "python" and hook["entry"].startswith("python fnl.py ")
    assert hook["additional_dependencies"] == pyproject()["project"]["dependencies"], \
        "copy [project] dependencies of pyproject.toml to additional_dependencies in .pre-commit-config.yaml"


def git_env(home: Path) -> Dict[str, str]:
    """No outer repository or user configuration leaks in; pre-commit caches under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT")) and k != "GITHUB_ACTIONS"}
    env.update(PRE_COMMIT_HOME=str(home / "pre-commit"), HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="fnl tests", GIT_AUTHOR_EMAIL="tests@fnl.example",
               GIT_COMMITTER_NAME="fnl tests", GIT_COMMITTER_EMAIL="tests@fnl.example")
    return env


def run(args, cwd: Path, env: Dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def checkout(dest: Path, env: Dict[str, str]) -> Path:
    """A git repository holding a copy of this project, as a clone would."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: pre-commit runs only in git repositories")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fnl"]):
        done = run(["git", *args], dest, env, timeout=60)
        assert done.returncode == 0, done.stderr
    return dest


def test_dogfood_config_runs_with_pre_commit(tmp_path):
    """`pre-commit run` with this repository's .pre-commit-config.yaml: pre-commit builds
    the hook's environment from nothing, the hook checks the example funnels and passes,
    and it fails on a broken funnel."""
    env = git_env(tmp_path)
    repo = checkout(tmp_path / "repo", env)
    pre_commit = [sys.executable, "-m", "pre_commit", "run", "fnl-validate", "--all-files", "--color", "never"]
    done = run(pre_commit, repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fnl validate" in done.stdout and "Passed" in done.stdout, done.stdout

    funnel = repo / "funnels" / "newsletter-to-demo.yaml"
    funnel.write_text(funnel.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    done = run(pre_commit, repo, env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed" in done.stdout and "FNL100" in done.stdout, done.stdout


def test_offered_hook_runs_in_another_repository(tmp_path):
    """`pre-commit try-repo` installs fnl from this repository the way a user's
    `repo: <this repository>` does, and runs the hook of .pre-commit-hooks.yaml there."""
    env = git_env(tmp_path)
    hook_repo = checkout(tmp_path / "fnl", env)
    user = tmp_path / "user"
    for name in ("funnels", "templates"):
        shutil.copytree(REPO / name, user / name, ignore=shutil.ignore_patterns("__pycache__"))
    for args in (["init", "-q"], ["add", "-A"]):
        assert run(["git", *args], user, env, timeout=60).returncode == 0
    try_repo = [sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), "fnl-validate", "--all-files",
                "--color", "never"]
    done = run(try_repo, user, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fnl validate" in done.stdout and "Passed" in done.stdout, done.stdout

    funnel = user / "funnels" / "newsletter-to-demo.yaml"
    funnel.write_text(funnel.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    assert run(["git", "add", "-A"], user, env, timeout=60).returncode == 0
    done = run(try_repo, user, env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed" in done.stdout and "FNL100" in done.stdout, done.stdout
