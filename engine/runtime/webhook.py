"""The webhook adapter: handoffs, stage changes, SLA breaches, CRM updates and notifications
as HTTP POSTs to a CRM or chat endpoint (`--actions webhook:URL`).

Each request carries the action as JSON with its idempotency key, the key again in an
`Idempotency-Key` header, and `X-Fnl-Timestamp` and `X-Fnl-Signature` (HMAC-SHA256 of
"timestamp.body" with `FNL_SIGNING_KEY`), so the receiver can tell fnl's requests, and a
repeat, apart. A 2xx answer delivers it. A timeout, a connection refused, a 5xx, 408 or
429 is tried again after an exponentially growing wait with jitter (the jitter drawn from
the key, so a rerun waits the same), up to `ATTEMPTS` tries; then, or at once on any
other answer, the action is parked as failed with the reason, and the rest go on.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict
from urllib.parse import urlsplit

from ..errors import UsageError

TAKES = ("handoff", "stage_changed", "sla_breached", "escalated", "crm_update", "notify")
ATTEMPTS = 5
FIRST_WAIT = 0.5  # seconds before the second try; doubled each time, with up to half again of jitter
TIMEOUT = 10.0
RETRY_STATUS = (408, 429)


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(self, url: str, sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme not in ("https", "http") or not parts.hostname or (parts.scheme == "http" and not loopback):
            raise UsageError(f"--actions webhook:{url}: not a webhook address",
                             "give webhook:https://HOST/PATH (plain http only on this machine: 127.0.0.1)")
        secret = os.environ.get("FNL_SIGNING_KEY", "")
        if len(secret) < 16:
            raise UsageError("the webhook adapter needs FNL_SIGNING_KEY (at least 16 characters) to sign requests",
                             "set it in the environment, never in a definition")
        self.url = url
        self.secret = secret.encode("utf-8")
        self.sleep = sleep
        first = os.environ.get("FNL_WEBHOOK_FIRST_WAIT")  # tests: a shorter first wait
        self.first_wait = float(first) if first else FIRST_WAIT

    def takes(self, action: Dict[str, Any]) -> bool:
        return action.get("type") in TAKES

    def _jitter(self, key: str, attempt: int) -> float:
        digest = hashlib.sha256(f"{key}:{attempt}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2 ** 32

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        body = json.dumps({**action, "idempotency_key": key}, sort_keys=True, ensure_ascii=False).encode("utf-8")
        last = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(self.first_wait * 2 ** (attempt - 1) * (1 + self._jitter(key, attempt) / 2))
            timestamp = str(int(time.time()))
            request = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Content-Type": "application/json", "Idempotency-Key": key, "X-Fnl-Timestamp": timestamp,
                "X-Fnl-Signature": signature(self.secret, timestamp, body), "User-Agent": "fnl"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - checked scheme
                    if 200 <= answer.status < 300:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code not in RETRY_STATUS:
                    raise ValueError(f"the webhook answered {last}: parked as failed") from None
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
        raise ValueError(f"the webhook did not take it in {ATTEMPTS} tries (last: {last}): parked as failed")
