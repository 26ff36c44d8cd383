"""Config: YAML files + `MONITOR_*` environment -> validated `Settings`.

Owns the config schema (pydantic-settings models), `include:` of rule and entity files by glob,
`${VAR}` secrets resolved from the environment, and error positions: every problem is reported
as `file:line:col: message`, because the YAML is parsed into nodes whose marks we keep. Cross
checks that need other stages (queries parse, examples behave, templates compile) live in
`monitor.checks`.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from monitor import secrets
from monitor.configtypes import SEVERITY_ORDER as SEVERITY_ORDER
from monitor.configtypes import Duration, Severity, StrictModel
from monitor.configtypes import parse_duration as parse_duration
from monitor.errors import ConfigError
from monitor.notify.apprise_config import AppriseChannel as AppriseChannel

# The built-in channel kinds (importing a config model registers it); each config model
# lives beside its channel, see `monitor.notify.channel_config`.
from monitor.notify.channel_config import ChannelConfigBase as _ChannelBase
from monitor.notify.channel_config import channel_union, on_register
from monitor.notify.channel_config import parse_rate as parse_rate
from monitor.notify.console_config import ConsoleChannel
from monitor.notify.email_config import EmailChannel as EmailChannel
from monitor.notify.slack_config import SlackChannel as SlackChannel
from monitor.notify.webhook_config import WebhookChannel as WebhookChannel

# --------------------------------------------------------------------------- value types

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """`"10MB"`, `"512KiB"`, `"2m"`, or a number of bytes -> int bytes."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like 512KB, 10MB")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "b").lower()[0]
            factor = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
            return int(float(m.group(1)) * factor)
    raise ValueError(f"invalid size {value!r}: use e.g. 512KB, 10MB")


ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _http_url(value: str) -> str:
    # A feed URL is kept in its `${VAR}` form; what must be an http(s) URL is what is fetched.
    parts = urlsplit(secrets.expand(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


HttpUrlStr = Annotated[str, BeforeValidator(lambda v: _http_url(str(v)))]


class _Model(StrictModel):
    """A config section of this module (see `StrictModel`)."""


# --------------------------------------------------------------------------- sections


class FetchSettings(_Model):
    """How the one HTTP client behaves (see `monitor.fetch`)."""

    user_agent: str = Field(
        "news-monitor/0.1 (+{contact})",
        description="The User-Agent header of every request; `{contact}` is replaced by `contact`.",
    )
    contact: str = Field(
        "https://github.com/news-monitor/news-monitor",
        description="Where site owners can reach you (URL or e-mail), put into the User-Agent.",
    )
    connect_timeout: Duration = Field(
        timedelta(seconds=10), description="Time allowed to open a connection."
    )
    read_timeout: Duration = Field(
        timedelta(seconds=20), description="Time allowed between two reads of a response."
    )
    deadline: Duration = Field(
        timedelta(seconds=60),
        description="Whole-request deadline (a server that trickles bytes cannot hold a worker).",
    )
    max_feed_bytes: ByteSize = Field(
        10 * 1024 * 1024,
        description="Largest feed body accepted, counted on the raw and on the decoded stream.",
    )
    max_page_bytes: ByteSize = Field(
        5 * 1024 * 1024,
        description="Largest article page accepted, counted on the raw and on the decoded stream.",
    )
    max_redirects: int = Field(
        5,
        ge=0,
        le=20,
        description="Redirect hops followed per request (http/https only, each hop checked).",
    )
    concurrency: int = Field(
        32,
        ge=1,
        description="Requests in flight at once (also the number of polls fetching or parsing).",
    )
    per_host: int = Field(2, ge=1, description="Requests in flight at once to one host.")
    per_host_delay: Duration = Field(
        timedelta(0), description="Pause between two requests to one host."
    )
    slot_wait: Duration = Field(
        timedelta(minutes=2),
        description="Longest wait for a free slot (per host and overall) before a request is "
        "given up unsent, as `slot_wait`; the deadline starts only once a slot is held.",
    )
    idle_timeout: Duration = Field(
        timedelta(seconds=10),
        description="Longest gap between two pieces of a response body; a stalled body is cut "
        "as `idle`.",
    )
    min_rate: ByteSize = Field(
        1024,
        ge=0,
        description="Slowest body accepted, in bytes per second over `rate_window`; a body "
        "that trickles slower is cut as `slow` (0: no minimum).",
    )
    rate_window: Duration = Field(
        timedelta(seconds=10),
        description="The window `min_rate` is measured over (a body done sooner is never cut).",
    )
    parse_timeout: Duration = Field(
        timedelta(seconds=30), description="Time limit for parsing one feed in a worker process."
    )
    extract_timeout: Duration = Field(
        timedelta(seconds=30),
        description="Time limit for extracting one article page in a worker process.",
    )
    workers: int = Field(
        2, ge=1, le=64, description="Worker processes for feed parsing and article extraction."
    )
    backoff_base: Duration = Field(
        timedelta(minutes=1),
        description="First retry delay of a failing feed; doubled per failure, with jitter.",
    )
    backoff_max: Duration = Field(
        timedelta(hours=6), description="Longest retry delay of a failing feed."
    )
    broken_after: Duration = Field(
        timedelta(hours=1),
        description="A feed failing for this long is reported once as `source.broken`.",
    )
    retry_after_scope: Literal["feed", "host"] = Field(
        "feed",
        description="What a Retry-After holds: the feed that got it, or every feed of its host.",
    )

    @property
    def user_agent_string(self) -> str:
        return self.user_agent.replace("{contact}", self.contact)


class Defaults(_Model):
    interval: Duration = Field(
        timedelta(minutes=10), description="Poll interval of a feed that sets none."
    )
    min_interval: Duration = Field(
        timedelta(minutes=1),
        description="Shortest poll interval (also a floor for ttl and Cache-Control hints).",
    )
    max_interval: Duration = Field(
        timedelta(hours=6),
        description="Longest poll interval (a ceiling for ttl, Cache-Control, adaptive).",
    )
    adaptive: bool = Field(
        False, description="Poll a feed without an interval once per entry it published last week."
    )
    extract: bool = Field(True, description="Fetch each new article's page and extract its text.")
    channels: list[str] = Field(
        default_factory=lambda: ["console"],
        description="Channels a rule without `channels:` alerts.",
    )


class FeedConfig(_Model):
    """One feed. Settings it leaves out are filled from `defaults:` when the config is loaded,
    so a loaded feed carries its resolved values (`Settings.resolve_feed`)."""

    url: HttpUrlStr = Field(description="The feed's http(s) URL.")
    name: str | None = Field(None, description="Display name (default: the URL's host).")
    interval: Duration = Field(
        timedelta(minutes=10),
        description="How often to poll the feed. Default: `defaults.interval`.",
    )
    extract: bool = Field(
        True,
        description="Fetch each new entry's page and extract its text. "
        "Default: `defaults.extract`.",
    )
    adaptive: bool = Field(
        False,
        description="Poll by the feed's recent rate of new entries, between "
        "`defaults.min_interval` and `defaults.max_interval`, instead of every `interval`. "
        "Default: `defaults.adaptive` for a feed without its own `interval`, else false.",
    )
    tags: list[str] = Field(
        default_factory=list, description="Tags of the feed, searchable with `tags:` in queries."
    )
    allow_private: bool = Field(
        False, description="Allow a private address for this feed and its same-host article links."
    )
    enabled: bool = Field(True, description="`false` keeps the feed listed but never polled.")

    @property
    def display_name(self) -> str:
        return self.name or (urlsplit(self.url).hostname or self.url)


class ExampleDoc(_Model):
    title: str = Field("", description="The example article's title.")
    summary: str = Field("", description="The example article's summary.")
    body: str = Field("", description="The example article's body text.")
    url: str = Field("", description="The example article's URL.")
    feed: str = Field("", description="The name of the feed the example article came from.")
    author: str = Field("", description="The example article's author.")
    tags: list[str] = Field(default_factory=list, description="The example article's tags.")


Example = str | ExampleDoc


class Examples(_Model):
    match: list[Example] = Field(
        default_factory=list, description="Texts (bodies) or articles the rule must match."
    )
    no_match: list[Example] = Field(
        default_factory=list, description="Texts (bodies) or articles the rule must not match."
    )


class ScorerConfig(_Model):
    """A trained model that scores a rule's articles (`monitor train`; docs/evaluation.md)."""

    model: str = Field(
        description="model file written by `monitor train`, relative to the rule's file"
    )
    labels: str | None = Field(
        None,
        description="labels file (JSON lines) the model is trained on, relative to the rule's "
        "file; the rule's examples and stored feedback are used too",
    )
    threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="score (0-1) at or above which the model says yes"
    )
    combine: Literal["query", "query_or_model", "query_and_model"] = Field(
        "query_or_model",
        description="query: the query alone decides (the score is only shown); "
        "query_or_model: the query or a score at the threshold; query_and_model: the query "
        "and a score at the threshold",
    )


class RuleConfig(_Model):
    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
            max_length=100,
            description="Unique rule name: letters, digits, `_`, `.`, `-`.",
        ),
    ]
    query: Annotated[str, Field(min_length=1, description="The query in the rule language.")]
    description: str = Field("", description="Free text describing what the rule is for.")
    severity: Severity = Field(
        "medium", description="Severity of the rule's alerts: low, medium, high or critical."
    )
    channels: list[str] | None = Field(
        None, description="Channels this rule alerts (default: `defaults.channels`)."
    )
    enabled: bool = Field(True, description="`false` keeps the rule defined but never matched.")
    cooldown: Duration | None = Field(
        None,
        description="At most one alert of this rule per period; the others are kept as suppressed.",
    )
    updates: bool = Field(
        False, description="Send a `story.updated` message when an alerted story gains sources."
    )
    min_sources: int | None = Field(
        None,
        ge=1,
        description="Alert only once this many outlets carry the story (needs `within`).",
    )
    within: Duration | None = Field(
        None, description="The period in which `min_sources` outlets must carry the story."
    )
    examples: Examples = Field(
        default_factory=Examples,
        description="Texts the rule must and must not match, run by `monitor check`.",
    )
    scorer: ScorerConfig | None = Field(
        None, description="a trained model combined with the query (docs/evaluation.md)"
    )


