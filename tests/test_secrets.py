"""Secrets from `${VAR}` never appear in logs, `status`, the database or error messages."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import Item, NewsSite, news_page, seed_article
from receivers import WebhookReceiver

from monitor import secrets
from monitor.cli import main
from monitor.config import load_config
from monitor.errors import ConfigError, DeliveryError, FetchError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-7f3a9c2e51b84d06"
HOOK_AUTH = "hdr-Secret-5be1\nInjected: 1"  # a CR/LF in a header value: httpx refuses it


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    secrets.registry.clear()
    yield
    secrets.registry.clear()


def _monitor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )


def _leaks(text: str) -> list[str]:
    forms = [TOKEN, "hdr-Secret-5be1"]
    return [f for f in forms if f in text]


def test_a_token_in_a_feed_url_reaches_the_server_and_nowhere_else(tmp_path: Path) -> None:
    title, body = seed_article()
    with NewsSite() as site, WebhookReceiver() as hook:
        site.page("/a/seed.html", news_page(title, body))
        site.feed(f"/feed.xml?token={TOKEN}", [Item(title, "/a/seed.html", "seed")])
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
log_level: DEBUG
defaults: {{channels: [hook]}}
feeds:
  - {{url: "{site.url}/feed.xml?token=${{FEED_TOKEN}}", name: Private, allow_private: true}}
  - {{url: "{site.url}/gone.xml?token=${{FEED_TOKEN}}", name: Gone, allow_private: true}}
include_outside: true  # the shipped rules, outside the test folder
include: ["{ROOT}/config/rules/*.yaml"]
channels:
  hook:
    type: webhook
    url: "{hook.url}"
    allow_private: true
    headers: {{Authorization: "Bearer ${{HOOK_AUTH}}"}}
""")
        env = dict(os.environ, PYTHONPATH=str(ROOT), FEED_TOKEN=TOKEN, HOOK_AUTH=HOOK_AUTH)
        once = _monitor("once", "--config", str(cfg), env=env)
        assert once.returncode == 3, once.stderr  # one feed (gone.xml) failed: exit 3
        status_text = _monitor("status", "--config", str(cfg), env=env)
        status_json = _monitor("status", "--config", str(cfg), "--format", "json", env=env)
        # The fetch used the real token.
        assert site.hits[f"/feed.xml?token={TOKEN}"] == 1
        assert site.hits[f"/gone.xml?token={TOKEN}"] == 1
    log = once.stdout + once.stderr
    assert "gone.xml?token=${FEED_TOKEN}" in log  # the failure is logged, in template form
    assert _leaks(log) == []
    assert status_text.returncode == 0 and status_json.returncode == 0
    assert "gone.xml?token=${FEED_TOKEN}" in status_text.stdout
    assert _leaks(status_text.stdout + status_text.stderr) == []
    shown = json.loads(status_json.stdout)
    assert {f["url"] for f in shown["feeds"]} == {
        f"{site.url}/feed.xml?token=${{FEED_TOKEN}}",
        f"{site.url}/gone.xml?token=${{FEED_TOKEN}}",
    }
    assert _leaks(status_json.stdout) == []
    # Every text value of every table, read from the file itself.
    db = sqlite3.connect(tmp_path / "monitor.db")
    tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
    texts: list[str] = []
    for table in tables:
        for row in db.execute(f'select * from "{table}"'):
            texts += [v for v in row if isinstance(v, str)]
    db.close()
    assert any("404" in t for t in texts)  # the failed feed's error is stored ...
    assert any("Illegal header value" in t for t in texts)  # ... and the delivery's
    assert _leaks("\n".join(texts)) == []
    for f in tmp_path.glob("monitor.db*"):
        raw = f.read_bytes()
        assert TOKEN.encode() not in raw and b"hdr-Secret-5be1" not in raw


