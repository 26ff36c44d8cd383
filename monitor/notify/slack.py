"""The Slack channel: Block Kit messages to an incoming webhook, within Slack's limits.

Slack rejects a message with more than 50 blocks, a section over 3,000 characters or a header
over 150, and in practice anything past roughly 13k characters of block text
(`msg_blocks_too_long`). Messages are built to stay inside all of these, cutting text with an
ellipsis and ending a digest with "and N more". Slack allows about one message per second per
webhook, so every channel posting to the same webhook URL shares one token bucket, and a 429's
Retry-After pauses that bucket for everyone.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import httpx

from monitor.errors import DeliveryError
from monitor.notify import mrkdwn, templates
from monitor.notify.base import (
    USER_AGENT,
    Channel,
    SendReceipt,
    status_error,
    transport_error,
)
from monitor.notify.message import AlertMessage, truncate
from monitor.notify.mrkdwn import escape
from monitor.notify.pinning import pin_destination
from monitor.notify.ratelimit import TokenBucket
from monitor.notify.slack_config import SlackChannel as SlackConfig

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_CONTEXT = 2000
# Below the ~13.2k characters at which Slack was seen to answer msg_blocks_too_long.
MAX_TOTAL = 11_000
MAX_FALLBACK = 2000
_DIGEST_SNIPPET = 280
_DIGEST_TITLE = 150

SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":white_circle:",
}

_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def webhook_bucket(url: str) -> TokenBucket:
    """The one 1-message-per-second bucket of a webhook URL, shared by all its channels."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(1, 1.0)
        return bucket


def _link(url: str | None, text: str) -> str:
    return str(mrkdwn.link(url, text))


def _bold_snippet(text: str, spans: list[tuple[int, int]]) -> str:
    return str(mrkdwn.bold(text, spans))


