"""`fnl simulate` off the daily grid: the columns (`engine/simulate/rounds.py`) against the
per-lead simulator (every event through `engine.drive`, the loop `fnl trace` and the
runtime use), on the same funnel and leads, whole process against whole process.

`funnels/acme` spreads each lead's day over its active hours in its own timezone, holds
sends back with quiet hours and a frequency cap, runs SLAs on its handoffs and answers
them with CRM reactions: nothing of it lives on the daily grid. For each size, both
engines run R times in alternating order (so a busy spell of a shared machine falls on
both); the table prints the median and minimum wall time, lead-days a second, peak RSS,
the per-lead time over the columns' time, and whether the JSON reports are byte for byte
the same (they must be: exit 1 otherwise).

    python3 bench/offgrid_bench.py                       # acme, 2,000 and 10,000 leads, 3 repeats
    python3 bench/offgrid_bench.py --leads 2000 20000 --repeats 1
    python3 bench/offgrid_bench.py --funnel funnels/newsletter-to-demo.yaml
"""
from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("vector", "per-lead")


def measure(funnel: str, leads: int, engine: str, out: Path) -> Tuple[float, float]:
    """One whole `fnl simulate` process: (wall seconds, its own peak RSS in MB)."""
    cmd = [sys.executable, "fnl.py", "simulate", funnel, "--leads", str(leads), "--engine", engine,
           "--format", "json", "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if code not in (0, 1) or not out.exists():  # 1: an expectation of the funnel failed; the report is written
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code}):\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e6


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--funnel", default="funnels/acme")
    ap.add_argument("--leads", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.repeats < 1 or any(n < 1 for n in args.leads):
        ap.error("--leads and --repeats must be at least 1")
    # As installed: pip compiles every module's bytecode at install time.
    compileall.compile_dir(str(REPO / "engine"), quiet=1)
    from engine.pipeline import plan_for
    from engine.simulate.behavior import find_behavior, load_behavior
    from engine.simulate import vector

    plan = plan_for(str(REPO / args.funnel))
    found = find_behavior(REPO / args.funnel)
    behavior = load_behavior(found, plan) if found is not None else None
    days = (behavior.horizon_minutes // 1440) if behavior is not None else 120
    off = vector.kit(plan, behavior).off_grid if behavior is not None else None
    print(f"{args.funnel}: {days} days; off the daily grid because {off or '(it is on it)'}")
    rows: Dict[Tuple[int, str], List[Tuple[float, float]]] = {}
    same: Dict[int, bool] = {}
    with tempfile.TemporaryDirectory(prefix="fnl-offgrid-bench-") as tmp:
        for leads in args.leads:
            for r in range(args.repeats):
                for engine in (ENGINES if r % 2 == 0 else ENGINES[::-1]):
                    out = Path(tmp) / f"{engine}-{leads}.json"
                    rows.setdefault((leads, engine), []).append(measure(args.funnel, leads, engine, out))
                    print(f"  {engine} {leads:,} leads: {rows[(leads, engine)][-1][0]:.2f} s", file=sys.stderr)
            texts = [(Path(tmp) / f"{engine}-{leads}.json").read_bytes() for engine in ENGINES]
            same[leads] = texts[0] == texts[1]
    print(f"\n{'engine':<12}{'leads':>10}{'median s':>10}{'min s':>8}{'lead-days/s':>14}{'peak RSS MB':>13}"
          f"{'per-lead / columns':>20}{'same JSON':>11}")
    for leads in args.leads:
        median = {e: statistics.median(t for t, _ in rows[(leads, e)]) for e in ENGINES}
        for engine in ENGINES:
            times = [t for t, _ in rows[(leads, engine)]]
            ratio = f"{median['per-lead'] / median['vector']:.1f}x" if engine == "vector" else ""
            print(f"{engine:<12}{leads:>10,}{median[engine]:>10.2f}{min(times):>8.2f}"
                  f"{leads * days / median[engine]:>14,.0f}{max(m for _, m in rows[(leads, engine)]):>13,.0f}"
                  f"{ratio:>20}{('yes' if same[leads] else 'NO') if engine == 'vector' else '':>11}")
    print("\nwhole processes, startup included; lead-days = leads x the behaviour model's horizon in days")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