def test_check_does_not_echo_a_substituted_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEED_URL", f"ftp://reader:{TOKEN}@feeds.example.org/x")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text('feeds:\n  - url: "${FEED_URL}"\n')
    assert main(["check", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert f"{cfg}:2:" in err and "${FEED_URL}" in err
    assert _leaks(err) == []


def test_redaction_covers_escaped_spellings_and_expand_reverses_it() -> None:
    secrets.register("HOOK_AUTH", HOOK_AUTH)
    secrets.register("FEED_TOKEN", TOKEN)
    secrets.register("SHORT", "abc")  # too short to mask anything
    header = repr(("Bearer " + HOOK_AUTH).encode())
    assert secrets.redact(f"Illegal header value {header}") == (
        "Illegal header value b'Bearer ${HOOK_AUTH}'"
    )
    assert secrets.redact(json.dumps({"h": HOOK_AUTH})) == '{"h": "${HOOK_AUTH}"}'
    url = f"https://x.example/feed?token={TOKEN}&abc=1"
    assert secrets.redact(url) == "https://x.example/feed?token=${FEED_TOKEN}&abc=1"
    assert secrets.expand(secrets.redact(url)) == url
    assert secrets.expand("${UNKNOWN}/x") == "${UNKNOWN}/x"
    assert str(FetchError(url, "HTTP 404")) == secrets.redact(url) + ": HTTP 404"
    assert TOKEN not in str(DeliveryError(f"channel c: bad {TOKEN}"))


def test_the_log_filter_redacts_records_of_child_loggers_and_tracebacks() -> None:
    secrets.register("FEED_TOKEN", TOKEN)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(secrets.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        log = logging.getLogger("monitor.test.child")
        log.warning("fetching %s", f"http://h/?token={TOKEN}")
        try:
            raise ValueError(f"bad url http://h/?token={TOKEN}")
        except ValueError:
            log.exception("failed")
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert "?token=${FEED_TOKEN}" in text and "ValueError" in text
    assert TOKEN not in text


def test_unexpected_errors_are_stored_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug's exception text (not a MonitorError) is redacted before it is stored."""
    from monitor.daemon import Runtime, load_checked

    monkeypatch.setenv("FEED_TOKEN", TOKEN)
    title, body = seed_article()
    with NewsSite() as site, WebhookReceiver() as hook:
        site.page("/a/seed.html", news_page(title, body))
        site.feed(f"/feed.xml?token={TOKEN}", [Item(title, "/a/seed.html", "seed")])
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
defaults: {{channels: [hook]}}
feeds:
  - {{url: "{site.url}/feed.xml?token=${{FEED_TOKEN}}", allow_private: true}}
  - {{url: "{site.url}/other.xml?token=${{FEED_TOKEN}}", allow_private: true}}
rules:
  - {{name: troops, query: troops}}
channels:
  hook: {{type: webhook, url: "{hook.url}?key=${{FEED_TOKEN}}", allow_private: true}}
""")

        async def cycle() -> None:
            rt = Runtime(load_checked(cfg), config_path=str(cfg))
            real_fetch = rt.fetcher.fetch

            async def fetch(url: str, **kw: object) -> object:
                if "other.xml" in url:
                    raise RuntimeError(f"bug while fetching {url}")
                return await real_fetch(url, **kw)  # type: ignore[arg-type]

            async def send(msg: object) -> object:
                raise RuntimeError(f"bug in the channel, url={hook.url}?key={TOKEN}")

            monkeypatch.setattr(rt.fetcher, "fetch", fetch)
            monkeypatch.setattr(rt.channels["hook"], "send", send)
            try:
                await rt.run_cycle()
            finally:
                await rt.aclose()

        asyncio.run(cycle())
    db = sqlite3.connect(tmp_path / "monitor.db")
    feed_errors = [r[0] for r in db.execute("select last_error from feeds") if r[0]]
    delivery_errors = [r[0] for r in db.execute("select last_error from deliveries") if r[0]]
    db.close()
    assert feed_errors == [
        f"RuntimeError: bug while fetching {site.url}/other.xml?token=${{FEED_TOKEN}}"
    ]
    assert delivery_errors and all("internal error: RuntimeError" in e for e in delivery_errors)
    assert _leaks("\n".join(feed_errors + delivery_errors)) == []


def test_the_expanded_feed_url_is_what_must_be_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_HOST", "file:///etc")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text('feeds:\n  - url: "${FEED_HOST}/passwd"\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "'${FEED_HOST}/passwd' is not an http(s) URL" in str(info.value)
    monkeypatch.setenv("FEED_HOST", "https://news.example.org")
    [feed] = load_config(cfg).feed_list
    assert feed.url == "${FEED_HOST}/passwd"
    assert secrets.expand(feed.url) == "https://news.example.org/passwd"


def test_a_rotated_secret_is_fetched_with_its_new_value_and_both_stay_masked() -> None:
    secrets.register("FEED_TOKEN", "old-token-value")
    secrets.register("FEED_TOKEN", "new-token-value")  # a SIGHUP reload after rotation
    secrets.register("OTHER", "new-token-value")  # the same value under a second name
    assert secrets.expand("https://h/?t=${FEED_TOKEN}") == "https://h/?t=new-token-value"
    assert secrets.expand("${OTHER}") == "new-token-value"
    assert secrets.redact("old-token-value new-token-value") == "${FEED_TOKEN} ${FEED_TOKEN}"


def test_log_format_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_LOG_FORMAT", "json")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("log_format: text\n")
    assert load_config(cfg).log_format == "json"
    monkeypatch.setenv("MONITOR_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value).startswith("environment variable MONITOR_LOG_FORMAT: log_format: ")
