"""The email channel against aiosmtpd on 127.0.0.1: STARTTLS, AUTH, MIME, header safety."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from receivers import ReceivedMail, SmtpReceiver, free_port

from monitor.config import EmailChannel as EmailConfig
from monitor.errors import DeliveryError
from monitor.notify import AlertMessage, build_channel
from monitor.notify.email import header_value, message_id
from monitor.notify.templates import sample_digest, sample_message

USERS = {"monitor": "correct horse"}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver(tls="starttls", users=USERS, reject_recipients={"gone@example.org"}) as s:
        yield s


def config(port: int, **extra: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": "monitor",
        "password": USERS["monitor"],
        "from": "monitor@example.org",
        "to": ["desk@example.org", "editor@example.org"],
        "validate_certs": False,
        "timeout": 5,
        **extra,
    }
    return EmailConfig.model_validate(values)


async def deliver(smtp: SmtpReceiver, msg: AlertMessage, **extra: Any) -> ReceivedMail:
    before = len(smtp.received)
    async with httpx.AsyncClient() as client:
        channel = build_channel("mail", config(smtp.port, **extra), client=client)
        await channel.send(msg)
    return smtp.received[before]


async def test_arrives_over_starttls_with_auth_as_text_and_html(smtp: SmtpReceiver) -> None:
    mail = await deliver(smtp, sample_message())
    assert mail.auth_user == "monitor"
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Drone attack on US base in Syria" in text.get_content()
    assert "<mark>US forces</mark>" in html.get_content()
    assert message["Subject"] == "[HIGH] Drone attack on US base in Syria"


async def test_message_id_is_derived_from_the_idempotency_key(smtp: SmtpReceiver) -> None:
    msg = replace(sample_message(), idempotency_key="alert-42:mail")
    first = await deliver(smtp, msg)
    again = await deliver(smtp, msg)
    assert first.message["Message-ID"] == message_id("alert-42:mail")
    assert again.message["Message-ID"] == first.message["Message-ID"]
    other = await deliver(smtp, replace(msg, idempotency_key="alert-43:mail"))
    assert other.message["Message-ID"] != first.message["Message-ID"]


async def test_a_title_cannot_inject_headers_or_recipients(smtp: SmtpReceiver) -> None:
    msg = replace(sample_message(), title="Breaking\r\nBcc: evil@example.org\nX-Evil: 1")
    mail = await deliver(smtp, msg)
    assert sorted(mail.recipients) == ["desk@example.org", "editor@example.org"]
    message = mail.message
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    assert message["Subject"] == "[HIGH] Breaking Bcc: evil@example.org X-Evil: 1"
    header_block = mail.data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header_block


async def test_script_in_the_snippet_is_escaped(smtp: SmtpReceiver) -> None:
    msg = replace(sample_message(), snippet="<script>alert(1)</script> drone attack", highlights=[])
    html = (await deliver(smtp, msg)).message.get_body(("html",))
    assert html is not None
    assert "<script" not in html.get_content()


async def test_html_from_a_template_is_sanitised(smtp: SmtpReceiver) -> None:
    msg = replace(sample_message(), snippet='<script>alert(1)</script><img src=x onerror="x()">')
    template = "<p>{{ snippet | safe }}</p><a href='javascript:alert(1)'>x</a>"
    html = (await deliver(smtp, msg, template=template)).message.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "<script" not in content
    assert "onerror" not in content
    assert "javascript:" not in content
    assert "<img" in content


async def test_a_digest_lists_every_item(smtp: SmtpReceiver) -> None:
    items = [replace(sample_message(), title=f"Story number {i}") for i in range(12)]
    mail = await deliver(smtp, replace(sample_digest(), items=items))
    text = mail.message.get_body(("plain",))
    html = mail.message.get_body(("html",))
    assert text is not None and html is not None
    for i in range(12):
        assert f"Story number {i}" in text.get_content()
        assert f"Story number {i}" in html.get_content()
    assert mail.message["Subject"] == "[news-monitor] Digest: 12 alerts"


async def test_a_subject_template_is_used(smtp: SmtpReceiver) -> None:
    mail = await deliver(smtp, sample_message(), subject="{{ rule }} | {{ title }}")
    assert mail.message["Subject"] == "attacks-on-us-troops | Drone attack on US base in Syria"


async def test_a_wrong_password_is_a_permanent_failure(smtp: SmtpReceiver) -> None:
    with pytest.raises(DeliveryError) as info:
        await deliver(smtp, sample_message(), password="wrong")
    assert info.value.permanent
    assert "535" in str(info.value)


async def test_every_recipient_refused_is_a_permanent_failure(smtp: SmtpReceiver) -> None:
    before = len(smtp.received)
    with pytest.raises(DeliveryError) as info:
        await deliver(smtp, sample_message(), to=["gone@example.org"])
    assert info.value.permanent
    assert "550" in str(info.value)
    assert len(smtp.received) == before


async def test_a_partly_refused_message_counts_as_sent_and_says_who_was_refused(
    smtp: SmtpReceiver,
) -> None:
    async with httpx.AsyncClient() as client:
        to = ["desk@example.org", "gone@example.org"]
        channel = build_channel("mail", config(smtp.port, to=to), client=client)
        receipt = await channel.send(sample_message())
    assert smtp.received[-1].recipients == ["desk@example.org"]
    assert "refused: gone@example.org (550" in receipt.detail


async def test_an_unreachable_server_is_a_retryable_failure() -> None:
    async with httpx.AsyncClient() as client:
        channel = build_channel("mail", config(free_port()), client=client)
        with pytest.raises(DeliveryError) as info:
            await channel.send(sample_message())
    assert not info.value.permanent


async def test_a_self_signed_certificate_is_refused_when_validating(smtp: SmtpReceiver) -> None:
    with pytest.raises(DeliveryError):
        await deliver(smtp, sample_message(), validate_certs=True)


# aiosmtpd cannot see TLS it did not negotiate itself, so it warns about AUTH without TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_delivers() -> None:
    with SmtpReceiver(tls="implicit", users=USERS) as server:
        mail = await deliver(server, sample_message(), security="tls")
    assert mail.auth_user == "monitor"


def test_header_value_strips_every_control_character() -> None:
    assert header_value("a\r\nb\tc\x00d\x85e\u2028f") == "a b c d e f"
