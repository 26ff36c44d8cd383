"""The stages report to /metrics through explicit calls (`monitor/stages.py`): a real poll of a
loopback feed, with extraction, counts each stage at its own depth; without metrics the
pipeline keeps the no-op and never imports prometheus_client; a metrics bug is logged, never
raised into the stage."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.daemon import Runtime, load_checked
from monitor.metrics import Metrics, StageMetrics
from monitor.stages import NO_STAGES
from tests.feedserver import NewsSite, news_page
from tests.webconsole import ITEMS, write_config

ROOT = Path(__file__).resolve().parents[1]


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_a_poll_with_extraction_counts_every_stage(tmp_path: Path) -> None:
    with NewsSite() as site:
        site.feed("/feed.xml", ITEMS)
        for item in ITEMS:
            site.page(item.path, news_page(item.title, item.summary + " More text. " * 40))
        cfg = write_config(tmp_path, site)
        cfg.write_text(cfg.read_text().replace("extract: false", "extract: true"))
        rt = Runtime(load_checked(cfg), config_path=str(cfg))
        assert rt.pipeline.stages is NO_STAGES and rt.deliverer.stages is NO_STAGES
        metrics = Metrics()
        metrics.instrument(rt)
        assert isinstance(rt.pipeline.stages, StageMetrics)
        try:
            report = asyncio.run(rt.run_cycle())
        finally:
            asyncio.run(rt.aclose())
    assert [p.status for p in report.polls] == ["new"]
    got = samples(metrics)
    assert got[("monitor_fetch_seconds_count", ())] == 4  # the feed and its 3 pages
    assert got[("monitor_parse_seconds_count", ())] == 1
    assert got[("monitor_extract_seconds_count", ())] == 3
    assert got[("monitor_match_seconds_count", ())] == 3  # one per article
    assert got[("monitor_rule_matches_total", (("rule", "us-troops"),))] == 2
    assert got[("monitor_rule_alerts_total", (("rule", "us-troops"),))] == 2
    assert got[("monitor_publish_to_alert_seconds_count", ())] == 2
    # The webhook points at a closed port: two attempts, each failed, each timed.
    assert got[("monitor_delivery_seconds_count", (("channel", "hook"),))] == 2
    assert got[("monitor_deliveries_total", (("channel", "hook"), ("outcome", "failed")))] == 2
    assert got[("monitor_fetch_seconds_sum", ())] > 0


def test_a_failing_stage_is_timed_and_its_error_kept() -> None:
    metrics = Metrics()
    stages = StageMetrics(metrics)
    with pytest.raises(ValueError, match="bad feed"), stages.timed("parse"):
        raise ValueError("bad feed")
    assert samples(metrics)[("monitor_parse_seconds_count", ())] == 1


def test_a_metrics_bug_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    stages = StageMetrics(Metrics())
    with caplog.at_level(logging.ERROR, logger="monitor.metrics"):
        stages.committed(object(), [])  # type: ignore[arg-type]
        stages.matched([object()])  # type: ignore[list-item]
    assert caplog.text.count("recording a metric failed") == 2


def test_without_metrics_nothing_of_prometheus_is_imported() -> None:
    code = (
        "import sys, monitor.daemon, monitor.pipeline, monitor.delivery; "
        "print(sorted(m for m in sys.modules if m.startswith(('prometheus', 'monitor.metrics'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
