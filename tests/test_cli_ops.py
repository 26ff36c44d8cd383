"""The operational commands on a real store: backtest, status, and a daemon's SIGHUP reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import Item, NewsSite, corpus_page, news_page, seed_article
from receivers import WebhookReceiver

from monitor.cli import main

ROOT = Path(__file__).resolve().parents[1]
AUTO = "05844573ca7e1fba714d715bb11ca08c26e25328999c74a1cb3bc8a0e4399f0f"


@pytest.fixture
def site() -> Iterator[NewsSite]:
    with NewsSite() as s:
        title, body = seed_article()
        s.page("/a/seed.html", news_page(title, body))
        s.page("/a/auto.html", corpus_page(AUTO))
        s.feed(
            "/feed.xml",
            [
                Item(title, "/a/seed.html", "seed"),
                Item("New SUVs and electric vehicles at the LA Auto Show", "/a/auto.html", "auto"),
            ],
        )
        yield s


def config(tmp: Path, site: NewsSite, hook: WebhookReceiver, rules: str) -> Path:
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
defaults: {{interval: 1s, min_interval: 1s, channels: [hook]}}
daemon: {{tick: 0.3s, deliver_every: 0.3s}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback, allow_private: true}}
include_outside: true  # the shipped rules, outside the test folder
include: ["{ROOT}/config/rules/*.yaml"]
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
{rules}
""")
    return cfg


def test_backtest_reports_what_the_current_rules_would_have_alerted(
    tmp_path: Path, site: NewsSite, capsys: pytest.CaptureFixture[str]
) -> None:
    with WebhookReceiver() as hook:
        cfg = config(tmp_path, site, hook, "")
        assert main(["once", "--config", str(cfg)]) == 0
        capsys.readouterr()
        # A rule added after the articles were stored is judged on them.
        cfg.write_text(
            cfg.read_text()
            + """
rules:
  - name: auto-show
    query: title:("auto show" OR SUV*)
"""
        )
        assert main(["backtest", "--config", str(cfg), "--since", "1d", "--format", "json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_rule = {(r["rule"], r["title"][:20]) for r in rows if r["would_alert"]}
    assert ("attacks-on-us-troops", "Blinken Visits Iraq ") in by_rule
    assert ("auto-show", "New SUVs and electri") in by_rule
    assert all(r["hits"] for r in rows)


def test_backtest_of_an_unknown_rule_is_an_error(
    tmp_path: Path, site: NewsSite, capsys: pytest.CaptureFixture[str]
) -> None:
    with WebhookReceiver() as hook:
        cfg = config(tmp_path, site, hook, "")
        assert main(["backtest", "--config", str(cfg), "--rule", "nope"]) == 2
    assert "unknown rule" in capsys.readouterr().err


def test_status_shows_feeds_queue_and_alerts(
    tmp_path: Path, site: NewsSite, capsys: pytest.CaptureFixture[str]
) -> None:
    with WebhookReceiver() as hook:
        cfg = config(tmp_path, site, hook, "")
        assert main(["once", "--config", str(cfg)]) == 0
        capsys.readouterr()
        assert main(["status", "--config", str(cfg), "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    [feed] = status["feeds"]
    assert feed["consecutive_failures"] == 0 and feed["entries_total"] == 2
    assert status["deliveries"]["by_status"] == {"sent": 1}
    [alert] = status["recent_alerts"]
    assert alert["rule"] == "attacks-on-us-troops" and alert["sources"] == 1


def test_sighup_with_a_broken_rule_keeps_the_running_rules(tmp_path: Path, site: NewsSite) -> None:
    with WebhookReceiver() as hook:
        cfg = config(tmp_path, site, hook, "")
        log = open(tmp_path / "run.log", "w")  # noqa: SIM115 - closed below
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        try:
            hook.wait_for(1, timeout=60)
            cfg.write_text(cfg.read_text() + "rules:\n  - name: bad\n    query: troops NEAR/ x\n")
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "reload failed" not in (tmp_path / "run.log").read_text():
                assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
                time.sleep(0.2)
            # Still running on the old rules: a new matching story is alerted.
            site.page(
                "/a/mortar.html",
                news_page(
                    "Mortar attack on US troops at a base in northern Syria",
                    "Militants fired mortar rounds at a base housing US troops in northern Syria "
                    "on Friday, wounding two American soldiers, a defence official said. The "
                    "attack was the third on the base this month. Coalition forces returned fire "
                    "and a drone was sent to search the area, the official said, adding that "
                    "both soldiers were in stable condition at a field hospital.",
                ),
            )
            site.feed(
                "/feed.xml",
                [
                    Item(
                        "Mortar attack on US troops at a base in northern Syria",
                        "/a/mortar.html",
                        "mortar",
                    )
                ],
            )
            got = hook.wait_for(2, timeout=60)
            assert got[1].json()["title"].startswith("Mortar attack")
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            log.close()
    text = (tmp_path / "run.log").read_text()
    assert rc == 0, text
    assert "NEAR/ needs a number" in text