def snippet_mrkdwn(text: str, spans: list[tuple[int, int]], limit: int) -> str:
    """The snippet as mrkdwn with highlights in bold, at most `limit` characters long."""
    budget = limit
    while True:
        cut = truncate(text, budget)
        rendered = _bold_snippet(cut, spans)
        if len(rendered) <= limit or budget <= 1:
            return rendered[:limit]
        # Escaping and bold markers grew the text: shrink the plain text in proportion.
        budget = max(1, min(budget - 1, budget * limit // len(rendered)))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER), "emoji": True},
    }


def _context(text: str) -> dict[str, Any]:
    element = {"type": "mrkdwn", "text": truncate(text, MAX_CONTEXT)}
    return {"type": "context", "elements": [element]}


def _meta_line(msg: AlertMessage) -> str:
    parts = [f"*{escape(msg.severity.upper())}*"]
    if msg.rule:
        parts.append(f"rule `{escape(msg.rule)}`")
    if msg.source:
        parts.append(escape(msg.source))
    if msg.published:
        parts.append(msg.published.strftime("%Y-%m-%d %H:%M UTC"))
    if msg.alert_id is not None:  # for `monitor feedback ALERT_ID relevant|irrelevant`
        parts.append(f"alert {msg.alert_id}")
    return " · ".join(parts)


def _emoji(msg: AlertMessage) -> str:
    return SEVERITY_EMOJI.get(msg.severity, ":white_circle:")


def _header_text(msg: AlertMessage) -> str:
    if msg.kind == "story.updated":
        return f"Updated: {msg.title}"
    if msg.kind == "source.broken":
        return f"Source broken: {msg.source or msg.title}"
    if msg.kind == "source.recovered":
        return f"Source recovered: {msg.source or msg.title}"
    if msg.kind == "digest":
        n = len(msg.items)
        return f"Digest: {n} alert{'s' if n != 1 else ''}"
    return msg.title


def _fallback(msg: AlertMessage) -> str:
    if msg.kind == "digest":
        titles = "; ".join(item.title for item in msg.items)
        text = f"{_header_text(msg)}: {titles}" if titles else _header_text(msg)
    elif msg.kind in ("source.broken", "source.recovered"):
        text = f"{_header_text(msg)}: {msg.detail}" if msg.detail else _header_text(msg)
    else:
        text = f"[{msg.severity.upper()}] {_header_text(msg)}"
        if msg.rule:
            text += f" ({msg.rule})"
    return truncate(escape(text), MAX_FALLBACK)


def _alert_blocks(msg: AlertMessage, body: str | None) -> list[dict[str, Any]]:
    blocks = [_header(_header_text(msg))]
    if body is not None:
        blocks.append(_section(body))
    elif msg.kind in ("source.broken", "source.recovered"):
        lines = [escape(msg.detail)] if msg.detail else []
        if msg.url:
            lines.append(f"feed: {_link(msg.url, msg.url)}")
        blocks.append(_section("\n".join(lines) or escape(msg.title)))
    else:
        title = f"{_emoji(msg)} *{_link(msg.url, truncate(msg.title, 300))}*"
        snippet = snippet_mrkdwn(msg.snippet, msg.highlights, MAX_SECTION - len(title) - 2)
        blocks.append(_section(f"{title}\n{snippet}" if snippet else title))
        blocks.append(_context(_meta_line(msg)))
        if len(msg.sources) > 1:
            blocks.append(_section(_sources_text(msg.sources)))
        if msg.why:
            hits = "; ".join(
                f"{escape(str(w.get('field', '')))}: `{escape(str(w.get('leaf', '')))}` → "
                f"“{escape(str(w.get('text', '')))}”"
                for w in msg.why
            )
            blocks.append(_context(f"Why: {hits}"))
    return blocks


def _sources_text(sources: list[dict[str, str]]) -> str:
    head = f"Carried by {len(sources)} outlets:"
    lines = [head]
    used = len(head)
    for i, s in enumerate(sources):
        link = _link(s.get("url"), truncate(s.get("title", ""), 200))
        line = f"• {escape(s.get('feed', ''))}: {link}"
        rest = len(sources) - i
        if used + len(line) + 40 > MAX_SECTION:
            lines.append(f"…and {rest} more")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _digest_item(item: AlertMessage) -> str:
    title = f"{_emoji(item)} *{_link(item.url, truncate(item.title, _DIGEST_TITLE))}*"
    meta = " · ".join(escape(p) for p in (item.source, item.rule) if p)
    snippet = snippet_mrkdwn(item.snippet, item.highlights, _DIGEST_SNIPPET)
    parts = [title + (f"  _{meta}_" if meta else "")]
    if snippet:
        parts.append(snippet)
    return "\n".join(parts)


def _digest_blocks(msg: AlertMessage) -> list[dict[str, Any]]:
    blocks = [_header(_header_text(msg))]
    total = len(blocks[0]["text"]["text"])
    reserve = 100  # room for the closing "and N more" context block
    current: list[str] = []
    current_len = 0
    shown = 0
    for item in msg.items:
        chunk = truncate(_digest_item(item), MAX_SECTION)
        if current and current_len + 2 + len(chunk) > MAX_SECTION:
            blocks.append(_section("\n\n".join(current)))
            current, current_len = [], 0
        # Blocks once this item is in: those done, the open section, the closing context.
        if total + len(chunk) + 2 + reserve > MAX_TOTAL or len(blocks) + 2 > MAX_BLOCKS:
            break
        current_len += len(chunk) + (2 if current else 0)
        total += len(chunk) + 2
        current.append(chunk)
        shown += 1
    if current:
        blocks.append(_section("\n\n".join(current)))
    hidden = len(msg.items) - shown
    if hidden:
        blocks.append(_context(f"…and {hidden} more alert{'s' if hidden != 1 else ''}"))
    return blocks


def slack_payload(msg: AlertMessage, *, body: str | None = None) -> dict[str, Any]:
    """The incoming-webhook JSON for `msg`; `body` (rendered mrkdwn) replaces the main section."""
    if msg.kind == "digest" and body is None:
        blocks = _digest_blocks(msg)
    else:
        blocks = _alert_blocks(msg, body)
    payload: dict[str, Any] = {"text": _fallback(msg), "blocks": blocks[:MAX_BLOCKS]}
    if msg.thread_ts:
        payload["thread_ts"] = msg.thread_ts
    return payload


class SlackChannel(Channel):
    """Posts Block Kit messages to an incoming webhook; only `200 ok` counts as delivered."""

    kind = "slack"
    http = True

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        *,
        client: httpx.AsyncClient,
        limiter: TokenBucket | None = None,
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config
        self._client = client
        self.bucket = webhook_bucket(config.webhook_url.get_secret_value())

    def ready_in(self) -> float:
        return max(super().ready_in(), self.bucket.delay())

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        url = self.config.webhook_url.get_secret_value()
        # Resolved and checked once; the POST goes to that very address (no rebinding).
        target = await pin_destination(self.name, url, allow_private=self.config.allow_private)
        body = None
        if self.config.template is not None:
            body = templates.render("mrkdwn", msg, source=self.config.template)
        payload = slack_payload(msg, body=body)
        await self.bucket.acquire()
        try:
            response = await self._client.post(
                target.url,
                json=payload,
                headers={"User-Agent": USER_AGENT} | target.headers,
                timeout=self.config.timeout.total_seconds(),
                follow_redirects=False,
                extensions=target.extensions,
            )
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from exc
        if response.status_code == 429:
            from monitor.fetch import parse_retry_after  # aiohttp is not for `monitor check`

            self.bucket.defer(parse_retry_after(response.headers.get("retry-after")) or 1.0)
        if response.status_code != 200:
            raise status_error(self.name, response)
        answer = response.text.strip()
        if answer != "ok":
            raise DeliveryError(f"channel {self.name}: Slack answered {answer[:200]!r}, not ok")
        return SendReceipt(detail="HTTP 200 ok", thread_ts=msg.thread_ts)
