"""What the console needs from the daemon, in one object (`Console`), built by `from_daemon`.

The app reads the settings and the rule set through callables, so a SIGHUP reload (new users,
rules, channels) is seen by the next request without restarting the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from monitor.config import Settings, WebSettings
from monitor.errors import ConfigError
from monitor.metrics import Metrics
from monitor.rules import RuleSet
from monitor.store import Store
from monitor.store.console import ConsoleRepo
from monitor.web.auth import LoginLimiter
from monitor.web.live import AlertFeed

if TYPE_CHECKING:
    from monitor.daemon import Daemon

PageFetcher = Callable[[str], Awaitable[dict[str, str]]]


@dataclass
class Console:
    store: Store
    settings: Callable[[], Settings]
    ruleset: Callable[[], RuleSet]
    snapshot: Callable[[], Awaitable[dict[str, Any]]]
    metrics: Metrics
    stalled_after: float = 60.0
    workers_up: Callable[[], bool] = lambda: True
    fetch_page: PageFetcher | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], float] = time.time
    logins: LoginLimiter = field(default_factory=LoginLimiter)
    #: Wrong API tokens per client address (the login form's limit per address applies).
    tokens: LoginLimiter = field(
        default_factory=lambda: LoginLimiter(label="api token", noun="failed token attempts")
    )
    repo: ConsoleRepo = field(init=False)
    live: AlertFeed = field(init=False)

    def __post_init__(self) -> None:
        self.repo = ConsoleRepo(self.store.engine)
        self.live = AlertFeed(lambda: self.repo, self.stopping)

    @property
    def web(self) -> WebSettings:
        return web_settings(self.settings()) or WebSettings()


def web_settings(settings: Settings) -> WebSettings | None:
    """The `web:` section, or the one `daemon.health_listen` (the older setting) implies;
    None when neither is set (no server). Both at once is an error."""
    legacy = settings.daemon.health_listen
    if settings.web is not None and legacy:
        raise ConfigError(
            [
                "daemon.health_listen: replaced by web.listen (it serves /healthz, /readyz, "
                "/metrics and the console); remove daemon.health_listen"
            ]
        )
    if settings.web is not None:
        return settings.web
    if legacy:
        try:
            return WebSettings(listen=legacy)
        except ValueError as exc:
            detail = "; ".join(e["msg"] for e in getattr(exc, "errors", lambda: [])())
            raise ConfigError([f"daemon.health_listen: {detail or exc}"]) from None
    return None


def from_daemon(daemon: Daemon, metrics: Metrics) -> Console:
    rt = daemon.rt

    async def fetch_page(url: str) -> dict[str, str]:
        from monitor.fetch import HTML_ACCEPT

        fs = rt.settings.fetch
        page = await rt.fetcher.fetch(url, accept=HTML_ACCEPT, max_bytes=fs.max_page_bytes)
        extracted = await rt.workers.extract(
            page.body, url=page.final_url, timeout=fs.extract_timeout.total_seconds()
        )
        if extracted is None:
            raise ValueError(f"no article text found at {url}")
        return {"title": extracted.title or "", "summary": "", "body": extracted.text, "url": url}

    d = rt.settings.daemon
    return Console(
        store=rt.store,
        settings=lambda: rt.settings,
        ruleset=lambda: rt.pipeline.ruleset,
        snapshot=daemon.snapshot,
        metrics=metrics,
        stalled_after=max(60.0, 10 * d.tick.total_seconds()),
        workers_up=lambda: rt.workers.ready,
        fetch_page=fetch_page,
        stopping=daemon.stopping,
    )
