"""What a new user's walkthrough of the runtime met: a lead whose opt-in was rejected shown
by `fnl explain` and counted by `fnl status`; `fnl export`'s events in ISO time; `fnl
status` saying when the database runs another plan than the funnel given, or not that
funnel at all; `fnl plan --db` speaking of one lead in the singular; `fnl serve --help`'s
signing recipe, run as written against a real `fnl serve`; and double opt-in end to end:
`fnl run` sends the confirmation email over real SMTP with the lead's signed link, the
link POSTed to a real `fnl serve` confirms, and the next `fnl run` delivers the magnet.
Everything runs the real CLI, on real SQLite files, a real SMTP server on loopback
(aiosmtpd) and real HTTP."""
from __future__ import annotations

import email
import html
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email import policy
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import REPO, clean_env
from engine.pipeline import plan_for
from engine.runtime.sources import REPLAY_WINDOW
from engine.state import event_from_json, iso

ACME = REPO / "funnels" / "acme"
DANA = REPO / "tests" / "events" / "acme-dana.jsonl"
DOI = REPO / "tests" / "double_optin"
KEY = "walkthrough-signing-key-0123456789"
EVE = {"type": "optin", "at": "2026-03-02T15:00:00Z", "lead": "eve@x.example", "magnet": "whitepaper",
       "profile": {"first_name": "Eve"}}  # no industry: a required attribute
UNTIL = "2026-03-20T00:00:00Z"


def fnl(*args: object, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=clean_env(**{"FNL_SIGNING_KEY": KEY, **env}))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("fnl: error: ") and all(line.startswith("  help: ") for line in lines[1:]), lines
    return lines[0]


