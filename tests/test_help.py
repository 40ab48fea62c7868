"""Help: every command's --help (and `fnl --help`) ends with examples that are real
invocations, the safe ones run; exit codes are stated once (engine.errors.EXIT_MEANINGS)
and the README and every --help that names an exit code agree with it."""
from __future__ import annotations

import re
import shlex
import subprocess
from typing import List, Optional, Tuple

import click
import pytest
from click.testing import CliRunner

import fnl
from conftest import REPO
from engine.errors import EXIT_MEANINGS, exit_codes_text

COMMANDS = [""] + sorted(fnl.cli.commands)
SHELL_OPERATORS = {"|", ">", ">>", "<", "&&", "||", ";", "2>", "&"}
# Options that make fnl write a file: examples using them are parsed, not run.
WRITES = {"-o", "--output", "--write-baseline", "--db"}


def help_text(command: str) -> str:
    result = CliRunner().invoke(fnl.cli, [*([command] if command else []), "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def examples(text: str) -> List[str]:
    """The lines of a help's `Examples:` block."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Examples:"), None)
    if start is None:
        return []
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line.strip())
    return out


def fnl_words(line: str) -> List[str]:
    """The words of the fnl part of a shell line: up to the first pipe or redirection."""
    words = []
    for word in shlex.split(line):
        if word in SHELL_OPERATORS:
            break
        words.append(word)
    return words


def parse(words: List[str]) -> Tuple[click.Command, List[str]]:
    """Parse an fnl command line as fnl would, without running it; click raises a
    UsageError for an unknown command or option, a bad choice or a missing argument."""
    assert words[0] == "fnl"
    ctx = fnl.cli.make_context("fnl", words[1:])
    with ctx:
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        rest = [*protected, *ctx.args]
        name, command, args = fnl.cli.resolve_command(ctx, rest)
        assert command is not None, words
        command.make_context(name, args, parent=ctx).close()
    return command, args


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "fnl" for c in COMMANDS])
def test_every_help_has_examples_that_parse(command):
    lines = examples(help_text(command))
    assert lines, f"`fnl {command} --help` has no Examples: block"
    assert all(line.startswith("fnl ") for line in lines), lines
    if command:
        assert any(fnl_words(line)[1:2] == [command] or command in fnl_words(line) for line in lines), lines
    for line in lines:
        parse(fnl_words(line))


def test_parse_refuses_an_invocation_that_is_not_real():
    for line in ("fnl validat funnels/", "fnl validate --no-such-flag funnels/", "fnl schema nonsense",
                 "fnl validate"):
        with pytest.raises(click.UsageError):
            parse(fnl_words(line))


def unrunnable(words: List[str]) -> Optional[str]:
    """Why an example cannot run from the repository root as it stands, or None."""
    command = words[1] if len(words) > 1 else ""
    if command in ("watch", "lsp") and "--once" not in words:
        return "runs until it is stopped"
    if command == "init":
        return "writes a repository"
    if command == "render" and not WRITES & set(words):
        return "writes the HTML part into the working directory"
    for i, word in enumerate(words[1:], 1):
        if word in WRITES:
            return f"writes a file ({word})"
        if words[i - 1] == "--base":
            found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{word}^{{commit}}"], cwd=REPO,
                                   capture_output=True, timeout=30)
            if found.returncode != 0:
                return f"no revision {word} here"
        elif not word.startswith("-") and "=" not in word and ("/" in word or
                                                               re.search(r"\.(ya?ml|json|jsonl)$", word)):
            if not (REPO / word).exists():
                return f"no {word} here"
    return None


ALL_EXAMPLES = sorted({line for c in COMMANDS for line in examples(help_text(c))})
# The examples that run from the repository root as they stand (the others are parsed only).
RUNNABLE = [line for line in ALL_EXAMPLES if unrunnable(fnl_words(line)) is None]


@pytest.mark.parametrize("line", RUNNABLE)
def test_each_runnable_example_runs_from_the_repository_root(line, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(fnl.cli, fnl_words(line)[1:])
    assert result.exit_code in (0, 1, 2), f"{line}: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output and "internal error" not in result.output


# The runtime's commands work on the database `fnl run` makes: their examples run in
# order, on a database of their own (`test_the_runtime_examples_run_in_order`), not here.
RUNTIME = ("run", "status", "explain", "export", "forget")


def test_most_examples_run():
    others = [line for line in ALL_EXAMPLES if fnl_words(line)[1] not in RUNTIME]
    assert len([line for line in RUNNABLE if line in others]) >= len(others) * 2 // 3, set(others) - set(RUNNABLE)


def test_the_runtime_examples_run_in_order(tmp_path, monkeypatch):
    """`fnl run` makes the database, then status, explain and export read it and forget
    erases the lead: each command's own example, with the database in a temporary folder."""
    monkeypatch.chdir(REPO)
    lines = {fnl_words(line)[1]: line for line in ALL_EXAMPLES if fnl_words(line)[1] in RUNTIME}
    assert set(lines) == set(RUNTIME), lines
    db = str(tmp_path / "acme.db")
    for command in RUNTIME[:-1] + ("forget", "export"):
        words = [db if w == "acme.db" else w for w in fnl_words(lines[command])[1:]]
        result = CliRunner().invoke(fnl.cli, words)
        assert result.exit_code == 0, f"{lines[command]}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output and "internal error" not in result.output


# -- exit codes -----------------------------------------------------------------------

# What a clause naming an exit code must say for it to agree with EXIT_MEANINGS.
MEANING_WORDS = {0: ("no problem", "no change", "nothing changed", "success"), 1: ("problem",), 2: ("change",),
                 3: ("usage",), 4: ("internal",)}
EXIT_MENTION = re.compile(r"\bexit(s|ed)?( codes?)?\b\W{0,3}[0-4]\b|\bexit codes\b", re.I)
CODE = re.compile(r"(?<![\w.~/-])[0-4](?![\w%]|\.\d)")


def claims(text: str) -> List[Tuple[int, str]]:
    """(code, clause) for each exit code a text names: in each sentence that speaks of exit
    codes, each clause (between commas and semicolons) holding one code."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if EXIT_MENTION.search(sentence):
            for clause in re.split(r"[;,]", sentence):
                codes = CODE.findall(clause)
                if len(codes) == 1:
                    out.append((int(codes[0]), clause.strip()))
    return out


def disagreements(text: str) -> List[Tuple[int, str]]:
    return [(code, clause) for code, clause in claims(text)
            if not any(word in clause.lower() for word in MEANING_WORDS[code])]


def test_the_checker_catches_a_wrong_statement():
    assert disagreements("Exit 0 for no changes, 2 for changes, 1 for errors.") == [(1, "1 for errors.")]
    assert disagreements("Exit codes: 0 no problems, 1 problems found, 3 internal error.") == [
        (3, "3 internal error.")]
    assert disagreements(exit_codes_text().join(["Exit codes: ", "."])) == []
    assert len(claims(exit_codes_text().join(["Exit codes: ", "."]))) == len(EXIT_MEANINGS)


def test_fnl_help_lists_exactly_the_exit_codes():
    text = help_text("")
    block = text[text.index("Exit codes:"):].splitlines()[1:]
    listed = [(int(m.group(1)), m.group(2)) for m in (re.match(r"\s+(\d)\s+(.+)$", line) for line in block) if m]
    assert listed == list(EXIT_MEANINGS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "fnl" for c in COMMANDS])
def test_every_help_that_names_an_exit_code_agrees(command):
    text = help_text(command)
    if not command:
        text = text[:text.index("Exit codes:")]  # the list itself is checked above
    assert disagreements(text) == []


def test_plan_help_names_its_exit_codes():
    codes = {code for code, _ in claims(help_text("plan"))}
    assert {0, 1, 2, 3} <= codes


def readme_texts() -> List[str]:
    """The README's prose, and each comment in its code blocks as a text of its own."""
    prose, comments = [], []
    for i, part in enumerate(re.split(r"^```.*$", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.M)):
        if i % 2 == 0:
            prose.append(part)
        else:
            comments.extend(line.split("# ", 1)[1] + "." for line in part.splitlines() if "# " in line)
    return ["\n\n".join(prose), *comments]


def test_the_readme_states_the_exit_codes_and_agrees_everywhere():
    texts = readme_texts()
    assert exit_codes_text() in " ".join(texts[0].split())
    assert [d for text in texts for d in disagreements(text)] == []
    assert len([c for text in texts for c in claims(text)]) > len(EXIT_MEANINGS)
