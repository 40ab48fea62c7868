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

Then `fnl watch`: one watch process on a copy of `funnels/acme` (and its templates); R
times, an editor's atomic save of `scoring.yaml` with the MQL threshold changed, timed from
the save to the `ready` line that follows it (the debounce, the check, the compile and the
small forecast of 200 leads included). Target: ready again within 300 ms.

    python3 bench/authoring_bench.py                  # funnels/reference.yaml, 10 repeats
    python3 bench/authoring_bench.py --file funnels/acme/funnel.yaml --repeats 20
    python3 bench/authoring_bench.py --no-watch           # startup only

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
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 250.0
WATCH_TARGET_MS = 300.0


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
    ap.add_argument("--no-watch", action="store_true", help="leave out the fnl watch figure")
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
    if not args.no_watch:
        watch_row(args.repeats, base)
    return 0


def watch_row(repeats: int, env: Dict[str, str]) -> None:
    """`fnl watch funnels/acme`: from an atomic save of scoring.yaml to the next `ready`."""
    import queue
    import shutil
    import signal
    import threading

    with tempfile.TemporaryDirectory(prefix="fnl-watch-bench-") as tmp:
        shutil.copytree(REPO / "funnels" / "acme", Path(tmp) / "funnels" / "acme")
        shutil.copytree(REPO / "templates" / "acme", Path(tmp) / "templates" / "acme")
        proc = subprocess.Popen([sys.executable, "-m", "fnl", "watch", "funnels/acme"], cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
        lines: "queue.Queue[Tuple[float, str]]" = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put((time.perf_counter(), line))

        threading.Thread(target=read, daemon=True).start()

        def ready() -> float:
            while True:
                at, line = lines.get(timeout=60)
                if line.startswith("ready"):
                    return at

        try:
            ready()
            scoring = Path(tmp) / "funnels" / "acme" / "scoring.yaml"
            text = scoring.read_text(encoding="utf-8")
            times = []
            for r in range(repeats):
                temp = scoring.with_name(".scoring.yaml.tmp")
                temp.write_text(text.replace("mql: 40", f"mql: {35 + r % 2 * 10}", 1), encoding="utf-8")
                t0 = time.perf_counter()
                os.replace(temp, scoring)
                times.append(ready() - t0)
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    median = statistics.median(times) * 1000
    print(f"\nfnl watch funnels/acme: from a save of scoring.yaml to `ready` (check, compile, a 200-lead forecast):"
          f" median {median:.0f} ms, min {min(times) * 1000:.0f} ms over {repeats} saves")
    verdict = "met" if median <= WATCH_TARGET_MS else "NOT met"
    print(f"target: ready again within {WATCH_TARGET_MS:.0f} ms of a save of the acme funnel: {verdict} "
          f"({median:.0f} ms, median of {repeats})")


if __name__ == "__main__":
    sys.exit(main())
