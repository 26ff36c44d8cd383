"""The first-contact commands as a user runs them: init, notify test, feeds, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from cli import ROOT, monitor
from feedserver import Item, NewsSite
from receivers import Respond, WebhookReceiver


def test_init_writes_a_starter_config_that_check_accepts(tmp_path: Path) -> None:
    res = monitor("init", str(tmp_path / "news"))
    assert res.returncode == 0, res.stderr
    cfg = tmp_path / "news" / "monitor.yaml"
    text = cfg.read_text(encoding="utf-8")
    assert "https://feeds.bbci.co.uk/news/world/rss.xml" in text and "type: console" in text
    check = monitor("check", cwd=tmp_path / "news")  # monitor.yaml is the default file name
    assert check.returncode == 0, check.stderr
    assert "ok (4 feeds, 1 rules, 2 examples passed, 1 channels" in check.stdout
    again = monitor("init", str(tmp_path / "news"))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert cfg.read_text(encoding="utf-8") == text


def _hook_config(tmp: Path, url: str) -> Path:
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp}/m.db\nfeeds: []\n"
        f'channels:\n  hook: {{type: webhook, url: "{url}", allow_private: true}}\n'
        f'  private: {{type: webhook, url: "{url}"}}\n',
        encoding="utf-8",
    )
    return cfg


def test_notify_test_sends_a_sample_alert_and_prints_the_answer(tmp_path: Path) -> None:
    with WebhookReceiver(Respond(202, b'{"queued": true, "id": "abc123"}')) as hook:
        cfg = _hook_config(tmp_path, hook.url)
        res = monitor("notify", "test", "hook", "-c", str(cfg))
        [request] = hook.wait_for(1)
    assert res.returncode == 0, res.stderr
    assert 'receiver answered: HTTP 202 Accepted: {"queued": true, "id": "abc123"}' in res.stdout
    assert "channel hook: test alert delivered (HTTP 202)" in res.stdout
    assert request.json()["title"] == "Test alert from monitor: delivery works"


def test_notify_test_reports_a_refusal_and_an_unknown_channel(tmp_path: Path) -> None:
    with WebhookReceiver(Respond(403, b"bad token")) as hook:
        cfg = _hook_config(tmp_path, hook.url)
        refused = monitor("notify", "test", "hook", "-c", str(cfg))
        private = monitor("notify", "test", "private", "-c", str(cfg))
        assert len(hook.requests) == 1  # the private-address check stopped the second
    assert refused.returncode == 1
    assert "receiver answered: HTTP 403 Forbidden: bad token" in refused.stderr
    assert "channel hook: not delivered: channel hook: HTTP 403" in refused.stderr
    assert private.returncode == 1 and "Traceback" not in private.stderr
    unknown = monitor("notify", "test", "nope", "-c", str(cfg))
    assert unknown.returncode == 1
    assert "no channel 'nope'" in unknown.stderr and "hook, private" in unknown.stderr


SITE_PAGE = b"""<!DOCTYPE html><html><head><title>Loopback News</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="Top stories" href="/feed.xml">
</head><body><h1>Loopback News</h1></body></html>"""

CONFIG_WITH_COMMENTS = """\
# My feeds. This comment must survive `monitor feeds add`.
database: sqlite:///{tmp}/m.db
feeds:
  # world news
  - {{url: "https://feeds.bbci.co.uk/news/world/rss.xml", name: BBC World}}  # keep me
