"""End to end on loopback: a model trained on a fixture is loaded by the daemon (`monitor
once` as a real process) and alerts on a story its query alone misses, and the webhook's
alert says that the model decided, with its score, threshold and terms."""

from __future__ import annotations

from pathlib import Path

import pytest
from feedserver import Item, NewsSite
from receivers import WebhookReceiver
from test_e2e import child_env, monitor
from test_scorer import OFF_TOPIC, ON_TOPIC, setup_rule

from monitor.cli import main

pytestmark = pytest.mark.slow


def test_the_daemon_loads_a_trained_model_and_alerts_with_its_explanation(
    tmp_path: Path,
) -> None:
    cfg = setup_rule(tmp_path)
    assert main(["train", "--config", str(cfg), "--folds", "3", "--repeats", "1"]) == 0
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed(
            "/feed.xml",
            [
                Item("Convoy attacked near Baghdad", "/a.html", "a-1", ON_TOPIC),
                Item("Markets", "/b.html", "b-1", OFF_TOPIC),
            ],
        )
        cfg.write_text(
            cfg.read_text()
            + f"""
defaults: {{extract: false, channels: [hook]}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback News, allow_private: true}}
channels:
  hook: {{type: webhook, url: "{hook.url}", secret: "s3cret", allow_private: true}}
"""
        )
        done = monitor("once", "--config", str(cfg), env=child_env())
        assert done.returncode == 0, done.stderr
        [alert] = hook.wait_for(1)
        payload = alert.json()
        assert payload["rule"] == "troops-model"
        assert payload["title"] == "Convoy attacked near Baghdad"
        assert isinstance(payload["alert_id"], int)
        [why] = payload["why"]  # the query found nothing: the model alone decided
        assert why["field"] == "model" and why["combine"] == "query_or_model"
        assert why["score"] >= why["threshold"] == 0.5 and not why["query_matched"]
        assert len(why["terms"]) == 8 and "terms that weighed most" in why["text"]


async def test_a_reload_loads_a_retrained_model_and_keeps_the_old_one_when_stale(
    tmp_path: Path,
) -> None:
    from monitor.daemon import Runtime, load_checked

    cfg = setup_rule(tmp_path)
    args = ["train", "--config", str(cfg), "--folds", "3", "--repeats", "1"]
    assert main(args) == 0
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    try:
        first = rt.pipeline.ruleset
        assert first.match({"summary": ON_TOPIC})[0].scored is not None
        labels = tmp_path / "rules" / "labels" / "troops.jsonl"
        labels.write_text(labels.read_text() + f'{{"body": "{OFF_TOPIC} Again.", "label": 0}}\n')
        assert rt.reload() is False  # stale model: the running rule set stays
        assert rt.pipeline.ruleset is first
        assert main(args) == 0
        assert rt.reload() is True  # retrained: the new model is loaded
        second = rt.pipeline.ruleset
        assert second is not first
        scorer = second.scorer_of("troops-model")
        assert scorer is not None and scorer[1].meta["training"]["articles"] == 52
    finally:
        await rt.aclose()
