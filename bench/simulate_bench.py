"""How fast is `fnl simulate` on the reference funnel, against the plain models of it?

Rows (each measured as a whole process, startup and imports included, median of R runs):

- fnl simulate: `engine.simulate.run.simulate` on the compiled `funnels/reference.yaml`
  with its behaviour model (compiling the funnel and loading the model are timed too);
- the plain-Python model (`bench/reference_model.py`, `run_plain`: one lead at a time);
- the NumPy model (`run_numpy`: the whole cohort as arrays, day by day);
- the SimPy model (`bench/simpy_model.py`, `run_simpy`: one SimPy process per lead, a day
  per `env.timeout`), the tool a data-minded user would reach for. SimPy is not a project
  dependency: without it the script prints a hint and leaves the SimPy rows out.

Lead-days are leads x 120 (the horizon), whatever day a lead opts in. "vs NumPy" is how
many times longer a row takes per lead-day than the NumPy model at its biggest size;
"vs SimPy" is how many times faster a row is per lead-day than the SimPy model at its
biggest size. SimPy need not be run at 1M leads (well over ten minutes on a 2-core
machine): its time per lead-day grows with the cohort (every lead's process is live at once;
1.6 to 1.8x from 10k to 100k leads), so its rate at 100k leads gives a lower bound on its time at
1M. The SimPy model's figures at its biggest size are checked against the plain-Python
model's at its biggest size: within 4 standard errors on every figure, or the script says
DISAGREE and exits 1.

    python3 bench/simulate_bench.py                  # fnl 1k, 10k; models 10k, 100k, 1M; SimPy 10k, 100k
    python3 bench/simulate_bench.py --quick          # fnl 1k; models 10k, 100k; SimPy 10k
    python3 bench/simulate_bench.py --simpy          # no SimPy rows
    python3 bench/simulate_bench.py --repeats 5
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
HORIZON_DAYS = 120
SEED = 1
SIMPY_SEED = SEED + 2          # a stream of its own, so SimPy and plain are independent samples


def one(kind: str, leads: int) -> int:
    """The work of one measured process."""
    sys.path.insert(0, str(REPO))
    if kind.startswith("fnl"):
        from engine.pipeline import plan_for
        from engine.simulate.behavior import find_behavior, load_behavior
        from engine.simulate.run import simulate
        from engine.simulate.workers import Workers

        funnel = REPO / "funnels" / "reference.yaml"
        plan = plan_for(str(funnel))
        behavior_path = find_behavior(funnel)
        assert behavior_path is not None
        processes = int(kind[len("fnl-w"):]) if kind.startswith("fnl-w") else 1
        run = simulate(plan, load_behavior(behavior_path, plan), seed=SEED, leads=leads,
                       workers=Workers(processes=processes))
        print(len(run.leads), sum(1 for r in run.leads if r.stage == "sql"))
        return 0
    sys.path.insert(0, str(REPO / "bench"))
    if kind == "simpy":
        import simpy_model

        figures = simpy_model.run_simpy(leads, SIMPY_SEED)
    else:
        import reference_model as model

        figures = model.run_plain(leads, SEED) if kind == "plain" else model.run_numpy(leads, SEED)
    print(json.dumps(figures.__dict__))
    return 0


def measure(kind: str, leads: int, repeats: int) -> Tuple[List[float], str]:
    """Wall times of `repeats` whole processes, and the last one's output."""
    times = []
    out = ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", kind, str(leads)],
                              capture_output=True, text=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} at {leads} leads failed:\n{proc.stderr[-2000:]}")
        out = proc.stdout
    return times, out


def figures_of(out: str):
    """The `Figures` a model's measured process printed (its last line, as JSON)."""
    sys.path.insert(0, str(REPO / "bench"))
    import reference_model

    return reference_model.Figures(**json.loads(out.strip().splitlines()[-1]))


def fmt_ratio(ratio: float) -> str:
    """A ratio as `12.3x`, with two significant digits below 1 (`0.045x`)."""
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2g}x"


LABELS = {"fnl": "fnl simulate", "plain": "plain-Python model", "numpy": "NumPy model",
          "simpy": "SimPy model"}


