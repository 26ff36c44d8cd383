"""End to end on loopback: a news site, `monitor once` / `monitor run` as real processes, a
webhook receiver and an SMTP server.

The feed's items link to pages on the same server: one is the seed article rendered as a news
page, the others are real publishers' pages from the corpora. The shipped rule
`attacks-on-us-troops` must alert on the seed article, once, to every channel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from feedserver import Item, NewsSite, corpus_page, news_page, seed_article
from receivers import SmtpReceiver, WebhookReceiver, free_port

ROOT = Path(__file__).resolve().parents[1]
OTHER_PAGES = [
    "05844573ca7e1fba714d715bb11ca08c26e25328999c74a1cb3bc8a0e4399f0f",  # LA auto show
    "0d46122928b6f468cc4bbc694051d0dbae5702bc75a16dab82a99b58daf150a0",  # Davis Cup
]
RULE = "attacks-on-us-troops"

# Two further stories on the same topic (written for these tests): they must alert on their
# own, not be merged into the seed article's story.
AMBUSH = """Four US soldiers were wounded when militants ambushed a US convoy near Deir ez-Zor on
Tuesday, the Pentagon said in a statement released late in the evening.
The convoy was returning to its base after a routine patrol along the Euphrates when a roadside
bomb disabled the lead vehicle and gunmen opened fire from a nearby orchard.
The wounded soldiers were evacuated by helicopter to a military hospital in Iraq, where two
were listed in stable condition and two were said to have minor injuries.
No group immediately claimed responsibility for the ambush, the latest in a string of attacks
on American forces in eastern Syria since the autumn."""
ROCKET = """Several rockets were fired at a US base in western Iraq on Monday morning, officials
said, causing minor damage to a hangar but no casualties among American personnel.
The Ain al-Asad air base, which hosts US and coalition troops, was targeted at least three
times this month, according to a defence official who spoke on condition of anonymity.
Air defences intercepted two of the rockets; a third landed inside the perimeter near an empty
maintenance building, the official said, adding that an investigation had been opened.
Iraqi security forces later found the launch site in a field south of the base."""

pytestmark = pytest.mark.slow


def write_config(
    tmp: Path, site: NewsSite, hook: WebhookReceiver, smtp: SmtpReceiver, health_port: int = 0
) -> Path:
    cfg = tmp / "monitor.yaml"
    health = f", health_listen: '127.0.0.1:{health_port}'" if health_port else ""
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
defaults:
  interval: 1h
  min_interval: 1s
  channels: [hook, mail]
daemon: {{tick: 0.5s, deliver_every: 0.5s{health}}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback News, allow_private: true}}
include_outside: true  # the shipped rules, outside the test folder
include: ["{ROOT}/config/rules/*.yaml"]
channels:
  hook: {{type: webhook, url: "{hook.url}", secret: "${{HOOK_SECRET}}", allow_private: true}}
  mail:
    type: email
    host: 127.0.0.1
    port: {smtp.port}
    security: starttls
    validate_certs: false
    username: alice
    password: "${{SMTP_PASSWORD}}"
    from: monitor@example.org
    to: [desk@example.org]
""")
    return cfg


def monitor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        cwd=ROOT,
    )


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HOOK_SECRET="s3cret", SMTP_PASSWORD="pw", PYTHONPATH=str(ROOT))
    return env


@pytest.fixture
def site() -> NewsSite:
    with NewsSite() as s:
        title, body = seed_article()
        s.page("/articles/seed.html", news_page(title, body))
        for name in OTHER_PAGES:
            s.page(f"/articles/{name[:8]}.html", corpus_page(name))
        s.feed(
            "/feed.xml",
            [
                Item(
                    "Blinken Visits Iraq as Attacks on US Troops Continue",
                    "/articles/seed.html",
                    "seed-1",
                    "Secretary of State visits Baghdad.",
                ),
                Item(
                    "New SUVs and electric vehicles highlight LA Auto Show",
                    f"/articles/{OTHER_PAGES[0][:8]}.html",
                    "auto-1",
                    "Cars.",
                ),
                Item(
                    "Argentina comfortably wins Davis Cup opener",
                    f"/articles/{OTHER_PAGES[1][:8]}.html",
                    "tennis-1",
                    "Tennis.",
                ),
            ],
        )
        yield s


