"""The first-contact commands as a user runs them: init, notify test, feeds, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from receivers import Respond, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]


def monitor(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MONITOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


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
