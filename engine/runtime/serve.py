"""`fnl serve`: the HTTP endpoint that puts events into the runtime's inbox.

A Starlette app under uvicorn, listening on loopback by default:

- `POST /events`: events in fnl's format, signed with `FNL_SIGNING_KEY`;
- `GET /unsubscribe?lead=..&sender=..&sig=..`: a page with a button (scanners that fetch
  links unsubscribe nobody); `POST` to the same link (RFC 8058 one-click): the unsubscribe,
  and the address on the suppression list of the sender the link names, at once;
- `GET /confirm?lead=..&magnet=..&sig=..`: the double opt-in confirmation page, with a
  button; `POST` to the same link stores `optin.confirmed` for that lead magnet;
- `POST /webhooks/sendgrid`: SendGrid's signed Event Webhook (`FNL_SENDGRID_PUBLIC_KEY`);
- `POST /webhooks/ses`: Amazon SES events through SNS, with SNS's signature checked
  against the certificate at its SigningCertURL (an `sns.<region>.amazonaws.com` host,
  fetched once) or a PEM certificate pinned by `FNL_SNS_CERT`; `FNL_SNS_TOPIC_ARNS`
  (comma-separated) limits the topics taken.

`sources` turns each request into events and refusals; this module reads bodies (at most
`sources.MAX_BODY` bytes, counted while reading), stores the events and answers. A 2xx
answer means the accepted events are committed to the inbox (`Database.accept`); a
database that cannot take them within `FNL_SERVE_DB_WAIT` seconds (default 10) gives 503,
so the sender sends again, and an event sent twice is stored once. The engine applies the
inbox when `fnl run` next runs: events wait there meanwhile.
"""
from __future__ import annotations

import asyncio
import html
import http.client
import os
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode

import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import UsageError
from ..state import Event
from ..terminal import escape
from . import sources
from .db import Database
from .loop import suppressing

DB_WAIT = 10.0  # seconds a request waits for the database before answering 503
DB_THREADS = 4
MAX_LOGGED = 20  # refusals logged per request; the rest are counted
MAX_FORM = 8 * 1024  # bytes of an unsubscribe POST's body
MAX_CERT = 64 * 1024
CERT_TIMEOUT = 10.0
MAX_CERTS = 16


@dataclass(frozen=True)
class Settings:
    """What the server needs, read from the command line and the environment at start."""

    db_path: str
    funnel: str  # the plan's funnel: the inbox the events go to
    signing_key: bytes
    sendgrid_key: Optional[ec.EllipticCurvePublicKey] = None
    sns_cert: Optional[rsa.RSAPublicKey] = None  # pinned: SigningCertURL is checked, never fetched
    sns_topics: Tuple[str, ...] = ()  # empty: every topic
    db_wait: float = DB_WAIT
    sender: str = ""  # the plan's sender (From), as `fnl run` scopes the database


