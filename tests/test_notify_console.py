"""The console channel: one readable block per message."""

from __future__ import annotations

import io

import httpx
import pytest

from monitor.config import ConsoleChannel as ConsoleConfig
from monitor.notify import build_channel
from monitor.notify.console import ConsoleChannel
from monitor.notify.templates import sample_message


async def test_prints_rule_severity_title_link_and_marked_snippet() -> None:
    out = io.StringIO()
    channel = ConsoleChannel("console", ConsoleConfig(type="console"), stream=out)
    await channel.send(sample_message())
    text = out.getvalue()
    assert "[HIGH] Drone attack on US base in Syria" in text
    assert "rule:      attacks-on-us-troops" in text
    assert "link:      https://news.example.org/2024/drone-attack" in text
    assert "**US forces** in Syria came under drone **attack**" in text


async def test_writes_to_stderr_when_configured(capsys: pytest.CaptureFixture[str]) -> None:
    async with httpx.AsyncClient() as client:
        channel = build_channel("c", ConsoleConfig(type="console", stream="stderr"), client=client)
        await channel.send(sample_message())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Drone attack on US base in Syria" in captured.err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_highlights_are_bold_on_a_terminal() -> None:
    out = Terminal()
    await ConsoleChannel("console", ConsoleConfig(type="console"), stream=out).send(
        sample_message()
    )
    assert "\x1b[1mUS forces\x1b[0m in Syria" in out.getvalue()
