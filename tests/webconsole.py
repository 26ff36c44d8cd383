"""Helpers for the web console tests: a config with console users, a Runtime that has polled a
loopback feed (so the store holds real alerts, stories and deliveries), and a logged-in
Starlette TestClient on the console's app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.testclient import TestClient

from monitor.daemon import Daemon, Runtime, load_checked
from monitor.metrics import Metrics
from monitor.web.app import create_app
from monitor.web.auth import hash_password
from monitor.web.context import Console, from_daemon
from tests.feedserver import Item, NewsSite

PASSWORDS = {"olga": "operator-pass-1", "ravi": "reader-pass-1"}
TOKEN = "tok-" + "x" * 28
HOSTILE = "<script>alert('owned')</script><b>bold</b>"
ITEMS = [
    Item(
        "Rocket attack on US troops at Ain al-Asad",
        "/a/1.html",
        "g-1",
        "Several rockets hit a base hosting US troops in western Iraq.",
    ),
    Item(
        f"Drone strike on US troops {HOSTILE}",
        "/a/2.html",
        "g-2",
        "A drone struck US troops in Syria. &lt;script&gt;alert(2)&lt;/script&gt;",
    ),
    Item("Weather in Paris", "/a/3.html", "g-3", "Sunny and mild, no news of troops."),
]
# Hashing is slow on purpose: computed once per test session.
HASHES = {name: hash_password(pw) for name, pw in PASSWORDS.items()}


def write_config(tmp: Path, site: NewsSite, *, web: str | None = None, extra: str = "") -> Path:
    cfg = tmp / "monitor.yaml"
    web = (
        web
        if web is not None
        else f"""
web:
  listen: "127.0.0.1:0"
  secret_key: "test-secret-key-0123456789"
  users:
    olga: {{password_hash: "{HASHES["olga"]}", role: operator}}
    ravi: {{password_hash: "{HASHES["ravi"]}", role: read}}
    bot: {{token: "{TOKEN}", role: read}}
"""
    )
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
defaults: {{interval: 1h, min_interval: 1s, extract: false, channels: [hook]}}
daemon: {{tick: 0.5s, deliver_every: 0.5s}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback News, allow_private: true}}
rules:
  - name: us-troops
    query: '"US troops" AND (rocket OR drone OR attack)'
    severity: high
    examples:
      match: ["Rocket attack on US troops in Iraq"]
      no_match: ["Weather in Paris"]
channels:
  hook: {{type: webhook, url: "http://127.0.0.1:9/hook", allow_private: true}}
{web}
{extra}
""")
    return cfg


@dataclass
class Env:
    rt: Runtime
    daemon: Daemon
    console: Console
    site: NewsSite


@contextmanager
def polled_env(
    tmp: Path, *, items: list[Item] | None = None, database: str | None = None
) -> Iterator[Env]:
    """A console over a store that has polled the loopback feed once (`database`: another
    store's URL instead of the SQLite file in `tmp`)."""
    with NewsSite() as site:
        site.feed("/feed.xml", items or ITEMS)
        cfg = write_config(tmp, site)
        if database is not None:
            cfg.write_text(cfg.read_text().replace(f"sqlite:///{tmp}/monitor.db", database))
        rt = Runtime(load_checked(cfg), config_path=str(cfg))
        try:
            asyncio.run(rt.run_cycle())
            daemon = Daemon(rt)
            yield Env(rt, daemon, from_daemon(daemon, Metrics()), site)
        finally:
            asyncio.run(rt.aclose())


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def login(client: TestClient, name: str) -> str:
    """Log `name` in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    res = client.post(
        "/login",
        data={"username": name, "password": PASSWORDS[name], "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    return csrf_of(client.get("/alerts").text)


def client_for(console: Console) -> TestClient:
    return TestClient(create_app(console), base_url="http://127.0.0.1")
