"""Colour: on a terminal, off when piped, under NO_COLOR and with --color never; FORCE_COLOR
and --color always turn it on. Coloured text is the plain text with SGR codes around fnl's
own parts, never a code taken from input."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
from click.testing import CliRunner

import fnl
from conftest import MINIMAL, REPO, clean_env, run_fnl, write
from engine.terminal import COLOURED, PLAIN, use_colour

SGR = re.compile(r"\x1b\[[0-9;]*m")
# The codes fnl writes: bold, red, yellow, cyan, blue, and reset.
OURS = {"\x1b[1m", "\x1b[1;31m", "\x1b[1;33m", "\x1b[1;36m", "\x1b[34m", "\x1b[0m"}


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return write(tmp_path, "broken.yaml", MINIMAL + "colour: blue\n")


def plain(text: str) -> str:
    return SGR.sub("", text)


def invoke(*args: str, color: bool = True, env: Dict[str, str] = None):
    runner = CliRunner()
    return runner.invoke(fnl.cli, [str(a) for a in args], color=color,
                         env={"NO_COLOR": None, "FORCE_COLOR": None, "TERM": "xterm", **(env or {})})


def test_color_always_paints_severity_rule_place_caret_and_help(broken):
    result = invoke("validate", broken, "--color", "always")
    assert result.exit_code == 1
    out = result.output
    assert "\x1b[1;31merror\x1b[0m" in out                    # the severity, red
    assert "\x1b[1mFNL100\x1b[0m" in out                      # the rule ID, bold
    assert re.search(r"\x1b\[1m[^\x1b]*broken\.yaml:7:1:\x1b\[0m", out)   # file:line:col, bold
    assert "\x1b[1;31m^\x1b[0m" in out                        # the caret, in the severity's colour
    assert "\x1b[1;36mhelp:\x1b[0m" in out
    assert set(SGR.findall(out)) <= OURS
    # Colour adds codes and nothing else: without them, the text is exactly the plain output.
    assert plain(out) == invoke("validate", broken, "--color", "never").output


def test_warnings_are_yellow(tmp_path):
    from engine.errors import Location, Problem
    from engine.report.text import problem_block

    p = Problem("FNL402", "too many emails", Location("f.yaml", 2, 3), severity="warning", source_line="a: b")
    block = "\n".join(problem_block(p, False, COLOURED))
    assert "\x1b[1;33mwarning\x1b[0m" in block and "\x1b[1;33m^\x1b[0m" in block
    assert "\x1b" not in "\n".join(problem_block(p, False, PLAIN))


@pytest.mark.parametrize("args", [
    ("validate", "{path}"),                               # auto, and not a terminal
    ("validate", "{path}", "--color", "never"),
    ("--color", "never", "validate", "{path}"),
    ("--color", "always", "validate", "{path}", "--color", "never"),   # the later one wins
], ids=["auto-not-a-tty", "never-after", "never-before", "later-wins"])
def test_no_colour_codes_unless_asked_or_a_terminal(broken, args):
    result = invoke(*[a.format(path=broken) for a in args])
    assert result.exit_code == 1 and "FNL100" in result.output
    assert "\x1b" not in result.output


def test_color_before_the_command_works_too(broken):
    result = invoke("--color", "always", "validate", broken)
    assert "\x1b[1;31merror\x1b[0m" in result.output


def test_errors_on_stderr_are_coloured_with_the_same_switch(tmp_path):
    result = invoke("validate", tmp_path / "gone.yaml", "--color", "always")
    assert result.exit_code == 3
    assert "fnl: \x1b[1;31merror:\x1b[0m " in result.output and "\x1b[1;36mhelp:\x1b[0m" in result.output
    assert "\x1b" not in invoke("validate", tmp_path / "gone.yaml").output


def test_a_bad_color_value_is_a_usage_error(broken):
    result = run_fnl("validate", broken, "--color", "sometimes")
    assert result.returncode == 3 and "'sometimes' is not one of" in result.stderr


def test_piped_subprocess_output_has_no_escape_codes(broken):
    result = run_fnl("validate", broken)
    assert result.returncode == 1 and "error FNL100" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
    gone = run_fnl("validate", broken.parent / "gone.yaml")
    assert gone.returncode == 3 and "\x1b" not in gone.stdout + gone.stderr
    forced = run_fnl("validate", broken, "--color", "always")
    assert "\x1b[1;31merror\x1b[0m" in forced.stdout


def on_a_terminal(*args: str, **env: str) -> Tuple[int, str]:
    """Run fnl with its standard output and error on a pseudo-terminal; (exit code, output)."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "fnl.py", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower, env=clean_env(**{"TERM": "xterm", **env}))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")
def test_a_terminal_gets_colour_unless_no_color_is_set(broken):
    code, out = on_a_terminal("validate", str(broken))
    assert code == 1 and "\x1b[1;31merror\x1b[0m" in out
    code, out = on_a_terminal("validate", str(broken), NO_COLOR="1")
    assert code == 1 and "FNL100" in out and "\x1b" not in out
    code, out = on_a_terminal("validate", str(broken), NO_COLOR="")   # empty: as if unset
    assert "\x1b[1;31merror\x1b[0m" in out
    code, out = on_a_terminal("validate", str(broken), "--color", "never")
    assert "FNL100" in out and "\x1b" not in out
    code, out = on_a_terminal("validate", str(broken), "--color", "always", NO_COLOR="1")
    assert "\x1b[1;31merror\x1b[0m" in out
    code, out = on_a_terminal("validate", str(broken), TERM="dumb")
    assert "FNL100" in out and "\x1b" not in out


def test_force_color_colours_a_pipe_unless_no_color_or_never(broken):
    forced = run_fnl("validate", broken, env=clean_env(FORCE_COLOR="1"))
    assert "\x1b[1;31merror\x1b[0m" in forced.stdout
    for env, args in [({"FORCE_COLOR": "0"}, ()), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, ()),
                      ({"FORCE_COLOR": "1"}, ("--color", "never"))]:
        result = run_fnl("validate", broken, *args, env=clean_env(**env))
        assert result.returncode == 1 and "\x1b" not in result.stdout, env


@pytest.mark.parametrize("mode,env,tty,expected", [
    ("auto", {}, True, True),
    ("auto", {}, False, False),
    ("auto", {"NO_COLOR": "1"}, True, False),
    ("auto", {"NO_COLOR": "0"}, True, False),        # any non-empty value
    ("auto", {"NO_COLOR": ""}, True, True),
    ("auto", {"FORCE_COLOR": "1"}, False, True),
    ("auto", {"FORCE_COLOR": "0"}, False, False),
    ("auto", {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),
    ("auto", {"TERM": "dumb"}, True, False),
    ("always", {"NO_COLOR": "1"}, False, True),
    ("never", {"FORCE_COLOR": "1"}, True, False),
])
def test_use_colour(mode, env, tty, expected):
    class Stream:
        def isatty(self) -> bool:
            return tty

    assert use_colour(mode, Stream(), env) is expected


def test_colour_never_lets_input_reach_the_terminal(tmp_path):
    path = write(tmp_path, "esc.yaml", MINIMAL + 'description: "\\e[2J\\e]0;title\\a"\n"k\\e[31m": 1\n')
    result = invoke("validate", path, "--color", "always")
    assert result.exit_code == 1
    assert set(SGR.findall(result.output)) <= OURS
    assert "\x1b[31m" not in result.output and "\x1b]" not in result.output and "\x07" not in result.output