if TYPE_CHECKING:  # the union is built from the registry at run time
    ChannelConfig: TypeAlias = _ChannelBase
else:
    ChannelConfig = channel_union()


class DeliverySettings(_Model):
    max_attempts: int = Field(
        20, ge=1, description="Attempts before a delivery is dead (still listed and replayable)."
    )
    give_up_after: Duration = Field(
        timedelta(hours=24), description="Age after which a failing delivery is dead."
    )
    backoff_base: Duration = Field(
        timedelta(seconds=5),
        description="First retry delay of a failed delivery; doubled per attempt, with jitter.",
    )
    backoff_max: Duration = Field(
        timedelta(minutes=30), description="Longest retry delay of a failed delivery."
    )
    lease: Duration = Field(
        timedelta(seconds=120),
        description=(
            "Longest a node keeps a claimed batch of deliveries: a send that cannot start "
            "within half of it (a rate limit, a slow receiver) is handed back. The claim itself "
            "is renewed by the heartbeat (`daemon.lease_term`), so a dead node's deliveries are "
            "taken over quickly."
        ),
    )
    batch: int = Field(50, ge=1, description="Deliveries claimed at once.")
    concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description=(
            "Deliveries one node sends at once to one channel (the channel's rate limit still "
            "holds). Deliveries of the same story to a channel always go out one after another, "
            "oldest first; different stories may overtake each other when this is above 1."
        ),
    )


