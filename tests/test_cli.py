"""The command line: exit codes, where output goes, formats, and no tracebacks.

Each behaviour is checked through a real subprocess (`python fnl.py ...` from the
repository root, as CI runs it) and in-process through `fnl.run(argv)`, which returns
the exit code. Click's CliRunner drives the `cli` group directly for output checks.
"""
from __future__ import annotations

import json
import os
import re
import sys

import pytest
from click.testing import CliRunner

import fnl
from conftest import MINIMAL, REPO, clean_env, run_fnl, write

LOCATED = r"^{file}:(\d+):(\d+): error (FNL\d{{3}})(?: [^:]+)?: (.+)$"


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


@pytest.fixture
def clean(tmp_path):
    return write(tmp_path, "clean.yaml", MINIMAL)


@pytest.fixture
def broken(tmp_path):
    # An unknown key and a bad enum value: two problems, one definition.
    return write(tmp_path, "broken.yaml", MINIMAL + "colour: blue\npolicies:\n  frequency_cap: {max: 0, per: 7d}\n")


def run_inproc(capsys, *argv) -> tuple:
    code = fnl.run([str(a) for a in argv])
    out, err = capsys.readouterr()
    no_traceback(out, err)
    return code, out, err


# -- exit codes ----------------------------------------------------------------------

def test_clean_definition_exits_0(clean, capsys):
    result = run_fnl("validate", clean)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout
    assert result.stdout == "Checked 1 definition: no problems.\n"
    assert result.stderr == ""
    code, out, _ = run_inproc(capsys, "validate", clean)
    assert code == 0 and out == result.stdout


def test_problems_exit_1(broken, capsys):
    result = run_fnl("validate", broken)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode == 1
    assert "Found 2 problems in 1 of 1 definition." in result.stdout
    code, out, _ = run_inproc(capsys, "validate", broken)
    assert code == 1 and out == result.stdout


def test_one_bad_file_among_good_ones_still_exits_1_and_reports_all(tmp_path, capsys):
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "b.yaml", MINIMAL.replace("fnl: 1", "fnl: 2"))
    write(tmp_path, "c.yml", MINIMAL.replace("acme-b2b", "Acme"))
    code, out, _ = run_inproc(capsys, "validate", tmp_path)
    assert code == 1
    assert re.search(r"b\.yaml:1:6: error FNL103 fnl: ", out)
    assert re.search(r"c\.yml:2:9: error FNL104 funnel: ", out)
    assert "a.yaml" not in out
    assert out.endswith("Found 2 problems in 2 of 3 definitions.\n")


@pytest.mark.parametrize("argv,stderr_has", [
    (["validate", "does/not/exist.yaml"], "does/not/exist.yaml: no such file or directory"),
    (["validate"], "Missing argument"),
    (["validate", "--no-such-option", "x.yaml"], "No such option"),
    (["validate", "--format", "xml", "x.yaml"], "'xml' is not one of"),
    (["no-such-command"], "No such command"),
], ids=["missing-path", "no-path", "unknown-option", "unknown-format", "unknown-command"])
def test_usage_errors_exit_3(argv, stderr_has, capsys):
    result = run_fnl(*argv)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode == 3, result.stderr
    assert stderr_has in result.stderr
    assert result.stdout == ""  # machine formats on stdout are never polluted
    code, _, err = run_inproc(capsys, *argv)
    assert code == 3 and stderr_has in err


def test_directory_without_yaml_exits_3(tmp_path, capsys):
    write(tmp_path, "notes.txt", "not yaml")
    write(tmp_path, "sub/readme.md", "# nothing")
    result = run_fnl("validate", tmp_path)
    assert result.returncode == 3
    assert "no YAML files" in result.stderr and "help:" in result.stderr
    no_traceback(result.stdout, result.stderr)
    code, _, err = run_inproc(capsys, "validate", tmp_path)
    assert code == 3 and "no YAML files" in err


