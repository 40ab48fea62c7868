"""`fnl simulate --workers N` and `--dask ADDRESS` give the forecast one process gives.

The leads of a run are cut into pieces that run on their own (`engine/simulate/workers.py`)
and merged (`run.merge`); `tests/test_simulate_replay.py` proves a run in pieces equal to
the one engine loop over all leads. Here: the JSON and HTML reports are byte for byte the
same in one process, on four local processes and on a real Dask `LocalCluster` (through the
CLI, a separate process that connects to it), and what a user gets wrong is one line.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import fnl
from engine.errors import EXIT_USAGE
from engine.simulate import Workers, forecast
from engine.simulate.report import render

REPO = Path(__file__).resolve().parent.parent
FUNNEL = str(REPO / "funnels" / "reference.yaml")  # round robin over two reps
LEADS = 600


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def one_process() -> dict:
    result = forecast(FUNNEL, leads=LEADS, seed=7)
    return {"json": render(result, "json"), "html": render(result, "html"), "forecast": result}


def test_the_run_has_owners_to_get_right(one_process) -> None:
    reps = one_process["forecast"].figures.reps
    assert len(reps) == 2 and all(r.handoffs for r in reps), "both reps should own leads"


def test_four_processes_give_the_same_json_and_html(one_process) -> None:
    result = forecast(FUNNEL, leads=LEADS, seed=7, workers=Workers(processes=4))
    assert render(result, "json") == one_process["json"]
    assert render(result, "html") == one_process["html"]


def test_any_piece_size_gives_the_same_json(one_process) -> None:
    for chunk in (1, 50, 599):
        assert render(forecast(FUNNEL, leads=LEADS, seed=7, workers=Workers(chunk=chunk)), "json") == \
            one_process["json"], chunk


def test_cli_workers_is_the_same_forecast(one_process, tmp_path) -> None:
    out = tmp_path / "four.json"
    r = cli("simulate", FUNNEL, "--leads", str(LEADS), "--seed", "7", "--workers", "4", "--format", "json",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8") == one_process["json"]


def test_dask_local_cluster_gives_the_same_json_and_html(one_process, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        api = forecast(FUNNEL, leads=LEADS, seed=7, workers=Workers(dask=cluster.scheduler_address))
        assert render(api, "json") == one_process["json"]
        assert render(api, "html") == one_process["html"]
        out = tmp_path / "dask.json"
        r = cli("simulate", FUNNEL, "--leads", str(LEADS), "--seed", "7", "--dask", cluster.scheduler_address,
                "--format", "json", "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_text(encoding="utf-8") == one_process["json"]


@pytest.mark.parametrize("args, message", [
    (("--workers", "0"), "--workers 0: give from 1 to 256 worker processes"),
    (("--workers", "many"), "--workers many: not a whole number"),
    (("--workers", "2", "--dask", "tcp://127.0.0.1:9"), "give --workers or --dask, not both"),
])
def test_bad_worker_options_are_usage_errors(args, message) -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", FUNNEL, "--leads", "10", *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_unreachable_dask_scheduler_is_one_line_and_quick() -> None:
    pytest.importorskip("distributed")
    began = time.monotonic()
    r = cli("simulate", FUNNEL, "--leads", "10", "--dask", "tcp://127.0.0.1:9")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert "--dask tcp://127.0.0.1:9: cannot reach a Dask scheduler there" in r.stderr
    assert time.monotonic() - began < 60


@pytest.mark.parametrize("address", ["", "notanaddress", "tcp://", "tcp://host:port"])
def test_a_malformed_dask_address_is_one_line_at_once(address: str) -> None:
    pytest.importorskip("distributed")
    began = time.monotonic()
    r = cli("simulate", FUNNEL, "--leads", "10", "--dask", address)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith(f"fnl: error: --dask {address}: not a scheduler address"), r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert time.monotonic() - began < 10