def settings_from_env(db_path: str, funnel: str, env: Mapping[str, str], sender: str = "") -> Settings:
    """Settings from the environment; UsageError for a key or certificate that is unusable."""
    secret = env.get("FNL_SIGNING_KEY", "")
    if len(secret) < 16:
        raise UsageError("fnl serve needs FNL_SIGNING_KEY (at least 16 characters): it checks signed events and "
                         "unsubscribe links", "set it in the environment, the same key fnl run signs with")
    sendgrid = None
    if env.get("FNL_SENDGRID_PUBLIC_KEY"):
        try:
            sendgrid = sources.load_sendgrid_key(env["FNL_SENDGRID_PUBLIC_KEY"])
        except ValueError as exc:
            raise UsageError(f"FNL_SENDGRID_PUBLIC_KEY {exc}",
                             "copy the verification key from SendGrid's Event Webhook settings") from None
    pinned = None
    if env.get("FNL_SNS_CERT"):
        path = env["FNL_SNS_CERT"]
        try:
            with open(path, "rb") as fh:
                pem = fh.read(MAX_CERT + 1)
            if len(pem) > MAX_CERT:
                raise ValueError("is larger than a certificate")
            pinned = sources.load_sns_cert(pem)
        except OSError as exc:
            raise UsageError(f"FNL_SNS_CERT {path}: cannot read: {exc.strerror or exc}",
                             "give the path of SNS's signing certificate (PEM)") from None
        except ValueError as exc:
            raise UsageError(f"FNL_SNS_CERT {path} {exc}", "give the path of SNS's signing certificate (PEM)") from None
    wait = env.get("FNL_SERVE_DB_WAIT", "")
    try:
        db_wait = float(wait) if wait else DB_WAIT
        if not 0 < db_wait <= 300:
            raise ValueError
    except ValueError:
        raise UsageError("FNL_SERVE_DB_WAIT must be seconds, more than 0 and at most 300") from None
    topics = tuple(t.strip() for t in env.get("FNL_SNS_TOPIC_ARNS", "").split(",") if t.strip())
    return Settings(db_path, funnel, secret.encode("utf-8"), sendgrid, pinned, topics, db_wait, sender)


