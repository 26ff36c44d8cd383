"""The console refuses what it must: every state-changing request without a valid session and
CSRF token, changes by a read-only user, logins with a wrong password, and a start on a
non-loopback address without users."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Mount, Route

from monitor.config import WebSettings
from monitor.web.app import routes
from monitor.web.auth import hash_password, verify_password
from tests.feedserver import NewsSite
from tests.webconsole import Env, client_for, csrf_of, login, polled_env, write_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def unsafe_routes() -> list[tuple[str, str]]:
    """Every (method, concrete path) that changes something, from the app's own routing table."""
    out: list[tuple[str, str]] = []

    def walk(items: list, prefix: str) -> None:
        for r in items:
            if isinstance(r, Mount) and r.routes:
                walk(list(r.routes), prefix + r.path)
            elif isinstance(r, Route):
                for m in sorted((r.methods or set()) - {"GET", "HEAD"}):
                    path = re.sub(r"\{id:int\}", "1", prefix + r.path)
                    action = {"feeds": "pause", "sources": "pause", "deliveries": "retry"}
                    for key, value in action.items():
                        if f"/{key}/1/" in path:
                            path = path.replace("{action:str}", value)
                    out.append((m, path))

    walk(routes(), "")
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with polled_env(tmp_path_factory.mktemp("websec")) as e:
        yield e


def test_the_table_of_state_changing_routes_is_complete() -> None:
    paths = {p for _, p in unsafe_routes()}
    assert {
        "/api/v1/feeds/1/pause",
        "/api/v1/deliveries/1/retry",
        "/api/v1/alerts/1/feedback",
        "/sources/1/pause",
        "/deliveries/1/retry",
        "/alerts/1/feedback",
        "/logout",
        "/login",
        "/rules",
        "/api/v1/match",
    } <= paths


def test_no_state_change_without_a_session(env: Env) -> None:
    c = client_for(env.console)
    before = env.console.repo.deliveries()
    for method, path in unsafe_routes():
        if path in ("/login", "/logout"):
            continue
        res = c.request(method, path, data={"verdict": "relevant"}, follow_redirects=False)
        assert res.status_code in (401, 303), (method, path, res.status_code)
        if res.status_code == 303:
            assert res.headers["location"].startswith("/login")
    assert env.console.repo.deliveries() == before
    assert env.rt.store.feedback.for_alert(1) == []


def test_no_state_change_without_the_csrf_token(env: Env) -> None:
    with client_for(env.console) as c:
        token = login(c, "olga")
        for method, path in unsafe_routes():
            if path == "/login":
                continue
            for extra in (
                {},
                {"headers": {"X-CSRF-Token": "forged"}},
                {"data": {"csrf": "forged"}},
            ):
                res = c.request(method, path, follow_redirects=False, **extra)  # type: ignore[arg-type]
                if path == "/logout":
                    assert c.get("/api/v1/alerts").status_code == 200  # still logged in
                    continue
                assert res.status_code == 403, (method, path, extra, res.status_code)
        assert env.rt.store.feedback.for_alert(1) == []
        (feed,) = c.get("/api/v1/feeds").json()["feeds"]
        assert not feed["paused"]
        # ...and the same request with the token goes through.
        ok = c.post("/api/v1/feeds/1/pause", headers={"X-CSRF-Token": token})
        assert ok.status_code == 200
        c.post("/api/v1/feeds/1/resume", headers={"X-CSRF-Token": token})


def test_a_read_only_user_cannot_retry_pause_or_label(env: Env) -> None:
    with client_for(env.console) as c:
        token = login(c, "ravi")
        h = {"X-CSRF-Token": token}
        for path in (
            "/api/v1/feeds/1/pause",
            "/api/v1/feeds/1/poll",
            "/api/v1/deliveries/1/retry",
            "/api/v1/deliveries/1/replay",
            "/api/v1/deliveries/retry-dead",
        ):
            res = c.post(path, headers=h)
            assert res.status_code == 403 and "'read' role" in res.json()["error"], path
        assert (
            c.post("/api/v1/alerts/1/feedback", json={"verdict": "relevant"}, headers=h).status_code
            == 403
        )
        for path in ("/sources/1/pause", "/deliveries/1/retry"):
            assert c.post(path, data={"csrf": token}, follow_redirects=False).status_code == 403
        # Reading is fine, and the pages show no buttons it could not use.
        assert c.get("/api/v1/deliveries").status_code == 200
        assert "Retry</button>" not in c.get("/deliveries").text
        assert "Pause</button>" not in c.get("/sources").text
        # The rule tester changes nothing: a reader may use it.
        assert (
            c.post(
                "/api/v1/match", json={"text": "US troops hit by a rocket"}, headers=h
            ).status_code
            == 200
        )


