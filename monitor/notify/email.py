"""The email channel: multipart text + HTML messages over SMTP with aiosmtplib.

Feed data is hostile: every header value built from it is stripped of control characters (so a
title cannot smuggle in a `Bcc:`), the envelope recipients come from config only, and the HTML
part is sanitised with nh3 after rendering because a template may mark text `|safe`. The
Message-ID is derived from the idempotency key, so a retried delivery carries the same ID and
mail clients can fold duplicates.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

import aiosmtplib
import nh3

from monitor.errors import DeliveryError
from monitor.notify import templates
from monitor.notify.base import Channel, SendReceipt
from monitor.notify.email_config import EmailChannel as EmailConfig
from monitor.notify.message import AlertMessage, truncate
from monitor.notify.ratelimit import TokenBucket

_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_SUBJECT = 200


def header_value(text: str) -> str:
    """`text` safe for one header line: control characters become spaces, runs collapse."""
    return " ".join(_CONTROL.sub(" ", text).split())


def message_id(idempotency_key: str) -> str:
    """The Message-ID of a delivery: the same for every retry of it."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return f"<{digest}@news-monitor>"


def sanitize_html(html: str) -> str:
    """Rendered HTML with scripts, handlers and unknown tags removed."""
    allowed = set(nh3.ALLOWED_TAGS) | {"html", "head", "body", "mark", "h1", "h2", "h3"}
    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag in ("div", "p", "h1", "h2", "h3", "ul", "li", "span", "a", "mark", "code", "body"):
        attributes.setdefault(tag, set()).add("style")
    return nh3.clean(html, tags=allowed, attributes=attributes)


def build_email(msg: AlertMessage, config: EmailConfig) -> EmailMessage:
    """The MIME message for `msg`: headers sanitised, text part, sanitised HTML alternative."""
    subject = templates.render("text", msg, source=config.subject, default="subject.txt.j2")
    text = templates.render("text", msg, default="message.txt.j2")
    html = templates.render("html", msg, source=config.template, default="message.html.j2")
    email = EmailMessage()
    email["Subject"] = truncate(header_value(subject), MAX_SUBJECT) or "news-monitor alert"
    email["From"] = header_value(config.sender)
    email["To"] = ", ".join(header_value(addr) for addr in config.to)
    email["Message-ID"] = message_id(msg.idempotency_key)
    email["Date"] = format_datetime(msg.created_at) if msg.created_at.tzinfo else formatdate()
    # RFC 3834: tells autoresponders not to answer an automatic message.
    email["Auto-Submitted"] = "auto-generated"
    email["X-Monitor-Kind"] = msg.kind
    if msg.rule:
        email["X-Monitor-Rule"] = header_value(msg.rule)
    email.set_content(text.rstrip() + "\n")
    email.add_alternative(sanitize_html(html), subtype="html")
    return email


class EmailChannel(Channel):
    """Sends each message as one email to the configured recipients."""

    kind = "email"

    def __init__(
        self, name: str, config: EmailConfig, *, limiter: TokenBucket | None = None
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config

    @property
    def port(self) -> int:
        return self.config.port or _DEFAULT_PORTS[self.config.security]

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        config = self.config
        try:
            email = build_email(msg, config)
        except ValueError as exc:  # the email package refuses a malformed address or header
            raise DeliveryError(
                f"channel {self.name}: cannot build the email: {exc}", permanent=True
            ) from exc
        password = config.password.get_secret_value() if config.password else None
        try:
            refused, reply = await aiosmtplib.send(
                email,
                sender=config.sender,
                recipients=list(config.to),
                hostname=config.host,
                port=self.port,
                username=config.username,
                password=password if config.username else None,
                use_tls=config.security == "tls",
                start_tls=config.security == "starttls",
                validate_certs=config.validate_certs,
                timeout=config.timeout.total_seconds(),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise DeliveryError(
                f"channel {self.name}: every recipient was refused: {reasons}",
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"channel {self.name}: SMTP {exc.code} {exc.message}", permanent=exc.code >= 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"channel {self.name}: {type(exc).__name__}: {exc}") from exc
        detail = reply.strip()
        if refused:
            # Some recipients took it; resending would duplicate theirs, so this counts as sent.
            detail += "; refused: " + ", ".join(
                f"{addr} ({r.code} {r.message})" for addr, r in refused.items()
            )
        return SendReceipt(detail=detail)