class TooLarge(Exception):
    pass


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, read chunk by chunk; TooLarge as soon as it passes `limit` bytes
    (the rest is never read)."""
    buf = bytearray()
    async for chunk in chunks:
        if len(buf) + len(chunk) > limit:
            raise TooLarge
        buf += chunk
    return bytes(buf)


async def _body(request: Request, limit: int = sources.MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > 15:
            raise sources.bad_request("Content-Length is not a number of bytes")
        if int(declared) > limit:
            raise TooLarge
    return await read_limited(request.stream(), limit)


class Unavailable(Exception):
    pass


class Store:
    """The inbox behind the app: each request's events go in through a connection of its
    own (`Database(path)`, for the funnel `fnl run` applies them to, `accept`, `close`), on
    a few threads of their own, never on the event loop. A request waits at most `wait`
    seconds; a store still running then goes on, and what it commits is there when the
    sender sends again (kept once)."""

    def __init__(self, path: str, wait: float, funnel: str = "", sender: str = "") -> None:
        self.path = path
        self.wait = wait
        self.funnel, self.sender = funnel, sender
        self.pool = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="fnl-serve-db")

    def _accept(self, events: Sequence[Event], senders: Sequence[str] = ()) -> Tuple[int, int]:
        db = Database(self.path)
        try:
            scope = getattr(db, "scope", None)  # a database that holds many funnels' inboxes
            if scope is not None:
                scope(self.funnel, self.sender)
            with db.transaction():
                # An opt-out names the sender of the email it is about (an unsubscribe link, an
                # ESP's event): on that sender's list at once, in every funnel that sends from it,
                # even one this server does not serve. fnl run adds the serving funnel's sender.
                for event, sender in zip(events, senders):
                    reason = suppressing(event)
                    if sender and reason is not None and event.lead:
                        db.suppress(event.lead, reason, event.at, sender=sender)
                return db.accept(list(events))
        finally:
            db.close()

    async def accept(self, events: Sequence[Event], senders: Sequence[str] = ()) -> Tuple[int, int]:
        """Store the events; an opt-out among them whose sender is given beside it (in
        `senders`) also goes on that sender's suppression list, in the same transaction."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.pool, self._accept, events, senders),
                                          self.wait)
        except asyncio.TimeoutError:
            raise Unavailable(f"the database did not take the events within {self.wait:g} s (locked by another "
                              "process?): send them again") from None
        except UsageError as exc:
            raise Unavailable(f"the database cannot be written: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the database says, the sender retries
            raise Unavailable(f"the database cannot be written now ({type(exc).__name__}: {exc}): send the "
                              "events again") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Certificates:
    """SNS signing keys by SigningCertURL: the pinned one, or each fetched once (https,
    an SNS host, checked before fetching)."""

    def __init__(self, pinned: Optional[rsa.RSAPublicKey],
                 fetch: Optional[Callable[[str], bytes]] = None) -> None:
        self.pinned = pinned
        self.fetch = fetch or _fetch
        self.cache: Dict[str, rsa.RSAPublicKey] = {}
        self.lock = threading.Lock()

    def key(self, url: str) -> rsa.RSAPublicKey:
        """The key for `url` (blocking: run it off the event loop); Refused (403) for a URL
        fnl does not fetch from, Unavailable when the certificate cannot be had now."""
        problem = sources.cert_url_problem(url)
        if problem:
            raise sources.forbidden(problem)
        if self.pinned is not None:
            return self.pinned
        with self.lock:
            if url in self.cache:
                return self.cache[url]
        try:
            key = sources.load_sns_cert(self.fetch(url))
        except ValueError as exc:
            raise sources.forbidden(f"the certificate at SigningCertURL {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"cannot fetch the SNS certificate now: {exc}") from None
        with self.lock:
            if len(self.cache) >= MAX_CERTS:
                self.cache.clear()
            self.cache[url] = key
        return key


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=CERT_TIMEOUT) as answer:  # noqa: S310 - https, an SNS host
        data: bytes = answer.read(MAX_CERT + 1)
    if len(data) > MAX_CERT:
        raise ValueError("is larger than a certificate")
    return data


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def create_app(settings: Settings, clock: Callable[[], float] = time.time, log: Callable[[str], None] = _stderr,
               fetch: Optional[Callable[[str], bytes]] = None) -> Starlette:
    """The app: its routes over one Store. `log` takes one line per note, lead data in it
    escaped; `fetch` gets a certificate's bytes (tests pin a certificate instead)."""
    store = Store(settings.db_path, settings.db_wait, settings.funnel, settings.sender)
    certificates = Certificates(settings.sns_cert, fetch)

    def note(where: str, text: str) -> None:
        log(f"fnl serve: {where}: {escape(text)}")

    def log_refusals(where: str, parsed: sources.Parsed) -> None:
        for refusal in parsed.refused[:MAX_LOGGED]:
            note(where, f"refused event {refusal.index}: {refusal.reason}")
        if len(parsed.refused) > MAX_LOGGED:
            note(where, f"and {len(parsed.refused) - MAX_LOGGED:,} more events refused")
        for line in parsed.notes:
            note(where, line)

    async def answer(where: str, parsed: sources.Parsed) -> Response:
        log_refusals(where, parsed)
        new = seen = 0
        if parsed.events:
            new, seen = await store.accept(parsed.events, parsed.senders)
        return JSONResponse({"accepted": new, "duplicates": seen, "refused": parsed.refused_json()})

    async def events(request: Request) -> Response:
        body = await _body(request)
        sources.check_fnl_signature(settings.signing_key, request.headers.get("x-fnl-timestamp"),
                                    request.headers.get("x-fnl-signature"), body, clock())
        return await answer("/events", sources.parse_fnl(body))

    def link(request: Request) -> Tuple[Optional[str], Optional[str], str]:
        params = request.query_params
        leads, sigs, senders = params.getlist("lead"), params.getlist("sig"), params.getlist("sender")
        if len(leads) > 1 or len(sigs) > 1 or len(senders) > 1:
            raise sources.forbidden("this unsubscribe link is not valid (a parameter given twice)")
        return (leads[0] if leads else None), (sigs[0] if sigs else None), (senders[0] if senders else "")

    async def unsubscribe(request: Request) -> Response:
        lead, sig, sender = link(request)
        event = sources.unsubscribe_event(lead, sig, settings.signing_key, clock(), sender)
        if request.method != "POST":  # GET or HEAD: a page, never the unsubscribe (mail scanners fetch links)
            query = {"lead": event.lead, **({"sender": sender} if sender else {}), "sig": sig or ""}
            action = "?" + urlencode(query)  # this path, behind any proxy
            return HTMLResponse(_page("Unsubscribe", f"<p>Stop all email to <b>{html.escape(event.lead)}</b>?</p>"
                                      f'<form method="post" action="{html.escape(action, quote=True)}">'
                                      '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                                      '<button type="submit">Unsubscribe</button></form>'),
                                headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})
        await _body(request, MAX_FORM)  # List-Unsubscribe=One-Click (RFC 8058); the signature is what counts
        # The event goes to this funnel's inbox; the link's sender (the From of the email it
        # came in, maybe another funnel's) gets the address on its list at once.
        await store.accept([event], [sender])
        note("/unsubscribe", f"{event.lead} unsubscribed")
        return HTMLResponse(_page("Unsubscribed", f"<p>{html.escape(event.lead)} gets no more email from us.</p>"),
                            headers={"Cache-Control": "no-store"})

    async def confirm(request: Request) -> Response:
        params = request.query_params
        if any(len(params.getlist(name)) > 1 for name in ("lead", "magnet", "sig")):
            raise sources.forbidden("this confirmation link is not valid (a parameter given twice)")
        lead, magnet, sig = params.get("lead"), params.get("magnet"), params.get("sig")
        event = sources.confirm_event(lead, magnet, sig, settings.signing_key, clock())
        if request.method != "POST":  # GET or HEAD: a page, never the confirmation (mail scanners fetch links)
            action = "?" + urlencode({"lead": event.lead, "magnet": event.magnet or "", "sig": sig or ""})
            return HTMLResponse(_page("Confirm", f"<p>Confirm the request of <b>{html.escape(event.lead)}</b>?</p>"
                                      f'<form method="post" action="{html.escape(action, quote=True)}">'
                                      '<button type="submit">Yes, confirm</button></form>'),
                                headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})
        await _body(request, MAX_FORM)  # the signature is what counts
        await store.accept([event])
        note("/confirm", f"{event.lead} confirmed the opt-in to {event.magnet}")
        return HTMLResponse(_page("Confirmed", f"<p>Thank you: {html.escape(event.lead)} is confirmed.</p>"),
                            headers={"Cache-Control": "no-store"})

    async def sendgrid(request: Request) -> Response:
        if settings.sendgrid_key is None:
            return _error(404, "SendGrid's events are not taken here: set FNL_SENDGRID_PUBLIC_KEY and restart")
        body = await _body(request)
        sources.check_sendgrid_signature(settings.sendgrid_key,
                                         request.headers.get("x-twilio-email-event-webhook-signature"),
                                         request.headers.get("x-twilio-email-event-webhook-timestamp"), body)
        return await answer("/webhooks/sendgrid", sources.parse_sendgrid(body))

    async def ses(request: Request) -> Response:
        body = await _body(request)
        message = sources.parse_sns(body)
        if settings.sns_topics and message.get("TopicArn") not in settings.sns_topics:
            raise sources.forbidden("the SNS message is from a topic not in FNL_SNS_TOPIC_ARNS")
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(None, certificates.key, message.get("SigningCertURL"))
        sources.check_sns_signature(message, key)
        if message.type != "Notification":
            note("/webhooks/ses", f"SNS {message.type} for {message.get('TopicArn')}: to confirm, visit "
                                  f"{message.get('SubscribeURL')} (fnl never visits it itself)")
            return JSONResponse({"accepted": 0, "duplicates": 0, "refused": [],
                                 "note": f"{message.type} logged for the operator"})
        return await answer("/webhooks/ses", sources.parse_ses(message.get("Message")))

    def guarded(handler: Callable[[Request], Any], where: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except TooLarge:
                return _error(413, f"the body is larger than {sources.MAX_BODY // 1024 // 1024} MiB: send fewer "
                                   "events per request", {"Connection": "close"})  # the rest is never read
            except sources.Refused as exc:
                note(where, f"refused the request ({exc.status}): {exc.reason}")
                if where in ("/unsubscribe", "/confirm"):
                    return HTMLResponse(_page("Not a valid link", f"<p>{html.escape(exc.reason)}</p>"), exc.status)
                return _error(exc.status, exc.reason)
            except Unavailable as exc:
                note(where, f"answered 503: {exc}")
                return _error(503, str(exc), {"Retry-After": "30"})
            except Exception as exc:  # noqa: BLE001 - one line, never a traceback to the sender
                note(where, f"internal error: {type(exc).__name__}: {exc}")
                return _error(500, "internal error in fnl serve (logged)")
        return endpoint

    routes = [Route("/events", guarded(events, "/events"), methods=["POST"]),
              Route("/unsubscribe", guarded(unsubscribe, "/unsubscribe"), methods=["GET", "POST"]),
              Route("/confirm", guarded(confirm, "/confirm"), methods=["GET", "POST"]),
              Route("/webhooks/sendgrid", guarded(sendgrid, "/webhooks/sendgrid"), methods=["POST"]),
              Route("/webhooks/ses", guarded(ses, "/webhooks/ses"), methods=["POST"])]
    app = Starlette(routes=routes)
    app.state.store = store
    return app


def _error(status: int, reason: str, headers: Optional[Dict[str, str]] = None) -> Response:
    return JSONResponse({"error": reason}, status, headers=headers)


def _page(title: str, content: str) -> str:
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title></head><body>{content}</body></html>")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); UsageError if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise UsageError(f"--host {host}: not an address to listen on ({exc})",
                         "give an IP address such as 127.0.0.1") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen: {exc.strerror or exc}",
                         "give another --port, or stop what listens there") from None
    return sock