class StorySettings(_Model):
    window: Duration = Field(
        timedelta(hours=72), description="How long a story stays open after its last article."
    )
    near_duplicate_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity of word shingles to join a story on text.",
    )
    num_perm: int = Field(
        128, ge=16, le=512, description="MinHash permutations: more is more exact, and slower."
    )
    shingle_size: int = Field(3, ge=1, le=8, description="Words per shingle.")


class RetentionSettings(_Model):
    articles: Duration | None = Field(
        timedelta(days=30),
        description=(
            "Age (since it was fetched) after which an article, its body, matches and story "
            "fingerprints are deleted; never sooner than `stories.window`, and never while a "
            "stored alert points to it or its story is still open. `null` keeps them forever."
        ),
    )
    alerts: Duration | None = Field(
        timedelta(days=365),
        description=(
            "Age after which an alert, its finished deliveries and then its article are "
            "deleted; never while a delivery of it is pending, failing or held, its story is "
            "open, it has feedback, or it is its rule's newest alert. `null` keeps them forever."
        ),
    )
    tombstones: Duration | None = Field(
        timedelta(days=365),
        description=(
            "How long a deleted article's feed + GUID record (a tombstone, about 45 bytes) is "
            "kept, so that an entry its feed still lists is not stored and alerted again. "
            "`null` keeps them forever."
        ),
    )
    batch: int = Field(
        500,
        ge=1,
        le=10_000,
        description="Rows deleted per transaction (each one a short turn of the store's writer).",
    )
    every: Duration = Field(
        timedelta(hours=1), description="How often the daemon prunes (and `monitor once` does)."
    )


class DaemonSettings(_Model):
    tick: Duration = Field(
        timedelta(seconds=2),
        description="How often due feeds are looked for while polls are in flight.",
    )
    deliver_every: Duration = Field(
        timedelta(seconds=1), description="How often due deliveries are looked for."
    )
    feed_batch: int = Field(20, ge=1, description="Due feeds leased at once.")
    poll_on_start: bool = Field(
        True,
        description="Poll every healthy feed when the daemon starts, so that nothing that "
        "appeared while it was down waits an interval. With several nodes set it to false: a "
        "node started beside running ones then polls only the feeds that are due and the work "
        "its killed predecessor left.",
    )
    summary_every: Duration = Field(
        timedelta(minutes=5),
        description="How often `monitor run` logs one INFO line of what it did since the last:"
        " polls (unchanged, failed), new entries, alerts, deliveries sent and failed; 0 is"
        " never. Each poll's own line is at DEBUG.",
    )
    stop_grace: Duration = Field(
        timedelta(seconds=10),
        description=(
            "On SIGTERM/SIGINT, how long deliveries being sent and polls in flight may finish; "
            "then they are cancelled and their delivery claims and feed leases given back."
        ),
    )
    feed_lease: Duration = Field(
        timedelta(minutes=5),
        description=(
            "Longest one poll of a feed may run (fetch, parsing, extraction): a poll still "
            "running after 80% of it is stopped and recorded as a timeout. Its lease is renewed "
            "meanwhile by the heartbeat (see `lease_term`)."
        ),
    )
    lease_term: Duration = Field(
        timedelta(seconds=20),
        description=(
            "How long a lease on a feed or a delivery lasts unless renewed. A running node "
            "renews the leases of the work it has in flight every `heartbeat`, so its work is "
            "never taken from it; the work of a node that died is taken over by the others "
            "once this has passed (plus up to one `tick`). At least twice `heartbeat`."
        ),
    )
    heartbeat: Duration = Field(
        timedelta(seconds=5),
        description="How often a node renews the leases of the feeds it is polling and the "
        "deliveries it is sending.",
    )
    health_listen: str | None = Field(
        None, description="`host:port` serving GET /healthz and /metrics (default: no server)."
    )
    regex_budget: Duration = Field(
        timedelta(milliseconds=200),
        description=(
            "Total time the /regex/ leaves of all rules may spend on one article (each also "
            "stops after 50 ms on a field). Once spent, the article's remaining regexes count "
            "as not matched, and the rule that ran it out is named in the log, /healthz, "
            "/metrics and `monitor status`."
        ),
    )
    regex_budget_per_poll: Duration = Field(
        timedelta(seconds=20),
        description=(
            "Total regex time of all the new articles of one poll of a feed. Once spent, the "
            "poll's remaining articles are still stored and matched, with their regexes "
            "counting as not matched."
        ),
    )

    @field_validator("health_listen")
    @classmethod
    def _health_listen(cls, value: str | None) -> str | None:
        # The older setting: the console's server, with no users (see WebSettings).
        if value and not is_loopback_host(value.rpartition(":")[0].strip("[]")):
            raise ValueError(
                f"refusing to listen on {value} without authentication: "
                "use `web.listen` with `web.users`, or listen on 127.0.0.1"
            )
        return value

    @model_validator(mode="after")
    def _lease_outlives_heartbeat(self) -> DaemonSettings:
        if self.lease_term < 2 * self.heartbeat:
            raise ValueError(
                f"daemon.lease_term ({self.lease_term}) must be at least twice daemon.heartbeat"
                f" ({self.heartbeat}), or a live node's leases could expire between renewals"
            )
        return self


