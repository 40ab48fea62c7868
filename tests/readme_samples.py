"""The README's generated parts, and the command that regenerates them.

Two kinds of marks in README.md:

    <!-- sample: fnl trace funnels/acme --events tests/events/acme-dana.jsonl -->
    ```
    ...what that command prints...
    ```

    <!-- generated: conditions -->
    ...engine.language.markdown()...
    <!-- end generated -->

A sample is the standard output of its command, run from the repository root; a
generated section is rendered from its source. `tests/test_readme.py` fails when either
differs from the README, and

    python -m tests.readme_samples --write

rewrites them all, and the condition descriptions in `schemas/funnel.schema.json` too
(`--check` only reports what would change).
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SAMPLE = re.compile(r"^<!-- sample: (?P<command>.+?) -->\n(?P<fence>```[a-z]*)\n(?P<body>.*?)^```$",
                    re.MULTILINE | re.DOTALL)
GENERATED = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->\n(?P<body>.*?)^<!-- end generated -->$",
                       re.MULTILINE | re.DOTALL)


def _conditions() -> str:
    from engine import language

    return language.markdown()


SECTIONS: Dict[str, Callable[[], str]] = {"conditions": _conditions}


@dataclass(frozen=True)
class Sample:
    """A command's output as the README shows it."""

    command: str
    line: int  # of the marking comment, 1-based
    shown: str


@dataclass(frozen=True)
class Section:
    """A part of the README rendered from a source."""

    name: str
    line: int
    shown: str


def samples(text: str) -> List[Sample]:
    return [Sample(m.group("command"), text.count("\n", 0, m.start()) + 1, m.group("body").rstrip("\n"))
            for m in SAMPLE.finditer(text)]


def sections(text: str) -> List[Section]:
    return [Section(m.group("name"), text.count("\n", 0, m.start()) + 1, m.group("body").rstrip("\n"))
            for m in GENERATED.finditer(text)]


def environment() -> Dict[str, str]:
    """What a sample runs with: no CI switches, no colour, a fixed width."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "FORCE_COLOR", "CLICOLOR_FORCE")}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="100", PYTHONIOENCODING="utf-8")
    return env


def run(command: str) -> str:
    """The standard output of a sample's command (`fnl ARGS`, no shell), run from the
    repository root with this Python."""
    argv = shlex.split(command)
    if not argv or argv[0] != "fnl":
        raise ValueError(f"a sample runs fnl, not {command!r}")
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), *argv[1:]], cwd=REPO, capture_output=True,
                          text=True, encoding="utf-8", timeout=120, env=environment())
    if proc.returncode not in (0, 1, 2) or "Traceback" in proc.stderr:
        raise RuntimeError(f"`{command}` exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout.rstrip("\n")


def section(name: str) -> str:
    return SECTIONS[name]().rstrip("\n")


def regenerated(text: str, output: Optional[Callable[[str], str]] = None) -> str:
    """The README with every sample and generated section as its source makes it."""
    output = output or run

    def sample(m: "re.Match[str]") -> str:
        return f"<!-- sample: {m.group('command')} -->\n{m.group('fence')}\n{output(m.group('command'))}\n```"

    def generated(m: "re.Match[str]") -> str:
        return f"<!-- generated: {m.group('name')} -->\n{section(m.group('name'))}\n<!-- end generated -->"

    return GENERATED.sub(generated, SAMPLE.sub(sample, text))


def _schema() -> "tuple[Path, str, str]":
    from engine import language

    path = language.schema_path()
    current = path.read_text(encoding="utf-8")
    return path, current, language.dumps_schema(language.with_descriptions(json.loads(current)))


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"], ["--write"]):
        print("usage: python -m tests.readme_samples [--check | --write]", file=sys.stderr)
        return 3
    current = README.read_text(encoding="utf-8")
    wanted = regenerated(current)
    schema_path, schema_now, schema_wanted = _schema()
    changed = []
    if wanted != current:
        changed.append((README, current, wanted))
    if schema_wanted != schema_now:
        changed.append((schema_path, schema_now, schema_wanted))
    for path, old, new in changed:
        if args == ["--write"]:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(REPO)}")
        else:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       str(path.relative_to(REPO)), "regenerated"))
    if not changed:
        print("README samples, generated sections and schema descriptions are up to date")
    return 1 if changed and args != ["--write"] else 0


if __name__ == "__main__":
    sys.exit(main())
