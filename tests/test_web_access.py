"""Who may read /healthz, /readyz and /metrics; login rate limiting; the 304 ratio from the
store; the timeline's delivery-status filter giving the same answer by either query shape."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from monitor.metrics import Metrics
from monitor.store import console as console_store
from monitor.store import schema as s
from monitor.store.console import AlertFilter
from monitor.store.engine import write_tx
from monitor.web.app import create_app
from monitor.web.auth import LoginLimiter, is_loopback_client
from monitor.web.context import Console, from_daemon
from monitor.web.live import AlertFeed
from tests.webconsole import PASSWORDS, TOKEN, Env, csrf_of, polled_env

pytestmark = pytest.mark.slow
METRICS_TOKEN = "metrics-" + "m" * 24


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with polled_env(tmp_path_factory.mktemp("webaccess")) as e:
        yield e


def console_with(env: Env, **web: Any) -> Console:
    """The env's console with some `web:` settings changed (a fresh login limiter)."""
    settings = env.rt.settings
    assert settings.web is not None
    changed = settings.model_copy(update={"web": settings.web.model_copy(update=web)})
    return dataclasses.replace(
        env.console, settings=lambda: changed, logins=LoginLimiter(), tokens=LoginLimiter()
    )


def client(console: Console, host: str = "10.1.2.3") -> TestClient:
    """A client whose peer address is `host` (not loopback unless it is one)."""
    return TestClient(create_app(console), base_url="http://127.0.0.1", client=(host, 40000))


def codes(c: TestClient, headers: dict[str, str] | None = None) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        c.get(p, headers=headers or {}).status_code for p in ("/healthz", "/readyz", "/metrics")
    )


# ---------------------------------------------------------------------- probes


def test_default_health_open_metrics_only_loopback_token_or_user(env: Env) -> None:
    con = console_with(env, metrics_token=SecretStr(METRICS_TOKEN))
    remote = client(con)
    health, ready, metrics = codes(remote)
    assert health == 200 and ready in (200, 503) and metrics == 401
    assert "needs a login" in remote.get("/metrics").json()["error"]
    assert codes(remote, {"Authorization": "Bearer wrong"})[2] == 401
    assert codes(remote, {"Authorization": f"Bearer {METRICS_TOKEN}"})[2] == 200
    assert codes(remote, {"Authorization": f"Bearer {TOKEN}"})[2] == 200  # a read user
    for host in ("127.0.0.1", "::1"):
        body = client(con, host).get("/metrics")
        assert body.status_code == 200 and "monitor_polls_total" in body.text
    # The metrics token opens the probes, nothing else.
    assert (
        remote.get(
            "/api/v1/alerts", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        ).status_code
        == 401
    )
    # Behind a reverse proxy on the same host, loopback is everyone: it can be turned off.
    behind_proxy = console_with(env, probes_from_loopback=False)
    assert client(behind_proxy, "127.0.0.1").get("/metrics").status_code == 401
    assert client(behind_proxy, "127.0.0.1").get("/healthz").status_code == 200


