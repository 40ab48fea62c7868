"""`fnl simulate --sweep PATH=LO..HI/N`: one row per value of one behaviour-file setting.

A point of the sweep must be exactly the forecast of the behaviour file written with that
value (a real file on disk), the rows share seeds (so more website visits never mean
fewer MQLs), it fans out on `--workers` with the same output, and what a user writes
wrong is one line.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import fnl
from engine.errors import EXIT_PROBLEMS, EXIT_USAGE
from engine.simulate import Workers, forecast
from engine.simulate.compare import metrics
from engine.simulate.sweep import parse_sweep, render, sweep

REPO = Path(__file__).resolve().parent.parent
FUNNEL = REPO / "funnels" / "reference.yaml"
BEHAVIOR = REPO / "funnels" / "reference.behavior.yaml"
LEADS = 300


@pytest.fixture(scope="module")
def swept():
    return sweep(str(FUNNEL), "visits.daily=0.005..0.025/3", leads=LEADS, seed=3)


def test_values_are_evenly_spaced_and_whole_when_written_whole() -> None:
    assert parse_sweep("visits.daily=0.005..0.025/3").values == (0.005, 0.015, 0.025)
    assert parse_sweep("behavior.arrivals.guide.leads=100..200/3").path == ("arrivals", "guide", "leads")
    assert parse_sweep("arrivals.guide.leads=100..200/4").values == (100.0, 133.0, 167.0, 200.0)
    assert parse_sweep("email.default.open=10%,20%,20%").values == (0.1, 0.2)


def test_each_point_is_the_forecast_of_the_file_written_with_that_value(swept, tmp_path: Path) -> None:
    text = BEHAVIOR.read_text(encoding="utf-8")
    assert "\n  daily: 0.01 " in text or "\n  daily: 0.01\n" in text
    written = tmp_path / "reference.behavior.yaml"
    written.write_text(text.replace("\n  daily: 0.01", "\n  daily: 0.015", 1), encoding="utf-8")
    alone = forecast(str(FUNNEL), str(written), leads=LEADS, seed=3)
    expected = metrics(alone.figures, ("mql", "sql"))
    row = swept.rows[1]
    assert row.value == 0.015
    got = {key: value for key, _label, _kind, value in row.figures}
    for key, (_label, _kind, value) in expected.items():
        assert got[key] == value, key


def test_rows_share_seeds_so_more_visits_never_mean_fewer_mqls(swept) -> None:
    reached = [dict((k, v) for k, _l, _k, v in row.figures)["stages.mql.reached"] for row in swept.rows]
    assert reached == sorted(reached) and reached[0] < reached[-1], reached
    leads = {dict((k, v) for k, _l, _k, v in row.figures)["leads"] for row in swept.rows}
    assert len(leads) == 1, "the same leads arrive at every value"


def test_text_json_and_markdown(swept) -> None:
    text = render(swept, "text")
    assert text.startswith("Sweep for ") and "visits.daily" in text
    assert [line.split()[0] for line in text.splitlines()[3:6]] == ["0.005", "0.015", "0.025"]
    doc = json.loads(render(swept, "json"))
    assert doc["kind"] == "sweep" and doc["setting"] == "visits.daily" and doc["version"] == 1
    assert [p["value"] for p in doc["points"]] == [0.005, 0.015, 0.025]
    assert all("stages.mql.reached" in p["figures"] for p in doc["points"])
    markdown = render(swept, "markdown")
    assert markdown.startswith("### Sweep for ") and markdown.count("\n| ") >= 4


def test_workers_give_the_same_sweep(swept) -> None:
    spread = sweep(str(FUNNEL), "visits.daily=0.005..0.025/3", leads=LEADS, seed=3, workers=Workers(processes=2))
    assert render(spread, "json") == render(swept, "json")


def test_cli_sweep_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    r = subprocess.run([sys.executable, str(REPO / "fnl.py"), "simulate", str(FUNNEL), "--leads", "100", "--sweep",
                        "email.default.open=0.2,0.4", "--format", "json", "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [p["value"] for p in doc["points"]] == [0.2, 0.4]


@pytest.mark.parametrize("spec, message", [
    ("visits.daily", "no `=`"),
    ("visits.daily=abc", "neither LO..HI/N nor a list of numbers"),
    ("visits.daily=0.1..0.2/1", "give from 2 to 50 points"),
    ("visits=1,2", "`visits` is a mapping, not a number"),
    ("visitz.daily=0.1,0.2", "the behaviour file has no `visitz` under the top level"),
    ("visits.daily=1e999,0.2", "is not a finite number"),
])
def test_a_sweep_written_wrong_is_one_usage_line(spec: str, message: str) -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", str(FUNNEL), "--leads", "20", "--sweep", spec])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_a_value_that_cannot_happen_is_located_in_the_behaviour_file() -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", str(FUNNEL), "--leads", "20", "--sweep",
                                          "visits.daily=0.5..1.5/3"])
    assert result.exit_code == EXIT_PROBLEMS, result.output
    line = next(n for n, text in enumerate(BEHAVIOR.read_text(encoding="utf-8").splitlines(), 1)
                if text.strip().startswith("daily:"))
    assert f"reference.behavior.yaml:{line}:" in result.output and "1.5 is out of range" in result.output
    assert "with --sweep visits.daily=1.5" in result.output


def test_sweep_goes_with_nothing_else_that_reshapes_the_report() -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", str(FUNNEL), "--leads", "20", "--sensitivity", "--sweep",
                                          "visits.daily=0.1,0.2"])
    assert result.exit_code == EXIT_USAGE
    assert "give one of --compare, --base, --sensitivity and --sweep" in result.stderr


@pytest.mark.parametrize("args", [["--sweep", "visits.daily=0.1,0.2", "--strict"],
                                  ["--sensitivity", "--expect", "funnels/acme/acme.expect.yaml"],
                                  ["--compare", "funnels/reference.yaml", "--strict"]])
def test_expectations_are_not_silently_dropped_from_a_comparison(args) -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", str(FUNNEL), "--leads", "20", *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "judges one forecast" in result.stderr


def test_several_runs_give_means_with_intervals_and_say_how() -> None:
    swept = sweep(str(FUNNEL), "visits.daily=0.01,0.02", leads=40, seed=5, runs=2)
    doc = json.loads(render(swept, "json"))
    assert doc["intervals"] == {"confidence": 0.95, "method": "Student's t over the runs", "seeds": [5, 6]}
    assert set(doc["points"][0]["figures"]["stages.mql.reached"]) == {"mean", "lo", "hi"}
    assert "means over 2 runs with 95 % intervals" in render(swept, "text")
