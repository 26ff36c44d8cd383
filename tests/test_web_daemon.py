"""The console's server inside a real `monitor run`: /healthz, /readyz and /metrics answer from
the daemon's own loop, the metrics parse with prometheus_client's parser and count what the
daemon did, hostile requests (a 100 KB request line, garbage) get a 400 without a traceback
in the log, SIGTERM stops it cleanly, and a port in use is one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemons import free_port, get, start_daemon, wait_for
from tests.feedserver import NewsSite
from tests.receivers import WebhookReceiver
from tests.webconsole import ITEMS, write_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_health_ready_metrics_in_a_running_daemon(tmp_path: Path) -> None:
    port = free_port()
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", ITEMS)
        cfg = write_config(tmp_path, site)
        text = cfg.read_text().replace('listen: "127.0.0.1:0"', f'listen: "127.0.0.1:{port}"')
        cfg.write_text(text.replace("http://127.0.0.1:9/hook", hook.url))
        log = tmp_path / "run.log"
        proc = start_daemon(cfg, log)
        try:
            hook.wait_for(2, timeout=60)

            def up() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
                except OSError:
                    return False

            wait_for(up)
            status, body = get(f"http://127.0.0.1:{port}/healthz")
            health = json.loads(body)
            assert status == 200 and health["status"] == "ok" and health["feeds"] == {"ok": 1}
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            ready = json.loads(body)
            assert status == 200 and ready["checks"] == {
                "database": True,
                "store": True,
                "workers": True,
                "scheduler": True,
            }

            def sent_counted() -> bool:
                metrics = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
                return 'monitor_deliveries_total{channel="hook",outcome="sent"} 2.0' in metrics

            wait_for(sent_counted, timeout=20)
            text = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            families = list(text_string_to_metric_families(text))
            names = [f.name for f in families]
            assert len(names) == len(set(names)), "two families with one name"
            fam = {f.name: f for f in families}
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in families
                for s in f.samples
            }
            assert samples[("monitor_polls_total", (("kind", "new"),))] == 1
            assert samples[("monitor_rule_matches_total", (("rule", "us-troops"),))] == 2
            assert samples[("monitor_rule_alerts_total", (("rule", "us-troops"),))] == 2
            assert samples[("monitor_fetch_seconds_count", ())] >= 1
            assert samples[("monitor_parse_seconds_count", ())] >= 1
            assert samples[("monitor_match_seconds_count", ())] == 3
            assert samples[("monitor_delivery_seconds_count", (("channel", "hook"),))] == 2
            # The items are dated 2023: publish -> alert is years, counted in the +Inf bucket.
            assert samples[("monitor_publish_to_alert_seconds_count", ())] == 2
            assert "monitor_build_info" in fam and "process_resident_memory_bytes" in fam
            assert fam["monitor_feeds"].type == "gauge" and fam["monitor_polls"].type == "counter"
            # The console needs a login; health endpoints do not.
            assert get(f"http://127.0.0.1:{port}/api/v1/alerts")[0] == 401
            # Hostile requests: oversized request lines, garbage; each a 4xx, no traceback.
            for _ in range(5):
                long_line = raw(port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                assert long_line.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")), long_line[:40]
                # ...and one that arrives slowly is over h11's 16 KiB limit before it ends.
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"GET /" + b"a" * 20_000)
                    time.sleep(0.05)
                    s.sendall(b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert s.recv(100).startswith(b"HTTP/1.1 400")
                assert raw(port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        out = log.read_text()
        assert rc == 0, out
        assert "Traceback" not in out, out
        assert out.count("Invalid HTTP request received.") <= 1, out  # repeats are dropped
        assert "stopped" in out


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy, NewsSite() as site:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        site.feed("/feed.xml", [])
        cfg = write_config(tmp_path, site)
        cfg.write_text(
            cfg.read_text().replace('listen: "127.0.0.1:0"', f'listen: "127.0.0.1:{port}"')
        )
        res = subprocess.run(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr, res.stderr
        assert f"web.listen: cannot listen on 127.0.0.1:{port}" in res.stderr
