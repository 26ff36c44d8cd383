"""Terminal and log injection: control characters from feeds and pages never get through.

Crafted feeds (tests/data/security) put ESC sequences, C0/C1 controls, a forged log line and a
bidi override into every text field. They are removed where feed and page text enters
(`monitor.feeds`, `monitor.extract`, through `monitor.textsafety`), so the console channel and
the log of a real `monitor once` show none of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hostile_server import HostileServer, fixed, redirect
from receivers import Respond, WebhookReceiver

from monitor.config import FetchSettings
from monitor.config import WebhookChannel as WebhookConfig
from monitor.errors import DeliveryError
from monitor.extract import extract_article
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher, TooManyRedirects
from monitor.notify import build_channel
from monitor.notify.templates import sample_message
from monitor.textsafety import clean_line, clean_text, clean_url

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "security"
#: Nothing of this may reach a terminal or a log: C0 but tab/newline, DEL, C1, bidi controls.
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
FORBIDDEN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Red \x1b[31malert\x1b[0m", "Red alert"),
        ("title \x1b]0;owned\x07 bar", "title  bar"),
        ("link \x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "link click"),
        ("csi \x9b2J c1 \x85\x9d", "csi 2J c1 "),
        ("a\nFAKE ERROR forged\rline", "a FAKE ERROR forged line"),
        ("gpj.\u202eexe \u2066x\u2069", "gpj.exe x"),
        ("nul\x00 bell\x07 del\x7f", "nul bell del"),
        ("plain Ünïcödé — “quotes” العربية", "plain Ünïcödé — “quotes” العربية"),
    ],
)
def test_a_line_loses_every_control_character(raw: str, clean: str) -> None:
    assert clean_line(raw) == clean


def test_page_text_keeps_its_lines_and_loses_the_rest() -> None:
    assert clean_text("one\r\ntwo\rthree\x1b[2J\tfour\x00\x9b") == "one\ntwo\nthree\tfour"
    assert clean_text("نص \u2067RTL\u2069") == "نص \u2067RTL\u2069"  # bidi kept in page text


def test_a_link_keeps_its_target_with_controls_percent_encoded() -> None:
    assert clean_url("http://news.example/a b\x1b[1m") == "http://news.example/a%20b%1B[1m"
    assert clean_url("http://news.example/ok?q=1") == "http://news.example/ok?q=1"


@pytest.mark.parametrize("name", ["control-chars.rss", "control-chars.json"])
def test_a_crafted_feed_parses_to_clean_fields(name: str) -> None:
    parsed = parse_feed((DATA / name).read_bytes(), url="http://127.0.0.1/feed")
    assert not FORBIDDEN_LINE.search(parsed.title)
    assert parsed.entries
    for e in parsed.entries:
        for value in (e.title, e.summary, e.link or "", e.guid or "", *e.authors, *e.tags):
            assert not FORBIDDEN_LINE.search(value), repr(value)
        assert e.title.startswith("Troops attacked")


def test_a_crafted_page_extracts_to_clean_text_title_and_author() -> None:
    # Raw and as character references: lxml drops some controls, not C1 nor &#x9b;.
    para = "Troops were attacked \x1b[2Jnear the base\x9b31m, officials&#x9b;2J said. " * 8
    page = (
        "<html><head><title>Base \x1b]0;owned\x07attack \u202eexe.gpj</title>"
        '<link rel="canonical" href="http://127.0.0.1/c\x9b2J\u202eexe.gpj">'
        '<meta name="author" content="Eve \x1b[8mhidden"></head><body><article>'
        f"<h1>Base attack</h1><p>{para}</p><p>Second\x07 paragraph {para}</p>"
        "</article></body></html>"
    )
    out = extract_article(page.encode(), "http://127.0.0.1/a")
    assert out is not None
    assert "Troops were attacked" in out.text
    assert not FORBIDDEN.search(out.text)
    for value in (out.title or "", out.author or "", out.description or ""):
        assert not FORBIDDEN_LINE.search(value), repr(value)
    # trafilatura cleans the text it extracts; the canonical link is read from the tree.
    assert out.canonical_url == "http://127.0.0.1/c%C2%9B2J%E2%80%AEexe.gpj"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["control-chars.rss", "control-chars.json"])
def test_the_console_channel_and_the_log_show_no_control_character(
    tmp_path: Path, name: str
) -> None:
    with HostileServer() as srv:
        srv.routes["/feed"] = fixed(200, (DATA / name).read_bytes(), Content_Type="text/xml")
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
log_level: DEBUG
defaults: {{extract: false, channels: [console]}}
feeds:
  - {{url: "{srv.url("/feed")}", name: Hostile, allow_private: true}}
rules:
  - {{name: troops, query: "troops"}}
channels:
  console: {{type: console}}
""")
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            timeout=120,
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Troops attacked" in out  # the alert was written to the console
    assert "alert troops" in err  # and logged with its title
    assert not FORBIDDEN.search(out), repr(FORBIDDEN.findall(out))
    assert not FORBIDDEN.search(err), repr(FORBIDDEN.findall(err))
    assert not any(line.startswith("FAKE") for line in (out + err).splitlines())


async def test_a_redirect_location_with_controls_is_shown_percent_encoded() -> None:
    # The Location header carries U+009B (a one-character CSI) and U+202E as UTF-8 bytes.
    with HostileServer() as srv:
        srv.routes["/r"] = redirect(302, "/r\u00c2\u009b\u00e2\u0080\u00ae")
        srv.routes["/r%C2%9B%E2%80%AE"] = redirect(302, "/r\u00c2\u009b\u00e2\u0080\u00ae")
        async with Fetcher(FetchSettings()) as fetcher:
            with pytest.raises(TooManyRedirects) as info:
                await fetcher.fetch(srv.url("/r"), allow_private=True)
    message = str(info.value)
    assert "/r%C2%9B%E2%80%AE" in message
    assert not FORBIDDEN_LINE.search(message), repr(message)


async def test_a_receivers_answer_in_an_error_has_no_control_character() -> None:
    with WebhookReceiver() as hook:
        hook.script(Respond(500, "oops \x1b[2J\x1b]0;owned\x07 \u202eerror"))
        config = WebhookConfig.model_validate(
            {"type": "webhook", "url": hook.url, "allow_private": True, "timeout": 2}
        )
        async with httpx.AsyncClient() as client:
            with pytest.raises(DeliveryError) as info:
                await build_channel("hook", config, client=client).send(sample_message())
    assert "oops" in str(info.value)
    assert not FORBIDDEN_LINE.search(str(info.value)), repr(str(info.value))
