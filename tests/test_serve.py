"""`fnl serve`: real servers and real requests. The command runs as a subprocess on a free
loopback port, and the app runs in this process under uvicorn in a thread (for a log to
read, a database to lock, a certificate fetch to count); requests go over HTTP (urllib,
raw sockets), and the SQLite inbox is read back with `Database`. SendGrid's and SES's
sample payloads (tests/samples/esp) are signed with keys made here."""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import random
import re
import selectors
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import REPO, clean_env

pytest.importorskip("starlette", reason="starlette is not installed (the serve extra)")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (the serve extra)")
pytest.importorskip("cryptography", reason="cryptography is not installed (the serve extra)")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from engine.runtime import serve as srv  # noqa: E402
from engine.runtime.db import Database  # noqa: E402
from engine.runtime.smtp import unsubscribe_link  # noqa: E402
from engine.runtime.webhook import signature  # noqa: E402
from engine.state import Event, parse_instant  # noqa: E402

ACME = str(REPO / "funnels" / "acme")
FUNNEL = "acme-b2b"  # funnels/acme's name: the inbox `fnl run funnels/acme` reads
KEY = "serve-tests-signing-key-0123456789"
SAMPLES = REPO / "tests" / "samples" / "esp"
TOPIC = "arn:aws:sns:us-east-1:111122223333:fnl-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"


# -- keys, requests, the inbox ---------------------------------------------------------------

