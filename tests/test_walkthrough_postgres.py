"""`fnl status`, `explain`, `export`, `forget` and `fnl plan --db` on a PostgreSQL database
a `fnl run` filled (a real PostgreSQL server from pgserver), a server that cannot be
reached said in one line, and `fnl serve` never showing the URL's password."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, clean_env
from engine.pipeline import plan_for
from test_runtime_postgres import postgres  # noqa: F401 - a PostgreSQL server of its own
from test_walkthrough import ACME, DANA, EVE, KEY, UNTIL, acme_b, fnl, one_line_error  # noqa: F401


def test_status_explain_export_forget_and_plan_take_a_postgres_url(postgres, acme_b: Path,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    url = postgres()
    events = tmp_path / "events.jsonl"
    events.write_text(DANA.read_text(encoding="utf-8") + json.dumps(EVE) + "\n", encoding="utf-8")
    run = fnl("run", ACME, "--db", url, "--events", events, "--until", UNTIL, "--actions", "jsonl:-")
    assert run.returncode == 0, run.stderr
    shown = re.sub(r"//[^@/]*@", "//", url)  # how fnl shows the URL: no user or password

    status = fnl("status", ACME, "--db", url)
    assert status.returncode == 0, status.stderr
    head = status.stdout.splitlines()
    assert head[0].startswith(f"acme-b2b on {shown}: plan {plan_for(str(ACME)).content_hash[:19]}, clock at "
                              f"{UNTIL}")
    assert "events 8 (0 not applied yet)" in head[1] and "1 rejected event" in head[1]
    assert re.search(r"^  sql +1$", status.stdout, re.M), status.stdout

    explained = fnl("explain", "dana@loopwise.example", "--db", url)
    assert explained.returncode == 0, explained.stderr
    assert "2026-03-02T14:30:00Z  optin whitepaper" in explained.stdout and "now: sql" in explained.stdout
    rejected = fnl("explain", "eve@x.example", "--db", url)
    assert rejected.returncode == 0 and "REJECTED: required attribute `industry` is missing" in rejected.stdout

    exported = fnl("export", "dana@loopwise.example", "--db", url)
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)["funnels"]["acme-b2b"]
    assert held["state"]["stage"] == "sql" and len(held["events"]) == 7
    assert held["events"][0]["at"] == "2026-03-02T14:30:00Z"

    planned = fnl("plan", "--db", url, acme_b)
    assert planned.returncode == 0, planned.stderr
    assert f"Leads in flight in {shown} (" in planned.stdout

    forgot = fnl("forget", "dana@loopwise.example", "--db", url)
    assert forgot.returncode == 0 and "rows erased" in forgot.stderr, forgot.stderr
    after = fnl("export", "dana@loopwise.example", "--db", url)
    assert json.loads(after.stdout) == {"lead": "dana@loopwise.example", "funnels": {},
                                        "suppressed": {"*": "forgotten"}}
    gone = fnl("explain", "dana@loopwise.example", "--db", url)
    assert one_line_error(gone) == f"fnl: error: dana@loopwise.example: no such lead in {shown}"


def test_a_postgres_server_that_cannot_be_reached_is_one_line() -> None:
    url = "postgresql://fnl:s3cret@127.0.0.1:1/fnl"
    for args in (("status", ACME), ("explain", "dana@loopwise.example"), ("export", "dana@loopwise.example"),
                 ("forget", "dana@loopwise.example"), ("plan", ACME)):
        proc = fnl(*args, "--db", url) if args[0] != "plan" else fnl("plan", "--db", url, ACME)
        line = one_line_error(proc)
        assert line.startswith("fnl: error: --db postgresql://127.0.0.1:1/fnl: cannot connect: "), line
        assert "s3cret" not in proc.stderr


def test_fnl_serve_never_shows_the_database_password(postgres) -> None:  # noqa: F811
    url = postgres().replace("//postgres:@", "//postgres:s3cret@")  # the local server trusts its socket
    assert "s3cret" in url
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "serve", str(ACME), "--db", url, "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=clean_env(FNL_SIGNING_KEY=KEY))
    assert proc.stderr is not None
    first = proc.stderr.readline()
    time.sleep(0.5)
    proc.terminate()
    rest = proc.communicate(timeout=15)[1]
    assert "fnl serve: acme-b2b on http://127.0.0.1:" in first, first + rest
    assert "(database postgresql://" in first
    assert "s3cret" not in first + rest
