"""Custom Slack templates are mrkdwn-escaped by default: article text cannot mention or link.

An attacker controls the title and snippet of an article. In a custom Slack template, each
`{{ ... }}` is escaped on output (`<!channel>` arrives as `&lt;!channel&gt;`, a forged
`<http://evil|click>` link as text); the template's own mrkdwn stays as written, and `| safe`
is the documented way to output trusted text as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import httpx
import pytest
from receivers import SlackReceiver

from monitor.config import SlackChannel as SlackConfig
from monitor.notify import AlertMessage, build_channel
from monitor.notify.mrkdwn import escape
from monitor.notify.templates import check_templates, sample_message

HOSTILE_TITLE = "Breaking <!channel> <@U024BE7LH> <http://evil.example|click here> & more"


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def hostile() -> AlertMessage:
    snippet = "Troops <!here> were attacked, see <http://evil.example|the video>"
    start = snippet.index("attacked")
    return replace(
        sample_message(),
        title=HOSTILE_TITLE,
        snippet=snippet,
        highlights=[(start, start + 8)],
        url="https://news.example.org/a?x=1&y=<2>",
    )


async def send(slack: SlackReceiver, client: httpx.AsyncClient, template: str) -> str:
    config = SlackConfig.model_validate(
        {
            "type": "slack",
            "webhook_url": slack.url,
            "allow_private": True,
            "timeout": 2,
            "template": template,
        }
    )
    await build_channel("desk", config, client=client).send(hostile())
    text: str = slack.received[-1].json()["blocks"][1]["text"]["text"]
    return text


async def test_article_fields_in_a_custom_template_arrive_escaped(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    text = await send(slack, client, "*{{ title }}*\n{{ snippet }}")
    assert text == (
        "*Breaking &lt;!channel&gt; &lt;@U024BE7LH&gt; &lt;http://evil.example|click here&gt;"
        " &amp; more*\nTroops &lt;!here&gt; were attacked, see "
        "&lt;http://evil.example|the video&gt;"
    )
    assert "<!" not in text and "<@" not in text and "<http" not in text


async def test_the_template_filters_build_safe_links_and_bold_highlights(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    text = await send(slack, client, "{{ url | link(title) }}\n{{ msg | highlight }}")
    link, snippet = text.split("\n")
    assert link.startswith("<https://news.example.org/a?x=1&amp;y=%3C2%3E|Breaking &lt;!channel")
    assert link.count("<") == 1 and link.endswith("more>")
    assert "*attacked*" in snippet and "&lt;!here&gt;" in snippet


async def test_explicit_mrkdwn_filter_does_not_escape_twice(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    text = await send(slack, client, "{{ title | mrkdwn }}")
    assert text == escape(HOSTILE_TITLE)


async def test_safe_outputs_trusted_text_as_it_is(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    # The opt-out, for text the config author trusts: here a mention written in the template
    # and a value marked safe.
    text = await send(slack, client, "<!here> {{ rule | safe }}: {{ title }}")
    assert text.startswith("<!here> attacks-on-us-troops: Breaking &lt;!channel&gt;")


def test_bare_mass_mentions_are_broken_in_mrkdwn() -> None:
    assert escape("hey @channel and @here, @everyone!") == (
        "hey @\u2060channel and @\u2060here, @\u2060everyone!"
    )
    assert escape("mail me@channel4.example") == "mail me@channel4.example"


def test_monitor_check_knows_the_slack_filters() -> None:
    config = SlackConfig.model_validate(
        {
            "type": "slack",
            "webhook_url": "https://hooks.slack.com/services/T/B/X",
            "template": "{{ url | link(title) }} {{ title | mrkdwn }} {{ msg | highlight }}",
        }
    )
    assert check_templates(config) == []
