"""`fnl simulate` from the command line: the JSON contract on real runs, determinism across
processes, --runs, every kind of bad input (one line, the right exit code, before any
work), the output file, and no progress bar when standard error is not a terminal."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner

import fnl
from conftest import MINIMAL, REPO, clean_env, run_fnl, write
from engine.errors import EXIT_PROBLEMS, EXIT_USAGE

REFERENCE = "funnels/reference.yaml"


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "fnl.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def reference_runs() -> Dict[str, subprocess.CompletedProcess]:
    """Reference-funnel runs, side by side in separate processes: seed 7 twice, seeds 8
    and 9, and --runs 3 from seed 7."""
    args = {"a": ("--seed", "7"), "b": ("--seed", "7"), "other": ("--seed", "8"), "nine": ("--seed", "9"),
            "runs": ("--seed", "7", "--runs", "3")}
    procs = {k: start("simulate", REFERENCE, "--leads", "300", "--format", "json", *v) for k, v in args.items()}
    return {k: finish(p) for k, p in procs.items()}


def test_the_json_contract_holds_on_a_real_run(reference_runs: Dict[str, Any]) -> None:
    proc = reference_runs["a"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert {"version", "leads", "stages", "emails_sent", "unsubscribes", "runs"} <= set(doc)
    assert doc["version"] == 1 and doc["runs"] == 1 and doc["leads"] == 300
    stages = doc["stages"]
    assert list(stages) == ["mql", "sql", "subscriber"]  # keys sorted
    assert all(set(s) == {"leads", "unsubscribed", "reached"} for s in stages.values())
    assert sum(s["leads"] for s in stages.values()) == doc["leads"]
    for s in stages.values():
        assert 0 <= s["unsubscribed"] <= s["leads"] <= s["reached"] <= doc["leads"]
    assert stages["subscriber"]["reached"] == doc["leads"]  # every lead opts in as a subscriber
    # REFERENCE_FUNNEL.md's report buckets add up to the leads.
    buckets = {"subscriber": stages["subscriber"]["leads"] - stages["subscriber"]["unsubscribed"],
               "mql": stages["mql"]["leads"] - stages["mql"]["unsubscribed"],
               "sql": stages["sql"]["leads"],
               "unsubscribed": stages["subscriber"]["unsubscribed"] + stages["mql"]["unsubscribed"]}
    assert sum(buckets.values()) == doc["leads"]
    assert buckets["unsubscribed"] <= doc["unsubscribes"]
    assert doc["emails_sent"] == sum(doc["emails"]["by_kind"].values()) == sum(s["sends"] for s in doc["steps"])
    assert doc["emails_sent"] >= 6 * (doc["leads"] - doc["unsubscribes"]) * 0.9  # six nurture emails each
    assert sum(doc["weekly"]["entered"]["sql"]) == stages["sql"]["reached"]
    assert doc["rejected"] == 0


def test_the_same_seed_gives_byte_identical_json_in_two_processes(reference_runs: Dict[str, Any]) -> None:
    a, b, other = reference_runs["a"], reference_runs["b"], reference_runs["other"]
    assert a.returncode == b.returncode == other.returncode == 0
    assert a.stdout == b.stdout
    assert a.stdout != other.stdout
    assert json.loads(other.stdout)["seed"] == 8


def test_runs_give_every_figure_as_mean_lo_hi(reference_runs: Dict[str, Any]) -> None:
    proc = reference_runs["runs"]
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 3 and doc["intervals"]["seeds"] == [7, 8, 9]
    assert "simulation noise only" in doc["intervals"]["meaning"]
    for figure in [doc["leads"], doc["emails_sent"], doc["unsubscribes"],
                   *(v for s in doc["stages"].values() for v in s.values())]:
        assert set(figure) == {"mean", "lo", "hi"}
        assert figure["lo"] <= figure["mean"] <= figure["hi"]
    # Runs 1 to 3 are the seed 7, 8 and 9 runs: the mean is theirs.
    singles = [json.loads(reference_runs[k].stdout) for k in ("a", "other", "nine")]
    for name in doc["stages"]:
        mean = sum(d["stages"][name]["reached"] for d in singles) / 3
        assert doc["stages"][name]["reached"]["mean"] == pytest.approx(mean, abs=1e-6)


def test_text_is_a_forecast_with_the_headline_first() -> None:
    proc = run_fnl("simulate", REFERENCE, "--leads", "200")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Forecast for reference: 120 days from 2026-01-05, seed 1"
    assert lines[2].startswith("  200 leads → ") and " MQL (" in lines[2] and " SQL (" in lines[2]
    assert "biggest drop-off" in lines[3]
    for title in ("Stages", "Conversion", "Time from arrival, days", "Emails", "Sequence steps (steps that sent)",
                  "Weekly volumes", "Sales reps (first handoff of each lead)"):
        assert title in lines, title
    assert proc.stderr == ""  # no progress bar when standard error is piped


def test_defaults_are_printed_as_assumptions(tmp_path: Path) -> None:
    funnel = write(tmp_path, "min.yaml", MINIMAL)
    result = CliRunner().invoke(fnl.cli, ["simulate", str(funnel), "--leads", "30", "--days", "14"])
    assert result.exit_code == 0, result.output
    assert "fnl's default assumptions" in result.stdout
    section = result.stdout[result.stdout.index("Assumptions"):].splitlines()
    assert len(section) > 5 and all(line.startswith("  - ") for line in section[1:])
    assert any("opens: 25 % of delivered emails" in line for line in section)


def test_markdown_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "forecast.md"
    result = CliRunner().invoke(fnl.cli, ["simulate", REFERENCE, "--leads", "50", "--days", "30", "--format",
                                          "markdown", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.startswith("### Forecast for reference: 30 days")
    assert "| stage | at the horizon | of them unsubscribed | ever reached | share |" in text


BAD_SIZES = [
    (["--leads", "0"], "--leads 0"), (["--leads", "-5"], "--leads -5"), (["--leads", "1e12"], "10,000,000"),
    (["--leads", "10000001"], "10,000,000"), (["--leads", "lots"], "not a whole number"),
    (["--leads", "2.5"], "not a whole number"), (["--days", "0"], "--days 0"), (["--days", "3651"], "3,650"),
    (["--days", "36500"], "ten years"), (["--runs", "0"], "--runs 0"), (["--runs", "1001"], "1,000"),
    (["--start", "yesterday"], "ISO 8601"), (["--behavior", "no/such.behavior.yaml"], "no such file"),
]


@pytest.mark.parametrize("args,says", BAD_SIZES, ids=[" ".join(a) for a, _ in BAD_SIZES])
def test_bad_sizes_are_one_line_and_a_usage_error(args: List[str], says: str) -> None:
    result = CliRunner().invoke(fnl.cli, ["simulate", REFERENCE, *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) <= 2 and lines[0].startswith("fnl: error: ") and says in lines[0], lines


def test_bad_sizes_stop_before_the_funnel_is_read(tmp_path: Path) -> None:
    # Even a funnel with problems is not read when the sizes are impossible.
    proc = run_fnl("simulate", "tests/cases/invalid/unknown-key-did-you-mean.yaml", "--leads", "1e12")
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip().splitlines() == ["fnl: error: --leads 1,000,000,000,000: give from 1 to 10,000,000 "
                                                "leads"]


def test_more_leads_than_a_run_can_hold_are_refused_before_any_work(tmp_path: Path) -> None:
    # Lead by lead (a funnel the columns cannot take, or any funnel with --engine
    # per-lead) a run holds 100,000 leads, and the message says why the funnel runs that way.
    windowed = _with_score_window(tmp_path)
    proc = run_fnl("simulate", windowed, "--leads", "100001")
    assert proc.returncode == EXIT_USAGE and proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith("fnl: error: --leads asks for 100,001 leads a run; fnl simulates at most 100,000 "
                            "lead by lead, and reference runs lead by lead (the score decays within a window)"), first
    proc = run_fnl("simulate", "funnels/acme", "--leads", "100001", "--engine", "per-lead")
    assert proc.returncode == EXIT_USAGE and "(--engine per-lead)" in proc.stderr.splitlines()[0]
    # The same bound holds for a behaviour model that asks for more on its own.
    model = (REPO / "funnels" / "reference.behavior.yaml").read_text(encoding="utf-8")
    big = tmp_path / "big.behavior.yaml"
    big.write_text(model.replace("leads: 10000 ", "leads: 2000000 "), encoding="utf-8")
    proc = run_fnl("simulate", REFERENCE, "--behavior", big, "--engine", "per-lead")
    assert proc.returncode == EXIT_USAGE
    assert "asks for 2,000,000 leads a run" in proc.stderr and "big.behavior.yaml" in proc.stderr
    # As columns, the reference funnel runs up to 10,000,000 leads; more is refused at once.
    proc = run_fnl("simulate", REFERENCE, "--leads", "10000001")
    assert proc.returncode == EXIT_USAGE and "give from 1 to 10,000,000 leads" in proc.stderr


def _with_score_window(tmp_path: Path) -> Path:
    """The reference funnel with a score that counts only the last 90 days' points (a
    decay `window`), which the columns do not take, beside its behaviour model and templates."""
    folder = tmp_path / "funnels"
    folder.mkdir()
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    text = (REPO / "funnels" / "reference.yaml").read_text(encoding="utf-8")
    text = text.replace("decay: {factor: 0.98, every: 1d}", "decay: {factor: 0.98, every: 1d, window: 90d}", 1)
    (folder / "reference.yaml").write_text(text, encoding="utf-8")
    (folder / "reference.behavior.yaml").write_text(
        (REPO / "funnels" / "reference.behavior.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return folder / "reference.yaml"


def test_engine_vector_says_why_a_funnel_cannot_run_as_columns(tmp_path: Path) -> None:
    proc = run_fnl("simulate", _with_score_window(tmp_path), "--engine", "vector", "--leads", "10")
    assert proc.returncode == EXIT_USAGE and proc.stdout == ""
    assert proc.stderr.startswith("fnl: error: --engine vector: reference cannot be simulated as columns: "
                                  "the score decays within a window"), proc.stderr
    assert "help: leave --engine at auto" in proc.stderr
    # acme (quiet hours, a cap, SLAs, CRM reactions, days spread over the hours) runs as columns.
    proc = run_fnl("simulate", "funnels/acme", "--engine", "vector", "--leads", "200", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run_fnl("simulate", "funnels/acme", "--engine", "per-lead", "--leads", "200",
                                  "--format", "json").stdout


def test_the_engines_print_the_same_forecast() -> None:
    outputs = [run_fnl("simulate", REFERENCE, "--leads", "400", "--format", "json", "--engine", engine)
               for engine in ("auto", "vector", "per-lead")]
    assert all(p.returncode == 0 for p in outputs), [p.stderr for p in outputs]
    assert outputs[0].stdout == outputs[1].stdout == outputs[2].stdout
    assert json.loads(outputs[0].stdout)["leads"] == 400


def test_a_funnel_that_does_not_validate_gives_its_problems() -> None:
    proc = run_fnl("simulate", "tests/cases/invalid/unknown-key-did-you-mean.yaml", "--leads", "10")
    assert proc.returncode == EXIT_PROBLEMS
    assert proc.stdout == ""
    assert proc.stderr.startswith("tests/cases/invalid/unknown-key-did-you-mean.yaml:11:5: error FNL100")
    assert "Traceback" not in proc.stderr


def test_a_bad_behaviour_file_gives_located_problems(tmp_path: Path) -> None:
    model = write(tmp_path, "bad.behavior.yaml", "behavior: 1\nfunnel: reference\nemail:\n"
                                                 "  default: {open: 1.5}\n")
    result = CliRunner().invoke(fnl.cli, ["simulate", REFERENCE, "--behavior", str(model), "--leads", "10"])
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert result.stdout == ""
    assert f"{model}:4:" in result.stderr or "bad.behavior.yaml:4:" in result.stderr, result.stderr


def test_the_progress_bar_shows_only_on_a_terminal_after_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("CI", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = fnl._ProgressBar()
    assert bar.enabled
    bar.update(0, 1, 5000)
    assert sys.stderr.getvalue() == ""  # under a second: nothing yet
    bar.began -= 2
    with bar:
        bar.update(0, 2, 10000)
    assert "Simulating, run 1 of 2" in sys.stderr.getvalue()
    monkeypatch.setenv("CI", "true")
    assert not fnl._ProgressBar().enabled
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not fnl._ProgressBar().enabled
