"""`fnl run --config` against a real SMTP server on loopback (aiosmtpd): per-domain sending
limits hold emails back at delivery, never dropping one or sending one twice (a warm-up
schedule over days, a rate over hours, on the virtual clock of a replay), and DKIM signs
every message so that `dkim.verify` accepts it with the published public key, and refuses
it once a signed header is changed. A missing or bad key stops the run before anything is
sent, in one line that never quotes the key."""
from __future__ import annotations

import base64
import email
import json
import re
import sqlite3
import subprocess
import sys
from email import policy
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import REPO, clean_env
from engine.state import parse_time

ACME = str(REPO / "funnels" / "acme")
SIGNING = "s" * 32


def optins(path: Path, leads: int, at: str = "2026-03-02T14:30:00Z") -> Path:
    """`leads` opt-ins at one minute: each gets the lead magnet's email at once."""
    lines = [{"type": "optin", "at": at, "lead": f"lead{i}@example.com", "magnet": "whitepaper",
              "profile": {"first_name": f"L{i}", "industry": "saas"}} for i in range(leads)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def config(path: Path, port: int, extra: str = "", dkim: str = "") -> Path:
    path.write_text(f"fnl-runtime: 1\nactions:\n  - smtp: {{host: 127.0.0.1, port: {port}, starttls: false"
                    f"{', dkim: ' + dkim if dkim else ''}}}\n{extra}", encoding="utf-8")
    return path


def fnl_run(db: Path, until: str, cfg: Path, events: Path = None, **env: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(db), "--until", until, "--config", str(cfg)]
    if events is not None:
        args += ["--events", str(events)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env=clean_env(**{"FNL_SIGNING_KEY": SIGNING, **env}))


def message_ids(got: List[bytes]) -> List[str]:
    return [email.message_from_bytes(raw, policy=policy.default)["Message-ID"].strip("<>").split("@")[0]
            for raw in got]


def emails(db: Path) -> Dict[str, str]:
    """{key: status} of every send_email action in the outbox."""
    with sqlite3.connect(db) as conn:
        return {key: status for key, text, status in conn.execute("SELECT key, action, status FROM outbox")
                if json.loads(text)["type"] == "send_email"}


WARMUP = """limits:
  acme.example:
    warmup: [{day: 1, max: 3}, {day: 2, max: 5}, {day: 4, max: 1000}]
"""


def test_a_warmup_holds_emails_back_to_later_days_none_lost_none_twice(tmp_path: Path, smtp_server) -> None:
    """Day 1 of the domain's warm-up allows 3 emails: the first run sends 3, says how many
    wait and until when, and leaves the rest pending; the runs of the next days send 5, 5,
    then all the rest. Every email the engine decided reaches the server exactly once."""
    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, WARMUP)
    db = tmp_path / "a.db"
    sent_per_run = []
    days = ["2026-03-02T20:00:00Z", "2026-03-03T20:00:00Z", "2026-03-04T20:00:00Z", "2026-03-05T20:00:00Z"]
    for i, until in enumerate(days):
        before = len(got)
        proc = fnl_run(db, until, cfg, optins(tmp_path / "e.jsonl", 12) if i == 0 else None)
        assert proc.returncode == 0, proc.stderr
        sent_per_run.append(len(got) - before)
        statuses = emails(db)
        pending = sum(1 for s in statuses.values() if s == "pending")
        if i < 3:
            day = i + 1
            cap = {1: 3, 2: 5, 3: 5}[day]
            assert sent_per_run[-1] == cap, (i, sent_per_run, proc.stderr)
            assert pending > 0
            next_day = f"2026-03-0{2 + day}T00:00:00Z"
            said = re.search(r"fnl: ([\d,]+) emails held back by the limits of acme\.example until (\S+) \(warm-up "
                             rf"day {day}: at most {cap} a day\)", proc.stderr)
            assert said, proc.stderr
            assert int(said.group(1).replace(",", "")) == pending and said.group(2) == next_day
        else:  # the warm-up's last entry: room for all
            assert pending == 0 and "held back" not in proc.stderr, proc.stderr
    ids = message_ids(got)
    assert len(ids) == len(set(ids)), "an email went out twice"
    statuses = emails(db)
    assert set(ids) == {k for k, s in statuses.items() if s == "delivered"} == set(statuses)
    assert len(ids) > 3 + 5 + 5
    with sqlite3.connect(db) as conn:  # the counts the limits keep: per domain and clock hour
        counted = conn.execute("SELECT sum(sent) FROM sends WHERE domain = 'acme.example'").fetchone()[0]
    assert counted == len(ids)


