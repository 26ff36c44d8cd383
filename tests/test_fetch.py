"""monitor.fetch against real HTTP servers on loopback: results, caps, errors, politeness."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hostile_server import (
    HostileServer,
    closed_port,
    fixed,
    gzip_bomb,
    huge,
    redirect,
    slow,
    trickle,
)

from monitor.config import FetchSettings
from monitor.fetch import (
    BadURL,
    BodyTooLarge,
    ConnectFailed,
    DecodeFailed,
    Fetcher,
    FetchTimeout,
    HTTPStatus,
    TooManyRedirects,
    parse_retry_after,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    settings = FetchSettings(deadline=timedelta(seconds=5), max_redirects=3)
    async with Fetcher(settings) as f:
        yield f


# --------------------------------------------------------------------------- results


async def test_a_200_gives_body_validators_cache_age_and_hash(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/feed"] = fixed(
        200,
        FEED,
        Content_Type="application/rss+xml",
        ETag='"v1"',
        Last_Modified="Mon, 01 Jan 2024 00:00:00 GMT",
        Cache_Control="public, max-age=300",
    )
    result = await fetcher.fetch(server.url("/feed"), allow_private=True)
    assert result.status == 200
    assert result.body == FEED
    assert result.content_type == "application/rss+xml"
    assert result.etag == '"v1"'
    assert result.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert result.cache_max_age == 300.0
    assert result.not_modified is False
    assert result.permanent_redirect is None
    assert result.final_url == result.url == server.url("/feed")
    assert len(result.content_hash) == 64


async def test_requests_carry_user_agent_accept_and_only_gzip_deflate(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/feed"] = fixed(200, FEED)
    await fetcher.fetch(server.url("/feed"), allow_private=True)
    headers = server.requests[0].headers
    assert headers["user-agent"] == FetchSettings().user_agent_string
    assert headers["accept-encoding"] == "gzip, deflate"
    assert "application/rss+xml" in headers["accept"]


async def test_gzip_body_is_decoded(server: HostileServer, fetcher: Fetcher) -> None:
    server.routes["/gz"] = fixed(200, gzip.compress(FEED), Content_Encoding="gzip")
    result = await fetcher.fetch(server.url("/gz"), allow_private=True)
    assert result.body == FEED


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_body_is_decoded_with_or_without_zlib_header(
    server: HostileServer, fetcher: Fetcher, wbits: int
) -> None:
    z = zlib.compressobj(6, zlib.DEFLATED, wbits)
    server.routes["/deflate"] = fixed(200, z.compress(FEED) + z.flush(), Content_Encoding="deflate")
    result = await fetcher.fetch(server.url("/deflate"), allow_private=True)
    assert result.body == FEED


async def test_corrupt_gzip_raises_decode_failed(server: HostileServer, fetcher: Fetcher) -> None:
    server.routes["/bad"] = fixed(200, b"\x1f\x8b\x08\x00garbage!", Content_Encoding="gzip")
    with pytest.raises(DecodeFailed, match="corrupt gzip"):
        await fetcher.fetch(server.url("/bad"), allow_private=True)


async def test_unrequested_content_encoding_raises_decode_failed(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/br"] = fixed(200, b"\x0b\x02\x80hello\x03", Content_Encoding="br")
    with pytest.raises(DecodeFailed, match="'br'"):
        await fetcher.fetch(server.url("/br"), allow_private=True)


async def test_conditional_get_sends_validators_and_304_means_not_modified(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/feed"] = fixed(304, b"", ETag='"v1"')
    result = await fetcher.fetch(
        server.url("/feed"),
        etag='"v1"',
        last_modified="Mon, 01 Jan 2024 00:00:00 GMT",
        allow_private=True,
    )
    assert result.not_modified is True
    assert result.body == b""
    assert result.content_hash == ""
    headers = server.requests[0].headers
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"


async def test_304s_and_200s_reuse_their_keep_alive_connection(fetcher: Fetcher) -> None:
    connections = 0
    requests: list[bytes] = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while head := await reader.readuntil(b"\r\n\r\n"):
            requests.append(head)
            if b"if-none-match" in head.lower():
                writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
            else:
                writer.write(
                    b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Length: %d\r\n\r\n%s'
                    % (len(FEED), FEED)
                )
            await writer.drain()

    srv = await asyncio.start_server(keep_alive, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/feed"
    try:
        first = await fetcher.fetch(url, allow_private=True)
        assert first.body == FEED
        for _ in range(4):
            result = await fetcher.fetch(url, etag=first.etag, allow_private=True)
            assert result.not_modified
    finally:
        srv.close()
    assert len(requests) == 5
    assert connections == 1


async def test_validators_that_cannot_be_sent_back_are_not_kept(
    server: HostileServer, fetcher: Fetcher
) -> None:
    # http.server sends header values as Latin-1: an ETag with a non-ASCII byte and a
    # Last-Modified with a control character. Neither could be stored and sent again as is.
    server.routes["/feed"] = fixed(200, FEED, ETag='"caf\u00e9"', Last_Modified="Mon,\x01 1 Jan")
    result = await fetcher.fetch(server.url("/feed"), allow_private=True)
    assert result.body == FEED
    assert result.etag is None
    assert result.last_modified is None
    again = await fetcher.fetch(
        server.url("/feed"), etag='"caf\u00e9"', last_modified="x\x01", allow_private=True
    )
    assert again.body == FEED
    assert "if-none-match" not in server.requests[1].headers
    assert "if-modified-since" not in server.requests[1].headers


# --------------------------------------------------------------------------- errors


async def test_http_500_raises_http_status(server: HostileServer, fetcher: Fetcher) -> None:
    server.routes["/err"] = fixed(500, b"boom")
    with pytest.raises(HTTPStatus, match="HTTP 500 Internal Server Error") as info:
        await fetcher.fetch(server.url("/err"), allow_private=True)
    assert info.value.status == 500
    assert info.value.retry_after is None
    assert info.value.kind == "http_status"


async def test_429_with_retry_after_seconds_is_honoured(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/limited"] = fixed(429, b"slow down", Retry_After="120")
    with pytest.raises(HTTPStatus) as info:
        await fetcher.fetch(server.url("/limited"), allow_private=True)
    assert info.value.status == 429
    assert info.value.retry_after == 120.0


async def test_503_with_retry_after_http_date_is_honoured(
    server: HostileServer, fetcher: Fetcher
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    http_date = later.strftime("%a, %d %b %Y %H:%M:%S GMT")
    server.routes["/down"] = fixed(503, b"", Retry_After=http_date)
    with pytest.raises(HTTPStatus) as info:
        await fetcher.fetch(server.url("/down"), allow_private=True)
    assert info.value.retry_after is not None
    assert 3500 < info.value.retry_after <= 3600


async def test_a_body_that_trickles_forever_hits_the_deadline(server: HostileServer) -> None:
    server.routes["/trickle"] = trickle
    settings = FetchSettings(deadline=timedelta(seconds=1), read_timeout=timedelta(seconds=10))
    async with Fetcher(settings) as fetcher:
        with pytest.raises(FetchTimeout, match="1 s deadline"):
            await fetcher.fetch(server.url("/trickle"), allow_private=True)


async def test_a_body_over_the_cap_raises_body_too_large_naming_the_cap(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/big"] = huge(3 * 1024 * 1024)
    with pytest.raises(BodyTooLarge, match="1,048,576-byte cap"):
        await fetcher.fetch(server.url("/big"), max_bytes=1024 * 1024, allow_private=True)


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/big"] = huge(3 * 1024 * 1024, declare_length=True)
    with pytest.raises(BodyTooLarge, match="Content-Length 3,145,728"):
        await fetcher.fetch(server.url("/big"), max_bytes=1024 * 1024, allow_private=True)


async def test_a_closed_port_raises_connect_failed(fetcher: Fetcher) -> None:
    with pytest.raises(ConnectFailed) as info:
        await fetcher.fetch(f"http://127.0.0.1:{closed_port()}/feed", allow_private=True)
    assert info.value.kind == "connect"


async def test_a_header_too_long_to_parse_raises_connect_failed_saying_so(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/feed"] = fixed(200, FEED, X_Junk="j" * 20_000)
    with pytest.raises(ConnectFailed, match="broken response") as info:
        await fetcher.fetch(server.url("/feed"), allow_private=True)
    assert info.value.kind == "connect"


async def test_a_response_that_is_not_http_raises_connect_failed(fetcher: Fetcher) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectFailed, match=f"127.0.0.1:{port}"):
            await fetcher.fetch(f"http://127.0.0.1:{port}/feed", allow_private=True)
    finally:
        srv.close()


@pytest.mark.parametrize(
    "url", ["ftp://example.org/feed", "file:///etc/passwd", "http:///feed", "javascript:alert(1)"]
)
async def test_non_http_urls_and_urls_without_host_raise_bad_url(
    fetcher: Fetcher, url: str
) -> None:
    with pytest.raises(BadURL):
        await fetcher.fetch(url)


# --------------------------------------------------------------------------- memory


_PEAK_RSS_SCRIPT = """
import asyncio, json, sys
from monitor.config import FetchSettings
from monitor.fetch import Fetcher, FetchError