@dataclass(frozen=True)
class Keys:
    sendgrid: ec.EllipticCurvePrivateKey
    sendgrid_public: str  # base64 DER, as SendGrid's settings show it
    sns: rsa.RSAPrivateKey
    cert_pem: bytes
    cert_path: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(rsa_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(rsa_key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path_factory.mktemp("keys") / "sns.pem"
    path.write_bytes(pem)
    return Keys(ec_key, public, rsa_key, pem, path)


def request(url: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
            method: str = "POST") -> Tuple[int, bytes, Dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def fnl_headers(body: bytes, key: str = KEY, at: Optional[int] = None) -> Dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    return {"X-Fnl-Timestamp": stamp, "X-Fnl-Signature": signature(key.encode(), stamp, body),
            "Content-Type": "application/x-ndjson"}


def post_events(base: str, body: bytes, **kw: Any) -> Tuple[int, Dict[str, Any]]:
    status, data, _ = request(f"{base}/events", body, fnl_headers(body, **kw))
    return status, json.loads(data)


def jsonl(*events: Dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def inbox(db: Path, lead: Optional[str] = None) -> List[Event]:
    """The events waiting in the funnel's inbox (of one lead), in arrival order."""
    database = Database(str(db))
    try:
        scope = getattr(database, "scope", None)
        if scope is not None:
            scope(FUNNEL)
        return [e for _, _, e in database.pending(10 ** 9) if lead is None or e.lead == lead]
    finally:
        database.close()


def minute(text: str) -> Tuple[int, int]:
    return parse_instant(text)


# -- the servers ------------------------------------------------------------------------------

@dataclass
class Served:
    url: str
    port: int
    db: Path
    proc: subprocess.Popen
    log: List[str]


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stderr.readline()


def serve_env(keys: Keys, **extra: str) -> Dict[str, str]:
    return clean_env(**{"FNL_SIGNING_KEY": KEY, "FNL_SENDGRID_PUBLIC_KEY": keys.sendgrid_public,
                        "FNL_SNS_CERT": str(keys.cert_path), "FNL_SNS_TOPIC_ARNS": TOPIC, **extra})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Served]:
    """`fnl serve funnels/acme --db ... --port 0` as a subprocess; its port from the line it
    prints; its standard error kept."""
    db = tmp_path_factory.mktemp("served") / "inbox.db"
    proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "serve", ACME, "--db", str(db), "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=serve_env(keys))
    first = _read_line(proc, 60)
    found = re.search(r"http://127\.0\.0\.1:(\d+)", first)
    if found is None:
        proc.kill()
        pytest.fail(f"fnl serve did not start: {first}{proc.communicate(timeout=10)[1]}")
    log: List[str] = [first]
    assert proc.stderr is not None
    drain = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    drain.start()
    url = f"http://127.0.0.1:{found.group(1)}"
    deadline = time.monotonic() + 30
    while request(f"{url}/unsubscribe", method="GET")[0] != 403:  # it answers: an incomplete link
        assert time.monotonic() < deadline, "fnl serve does not answer"
        time.sleep(0.05)
    yield Served(url, int(found.group(1)), db, proc, log)
    proc.terminate()
    proc.wait(timeout=15)
    drain.join(timeout=5)


def serve_in_thread(app: Any) -> Tuple[Any, threading.Thread, int]:
    """The app under uvicorn on a free loopback port, in a thread: (server, thread, port)."""
    import uvicorn

    sock = srv.listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


@dataclass
class InProcess:
    url: str
    port: int
    db: Path
    log: List[str]


@pytest.fixture
def app_server(tmp_path: Path, keys: Keys) -> Iterator[Any]:
    """A factory: the app under uvicorn in a thread, with its own database and log."""
    running: List[Tuple[Any, threading.Thread, Any]] = []

    def start(db: Optional[Path] = None, fetch: Any = None, **settings: Any) -> InProcess:
        db = db or tmp_path / f"inbox{len(running)}.db"
        log: List[str] = []
        values: Dict[str, Any] = {"sendgrid_key": keys.sendgrid.public_key(), "sns_cert": keys.sns.public_key(),
                                  "sns_topics": (TOPIC,)}
        values.update(settings)
        app = srv.create_app(srv.Settings(str(db), FUNNEL, KEY.encode(), **values), log=log.append, fetch=fetch)
        server, thread, port = serve_in_thread(app)
        assert server.started
        running.append((server, thread, app))
        return InProcess(f"http://127.0.0.1:{port}", port, db, log)

    yield start
    for server, thread, app in running:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.store.close()


# -- POST /events ---------------------------------------------------------------------------------

def test_a_signed_batch_is_stored_before_the_answer_and_only_once(served: Served) -> None:
    lead = "batch@serve.example"
    events = [{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": lead, "magnet": "whitepaper",
               "profile": {"first_name": "Bo", "employees": 40}},
              {"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": lead, "template": "welcome"},
              {"type": "crm.deal_won", "at": "2026-03-03T09:00:00Z", "lead": lead}]
    status, answer = post_events(served.url, jsonl(*events))
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 0, "refused": []})
    stored = inbox(served.db, lead)  # read as soon as the answer came: already committed
    assert [(e.type, e.at) for e in stored] == [(d["type"], minute(d["at"])[0]) for d in events]
    assert stored[0].profile == {"first_name": "Bo", "employees": 40} and stored[1].template == "welcome"

    # the same events again, as a JSON array, signed anew: counted, not stored twice
    status, answer = post_events(served.url, json.dumps(events).encode())
    assert (status, answer) == (200, {"accepted": 0, "duplicates": 3, "refused": []})
    # one JSON object
    one = {"type": "site.visited", "at": "2026-03-04T10:00:00Z", "lead": lead, "page": "/pricing"}
    assert post_events(served.url, json.dumps(one, indent=2).encode()) == (
        200, {"accepted": 1, "duplicates": 0, "refused": []})
    assert len(inbox(served.db, lead)) == 4


def test_a_request_not_signed_with_the_key_now_is_401_and_stores_nothing(served: Served) -> None:
    lead = "unsigned@serve.example"
    body = jsonl({"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": lead, "template": "welcome"})
    now = int(time.time())
    good = fnl_headers(body)
    cases = {
        "no headers": {},
        "no signature": {"X-Fnl-Timestamp": good["X-Fnl-Timestamp"]},
        "another key": fnl_headers(body, key="another-key-of-32-characters-00000"),
        "another body": fnl_headers(body.replace(b"16:00", b"17:00")),
        "not hex": {**good, "X-Fnl-Signature": "z" * 64},
        "short": {**good, "X-Fnl-Signature": good["X-Fnl-Signature"][:20]},
        "timestamp not a number": {**good, "X-Fnl-Timestamp": "soon"},
        "stale": fnl_headers(body, at=now - 330),
        "future": fnl_headers(body, at=now + 330),
    }
    reasons = {}
    for name, headers in cases.items():
        status, data, _ = request(f"{served.url}/events", body, headers)
        assert status == 401, (name, status, data)
        reasons[name] = json.loads(data)["error"]
    assert inbox(served.db, lead) == []
    assert "behind" in reasons["stale"] and "ahead" in reasons["future"]  # each says why
    assert "X-Fnl-Timestamp" in reasons["no headers"] and "does not match" in reasons["another body"]
    # within the window, the same body goes in
    assert post_events(served.url, body, at=now - 200)[1]["accepted"] == 1


def _raw(port: int, head: bytes, chunks: Iterator[bytes] = iter(())) -> Tuple[int, bytes]:
    """(bytes of body sent before the server stopped taking them, the answer's first bytes)."""
    sent = 0
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        try:
            for chunk in chunks:
                conn.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection: it stopped reading
            pass
        try:
            while len(data) < 200:
                got = conn.recv(4096)
                if not got:
                    break
                data += got
        except OSError:
            pass
    return sent, data


def _chunked(total: int) -> Iterator[bytes]:
    piece = b"x" * 65536
    for _ in range(total // len(piece)):
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


def _peak_memory(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]


def test_an_oversized_body_is_413_and_never_read_whole(served: Served) -> None:
    # declared too long: the answer comes before a byte of the body is sent
    sent, data = _raw(served.port, b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413"), data
    before = _peak_memory(served.proc.pid) if Path("/proc").is_dir() else 0
    # chunked, with no length: 64 MiB offered, the server stops taking them past 1 MiB
    sent, data = _raw(served.port, b"POST /events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                      _chunked(64 * 1024 * 1024))
    assert sent < 16 * 1024 * 1024, sent
    assert data == b"" or data.startswith(b"HTTP/1.1 413"), data
    if before:
        assert _peak_memory(served.proc.pid) - before < 32 * 1024 * 1024
    # the limit itself, as the app reads a stream: it stops pulling after 1 MiB
    pulled = 0

    async def endless() -> Any:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"y" * 65536

    with pytest.raises(srv.TooLarge):
        asyncio.run(srv.read_limited(endless(), srv.sources.MAX_BODY))
    assert pulled == 17
    # a body just under the limit is read (and refused as what it is, not as too large)
    body = b" " * (srv.sources.MAX_BODY - 10) + b"[]"
    status, data, _ = request(f"{served.url}/events", body, fnl_headers(body))
    assert status == 400 and b"no events" in data


HOSTILE = [
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h@serve.example", "magnet": "whitepaper"}',
    b'{"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "h@serve',
    b'{"type": "email.opened", "at": 5, "lead": "h@serve.example"}',
    json.dumps({"type": "email.opened", "at": "2026-03-02T16:00:00Z",
                "lead": "h@serve.example\r\nBcc: all@evil.example"}).encode(),
    json.dumps({"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h2@serve.example",
                "profile": {"first_name": "{{ 7*7 }}"}}).encode(),
    json.dumps({"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h3@serve.example",
                "profile": {"company": "x" * 10_000}}).encode(),
    json.dumps({"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "l" * 1000 + "@serve.example"}).encode(),
    json.dumps({"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h4@serve.example",
                "profile": {"a": {"b": 1}}}).encode(),
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h5@serve.example", "profile": {"n": NaN}}',
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h6@serve.example", "profile": {"n": 1e999}}',
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h7@serve.example", "lead": "h8@serve.example"}',
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h\xff\xfe@serve.example"}',
    b'{"type": "email.exploded", "at": "2026-03-02T14:30:00Z", "lead": "h@serve.example"}',
    b'{"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "h@serve.example", "template": "welcome"}',
    json.dumps({"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "h@serve.example",
                "template": "{% include '/etc/passwd' %}"}).encode(),
    json.dumps({"type": "site.visited", "at": "2026-03-02T16:00:00Z", "lead": "h@serve.example",
                "page": "/pricing\u202egnp.exe"}).encode(),
    b'{"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h9@serve.example", "profile": {"n": '
    + b"9" * 5000 + b"}}",
    b'{"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "h@serve.example", "bounce": "hard"}',
    json.dumps({"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "h\x1b[2J@serve.example"}).encode(),
    b'"just a string"',
    b'{"type": "optin", "at": "12026-03-02T14:30:00Z", "lead": "h10@serve.example"}',
]


def test_hostile_events_are_refused_one_by_one_and_the_good_ones_stored(app_server: Any) -> None:
    server = app_server()
    body = b"\n".join(HOSTILE) + b"\n"
    status, answer = post_events(server.url, body)
    assert status == 200
    good = {0, 13}
    assert answer["accepted"] == 2 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["refused"]] == [i for i in range(len(HOSTILE)) if i not in good]
    reasons = {r["index"]: r["reason"] for r in answer["refused"]}
    assert all(reason and len(reason) < 300 for reason in reasons.values())
    expected = {1: "invalid JSON", 2: "`at`", 3: "control", 4: "template syntax", 5: "10,000 characters",
                6: "`lead`", 7: "plain values", 8: "NaN", 9: "finite", 10: "twice", 11: "UTF-8",
                12: "`type`", 14: "template syntax", 15: "U+202E", 16: "digits", 17: "`bounce`", 18: "U+001B",
                19: "JSON object", 20: "ISO 8601"}
    for index, word in expected.items():
        assert word in reasons[index], (index, reasons[index])
    stored = inbox(server.db)
    assert [(e.type, e.lead, e.template) for e in stored] == [("optin", "h@serve.example", None),
                                                             ("email.opened", "h@serve.example", "welcome")]
    # one log line per refusal, lead data escaped: no control character reaches the log
    refusals = [line for line in server.log if "refused event" in line]
    assert len(refusals) == len(reasons)
    assert not any(re.search("[\x00-\x1f\x7f-\x9f\u202e]", line) for line in server.log)


def test_a_body_that_is_not_events_is_400_and_nothing_is_stored(app_server: Any) -> None:
    server = app_server()
    for body in (b"", b"\n\n", b"[1, 2", b"42", b"[" * 100_000, b'{"a": 1} {"b": 2}'):
        status, data, _ = request(f"{server.url}/events", body, fnl_headers(body))
        if body == b'{"a": 1} {"b": 2}':  # read as one line: refused as what it is
            assert status == 200 and json.loads(data)["refused"][0]["index"] == 0
        else:
            assert status == 400, (body[:20], status, data)
            assert json.loads(data)["error"]
    assert inbox(server.db) == []


# -- one-click unsubscribe ------------------------------------------------------------------------

def test_one_click_unsubscribe_posts_get_only_shows_a_page_and_a_bad_link_is_403(served: Served) -> None:
    lead = "leaving@serve.example"
    link = unsubscribe_link(f"{served.url}/unsubscribe", lead, KEY.encode())

    assert request(link, method="HEAD")[0] == 200  # what a mail scanner does
    status, page, headers = request(link, method="GET")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<form method="post"' in page and b'name="List-Unsubscribe" value="One-Click"' in page
    assert inbox(served.db, lead) == []
    # the button posts to the same link
    action = re.search(r'action="([^"]*)"', page.decode()).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert urllib.parse.urljoin(link, action) == link

    before = time.time()
    status, page, _ = request(link, b"List-Unsubscribe=One-Click",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, page
    [event] = inbox(served.db, lead)
    assert event.type == "email.unsubscribed" and event.lead == lead
    assert int(before) // 60 <= event.at <= int(time.time()) // 60 + 1

    other = "staying@serve.example"
    bad = [link[:-1] + ("0" if link[-1] != "0" else "1"),  # one digit off
           link.replace("leaving", "staying"),  # another lead's link with this signature
           f"{served.url}/unsubscribe?lead={other}",  # no signature
           f"{served.url}/unsubscribe?sig=" + "a" * 64,
           link + "&lead=" + other,  # a lead given twice
           f"{served.url}/unsubscribe?lead={other}&sig=%C3%A9" + "a" * 62]
    for url in bad:
        assert request(url, method="GET")[0] == 403, url
        assert request(url, b"List-Unsubscribe=One-Click")[0] == 403, url
    assert inbox(served.db, other) == [] and len(inbox(served.db, lead)) == 1

    # a hostile lead the adapter signed is escaped on the page, never markup
    odd = '"><script>alert(1)</script>@serve.example'
    status, page, _ = request(unsubscribe_link(f"{served.url}/unsubscribe", odd, KEY.encode()), method="GET")
    assert status == 200 and b"<script>" not in page and b"&lt;script&gt;" in page



def test_an_unsubscribe_link_naming_its_sender_suppresses_for_that_sender_at_once(served: Served) -> None:
    """A link names the sender (From) of the email it came in; posted to this funnel's
    server, even from another funnel's email, the address goes on that sender's list in
    the same transaction as the event (before any fnl run applies it), and a link whose
    sender was changed is refused."""
    lead, other_sender = "moving@serve.example", "news@other.example"
    link = unsubscribe_link(f"{served.url}/unsubscribe", lead, KEY.encode(), other_sender)
    assert "sender=news%40other.example" in link

    def listed(sender: str) -> List[Tuple[str, str]]:
        with sqlite3.connect(served.db) as conn:
            return conn.execute("SELECT sender, reason FROM suppressions WHERE address = ? AND sender = ?",
                                (Database.address_hash(lead), sender)).fetchall()

    forged = link.replace("other.example", "acme.example")
    assert request(forged, b"List-Unsubscribe=One-Click")[0] == 403
    status, page, _ = request(link, method="GET")
    assert status == 200 and listed(other_sender) == []  # a page only
    action = re.search(r'action="([^"]*)"', page.decode()).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert urllib.parse.urljoin(link, action) == link  # the button keeps the sender
    assert request(link, b"List-Unsubscribe=One-Click")[0] == 200
    assert listed(other_sender) == [(other_sender, "unsubscribed")]
    assert [e.type for e in inbox(served.db, lead)] == ["email.unsubscribed"]

# -- SendGrid ---------------------------------------------------------------------------------

def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, stamp: Optional[str] = None) -> Dict[str, str]:
    stamp = stamp or str(int(time.time()))
    sig = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json"}


def test_sendgrids_signed_sample_is_verified_and_mapped(served: Served, keys: Keys) -> None:
    body = (SAMPLES / "sendgrid-events.json").read_bytes()
    url = f"{served.url}/webhooks/sendgrid"

    tampered = body.replace(b"dana@loopwise", b"dena@loopwise")
    for name, headers, sent in (("tampered", sendgrid_headers(keys.sendgrid, body), tampered),
                                ("another key", sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body), body),
                                ("unsigned", {"Content-Type": "application/json"}, body)):
        status, data, _ = request(url, sent, headers)
        assert status == 403, (name, status, data)
    assert inbox(served.db, "dena@loopwise.example") == [] and inbox(served.db, "dana@loopwise.example") == []

    status, data, _ = request(url, body, sendgrid_headers(keys.sendgrid, body))
    answer = json.loads(data)
    assert status == 200 and answer["accepted"] == 12 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["refused"]] == [0, 13]  # processed, group_resubscribe
    assert "not one fnl uses" in answer["refused"][0]["reason"]

    def got(lead: str) -> List[Tuple[str, Optional[str], Optional[str], bool]]:
        return [(e.type, e.bounce, e.template, e.machine) for e in inbox(served.db, lead)]

    assert got("dana@loopwise.example") == [("email.bounced", "soft", "welcome", False),  # deferred
                                            ("email.delivered", None, "welcome", False),
                                            ("email.opened", None, "welcome", False),
                                            ("email.clicked", None, "welcome", False)]
    assert got("sam@northwind.example") == [("email.opened", None, None, True)]  # a machine open
    assert got("gone@northwind.example") == [("email.bounced", "hard", "welcome", False)]
    assert got("busy@northwind.example") == [("email.bounced", "soft", None, False)]  # blocked: soft
    assert got("slow@northwind.example") == [("email.bounced", "soft", None, False)]  # a technical class
    assert got("old@northwind.example") == [("email.bounced", "hard", None, False)]  # dropped
    assert got("riley@fabrikam.example") == [("email.complained", None, None, False)]
    assert got("morgan@fabrikam.example") == [("email.unsubscribed", None, None, False)]
    assert got("casey@fabrikam.example") == [("email.unsubscribed", None, None, False)]
    delivered = inbox(served.db, "dana@loopwise.example")[1]
    assert (delivered.at, delivered.second) == divmod(1772461860, 60)

    status, data, _ = request(url, body, sendgrid_headers(keys.sendgrid, body))  # SendGrid's retry
    assert status == 200 and json.loads(data)["duplicates"] == 12


# -- Amazon SES through SNS -------------------------------------------------------------------------

def string_to_sign(message: Dict[str, str]) -> bytes:
    """SNS's canonical string, as its documentation gives it."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()


def sns_signed(key: rsa.RSAPrivateKey, message: Dict[str, str], version: str = "1") -> bytes:
    message = dict(message, SignatureVersion=version)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(string_to_sign(message), padding.PKCS1v15(),
                                                     algorithm)).decode()
    return json.dumps(message).encode()


def notification(ses_file: Optional[str], number: int = 0, **fields: str) -> Dict[str, str]:
    message = json.loads((SAMPLES / "sns-notification.json").read_text())
    if ses_file is not None:
        message["Message"] = (SAMPLES / ses_file).read_text()
    message["MessageId"] = f"00000000-0000-4000-8000-{number:012d}"
    message.update(fields)
    return message


def test_an_esps_opt_out_goes_on_the_list_of_the_sender_it_names_at_once(app_server: Any, keys: Keys) -> None:
    """SendGrid's events carry the sender fnl put in the message's unique arguments
    (`fnl_sender`), SES's its `mail.source`: an unsubscribe, a complaint or a hard bounce
    goes on that sender's suppression list in the same transaction as the event, before
    any fnl run applies it; a soft bounce, an open, or an event naming no sender does not."""
    server = app_server()

    def listed() -> List[Tuple[str, str]]:
        with sqlite3.connect(server.db) as conn:
            rows = conn.execute("SELECT sender, address, reason FROM suppressions").fetchall()
        names = {Database.address_hash(a): a for a in ("quit@x.example", "soft@x.example", "open@x.example",
                                                       "plain@x.example", "riley@fabrikam.example",
                                                       "gone@northwind.example", "bad@x.example")}
        return sorted((sender, names.get(address, address), reason) for sender, address, reason in rows)

    events = [{"email": "quit@x.example", "event": "unsubscribe", "timestamp": 1772461800,
               "fnl_sender": "News <NEWS@other.example>"},
              {"email": "soft@x.example", "event": "bounce", "type": "blocked", "timestamp": 1772461800,
               "fnl_sender": "news@other.example"},
              {"email": "open@x.example", "event": "open", "timestamp": 1772461800, "fnl_sender": "news@other.example"},
              {"email": "plain@x.example", "event": "spamreport", "timestamp": 1772461800},
              {"email": "bad@x.example", "event": "unsubscribe", "timestamp": 1772461800,
               "fnl_sender": "news@other.example\r\nBcc: x@y.z"}]
    body = json.dumps(events).encode()
    status, data, _ = request(f"{server.url}/webhooks/sendgrid", body, sendgrid_headers(keys.sendgrid, body))
    assert status == 200 and json.loads(data)["accepted"] == 5, data
    assert listed() == [("news@other.example", "quit@x.example", "unsubscribed")]

    complaint = notification("ses-complaint.json", 70)
    complaint["Message"] = complaint["Message"].replace("Acme <hello@acme.example>", "Other <news@other.example>")
    bounce = notification("ses-bounce-permanent.json", 71)
    for message in (complaint, bounce):
        status, data, _ = request(f"{server.url}/webhooks/ses", sns_signed(keys.sns, message))
        assert status == 200, data
    assert listed() == [("hello@acme.example", "gone@northwind.example", "hard bounce"),
                        ("news@other.example", "quit@x.example", "unsubscribed"),
                        ("news@other.example", "riley@fabrikam.example", "complained")]
    assert len(inbox(server.db)) == 7  # every event is stored as well, for fnl run

def test_ses_samples_through_sns_are_verified_and_mapped(app_server: Any, keys: Keys) -> None:
    server = app_server()
    url = f"{server.url}/webhooks/ses"
    samples = ["ses-bounce-permanent.json", "ses-bounce-transient.json", "ses-complaint.json", "ses-delivery.json",
               "ses-open.json", "ses-click.json", None]
    for number, name in enumerate(samples):
        status, data, _ = request(url, sns_signed(keys.sns, notification(name, number), "1" if number % 2 else "2"))
        assert status == 200, (name, data)
        answer = json.loads(data)
        assert answer["accepted"] == 1, (name, answer)
        assert [r["index"] for r in answer["refused"]] == ([1] if name == "ses-bounce-transient.json" else [])

    def got(lead: str) -> List[Tuple[str, Optional[str], Optional[str], Tuple[int, int]]]:
        return [(e.type, e.bounce, e.template, (e.at, e.second)) for e in inbox(server.db, lead)]

    assert got("gone@northwind.example") == [("email.bounced", "hard", "welcome",
                                              minute("2026-03-02T14:32:10Z"))]
    assert got("full@northwind.example") == [("email.bounced", "soft", "nudge", minute("2026-03-02T15:01:00Z"))]
    assert got("riley@fabrikam.example") == [("email.complained", None, None, minute("2026-03-03T09:15:00Z"))]
    assert got("dana@loopwise.example") == [("email.delivered", None, "welcome", minute("2026-03-02T14:30:02Z")),
                                            ("email.opened", None, "welcome", minute("2026-03-02T16:05:30Z")),
                                            ("email.clicked", None, "welcome", minute("2026-03-02T16:06:10Z"))]
    assert got("sam@northwind.example") == [("email.delivered", None, None, minute("2026-03-02T14:30:01Z"))]
    stored = len(inbox(server.db))

    # refused before anything is stored: a changed message, a certificate from elsewhere,
    # another topic, an unknown signature version
    signed = json.loads(sns_signed(keys.sns, notification("ses-complaint.json", 90)))
    signed["Message"] = signed["Message"].replace("riley@", "robin@")
    refusals = {"tampered": json.dumps(signed).encode()}
    for host_url in ("http://sns.us-east-1.amazonaws.com/c.pem", "https://sns.us-east-1.amazonaws.com.evil.example/c.pem",
                     "https://evil.example/sns.us-east-1.amazonaws.com/c.pem", "https://sns.amazonaws.com/c.pem",
                     "https://user@sns.us-east-1.amazonaws.com/c.pem", "https://sns.us-east-1.amazonaws.com:8443/c.pem"):
        refusals[host_url] = sns_signed(keys.sns, notification("ses-complaint.json", 91, SigningCertURL=host_url))
    refusals["topic"] = sns_signed(keys.sns, notification("ses-complaint.json", 92,
                                                          TopicArn=TOPIC.replace("111122223333", "999999999999")))
    refusals["version 3"] = sns_signed(keys.sns, notification("ses-complaint.json", 93), "3")
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    refusals["another key"] = sns_signed(other, notification("ses-complaint.json", 94))
    for name, body in refusals.items():
        status, data, _ = request(url, body)
        assert status == 403, (name, status, data)
    assert len(inbox(server.db)) == stored and inbox(server.db, "robin@fabrikam.example") == []

    # a subscription confirmation: logged for the operator, never visited, nothing stored
    confirmation = json.loads((SAMPLES / "sns-subscription-confirmation.json").read_text())
    status, data, _ = request(url, sns_signed(keys.sns, confirmation, "2"))
    assert status == 200 and json.loads(data)["accepted"] == 0
    assert any("SubscriptionConfirmation" in line and confirmation["SubscribeURL"] in line for line in server.log)
    assert len(inbox(server.db)) == stored


def test_sns_certificates_are_fetched_from_sns_hosts_only_and_once(app_server: Any, keys: Keys) -> None:
    fetched: List[str] = []

    def fetch(url: str) -> bytes:  # stands for the https fetch; no network in tests
        fetched.append(url)
        return keys.cert_pem

    server = app_server(fetch=fetch, sns_cert=None)
    url = f"{server.url}/webhooks/ses"
    for number in range(3):
        status, data, _ = request(url, sns_signed(keys.sns, notification("ses-delivery.json", number)))
        assert status == 200, data
    assert fetched == [CERT_URL]
    elsewhere = "https://certs.evil.example/SimpleNotificationService-1.pem"
    status, _, _ = request(url, sns_signed(keys.sns, notification("ses-delivery.json", 9, SigningCertURL=elsewhere)))
    assert status == 403 and fetched == [CERT_URL]


# -- 2xx only once stored ----------------------------------------------------------------------

def test_a_locked_database_gives_503_and_the_retry_is_stored_once(app_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    Database(str(db)).close()
    server = app_server(db=db, db_wait=0.5)
    body = jsonl({"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "wait@serve.example",
                  "template": "welcome"})
    lock = sqlite3.connect(str(db), isolation_level=None, timeout=1)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        status, data, headers = request(f"{server.url}/events", body, fnl_headers(body))
        assert status == 503 and "database" in json.loads(data)["error"] and headers.get("retry-after")
        assert time.monotonic() - started < 10
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    status, answer = post_events(server.url, body)  # the sender sends again
    assert status == 200 and answer["accepted"] + answer["duplicates"] == 1
    assert len(inbox(db, "wait@serve.example")) == 1


def test_a_database_that_cannot_be_written_gives_503(app_server: Any, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    server = app_server(db=tmp_path / "a-file" / "inbox.db")
    body = jsonl({"type": "email.opened", "at": "2026-03-02T16:00:00Z", "lead": "x@serve.example"})
    status, data, _ = request(f"{server.url}/events", body, fnl_headers(body))
    assert status == 503 and "database" in json.loads(data)["error"]
    link = unsubscribe_link(f"{server.url}/unsubscribe", "x@serve.example", KEY.encode())
    assert request(link, b"List-Unsubscribe=One-Click")[0] == 503


def test_fnl_run_applies_what_fnl_serve_stored(app_server: Any, tmp_path: Path) -> None:
    server = app_server()
    body = (REPO / "tests" / "events" / "acme-dana.jsonl").read_bytes()
    status, answer = post_events(server.url, body)
    assert status == 200 and answer["accepted"] == len(body.splitlines())
    run = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(server.db), "--until",
                          "2026-06-01T00:00:00Z", "--actions", f"jsonl:{tmp_path / 'actions.jsonl'}"],
                         capture_output=True, text=True, timeout=120, env=clean_env())
    assert run.returncode == 0, run.stderr
    assert inbox(server.db) == []  # every event applied
    actions = [json.loads(line) for line in (tmp_path / "actions.jsonl").read_text().splitlines()]
    assert any(a["lead"] == "dana@loopwise.example" and a["type"] == "send_email" for a in actions)


# -- the command, and no input that breaks it ---------------------------------------------------------

def test_fnl_serve_refuses_to_start_without_its_key_a_port_or_a_good_key(served: Served, keys: Keys,
                                                                         tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    runs = {
        "no key": (["--db", db], {k: v for k, v in clean_env().items() if k != "FNL_SIGNING_KEY"}),
        "port taken": (["--db", db, "--port", str(served.port)], serve_env(keys)),
        "bad sendgrid key": (["--db", db], serve_env(keys, FNL_SENDGRID_PUBLIC_KEY="bm90IGEga2V5")),
        "bad port": (["--db", db, "--port", "70000"], serve_env(keys)),
    }
    procs = {name: subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "serve", ACME, *args],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name, (args, env) in runs.items()}
    words = {"no key": "FNL_SIGNING_KEY", "port taken": "cannot listen", "bad sendgrid key": "FNL_SENDGRID_PUBLIC_KEY",
             "bad port": "--port"}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, (name, err)
        assert words[name] in err and "Traceback" not in err, (name, err)


def test_no_request_makes_it_fail_or_show_a_traceback(app_server: Any, keys: Keys) -> None:
    """Random and broken requests to every endpoint, signed or not: an answer with a
    reason each time, never a 500."""
    server = app_server()
    rnd = random.Random(20260302)
    pieces = [b"{", b"}", b"[", b"]", b'"type"', b":", b",", b'"email.opened"', b"null", b"1e309", b"\xff",
              b'"lead"', b'"at"', b'"2026-03-02T16:00:00Z"', b"\n", b"\\u0000", b'"\\ud800"', b"-", b"0"]
    sample = (SAMPLES / "sendgrid-events.json").read_bytes()
    statuses = set()
    for i in range(120):
        kind = i % 4
        if i % 3 == 0:
            body = b"".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 40)))
        elif i % 3 == 1:
            body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 300)))
        else:
            cut = rnd.randrange(len(sample))
            body = sample[:cut] + bytes([rnd.randrange(256)]) + sample[cut + 1:]
        if kind == 0:
            status, data, _ = request(f"{server.url}/events", body, fnl_headers(body) if i % 2 else {})
        elif kind == 1:
            status, data, _ = request(f"{server.url}/webhooks/sendgrid", body, sendgrid_headers(keys.sendgrid, body))
        elif kind == 2:
            status, data, _ = request(f"{server.url}/webhooks/ses", body)
        else:
            query = "".join(rnd.choice("lead=sig&%0d0a<>\"'{}") for _ in range(rnd.randrange(0, 40)))
            status, data, _ = request(f"{server.url}/unsubscribe?{query}", body, method=rnd.choice(["GET", "POST"]))
        statuses.add(status)
        assert status in (200, 400, 401, 403), (i, status, data[:200])
        assert b"Traceback" not in data
    assert {200, 400, 403} <= statuses
    assert not any("internal error" in line for line in server.log)
