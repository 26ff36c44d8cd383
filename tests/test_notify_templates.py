"""Templates: the sandbox, the defaults for every kind, and `check_templates`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from monitor.config import EmailChannel, SlackChannel, WebhookChannel
from monitor.errors import DeliveryError
from monitor.notify import check_templates
from monitor.notify.templates import render, sample_digest, sample_message


def webhook(template: str) -> WebhookChannel:
    return WebhookChannel(type="webhook", url="https://hooks.example.org/x", template=template)


def test_a_syntax_error_is_reported_with_its_line() -> None:
    problems = check_templates(webhook("line one\n{{ title }\n"))
    assert len(problems) == 1
    assert problems[0].startswith("template:2: ")


def test_an_unknown_variable_is_reported() -> None:
    [problem] = check_templates(webhook("ok\n{{ titel }}"))
    assert problem.startswith("template:2: unknown variable 'titel'")


def test_a_sandbox_violation_is_reported_at_its_line() -> None:
    [problem] = check_templates(webhook("{{ title }}\n\n{{ title.__class__.__mro__ }}"))
    assert problem.startswith("template:3: ")
    assert "unsafe" in problem


def test_a_broken_email_subject_is_reported_under_its_key() -> None:
    config = EmailChannel.model_validate(
        {"type": "email", "to": ["a@example.org"], "subject": "{% if severity %}x"}
    )
    [problem] = check_templates(config)
    assert problem.startswith("subject:1: ")


def test_good_templates_have_no_problems() -> None:
    slack = SlackChannel(
        type="slack",
        webhook_url="https://hooks.slack.com/services/x",
        template="{% for i in items %}{{ i.title }}{% endfor %}{{ msg | highlight }}",
    )
    assert check_templates(slack) == []
    assert check_templates(webhook('{"t": {{ title | tojson }}}')) == []


def test_templates_cannot_mutate_the_message() -> None:
    msg = sample_digest()
    with pytest.raises(DeliveryError) as info:
        render("text", msg, source="{{ items.append(1) }}")
    assert info.value.permanent
    assert len(msg.items) == 2


def test_none_renders_as_empty_text() -> None:
    assert render("text", replace(sample_message(), url=None), source="[{{ url }}]") == "[]"


def test_html_templates_autoescape_feed_text() -> None:
    msg = replace(sample_message(), title="<b>x</b>")
    assert render("html", msg, source="{{ title }}") == "&lt;b&gt;x&lt;/b&gt;"


def test_highlight_marks_spans_in_text_and_html() -> None:
    msg = replace(sample_message(), snippet="a <drone> attack", highlights=[(2, 9), (10, 16)])
    assert render("text", msg, source="{{ msg | highlight }}") == "a **<drone>** **attack**"
    html = render("html", msg, source="{{ msg | highlight }}")
    assert html == "a <mark>&lt;drone&gt;</mark> <mark>attack</mark>"


@pytest.mark.parametrize("kind", ["alert", "story.updated", "source.broken", "source.recovered"])
@pytest.mark.parametrize("flavour", ["text", "html"])
def test_default_templates_render_every_kind(kind: Any, flavour: Any) -> None:
    msg = replace(sample_message(), kind=kind, detail="HTTP 503 since 09:00")
    name = "message.txt.j2" if flavour == "text" else "message.html.j2"
    out = render(flavour, msg, default=name)
    expected = "HTTP 503 since 09:00" if kind.startswith("source.") else msg.title
    assert expected in out


def test_default_text_digest_numbers_every_item() -> None:
    out = render("text", sample_digest(), default="message.txt.j2")
    assert out.startswith("Digest: 2 alerts")
    assert "1. [HIGH] Drone attack on US base in Syria" in out
    assert "2. [MEDIUM] Rocket fire near Erbil airport" in out