def test_a_rate_holds_emails_to_the_next_hour(tmp_path: Path, smtp_server) -> None:
    """At most 2 an hour: 2 go at 15:10, none more at 15:40 (the hour is spent), 2 at 16:05."""
    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, "limits:\n  acme.example: {rate: 2/h}\n")
    db = tmp_path / "a.db"
    runs = [("2026-03-02T15:10:00Z", 2), ("2026-03-02T15:40:00Z", 0), ("2026-03-02T16:05:00Z", 2)]
    for i, (until, expected) in enumerate(runs):
        before = len(got)
        proc = fnl_run(db, until, cfg, optins(tmp_path / "e.jsonl", 5) if i == 0 else None)
        assert proc.returncode == 0, proc.stderr
        assert len(got) - before == expected, (until, proc.stderr)
        hour = parse_time(until) // 60 + 1
        assert f"held back by the limits of acme.example until 2026-03-02T{hour % 24:02d}:00:00Z (at most 2 an hour)" \
            in proc.stderr, proc.stderr
    ids = message_ids(got)
    assert len(ids) == len(set(ids)) == 4
    assert set(ids) == {k for k, s in emails(db).items() if s == "delivered"}


def test_limits_of_another_domain_hold_nothing(tmp_path: Path, smtp_server) -> None:
    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, "limits:\n  other.example: {rate: 1/d}\n")
    proc = fnl_run(tmp_path / "a.db", "2026-03-02T20:00:00Z", cfg, optins(tmp_path / "e.jsonl", 4))
    assert proc.returncode == 0 and "held back" not in proc.stderr, proc.stderr
    assert len(got) == len(emails(tmp_path / "a.db")) >= 4


# -- DKIM ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key() -> Tuple[str, bytes]:
    """(a private key, PEM; the DNS TXT record of its public key)."""
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


DKIM = "{selector: s1, domain: acme.example, key_env: FNL_TEST_DKIM_KEY}"


def test_every_message_is_dkim_signed_and_verifies(tmp_path: Path, smtp_server, rsa_key) -> None:
    dkim = pytest.importorskip("dkim", reason="dkimpy is not installed (the dkim extra)")
    pem, record = rsa_key
    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, dkim=DKIM)
    proc = fnl_run(tmp_path / "a.db", "2026-03-02T20:00:00Z", cfg, optins(tmp_path / "e.jsonl", 3),
                   FNL_TEST_DKIM_KEY=pem)
    assert proc.returncode == 0, proc.stderr
    assert len(got) >= 3 and "PRIVATE KEY" not in proc.stderr + proc.stdout
    asked = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == b"s1._domainkey.acme.example." else b""

    for raw in got:
        assert raw.startswith(b"DKIM-Signature:")
        assert dkim.verify(raw, dnsfunc=dns), raw[:600]
        msg = email.message_from_bytes(raw, policy=policy.default)
        tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", str(msg["DKIM-Signature"])).split(";") if t)
        assert tags["d"] == "acme.example" and tags["s"] == "s1" and tags["c"] == "relaxed/relaxed"
        signed = set(tags["h"].lower().split(":"))
        assert {"from", "to", "subject", "message-id", "date", "list-unsubscribe", "list-unsubscribe-post",
                "mime-version", "content-type"} <= signed
        assert msg["Date"] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # A changed signed header, or another key's record, no longer verifies.
        forged = raw.replace(b"\r\nSubject: ", b"\r\nSubject: RE: ", 1)
        assert forged != raw and not dkim.verify(forged, dnsfunc=dns)
    assert set(asked) == {b"s1._domainkey.acme.example."}


