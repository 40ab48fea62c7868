"""Shell completion: --select and --ignore complete rule IDs and family prefixes (also after
a comma), `fnl rules` completes rule IDs and names; a real shell request through
`_FNL_COMPLETE` answers the same."""
from __future__ import annotations

import subprocess
import sys
from typing import List

import click
import pytest

import fnl
from conftest import REPO, clean_env
from engine.lint.registry import BY_ID


def values(items) -> List[str]:
    return [item.value for item in items]


def complete(*words: str, shell: str = "bash") -> List[str]:
    """What `fnl` answers a shell asking to complete the last of `words` (as typed)."""
    env = clean_env(_FNL_COMPLETE=f"{shell}_complete", COMP_WORDS=" ".join(("fnl",) + words),
                    COMP_CWORD=str(len(words)))
    result = subprocess.run([sys.executable, "fnl.py"], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def param(command: str, name: str) -> click.Parameter:
    return next(p for p in fnl.cli.commands[command].params if p.name == name)


def test_select_and_ignore_complete_rule_ids_and_prefixes():
    ctx = click.Context(fnl.cli.commands["validate"])
    for option in ("select", "ignore"):
        complete_ids = param("validate", option)._custom_shell_complete
        assert complete_ids is fnl.complete_rule_ids
        assert values(complete_ids(ctx, param("validate", option), "FNL30")) == sorted(
            i for i in BY_ID if i.startswith("FNL30"))
    everything = values(fnl.complete_rule_ids(ctx, param("validate", "select"), ""))
    assert everything[:4] == ["FNL2", "FNL3", "FNL4", "FNL5"] and set(BY_ID) <= set(everything)
    assert values(fnl.complete_rule_ids(ctx, param("validate", "select"), "fnl5"))[0] == "FNL5"
    assert values(fnl.complete_rule_ids(ctx, param("validate", "select"), "FNL9")) == []


def test_a_list_completes_its_last_item_and_leaves_out_what_it_has():
    ctx = click.Context(fnl.cli.commands["validate"])
    got = values(fnl.complete_rule_ids(ctx, param("validate", "ignore"), "FNL201,FNL20"))
    assert got == [f"FNL201,{i}" for i in sorted(BY_ID) if i.startswith("FNL20") and i != "FNL201"]


def test_rules_completes_ids_and_names():
    ctx = click.Context(fnl.cli.commands["rules"])
    rule_id = param("rules", "rule_id")
    assert rule_id._custom_shell_complete is fnl.complete_rule
    assert values(fnl.complete_rule(ctx, rule_id, "FNL50")) == sorted(i for i in BY_ID if i.startswith("FNL50"))
    names = values(fnl.complete_rule(ctx, rule_id, "unknown-"))
    assert "unknown-template" in names and all(n.startswith("unknown-") for n in names)


def test_a_shell_asking_for_completion_gets_matching_ids():
    assert complete("validate", "funnels", "--select", "FNL30") == [
        f"plain,{i}" for i in sorted(BY_ID) if i.startswith("FNL30")]
    assert complete("validate", "funnels", "--ignore", "FNL201,FNL4")[0] == "plain,FNL201,FNL4"
    assert complete("rules", "FNL20") == [f"plain,{i}" for i in sorted(BY_ID) if i.startswith("FNL20")]


def test_zsh_gets_each_rule_with_its_description():
    lines = complete("validate", "x", "--select", "FNL201", shell="zsh")
    assert lines[:2] == ["plain", "FNL201"] and lines[2].startswith("unknown-template: ")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_printed_for_each_shell(shell):
    env = clean_env(_FNL_COMPLETE=f"{shell}_source")
    result = subprocess.run([sys.executable, "fnl.py"], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0 and "_FNL_COMPLETE" in result.stdout


def test_the_readme_says_how_to_enable_completion():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert 'eval "$(_FNL_COMPLETE=bash_source fnl)"' in readme
    assert 'eval "$(_FNL_COMPLETE=zsh_source fnl)"' in readme