async def main():
    async with Fetcher(FetchSettings()) as f:
        try:
            await f.fetch(sys.argv[1], max_bytes=int(sys.argv[2]), allow_private=True)
            kind = "ok"
        except FetchError as exc:
            kind = exc.kind
    # VmHWM, not ru_maxrss: on Linux ru_maxrss carries the forking parent's peak across exec.
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    peak_mb = int(hwm.split()[1]) / 1024
    print(json.dumps({"kind": kind, "peak_mb": peak_mb}))

asyncio.run(main())
"""
# A Python process with httpx loaded peaks near 40 MB; holding a 50 MB body (or a 200 MB
# decompressed bomb) would push it well past this.
_PEAK_RSS_LIMIT_MB = 100


def _fetch_in_subprocess(url: str, max_bytes: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, url, str(max_bytes)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_50_mb_body_is_refused_with_bounded_memory(server: HostileServer) -> None:
    server.routes["/50mb"] = huge(50 * 1024 * 1024)
    outcome = _fetch_in_subprocess(server.url("/50mb"), 5 * 1024 * 1024)
    assert outcome["kind"] == "too_large"
    assert isinstance(outcome["peak_mb"], float)
    assert outcome["peak_mb"] < _PEAK_RSS_LIMIT_MB


def test_a_gzip_bomb_is_refused_without_expanding_it(server: HostileServer) -> None:
    bomb = gzip_bomb(200)
    assert len(bomb) < 1024 * 1024
    server.routes["/bomb"] = fixed(200, bomb, Content_Encoding="gzip")
    outcome = _fetch_in_subprocess(server.url("/bomb"), 5 * 1024 * 1024)
    assert outcome["kind"] == "too_large"
    assert isinstance(outcome["peak_mb"], float)
    assert outcome["peak_mb"] < _PEAK_RSS_LIMIT_MB


# --------------------------------------------------------------------------- redirects


async def test_a_redirect_loop_raises_too_many_redirects(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/a"] = redirect(302, "/b")
    server.routes["/b"] = redirect(302, "/a")
    with pytest.raises(TooManyRedirects, match="loop"):
        await fetcher.fetch(server.url("/a"), allow_private=True)


async def test_more_redirects_than_allowed_raises_too_many_redirects(
    server: HostileServer, fetcher: Fetcher
) -> None:
    for i in range(6):
        server.routes[f"/{i}"] = redirect(302, f"/{i + 1}")
    with pytest.raises(TooManyRedirects, match="more than 3 redirects"):
        await fetcher.fetch(server.url("/0"), allow_private=True)
    assert len(server.requests) == 4


async def test_all_permanent_redirects_report_the_new_url(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/old"] = redirect(301, "/older")
    server.routes["/older"] = redirect(308, "/new")
    server.routes["/new"] = fixed(200, FEED)
    result = await fetcher.fetch(server.url("/old"), allow_private=True)
    assert result.final_url == server.url("/new")
    assert result.permanent_redirect == server.url("/new")
    assert result.url == server.url("/old")


async def test_a_temporary_hop_means_no_permanent_redirect(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/old"] = redirect(301, "/tmp")
    server.routes["/tmp"] = redirect(302, "/new")
    server.routes["/new"] = fixed(200, FEED)
    result = await fetcher.fetch(server.url("/old"), allow_private=True)
    assert result.final_url == server.url("/new")
    assert result.permanent_redirect is None


async def test_a_redirect_to_a_non_http_scheme_raises_bad_url(
    server: HostileServer, fetcher: Fetcher
) -> None:
    server.routes["/r"] = redirect(302, "file:///etc/passwd")
    with pytest.raises(BadURL, match="file:///etc/passwd"):
        await fetcher.fetch(server.url("/r"), allow_private=True)


# --------------------------------------------------------------------------- politeness


async def test_per_host_limit_serialises_one_host_but_not_another() -> None:
    with HostileServer("127.0.0.1") as one, HostileServer("127.0.0.2") as other:
        one.routes["/slow"] = slow(0.4)
        other.routes["/slow"] = slow(0.4)
        async with Fetcher(FetchSettings(per_host=1)) as fetcher:
            await asyncio.gather(
                fetcher.fetch(one.url("/slow"), allow_private=True),
                fetcher.fetch(one.url("/slow"), allow_private=True),
                fetcher.fetch(other.url("/slow"), allow_private=True),
            )
    first, second = sorted(one.requests, key=lambda s: s.started)
    assert second.started >= first.finished  # same host: one at a time
    assert other.requests[0].started < first.finished  # other host: in parallel


async def test_per_host_delay_spaces_request_starts(server: HostileServer) -> None:
    server.routes["/feed"] = fixed(200, FEED)
    settings = FetchSettings(per_host=4, per_host_delay=timedelta(seconds=0.3))
    async with Fetcher(settings) as fetcher:
        await asyncio.gather(
            *(fetcher.fetch(server.url("/feed"), allow_private=True) for _ in range(3))
        )
    starts = sorted(s.started for s in server.requests)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.25 for gap in gaps), gaps


# --------------------------------------------------------------------------- retry policy


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("120") == 120.0


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:05:00 GMT", now=now) == 300.0


def test_retry_after_in_the_past_is_zero() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None
