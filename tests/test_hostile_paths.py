"""Hostile paths: definitions, templates and revisions that try to make fnl read outside
the definition's tree, walk forever, recurse without bound or crash.

Every case is real files on disk under tmp_path. Each kind runs at least once through a
real subprocess (`python fnl.py ...`), measured: under 2 s of CPU and 300 MB of memory,
and never a traceback or exit 4. Each ends in a located problem (file:line:column, code,
help) or a one-line usage error (exit 3).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, List, Tuple

import pytest

from conftest import MINIMAL, REPO, clean_env, write

from engine import sources
from engine.check import check_paths
from engine.errors import UsageError
from engine.revision import Revision

SECRET = "hunter2-outside-the-tree"
MEASURE = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stdout.buffer.write(r.stdout)\n"
    "sys.stderr.buffer.write(r.stderr)\n"
    "sys.stderr.write(f'\\n@@measure {u.ru_utime + u.ru_stime:.3f} {u.ru_maxrss}\\n')\n"
    "sys.exit(r.returncode)\n"
)


def fnl(*args: Any, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`python fnl.py ARGS` in `cwd`, with its CPU time and peak memory checked."""
    r = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, str(REPO / "fnl.py"), *map(str, args)],
                       cwd=cwd, capture_output=True, timeout=timeout, env=clean_env())
    stderr = r.stderr.decode("utf-8", "replace")
    stderr, _, measured = stderr.rpartition("\n@@measure ")
    cpu, rss_kb = measured.split()
    assert float(cpu) < 2.0, f"{cpu} s of CPU: {args}"
    assert int(rss_kb) < 300 * 1024, f"{int(rss_kb) // 1024} MB: {args}"
    out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode("utf-8", "replace"), stderr)
    assert r.returncode != 4 and "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr
    return out


