"""The config guide in README.md is a valid config: the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.checks import compile_settings
from monitor.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def config_guide_yaml() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Config guide") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_config_guide_example_loads_and_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.invalid/T0/B0/x")
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "extra.yaml").write_text(
        "rules:\n  - {name: extra, query: 'title:recall*'}\n"
    )
    (tmp_path / "feeds.opml").write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="NPR" xmlUrl="https://feeds.npr.org/1004/rss.xml"/></body></opml>'
    )
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(config_guide_yaml())
    checked = compile_settings(load_config(cfg))
    settings = checked.settings
    assert {"attacks-on-us-troops", "extra"} <= set(checked.ruleset.rule_names)
    assert "https://feeds.npr.org/1004/rss.xml" in [f.url for f in settings.feed_list]
    assert set(settings.channels) == {"desk", "mail", "hook", "console"}
