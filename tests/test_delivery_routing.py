"""Routing and volume: severity floors, cooldowns, rate limits, dead letters and their replay.

Alerts come from a loopback feed polled by a real `Runtime` (see test_delivery.py); the
operator's view is the real CLI (`monitor deliveries list/retry`, `monitor status`, `monitor
check`), run in-process or as a subprocess on the same config and database.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from feedserver import NewsSite
from receivers import Respond, WebhookReceiver
from sqlalchemy import select
from test_delivery import deliver_until, hook_channel, news_items, poll, runtime, statuses
from test_delivery import write_config as base_config

from monitor.cli import main
from monitor.store import schema as s
from monitor.store.engine import read_tx

ROOT = Path(__file__).resolve().parents[1]


async def test_a_channel_gets_only_alerts_at_or_above_its_min_severity(tmp_path: Path) -> None:
    with NewsSite() as site, WebhookReceiver() as hook, WebhookReceiver() as pager:
        site.feed(
            "/feed.xml", news_items(2, prefix="Calm ") + news_items(2, start=2, prefix="Urgent ")
        )
        cfg = base_config(
            tmp_path,
            site,
            rules="""
  - {name: calm, query: "zebulon AND title:calm", severity: low}
  - {name: urgent, query: "zebulon AND title:urgent", severity: high}""",
            channels=hook_channel("hook", hook)
            + hook_channel("pager", pager, ", min_severity: high"),
            default_channels="[hook, pager]",
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 4
            await deliver_until(rt, lambda: len(hook.received) + len(pager.received) >= 6)
            assert statuses(rt) == {"sent": 6}  # no delivery row at all for the filtered one
    assert Counter(r.json()["rule"] for r in hook.received) == {"calm": 2, "urgent": 2}
    assert Counter(r.json()["rule"] for r in pager.received) == {"urgent": 2}


async def test_a_rule_in_cooldown_alerts_once_and_records_the_rest(tmp_path: Path) -> None:
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", news_items(3))
        cfg = base_config(
            tmp_path,
            site,
            rules="[{name: zebulon, query: zebulon, cooldown: 1h}]",
            channels=hook_channel("hook", hook),
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 1
            await deliver_until(rt, lambda: len(hook.received) >= 1)
            with read_tx(rt.store.engine) as conn:
                alerts = Counter(conn.execute(select(s.alerts.c.status)).scalars())
            assert alerts == {"sent": 1, "suppressed": 2}
            assert statuses(rt) == {"sent": 1}
    assert len(hook.requests) == 1


async def test_a_channel_rate_limit_spaces_its_messages(tmp_path: Path) -> None:
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", news_items(6))
        cfg = base_config(tmp_path, site, channels=hook_channel("hook", hook, ", rate_limit: 2/s"))
        async with runtime(cfg) as rt:
            assert await poll(rt) == 6
            await deliver_until(rt, lambda: len(hook.received) >= 6)
    times = sorted(r.at for r in hook.requests)
    assert len(times) == 6
    # A bucket of two that refills at two a second: n messages span at least (n - 2) / 2 s.
    assert all(
        times[j] - times[i] >= (j - i - 1) / 2 - 0.05
        for i in range(len(times))
        for j in range(i + 1, len(times))
    )
    assert times[-1] - times[0] >= 2.0 - 0.05


async def test_dead_letters_are_listed_replayed_and_counted_by_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        NewsSite() as site,
        WebhookReceiver(Respond(500, "down")) as hook,
        WebhookReceiver(Respond(404, "no such hook")) as gone,
    ):
        site.feed("/feed.xml", news_items(2))
        cfg = base_config(
            tmp_path,
            site,
            channels=hook_channel("hook", hook) + hook_channel("gone", gone),
            default_channels="[hook, gone]",
            delivery="{backoff_base: 0.2s, backoff_max: 0.4s, max_attempts: 3}",
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 2
            await deliver_until(rt, lambda: statuses(rt) == {"dead": 4})
        assert len(hook.requests) == 2 * 3  # every attempt, then no more
        assert len(gone.requests) == 2  # a 404 is not worth a second try

        assert main(["deliveries", "list", "--status", "dead", "--config", str(cfg)]) == 0
        listed = capsys.readouterr().out
        assert listed.count(" dead ") == 4
        assert listed.count("gave up after 3 attempts") == 2
        assert listed.count("HTTP 404") == 2 and "refused permanently" in listed

        assert main(["status", "--config", str(cfg)]) == 0
        assert "Deliveries: 0 pending (oldest -), 4 dead, 0 sent" in capsys.readouterr().out

        assert main(["deliveries", "retry", "--dead", "--config", str(cfg)]) == 0
        assert "4 deliveries will be retried" in capsys.readouterr().out
        assert main(["status", "--config", str(cfg)]) == 0
        assert "Deliveries: 4 pending" in capsys.readouterr().out

        hook.default = gone.default = Respond(200)  # the receivers are fixed
        async with runtime(cfg) as rt:
            await deliver_until(rt, lambda: statuses(rt) == {"sent": 4})
        assert main(["status", "--config", str(cfg)]) == 0
        assert "Deliveries: 0 pending (oldest -), 0 dead, 4 sent" in capsys.readouterr().out
    assert len(hook.received) == len(gone.received) == 2


async def test_a_delivery_older_than_give_up_after_is_dead(tmp_path: Path) -> None:
    with NewsSite() as site, WebhookReceiver(Respond(503)) as hook:
        site.feed("/feed.xml", news_items(1))
        cfg = base_config(
            tmp_path,
            site,
            channels=hook_channel("hook", hook),
            delivery="{backoff_base: 0.2s, backoff_max: 0.4s, give_up_after: 1s}",
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 1
            await deliver_until(rt, lambda: statuses(rt) == {"dead": 1})
            [dead] = rt.store.outbox.list_deliveries("dead")
    assert "gave up after 0:00:01" in (dead.last_error or "")
    assert 2 <= len(hook.requests) <= 6


def test_a_broken_template_is_a_config_error_that_check_reports(tmp_path: Path) -> None:
    with NewsSite() as site:
        cfg = base_config(
            tmp_path,
            site,
            channels=hook_channel("hook", "http://127.0.0.1:9/", ", template: '{{ title '")
            + hook_channel("typo", "http://127.0.0.1:9/", ", template: '{{ titel }}'"),
            default_channels="[hook, typo]",
        )
        checked = subprocess.run(
            [sys.executable, "-m", "monitor", "check", "--config", str(cfg)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert checked.returncode == 1
    lines = checked.stderr.splitlines()
    line_of = {
        name: i + 1
        for i, text in enumerate(cfg.read_text().splitlines())
        for name in ("hook", "typo")
        if text.startswith(f"  {name}:")
    }
    assert any(ln.startswith(f"{cfg}:{line_of['hook']}:") and "'hook'" in ln for ln in lines), (
        checked.stderr
    )
    assert any(ln.startswith(f"{cfg}:{line_of['typo']}:") and "titel" in ln for ln in lines), (
        checked.stderr
    )