def test_missing_path_among_good_ones_exits_3(clean, capsys):
    code, out, err = run_inproc(capsys, "validate", clean, clean.parent / "gone.yaml")
    assert code == 3
    assert "gone.yaml: no such file or directory" in err


def test_version_and_help_exit_0(capsys):
    code, out, _ = run_inproc(capsys, "--version")
    assert code == 0 and re.fullmatch(r"fnl, version \d+\.\d+\.\d+\S*\n", out)
    code, out, _ = run_inproc(capsys, "validate", "--help")
    assert code == 0 and "--format" in out and "PATH..." in out


# -- bad inputs: one located line each -----------------------------------------------

@pytest.mark.parametrize("name,raw,code,line,col,words", [
    ("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\x00", "FNL001", 3, 1, "binary"),
    ("empty.yaml", b"", "FNL004", 1, 1, "empty"),
    ("utf16.yaml", MINIMAL.encode("utf-16"), "FNL001", 1, 1, "UTF-16"),
    ("latin1.yaml", "fnl: 1\nfunnel: café\n".encode("latin-1"), "FNL001", 2, 12, "UTF-8"),
], ids=["binary", "empty", "utf16", "latin1"])
def test_bad_input_gives_one_located_line(tmp_path, name, raw, code, line, col, words, capsys):
    path = write(tmp_path, name, raw)
    result = run_fnl("validate", path)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode == 1
    pattern = re.compile(LOCATED.format(file=re.escape(str(path))), re.M)
    hits = pattern.findall(result.stdout)
    assert hits == [(str(line), str(col), code, hits[0][3])], result.stdout
    assert words in hits[0][3]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  help: ")
    assert lines[-1] == "Found 1 problem in 1 of 1 definition."
    assert len(lines) == 3  # the problem, its help, the summary: no source dump of binary data


def test_missing_file_gives_one_line_on_stderr(tmp_path):
    path = tmp_path / "nowhere.yaml"
    result = run_fnl("validate", path)
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert lines[0] == f"fnl: error: {path}: no such file or directory"
    assert all(line.startswith("  help: ") for line in lines[1:])
    assert len(lines) <= 2


def test_unreadable_entry_in_a_directory_is_a_located_problem(tmp_path):
    write(tmp_path, "good.yaml", MINIMAL)
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "missing-target.yaml")
    result = run_fnl("validate", tmp_path)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode == 1
    assert re.search(r"dangling\.yaml:1:1: error FNL006: cannot read file", result.stdout)


def test_fifo_is_not_reported_as_permission_denied(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = run_fnl("validate", fifo, timeout=20)
    no_traceback(result.stdout, result.stderr)
    assert result.returncode in (1, 3)
    assert "permission denied" not in result.stderr
    assert "directory" not in result.stderr


# -- fnl schema ----------------------------------------------------------------------

def test_schema_prints_the_schema_file(capsys):
    on_disk = json.loads((REPO / "schemas" / "funnel.schema.json").read_text(encoding="utf-8"))
    result = run_fnl("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == on_disk
    code, out, _ = run_inproc(capsys, "schema")
    assert code == 0 and json.loads(out) == on_disk


# -- formats -------------------------------------------------------------------------

def test_text_format(broken):
    result = run_fnl("validate", "--format", "text", broken)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(str(broken))}:7:1: error FNL100 colour: unknown key `colour` at the top level",
                        lines[0])
    assert lines[1] == "    7 | colour: blue"
    assert lines[2] == "      | ^"
    assert lines[3].startswith("  help: allowed keys here:")
    assert re.fullmatch(rf"{re.escape(str(broken))}:9:24: error FNL105 policies\.frequency_cap\.max: .*", lines[4])
    assert lines[5] == "    9 |   frequency_cap: {max: 0, per: 7d}"
    assert lines[6] == "      |                        ^"


def test_json_format(broken):
    result = run_fnl("validate", "--format", "json", broken)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["format_version"] == 1
    assert report["summary"] == {"definitions": 1, "with_problems": 1, "problems": 2}
    probs = report["definitions"][0]["problems"]
    assert [(p["code"], p["line"], p["column"]) for p in probs] == [("FNL100", 7, 1), ("FNL105", 9, 24)]