@pytest.mark.parametrize("value, said", [
    (None, "the DKIM private key is not in the environment: FNL_TEST_DKIM_KEY is not set"),
    ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
     "FNL_TEST_DKIM_KEY does not hold a DKIM private key (PEM, RSA)"),
])
def test_a_missing_or_bad_dkim_key_stops_the_run_before_anything_is_sent(tmp_path: Path, smtp_server, value,
                                                                          said: str) -> None:
    pytest.importorskip("dkim", reason="dkimpy is not installed (the dkim extra)")
    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, dkim=DKIM)
    env = {"FNL_TEST_DKIM_KEY": value} if value is not None else {}
    proc = fnl_run(tmp_path / "a.db", "2026-03-02T20:00:00Z", cfg, optins(tmp_path / "e.jsonl", 2), **env)
    assert proc.returncode == 3, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("fnl: error: ") and said in first, proc.stderr
    assert "runtime.yaml:3:5" in first  # the adapter's place in the config
    assert "Traceback" not in proc.stderr and "bm90IGEga2V5" not in proc.stderr
    assert got == []
    assert emails(tmp_path / "a.db") == {}  # stopped before any event was applied: nothing decided yet


def test_smtp_credentials_named_by_the_config_must_be_set(tmp_path: Path, smtp_server) -> None:
    port, got = smtp_server
    cfg = tmp_path / "runtime.yaml"
    cfg.write_text(f"fnl-runtime: 1\nactions:\n  - smtp: {{host: 127.0.0.1, port: {port}, user_env: FNL_TEST_USER, "
                   "password_env: FNL_TEST_PASSWORD}\n", encoding="utf-8")
    proc = fnl_run(tmp_path / "a.db", "2026-03-02T20:00:00Z", cfg, optins(tmp_path / "e.jsonl", 1),
                   FNL_TEST_USER="fnl")
    assert proc.returncode == 3 and "the SMTP password is not in the environment: FNL_TEST_PASSWORD is not set" \
        in proc.stderr, proc.stderr
    assert got == [] and "Traceback" not in proc.stderr


def test_emails_held_back_are_not_made_again_for_each_one(tmp_path: Path, smtp_server, monkeypatch) -> None:
    """Once the hour's rate is spent, the other emails of the delivery are held back at
    once: 40 opt-ins at 2 an hour make 3 messages (2 sent, 1 that found the hour spent),
    not 40, and a later delivery in the same hour makes none."""
    from engine.runtime import smtp as smtp_adapter
    from engine.runtime.run import Request, run

    port, got = smtp_server
    cfg = config(tmp_path / "runtime.yaml", port, "limits:\n  acme.example: {rate: 2/h}\n")
    made: List[str] = []
    real = smtp_adapter.Smtp.message

    def counted(self, action, key):  # type: ignore[no-untyped-def]
        made.append(key)
        return real(self, action, key)

    monkeypatch.setattr(smtp_adapter.Smtp, "message", counted)
    monkeypatch.setenv("FNL_SIGNING_KEY", SIGNING)
    said: List[str] = []
    db = str(tmp_path / "a.db")
    events = str(optins(tmp_path / "e.jsonl", 40))
    assert run(Request(ACME, db, events, "2026-03-02T15:10:00Z", config=str(cfg)), say=said.append) == 0
    assert len(got) == 2 and len(made) == 3, (len(got), len(made))
    assert any("78 emails held back by the limits of acme.example until 2026-03-02T16:00:00Z" in line
               for line in said), said
    assert run(Request(ACME, db, None, "2026-03-02T15:40:00Z", config=str(cfg)), say=said.append) == 0
    assert len(got) == 2 and len(made) == 4  # one look at the limits, still spent
    assert run(Request(ACME, db, None, "2026-03-02T16:05:00Z", config=str(cfg)), say=said.append) == 0
    assert len(got) == 4