channels: {{console: {{type: console}}}}
"""


def _site() -> NewsSite:
    site = NewsSite().start()
    site.feed("/feed.xml", [Item("Story one", "/a/1", "1")], title="Loopback Top Stories")
    site.page("/", SITE_PAGE)
    return site


def test_feeds_add_finds_the_feed_of_a_page_and_keeps_the_file_s_comments(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(CONFIG_WITH_COMMENTS.format(tmp=tmp_path), encoding="utf-8")
    site = _site()
    try:
        res = monitor("feeds", "add", f"{site.url}/", "--allow-private", "-c", str(cfg))
        again = monitor("feeds", "add", f"{site.url}/feed.xml", "--allow-private", "-c", str(cfg))
    finally:
        site.stop()
    assert res.returncode == 0, res.stderr
    assert f"{site.url}/feed.xml (linked from the page, 1 entries)" in res.stdout
    text = cfg.read_text(encoding="utf-8")
    assert "# My feeds. This comment must survive" in text and "# keep me" in text
    assert "# world news" in text
    assert (
        f"- {{url: {site.url}/feed.xml, name: Loopback Top Stories, allow_private: true}}" in text
    )
    assert again.returncode == 1 and "already configured" in again.stderr
    listed = monitor("feeds", "list", "--format", "json", "-c", str(cfg))
    names = [f["name"] for f in json.loads(listed.stdout)]
    assert names == ["BBC World", "Loopback Top Stories"]
    assert monitor("check", "-c", str(cfg)).returncode == 0


def test_feeds_add_tries_the_common_paths_and_says_when_there_is_no_feed(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(CONFIG_WITH_COMMENTS.format(tmp=tmp_path), encoding="utf-8")
    feeds_file = tmp_path / "more-feeds.yaml"
    site = NewsSite().start()
    try:
        site.page("/", b"<html><head><title>No links</title></head><body>hi</body></html>")
        site.page("/blog/", b"<html><body>a blog without a feed</body></html>")
        site.feed("/rss.xml", [Item("Story", "/a/1", "1")], title="Found By Path")
        res = monitor(
            "feeds", "add", f"{site.url}/", "--allow-private", "-f", str(feeds_file), "-c", str(cfg)
        )
        site.pages.pop("/rss.xml")
        none = monitor("feeds", "add", f"{site.url}/blog/", "--allow-private", "-c", str(cfg))
    finally:
        site.stop()
    assert res.returncode == 0, res.stderr
    assert "found at /rss.xml" in res.stdout
    assert f"url: {site.url}/rss.xml" in feeds_file.read_text(encoding="utf-8")
    assert none.returncode == 1 and "Traceback" not in none.stderr
    assert "no feed found" in none.stderr


def test_feeds_export_writes_opml_that_imports_with_feed_options(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(CONFIG_WITH_COMMENTS.format(tmp=tmp_path), encoding="utf-8")
    res = monitor("feeds", "export", "-o", str(tmp_path / "feeds.opml"), "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    root = ET.parse(tmp_path / "feeds.opml").getroot()
    [outline] = root.iter("outline")
    assert outline.get("xmlUrl") == "https://feeds.bbci.co.uk/news/world/rss.xml"
    assert outline.get("title") == "BBC World"
    imported = tmp_path / "imported.yaml"
    imported.write_text(
        f"database: sqlite:///{tmp_path}/m.db\n"
        "feeds:\n  - {opml: feeds.opml, allow_private: true, interval: 5m, tags: [world],"
        " extract: false}\n",
        encoding="utf-8",
    )
    listed = monitor("feeds", "list", "--format", "json", "-c", str(imported))
    assert listed.returncode == 0, listed.stderr
    [feed] = json.loads(listed.stdout)
    assert feed["url"] == "https://feeds.bbci.co.uk/news/world/rss.xml"
    assert feed["name"] == "BBC World" and feed["allow_private"] is True
    assert feed["interval"] == 300 and feed["tags"] == ["world"] and feed["extract"] is False


def test_shell_completion_scripts_and_answers(tmp_path: Path) -> None:
    for shell, marker in (("bash", "complete "), ("zsh", "#compdef monitor"), ("fish", "complete")):
        res = monitor("completion", shell)
        assert res.returncode == 0 and marker in res.stdout, shell
    answers = tmp_path / "answers"
    line = "monitor deliveries re"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answers),
    }
    subprocess.run([sys.executable, "-m", "monitor"], env=env, timeout=60, check=True)
    assert answers.read_text().split() == ["retry"]


MATCH_CONFIG = """\
database: sqlite:///{tmp}/m.db
rules:
  - name: troops
    query: (US troops) NEAR/4 attack*
"""


def test_match_takes_a_feed_url_and_says_when_nothing_matched(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(MATCH_CONFIG.format(tmp=tmp_path), encoding="utf-8")
    site = NewsSite().start()
    try:
        site.feed(
            "/feed.xml",
            [
                Item("Drone attack on US troops in Syria", "/a/1", "g1"),
                Item("Markets close higher", "/a/2", "g2"),
            ],
        )
        hit = monitor("match", "--format", "json", f"{site.url}/feed.xml", cwd=tmp_path)
        site.feed("/quiet.xml", [Item("Markets close higher", "/a/2", "g2")])
        miss = monitor("match", f"{site.url}/quiet.xml", cwd=tmp_path)
    finally:
        site.stop()
    assert hit.returncode == 0, hit.stderr
    [row] = [json.loads(line) for line in hit.stdout.splitlines()]
    assert (row["id"], row["rule"], row["matched"]) == ("g1", "troops", True)
    assert miss.returncode == 0 and miss.stdout == ""
    assert "no match: 1 article(s), 1 rule(s) (--explain says why)" in miss.stderr


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_json_output_times_are_iso_8601_utc(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    site = NewsSite().start()
    try:
        site.feed("/feed.xml", [Item("Drone attack on US troops in Syria", "/a/1", "g1")])
        cfg.write_text(
            MATCH_CONFIG.format(tmp=tmp_path)
            + "defaults: {extract: false}\n"
            + f'feeds:\n  - {{url: "{site.url}/feed.xml", allow_private: true}}\n'
            + "channels: {console: {type: console}}\n",
            encoding="utf-8",
        )
        assert monitor("once", cwd=tmp_path).returncode == 0
    finally:
        site.stop()
    status = json.loads(monitor("status", "--format", "json", cwd=tmp_path).stdout)
    [feed] = status["feeds"]
    assert ISO.match(feed["last_success_at"]) and ISO.match(feed["next_poll_at"])
    [alert] = status["recent_alerts"]
    assert ISO.match(alert["created_at"]) and ISO.match(alert["story"][0]["fetched_at"])
    [delivery] = json.loads(monitor("deliveries", "list", "--format", "json", cwd=tmp_path).stdout)
    assert delivery["status"] == "sent"
    assert ISO.match(delivery["created_at"]) and ISO.match(delivery["sent_at"])
