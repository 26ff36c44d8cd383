"""The README's channel section is executed: its YAML, its JSON schema, its verify snippet."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from monitor.config import ChannelConfig
from monitor.notify import check_templates, sign, webhook_payload
from monitor.notify.templates import render, sample_message

README = Path(__file__).resolve().parent.parent / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("<!-- channels:start -->")[1].split("<!-- channels:end -->")[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)


def channel_examples() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for block in blocks("yaml"):
        text = re.sub(r"\$\{[A-Z_]+\}", "https://hooks.example.org/secret", block)
        data = yaml.safe_load(text if text.startswith("channels:") else f"channels:\n{text}")
        channels.update(data["channels"])
    return channels


def test_every_yaml_example_is_a_valid_channel_with_valid_templates() -> None:
    examples = channel_examples()
    assert {"console", "desk", "hook", "mail", "phone"} <= set(examples)
    adapter: TypeAdapter[Any] = TypeAdapter(ChannelConfig)
    for name, raw in examples.items():
        config = adapter.validate_python(raw)
        assert check_templates(config) == [], name


def test_the_json_template_example_renders_json() -> None:
    template = channel_examples()["hook"]["template"]
    body = json.loads(render("text", sample_message(), source=template))
    assert body["text"].startswith("[HIGH] Drone attack")


def test_the_payload_example_has_exactly_the_fields_we_send() -> None:
    [example] = blocks("json")
    assert set(json.loads(example)) == set(webhook_payload(sample_message()))


def test_the_verify_snippet_accepts_our_signature() -> None:
    [snippet] = blocks("python")
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    ts, body = str(int(time.time())), b'{"a":1}'
    headers = {"X-Monitor-Timestamp": ts, "X-Monitor-Signature": "v1=" + sign(b"k", ts, body)}
    assert namespace["verify"](b"k", headers, body)
    assert not namespace["verify"](b"other", headers, body)
