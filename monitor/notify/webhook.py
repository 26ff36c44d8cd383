"""The webhook channel: a signed JSON POST per message, schema version "1".

Receivers get an `Idempotency-Key` header (stable per alert and channel, so a retried delivery
can be recognised) and, when the channel has a `secret`, `X-Monitor-Timestamp` and
`X-Monitor-Signature: v1=<hex>`, an HMAC-SHA256 over `f"{timestamp}.{body}"`. The timestamp is
signed too so a captured request cannot be replayed later than the receiver tolerates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from monitor.errors import DeliveryError
from monitor.notify import templates
from monitor.notify.base import (
    USER_AGENT,
    Channel,
    SendReceipt,
    status_error,
    transport_error,
)
from monitor.notify.message import AlertMessage
from monitor.notify.pinning import pin_destination
from monitor.notify.ratelimit import TokenBucket
from monitor.notify.webhook_config import WebhookChannel as WebhookConfig

SCHEMA = "news-monitor/alert"
SCHEMA_VERSION = "1"
SIGNATURE_VERSION = "v1"


def _alert_fields(msg: AlertMessage) -> dict[str, Any]:
    return {
        "kind": msg.kind,
        "alert_id": msg.alert_id,
        "rule": msg.rule,
        "severity": msg.severity,
        "title": msg.title,
        "url": msg.url,
        "source": msg.source,
        "published": msg.published.isoformat() if msg.published else None,
        "snippet": msg.snippet,
        "highlights": [
            {"start": s, "end": e, "text": msg.snippet[s:e]}
            for s, e in msg.highlights
            if 0 <= s < e <= len(msg.snippet)
        ],
        "story_id": msg.story_id,
        "sources": [dict(s) for s in msg.sources],
        "why": [dict(w) for w in msg.why],
        "created_at": msg.created_at.isoformat(),
        "detail": msg.detail,
        "enclosures": [
            {"url": e.get("url"), "type": e.get("type") or None, "length": e.get("length")}
            for e in msg.enclosures
        ],
    }


def webhook_payload(msg: AlertMessage) -> dict[str, Any]:
    """The JSON body a webhook receives (schema version "1", documented in the README)."""
    payload: dict[str, Any] = {"schema": SCHEMA, "version": SCHEMA_VERSION}
    payload["idempotency_key"] = msg.idempotency_key
    payload.update(_alert_fields(msg))
    payload["items"] = [_alert_fields(item) for item in msg.items]
    return payload


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `f"{timestamp}.{body}"` with `secret`."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature_header: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a Python receiver does: check `X-Monitor-Signature` and the timestamp's age."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    if age > tolerance:
        return False
    expected = f"{SIGNATURE_VERSION}={sign(secret, timestamp, body)}"
    return any(hmac.compare_digest(expected, part.strip()) for part in signature_header.split(","))


class WebhookChannel(Channel):
    """POSTs each message to `url`; only a 2xx answer counts as delivered."""

    kind = "webhook"
    http = True

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        *,
        client: httpx.AsyncClient,
        limiter: TokenBucket | None = None,
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config
        self._client = client

    def _body(self, msg: AlertMessage) -> tuple[bytes, str]:
        if self.config.template is None:
            body = json.dumps(webhook_payload(msg), ensure_ascii=False, separators=(",", ":"))
            return body.encode("utf-8"), "application/json"
        text = templates.render("text", msg, source=self.config.template)
        if not text.strip():
            raise DeliveryError(
                f"channel {self.name}: the template rendered an empty body", permanent=True
            )
        try:
            json.loads(text)
        except ValueError:
            return text.encode("utf-8"), "text/plain; charset=utf-8"
        return text.encode("utf-8"), "application/json"

    def _headers(self, msg: AlertMessage, body: bytes, content_type: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        # Set last so a custom header cannot shadow the delivery's identity or signature.
        headers["Content-Type"] = content_type
        headers["Idempotency-Key"] = msg.idempotency_key
        if self.config.secret is not None:
            timestamp = str(int(time.time()))
            secret = self.config.secret.get_secret_value().encode("utf-8")
            headers["X-Monitor-Timestamp"] = timestamp
            headers["X-Monitor-Signature"] = f"{SIGNATURE_VERSION}={sign(secret, timestamp, body)}"
        return headers

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        url = self.config.url.get_secret_value()
        # Resolved and checked once; the POST goes to that very address (no rebinding).
        target = await pin_destination(self.name, url, allow_private=self.config.allow_private)
        body, content_type = self._body(msg)
        try:
            headers = self._headers(msg, body, content_type) | target.headers
            response = await self._client.post(
                target.url,
                content=body,
                headers=headers,
                timeout=self.config.timeout.total_seconds(),
                follow_redirects=False,
                extensions=target.extensions,
            )
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from exc
        except ValueError as exc:  # httpx refuses header values with CR/LF or non-ASCII
            reason = f"channel {self.name}: invalid header: {exc}"
            raise DeliveryError(reason, permanent=True) from exc
        if not 200 <= response.status_code < 300:
            raise status_error(self.name, response)
        return SendReceipt(detail=f"HTTP {response.status_code}")
