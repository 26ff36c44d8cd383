"""`log_format: json`: the daemon's log lines are JSON objects with ts, level, logger, message
and the feed/rule/delivery they are about; secrets are redacted in either format."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedserver import Item, NewsSite, news_page, seed_article
from receivers import WebhookReceiver

from monitor import secrets
from monitor.logs import JsonFormatter, setup_logging

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-41d9e0aa77c3"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    secrets.registry.clear()
    yield
    secrets.registry.clear()


def test_monitor_once_writes_one_json_object_per_line(tmp_path: Path) -> None:
    title, body = seed_article()
    with NewsSite() as site, WebhookReceiver() as hook:
        site.page("/a/seed.html", news_page(title, body))
        site.feed("/feed.xml", [Item(title, "/a/seed.html", "seed")])
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
log_level: DEBUG
log_format: json
defaults: {{channels: [hook]}}
feeds:
  - {{url: "{site.url}/feed.xml", name: News, allow_private: true}}
  - {{url: "{site.url}/gone.xml?token=${{TOKEN}}", name: Gone, allow_private: true}}
rules:
  - {{name: troops, query: '"US troops"'}}
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
""")
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT), TOKEN=TOKEN),
            cwd=ROOT,
            timeout=180,
        )
        assert proc.returncode == 3, proc.stderr  # one feed (gone.xml) failed: exit 3
        assert len(hook.requests) == 1
    lines = proc.stderr.splitlines()
    # The command's own summary (which feeds failed, then the counts) follows the log lines.
    summary = [line for line in lines if not line.startswith("{")]
    assert summary[-1].startswith("polled 2 feeds") and summary[0].startswith("failed "), lines
    assert lines[-len(summary) :] == summary
    records = [json.loads(line) for line in lines[: -len(summary)]]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records), lines
    for r in records:
        ts = datetime.fromisoformat(r["ts"])
        assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0
    gone = f"{site.url}/gone.xml?token=${{TOKEN}}"
    [failed] = [r for r in records if r.get("feed") == gone]
    assert failed["level"] == "WARNING" and failed["logger"] == "monitor.pipeline"
    assert "404" in failed["message"]
    # The message names the feed by its name and its URL once (not once per layer of error).
    assert failed["message"].count(gone) == 1 and summary[0].count(gone) == 1, failed
    [alert] = [r for r in records if r.get("rule") == "troops"]
    assert alert["level"] == "INFO" and title in alert["message"]
    [sent] = [r for r in records if "delivery" in r]
    assert isinstance(sent["delivery"], int) and sent["logger"] == "monitor.delivery"
    assert TOKEN not in proc.stderr


def test_the_json_formatter_keeps_tracebacks_on_one_line_and_redacts() -> None:
    secrets.register("TOKEN", TOKEN)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(secrets.RedactingFilter())
    log = logging.getLogger("monitor.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise RuntimeError(f"boom {TOKEN}")
        except RuntimeError:
            log.exception("poll of %s failed", f"https://x/?t={TOKEN}", extra={"feed": TOKEN})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "poll of https://x/?t=${TOKEN} failed"
    assert record["feed"] == "${TOKEN}" and record["level"] == "ERROR"
    assert "RuntimeError: boom ${TOKEN}" in record["exc"]
    assert TOKEN not in line


def test_setup_logging_text_format_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level = root.level
    try:
        setup_logging("WARNING", "text")
        logging.getLogger("monitor.test.text").info("quiet")
        logging.getLogger("monitor.test.text").warning("loud %d", 1)
        setup_logging("INFO", "json")  # a second call replaces the handler
        logging.getLogger("monitor.test.text").info("now json")
    finally:
        for h in [h for h in root.handlers if h.get_name() == "monitor"]:
            root.removeHandler(h)
        root.setLevel(level)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].endswith(" WARNING monitor.test.text: loud 1")
    datetime.strptime(err[0][:19], "%Y-%m-%d %H:%M:%S")
    assert json.loads(err[1])["message"] == "now json"
    assert datetime.fromisoformat(json.loads(err[1])["ts"]).utcoffset() == UTC.utcoffset(None)
