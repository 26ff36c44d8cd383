"""A loopback news site for end-to-end tests: an RSS feed whose items link to article pages.

Pages are set and changed while the server runs (`site.page(path, body)`, `site.feed(...)`),
conditional GET is honoured with ETags, and every request is counted, so tests can check what
the monitor fetched.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from corpora import DATA

SEED = DATA / "seed" / "us-troops-attacks-article.txt"
AEB = DATA / "articles" / "scrapinghub-aeb" / "html"


@dataclass
class Item:
    title: str
    path: str
    guid: str
    summary: str = ""
    published: datetime | None = None


def seed_article() -> tuple[str, str]:
    """The seed article: (title, body text)."""
    lines = SEED.read_text(encoding="utf-8").splitlines()
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def news_page(title: str, body: str, *, site: str = "Loopback News") -> bytes:
    """A plain news page as publishers write them: header, nav, article, footer."""
    paras = "\n".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n") if p.strip())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} | {site}</title>
<meta property="og:title" content="{html.escape(title)}"></head>
<body><header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/us">US</a></nav>
</header><main><article><h1>{html.escape(title)}</h1>
<div class="byline">By Dave DeCamp, {site}</div>
{paras}
</article></main><footer><p>Copyright {site}. All rights reserved.</p></footer></body></html>
""".encode()


def corpus_page(name: str) -> bytes:
    """A real article page of tests/data (scrapinghub-aeb), as the publisher served it."""
    return gzip.decompress((AEB / f"{name}.html.gz").read_bytes())


class NewsSite:
    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def page(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        with self._lock:
            self.pages[path] = (content_type, body)

    def feed(self, path: str, items: list[Item], *, title: str = "Loopback News") -> None:
        parts = []
        for it in items:
            pub = format_datetime(it.published or datetime(2023, 11, 5, 12, 0, tzinfo=UTC))
            parts.append(
                f"<item><title>{html.escape(it.title)}</title>"
                f"<link>{html.escape(self.url + it.path)}</link>"
                f'<guid isPermaLink="false">{html.escape(it.guid)}</guid>'
                f"<pubDate>{pub}</pubDate>"
                f"<description>{html.escape(it.summary)}</description></item>"
            )
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>{html.escape(title)}</title><link>{self.url}/</link>"
            f"<description>test</description>{''.join(parts)}</channel></rss>"
        )
        self.page(path, xml.encode(), "application/rss+xml; charset=utf-8")

    def start(self) -> Self:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with site._lock:
                    site.hits[self.path] += 1
                    found = site.pages.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ctype, body = found
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"