class WebUser(_Model):
    """One console user: a scrypt password hash (`python -m monitor.web.auth`) or an API
    token (usually `${VAR}`), and a role."""

    password_hash: str | None = Field(
        None,
        description="scrypt hash of the password, as printed by `python -m monitor.web.auth`",
    )
    token: SecretStr | None = Field(
        None, description="API token (use `${VAR}`); sent as `Authorization: Bearer <token>`"
    )
    role: Literal["read", "operator"] = Field(
        "read", description="`read` sees everything; `operator` may also pause, retry and label"
    )

    @model_validator(mode="after")
    def _one_credential(self) -> WebUser:
        if not self.password_hash and self.token is None:
            raise ValueError("a web user needs `password_hash` or `token`")
        if self.password_hash and not self.password_hash.startswith("scrypt$"):
            raise ValueError(
                "`password_hash` must be a scrypt hash from `python -m monitor.web.auth`"
            )
        return self


class WebSettings(_Model):
    """The web console, its JSON API, `/healthz`, `/readyz` and `/metrics` (one server)."""

    listen: str = Field(
        "127.0.0.1:8080", description="host:port the console and health endpoints listen on"
    )
    users: dict[str, WebUser] = Field(
        default_factory=dict,
        description="who may log in; without users only /healthz, /readyz and /metrics answer",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="key signing session cookies (use `${VAR}`; the same on every node); "
        "random per process when unset, so sessions end at a restart",
    )
    cookie_secure: bool = Field(
        False, description="send the session cookie over HTTPS only (set behind a TLS proxy)"
    )
    session_max_age: Duration = Field(
        timedelta(hours=12), description="how long a login lasts without activity"
    )
    allow_unauthenticated: bool = Field(
        False,
        description="listen on a non-loopback address without users (only /healthz, /readyz "
        "and /metrics answer): for a container whose port is published on the host's loopback",
    )
    public_health: bool = Field(
        True,
        description="/healthz and /readyz answer anyone (for orchestrators' probes); false: "
        "only a client on a loopback address, the `metrics_token`, or a user of any role",
    )
    public_metrics: bool = Field(
        False,
        description="/metrics answers anyone; false (default): only a client on a loopback "
        "address, a request with the `metrics_token`, or a user of any role",
    )
    probes_from_loopback: bool = Field(
        True,
        description="a client on a loopback address may read /metrics (and closed health "
        "endpoints) without credentials; set false behind a reverse proxy on the same host",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token (use `${VAR}`) that may read /metrics, /healthz and /readyz "
        "and nothing else: for Prometheus scraping from another host",
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description="failed logins per user name within `login_window` before further "
        "attempts for that name are refused (429) until the oldest failure is older than it",
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="failed logins, and failed API-token attempts (counted apart), per client "
        "address within `login_window` before further attempts from that address are refused "
        "(429)",
    )
    login_window: Duration = Field(
        timedelta(minutes=15), description="the window failed logins are counted in"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"`listen` must be host:port, got {value!r}")
        return value

    @model_validator(mode="after")
    def _auth_off_loopback(self) -> WebSettings:
        host = self.listen.rpartition(":")[0].strip("[]")
        if not self.users and not self.allow_unauthenticated and not is_loopback_host(host):
            raise ValueError(
                f"refusing to listen on {self.listen} without authentication: "
                "add `web.users` or listen on 127.0.0.1 (or set `web.allow_unauthenticated`)"
            )
        return self