def test_github_format(broken):
    result = run_fnl("validate", "--format", "github", broken)
    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 2
    assert annotations[0].startswith("::error file=")
    assert ",line=7,col=1,title=FNL100 colour::unknown key `colour` at the top level%0Ahelp: " in annotations[0]


def test_sarif_format(broken):
    result = run_fnl("validate", "--format", "sarif", broken)
    assert result.returncode == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["FNL100", "FNL105"]
    region = results[1]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (9, 24)


@pytest.mark.parametrize("value,expected", [("true", "github"), ("false", "text"), ("1", "text")])
def test_github_actions_env_picks_the_format(broken, value, expected):
    result = run_fnl("validate", broken, env=clean_env(GITHUB_ACTIONS=value))
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    if expected == "github":
        assert first.startswith("::error file=")
    else:
        assert first.startswith(f"{broken}:7:1: error FNL100")


def test_explicit_format_beats_github_actions(broken, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run_inproc(capsys, "validate", broken)
    assert code == 1 and out.startswith("::error ")
    code, out, _ = run_inproc(capsys, "validate", "--format", "json", broken)
    assert code == 1 and json.loads(out)["format_version"] == 1


def test_verbose_shows_related_problems(tmp_path, capsys):
    # A name that is both badly spelt and too long: two failures at one place, one speaks, one waits for -v.
    path = write(tmp_path, "long-name.yaml", MINIMAL.replace("acme-b2b", "Acme_" + "x" * 70))
    code, out, _ = run_inproc(capsys, "validate", path)
    assert code == 1
    assert re.search(r"long-name\.yaml:2:9: error FNL104 funnel: ", out)
    assert "(1 more at this location; use -v to see them)" in out
    assert "also:" not in out
    code, out_v, _ = run_inproc(capsys, "validate", "-v", path)
    assert code == 1
    assert "use -v" not in out_v
    related = [line for line in out_v.splitlines() if line.startswith("  also: ")]
    assert related == ["  also: FNL106 needs at most 64 characters"]
    # Machine formats carry the related problems whether or not -v is given.
    code, out_json, _ = run_inproc(capsys, "validate", "--format", "json", path)
    (problem,) = json.loads(out_json)["definitions"][0]["problems"]
    assert problem["related"] == ["FNL106 needs at most 64 characters"]


def test_output_is_deterministic():
    cases = REPO / "tests" / "cases" / "invalid"
    first = run_fnl("validate", "--format", "json", cases)
    second = run_fnl("validate", "--format", "json", cases)
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout


# -- click's CliRunner ---------------------------------------------------------------

def test_cli_runner_output(broken, clean):
    runner = CliRunner()
    result = runner.invoke(fnl.cli, ["validate", str(broken)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "unknown key `colour`" in result.output and "Found 2 problems" in result.output
    result = runner.invoke(fnl.cli, ["validate", "--format", "json", str(clean)])
    assert json.loads(result.output)["summary"]["problems"] == 0
    result = runner.invoke(fnl.cli, ["schema"])
    assert json.loads(result.output)["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_cli_runner_usage_error_exit_code():
    result = CliRunner().invoke(fnl.cli, ["validate"])
    assert result.exit_code == 3  # fnl's usage exit code, also under click's runner
    assert "Missing argument" in result.output


def test_cli_runner_exit_code_for_problems(broken):
    result = CliRunner().invoke(fnl.cli, ["validate", str(broken)])
    assert result.exit_code == 1


def test_cli_runner_missing_path():
    result = CliRunner().invoke(fnl.cli, ["validate", "does/not/exist.yaml"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 3


def test_main_entry_point_exits_with_the_code(broken, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fnl", "validate", str(broken)])
    with pytest.raises(SystemExit) as exc:
        fnl.main()
    assert exc.value.code == 1
