"""Podcast and media enclosures: read from the feed, carried in the alert, shown by channels.

A real podcast feed (BBC Radio 4's In Our Time, tests/data/feeds/real) is served on 127.0.0.1
and polled by a real `Runtime`; its episode's MP3 reaches the webhook payload (`enclosures`),
the console text and the email's text part.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpora import DATA
from feedserver import NewsSite
from receivers import SmtpReceiver, WebhookReceiver
from sqlalchemy import select
from test_delivery import deliver_until, hook_channel, poll, runtime, write_config

from monitor.feeds import parse_feed
from monitor.store import schema as s
from monitor.store.engine import read_tx

PODCAST = DATA / "feeds" / "real" / "bbc-radio4-in-our-time.rss"
MP3 = (
    "http://open.live.bbc.co.uk/mediaselector/6/redir/version/2.0/mediaset/"
    "audio-nondrm-download/proto/http/vpid/p097wt5b.mp3"
)


def test_a_podcast_items_enclosure_is_read_with_its_type_and_length() -> None:
    [entry] = parse_feed(PODCAST.read_bytes(), url="http://podcasts.example/feed.rss").entries
    [enc] = entry.enclosures
    assert (enc.url, enc.type, enc.length) == (MP3, "audio/mpeg", 50_496_000)


def test_hostile_enclosures_are_dropped_or_cleaned() -> None:
    feed = b"""<?xml version="1.0" encoding="utf-8"?>
    <rss version="2.0"><channel><title>t</title><item>
      <title>Episode</title><guid>e1</guid>
      <enclosure url="javascript:alert(1)" type="audio/mpeg" length="1"/>
      <enclosure url="file:///etc/passwd" type="text/plain" length="1"/>
      <enclosure url="/media/ep1.mp3" type="audio/\xc2\x9bmpeg\xe2\x80\xae" length="-5"/>
      <enclosure url="/media/ep1.mp3" type="audio/mpeg" length="7"/>
      <enclosure url="https://cdn.example/ep 1.ogg" type="audio/ogg" length="huge"/>
    </item></channel></rss>"""
    [entry] = parse_feed(feed, url="https://podcasts.example/feed.rss").entries
    assert [(e.url, e.type, e.length) for e in entry.enclosures] == [
        ("https://podcasts.example/media/ep1.mp3", "audio/mpeg", None),  # first one kept
        ("https://cdn.example/ep%201.ogg", "audio/ogg", None),
    ]


async def test_the_enclosure_reaches_the_webhook_the_console_and_the_email(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with NewsSite() as site, WebhookReceiver() as hook, SmtpReceiver(tls="none") as smtp:
        site.page("/feed.xml", PODCAST.read_bytes(), "application/rss+xml")
        channels = (
            hook_channel("hook", hook)
            + "  screen: {type: console}\n"
            + f"  mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none,"
            + " to: [desk@example.org]}\n"
        )
        cfg = write_config(
            tmp_path,
            site,
            channels=channels,
            rules="[{name: philosophy, query: aurelius}]",
            default_channels="[hook, screen, mail]",
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 1
            await deliver_until(rt, lambda: bool(hook.received) and bool(smtp.received))
            with read_tx(rt.store.engine) as conn:
                [stored] = conn.execute(select(s.alerts.c.message)).scalars().all()
    expected = {"url": MP3, "type": "audio/mpeg", "length": 50_496_000}
    assert json.loads(stored)["enclosures"] == [expected]  # stored once, with the alert
    [request] = hook.received
    assert request.json()["enclosures"] == [expected]
    assert f"media:     {MP3} (audio/mpeg, 50.5 MB)" in capsys.readouterr().out
    mail = smtp.received[0].message
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None and f"media:     {MP3} (audio/mpeg, 50.5 MB)" in text.get_content()
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and f'href="{MP3}"' in html.get_content()
