"""`fnl simulate` on the reference funnel agrees with an independent model of its spec.

`bench/reference_model.py` is written from REFERENCE_FUNNEL.md alone, not from fnl's
code. fnl's simulator (the compiled `funnels/reference.yaml` driven by its behaviour model)
must agree with it within four standard errors on every report bucket (subscriber, mql,
sql/handoff, unsubscribed before hand-off), on emails per lead and on unsubscribe events
per lead. The standard error combines both estimates' sampling variance.

FNL_FIDELITY_LEADS sets the number of fnl leads (6000 by default: about 15 s); the model
runs 200 000 leads as NumPy arrays (about a second).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

np = pytest.importorskip("numpy")

from engine.pipeline import plan_for  # noqa: E402
from engine.simulate.behavior import find_behavior, load_behavior  # noqa: E402
from engine.simulate.run import Run, simulate  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FUNNEL = REPO / "funnels" / "reference.yaml"
FNL_LEADS = int(os.environ.get("FNL_FIDELITY_LEADS", "50000"))
MODEL_LEADS = max(200_000, 20 * FNL_LEADS)
SIGMAS = 4.0
DAY = 1440


def _model():
    spec = importlib.util.spec_from_file_location("fnl_bench_reference_model", REPO / "bench" / "reference_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


model = _model()


def fnl_figures(run: Run) -> "model.Figures":
    """fnl's run as the spec's report, mapped as REFERENCE_FUNNEL.md's last section says
    (from the run's tally, the counts every report is made of): subscriber and mql = in
    that stage at the horizon and not unsubscribed; sql/handoff = in sql (a sales-email
    unsubscribe keeps the lead there); unsubscribed = unsubscribed while subscriber or mql."""
    t = run.tally
    assert set(t.at_horizon) <= {"subscriber", "mql", "sql"}, f"stages at the horizon not in the spec: {t.at_horizon}"
    counts = {stage: t.at_horizon[stage] - t.at_horizon_unsubscribed[stage] for stage in ("subscriber", "mql")}
    emails = sum(n * leads for n, leads in t.emails.items())
    emails_sq = sum(n * n * leads for n, leads in t.emails.items())
    # A lead unsubscribes at most once: no email reaches it afterwards, so the sum of
    # squares of unsubscribes per lead is their count.
    unsubs = t.unsubscribes
    assert unsubs == t.unsubscribed_leads
    return model.Figures(t.leads, counts["subscriber"], counts["mql"], t.at_horizon["sql"],
                         t.at_horizon_unsubscribed["subscriber"] + t.at_horizon_unsubscribed["mql"], emails,
                         emails_sq, unsubs, unsubs)


def table(rows: List[Tuple[str, float, float, float, float, bool]]) -> str:
    lines = [f"{'figure':<20}{'fnl':>10}{'model':>10}{'SE':>10}{'z':>7}"]
    for name, x, y, se, z, good in rows:
        lines.append(f"{name:<20}{x:>10.5f}{y:>10.5f}{se:>10.5f}{z:>7.2f}{'' if good else '  > 4 SE'}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def fnl_run() -> Run:
    plan = plan_for(str(FUNNEL))
    behavior_path = find_behavior(FUNNEL)
    assert behavior_path is not None and behavior_path.name == "reference.behavior.yaml"
    behavior = load_behavior(behavior_path, plan)
    assert behavior.horizon_minutes == 120 * DAY
    return simulate(plan, behavior, seed=20261124, leads=FNL_LEADS)


def test_fnl_simulate_agrees_with_the_independent_model(fnl_run: Run) -> None:
    assert fnl_run.method == "vector" and fnl_run.tally.leads == FNL_LEADS
    assert fnl_run.rejected == 0
    fnl = fnl_figures(fnl_run)
    reference = model.run_numpy(MODEL_LEADS, seed=20261124)
    rows = model.compare(fnl, reference, SIGMAS)
    print(f"\nfnl {FNL_LEADS} leads against the model's {MODEL_LEADS}:\n{table(rows)}")
    # Every figure has some spread, so a bucket that is never filled cannot pass by accident.
    assert all(se > 0 for _, _, _, se, _, _ in rows), table(rows)
    bad = [name for name, *_, good in rows if not good]
    assert not bad, f"fnl and the reference model disagree beyond {SIGMAS:g} SE on {bad}:\n{table(rows)}"


def test_opt_in_days_are_uniform_over_the_first_thirty(fnl_run: Run) -> None:
    """The spec's opt-in day (0..29) as fnl's leads arrive: every day used, none after."""
    from engine.simulate.cohort import cohort
    from engine.simulate.draws import Draws

    leads = cohort(fnl_run.plan, fnl_run.behavior, Draws(fnl_run.seed), fnl_run.start, FNL_LEADS, fnl_run.horizon)
    days = (leads.arrives // DAY).tolist()
    assert min(days) == 0 and max(days) == 29
    counts = np.bincount(days, minlength=30)
    expected = len(days) / 30
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 70, f"opt-in days far from uniform: chi2 {chi2:.1f} on 29 degrees of freedom"


def test_the_models_two_implementations_agree() -> None:
    """The plain-Python and NumPy versions of the model, at a size the suite can afford
    (`python3 bench/reference_model.py` checks them at 200 000 leads)."""
    plain = model.run_plain(20_000, seed=11)
    vec = model.run_numpy(20_000, seed=12)
    rows = model.compare(plain, vec, SIGMAS)
    assert all(good for *_, good in rows), table(rows)