def is_loopback_host(host: str) -> bool:
    """Whether a listen host only accepts local connections (names other than localhost
    count as not loopback: what they resolve to can change)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """The whole config. Env `MONITOR_*` (nested with `__`) overrides the YAML file."""

    model_config = SettingsConfigDict(
        env_prefix="MONITOR_", env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    database: str = Field(
        "sqlite:///monitor.db",
        description="SQLAlchemy URL of the store: SQLite, or PostgreSQL for several nodes.",
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description=(
            "Most connections one node opens to PostgreSQL (SQLite keeps its own small pool). "
            "All nodes together need at most nodes x this, which must stay below the server's "
            "`max_connections` (100 by default) minus what other clients use."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe log messages written (to standard error)."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`: one readable line per message. `json`: one JSON object per line "
        "with `ts` (ISO 8601, UTC), `level`, `logger`, `message`, and `feed`, `rule` or "
        "`delivery` when the message is about one; for log collectors (journald, Loki, ELK).",
    )
    fetch: FetchSettings = Field(
        default_factory=FetchSettings, description="How the HTTP client fetches feeds and pages."
    )
    defaults: Defaults = Field(
        default_factory=Defaults,
        description="Defaults for feeds and rules that do not set their own.",
    )
    feeds: list[FeedConfig] = Field(
        default_factory=list,
        description="The feeds to poll; an item `{opml: FILE}` imports an OPML file's feeds.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Rule, entity, feed and channel files to merge, as paths or globs "
        "relative to this file's folder; they must stay inside that folder unless "
        "`include_outside` is set.",
    )
    include_outside: bool = Field(
        False,
        description="Allow `include:` and `opml:` paths that resolve outside the config "
        "file's folder (absolute paths, `..`, symbolic links). Read from the config file "
        "itself; the environment cannot turn it on.",
    )
    entities: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Named lists of alias phrases for `entity:NAME` in queries.",
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="The rules.")
    fold_accents: bool = Field(
        True,
        description="rules and text compare Latin letters without their accents "
        "(cafe finds café, irak finds Irák); other scripts keep theirs",
    )
    channels: dict[str, ChannelConfig] = Field(
        default_factory=dict,
        description="Named alert destinations; a `console` channel always exists.",
    )
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings, description="Retries and leases of alert deliveries."
    )
    stories: StorySettings = Field(
        default_factory=StorySettings, description="How articles are grouped into stories."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="How long articles and alerts are kept (see docs/retention.md).",
    )
    daemon: DaemonSettings = Field(
        default_factory=DaemonSettings, description="The daemon's loops and health server."
    )
    web: WebSettings | None = Field(
        None, description="The web console and health endpoints (off when absent)."
    )

    _source: SourceMap | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, so a deployment can override any key.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if "console" not in self.channels:
            # The default channel, so a new user sees alerts at once.
            self.channels["console"] = ConsoleChannel(type="console")
        for feed in self.feeds:
            self.resolve_feed(feed)
        return self

    def resolve_feed(self, feed: FeedConfig) -> FeedConfig:
        """Fill the settings `feed` does not set itself from `defaults:` (in place, once)."""
        given = set(feed.model_fields_set)
        d = self.defaults
        if "adaptive" not in given:
            # An explicit interval is a promise to poll at that rate.
            feed.adaptive = d.adaptive and "interval" not in given
        if "interval" not in given:
            feed.interval = d.interval
        if "extract" not in given:
            feed.extract = d.extract
        return feed

    # ---- derived views

    @property
    def feed_list(self) -> list[FeedConfig]:
        """Feeds after OPML expansion (OPML refs are expanded at load time)."""
        return [f for f in self.feeds if f.enabled]

    @property
    def active_rules(self) -> list[RuleConfig]:
        return [r for r in self.rules if r.enabled]

    def rule_channels(self, rule: RuleConfig) -> list[str]:
        return rule.channels if rule.channels is not None else self.defaults.channels

    def feed_interval(self, feed: FeedConfig) -> timedelta:
        """The feed's resolved interval (kept for callers; read `feed.interval`)."""
        return feed.interval

    def feed_extract(self, feed: FeedConfig) -> bool:
        """The feed's resolved `extract` (kept for callers; read `feed.extract`)."""
        return feed.extract

    @property
    def source(self) -> SourceMap:
        return self._source or SourceMap()


def rebuild_channels() -> None:
    """Rebuild `channels:` from the registry: a kind registered after this module loaded
    is accepted from then on (and one removed from `CHANNEL_CONFIGS` is not)."""
    global ChannelConfig
    ChannelConfig = channel_union()
    old = Settings.model_fields["channels"]
    Settings.model_fields["channels"] = FieldInfo.merge_field_infos(
        old, annotation=dict[str, ChannelConfig]
    )
    Settings.model_rebuild(force=True)


on_register(rebuild_channels)


# --------------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    style: str | None = None  # YAML scalar style: None plain, "'" '"' quoted, "|" ">" block
    indent: int = 0  # for block scalars: the content's indentation (0-based column)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SourceMap:
    """Where each value of the merged config came from: path tuple -> file position."""

    def __init__(self) -> None:
        self.positions: dict[tuple[Any, ...], Pos] = {}
        self.key_positions: dict[tuple[Any, ...], Pos] = {}  # where a mapping key is written
        self.default_file = "<config>"
        self._query_text: dict[int, str] = {}

    def locate(self, loc: tuple[Any, ...]) -> Pos:
        """The position of `loc`, or of its nearest ancestor that has one.

        Elements of `loc` that are not in the map (pydantic's union tags such as `webhook`)
        are skipped rather than ending the walk.
        """
        best: Pos | None = self.positions.get(())
        path: tuple[Any, ...] = ()
        for elem in loc:
            candidate = (*path, elem)
            if candidate in self.positions:
                path = candidate
                best = self.positions[candidate]
        return best or Pos(self.default_file, 1, 1)

    def query_pos(self, rule_index: int, offset: int) -> Pos:
        """File position of character `offset` of rule `rule_index`'s query string."""
        pos = self.positions.get(("rules", rule_index, "query"))
        if pos is None:
            return self.locate(("rules", rule_index))
        return _offset_in_scalar(pos, offset, self._query_text.get(rule_index, ""))


def _offset_in_scalar(pos: Pos, offset: int, text: str) -> Pos:
    before = text[:offset]
    if pos.style in ("|", ">"):
        line_no = before.count("\n")
        col = len(before) - (before.rfind("\n") + 1)
        return Pos(pos.file, pos.line + 1 + line_no, pos.indent + col + 1)
    quote = 1 if pos.style in ("'", '"') else 0
    if "\n" in before:  # a plain or quoted scalar folded over lines: best effort
        return Pos(pos.file, pos.line + before.count("\n"), 1)
    return Pos(pos.file, pos.line, pos.col + quote + offset)


# --------------------------------------------------------------------------- loading