def test_once_alerts_each_entry_once_to_every_channel(tmp_path: Path, site: NewsSite) -> None:
    with WebhookReceiver() as hook, SmtpReceiver(tls="starttls", users={"alice": "pw"}) as smtp:
        cfg = write_config(tmp_path, site, hook, smtp)
        first = monitor("once", "--config", str(cfg))
        assert first.returncode == 0, first.stderr
        alerts = hook.wait_for(1)
        assert len(alerts) == 1
        payload = alerts[0].json()
        assert payload["rule"] == RULE
        assert payload["title"].startswith("Blinken Visits Iraq")
        assert payload["url"] == f"{site.url}/articles/seed.html"
        assert "attack" in payload["snippet"].lower()
        assert alerts[0].headers.get("idempotency-key") == payload["idempotency_key"]
        mails = smtp.wait_for(1)
        assert "Blinken Visits Iraq" in str(mails[0].message["Subject"])
        assert mails[0].recipients == ["desk@example.org"]
        assert mails[0].auth_user == "alice"

        second = monitor("once", "--config", str(cfg))
        assert second.returncode == 0, second.stderr
        time.sleep(0.3)
        assert len(hook.received) == 1
        assert len(smtp.received) == 1

        # A new item (a different story on the same topic) is alerted on the next run.
        site.page(
            "/articles/ambush.html",
            news_page("Ambush on US convoy in Syria wounds four American soldiers", AMBUSH),
        )
        items = [
            Item(
                "Ambush on US convoy in Syria wounds four American soldiers",
                "/articles/ambush.html",
                "ambush-1",
                "",
            )
        ]
        items += [
            Item(
                "Blinken Visits Iraq as Attacks on US Troops Continue",
                "/articles/seed.html",
                "seed-1",
                "",
            )
        ]
        site.feed("/feed.xml", items)
        third = monitor("once", "--config", str(cfg))
        assert third.returncode == 0, third.stderr
        alerts = hook.wait_for(2)
        assert len(alerts) == 2
        assert alerts[1].json()["url"].endswith("/articles/ambush.html")
        assert len(smtp.wait_for(2)) == 2


def test_check_accepts_the_config(tmp_path: Path, site: NewsSite) -> None:
    with WebhookReceiver() as hook, SmtpReceiver(tls="starttls", users={"alice": "pw"}) as smtp:
        cfg = write_config(tmp_path, site, hook, smtp)
        res = monitor("check", "--config", str(cfg))
        assert res.returncode == 0, res.stderr
        assert "ok" in res.stdout


def test_missing_secret_is_a_config_error_naming_the_line(tmp_path: Path, site: NewsSite) -> None:
    with WebhookReceiver() as hook, SmtpReceiver(tls="starttls", users={"alice": "pw"}) as smtp:
        cfg = write_config(tmp_path, site, hook, smtp)
        env = child_env()
        del env["SMTP_PASSWORD"]
        res = monitor("once", "--config", str(cfg), env=env)
        assert res.returncode == 1
        line = next(n for n, t in enumerate(cfg.read_text().splitlines(), 1) if "password" in t)
        assert f"{cfg}:{line}:" in res.stderr
        assert "SMTP_PASSWORD" in res.stderr


def test_run_survives_sigkill_without_duplicates_or_misses(tmp_path: Path, site: NewsSite) -> None:
    with WebhookReceiver() as hook, SmtpReceiver(tls="starttls", users={"alice": "pw"}) as smtp:
        health_port = free_port()
        cfg = write_config(tmp_path, site, hook, smtp, health_port)
        log1 = open(tmp_path / "run1.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            stdout=log1,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            hook.wait_for(1, timeout=60)
            smtp.wait_for(1, timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log1.close()
        assert len(hook.received) == 1

        # While it is down, a new story appears.
        site.page(
            "/articles/rocket.html",
            news_page("Rocket attack targets US base in Iraq, no American casualties", ROCKET),
        )
        site.feed(
            "/feed.xml",
            [
                Item(
                    "Rocket attack targets US base in Iraq, no American casualties",
                    "/articles/rocket.html",
                    "rocket-1",
                    "",
                ),
                Item(
                    "Blinken Visits Iraq as Attacks on US Troops Continue",
                    "/articles/seed.html",
                    "seed-1",
                    "",
                ),
            ],
        )
        log2 = open(tmp_path / "run2.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            stdout=log2,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            # The feed is not due for an hour, but a starting daemon polls every healthy
            # feed at once: nothing that appeared while it was down waits an interval.
            got = hook.wait_for(2, timeout=60)
            health = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5).read()
            )
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5)
                .read()
                .decode()
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            log2.close()
        assert rc == 0, (tmp_path / "run2.log").read_text()
        urls = [r.json()["url"] for r in got]
        assert urls.count(f"{site.url}/articles/seed.html") == 1
        assert urls.count(f"{site.url}/articles/rocket.html") == 1
        assert len(hook.received) == 2
        assert health["status"] == "ok" and health["feeds"] == {"ok": 1}
        assert 'monitor_feeds{state="ok"} 1' in metrics


def test_once_on_postgresql_alerts_once(tmp_path: Path, site: NewsSite, pg_url: str) -> None:
    with WebhookReceiver() as hook, SmtpReceiver(tls="starttls", users={"alice": "pw"}) as smtp:
        cfg = write_config(tmp_path, site, hook, smtp)
        env = child_env()
        env["MONITOR_DATABASE"] = pg_url  # the environment overrides the file's database
        for _ in range(2):
            res = monitor("once", "--config", str(cfg), env=env)
            assert res.returncode == 0, res.stderr
        assert len(hook.wait_for(1)) == 1
        time.sleep(0.3)
        assert len(hook.received) == 1
        assert len(smtp.wait_for(1)) == 1
    assert not (tmp_path / "monitor.db").exists()