def label(kind: str) -> str:
    if kind.startswith("fnl-w"):
        return f"fnl --workers {kind[len('fnl-w'):]}"
    return LABELS[kind]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="fnl simulate against plain models of the reference funnel")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller sizes: fnl 1k, models 10k and 100k, SimPy 10k")
    ap.add_argument("--fnl", type=int, nargs="*", help="fnl sizes (default 1000 10000)")
    ap.add_argument("--models", type=int, nargs="*", help="model sizes (default 10000 100000 1000000)")
    ap.add_argument("--simpy", type=int, nargs="*",
                    help="SimPy model sizes (default 10000 100000; --quick 10000; the option alone: none)")
    ap.add_argument("--workers", type=int, default=0,
                    help="also time fnl with --workers N at its sizes (the leads on N local processes)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "LEADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return one(args.one[0], int(args.one[1]))

    fnl_sizes = args.fnl or ([1000] if args.quick else [1000, 10_000])
    model_sizes = args.models or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    plan: List[Tuple[str, int]] = [("fnl", n) for n in fnl_sizes]
    if args.workers > 1:
        plan += [(f"fnl-w{args.workers}", n) for n in fnl_sizes]
    plan += [("plain", n) for n in model_sizes] + [("numpy", n) for n in model_sizes]
    if args.simpy is None:
        simpy_sizes = [10_000] if args.quick else [10_000, 100_000]
    else:
        simpy_sizes = args.simpy
    if simpy_sizes and importlib.util.find_spec("simpy") is None:
        print(f"SimPy rows skipped: simpy is not installed ({sys.executable} -m pip install simpy)",
              file=sys.stderr)
        simpy_sizes = []
    plan += [("simpy", n) for n in simpy_sizes]

    results: Dict[Tuple[str, int], List[float]] = {}
    outputs: Dict[Tuple[str, int], str] = {}
    for kind, leads in plan:
        results[(kind, leads)], outputs[(kind, leads)] = measure(kind, leads, args.repeats)
        print(f"  {label(kind)} {leads:,} leads: {', '.join(f'{t:.2f}' for t in results[(kind, leads)])} s",
              file=sys.stderr)

    def per_lead_day(kind: str, leads: int) -> float:
        return statistics.median(results[(kind, leads)]) / (leads * HORIZON_DAYS)

    numpy_big = max(model_sizes)
    base = per_lead_day("numpy", numpy_big)
    simpy_base = per_lead_day("simpy", max(simpy_sizes)) if simpy_sizes else None
    print(f"Reference funnel, {HORIZON_DAYS}-day horizon; whole process, median of {args.repeats}; "
          f"Python {sys.version.split()[0]}")
    print(f"{'':<22}{'leads':>10}{'median s':>10}{'min s':>9}{'lead-days/s':>14}{'vs NumPy':>10}"
          + (f"{'vs SimPy':>10}" if simpy_base else ""))
    for kind, leads in plan:
        times = results[(kind, leads)]
        med = statistics.median(times)
        rate = leads * HORIZON_DAYS / med
        ratio = per_lead_day(kind, leads) / base
        line = f"{label(kind):<22}{leads:>10,}{med:>10.2f}{min(times):>9.2f}{rate:>14,.0f}{fmt_ratio(ratio):>10}"
        if simpy_base:
            line += f"{fmt_ratio(simpy_base / per_lead_day(kind, leads)):>10}"
        print(line)
    print("vs NumPy: times the NumPy model's time per lead-day"
          + ("; vs SimPy: times as fast as the SimPy model per lead-day" if simpy_base else ""))

    fnl_big = max(fnl_sizes)
    fnl_per = per_lead_day("fnl", fnl_big)
    plain_big = max(model_sizes)
    print(f"\nfnl at {fnl_big:,} leads: {fnl_per / per_lead_day('plain', plain_big):.1f}x the plain-Python model's "
          f"time per lead-day, {fnl_per / base:.1f}x the NumPy model's (both at {plain_big:,} leads)")
    ok = True
    if simpy_base:
        simpy_big = max(simpy_sizes)
        speedup = simpy_base / fnl_per
        verdict = (f"{speedup:.1f}x as fast as" if speedup >= 1 else f"{1 / speedup:.1f}x slower than")
        print(f"fnl at {fnl_big:,} leads: {verdict} the SimPy model per lead-day (SimPy at {simpy_big:,} leads; "
              f"issue 10's target: at least 100x as fast at 1,000,000 leads, where SimPy would take at least "
              f"{simpy_base * 1_000_000 * HORIZON_DAYS:,.0f} s)")
        sys.path.insert(0, str(REPO / "bench"))
        import reference_model

        sim = figures_of(outputs[("simpy", simpy_big)])
        plain = figures_of(outputs[("plain", plain_big)])
        print(f"\nSimPy model ({simpy_big:,} leads) against the plain-Python model ({plain_big:,} leads):")
        ok &= reference_model.print_agreement(sim, plain, "simpy", "plain")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