# libyaml's parser when PyYAML was built with it (the wheels are): the same nodes and marks,
# composed about ten times faster than the pure-Python one (0.4 s for 2,000 feeds).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Loaded:
    """One YAML file turned into Python values plus the position of every value."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.positions: dict[tuple[Any, ...], Pos] = {}
        self.key_positions: dict[tuple[Any, ...], Pos] = {}
        self.data: Any = None
        self._lines: list[str] = []
        self.load()

    def load(self) -> None:
        name = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problems.append(f"{name}:1:1: file not found")
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{name}:1:1: cannot read file: {exc}")
            return
        self._lines = text.splitlines()
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.problems.append(f"{name}:{line}:{col}: invalid YAML: {exc.problem or exc}")
            return
        except yaml.YAMLError as exc:
            self.problems.append(f"{name}:1:1: invalid YAML: {exc}")
            return
        if node is None:
            self.data = {}
            return
        # Aliases need an anchor (`&name`): a text without `&` has none to check.
        bomb = _alias_problem(node, name) if "&" in text else None
        if bomb is not None:
            self.problems.append(bomb)
            return
        self.data = self._build(node, ())

    def _pos(self, node: yaml.Node) -> Pos:
        style = getattr(node, "style", None)
        indent = 0
        if style in ("|", ">") and node.start_mark.line + 1 < len(self._lines):
            # Content starts on the line after the `|` header; find its indentation.
            for raw in self._lines[node.start_mark.line + 1 :]:
                if raw.strip():
                    indent = len(raw) - len(raw.lstrip(" "))
                    break
        return Pos(
            str(self.path), node.start_mark.line + 1, node.start_mark.column + 1, style, indent
        )

    def _build(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.positions[path] = self._pos(node)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        f"{self._pos(key_node)}: YAML merge keys (<<) are not "
                        "supported in config files"
                    )
                    continue
                key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str | int):
                    self.problems.append(f"{self._pos(key_node)}: keys must be plain strings")
                    continue
                if key in out:
                    self.problems.append(f"{self._pos(key_node)}: duplicate key {key!r}")
                    continue
                self.positions[(*path, key)] = self._pos(value_node)
                self.key_positions[(*path, key)] = self._pos(key_node)
                out[key] = self._build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(v, (*path, i)) for i, v in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self._scalar(node)
        if isinstance(value, str):
            value = self._substitute(value, self._pos(node))
        return value

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if not node.style and node.tag == "tag:yaml.org,2002:null":
            return None  # `key: null`, `key: ~`, `key:` mean "not set", with either parser
        if node.style is not None:  # quoted or block (libyaml: also plain): the text
            return node.value
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
        finally:
            loader.dispose()

    def _substitute(self, value: str, pos: Pos) -> str:
        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                value = os.environ[var]
                secrets.register(var, value)
                return value
            if default is not None:
                return default
            self.problems.append(
                f"{pos}: environment variable {var} is not set (referenced as ${{{var}}})"
            )
            return ""

        return _VAR_RE.sub(repl, value)


#: How many values YAML aliases may add to a document (beyond the values written out). A config
#: that repeats a block with `*alias` stays far below; an alias bomb (nested aliases that
#: expand a 1 KB file to billions of values) is refused before anything is expanded.
MAX_ALIAS_VALUES = 10_000


class _AliasBomb(Exception):
    def __init__(self, node: yaml.Node, why: str) -> None:
        self.node = node
        self.why = why


def _alias_problem(root: yaml.Node, name: str) -> str | None:
    """A problem if the document's aliases expand it beyond `MAX_ALIAS_VALUES` more values
    than it spells out, or refer to themselves. Linear in the document (sizes memoised per
    node), so a bomb costs what its text costs."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    shared: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            if not shared:
                shared.append(node)
            return sizes[key]
        if key in open_nodes:
            raise _AliasBomb(node, "an alias refers to the value it is part of")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v) for v in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    try:
        expanded = size(root)
    except _AliasBomb as bomb:
        mark = bomb.node.start_mark
        return f"{name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {bomb.why}"
    except RecursionError:
        return f"{name}:1:1: invalid YAML: values are nested too deeply"
    if expanded - len(sizes) <= MAX_ALIAS_VALUES:
        return None
    mark = shared[0].start_mark if shared else root.start_mark
    return (
        f"{name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: aliases (*name) expand the "
        f"file to {expanded:,} values, more than {MAX_ALIAS_VALUES:,} beyond the "
        f"{len(sizes):,} it spells out (an alias bomb?); the first reused anchor is here"
    )


def _expand_opml(path: Path, pos: Pos, problems: list[str]) -> list[dict[str, Any]]:
    try:
        tree = ET.parse(path)  # stdlib expat: no external entities, amplification-limited
    except (OSError, ET.ParseError) as exc:
        problems.append(f"{pos}: cannot read OPML file {path}: {exc}")
        return []
    feeds: list[dict[str, Any]] = []
    for outline in tree.iter("outline"):
        url = outline.get("xmlUrl")
        if url:
            entry: dict[str, Any] = {"url": url}
            title = outline.get("title") or outline.get("text")
            if title:
                entry["name"] = title
            feeds.append(entry)
    return feeds


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Load and validate a config file with its includes. Raises `ConfigError`."""
    root = Path(path)
    problems: list[str] = []
    source = SourceMap()
    source.default_file = str(root)
    main = _Loaded(root, problems)
    data = _main_mapping(root, main, problems)
    source.positions.update(main.positions)
    source.key_positions.update(main.key_positions)
    _include_files(root, main, data, source, problems)
    _expand_feeds(root, data, source, problems)
    settings = _validate(data, source, problems)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _main_mapping(root: Path, main: _Loaded, problems: list[str]) -> dict[str, Any]:
    """The main file's top-level mapping; a file that is not one ends the load."""
    if problems and main.data is None:
        raise ConfigError(problems)
    data = main.data if main.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([f"{root}:1:1: the config must be a mapping of sections"])
    return data


