"""Feed defaults are applied once, at load: every loaded feed carries its resolved settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import FeedConfig, load_config


def _load(tmp_path: Path, text: str) -> list[FeedConfig]:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(text)
    return load_config(cfg).feed_list


def test_feeds_carry_the_defaults_they_do_not_override(tmp_path: Path) -> None:
    plain, own, no_extract = _load(
        tmp_path,
        """
defaults: {interval: 5m, extract: false}
feeds:
  - url: https://a.example.org/rss
  - {url: https://b.example.org/rss, interval: 1h, extract: true}
  - {url: https://c.example.org/rss, extract: false}
""",
    )
    assert (plain.interval, plain.extract) == (timedelta(minutes=5), False)
    assert (own.interval, own.extract) == (timedelta(hours=1), True)
    assert (no_extract.interval, no_extract.extract) == (timedelta(minutes=5), False)


def test_adaptive_applies_to_feeds_without_their_own_interval(tmp_path: Path) -> None:
    default, fixed, forced = _load(
        tmp_path,
        """
defaults: {adaptive: true}
feeds:
  - url: https://a.example.org/rss
  - {url: https://b.example.org/rss, interval: 30m}
  - {url: https://c.example.org/rss, interval: 30m, adaptive: true}
""",
    )
    assert default.adaptive and not fixed.adaptive and forced.adaptive
    assert default.interval == timedelta(minutes=10)


def test_environment_defaults_reach_the_resolved_feeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DEFAULTS__INTERVAL", "2h")
    [feed] = _load(tmp_path, "feeds:\n  - url: https://a.example.org/rss\n")
    assert feed.interval == timedelta(hours=2)


def test_the_accessors_return_the_resolved_values(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("defaults: {interval: 7m}\nfeeds:\n  - url: https://a.example.org/rss\n")
    settings = load_config(cfg)
    [feed] = settings.feed_list
    assert settings.feed_interval(feed) == feed.interval == timedelta(minutes=7)
    assert settings.feed_extract(feed) is feed.extract is True


def test_an_explicit_null_means_not_set(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "defaults: {channels: [console]}\n"
        "rules:\n"
        "  - name: r\n    query: troops\n    channels: null\n    cooldown: ~\n    within:\n"
    )
    [rule] = load_config(cfg).rules
    assert rule.channels is None and rule.cooldown is None and rule.within is None