def problems(*paths: Path) -> List[Tuple[str, str, int, int]]:
    """(file, code, line, column) of every problem `fnl validate` finds (in process)."""
    return sorted((p.location.file, p.code, p.location.line, p.location.column)
                  for checked in check_paths(tuple(str(p) for p in paths)) for p in checked.problems)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every tree the tests build, holding YAML and a template."""
    folder = tmp_path / "elsewhere"
    write(folder, "secret.yaml", f"password: {SECRET}\n")
    write(folder, "secret.j2", f"{SECRET}\n")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository (marked by `.git`) with one clean definition in funnels/."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    write(root, "funnels/clean.yaml", MINIMAL)
    return root


# -- links to folders -----------------------------------------------------------------

def test_a_link_to_a_folder_outside_is_refused_where_it_is(project, outside, monkeypatch):
    (project / "funnels" / "x").symlink_to(outside)
    r = fnl("validate", "funnels", cwd=project)
    assert r.returncode == 1
    assert r.stdout.startswith("funnels/x:1:1: error FNL006: not read: it is a link to a folder")
    assert "help: replace the link with the folder itself" in r.stdout
    assert r.stdout.endswith("Found 1 problem in 1 of 2 definitions.\n")
    monkeypatch.chdir(project)
    assert problems(Path("funnels")) == [("funnels/x", "FNL006", 1, 1)]


def test_a_link_to_a_folder_inside_a_split_definition_is_refused(project, outside, monkeypatch):
    write(project, "funnels/acme/funnel.yaml", MINIMAL)
    (project / "funnels" / "acme" / "more").symlink_to(outside)
    (project / "funnels" / "acme" / "self").symlink_to(".")
    monkeypatch.chdir(project)
    assert problems(Path("funnels/acme")) == [("funnels/acme/more", "FNL006", 1, 1),
                                              ("funnels/acme/self", "FNL006", 1, 1)]


def test_two_links_to_the_folder_itself_end(project):
    for name in ("l1", "l2"):
        (project / "funnels" / name).symlink_to(".")
    r = fnl("validate", "funnels", cwd=project, timeout=20)
    assert r.returncode == 1
    assert [line.split(" ", 1)[0] for line in r.stdout.splitlines() if " error " in line] == \
        ["funnels/l1:1:1:", "funnels/l2:1:1:"]


def test_a_folder_named_on_the_command_line_may_not_be_a_link_out_of_its_tree(project, outside):
    (project / "defs").symlink_to(outside)
    r = fnl("validate", "defs/", cwd=project)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.startswith("fnl: error: defs/: is a link to a folder outside ")
    # A link within the repository is followed.
    (project / "inside").symlink_to(project / "funnels")
    assert fnl("validate", "inside", cwd=project).returncode == 0


def test_a_file_named_on_the_command_line_may_not_be_a_link_out_of_its_tree(project, outside):
    (project / "funnels" / "evil.yaml").symlink_to(outside / "secret.yaml")
    r = fnl("validate", "funnels/evil.yaml", cwd=project)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.startswith("fnl: error: funnels/evil.yaml: is a link to a file outside ")
    # Nor may the way to it go through a link to a folder out of the tree.
    (project / "via").symlink_to(outside)
    r = fnl("validate", "via/secret.yaml", cwd=project)
    assert r.returncode == 3 and "via/secret.yaml: is a link to a file outside " in r.stderr
    (project / "funnels" / "same.yaml").symlink_to("clean.yaml")
    assert fnl("validate", "funnels/same.yaml", cwd=project).returncode == 0


def test_a_chain_of_links_too_long_to_follow_is_a_located_problem(project, monkeypatch):
    previous = "clean.yaml"
    for i in range(1200):
        (project / "funnels" / f"l{i}.yaml").symlink_to(previous)
        previous = f"l{i}.yaml"
    monkeypatch.chdir(project)
    found = problems(Path("funnels"))
    assert ("funnels/l1199.yaml", "FNL006", 1, 1) in found
    assert all(code == "FNL006" for _, code, _, _ in found)


# -- nesting and counts ---------------------------------------------------------------

@pytest.fixture
def nest() -> Any:
    """Make `depth` nested folders below a folder (one at a time: os.makedirs recurses),
    and remove them again one at a time: pytest's own clean-up (shutil.rmtree) recurses
    once per level and would fail on them at the end of the session."""
    made: List[Path] = []

    def make(top: Path, depth: int) -> Path:
        here = top
        for _ in range(depth):
            here = here / "d"
            here.mkdir(parents=True)
        made.append(top / "d")
        return here

    yield make
    for first in made:
        chain = [first]
        while (chain[-1] / "d").is_dir() and not (chain[-1] / "d").is_symlink():
            chain.append(chain[-1] / "d")
        for folder in reversed(chain):
            for entry in folder.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)  # shallow leftovers only
                else:
                    entry.unlink()
            folder.rmdir()


def test_980_nested_folders_are_a_located_problem(project, nest):
    write(nest(project / "funnels", 980), "x.yaml", "fnl: 1\n")
    r = fnl("validate", "funnels", cwd=project)
    assert r.returncode == 1
    deep = "funnels/" + "/".join(["d"] * (sources.MAX_DEPTH + 1))
    assert f"{deep}:1:1: error FNL014: not read: this folder is nested more than 64 levels deep" in r.stdout


def test_nesting_in_a_split_definition_is_bounded_too(project, monkeypatch, nest):
    write(project, "funnels/acme/funnel.yaml", MINIMAL)
    nest(project / "funnels" / "acme", 200)
    monkeypatch.chdir(project)
    deep = "funnels/acme/" + "/".join(["d"] * (sources.MAX_DEPTH + 1))
    assert problems(Path("funnels/acme")) == [(deep, "FNL014", 1, 1)]


def test_too_many_files_and_folders_is_a_usage_error(project, monkeypatch, capsys):
    import fnl as cli

    for i in range(30):
        (project / "funnels" / f"empty-{i}").mkdir()
    monkeypatch.setattr(sources, "MAX_ENTRIES", 20)
    monkeypatch.chdir(project)
    with pytest.raises(UsageError, match="more than 20 files and folders"):
        check_paths(("funnels",))
    assert cli.run(["validate", "funnels"]) == 3
    assert "more than 20 files and folders" in capsys.readouterr().err


# -- templates: -----------------------------------------------------------------------

def _with_templates(value: str) -> str:
    return MINIMAL.replace("fnl: 1\n", f"fnl: 1\ntemplates: {value}\n")


def test_templates_at_the_filesystem_root_is_refused_at_the_value(project):
    write(project, "funnels/root.yaml", _with_templates("/"))
    r = fnl("validate", "funnels/root.yaml", cwd=project)
    assert r.returncode == 1
    first = r.stdout.splitlines()[0]
    assert first == ("funnels/root.yaml:2:12: error FNL006 templates: `templates` is outside this repository: "
                     "fnl reads templates only inside it")
    assert r.stdout.count(" error ") == 1 and "help: keep the templates inside " in r.stdout


@pytest.mark.parametrize("value,code,column,message", [
    ("a" * 256, "FNL104", 12, "a folder name in `templates` is 256 bytes long"),
    ("ok/" + "é" * 128, "FNL104", 15, "a folder name in `templates` is 256 bytes long"),
    ('"a\\0b"', "FNL104", 14, "`templates` contains a NUL character"),
    ("/".join(["abc"] * 1100), "FNL104", 12, "`templates` is 4,399 bytes long"),
    ("../../..", "FNL006", 12, "`templates` is outside the repository"),
    ("../../elsewhere", "FNL006", 12, "`templates` is outside the repository"),
])
def test_unusable_templates_values_are_located(project, outside, value, code, column, message):
    write(project, "funnels/t.yaml", _with_templates(value))
    found = [p for checked in check_paths((str(project / "funnels" / "t.yaml"),)) for p in checked.problems]
    assert [(p.code, p.location.line, p.location.column, p.path) for p in found] == [(code, 2, column, ("templates",))]
    assert message in found[0].message and found[0].help


def test_long_and_nul_templates_in_a_subprocess(project):
    write(project, "funnels/long.yaml", _with_templates("a" * 256))
    write(project, "funnels/nul.yaml", _with_templates('"a\\0b"'))
    r = fnl("validate", "funnels/long.yaml", "funnels/nul.yaml", cwd=project)
    assert r.returncode == 1
    assert "funnels/long.yaml:2:12: error FNL104 templates: " in r.stdout
    assert "funnels/nul.yaml:2:14: error FNL104 templates: " in r.stdout


def test_templates_anywhere_in_the_repository_are_allowed(project):
    write(project, "a/b/c/t.yaml", _with_templates("../../../templates/n"))
    (project / "templates" / "n").mkdir(parents=True)
    assert problems(project / "a/b/c/t.yaml") == []


def test_outside_a_repository_the_tree_is_the_folder_above_the_definitions_folder(tmp_path, outside):
    write(tmp_path, "top/funnels/t.yaml", _with_templates("../templates/t"))
    write(tmp_path, "top/funnels/far.yaml", _with_templates("../../elsewhere"))
    write(tmp_path, "top/funnels/acme/funnel.yaml", MINIMAL)  # a split definition: its folder's parent
    found = problems(tmp_path / "top" / "funnels")
    assert [(Path(f).name, code) for f, code, _, _ in found] == [("far.yaml", "FNL006")]


def test_a_templates_folder_that_links_out_of_the_tree_is_refused(project, outside):
    (project / "templates").symlink_to(outside)
    found = problems(project / "funnels" / "clean.yaml")
    assert [(Path(f).name, code) for f, code, _, _ in found] == [("templates", "FNL006")]


def test_a_template_include_that_links_out_is_never_read(project, outside):
    tpl = project / "templates" / "acme-b2b"
    tpl.mkdir(parents=True)
    (tpl / "_leak.j2").symlink_to(outside / "secret.j2")
    write(tpl, "hello.j2", "{% block subject %}Hi{% endblock %}{% block html %}{% include '_leak.j2' %}"
                           "{% endblock %}{% block text %}{% include '_leak.j2' %}{% endblock %}\n")
    write(project, "funnels/clean.yaml", MINIMAL + "sequences:\n  s:\n    kind: nurture\n    stage: subscriber\n"
                                                   "    steps:\n      - {send: hello}\n")
    r = fnl("validate", "funnels/clean.yaml", cwd=project)
    assert r.returncode == 1 and "_leak.j2" in r.stdout


def test_template_discovery_is_bounded_and_follows_no_links(tmp_path, nest):
    from engine import templates

    root = tmp_path / "t"
    write(root, "a.j2", "x")
    (root / "loop").symlink_to(".")
    write(nest(root / "n", 200), "deep.j2", "x")
    names = templates.discover(root)
    assert names[0] == "a" and "loop/a" not in names
    assert not any(n.endswith("deep") for n in names)


# -- names that are not UTF-8 -----------------------------------------------------------

def _bytes_name(folder: Path, name: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), name)


def test_file_and_link_names_that_are_not_utf8(project, outside):
    try:
        with open(_bytes_name(project / "funnels", b"b\xff.yaml"), "w", encoding="utf-8") as fh:
            fh.write("fnl: 2\n")
        os.symlink(os.fsencode(outside), _bytes_name(project / "funnels", b"l\xfe"))
    except OSError:
        pytest.skip("this file system takes only UTF-8 names")
    r = fnl("validate", "funnels", cwd=project)
    assert r.returncode == 1
    assert "funnels/b\\xff.yaml:1:6: error FNL103" in r.stdout
    assert "funnels/l\\xfe:1:1: error FNL006" in r.stdout


# -- fnl plan --base ----------------------------------------------------------------------

def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.example", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with acme, its templates and, elsewhere, links out of the tree."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    shutil.copytree(REPO / "funnels" / "acme", root / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", root / "templates" / "acme")
    (root / "other").mkdir()
    (root / "other" / "passwd").symlink_to("/etc/passwd")
    (root / "other" / "root").symlink_to("/")
    (root / "other" / "up").symlink_to("../../../../../../../..")
    (root / "other" / "big.bin").write_bytes(b"\0" * (8 * 1024 * 1024))
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "acme, and links out elsewhere", cwd=root)
    return root


def test_links_out_elsewhere_in_the_revision_do_not_matter(repo):
    scoring = repo / "funnels" / "acme" / "scoring.yaml"
    scoring.write_text(scoring.read_text(encoding="utf-8").replace("    mql: 40\n", "    mql: 45\n"), encoding="utf-8")
    r = fnl("plan", "--base", "HEAD", "funnels/acme", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Plan for acme-b2b: ~ MQL threshold 40 → 45\n")


def test_only_the_definitions_files_and_templates_are_copied(repo):
    with Revision(repo, "HEAD") as base:
        then = base.add_definition(PurePosixPath("funnels/acme/scoring.yaml"))
        found = sources.discover((str(then),))
        for source in found:
            base.add_templates(source)
        copied = sorted(str(p.relative_to(base.dir)) for p in base.dir.rglob("*") if p.is_file())
    assert not any(c.startswith("other") for c in copied)
    assert "funnels/acme/funnel.yaml" in copied and "templates/acme/saas/capability.j2" in copied
    assert not base.dir.exists()


def test_links_out_inside_the_definition_at_the_revision_are_located(repo):
    acme = repo / "funnels" / "acme"
    (acme / "evil.yaml").symlink_to("/etc/passwd")
    (acme / "d").symlink_to(repo / "other")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "links out in the definition", cwd=repo)
    (acme / "evil.yaml").unlink()
    (acme / "d").unlink()
    r = fnl("plan", "--base", "HEAD", "funnels/acme", cwd=repo)
    assert r.returncode == 1
    assert "HEAD:funnels/acme/d:1:1: error FNL006: not read: it is a link to a folder" in r.stderr
    assert "HEAD:funnels/acme/evil.yaml:1:1: error FNL006: cannot read file: it is a link to a file outside" in r.stderr
    assert "root:" not in r.stderr  # nothing of /etc/passwd


def test_a_definition_that_is_a_link_out_at_the_revision_is_refused(repo):
    (repo / "funnels" / "leak.yaml").symlink_to("/etc/passwd")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "a definition that is a link out", cwd=repo)
    (repo / "funnels" / "leak.yaml").unlink()
    r = fnl("plan", "--base", "HEAD", "funnels/leak.yaml", cwd=repo)
    assert r.returncode == 3 and "HEAD:funnels/leak.yaml: is a link to a file outside the repository at HEAD\n" in r.stderr
    assert "root:" not in r.stderr


def test_templates_out_of_the_tree_at_the_revision_are_located(repo):
    funnel = repo / "funnels" / "acme" / "funnel.yaml"
    text = funnel.read_text(encoding="utf-8")
    funnel.write_text(text.replace("templates: ../../templates/acme\n", "templates: /\n"), encoding="utf-8")
    git("commit", "-q", "-am", "templates: /", cwd=repo)
    funnel.write_text(text, encoding="utf-8")
    r = fnl("plan", "--base", "HEAD", "funnels/acme", cwd=repo)
    assert r.returncode == 1
    assert "HEAD:funnels/acme/funnel.yaml:" in r.stderr
    assert "FNL006 templates: `templates` is outside the repository at HEAD: " in r.stderr


def test_a_revision_larger_than_the_bound_is_a_usage_error(repo, monkeypatch, capsys):
    import fnl as cli
    from engine import revision

    monkeypatch.setattr(revision, "MAX_TOTAL", 50_000)
    monkeypatch.chdir(repo)
    assert cli.run(["plan", "--base", "HEAD", "funnels/acme"]) == 3
    assert "more than 48 KiB of definitions and templates" in capsys.readouterr().err


def test_deep_and_non_utf8_paths_in_the_revision(repo, nest):
    acme = repo / "funnels" / "acme"
    write(nest(acme / "deep", 300), "x.yaml", "fnl: 1\n")
    try:
        with open(_bytes_name(acme, b"b\xff.yaml"), "w", encoding="utf-8") as fh:
            fh.write("fnl: 2\n")
    except OSError:
        pytest.skip("this file system takes only UTF-8 names")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "deep and odd names", cwd=repo)
    r = fnl("plan", "--base", "HEAD", "funnels/acme", cwd=repo)
    assert r.returncode == 1
    assert "FNL014: not read: this folder is nested more than 64 levels deep" in r.stderr
    assert "HEAD:funnels/acme/b\\xff.yaml:1:1: error FNL008" in r.stderr
    assert "fnl-base-" not in r.stderr  # files at the revision are named as git names them


def test_a_template_folder_behind_a_link_inside_the_repository_is_followed_at_the_revision(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    shutil.copytree(REPO / "funnels" / "acme", root / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", root / "shared" / "acme")
    (root / "templates").symlink_to("shared")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "templates through a link", cwd=root)
    r = fnl("plan", "--base", "HEAD", "funnels/acme", "--detailed-exitcode", cwd=root)
    assert (r.returncode, r.stdout) == (0, "Plan for acme-b2b: No changes.\n"), r.stderr


def test_template_names_that_are_not_utf8(project):
    folder = project / "templates" / "acme-b2b"
    folder.mkdir(parents=True)
    try:
        with open(_bytes_name(folder, b"o\xffd.j2"), "w", encoding="utf-8") as fh:
            fh.write("x")
    except OSError:
        pytest.skip("this file system takes only UTF-8 names")
    for form in ("text", "json", "sarif", "github"):
        r = fnl("validate", "funnels", "--format", form, cwd=project)
        assert r.returncode == 1 and "FNL222" in r.stdout, form
        if form == "text":
            assert "templates/acme-b2b/o\\xffd.j2:1:1: error FNL222" in r.stdout
