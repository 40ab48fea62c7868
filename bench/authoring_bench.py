"""Issue 11's benchmark of the authoring loop: how fast `fnl validate` starts, beside
check-jsonschema on the same file, in one script.

Pre-commit hooks, editors and watch mode start `fnl validate` constantly, so its whole
process counts, startup included. Each row is a whole process, spawned by this script
and timed from spawn to exit, R times in rotating order (so a busy spell of a shared
machine falls on every row):

- `fnl validate FILE`: `python -m fnl validate FILE` (the code an installed `fnl`
  runs: its bytecode compiled, as pip does at install), with fnl's cache folder warm
  (the compiled schema validator and email templates: `engine/cache.py`), as every run
  after the first is;
- `fnl validate FILE, cold cache`: the same with an empty cache folder each run (the
  first run on a machine, or after an upgrade);
- `check-jsonschema FILE`: `python -m check_jsonschema --schemafile
  schemas/funnel.schema.json FILE`, the independent validator, which checks the schema
  only (fnl also checks every lint rule and renders every template).

It prints the median and minimum of each row, fnl's ratio to check-jsonschema, and the
verdict on the target: at most 250 ms for `fnl validate funnels/reference.yaml`.

    python3 bench/authoring_bench.py                  # funnels/reference.yaml, 10 repeats
    python3 bench/authoring_bench.py --file funnels/acme/funnel.yaml --repeats 20

Exit codes: 0 the report was printed (whether or not the target is met), 2 bad options,
3 a measured process failed or check-jsonschema is missing.
"""
from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 250.0


def timed(cmd: List[str], env: Dict[str, str], ok: tuple = (0,)) -> float:
    """Seconds from spawn to exit of one process, which must exit with a code in `ok`."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in ok:
        sys.stderr.write(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-2000:]}")
        raise SystemExit(3)
    return seconds


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default="funnels/reference.yaml", help="the definition to validate")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if not (REPO / args.file).exists():
        ap.error(f"{args.file} does not exist")
    if importlib.util.find_spec("check_jsonschema") is None:
        print("check-jsonschema is not installed: pip install check-jsonschema", file=sys.stderr)
        return 3
    # As installed: pip compiles every module's bytecode at install time.
    compileall.compile_dir(str(REPO / "engine"), quiet=1)
    compileall.compile_file(str(REPO / "fnl.py"), quiet=1)
    base = {k: v for k, v in os.environ.items() if k != "FNL_CACHE_DIR"}
    warm = tempfile.TemporaryDirectory(prefix="fnl-cache-warm-")
    rows = {
        "fnl validate": ([sys.executable, "-m", "fnl", "validate", args.file], {**base, "FNL_CACHE_DIR": warm.name}),
        "fnl validate, cold cache": ([sys.executable, "-m", "fnl", "validate", args.file], None),
        "check-jsonschema": ([sys.executable, "-m", "check_jsonschema", "--schemafile",
                              "schemas/funnel.schema.json", args.file], base),
    }
    ok = (0, 1)  # a definition with problems is still a measurement of the same work
    timed(rows["fnl validate"][0], rows["fnl validate"][1] or base, ok)  # fills the warm cache
    timed(rows["check-jsonschema"][0], base, ok)
    times: Dict[str, List[float]] = {name: [] for name in rows}
    names = list(rows)
    with warm:
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                cmd, env = rows[name]
                if env is None:  # an empty cache folder, each run
                    with tempfile.TemporaryDirectory(prefix="fnl-cache-cold-") as cold:
                        times[name].append(timed(cmd, {**base, "FNL_CACHE_DIR": cold}, ok))
                else:
                    times[name].append(timed(cmd, env, ok))
    load = os.getloadavg()[0]
    print(f"{args.file}: whole processes, {args.repeats} runs each; Python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs; load average {load:.1f}")
    print(f"{'':<28}{'median ms':>10}{'min ms':>9}{'vs check-jsonschema':>21}")
    reference = statistics.median(times["check-jsonschema"])
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:<28}{median * 1000:>10.0f}{min(times[name]) * 1000:>9.0f}{median / reference:>20.2f}x")
    fnl = statistics.median(times["fnl validate"]) * 1000
    verdict = "met" if fnl <= TARGET_MS else "NOT met"
    print(f"\ntarget: fnl validate {args.file} in at most {TARGET_MS:.0f} ms as a whole process: "
          f"{verdict} ({fnl:.0f} ms, median of {args.repeats})")
    print("fnl checks the schema, every lint rule and every template's rendering; check-jsonschema the schema only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