def test_login_refuses_wrong_password_and_forged_form(env: Env) -> None:
    c = client_for(env.console)
    page = c.get("/login")
    csrf = csrf_of(page.text)
    wrong = c.post("/login", data={"username": "olga", "password": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    nobody = c.post("/login", data={"username": "mallory", "password": "x", "csrf": csrf})
    assert nobody.status_code == 401
    forged = c.post("/login", data={"username": "olga", "password": "operator-pass-1", "csrf": "x"})
    assert forged.status_code == 403
    assert c.get("/api/v1/alerts").status_code == 401
    assert c.get("/alerts", follow_redirects=False).headers["location"] == "/login?next=/alerts"


def test_login_redirects_only_to_this_site(env: Env) -> None:
    from monitor.web.pages import safe_next

    assert safe_next("/alerts/3")
    for target in ("//evil.example/", "/\\evil.example/", "https://evil.example/", "evil"):
        assert not safe_next(target), target
    c = client_for(env.console)
    page = c.get("/login", params={"next": "//evil.example/"})
    res = c.post(
        "/login?next=//evil.example/",
        data={"username": "olga", "password": "operator-pass-1", "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"] == "/alerts"


def test_session_cookie_is_httponly_and_samesite(env: Env) -> None:
    c = client_for(env.console)
    res = c.get("/login")
    cookie = res.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_a_tampered_session_cookie_is_not_a_login(env: Env) -> None:
    c = client_for(env.console)
    login(c, "olga")
    value = c.cookies["monitor_session"]
    c.cookies.clear()
    c.cookies.set("monitor_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert c.get("/api/v1/alerts").status_code == 401


def test_password_hashes() -> None:
    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and verify_password("correct horse", h)
    assert not verify_password("wrong horse", h)
    assert not verify_password("x", "scrypt$garbage")
    assert hash_password("a") != hash_password("a")  # salted


def test_non_loopback_without_users_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="without authentication"):
        WebSettings(listen="0.0.0.0:8080")
    with pytest.raises(ValueError, match="without authentication"):
        WebSettings(listen="monitor.example.org:8080")
    assert WebSettings(listen="127.0.0.1:8080").users == {}
    assert WebSettings(listen="[::1]:8080").listen == "[::1]:8080"


@pytest.mark.parametrize(
    "web",
    [
        'web: {listen: "0.0.0.0:8080"}',
        'daemon: {health_listen: "0.0.0.0:8080"}',
    ],
)
def test_run_refuses_a_public_bind_without_users_in_one_line(tmp_path: Path, web: str) -> None:
    with NewsSite() as site:
        site.feed("/feed.xml", [])
        cfg = write_config(tmp_path, site, web=web)
        cfg.write_text(cfg.read_text().replace("daemon: {tick: 0.5s, deliver_every: 0.5s}\n", ""))
        for command in ("check", "run"):
            res = subprocess.run(
                [sys.executable, "-m", "monitor", command, "--config", str(cfg)],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            )
            assert res.returncode != 0, (command, res.stdout, res.stderr)
            assert "Traceback" not in res.stderr, res.stderr
            lines = [x for x in res.stderr.splitlines() if "without authentication" in x]
            assert len(lines) == 1, (command, res.stderr)
            assert "0.0.0.0:8080" in lines[0]


def test_a_container_may_opt_in_to_unauthenticated_health(tmp_path: Path) -> None:
    """`web.allow_unauthenticated` (set here from the environment, as a container would):
    a non-loopback bind with no users is accepted, and still only health answers."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MONITOR_WEB__LISTEN": "0.0.0.0:8080"}
    refused = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert refused.returncode != 0 and "allow_unauthenticated" in refused.stderr
    env["MONITOR_WEB__ALLOW_UNAUTHENTICATED"] = "true"
    accepted = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert accepted.returncode == 0, accepted.stderr
    web = WebSettings(listen="0.0.0.0:8080", allow_unauthenticated=True)
    assert web.users == {}  # so the console itself has nobody who could log in
