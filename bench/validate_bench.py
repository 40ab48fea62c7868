"""Is `fnl validate` at least as fast as check-jsonschema on the same files and schema?

Generates N single-file definitions (see corpus.py), confirms that both tools find every
file valid, then times, interleaved and repeated:

* fnl in-process: `engine.check.check_paths((dir,))`, the validator already built;
* fnl as a user runs it: `python3 fnl.py validate DIR --format json`;
* both again with lint off (`--no-lint`), the same job check-jsonschema does;
* `check-jsonschema --schemafile schemas/funnel.schema.json FILES...`, once per
  `--check-jsonschema-python` (ruamel.yaml with or without its C parser differ 2.5x).

Prints a table of median and min wall time, files per second and the rate relative to
check-jsonschema. Exit codes: 0 done, 1 a tool did not find every file valid, 2 bad
options, 3 check-jsonschema is missing.

    python3 bench/validate_bench.py --count 1000 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

if str(Path(__file__).resolve().parent) not in sys.path:  # imported rather than run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402  (also puts the repository on sys.path)

from engine.check import check_paths  # noqa: E402
from engine.lint.runner import Selection  # noqa: E402

SCHEMA = corpus.REPO / "schemas" / "funnel.schema.json"


class BenchError(Exception):
    """A reason to stop before timing, with the exit code to stop with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Tool:
    """One contender: a name for the table and a run that raises BenchError unless every
    file was found valid."""

    name: str
    run: Callable[[], None]