def _expand_feeds(root: Path, data: dict[str, Any], source: SourceMap, problems: list[str]) -> None:
    """`{opml: file}` entries become the feeds they list; feed URLs keep their `${VAR}` form."""
    feeds = data.get("feeds")
    if not isinstance(feeds, list):
        return
    expanded: list[Any] = []
    for i, item in enumerate(feeds):
        if isinstance(item, dict) and isinstance(item.get("opml"), str):
            fpos = source.positions.get(("feeds", i), Pos(str(root), 1, 1))
            # The reference's other keys (allow_private, interval, tags, extract, ...) are
            # options of every feed it lists; the model checks them as a feed's own.
            options = {k: v for k, v in item.items() if k != "opml"}
            for f in _opml_feeds(root, data, item["opml"], fpos, problems):
                source.positions[("feeds", len(expanded))] = fpos
                expanded.append({**options, **f})
        else:
            if ("feeds", i) in source.positions and i != len(expanded):
                _move_positions(source, ("feeds", i), ("feeds", len(expanded)))
            expanded.append(item)
    data["feeds"] = expanded
    _template_feed_urls(expanded)


def _opml_feeds(
    root: Path, data: dict[str, Any], name: str, pos: Pos, problems: list[str]
) -> list[dict[str, Any]]:
    opml = root.parent / name
    outside = _outside(opml, root, _opted_in(data))
    if outside:
        problems.append(f"{pos}: OPML file {outside}")
        return []
    return _expand_opml(opml, pos, problems)


def _validate(data: dict[str, Any], source: SourceMap, problems: list[str]) -> Settings | None:
    """The model of `data` (environment overrides applied), or None with its problems."""
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, source))
        return None
    except SettingsError as exc:  # an environment value that is not valid JSON
        names = sorted(_env_paths().values())
        problems.append(f"environment ({', '.join(names)}): {exc}; use JSON for a section")
        return None
    source._query_text = {i: r.query for i, r in enumerate(settings.rules)}
    settings._source = source
    problems.extend(_reference_problems(settings, source))
    return settings


def _validation_problems(exc: ValidationError, source: SourceMap) -> Iterator[str]:
    env = _env_paths()
    for err in exc.errors():
        loc = tuple(err["loc"])
        where: object = source.locate(loc)
        path = tuple(p for p in loc if p not in _UNION_TAGS)
        dotted = ".".join(str(p) for p in path)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}" + _did_you_mean(str(loc[-1]), _keys_at(loc[:-1]))
            where = source.key_positions.get(loc, where)
        variable = _env_variable(path, env)
        if variable is not None:  # the value came from the environment, not from a file
            where = f"environment variable {variable}"
        yield f"{where}: {dotted}: {msg}"


def _env_paths() -> dict[tuple[str, ...], str]:
    """`MONITOR_A__B` variables as the setting paths they override (`("a", "b")`)."""
    prefix = Settings.model_config.get("env_prefix", "").upper()
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    paths: dict[tuple[str, ...], str] = {}
    for name in os.environ:
        if prefix and name.upper().startswith(prefix):
            paths[tuple(p.lower() for p in name[len(prefix) :].split(delimiter))] = name
    return paths


def _env_variable(path: tuple[Any, ...], env: dict[tuple[str, ...], str]) -> str | None:
    """The environment variable that set the value at `path` (or one of its parents)."""
    lowered = tuple(str(p).lower() for p in path)
    for n in range(len(lowered), 0, -1):
        if lowered[:n] in env:
            return env[lowered[:n]]
    return None


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(loc: tuple[Any, ...]) -> set[str]:
    """The keys the model accepts at `loc` (a pydantic error location), for "did you mean"."""
    types: list[Any] = [Settings]
    for elem in loc:
        types = _step(_unwrap(types), elem)
    keys: set[str] = set()
    for t in _unwrap(types):
        if isinstance(t, type) and issubclass(t, BaseModel):
            for name, f in t.model_fields.items():
                keys.add(f.alias or name)
    return keys


def _unwrap(types: list[Any]) -> list[Any]:
    """Annotated/Optional/Union annotations as the plain types they allow."""
    out: list[Any] = []
    pending = list(types)
    while pending:
        t = pending.pop()
        origin = get_origin(t)
        if origin is Annotated:
            pending.append(get_args(t)[0])
        elif origin in (Union, UnionType):
            pending.extend(get_args(t))
        else:
            out.append(t)
    return out


def _step(types: list[Any], elem: Any) -> list[Any]:
    """The types one location element further down (a field, a list item, a dict value, or
    the member of a tagged union named by its tag)."""
    out: list[Any] = []
    for t in types:
        origin = get_origin(t)
        if origin is list and isinstance(elem, int):
            out.append(get_args(t)[0])
        elif origin is dict:
            out.append(get_args(t)[1])
        elif isinstance(t, type) and issubclass(t, BaseModel):
            if elem in t.model_fields:
                out.append(t.model_fields[elem].annotation)
            elif elem == t.__name__ or _tag_of(t) == elem:
                out.append(t)
    return out


def _tag_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    args = get_args(field.annotation) if field is not None else ()
    return args[0] if args else None


def _opted_in(data: dict[str, Any]) -> bool:
    """`include_outside` as the model will read it (libyaml leaves plain scalars strings)."""
    try:
        return bool(TypeAdapter(bool).validate_python(data.get("include_outside", False)))
    except ValidationError:
        return False


def _outside(file: Path, root: Path, allowed: bool) -> str | None:
    """Why `file` may not be read (it resolves outside the config's folder), or None."""
    if allowed:
        return None
    folder = root.parent.resolve()
    if file.resolve().is_relative_to(folder):
        return None
    return (
        f"{file} is outside the config's folder {folder}; set `include_outside: true` "
        "in the config to allow reading it"
    )


