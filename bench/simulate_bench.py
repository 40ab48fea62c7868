"""How fast is `fnl simulate` on the reference funnel, against the plain models of it?

Rows (each measured as a whole process, startup and imports included, median of R runs):

- fnl simulate: `engine.simulate.run.simulate` on the compiled `funnels/reference.yaml`
  with its behaviour model (compiling the funnel and loading the model are timed too);
- the plain-Python model (`bench/reference_model.py`, `run_plain`: one lead at a time);
- the NumPy model (`run_numpy`: the whole cohort as arrays, day by day).

Lead-days are leads x 120 (the horizon), whatever day a lead opts in. "vs NumPy" is how
many times longer a row takes per lead-day than the NumPy model at its biggest size.

    python3 bench/simulate_bench.py                  # fnl 1k, 10k; models 10k, 100k, 1M
    python3 bench/simulate_bench.py --quick          # fnl 1k; models 10k, 100k
    python3 bench/simulate_bench.py --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
HORIZON_DAYS = 120
SEED = 1


def one(kind: str, leads: int) -> int:
    """The work of one measured process."""
    sys.path.insert(0, str(REPO))
    if kind == "fnl":
        from engine.pipeline import plan_for
        from engine.simulate.behavior import find_behavior, load_behavior
        from engine.simulate.run import simulate

        funnel = REPO / "funnels" / "reference.yaml"
        plan = plan_for(str(funnel))
        behavior_path = find_behavior(funnel)
        assert behavior_path is not None
        run = simulate(plan, load_behavior(behavior_path, plan), seed=SEED, leads=leads)
        print(len(run.leads), sum(1 for r in run.leads if r.stage == "sql"))
        return 0
    sys.path.insert(0, str(REPO / "bench"))
    import reference_model as model

    figures = model.run_plain(leads, SEED) if kind == "plain" else model.run_numpy(leads, SEED)
    print(figures.leads, figures.sql)
    return 0


def measure(kind: str, leads: int, repeats: int) -> List[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", kind, str(leads)],
                              capture_output=True, text=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} at {leads} leads failed:\n{proc.stderr[-2000:]}")
    return times


LABELS = {"fnl": "fnl simulate", "plain": "plain-Python model", "numpy": "NumPy model"}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="fnl simulate against plain models of the reference funnel")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller sizes: fnl 1k, models 10k and 100k")
    ap.add_argument("--fnl", type=int, nargs="*", help="fnl sizes (default 1000 10000)")
    ap.add_argument("--models", type=int, nargs="*", help="model sizes (default 10000 100000 1000000)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "LEADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return one(args.one[0], int(args.one[1]))

    fnl_sizes = args.fnl or ([1000] if args.quick else [1000, 10_000])
    model_sizes = args.models or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    plan: List[Tuple[str, int]] = [("fnl", n) for n in fnl_sizes]
    plan += [("plain", n) for n in model_sizes] + [("numpy", n) for n in model_sizes]

    results: Dict[Tuple[str, int], List[float]] = {}
    for kind, leads in plan:
        results[(kind, leads)] = measure(kind, leads, args.repeats)
        print(f"  {LABELS[kind]} {leads:,} leads: {', '.join(f'{t:.2f}' for t in results[(kind, leads)])} s",
              file=sys.stderr)

    biggest = max(n for k, n in results if k == "numpy")
    base = statistics.median(results[("numpy", biggest)]) / (biggest * HORIZON_DAYS)
    print(f"Reference funnel, {HORIZON_DAYS}-day horizon; whole process, median of {args.repeats}; "
          f"Python {sys.version.split()[0]}")
    print(f"{'':<22}{'leads':>10}{'median s':>10}{'min s':>9}{'lead-days/s':>14}{'vs NumPy':>10}")
    for kind, leads in plan:
        times = results[(kind, leads)]
        med = statistics.median(times)
        rate = leads * HORIZON_DAYS / med
        ratio = (med / (leads * HORIZON_DAYS)) / base
        print(f"{LABELS[kind]:<22}{leads:>10,}{med:>10.2f}{min(times):>9.2f}{rate:>14,.0f}{ratio:>9.1f}x")
    fnl_big = max(fnl_sizes)
    fnl_rate = fnl_big * HORIZON_DAYS / statistics.median(results[("fnl", fnl_big)])
    plain_big = max(model_sizes)
    plain_rate = plain_big * HORIZON_DAYS / statistics.median(results[("plain", plain_big)])
    print(f"\nfnl at {fnl_big:,} leads: {plain_rate / fnl_rate:.1f}x the plain-Python model's time per lead-day, "
          f"{1 / (base * fnl_rate):.1f}x the NumPy model's (both at {plain_big:,} leads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
