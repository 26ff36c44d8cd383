"""End to end: one wire story on four outlets is one alert; other stories on the topic are not.

Four loopback news sites (one HTTP server each, so each is its own site) publish feeds whose
items link to article pages on the same server. The wire story is the seed article: the wire's
own page, a trimmed copy with tracking parameters and a footer, an extended copy under another
headline, and a syndicated copy whose `<link rel=canonical>` names the wire's page. Two other
stories on the same topic (US forces, Iraq and Syria) are real text from the corpora. `monitor
once` runs in-process; a webhook receiver on 127.0.0.1 collects what is sent.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpora import DATA
from feedserver import Item, NewsSite, news_page, seed_article
from receivers import Request, WebhookReceiver

from monitor.cli import main

pytestmark = pytest.mark.slow

RULE = "us-forces-iraq-syria"
WIRE_PATH = "/2023/11/05/blinken-visits-iraq.html"


def _ag_news(title: str) -> str:
    with (DATA / "news/ag_news/train_subset.csv").open(encoding="utf-8") as f:
        [text] = [r["text"] for r in csv.DictReader(f) if r["text"].startswith(title)]
    return str(text[len(title) :].strip())


def _aeb(url_part: str) -> str:
    truth = json.loads((DATA / "articles/scrapinghub-aeb/ground-truth.json").read_text("utf-8"))
    [body] = [v["articleBody"] for v in truth.values() if url_part in v["url"]]
    return str(body)


def _page_with_canonical(title: str, body: str, canonical: str) -> bytes:
    page = news_page(title, body, site="Syndicated Daily").decode()
    link = f'<link rel="canonical" href="{html.escape(canonical)}">'
    return page.replace("</title>", "</title>" + link, 1).encode()


SEED_TITLE, SEED_BODY = seed_article()
PARAS = [p for p in SEED_BODY.split("\n") if p.strip()]
FOOTER = (
    "Copyright 2023 Outlet B. All rights reserved. This material may not be published, "
    "broadcast, rewritten or redistributed."
)
# A second story on the same topic, made of real AG News reports of other attacks in Iraq.
ROUNDUP_TITLE = "Car bombs and ambushes: a day of attacks across Iraq"
ROUNDUP = "\n".join(
    _ag_news(t)
    for t in (
        "Explosion Rocks Baghdad Neighborhood",
        "21 killed, 96 hurt in Iraq car bombings",
        "Suicide bomb blasts Green Zone",
        "Iraq Insurgents Kill Top Police, Hit U.S. Convoy (Reuters)",
    )
)
# A third: Polygraph's fact check about US troops at al-Tanf in Syria (scrapinghub-aeb).
TANF_TITLE = "Fact Check: Russia says US troops at al-Tanf in Syria protect militants"
TANF = _aeb("polygraph.info/a/fact-check-russia-us-al-tanf")


class Outlets:
    """Four sites: the wire and three outlets that carry its story in their own way."""

    def __init__(self) -> None:
        self.sites = {name: NewsSite().start() for name in ("wire", "b", "c", "d")}

    def url(self, name: str, path: str = "") -> str:
        return self.sites[name].url + path

    def publish_first_day(self) -> None:
        wire, b, c, d = (self.sites[n] for n in ("wire", "b", "c", "d"))
        wire.page(WIRE_PATH, news_page(SEED_TITLE, SEED_BODY, site="The Wire"))
        wire.page("/2023/11/05/iraq-roundup.html", news_page(ROUNDUP_TITLE, ROUNDUP))
        wire.feed(
            "/feed.xml",
            [
                Item(SEED_TITLE, WIRE_PATH, "wire-1001"),
                Item(ROUNDUP_TITLE, "/2023/11/05/iraq-roundup.html", "wire-1002"),
            ],
        )
        # Outlet B: the first paragraphs only, its footer, a tracked link, a retouched title.
        trimmed = "\n".join([*PARAS[: len(PARAS) * 2 // 3], FOOTER])
        b_path = "/world/blinken-iraq-77?utm_source=rss&utm_medium=feed"
        b.page(b_path, news_page(SEED_TITLE.replace("US", "U.S.") + " | AP News", trimmed))
        b.feed(
            "/feed.xml",
            [Item("Blinken visits Iraq as attacks on U.S. troops continue", b_path, "b-77")],
        )
        # Outlet C: the whole story and a paragraph of its own, under a new headline.
        extended = SEED_BODY + "\nOutlet C's Baghdad bureau contributed to this report from Erbil."
        c.page("/news/2023/11/05/blinken-baghdad", news_page("Blinken in Baghdad", extended))
        c.page("/news/syria/tanf", news_page(TANF_TITLE, TANF))
        c.feed(
            "/rss",
            [
                Item(
                    "Blinken makes surprise trip to Baghdad",
                    "/news/2023/11/05/blinken-baghdad",
                    "c-5501",
                ),
                Item(TANF_TITLE, "/news/syria/tanf", "c-5502"),
            ],
        )
        # Outlet D: a syndicated copy, rewritten lead, naming the wire's page as canonical.
        lead = "Secretary of State Antony Blinken flew into Baghdad unannounced on Sunday."
        syndicated = "\n".join([lead, *PARAS[1:]])
        d.page(
            "/s/88213",
            _page_with_canonical(
                "Top US diplomat in Iraq", syndicated, self.url("wire", WIRE_PATH)
            ),
        )
        d.feed("/feed.xml", [Item("Top US diplomat in Iraq", "/s/88213", "d-88213")])

    def publish_second_day(self) -> None:
        """Edits and re-sends that are not news: none of them may alert again."""
        wire, b, c = (self.sites[n] for n in ("wire", "b", "c"))
        # The wire edits its headline (same GUID and link) and re-sends an old item.
        wire.feed(
            "/feed.xml",
            [
                Item("Blinken Visits Iraq; Attacks on US Troops Reach 32", WIRE_PATH, "wire-1001"),
                Item(ROUNDUP_TITLE, "/2023/11/05/iraq-roundup.html", "wire-1002"),
            ],
        )
        # Outlet B's CMS changes every GUID and the tracking parameters of its link.
        b_path = "/world/blinken-iraq-77?utm_source=twitter&fbclid=IwAR0x"
        b.page(b_path, news_page(SEED_TITLE, "\n".join(PARAS[: len(PARAS) * 2 // 3])))
        b.feed(
            "/feed.xml", [Item("Blinken in Iraq as attacks continue", b_path, "urn:b:2023:77:v2")]
        )
        # Outlet C re-sends its story with a new GUID and an edited title.
        c.feed(
            "/rss",
            [
                Item(
                    "Blinken makes surprise trip to Baghdad (updated)",
                    "/news/2023/11/05/blinken-baghdad",
                    "c-5501-rev2",
                ),
                Item(TANF_TITLE, "/news/syria/tanf", "c-5502"),
            ],
        )

    def close(self) -> None:
        for site in self.sites.values():
            site.stop()


@pytest.fixture
def outlets() -> Iterator[Outlets]:
    o = Outlets()
    try:
        yield o
    finally:
        o.close()


def _config(tmp: Path, outlets: Outlets, hook: WebhookReceiver) -> Path:
    feeds = "\n".join(
        f'  - {{url: "{outlets.url(n, p)}", name: "{name}", allow_private: true}}'
        for n, p, name in (
            ("wire", "/feed.xml", "The Wire"),
            ("b", "/feed.xml", "Outlet B"),
            ("c", "/rss", "Outlet C"),
            ("d", "/feed.xml", "Outlet D"),
        )
    )
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
defaults: {{interval: 1h, min_interval: 1s, channels: [hook]}}
feeds:
{feeds}
rules:
  - name: {RULE}
    query: (US OR American) NEAR/12 (troops OR forces OR convoy) OR (iraq AND bomb*)
    updates: true
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
stories: {{window: 72h}}
""")
    return cfg