def _include_files(
    root: Path, main: _Loaded, data: dict[str, Any], source: SourceMap, problems: list[str]
) -> None:
    """Merge the files `include:` names (globs relative to the config file's folder)."""
    includes = data.get("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        return
    allowed = _opted_in(data)
    for i, pattern in enumerate(includes):
        ipos = main.positions.get(("include", i), Pos(str(root), 1, 1))
        if not isinstance(pattern, str):
            problems.append(f"{ipos}: include entries are file paths or globs")
            continue
        matches = sorted(glob.glob(str(root.parent / pattern), recursive=True))
        if not matches:
            problems.append(f"{ipos}: include {pattern!r} matches no file")
        for file in matches:
            outside = _outside(Path(file), root, allowed)
            if outside:
                problems.append(f"{ipos}: include {pattern!r} matches {outside}")
            else:
                _merge_include(data, source, Path(file), problems)


def _template_feed_urls(feeds: list[Any]) -> None:
    """A feed's URL is kept in its `${VAR}` form: that is its identity, what the store keeps and
    what `status` and the logs show. Only the fetch expands it (`monitor.secrets.expand`)."""
    for item in feeds:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            item["url"] = secrets.redact(item["url"])


_UNION_TAGS = {"console", "webhook", "slack", "email", "apprise", "str", "ExampleDoc"}


def _move_positions(source: SourceMap, old: tuple[Any, ...], new: tuple[Any, ...]) -> None:
    for table in (source.positions, source.key_positions):
        moved = {k: v for k, v in table.items() if k[: len(old)] == old}
        for k, v in moved.items():
            table[new + k[len(old) :]] = v


def _merge_include(
    data: dict[str, Any], source: SourceMap, file: Path, problems: list[str]
) -> None:
    inc = _Loaded(file, problems)
    if inc.data is None:
        return
    if not isinstance(inc.data, dict):
        problems.append(
            f"{file}:1:1: an included file must be a mapping "
            "(with rules:, entities:, feeds: or channels:)"
        )
        return
    for key, value in inc.data.items():
        kpos = inc.positions.get((key,), Pos(str(file), 1, 1))
        if key in ("rules", "feeds"):
            _merge_list(data, source, inc, key, value, kpos)
        elif key in ("entities", "channels"):
            _merge_map(data, source, inc, key, value, kpos)
        else:
            problems.append(
                f"{inc.key_positions.get((key,), kpos)}: unknown key {key!r} in an included file"
                + _did_you_mean(str(key), ("rules", "entities", "feeds", "channels"))
                + " (allowed: rules, entities, feeds, channels)"
            )


def _merge_list(
    data: dict[str, Any], source: SourceMap, inc: _Loaded, key: str, value: Any, kpos: Pos
) -> None:
    """Append an included file's `rules:` or `feeds:` items, moving their positions along."""
    if not isinstance(value, list):
        inc.problems.append(f"{kpos}: {key} must be a list")
        return
    target = data.setdefault(key, [])
    if not isinstance(target, list):
        return
    for i, item in enumerate(value):
        new_index = len(target)
        for mine, theirs in (
            (source.positions, inc.positions),
            (source.key_positions, inc.key_positions),
        ):
            for k, v in theirs.items():
                if k[:2] == (key, i):
                    mine[(key, new_index, *k[2:])] = v
        target.append(item)


def _merge_map(
    data: dict[str, Any], source: SourceMap, inc: _Loaded, key: str, value: Any, kpos: Pos
) -> None:
    """Add an included file's `entities:` or `channels:`; a name defined twice is an error."""
    if not isinstance(value, dict):
        inc.problems.append(f"{kpos}: {key} must be a mapping")
        return
    target_map = data.setdefault(key, {})
    if not isinstance(target_map, dict):
        return
    for name, item in value.items():
        if name in target_map:
            inc.problems.append(
                f"{inc.positions.get((key, name), kpos)}: {key[:-1]} {name!r} is already defined"
            )
            continue
        for mine, theirs in (
            (source.positions, inc.positions),
            (source.key_positions, inc.key_positions),
        ):
            for k, v in theirs.items():
                if k[:2] == (key, name):
                    mine[k] = v
        target_map[name] = item


def _reference_problems(settings: Settings, source: SourceMap) -> Iterator[str]:
    seen: dict[str, int] = {}
    for i, rule in enumerate(settings.rules):
        if rule.name in seen:
            yield f"{source.locate(('rules', i, 'name'))}: duplicate rule name {rule.name!r}"
        seen[rule.name] = i
        for j, ch in enumerate(settings.rule_channels(rule)):
            if ch not in settings.channels:
                where = source.locate(("rules", i, "channels", j))
                yield (
                    f"{where}: rule {rule.name!r} names channel {ch!r}, which is not defined"
                    f" (defined: {', '.join(sorted(settings.channels))})"
                )
        if (rule.min_sources is None) != (rule.within is None) and rule.min_sources is not None:
            yield f"{source.locate(('rules', i))}: min_sources needs within (e.g. within: 1h)"
    for j, ch in enumerate(settings.defaults.channels):
        if ch not in settings.channels:
            yield (
                f"{source.locate(('defaults', 'channels', j))}: default channel {ch!r} "
                "is not defined"
            )
    urls: dict[str, int] = {}
    for i, feed in enumerate(settings.feeds):
        if feed.url in urls:
            yield f"{source.locate(('feeds', i))}: feed {feed.url} is listed twice"
        urls[feed.url] = i
    for name in settings.entities:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            yield (
                f"{source.locate(('entities', name))}: entity name {name!r} must be a word "
                "(letters, digits, _)"
            )
