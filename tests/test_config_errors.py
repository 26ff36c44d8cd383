"""Config errors a user can act on: environment overrides named as such, "did you mean",
problems sorted by file and line, and `monitor check` warnings about private addresses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.checks import private_host_reason
from monitor.config import load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def _check(cfg: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        cwd=ROOT,
        timeout=120,
    )


def test_a_typo_in_an_environment_override_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("rules:\n  - {name: a, query: troops}\n")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\ninclude: [rules/*.yaml]\n")
    proc = _check(cfg, MONITOR_DEFAULTS__INTERVALL="5m")
    assert proc.returncode != 0
    [line] = [ln for ln in proc.stderr.splitlines() if "intervall" in ln]
    assert line == (
        "environment variable MONITOR_DEFAULTS__INTERVALL: defaults.intervall: "
        "unknown key 'intervall' (did you mean 'interval'?)"
    )
    assert "Traceback" not in proc.stderr


def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_FETCH__CONCURRENCY", "lots")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("fetch: {concurrency: 4}\n")
    [problem] = _problems(cfg)
    assert problem.startswith("environment variable MONITOR_FETCH__CONCURRENCY: ")
    assert "fetch.concurrency" in problem and "lots" not in problem


def test_unknown_keys_get_a_did_you_mean_at_every_level(tmp_path: Path) -> None:
    (tmp_path / "chan.yaml").write_text(
        "channels:\n  desk: {type: webhook, url: 'https://h.example.org/x', timout: 5s}\n"
    )
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "include: [chan.yaml]\n"
        "defualts: {interval: 5m}\n"
        "feeds:\n"
        "  - {url: 'https://a.example.org/rss', intervl: 5m}\n"
        "rules:\n"
        "  - {name: r, query: troops, severty: high, examples: {matches: [x]}}\n"
        "fetch: {zzz: 1}\n"
    )
    problems = _problems(cfg)
    text = "\n".join(problems)
    assert "unknown key 'defualts' (did you mean 'defaults'?)" in text
    assert "unknown key 'intervl' (did you mean 'interval'?)" in text
    assert "unknown key 'severty' (did you mean 'severity'?)" in text
    assert "unknown key 'matches' (did you mean 'match'?)" in text
    assert "unknown key 'timout' (did you mean 'timeout'?)" in text  # a channel union member
    [zzz] = [p for p in problems if "'zzz'" in p]
    assert "did you mean" not in zzz


def test_problems_are_sorted_by_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("rules:\n  - {name: r1, query: x, bad1: 1}\n")
    (tmp_path / "a.yaml").write_text("rules:\n  - {name: r2, query: x}\n  - {bad2: 1}\n")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("include: [b.yaml, a.yaml]\nzzz: 1\nfetch: {yyy: 2}\n")
    problems = _problems(cfg)
    positions = [p.split(": ", 1)[0] for p in problems]
    keys = [(f, int(line), int(col)) for f, line, col in (p.rsplit(":", 2) for p in positions)]
    assert keys == sorted(keys)
    assert {Path(k[0]).name for k in keys} == {"a.yaml", "b.yaml", "monitor.yaml"}


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "loopback name"),
        ("feeds.localhost", "loopback name"),
        ("127.0.0.1", "loopback address"),
        ("127.1", "loopback address"),
        ("2130706433", "loopback address"),
        ("::1", "loopback address"),
        ("10.1.2.3", "private address"),
        ("192.168.0.10", "private address"),
        ("169.254.169.254", "cloud metadata address"),
        ("93.184.215.14", None),
        ("news.example.org", None),  # a name: not resolved by check
    ],
)
def test_private_hosts_are_judged_from_their_spelling(host: str, reason: str | None) -> None:
    assert private_host_reason(host) == reason


def test_check_warns_about_private_feeds_and_channels_but_succeeds(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""database: sqlite:///{tmp_path}/m.db
feeds:
  - {{url: "http://127.0.0.1:8080/feed.xml", name: Local}}
  - {{url: "http://localhost/ok.xml", allow_private: true}}
  - {{url: "https://news.example.org/rss"}}
channels:
  hook: {{type: webhook, url: "http://10.0.0.5/hook?key=${{HOOK_KEY}}"}}
  team: {{type: slack, webhook_url: "http://192.168.1.9/x", allow_private: true}}
""")
    proc = _check(cfg, HOOK_KEY="k-3f9a1c7e")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning:" in ln]
    assert warnings == [
        f"{cfg}:3:11: warning: feed 'Local' is on a loopback address (127.0.0.1); it will be "
        "refused unless the feed sets allow_private: true",
        f"{cfg}:7:9: warning: channel 'hook' sends to a private address; it will be refused "
        "unless the channel sets allow_private: true",
    ]
    assert "k-3f9a1c7e" not in proc.stderr + proc.stdout
    assert "ok (3 feeds" in proc.stdout
