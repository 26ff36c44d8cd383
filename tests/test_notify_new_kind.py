"""A new channel kind is one module: the config loader accepts it and the daemon delivers to it.

`pager_channel` (tests only) defines a config model and a `Channel` class; nothing else in the
project names it. A real `Runtime` polls a loopback feed and its delivery worker sends to it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from feedserver import NewsSite
from test_delivery import deliver_until, news_items, poll, runtime, statuses, write_config

from monitor import config
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.notify.base import REGISTRY
from monitor.notify.channel_config import CHANNEL_CONFIGS


@pytest.fixture
def pager_channel() -> Iterator[ModuleType]:
    """The module, imported for one test; then the kind is gone again (the reference page
    and every other test see the built-in kinds only)."""
    module = importlib.import_module("pager_channel")
    assert "pager" in CHANNEL_CONFIGS and "pager" in REGISTRY
    try:
        yield module
    finally:
        del CHANNEL_CONFIGS["pager"], REGISTRY["pager"], sys.modules["pager_channel"]
        config.rebuild_channels()


async def test_a_channel_kind_registered_in_one_module_is_configured_and_delivered_to(
    tmp_path: Path, pager_channel: ModuleType
) -> None:
    pager_channel.PAGED.clear()
    with NewsSite() as site:
        site.feed("/feed.xml", news_items(2))
        cfg = write_config(
            tmp_path,
            site,
            channels="  oncall: {type: pager, label: night, min_severity: low}\n",
            default_channels="[oncall]",
        )
        settings = load_config(cfg)
        assert isinstance(settings.channels["oncall"], pager_channel.PagerConfig)
        async with runtime(cfg) as rt:
            assert await poll(rt) == 2
            await deliver_until(rt, lambda: len(pager_channel.PAGED) >= 2)
            assert statuses(rt) == {"sent": 2}
    assert {(name, label) for name, label, _ in pager_channel.PAGED} == {("oncall", "night")}
    assert {msg.rule for _, _, msg in pager_channel.PAGED} == {"zebulon"}


def test_the_new_kind_gets_the_loaders_errors_like_any_channel(
    tmp_path: Path, pager_channel: ModuleType
) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("channels:\n  oncall: {type: pager, labl: night}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = str(err.value)
    assert "monitor.yaml:2" in text and "labl" in text and "label" in text


def test_without_its_module_the_kind_is_unknown(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("channels:\n  oncall: {type: pager, label: night}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pager"):
        load_config(cfg)