def test_public_metrics_and_closed_health(env: Env) -> None:
    open_metrics = client(console_with(env, public_metrics=True))
    assert codes(open_metrics)[2] == 200
    closed = console_with(env, public_health=False, metrics_token=SecretStr(METRICS_TOKEN))
    remote = client(closed)
    assert codes(remote) == (401, 401, 401)
    assert codes(remote, {"Authorization": f"Bearer {METRICS_TOKEN}"})[0] == 200
    assert codes(remote, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert codes(client(closed, "127.0.0.1"))[0] == 200
    # Logged in with a session (any role): the probes answer.
    page = remote.get("/login")
    remote.post(
        "/login",
        data={"username": "ravi", "password": PASSWORDS["ravi"], "csrf": csrf_of(page.text)},
    )
    assert codes(remote)[0] == 200 and codes(remote)[2] == 200


def test_loopback_clients() -> None:
    for host in ("127.0.0.1", "127.5.5.5", "::1", "::ffff:127.0.0.1"):
        assert is_loopback_client(host), host
    for host in ("10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "testclient", "", None):
        assert not is_loopback_client(host), host


# ---------------------------------------------------------------------- login limiting


def attempt(c: TestClient, name: str, password: str) -> Any:
    page = c.get("/login")
    return c.post(
        "/login",
        data={"username": name, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )


def test_failed_logins_per_user_are_refused_then_let_through(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    con = console_with(env, login_max_failures=3, login_max_failures_per_address=100)
    con.logins = LoginLimiter(clock=lambda: now[0])
    c = client(con)
    with caplog.at_level(logging.WARNING, logger="monitor.web"):
        assert [attempt(c, "olga", "guess").status_code for _ in range(3)] == [401] * 3
        refused = attempt(c, "olga", PASSWORDS["olga"])  # even the right password
        assert refused.status_code == 429 and "Too many failed logins" in refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60 + 1
        assert attempt(c, "olga", "guess").status_code == 429
        # Another address is refused too: the limit is the user name's.
        assert attempt(client(con, "10.9.9.9"), "olga", PASSWORDS["olga"]).status_code == 429
        # Another user from the same address is not.
        assert attempt(c, "ravi", PASSWORDS["ravi"]).status_code == 303
    lockouts = [r for r in caplog.records if "failed logins for user olga" in r.getMessage()]
    assert len(lockouts) == 1  # logged once, however many refusals
    now[0] += 15 * 60 + 1  # the window passes
    assert attempt(c, "olga", PASSWORDS["olga"]).status_code == 303


def test_failed_logins_per_address(env: Env) -> None:
    con = console_with(env, login_max_failures=100, login_max_failures_per_address=4)
    c = client(con, "10.7.7.7")
    assert [attempt(c, f"user{i}", "x").status_code for i in range(4)] == [401] * 4
    assert attempt(c, "olga", PASSWORDS["olga"]).status_code == 429
    assert attempt(client(con, "10.7.7.8"), "olga", PASSWORDS["olga"]).status_code == 303


def test_the_limiter_keeps_a_bounded_number_of_keys() -> None:
    limiter = LoginLimiter(max_keys=50)
    limiter.failed([f"user:u{i}" for i in range(500)])
    assert len(limiter._failures) == 50
    assert limiter.blocked({"user:u499": 1}, 60.0) is not None
    assert limiter.blocked({"user:u0": 1}, 60.0) is None


def test_failed_api_tokens_per_address_are_refused_then_let_through(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    con = console_with(env, login_max_failures_per_address=3)
    con.tokens = LoginLimiter(clock=lambda: now[0], label="api token", noun="failed tokens")
    c = client(con, "10.6.6.6")
    good = {"Authorization": f"Bearer {TOKEN}"}
    bad = {"Authorization": "Bearer tok-guess"}
    assert c.get("/api/v1/alerts", headers=good).status_code == 200  # a good token: not counted
    with caplog.at_level(logging.WARNING, logger="monitor.web"):
        # Wrong tokens on the API, a page and a probe all count against the address.
        paths = ("/api/v1/alerts", "/api/v1/feeds", "/metrics")
        codes = [c.get(p, headers=bad, follow_redirects=False).status_code for p in paths]
        assert codes == [401, 401, 401]
        for path in ("/api/v1/alerts", "/alerts", "/metrics", "/api/v1/rules"):
            refused = c.get(path, headers=good, follow_redirects=False)  # even the right token
            assert refused.status_code == 429, (path, refused.status_code, refused.text)
            assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60 + 1
            assert "too many failed API-token attempts" in refused.text
        # A session (no bearer header) from the same address is not refused.
        assert c.get("/login").status_code == 200
    lockouts = [r for r in caplog.records if "3 failed tokens for addr 10.6.6.6" in r.getMessage()]
    assert len(lockouts) == 1, [r.getMessage() for r in caplog.records]
    # Another address is not refused.
    assert client(con, "10.6.6.7").get("/api/v1/alerts", headers=good).status_code == 200
    now[0] += 15 * 60 + 1  # the window passes
    assert c.get("/api/v1/alerts", headers=good).status_code == 200


def test_a_refused_page_request_is_counted_once(env: Env) -> None:
    """A page asks for its user twice (the guard, then the template): one wrong token is one
    failure, and a refusal renders no second refusal (a 429, never a 500)."""
    con = console_with(env, login_max_failures_per_address=2)
    c = client(con, "10.5.5.5")
    bad = {"Authorization": "Bearer tok-guess"}
    assert c.get("/sources", headers=bad, follow_redirects=False).status_code == 303
    assert len(con.tokens._failures["addr:10.5.5.5"]) == 1
    assert c.post("/rules", headers=bad, data={"text": "x"}).status_code == 401
    assert c.get("/sources", headers=bad, follow_redirects=False).status_code == 429
    assert c.post("/rules", headers=bad, data={"text": "x"}).status_code == 429


# ---------------------------------------------------------------------- 304 ratio, filter


def test_not_modified_ratio_is_stored_so_every_console_shows_it(env: Env) -> None:
    env.rt.store.feeds.poll_now(1.0)
    asyncio.run(env.rt.run_cycle())  # the loopback site answers the conditional GET with 304
    auth = {"Authorization": f"Bearer {TOKEN}"}
    seen = []
    for console in (env.console, from_daemon(env.daemon, Metrics())):  # a second console
        (feed,) = client(console).get("/api/v1/feeds", headers=auth).json()["feeds"]
        seen.append((feed["polls"], feed["not_modified"], feed["not_modified_ratio"]))
    assert seen == [(2, 1, 0.5)] * 2


def test_status_filter_same_answer_by_either_query_shape(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = env.console.repo
    with write_tx(env.rt.store.engine) as conn:  # one alert's delivery dead, the other pending
        first = conn.execute(select(func.min(s.deliveries.c.alert_id))).scalar()
        conn.execute(
            update(s.deliveries).where(s.deliveries.c.alert_id == first).values(status="dead")
        )
        conn.execute(
            update(s.deliveries).where(s.deliveries.c.alert_id > first).values(status="pending")
        )
    for status, expected in (("dead", 1), ("pending", 1), ("sent", 0)):
        answers = []
        for sparse_below in (1, 10**6):  # always EXISTS per alert; always from the deliveries
            monkeypatch.setattr(console_store, "SPARSE_STATUS", sparse_below)
            answers.append(
                [
                    [r["id"] for r in repo.alerts(AlertFilter(channel_status=status, **f))]
                    for f in ({}, {"severity": "high"}, {"severity": "low"}, {"rule": "us-troops"})
                ]
            )
        assert answers[0] == answers[1], status
        assert len(answers[0][0]) == expected, status
        assert answers[0][2] == [], status  # no low alert


# ---------------------------------------------------------------------- live timeline


class CountingRepo:
    def __init__(self, repo: Any) -> None:
        self.repo, self.calls = repo, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    def alerts(self, f: AlertFilter) -> list[dict[str, Any]]:
        self.calls += 1
        return self.repo.alerts(f)


def test_one_poller_serves_every_open_timeline(env: Env) -> None:
    async def run(tabs: int) -> tuple[int, list[list[int]]]:
        stopping = asyncio.Event()
        repo = CountingRepo(env.console.repo)
        feed = AlertFeed(lambda: repo, stopping, every=0.05)  # type: ignore[arg-type,return-value]
        queues = [await feed.subscribe() for _ in range(tabs)]
        feed.last = 0  # as if both stored alerts arrived after the tabs opened
        got: list[list[int]] = [[] for _ in queues]
        for i, q in enumerate(queues):
            for _ in range(2):
                row = await asyncio.wait_for(q.get(), 5)
                assert row is not None
                got[i].append(int(row["id"]))
        await asyncio.sleep(0.5)
        stopping.set()
        ends = [await asyncio.wait_for(q.get(), 5) for q in queues]
        assert ends == [None] * tabs
        return repo.calls, got

    one, got_one = asyncio.run(run(1))
    many, got_many = asyncio.run(run(8))
    assert got_one[0] == sorted(got_one[0]) and len(got_one[0]) == 2
    assert got_many == [got_one[0]] * 8  # every tab gets every alert, oldest first
    assert many <= one * 1.5 + 2  # eight tabs cost the store what one does
