"""Issue 10's benchmark: `fnl simulate` against a NumPy and a SimPy model of the reference funnel.

Every row is a whole process, startup included, timed side by side in one script:

- `fnl simulate`: the command line, `python fnl.py simulate funnels/reference.yaml --leads N
  --format json -o FILE` (imports, compiling the funnel, loading the behaviour model,
  simulating, writing the JSON report); with `--workers W` also `fnl simulate --workers W`;
- the NumPy model (`bench/reference_model.py`, `run_numpy`: the whole cohort as arrays, day
  by day), the hand-written near-limit baseline;
- the SimPy model (`bench/simpy_model.py`, `run_simpy`: one SimPy process per lead), the
  tool a data-minded user would reach for. SimPy is not a project dependency: without it
  the script prints a hint and leaves its rows out;
- optionally the plain-Python model (`run_plain`: one lead at a time), at small sizes.

Columns: median and minimum wall time of R runs, lead-days per second (leads x 120 over the
median), the process's own peak resident memory (`ru_maxrss` from `os.wait4` on that child;
for `--workers` rows the largest single process of its tree, not their sum), "vs NumPy"
(the row's time per lead-day over the NumPy model's at the same size) and "vs SimPy" (the
SimPy model's time per lead-day at the same size over the row's: how many times as fast).
SimPy is run at 10k and 100k leads by default (1M takes many minutes; `--simpy 10000
100000 1000000` includes it). At a size SimPy did not run, its time is extrapolated from
its time per lead-day at its largest smaller size; since that time grows with the cohort,
the extrapolation is a lower bound on SimPy's time, and the output marks it with `>=`.

Then a verdict on issue 10's targets at 1M leads (fnl within 1.5x of the NumPy model, at
least 100x as fast as SimPy, peak memory under 1 GB, and with `--memory-10m` under 1 GB at
10M leads), a linearity line, and two fidelity checks: fnl's JSON at its largest size,
mapped to the spec's buckets, against the NumPy model at the same size, and the SimPy model
against the NumPy model, within 4 standard errors on every figure.

Exit codes: 0 the report was printed (whether or not a target is met), 1 a fidelity check
disagrees beyond 4 SE, 2 bad options, 3 a measured process failed.

    python3 bench/simulate_bench.py                    # fnl and NumPy 10k, 100k, 1M; SimPy 10k, 100k; 3 repeats
    python3 bench/simulate_bench.py --quick            # 10k, 100k; SimPy 10k; 1 repeat
    python3 bench/simulate_bench.py --workers 2 --memory-10m
    python3 bench/simulate_bench.py --simpy 10000 100000 1000000 --plain
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
FUNNEL = "funnels/reference.yaml"
HORIZON_DAYS = 120
SEED = 1                        # fnl's --seed default and the NumPy model's seed
SIMPY_SEED = SEED + 2           # streams of their own, so each model is an independent sample
PLAIN_SEED = SEED + 4
SIGMAS = 4.0
TARGET_SIZE = 1_000_000         # issue 10's targets are at 1M leads
MEMORY_SIZE = 10_000_000        # --memory-10m
TARGET_VS_NUMPY = 1.5
TARGET_VS_SIMPY = 100.0
TARGET_RSS_MB = 1000.0          # 1 GB; MB here are 10^6 bytes


def one(kind: str, leads: int) -> int:
    """The work of one measured model process: run it, print its `Figures` as JSON.

    Reached before argparse or anything else is imported, so a model's process pays for
    Python, its model and NumPy or SimPy, and no more."""
    import json

    sys.path.insert(0, str(BENCH))
    if kind == "simpy":
        import simpy_model

        figures = simpy_model.run_simpy(leads, SIMPY_SEED)
    else:
        import reference_model as model

        figures = model.run_plain(leads, PLAIN_SEED) if kind == "plain" else model.run_numpy(leads, SEED)
    print(json.dumps(figures.__dict__))
    return 0


# --- The benchmark (the parent process; its imports stay out of the measured model processes) --

def _main(argv):
    import argparse
    import dataclasses
    import hashlib
    import importlib.metadata
    import importlib.util
    import json
    import os
    import statistics
    import subprocess
    import tempfile
    import time
    from typing import List, Optional, Tuple

    sys.path.insert(0, str(BENCH))
    import reference_model
    from reference_model import Figures

    @dataclasses.dataclass
    class Job:
        kind: str                  # fnl, numpy, simpy, plain
        leads: int
        workers: int = 1
        times: List[float] = dataclasses.field(default_factory=list)
        rss_mb: List[float] = dataclasses.field(default_factory=list)
        output: Optional[dict] = None    # fnl: its JSON report; a model: its Figures as a dict

        @property
        def label(self) -> str:
            if self.kind == "fnl":
                return "fnl simulate" if self.workers == 1 else f"fnl --workers {self.workers}"
            return {"numpy": "NumPy model", "simpy": "SimPy model", "plain": "plain-Python model"}[self.kind]

        @property
        def median(self) -> float:
            return statistics.median(self.times)

        @property
        def per_lead_day(self) -> float:
            return self.median / (self.leads * HORIZON_DAYS)

    ap = argparse.ArgumentParser(
        description="Issue 10's benchmark: fnl simulate (whole process, through its CLI) against the NumPy "
                    "and SimPy models of the reference funnel, with the targets' verdict and a fidelity check.")
    ap.add_argument("--quick", action="store_true",
                    help="a fast check: fnl and NumPy at 10k and 100k, SimPy at 10k, 1 repeat")
    ap.add_argument("--repeats", type=int, help="runs per row (default 3; 1 with --quick)")
    ap.add_argument("--fnl", type=int, nargs="+", metavar="N",
                    help="fnl sizes (default 10000 100000 1000000)")
    ap.add_argument("--numpy", type=int, nargs="+", metavar="N",
                    help="NumPy model sizes (default: fnl's sizes; fnl's largest is always added, for fidelity)")
    ap.add_argument("--simpy", type=int, nargs="*", metavar="N",
                    help="SimPy model sizes (default 10000 100000; --quick 10000; the option alone: no SimPy rows)")
    ap.add_argument("--plain", type=int, nargs="*", metavar="N",
                    help="plain-Python model rows (the option alone: 10000 100000; default none)")
    ap.add_argument("--models", type=int, nargs="+", metavar="N",
                    help="the NumPy and plain-Python models both at these sizes (the older option)")
    ap.add_argument("--workers", type=int, nargs="+", default=[], metavar="W",
                    help="also time fnl simulate --workers W at fnl's sizes (W local processes)")
    ap.add_argument("--engine", choices=("auto", "vector", "per-lead"),
                    help="pass --engine to fnl simulate (default: fnl's own default, auto)")
    ap.add_argument("--memory-10m", action="store_true",
                    help="one more fnl run at 10,000,000 leads (time and peak memory; run once)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "LEADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return one(args.one[0], int(args.one[1]))

    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        ap.error("--repeats must be at least 1")
    fnl_sizes = sorted(set(args.fnl or ([10_000, 100_000] if args.quick else [10_000, 100_000, TARGET_SIZE])))
    numpy_sizes = args.numpy or args.models or fnl_sizes
    numpy_sizes = sorted(set(numpy_sizes) | {max(fnl_sizes)})
    if args.simpy is None:
        simpy_sizes = [10_000] if args.quick else [10_000, 100_000]
    else:
        simpy_sizes = sorted(set(args.simpy))
    if args.plain is None:
        plain_sizes = sorted(set(args.models)) if args.models else []
    else:
        plain_sizes = sorted(set(args.plain or [10_000, 100_000]))
    workers = sorted({w for w in args.workers if w > 1})
    if any(n < 1 for n in fnl_sizes + numpy_sizes + simpy_sizes + plain_sizes):
        ap.error("sizes must be at least 1 lead")
    simpy_version = None
    if simpy_sizes:
        if importlib.util.find_spec("simpy") is None:
            print(f"SimPy rows left out: simpy is not installed ({sys.executable} -m pip install simpy)",
                  file=sys.stderr)
            simpy_sizes = []
        else:
            simpy_version = importlib.metadata.version("simpy")

    jobs: List[Job] = [Job("fnl", n) for n in fnl_sizes]
    jobs += [Job("fnl", n, w) for w in workers for n in fnl_sizes]
    jobs += [Job("numpy", n) for n in numpy_sizes]
    jobs += [Job("simpy", n) for n in simpy_sizes]
    jobs += [Job("plain", n) for n in plain_sizes]
    memory_job = Job("fnl", MEMORY_SIZE) if args.memory_10m else None

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def git_head() -> str:
        try:
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                  text=True, check=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "engine", "fnl.py"],
                                   cwd=REPO, capture_output=True, text=True).stdout.strip()
            return head + (" with uncommitted changes in engine/ or fnl.py" if dirty else "")
        except (OSError, subprocess.CalledProcessError):
            return "a tree that is not a git checkout"

    def code_fingerprint() -> str:
        """What fnl runs: engine/, fnl.py and the reference funnel's files as they are on disk now."""
        digest = hashlib.sha256()
        paths = [REPO / "fnl.py", *sorted((REPO / "engine").rglob("*.py")),
                 *sorted((REPO / "funnels").glob("reference*"))]
        for path in paths:
            try:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
            except OSError:
                pass
        return digest.hexdigest()

    # As installed: pip writes every module's bytecode at install time, so a measured
    # process reads it instead of compiling the source (which PYTHONDONTWRITEBYTECODE, or
    # a checkout never run before, would leave to every process). Done once, not timed.
    import compileall

    for folder in (REPO / "engine", BENCH):
        compileall.compile_dir(str(folder), quiet=1)
    head = git_head()
    fingerprints: List[str] = [code_fingerprint()]
    load_start = os.getloadavg()[0]
    tmp = tempfile.TemporaryDirectory(prefix="fnl-simulate-bench-")

    def command(job: Job) -> List[str]:
        if job.kind == "fnl":
            cmd = [sys.executable, "fnl.py", "simulate", FUNNEL, "--leads", str(job.leads), "--format", "json",
                   "-o", str(Path(tmp.name) / f"fnl-{job.leads}-w{job.workers}.json")]
            if job.workers > 1:
                cmd += ["--workers", str(job.workers)]
            if args.engine:
                cmd += ["--engine", args.engine]
            return cmd
        return [sys.executable, str(Path(__file__).resolve()), "--one", job.kind, str(job.leads)]

    def measure(job: Job) -> None:
        """One whole process: wall time from spawn to reaping, and its own peak RSS."""
        cmd = command(job)
        if job.kind == "fnl":
            fingerprint = code_fingerprint()
            if fingerprint != fingerprints[-1]:
                fingerprints.append(fingerprint)
                print("  engine/, fnl.py or the reference funnel changed on disk", file=sys.stderr)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            # wait4 gives this child's own rusage (with the children it reaped itself, such
            # as fnl's workers: ru_maxrss is then the largest single process of the tree).
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0:
            print(f"{job.label} at {job.leads:,} leads failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                  f"{stderr[-3000:]}", file=sys.stderr)
            raise SystemExit(3)
        rss_mb = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e6
        job.times.append(seconds)
        job.rss_mb.append(rss_mb)
        if job.kind == "fnl":
            job.output = json.loads(Path(cmd[cmd.index("-o") + 1]).read_text())
        else:
            job.output = json.loads(stdout.strip().splitlines()[-1])
        print(f"  {job.label} {job.leads:,} leads: {seconds:.2f} s, peak RSS {rss_mb:,.0f} MB", file=sys.stderr)

    # Rounds, each in a rotated order, so a busy spell of a shared machine is spread over rows.
    with tmp:
        for r in range(repeats):
            print(f"round {r + 1} of {repeats}", file=sys.stderr)
            shift = r % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                measure(job)
        if memory_job:
            print("the 10M-lead memory run", file=sys.stderr)
            measure(memory_job)
    load_end = os.getloadavg()[0]

    def find(kind: str, leads: int, workers: int = 1) -> Optional[Job]:
        return next((j for j in jobs if j.kind == kind and j.leads == leads and j.workers == workers), None)

    def simpy_per_lead_day(leads: int) -> Tuple[Optional[float], bool, Optional[int]]:
        """SimPy's time per lead-day at `leads`: (value, extrapolated, size measured at).
        Not measured: the rate at the largest smaller size SimPy ran (a lower bound)."""
        measured = find("simpy", leads)
        if measured:
            return measured.per_lead_day, False, leads
        smaller = [n for n in simpy_sizes if n < leads]
        if not smaller:
            return None, False, None
        return find("simpy", max(smaller)).per_lead_day, True, max(smaller)

    def fmt_ratio(ratio: float, bound: bool = False) -> str:
        text = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"
        return (">=" if bound else "") + text

    # --- The table -------------------------------------------------------------------------
    rows = list(jobs)
    extrapolated = sorted({n for n in fnl_sizes if simpy_sizes and n > max(simpy_sizes)})
    print(f"Reference funnel, {HORIZON_DAYS}-day horizon; each row a whole process (startup included), "
          f"median and minimum of {repeats} run{'s' if repeats > 1 else ''}")
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"Python {sys.version.split()[0]}, numpy {version('numpy')}"
          + (f", SimPy {simpy_version}" if simpy_version else "")
          + f"; {os.cpu_count()} CPUs (nproc {nproc}); "
          f"load average {load_start:.1f} at the start, {load_end:.1f} at the end; fnl at {head}"
          + (f"; fnl --engine {args.engine}" if args.engine else ""))
    if len(fingerprints) > 1:
        print(f"WARNING: fnl's code (engine/, fnl.py or funnels/reference*) changed on disk while this ran "
              f"({len(fingerprints) - 1} time{'s' if len(fingerprints) > 2 else ''}; now at "
              f"{git_head()}): fnl's rows mix versions")
    header = (f"{'':<24}{'leads':>11}{'median s':>10}{'min s':>9}{'lead-days/s':>14}{'peak RSS MB':>13}"
              f"{'vs NumPy':>10}{'vs SimPy':>10}")
    print(header)

    def line(job: Job) -> str:
        numpy_job = find("numpy", job.leads)
        vs_numpy = fmt_ratio(job.per_lead_day / numpy_job.per_lead_day) if numpy_job else "-"
        simpy, bound, _ = simpy_per_lead_day(job.leads)
        vs_simpy = fmt_ratio(simpy / job.per_lead_day, bound) if simpy else "-"
        return (f"{job.label:<24}{job.leads:>11,}{job.median:>10.2f}{min(job.times):>9.2f}"
                f"{job.leads * HORIZON_DAYS / job.median:>14,.0f}{max(job.rss_mb):>13,.0f}{vs_numpy:>10}{vs_simpy:>10}")

    for job in rows:
        print(line(job))
        if job.kind == "simpy" and job.leads == max(simpy_sizes):
            for n in extrapolated:
                seconds = job.per_lead_day * n * HORIZON_DAYS
                numpy_job = find("numpy", n)
                vs_numpy = fmt_ratio(job.per_lead_day / numpy_job.per_lead_day, True) if numpy_job else "-"
                print(f"{'SimPy model, extrap.*':<24}{n:>11,}{'>=' + format(seconds, '.0f'):>10}{'-':>9}"
                      f"{'<=' + format(n * HORIZON_DAYS / seconds, ',.0f'):>14}{'-':>13}{vs_numpy:>10}{'-':>10}")
    if memory_job:
        print(f"{'fnl simulate (10M run)':<24}{memory_job.leads:>11,}{memory_job.median:>10.2f}"
              f"{min(memory_job.times):>9.2f}{memory_job.leads * HORIZON_DAYS / memory_job.median:>14,.0f}"
              f"{max(memory_job.rss_mb):>13,.0f}{'-':>10}{'-':>10}")
    print("lead-days = leads x 120. vs NumPy: the row's time per lead-day / the NumPy model's at the same size "
          "(fnl's target <= 1.5x at 1M).\nvs SimPy: the SimPy model's time per lead-day at the same size / the "
          "row's (fnl's target >= 100x at 1M). Peak RSS: each\nprocess's own ru_maxrss, the largest of its runs "
          "(for --workers rows the largest single process, not their sum).")
    if extrapolated:
        big = max(simpy_sizes)
        growth = ""
        if len(simpy_sizes) > 1:
            small = min(simpy_sizes)
            growth = (f" (here {find('simpy', big).per_lead_day / find('simpy', small).per_lead_day:.2f}x "
                      f"from {small:,} to {big:,} leads)")
        sizes = ", ".join(f"{n:,}" for n in extrapolated)
        print(f"* SimPy was not run at {sizes} leads: its time there is extrapolated from its time per lead-day at "
              f"{big:,} leads.\n  SimPy's time per lead-day grows with the cohort{growth}, so this is a lower "
              f"bound on its time,\n  and the '>=' ratios are lower bounds on how much faster the other rows are. "
              f"To measure it: --simpy {' '.join(str(n) for n in simpy_sizes + extrapolated)}")

    # --- Linearity ---------------------------------------------------------------------------
    print()
    single = [j for j in jobs if j.kind == "fnl" and j.workers == 1]
    pairs = []
    if find("fnl", TARGET_SIZE) and find("fnl", 100_000):
        pairs.append((find("fnl", TARGET_SIZE), find("fnl", 100_000)))
    elif len(single) > 1:
        pairs.append((single[-1], single[-2]))
    if memory_job and single:
        pairs.append((memory_job, single[-1]))
    for big_job, small_job in pairs:
        ratio = big_job.per_lead_day / small_job.per_lead_day
        print(f"linearity: fnl's time per lead-day at {big_job.leads:,} leads is {ratio:.2f}x its time at "
              f"{small_job.leads:,} (1.00x is linear in leads; below 1 as startup is spread over more leads)")

    # --- Verdict -----------------------------------------------------------------------------
    fnl_1m = find("fnl", TARGET_SIZE)
    print(f"\nIssue 10's targets at {TARGET_SIZE:,} leads (fnl simulate, one process, median of {repeats}):")

    def verdict(target: str, figure: str, met: Optional[bool]) -> None:
        status = "not measured" if met is None else ("met" if met else "NOT met")
        print(f"  {status:<14}{target}: {figure}")

    largest = max(fnl_sizes)
    if fnl_1m is None:
        note = f"fnl ran up to {largest:,} leads; add {TARGET_SIZE} to --fnl"
        for target in ("within 1.5x of the NumPy model per lead-day", "at least 100x as fast as SimPy per lead-day",
                       "peak memory under 1 GB"):
            verdict(target, note, None)
    else:
        numpy_1m = find("numpy", TARGET_SIZE)
        ratio = fnl_1m.per_lead_day / numpy_1m.per_lead_day
        also = "".join(f"; --workers {w}: {find('fnl', TARGET_SIZE, w).per_lead_day / numpy_1m.per_lead_day:.2f}x"
                       for w in workers)
        verdict("within 1.5x of the NumPy model per lead-day",
                f"{ratio:.2f}x ({fnl_1m.median:.2f} s against {numpy_1m.median:.2f} s{also})",
                ratio <= TARGET_VS_NUMPY)
        simpy, bound, at = simpy_per_lead_day(TARGET_SIZE)
        if simpy is None:
            verdict("at least 100x as fast as SimPy per lead-day", "SimPy not run", None)
        else:
            speedup = simpy / fnl_1m.per_lead_day
            how = (f"SimPy extrapolated from {at:,} leads: a lower bound" if bound else "SimPy measured at 1M")
            met = speedup >= TARGET_VS_SIMPY
            verdict("at least 100x as fast as SimPy per lead-day",
                    f"{fmt_ratio(speedup, bound)} ({how})" if met or not bound
                    else f"{fmt_ratio(speedup, bound)} ({how}; SimPy at 1M may still meet it)", met)
        rss = max(fnl_1m.rss_mb)
        also = "".join(f"; --workers {w}: {max(find('fnl', TARGET_SIZE, w).rss_mb):,.0f} MB" for w in workers)
        verdict("peak memory under 1 GB", f"{rss:,.0f} MB{also}", rss < TARGET_RSS_MB)
    if memory_job:
        rss = max(memory_job.rss_mb)
        verdict("peak memory under 1 GB at 10,000,000 leads", f"{rss:,.0f} MB ({memory_job.median:.1f} s)",
                rss < TARGET_RSS_MB)
    else:
        verdict("peak memory under 1 GB at 10,000,000 leads", "run with --memory-10m", None)
    print("  (1 GB = 1000 MB = 10^9 bytes; a report: the exit code does not depend on the targets)")

    # --- Fidelity ----------------------------------------------------------------------------
    ok = True
    fnl_big = find("fnl", largest)
    numpy_big = find("numpy", largest)
    model = Figures(**numpy_big.output)
    report = fnl_big.output
    print(f"\nFidelity at {largest:,} leads: fnl simulate's JSON as the spec's buckets against the NumPy model "
          f"(seed {SEED} each, independent streams), within {SIGMAS:g} SE:")
    stages = report.get("stages", {})
    unexpected = sorted(set(stages) - {"subscriber", "mql", "sql"})

    def count(stage: str, what: str) -> int:
        return int(stages.get(stage, {}).get(what, 0))

    n = int(report["leads"])
    buckets = {
        "subscriber": count("subscriber", "leads") - count("subscriber", "unsubscribed"),
        "mql": count("mql", "leads") - count("mql", "unsubscribed"),
        "sql": count("sql", "leads"),
        "unsubscribed": count("subscriber", "unsubscribed") + count("mql", "unsubscribed"),
    }
    if unexpected or sum(buckets.values()) != n:
        print(f"  fnl's stages at the horizon do not map to the spec's buckets: stages {sorted(stages)}, "
              f"buckets {buckets} summing to {sum(buckets.values()):,} of {n:,} leads")
        ok = False
    else:
        # Emails per lead: fnl's own spread (`emails.per_lead_sd`, over its leads), so each
        # side's standard error is its own.
        emails = int(report["emails_sent"])
        sd = float(report["emails"]["per_lead_sd"])
        emails_sq = (sd * sd + (emails / n) ** 2) * n
        unsubs = int(report["unsubscribes"])
        if unsubs == report.get("unsubscribed_leads"):
            unsubs_sq, unsubs_note = unsubs, "fnl's own (each lead unsubscribes at most once: 0 or 1 per lead)"
        else:
            unsub_var = (model.unsubscribes_sq - model.unsubscribes ** 2 / model.leads) / (model.leads - 1)
            unsubs_sq = unsub_var * (n - 1) + unsubs ** 2 / n
            unsubs_note = "the model's, for both"
        fnl_figures = Figures(n, buckets["subscriber"], buckets["mql"], buckets["sql"], buckets["unsubscribed"],
                              emails, emails_sq, unsubs, unsubs_sq)
        if n != largest:
            print(f"  (fnl simulated {n:,} leads for --leads {largest:,})")
        ok &= reference_model.print_agreement(fnl_figures, model, "fnl", "numpy")
        print("  SE: stage fractions binomial, from each side's own fraction; emails/lead: each side's own per-lead "
              f"variance (fnl's from its JSON's per_lead_sd);\n  unsubscribes/lead: {unsubs_note}.")

    # The other models against the NumPy model (are they the same funnel?).
    for kind, sizes, name, seed, question in (("simpy", simpy_sizes, "SimPy model", SIMPY_SEED,
                                               " (is the SimPy model the same funnel?)"),
                                              ("plain", plain_sizes, "plain-Python model", PLAIN_SEED, "")):
        if not sizes:
            continue
        big = find(kind, max(sizes))
        against = find("numpy", big.leads) or numpy_big
        print(f"\nThe {name} ({big.leads:,} leads, seed {seed}) against the NumPy model "
              f"({against.leads:,} leads, seed {SEED}), within {SIGMAS:g} SE{question}:")
        ok &= reference_model.print_agreement(Figures(**big.output), Figures(**against.output), kind, "numpy")
    if not ok:
        print("\nFIDELITY: a figure disagrees beyond 4 SE (exit 1)")
    return 0 if ok else 1


def main(argv=None) -> int:
    return _main(argv)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        sys.exit(one(sys.argv[2], int(sys.argv[3])))
    sys.exit(main())
