"""Config loading: schema, includes, secrets from the environment, errors as file:line:col."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.checks import compile_settings
from monitor.config import load_config, parse_duration, parse_size
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_settings(load_config(path))
    return info.value.problems


def test_example_config_is_valid_and_includes_the_shipped_rules() -> None:
    checked = compile_settings(load_config(ROOT / "config" / "example.yaml"))
    assert "attacks-on-us-troops" in checked.ruleset.rule_names
    assert len(checked.settings.feed_list) >= 5
    assert "console" in checked.settings.channels


def test_unknown_key_is_an_error_at_its_line_and_column(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
feeds:
  - url: https://example.org/feed.xml
    intervall: 5m
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:3:")
    assert "unknown key 'intervall'" in p


def test_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
defaults:
  interval: often
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:2:13:")
    assert "invalid duration" in p


def test_invalid_yaml_reports_its_position(tmp_path: Path) -> None:
    cfg = write(tmp_path, "feeds: [\n  {url: x\n")
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:")
    assert "invalid YAML" in p


def test_rule_syntax_error_points_into_the_query(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
rules:
  - name: broken
    query: troops NEAR/x attack
""",
    )
    [p] = problems(cfg)
    # The query starts at column 12; "NEAR/" is at offset 7 in it.
    assert p.startswith(f"{cfg}:3:"), p
    assert "NEAR/" in p
    assert "^" in p


def test_rule_error_in_a_block_query_maps_to_the_right_line(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
rules:
  - name: block
    query: |
      (troops OR soldiers)
      AND (attack OR
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:5:") or p.startswith(f"{cfg}:6:"), p


def test_unknown_channel_is_reported_where_the_rule_names_it(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
rules:
  - name: r
    query: troops
    channels: [slack-desk]
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:4:")
    assert "'slack-desk'" in p and "not defined" in p


def test_missing_secret_names_the_variable_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_WEBHOOK", raising=False)
    cfg = write(
        tmp_path,
        """
channels:
  desk: {type: slack, webhook_url: "${NO_SUCH_WEBHOOK}"}
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:2:")
    assert "NO_SUCH_WEBHOOK is not set" in p


def test_secrets_come_from_the_environment_and_are_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.org/T000/secret-token")
    cfg = write(
        tmp_path,
        """
channels:
  desk: {type: slack, webhook_url: "${HOOK_URL}"}
""",
    )
    settings = load_config(cfg)
    desk = settings.channels["desk"]
    assert desk.webhook_url.get_secret_value() == "https://hooks.example.org/T000/secret-token"
    assert "secret-token" not in repr(settings)
    assert "secret-token" not in str(settings.model_dump())


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path,
        """
database: sqlite:///file.db
defaults: {interval: 10m, extract: true}
""",
    )
    monkeypatch.setenv("MONITOR_DATABASE", "sqlite:///env.db")
    monkeypatch.setenv("MONITOR_DEFAULTS__INTERVAL", "5m")
    settings = load_config(cfg)
    assert settings.database == "sqlite:///env.db"
    assert settings.defaults.interval == timedelta(minutes=5)
    assert settings.defaults.extract is True


def test_rules_and_entities_are_included_by_glob_with_their_own_positions(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
entities:
  navy: ["US Navy", "American sailors"]
rules:
  - name: navy
    query: entity:navy NEAR/5 attack*
  - name: bad
    query: entity:navvy
""",
        name="rules/navy.yaml",
    )
    cfg = write(tmp_path, "include: [rules/*.yaml]\n")
    [p] = problems(cfg)
    assert p.startswith(f"{tmp_path / 'rules' / 'navy.yaml'}:7:")
    assert "navvy" in p and "navy" in p


def test_failing_rule_example_fails_the_check(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
rules:
  - name: troops
    query: troops NEAR/3 attack*
    examples:
      match: ["Troops came under attack"]
      no_match: ["Troops were attacked near the base"]
""",
    )
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:6:18:")
    assert "should not match" in p


def test_include_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path, "include: [rules/*.yaml]\n")
    [p] = problems(cfg)
    assert "matches no file" in p


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, "database: sqlite:///a.db\ndatabase: sqlite:///b.db\n")
    [p] = problems(cfg)
    assert p.startswith(f"{cfg}:2:")
    assert "duplicate key" in p


def test_opml_feeds_are_imported(tmp_path: Path) -> None:
    (tmp_path / "feeds.opml").write_text("""<?xml version="1.0"?>
<opml version="2.0"><head><title>x</title></head><body>
<outline text="World"><outline text="BBC" type="rss" xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml"/>
<outline text="NPR" type="rss" xmlUrl="https://feeds.npr.org/1004/rss.xml"/></outline>
</body></opml>""")
    cfg = write(tmp_path, "feeds:\n  - {opml: feeds.opml}\n  - url: https://example.org/a.xml\n")
    settings = load_config(cfg)
    assert [f.url for f in settings.feed_list] == [
        "https://feeds.bbci.co.uk/news/world/rss.xml",
        "https://feeds.npr.org/1004/rss.xml",
        "https://example.org/a.xml",
    ]
    assert settings.feed_list[0].display_name == "BBC"


def test_non_http_feed_url_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path, "feeds:\n  - url: file:///etc/passwd\n")
    [p] = problems(cfg)
    assert "not an http(s) URL" in p


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), (90, 90), ("7d", 604800), ("250ms", 0.25)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "10 parsecs", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("10MB") == 10 * 1024 * 1024
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("big")
