"""Whole-config validation that needs other stages: rules compile, examples behave, templates
compile, digest schedules parse. Used by `monitor check`, at start-up, and on reload (a reload
that fails here keeps the running config).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor import secrets
from monitor.addresses import blocked_reason
from monitor.config import ChannelConfig, Settings, SlackChannel, WebhookChannel
from monitor.errors import ConfigError
from monitor.rules import RuleCompileError, RuleSet, RuleSpec, compile_rules
from monitor.rules.compile import ScorerError
from monitor.rules.examples import check_examples
from monitor.rules.training import scorer_spec


@dataclass(slots=True)
class CheckedConfig:
    settings: Settings
    ruleset: RuleSet


def rule_specs(settings: Settings) -> list[RuleSpec]:
    return [
        RuleSpec(name=r.name, query=r.query, scorer=scorer_spec(settings, i))
        for i, r in enumerate(settings.rules)
        if r.enabled
    ]


def compile_settings(settings: Settings, *, run_examples: bool = True) -> CheckedConfig:
    """Compile and cross-check a loaded config. Raises `ConfigError` with `file:line:col`s."""
    problems: list[str] = []
    ruleset = _compile(settings, problems)
    if ruleset is not None and run_examples:
        problems.extend(_example_problems(settings, ruleset))
    problems.extend(_channel_problems(settings))
    if problems or ruleset is None:
        raise ConfigError(problems)
    return CheckedConfig(settings=settings, ruleset=ruleset)


def _compile(settings: Settings, problems: list[str]) -> RuleSet | None:
    src = settings.source
    index = {r.name: i for i, r in enumerate(settings.rules)}
    try:
        return compile_rules(
            rule_specs(settings), settings.entities, fold_accents=settings.fold_accents
        )
    except RuleCompileError as exc:
        for err in exc.errors:
            i = index.get(err.rule)
            if isinstance(err, ScorerError) and i is not None:
                where = src.positions.get(("rules", i, "scorer", "model")) or src.locate(
                    ("rules", i)
                )
                problems.append(f"{where}: rule {err.rule!r}: {err.message}")
                continue
            query = settings.rules[i].query if i is not None else ""
            where = src.query_pos(i, err.offset) if i is not None else src.locate(("rules",))
            problems.append(f"{where}: rule {err.rule!r}: {err.message}\n{err.render(query)}")
        return None


def _example_problems(settings: Settings, ruleset: RuleSet) -> Iterator[str]:
    index = {r.name: i for i, r in enumerate(settings.rules)}
    for fail in check_examples(ruleset, settings.active_rules):
        where = settings.source.locate(
            ("rules", index[fail.rule], "examples", fail.expected, fail.index)
        )
        verb = (
            "should match but does not" if fail.expected == "match" else "should not match but does"
        )
        yield (
            f"{where}: rule {fail.rule!r}: example {fail.expected}[{fail.index}]"
            f" {verb}: {fail.text_preview!r}"
            + (f"\n  {fail.explanation.strip()}" if fail.explanation.strip() else "")
        )


def _has_template(channel: ChannelConfig) -> bool:
    """Whether the channel sets a template of its own (the keys `check_templates` reads):
    Jinja2 is loaded only then, not by every `once` and `check` of a config without one."""
    return channel.template is not None or getattr(channel, "subject", None) is not None


def _channel_problems(settings: Settings) -> Iterator[str]:
    src = settings.source
    for name, channel in settings.channels.items():
        if _has_template(channel):
            from monitor.notify.templates import check_templates  # not the channels (httpx)

            for msg in check_templates(channel):
                yield f"{src.locate(('channels', name, 'template'))}: channel {name!r}: {msg}"
        if channel.digest is not None:
            from apscheduler.triggers.cron import CronTrigger  # only for digest channels

            try:
                CronTrigger.from_crontab(channel.digest, timezone="UTC")
            except ValueError as exc:
                yield (
                    f"{src.locate(('channels', name, 'digest'))}: channel {name!r}: "
                    f"invalid digest schedule {channel.digest!r}: {exc}"
                )


# --------------------------------------------------------------------------- warnings

_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)


def private_host_reason(host: str) -> str | None:
    """Why `host` is not a public address, judged from its spelling alone: `localhost` (and
    `*.localhost`), literal IPv4/IPv6 addresses and legacy numeric IPv4 forms (`127.1`,
    `2130706433`). Other names are not resolved here (no DNS in `check`); the fetcher and the
    deliverer check the resolved address at run time."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback name"
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        if not _NUMERIC_HOST.fullmatch(name):
            return None
        try:
            ip = ipaddress.ip_address(socket.inet_ntoa(socket.inet_aton(name)))
        except OSError:
            return None
    return blocked_reason(ip)


def network_warnings(settings: Settings) -> list[str]:
    """Feeds and channels whose URL names a loopback or private address but that do not set
    `allow_private: true`: they pass the schema, then fail at run time. Warnings, not errors
    (`monitor check` still succeeds); secrets are redacted from the text."""
    out = [*_feed_warnings(settings), *_channel_warnings(settings)]
    return [secrets.redact(w) for w in out]


def _feed_warnings(settings: Settings) -> Iterator[str]:
    for i, feed in enumerate(settings.feeds):
        if not feed.enabled or feed.allow_private:
            continue
        host = urlsplit(secrets.expand(feed.url)).hostname or ""
        reason = private_host_reason(host)
        if reason is not None:
            yield (
                f"{settings.source.locate(('feeds', i, 'url'))}: warning: feed "
                f"{feed.display_name!r} is on a {reason} ({host}); it will be refused unless "
                "the feed sets allow_private: true"
            )


def _channel_warnings(settings: Settings) -> Iterator[str]:
    for name, channel in settings.channels.items():
        if not isinstance(channel, WebhookChannel | SlackChannel):
            continue
        if channel.allow_private or not channel.enabled:
            continue
        url = channel.url if isinstance(channel, WebhookChannel) else channel.webhook_url
        reason = private_host_reason(urlsplit(url.get_secret_value()).hostname or "")
        if reason is not None:
            yield (
                f"{settings.source.locate(('channels', name))}: warning: channel {name!r} "
                f"sends to a {reason}; it will be refused unless the channel sets "
                "allow_private: true"
            )
