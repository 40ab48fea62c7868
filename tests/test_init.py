"""`fnl init DIR`: a funnel repository that works as written. Its funnel validates,
compiles, simulates (its own gates pass) and renders; its workflow is valid against
GitHub's published workflow schema (check-jsonschema's vendored copy); its pre-commit
config, as written, installs fnl from this git repository at a commit and runs the hook,
which passes on the starter and fails, with the line, on a broken definition."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import fnl
from conftest import REPO, run_fnl
from engine.errors import EXIT_USAGE


def head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("init") / "acme-funnels"
    proc = run_fnl("init", folder, "--from", f"{REPO.as_uri()}@{head()}")
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stdout and "pre-commit install" in proc.stdout
    return folder


def test_the_starter_validates_compiles_simulates_and_renders(starter: Path, tmp_path: Path) -> None:
    funnel = starter / "funnels" / "acme-funnels.yaml"
    proc = run_fnl("validate", starter / "funnels")
    assert proc.returncode == 0 and "no problems" in proc.stdout, proc.stdout + proc.stderr
    assert run_fnl("compile", funnel, "-o", tmp_path / "plan.json").returncode == 0
    proc = run_fnl("simulate", funnel, "--format", "json", timeout=300)
    assert proc.returncode == 0, proc.stderr  # its own expectations (acme-funnels.expect.yaml) hold
    forecast = json.loads(proc.stdout)
    assert forecast["stages"]["sql"]["reached"] > 0 and forecast["emails"]["sent"] > 0
    assert run_fnl("render", funnel, "--all", "-o", tmp_path / "gallery").returncode == 0
    assert (tmp_path / "gallery" / "index.html").stat().st_size > 1000


def test_every_file_names_its_schema_and_the_editor_settings_point_at_them(starter: Path) -> None:
    for path in (starter / "funnels").glob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        match = re.match(r"# yaml-language-server: \$schema=(\S+)$", first)
        assert match, f"{path.name}: {first}"
        assert (path.parent / match.group(1)).resolve().is_file(), match.group(1)
    settings = json.loads((starter / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    for schema in settings["yaml.schemas"]:
        assert (starter / schema).is_file(), schema
    assert json.loads((starter / ".vscode" / "extensions.json").read_text(encoding="utf-8"))["recommendations"]


def test_the_workflow_is_valid_for_github_and_installs_fnl_from_git(starter: Path) -> None:
    workflow = starter / ".github" / "workflows" / "fnl.yml"
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(workflow)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = starter.parent / "broken.yml"
    broken.write_text(workflow.read_text(encoding="utf-8").replace("runs-on:", "runs_on:"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0  # the check has teeth
    steps = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]["fnl"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert f'pip install "fnl @ git+{REPO.as_uri()}@{head()}"' in runs
    assert "fnl validate funnels/ --format github" in runs
    assert any(r.startswith('fnl report --base "origin/${{ github.base_ref }}" funnels/') for r in runs)
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)


def test_the_workflows_install_line_resolves_with_pip(starter: Path, tmp_path: Path) -> None:
    """The requirement the workflow installs, exactly as written, is one pip resolves: it
    clones this repository at the commit and builds fnl from it."""
    steps = yaml.safe_load((starter / ".github" / "workflows" / "fnl.yml").read_text(encoding="utf-8"))["jobs"]
    line = next(s["run"] for s in steps["fnl"]["steps"] if s.get("run", "").startswith("pip install "))
    requirement = line[len("pip install "):].strip().strip('"')
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path),
                           requirement], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = [p.name for p in tmp_path.iterdir()]
    assert any(name.startswith("fnl") for name in built), built


def test_the_pre_commit_hook_works_as_written(starter: Path, tmp_path: Path) -> None:
    """pre-commit, with the config `fnl init` wrote, clones this repository at the commit,
    installs fnl from it with pip and runs `fnl validate` on the staged files."""
    config = yaml.safe_load((starter / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert config["repos"] == [{"repo": REPO.as_uri(), "rev": head(), "hooks": [{"id": "fnl-validate"}]}]
    work = tmp_path / "repo"
    shutil.copytree(starter, work)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "GIT_AUTHOR_NAME": "CI",
           "GIT_AUTHOR_EMAIL": "ci@example.com", "GIT_COMMITTER_NAME": "CI", "GIT_COMMITTER_EMAIL": "ci@example.com"}
    env.pop("FNL_CACHE_DIR", None)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=env)
    pre_commit = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
    proc = subprocess.run(pre_commit, cwd=work, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"fnl validate\.+Passed", proc.stdout), proc.stdout
    funnel = work / "funnels" / "acme-funnels.yaml"
    funnel.write_text(funnel.read_text(encoding="utf-8").replace("sequences:", "sequnces:", 1), encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=env)
    proc = subprocess.run(pre_commit, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0 and re.search(r"fnl validate\.+Failed", proc.stdout), proc.stdout
    assert re.search(r"funnels/acme-funnels\.yaml:\d+:\d+: error", proc.stdout) and "sequences" in proc.stdout


def test_init_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    runner = CliRunner()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine", encoding="utf-8")
    got = runner.invoke(fnl.cli, ["init", str(full), "--from", "https://example.com/fnl.git@v1"])
    assert got.exit_code == EXIT_USAGE and "is not empty" in got.output
    assert (full / "notes.txt").read_text(encoding="utf-8") == "mine" and len(list(full.iterdir())) == 1
    got = runner.invoke(fnl.cli, ["init", str(tmp_path / "My Funnels!"), "--name", "Bad Name",
                                  "--from", "https://example.com/fnl.git@v1"])
    assert got.exit_code == EXIT_USAGE and "cannot name a funnel" in got.output
    got = runner.invoke(fnl.cli, ["init", str(tmp_path / "x"), "--from", "https://example.com/fnl.git"])
    assert got.exit_code == EXIT_USAGE and "as URL@REV" in got.output
    assert not (tmp_path / "x").exists()
    got = runner.invoke(fnl.cli, ["init", str(tmp_path / "named"), "--name", "acme-b2b",
                                  "--from", "https://example.com/fnl.git@v1.2"])
    assert got.exit_code == 0, got.output
    assert (tmp_path / "named" / "funnels" / "acme-b2b.yaml").is_file()
    text = (tmp_path / "named" / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert "repo: https://example.com/fnl.git" in text and "rev: v1.2" in text


def test_without_from_it_names_the_repository_fnl_runs_from(tmp_path: Path) -> None:
    from engine.authoring.init import source

    url, rev = source()
    assert rev == head() or re.fullmatch(r"[0-9a-f]{40}", rev)
    assert url  # origin, or this checkout as a file:// URL


def test_installed_from_a_folder_it_names_that_checkouts_origin(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install .` records the folder (direct_url.json, dir_info): the hook and the
    workflow then name that checkout's origin and commit, not some repository that merely
    holds the virtualenv."""
    import importlib.metadata

    from engine.authoring import init as init_mod

    checkout = tmp_path / "fnl-checkout"
    checkout.mkdir()
    (checkout / "fnl.py").write_text("# fnl\n", encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "CI", "GIT_AUTHOR_EMAIL": "ci@example.com", "GIT_COMMITTER_NAME": "CI",
           "GIT_COMMITTER_EMAIL": "ci@example.com"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"],
                 ["remote", "add", "origin", "https://example.com/team/fnl.git"]):
        subprocess.run(["git", "-C", str(checkout), *args], check=True, env=env, capture_output=True)
    rev = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()

    class Installed:
        def read_text(self, name: str) -> str:
            return json.dumps({"url": checkout.as_uri(), "dir_info": {}})

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Installed())
    assert init_mod.source() == ("https://example.com/team/fnl.git", rev)