def _subprocess(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def _first_lines(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[:n])


def fnl_in_process(directory: Path, count: int, lint: bool) -> Tool:
    """`check_paths` on the directory. Without lint every file must come out clean; with
    lint, findings are allowed (they are counted by `lint_summary`, not timed apart)."""
    selection = Selection() if lint else None

    def run() -> None:
        results = check_paths((str(directory),), selection)
        problems = [p for r in results for p in r.problems]
        if len(results) != count or (problems and not lint):
            first = problems[0] if problems else None
            detail = (f"{first.location.file}:{first.location.line}:{first.location.column} {first.code} "
                      f"{first.message}") if first else f"checked {len(results)} definitions, expected {count}"
            raise BenchError(f"fnl did not find every file valid: {detail}", 1)
    return Tool("fnl (in-process)" if lint else "fnl --no-lint (in-process)", run)


def lint_summary(directory: Path) -> str:
    """What lint reports on the corpus, e.g. `0 findings` or `120 findings: 100 FNL201, ...`."""
    codes = Counter(p.code for r in check_paths((str(directory),)) for p in r.problems)
    if not codes:
        return "0 findings"
    top = ", ".join(f"{n} {code}" for code, n in codes.most_common(4))
    return f"{sum(codes.values())} findings: {top}" + (", ..." if len(codes) > 4 else "")


def fnl_subprocess(directory: Path, count: int, lint: bool) -> Tool:
    """`fnl.py validate DIR --format json`; exit 1 (lint errors) counts as done when linting."""
    argv = [sys.executable, str(corpus.REPO / "fnl.py"), "validate", str(directory), "--format", "json"]
    argv += [] if lint else ["--no-lint"]
    accepted = (0, 1) if lint else (0,)

    def run() -> None:
        proc = _subprocess(argv, corpus.REPO)
        try:
            report = json.loads(proc.stdout)
            definitions = report["summary"]["definitions"]
            first = next((p for d in report["definitions"] for p in d["problems"]), None)
        except (ValueError, KeyError, TypeError):
            definitions, first = None, None
        if proc.returncode not in accepted or definitions != count:
            detail = (f"{first['file']}:{first['line']}:{first['column']} {first['code']} {first['message']}"
                      if first else _first_lines(proc.stderr or proc.stdout))
            raise BenchError(f"`fnl.py {' '.join(argv[2:4])} ...` exited {proc.returncode}: {detail}", 1)
    return Tool("fnl validate (subprocess)" if lint else "fnl validate --no-lint (subproc)", run)


def check_jsonschema_commands(pythons: List[str]) -> List[Tuple[str, List[str]]]:
    """A table label and a command for each way to run check-jsonschema.

    Each given Python runs `-m check_jsonschema`; without any, this Python does, or the
    `check-jsonschema` on PATH. The label says which YAML parser it will use: ruamel.yaml
    is pure Python unless ruamel.yaml.clib is installed, and that decides most of its
    speed. Raises BenchError (exit 3) when check-jsonschema is missing."""
    probe = ("import importlib.util as u, check_jsonschema; "
             "print('C YAML' if u.find_spec('_ruamel_yaml') else 'pure-Python YAML')")
    found = []
    for python in pythons or [sys.executable]:
        try:
            proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BenchError(f"cannot run {python}: {exc.strerror or exc}", 3) from None
        if proc.returncode == 0:
            found.append((f"check-jsonschema, {proc.stdout.strip()}", [python, "-m", "check_jsonschema"]))
        elif pythons:
            raise BenchError(f"{python} cannot import check_jsonschema: install it there with "
                             f"`{python} -m pip install check-jsonschema`", 3)
    if not found and shutil.which("check-jsonschema"):
        found.append(("check-jsonschema (subprocess)", [str(shutil.which("check-jsonschema"))]))
    if not found:
        raise BenchError("check-jsonschema is not installed: install it with `pip install check-jsonschema` "
                         "(or `pip install -e '.[test]'`) and run the benchmark again", 3)
    return found


def check_jsonschema(label: str, command: List[str], directory: Path, files: Sequence[Path]) -> Tool:
    # Names relative to the directory keep the command line short for large --count.
    argv = command + ["--schemafile", str(SCHEMA)] + [f.name for f in files]

    def run() -> None:
        proc = _subprocess(argv, directory)
        if proc.returncode != 0:
            raise BenchError(f"{label} exited {proc.returncode}: {_first_lines(proc.stdout + proc.stderr)}", 1)
    return Tool(label, run)


def measure(tools: List[Tool], repeats: int) -> Dict[str, List[float]]:
    """Wall times per tool. Each round runs every tool once; the order rotates between
    rounds so that no tool always runs first (cold caches) or last (a warm, busy CPU)."""
    times: Dict[str, List[float]] = {t.name: [] for t in tools}
    for r in range(repeats):
        shift = r % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            start = time.perf_counter()
            tool.run()
            times[tool.name].append(time.perf_counter() - start)
    return times


def lint_cost(times: Dict[str, List[float]], tools: List[Tool]) -> str:
    """What lint adds to YAML-and-schema validation, per paired round: issue #3 allows
    at most half again (a ratio of 1.5)."""
    with_lint, without = tools[0].name, tools[1].name
    ratios = [a / b for a, b in zip(times[with_lint], times[without])]
    median = statistics.median(ratios)
    verdict = "within" if median <= 1.5 else "OVER"
    return (f"lint cost: fnl with lint takes {median:.2f}x the time of fnl --no-lint (median of {len(ratios)} "
            f"paired rounds; {verdict} the 1.5x allowed)")


def table(times: Dict[str, List[float]], count: int, baseline: str) -> str:
    """One row per tool; the last column compares its rate with the baseline's."""
    base_rate = count / statistics.median(times[baseline])
    head = f"{'tool':<36}{'files':>7}{'median s':>10}{'min s':>9}{'files/s':>10}   vs check-jsonschema"
    rows = [head]
    for name, samples in times.items():
        median = statistics.median(samples)
        rate = count / median
        ratio = f"{rate / base_rate:.2f}x"
        rows.append(f"{name:<36}{count:>7}{median:>10.3f}{min(samples):>9.3f}{rate:>10.0f}   {ratio:>6}")
    return "\n".join(rows)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _revision() -> str:
    """The commit measured, marked when engine/ or the schema has uncommitted changes."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=corpus.REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "engine", "schemas", "fnl.py")
    return f"fnl at {commit}" + (" with uncommitted engine changes" if dirty else "")


def environment() -> str:
    import yaml

    libyaml = "with libyaml" if getattr(yaml, "__with_libyaml__", False) else "pure Python"
    return (f"{_revision()}; {time.strftime('%Y-%m-%d')}\n"
            f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}; "
            f"jsonschema {_version('jsonschema')}, PyYAML {_version('PyYAML')} {libyaml}, "
            f"check-jsonschema {_version('check-jsonschema')}, ruamel.yaml {_version('ruamel.yaml')}")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="definitions to generate (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per tool (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the variations (default 1)")
    parser.add_argument("--synthetic", action="store_true",
                        help="vary the built-in ~40 KB definition instead of the biggest example")
    parser.add_argument("--check-jsonschema-python", dest="pythons", action="append", default=[], metavar="PYTHON",
                        help="run check-jsonschema with this Python (repeatable; one table row each), "
                             "e.g. a virtualenv that also has ruamel.yaml.clib")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeats < 1:
        parser.error("--count and --repeats must be at least 1")
    return args


def bench(args: argparse.Namespace) -> int:
    contenders = check_jsonschema_commands(args.pythons)
    base = corpus.synthetic_base("--synthetic") if args.synthetic else corpus.base_definition()
    with tempfile.TemporaryDirectory(prefix="fnl-bench-") as tmp:
        directory = Path(tmp)
        files = corpus.write_corpus(directory, args.count, args.seed, base)
        size = sum(f.stat().st_size for f in files) / len(files)
        print(f"base: {base.origin}" + (f" ({base.note})" if base.note else "")
              + f"; {args.count} files of {size / 1024:.1f} KB on average, seed {args.seed}")
        tools = [fnl_in_process(directory, args.count, lint=True),
                 fnl_in_process(directory, args.count, lint=False),
                 fnl_subprocess(directory, args.count, lint=True),
                 fnl_subprocess(directory, args.count, lint=False)]
        tools += [check_jsonschema(label, command, directory, files) for label, command in contenders]
        for tool in tools:  # correctness first; this also warms caches and builds fnl's validator
            tool.run()
        print(f"YAML and schema: every tool finds all {args.count} files valid; "
              f"fnl lint: {lint_summary(directory)}")
        print(f"timing {args.repeats} interleaved rounds\n")
        times = measure(tools, args.repeats)
    print(table(times, args.count, baseline=contenders[0][0]))
    print(f"\n{lint_cost(times, tools)}")
    print(f"\n{environment()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return bench(args)
    except BenchError as exc:
        print(f"validate_bench: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