def _by_kind(requests: list[Request], kind: str) -> list[dict[str, Any]]:
    return [p for p in (r.json() for r in requests) if p["kind"] == kind]


def test_one_alert_per_story_across_outlets_edits_and_resends(
    tmp_path: Path, outlets: Outlets
) -> None:
    with WebhookReceiver() as hook:
        cfg = _config(tmp_path, outlets, hook)
        outlets.publish_first_day()
        assert main(["once", "--config", str(cfg)]) == 0
        first_day = list(hook.requests)

        alerts = _by_kind(first_day, "alert")
        titles = sorted(a["title"] for a in alerts)
        assert len(alerts) == 3, titles  # the wire story, the roundup, the al-Tanf check
        assert len({a["story_id"] for a in alerts}) == 3
        wire_paths = (
            WIRE_PATH,
            "/world/blinken-iraq-77",
            "/news/2023/11/05/blinken-baghdad",
            "/s/88213",
        )
        [wire_story] = [a["story_id"] for a in alerts if any(p in a["url"] for p in wire_paths)]

        # Every outlet carrying the wire story is attached to it, and only those.
        updates = [u for u in _by_kind(first_day, "story.updated") if u["story_id"] == wire_story]
        feeds = {s["feed"] for s in max(updates, key=lambda u: len(u["sources"]))["sources"]}
        assert feeds == {"The Wire", "Outlet B", "Outlet C", "Outlet D"}
        others = [u for u in _by_kind(first_day, "story.updated") if u["story_id"] != wire_story]
        assert others == []  # nothing joined the roundup or the fact check

        outlets.publish_second_day()
        assert main(["once", "--config", str(cfg)]) == 0
        second_day = hook.requests[len(first_day) :]
        assert _by_kind(second_day, "alert") == []
        assert {u["story_id"] for u in _by_kind(second_day, "story.updated")} <= {wire_story}