def main(funnel: str, db_path: str, host: str = "127.0.0.1", port: int = 8025,
         env: Optional[Mapping[str, str]] = None) -> None:
    """`fnl serve`: check the funnel, the keys and the database, then serve until stopped."""
    from ..pipeline import compiled_for

    compiled = compiled_for(funnel)
    settings = settings_from_env(db_path, compiled.plan.funnel, os.environ if env is None else env,
                                 compiled.plan.sender.from_)
    checked = Database(db_path)  # made, or checked to be fnl's, before the first request
    shown_db = checked.path  # the URL without its password: never shown
    checked.close()
    sock = listen(host, port)
    bound = sock.getsockname()
    shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    app = create_app(settings)
    _stderr(f"fnl serve: {escape(settings.funnel)} on http://{shown_host}:{bound[1]} (database {escape(shown_db)}): "
            f"POST /events, GET and POST /unsubscribe, GET and POST /confirm, POST /webhooks/sendgrid"
            f"{'' if settings.sendgrid_key else ' (off: no FNL_SENDGRID_PUBLIC_KEY)'}, POST /webhooks/ses")
    url = compiled.funnel.sender.unsubscribe_url
    if not url:
        _stderr("fnl serve: note: the funnel has no sender.unsubscribe_url, so its emails link to no unsubscribe here")
    elif not url.split("?")[0].rstrip("/").endswith("/unsubscribe"):
        _stderr(f"fnl serve: note: route sender.unsubscribe_url ({escape(url)}) to /unsubscribe on this server")
    confirm_url = compiled.funnel.sender.confirm_url
    if confirm_url and not confirm_url.split("?")[0].rstrip("/").endswith("/confirm"):
        _stderr(f"fnl serve: note: route sender.confirm_url ({escape(confirm_url)}) to /confirm on this server")
    if not settings.sns_topics:
        _stderr("fnl serve: note: /webhooks/ses takes SNS messages of any topic: set FNL_SNS_TOPIC_ARNS to yours")
    if bound[0] not in ("127.0.0.1", "::1"):
        _stderr("fnl serve: note: listening beyond this machine: put it behind a TLS proxy")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False,
                            limit_concurrency=256, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.store.close()
        sock.close()