@pytest.fixture(scope="module")
def acme_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dana's events and Eve's rejected opt-in, run on funnels/acme to March 20th."""
    root = tmp_path_factory.mktemp("walk")
    events = root / "events.jsonl"
    events.write_text(DANA.read_text(encoding="utf-8") + json.dumps(EVE) + "\n", encoding="utf-8")
    db = root / "acme.db"
    proc = fnl("run", ACME, "--db", db, "--events", events, "--until", UNTIL, "--actions", f"jsonl:{root / 'a.jsonl'}")
    assert proc.returncode == 0, proc.stderr
    return db


def copied(db: Path, tmp_path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(str(db) + suffix).exists():
            shutil.copy(str(db) + suffix, tmp_path / f"acme.db{suffix}")
    return tmp_path / "acme.db"


# -- a rejected lead, export's events ------------------------------------------------------------

def test_explain_shows_a_lead_whose_optin_was_rejected_and_status_counts_it(acme_db: Path) -> None:
    shown = fnl("explain", "eve@x.example", "--db", acme_db)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "2026-03-02T15:00:00Z  optin whitepaper",
        "    → REJECTED: required attribute `industry` is missing",
        "",
        "now: not in the funnel: the engine rejected its event (above), so no state is stored"]
    status = fnl("status", ACME, "--db", acme_db)
    assert status.returncode == 0, status.stderr
    assert "; 1 rejected event (fnl explain LEAD says why)" in status.stdout.splitlines()[1]
    unknown = fnl("explain", "nobody@x.example", "--db", acme_db)
    assert "nobody@x.example: no such lead in " in one_line_error(unknown)


def test_export_shows_events_as_fnl_writes_them_with_iso_times(acme_db: Path) -> None:
    proc = fnl("export", "dana@loopwise.example", "--db", acme_db)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(proc.stdout)["funnels"]["acme-b2b"]["events"]
    given = [event_from_json(json.loads(line), "dana").to_json() for line in DANA.read_text().splitlines()]
    assert events == [e for e in given if e["at"] <= UNTIL]
    assert all(isinstance(e["at"], str) and e["at"].endswith("Z") for e in events)


# -- the plan the database runs ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def acme_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """funnels/acme with the nurture-saas step Dana waits on by March 20th removed."""
    root = tmp_path_factory.mktemp("acme-b")
    shutil.copytree(ACME, root / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", root / "templates" / "acme")
    nurture = root / "funnels" / "acme" / "nurture.yaml"
    step = "      - {wait: 4d, send: saas/case-study, variants: {a: 50, b: 50}}\n"
    text = nurture.read_text(encoding="utf-8")
    assert text.count(step) == 1
    nurture.write_text(text.replace(step, ""), encoding="utf-8")
    return root / "funnels" / "acme"


def test_status_says_when_the_database_runs_another_plan(acme_db: Path, acme_b: Path) -> None:
    running, other = plan_for(str(ACME)).content_hash, plan_for(str(acme_b)).content_hash
    assert running != other
    proc = fnl("status", acme_b, "--db", acme_db)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"acme-b2b on {acme_db}: plan {running[:19]}, clock at ")
    assert lines[1] == (f"the database runs plan {running[:19]}; {acme_b} is plan {other[:19]}: fnl run {acme_b} "
                        f"would deploy it (fnl plan --db {acme_db} {acme_b} shows what it does)")
    same = fnl("status", ACME, "--db", acme_db)
    assert same.returncode == 0 and "the database runs plan" not in same.stdout


def test_status_of_a_funnel_the_database_never_ran_is_one_line(acme_db: Path) -> None:
    proc = fnl("status", REPO / "funnels" / "newsletter-to-demo.yaml", "--db", acme_db)
    line = one_line_error(proc)
    assert line == f"fnl: error: --db {acme_db} holds no funnel newsletter-to-demo: fnl run has not run it on this " \
                   "database"


def test_plan_db_speaks_of_one_lead_in_the_singular(tmp_path: Path, acme_b: Path) -> None:
    events = tmp_path / "optin.jsonl"
    events.write_text(DANA.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    db = tmp_path / "one.db"
    run = fnl("run", ACME, "--db", db, "--events", events, "--until", "2026-03-04T00:00:00Z", "--actions",
              f"jsonl:{tmp_path / 'a.jsonl'}")
    assert run.returncode == 0, run.stderr
    proc = fnl("plan", "--db", db, acme_b)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Leads in flight in" in text and ": 1 lead; in sequences " in text, text
    assert not re.search(r"\b1 (lead )?(stay|resume|finish|exit|leave|change|move)\b", text), text
    assert re.search(r"\b1 lead (stays|resumes|finishes|leaves)\b", text), text
    assert re.search(r"\b0 (resume|finish|exit)\b", text), text  # plural for none


def test_a_deploy_refused_for_one_lead_says_it_in_the_singular() -> None:
    from engine.runtime.deploy import Counted

    line = Counted("order:s:x", True, "wait on s/x, and the new plan puts y, which they already passed, after it: "
                   "they would get it again", "fix", 1, "ana@x.example").text()
    assert line == "1 lead waits on s/x, and the new plan puts y, which it already passed, after it: it would get " \
                   "it again (ana@x.example)"
    line = Counted("stage:a", True, "are in stage a, which the new plan removes", "fix", 2, "ana@x.example").text()
    assert line == "2 leads are in stage a, which the new plan removes (one is ana@x.example)"


# -- fnl serve --------------------------------------------------------------------------------------

def start_serve(funnel: Path, db: object, **env: str) -> Tuple[subprocess.Popen, str, str]:
    """`fnl serve FUNNEL --db DB --port 0`: (the process, its URL, its first line)."""
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "serve", str(funnel), "--db", str(db), "--port",
                             "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=clean_env(**{"FNL_SIGNING_KEY": KEY, **env}))
    assert proc.stderr is not None
    first = proc.stderr.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)", first)
    if found is None:
        proc.kill()
        pytest.fail(f"fnl serve did not start: {first}{proc.communicate(timeout=10)[1]}")
    url = f"http://127.0.0.1:{found.group(1)}"
    deadline = time.monotonic() + 30
    while http(f"{url}/unsubscribe", method="GET")[0] != 403:  # it answers: an incomplete link
        assert time.monotonic() < deadline, "fnl serve does not answer"
        time.sleep(0.05)
    return proc, url, first


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    return proc.communicate(timeout=15)[1]


def http(url: str, body: Optional[bytes] = None, method: str = "POST",
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_help_gives_the_signing_recipe_and_it_works_as_written(tmp_path: Path) -> None:
    shown = fnl("serve", "--help")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "--db URL" in text and "postgresql://" in text
    assert "X-Fnl-Timestamp: the time in unix seconds, within 300 s" in text and REPLAY_WINDOW == 300
    assert 'X-Fnl-Signature: the hex HMAC-SHA256 of timestamp + "." + body' in text and "FNL_SIGNING_KEY" in text
    recipe = [line.strip() for line in text.splitlines() if line.strip().startswith(("ts=", "sig=", "curl "))]
    assert len(recipe) == 3
    db = tmp_path / "served.db"
    proc, url, _ = start_serve(ACME, db)
    try:
        unsigned = http(f"{url}/events", b"{}")
        assert unsigned[0] == 401 and "see `fnl serve --help`" in unsigned[1]
        body = json.dumps({"type": "site.visited", "at": "2026-04-05T09:31:00Z", "lead": "dana@loopwise.example",
                           "page": "pricing"})
        script = "\n".join(recipe).replace("http://127.0.0.1:8025", url)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                              env=clean_env(FNL_SIGNING_KEY=KEY, body=body))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"accepted": 1, "duplicates": 0, "refused": []}, done.stdout
    finally:
        stop(proc)


# -- double opt-in, end to end ----------------------------------------------------------------------

def doi_copy(root: Path, confirm_url: bool = True) -> Path:
    shutil.copytree(DOI, root / "doi")
    funnel = root / "doi" / "doi.yaml"
    if not confirm_url:
        text = funnel.read_text(encoding="utf-8")
        funnel.write_text(re.sub(r"\n  confirm_url: .*\n", "\n", text), encoding="utf-8")
    return funnel


def messages(got: List[bytes]) -> List[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=policy.default) for m in got]  # type: ignore[misc]


def test_a_confirmed_double_opt_in_goes_through_fnl_serve_and_the_magnet_is_delivered(tmp_path: Path,
                                                                                     smtp_server) -> None:
    port, got = smtp_server
    funnel = doi_copy(tmp_path)
    db = tmp_path / "doi.db"
    lead = "ana@x.example"
    now = int(time.time()) // 60
    events = tmp_path / "optin.jsonl"
    events.write_text(json.dumps({"type": "optin", "at": iso(now - 60), "lead": lead, "magnet": "guide",
                                  "profile": {"first_name": "Ana", "employees": 40}}) + "\n", encoding="utf-8")
    first = fnl("run", funnel, "--db", db, "--events", events, "--until", iso(now), "--actions",
                f"smtp://127.0.0.1:{port}")
    assert first.returncode == 0, first.stderr
    sent = messages(got)
    assert [m["X-Fnl-Template"] for m in sent] == ["magnets/confirm"]
    text = sent[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"Yes, send it to me: (\S+)", text)
    assert found is not None, text
    link = found.group(1)
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://acme.example/confirm"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["lead"] == lead and query["magnet"] == "guide" and re.fullmatch(r"[0-9a-f]{64}", query["sig"])
    assert html.escape(link) in sent[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi," in text and "The 2026 pipeline benchmark" in text

    proc, url, _ = start_serve(funnel, db)
    try:
        local = f"{url}/confirm?{parts.query}"
        page = http(local, method="GET")
        assert page[0] == 200 and 'method="post"' in page[1] and "Yes, confirm" in page[1]
        # The unsubscribe link's signature never confirms, nor another lead's or magnet's.
        import hashlib
        import hmac
        unsubscribe_sig = hmac.new(KEY.encode(), lead.encode(), hashlib.sha256).hexdigest()
        for bad in ({**query, "sig": unsubscribe_sig}, {**query, "magnet": "checklist"},
                    {**query, "lead": "bo@x.example"}, {"lead": lead, "magnet": "guide"}):
            answer = http(f"{url}/confirm?" + "&".join(f"{k}={v}" for k, v in bad.items()), b"")
            assert answer[0] == 403 and "confirmation link" in answer[1], answer
        pending = fnl("run", funnel, "--db", db, "--until", iso(now), "--actions", "jsonl:-")
        assert pending.returncode == 0 and "0 new events" in pending.stderr and "applied 0" in pending.stderr, \
            pending.stderr  # the GET and the bad links stored nothing
        confirmed = http(local, b"")
        assert confirmed[0] == 200 and "is confirmed" in confirmed[1], confirmed
    finally:
        log = stop(proc)
    assert f"fnl serve: /confirm: {lead} confirmed the opt-in to guide" in log

    later = fnl("run", funnel, "--db", db, "--until", iso(now + 60), "--actions", f"smtp://127.0.0.1:{port}")
    assert later.returncode == 0, later.stderr
    assert [m["X-Fnl-Template"] for m in messages(got)] == ["magnets/confirm", "magnets/guide"]
    assert messages(got)[1]["To"] == lead
    explained = fnl("explain", lead, "--db", db)
    assert explained.returncode == 0 and "now: subscriber" in explained.stdout, explained.stdout
    assert "optin.confirmed guide" in explained.stdout


def test_the_smtp_adapter_refuses_double_opt_in_without_a_confirm_url(tmp_path: Path,
                                                                       smtp_server) -> None:
    port, got = smtp_server
    funnel = doi_copy(tmp_path, confirm_url=False)
    assert fnl("validate", funnel).returncode == 0
    proc = fnl("run", funnel, "--db", tmp_path / "doi.db", "--until", "2026-03-02T00:00:00Z", "--actions",
               f"smtp://127.0.0.1:{port}")
    assert one_line_error(proc) == "fnl: error: doi-guide has no sender.confirm_url for the confirmation link of " \
                                   "its double opt-in (guide)"
    assert "sender.confirm_url" in proc.stderr.splitlines()[1] and not got
