"""The console in a real headless Chromium (Selenium with Debian's chromium-driver), against a
running `monitor run` polling a loopback feed: log in, see a new alert appear without reload,
open it (hits highlighted, story sources), mark it not relevant, retry a dead delivery, test a
draft rule. With MONITOR_SCREENSHOTS=DIR set, the main pages are saved there as PNGs (that is
how docs/img/ is made)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.feedserver import Item, NewsSite
from tests.test_web_daemon import free_port
from tests.webconsole import ITEMS, PASSWORDS, write_config

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]
ROOT = Path(__file__).resolve().parents[1]
FRESH = Item(
    "Rocket attack on US troops near Erbil airport",
    "/a/fresh.html",
    "g-fresh",
    "Rockets were fired at US troops stationed near Erbil airport on Sunday.",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver: webdriver.Chrome, name: str) -> None:
    folder = os.environ.get("MONITOR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_console_in_a_browser(tmp_path: Path, browser: webdriver.Chrome) -> None:
    port = free_port()
    with NewsSite() as site:
        site.feed("/feed.xml", ITEMS)
        cfg = write_config(tmp_path, site, extra="delivery: {max_attempts: 1}")
        text = cfg.read_text().replace('listen: "127.0.0.1:0"', f'listen: "127.0.0.1:{port}"')
        cfg.write_text(text.replace("interval: 1h", "interval: 2s"))
        log = tmp_path / "run.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        wait = WebDriverWait(browser, 30)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=2)
                    break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            # Log in.
            browser.get(base + "/alerts")
            assert "/login" in browser.current_url
            shot(browser, "login")
            browser.find_element(By.ID, "username").send_keys("olga")
            browser.find_element(By.ID, "password").send_keys(PASSWORDS["olga"])
            browser.find_element(By.ID, "login").click()
            wait.until(EC.presence_of_element_located((By.ID, "timeline")))
            wait.until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline a.alert-link")) == 2
            )
            # A new item in the loopback feed: its alert appears without a reload.
            marker = browser.execute_script("window.__same_page = 'yes'; return window.__same_page")
            site.feed("/feed.xml", [*ITEMS, FRESH])
            wait.until(EC.presence_of_element_located((By.LINK_TEXT, FRESH.title)))
            assert browser.execute_script("return window.__same_page") == marker  # no reload
            row = browser.find_element(By.CSS_SELECTOR, "#timeline tbody tr")
            assert "new" in row.get_attribute("class")
            shot(browser, "alerts")
            # Open it: the hits are highlighted, the story lists its source.
            browser.find_element(By.LINK_TEXT, FRESH.title).click()
            wait.until(EC.presence_of_element_located((By.ID, "article")))
            marks = {m.text for m in browser.find_elements(By.CSS_SELECTOR, "#article mark.hit")}
            assert {"Rocket", "US troops"} <= marks, marks
            sources = [
                td.text for td in browser.find_elements(By.CSS_SELECTOR, "#sources td.source-feed")
            ]
            assert sources == ["Loopback News"]
            shot(browser, "alert")
            # Not relevant.
            browser.find_element(By.ID, "irrelevant").click()
            wait.until(
                EC.text_to_be_present_in_element((By.ID, "feedback"), "not relevant by olga")
            )
            # A dead delivery (the hook's port is closed, one attempt allowed): retry it.
            browser.get(base + "/deliveries?status=dead")
            wait.until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#delivery-list tr.st-dead button.retry")
            )
            row = browser.find_element(By.CSS_SELECTOR, "#delivery-list tr.st-dead")
            row_id = row.get_attribute("id")
            attempts = int(row.find_elements(By.TAG_NAME, "td")[5].text)
            shot(browser, "deliveries")
            row.find_element(By.CSS_SELECTOR, "button.retry").click()

            def retried(d: webdriver.Chrome) -> bool:
                d.get(base + "/deliveries?status=dead")
                again = d.find_elements(By.ID, row_id)
                return (
                    bool(again)
                    and int(again[0].find_elements(By.TAG_NAME, "td")[5].text) > attempts
                )

            WebDriverWait(browser, 30, poll_frequency=1).until(retried)
            # Sources page.
            browser.get(base + "/sources")
            assert "Loopback News" in browser.find_element(By.ID, "feeds").text
            shot(browser, "sources")
            # A draft rule in the tester.
            browser.get(base + "/rules")
            browser.find_element(By.ID, "test-text").send_keys(
                "Protesters gathered at the harbour."
            )
            browser.find_element(By.ID, "test-query").send_keys("harbour AND protest*")
            browser.find_element(By.ID, "test-run").click()
            result = wait.until(EC.presence_of_element_located((By.ID, "test-result")))
            assert "draft: matches" in result.text, result.text
            shot(browser, "rules")
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        out = log.read_text()
        assert rc == 0, out
        assert "Traceback" not in out, out
