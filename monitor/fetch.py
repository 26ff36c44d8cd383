"""The one HTTP client of the process: politeness, caps, the SSRF guard and the retry policy.

`Fetcher.fetch` turns a URL into a `FetchResult` or a typed `FetchError`. It owns everything
between "this URL is due" and "here are its bytes": conditional GET, redirects (followed here,
one hop at a time, so each hop is checked), a total deadline, global and per-host concurrency
limits with an optional per-host delay, a body cap enforced on the raw stream with bounded
decompression, and refusal of private, loopback and metadata addresses at connection time.

Slow servers are contained: the wait for a slot has its own bound (`slot_wait`) and does not
count against the deadline, which runs only while a request is on the wire; a body is cut when
it stalls (`idle_timeout`) or trickles slower than `min_rate` over `rate_window`; and a URL
whose last request was slow may hold only one of its host's slots (the host's "slow lane"), so
slow feeds never take every slot from the healthy ones (`_HostGate`).
`parse_retry_after` reads the server's Retry-After for the pipeline and the channels (the
backoff itself is `monitor.schedule.next_poll_after_failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http
import ipaddress
import re
import socket
import ssl
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

# Before aiohttp: it imports aiohttp without the CA loading aiohttp does at import (see there).
from monitor import aiohttp_import  # noqa: F401

# isort: split
import aiohttp
import aiohttp.abc
import certifi
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import ResolveResult
from yarl import URL

from monitor.addresses import blocked_reason
from monitor.config import FetchSettings
from monitor.errors import FetchError
from monitor.textsafety import clean_url

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_STATUSES = frozenset({301, 308})
_DECODE_PIECE = 65536


# --------------------------------------------------------------------------- errors


class FetchTimeout(FetchError):
    """The connection, a read, or the whole fetch's deadline ran out."""

    kind = "timeout"


class IdleTimeout(FetchTimeout):
    """The body stalled: no byte for `idle_timeout`, well before the deadline."""

    kind = "idle"


class TooSlow(FetchTimeout):
    """The body trickled slower than `min_rate` bytes per second over `rate_window`."""

    kind = "slow"


class SlotWaitTimeout(FetchError):
    """No slot for the host (or the process) came free within `slot_wait`: never requested."""

    kind = "slot_wait"


class ConnectFailed(FetchError):
    """No connection (DNS failure, refused, reset, TLS failure) or a broken response."""

    kind = "connect"


class HTTPStatus(FetchError):
    """The server answered with a status we cannot use. `retry_after` is set for 429/503."""

    kind = "http_status"

    def __init__(self, url: str, status: int, *, retry_after: float | None = None) -> None:
        self.status = status
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "unknown status"
        message = f"HTTP {status} {phrase}"
        if retry_after is not None:
            message += f" (retry after {retry_after:.0f} s)"
        super().__init__(url, message, retry_after=retry_after)


class BodyTooLarge(FetchError):
    """The body (after decompression) is larger than the cap for this kind of fetch."""

    kind = "too_large"


class BlockedAddress(FetchError):
    """The SSRF guard refused an address: loopback, private, link-local, metadata, ..."""

    kind = "blocked"


class TooManyRedirects(FetchError):
    """More redirects than `max_redirects`, or a redirect loop."""

    kind = "redirects"


class BadURL(FetchError):
    """The URL is not http/https or has no host."""

    kind = "bad_url"


class DecodeFailed(FetchError):
    """The body's Content-Encoding is unsupported or the compressed stream is corrupt."""

    kind = "decode"


# --------------------------------------------------------------------------- result


@dataclass(slots=True)
class FetchResult:
    """What one fetch produced. `body` is decoded (gzip/deflate) and within the cap."""

    url: str
    final_url: str
    status: int
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None
    not_modified: bool
    permanent_redirect: str | None
    cache_max_age: float | None

    @property
    def content_hash(self) -> str:
        """SHA-256 of the body ("" for a 304), which tells a changed feed from a re-sent one.
        Computed when asked: an article page never is (2,000 pages: 0.2 s of the event
        loop)."""
        return "" if self.not_modified else hashlib.sha256(self.body).hexdigest()


# --------------------------------------------------------------------------- retry policy


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or HTTP-date) -> seconds from now, or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return max(0.0, (when - current).total_seconds())


# --------------------------------------------------------------------------- SSRF guard


async def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (an IP literal: itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


class _BlockedConnect(OSError):
    """Raised inside the connector; `Fetcher` turns it into `BlockedAddress` with the URL.

    An OSError so that aiohttp passes it up as the cause of its connector error (it wraps
    OSErrors from resolving and connecting, and lets nothing else through unwrapped).
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        where = address if host.strip("[]") == address else f"{host} -> {address}"
        super().__init__(f"refused to connect to {where}: {reason}")

    def __str__(self) -> str:
        return str(self.args[0])


def _check_address(host: str, address: str, *, allow_private: bool = False) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    reason = blocked_reason(ip, allow_private=allow_private)
    if reason is not None:
        raise _BlockedConnect(host, address, reason)


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves a name and refuses it if any of its addresses is not public (with
    `allow_private`, the pool of opted-in origins: if any is a cloud metadata address).

    Every address is checked before any is tried: a name that resolves to one public and one
    private address is refused outright rather than raced. aiohttp then connects to exactly
    the addresses returned here (it does not resolve again), which is what defeats DNS
    rebinding; TLS still uses the hostname for SNI and the certificate check, and the Host
    header comes from the URL. IP literals never reach a resolver in aiohttp: `_guard_socket`
    checks every address again as its socket is made, literals included.

    Written here rather than taken from a package: the one candidate (httpx-secure 2.0.0,
    young and rarely used) says its address selection may open TCP probes, including to a
    denied address, and we promise no packet reaches a denied address.
    """

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await _resolve(host, port)
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        for address in addresses:
            _check_address(host, address, allow_private=self.allow_private)
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        return results

    async def close(self) -> None:
        return None


def _guard_socket(addr_info: AddrInfoType) -> socket.socket:
    """aiohttp's socket factory for guarded connections: the last check, before connect(2)."""
    address = str(addr_info[4][0])
    _check_address(address, address)
    return _plain_socket(addr_info)


def _metadata_guard_socket(addr_info: AddrInfoType) -> socket.socket:
    """The socket factory of the opted-in pool: private addresses pass, metadata never does."""
    address = str(addr_info[4][0])
    _check_address(address, address, allow_private=True)
    return _plain_socket(addr_info)


def _plain_socket(addr_info: AddrInfoType) -> socket.socket:
    family, type_, proto, _canon, _sockaddr = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setblocking(False)  # as aiohappyeyeballs makes its own; aiohttp sets TCP_NODELAY
    return sock


_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


def _legacy_ipv4(host: str) -> str | None:
    """The address a legacy numeric IPv4 host (`2130706433`, `127.1`, `0x7f.1`) stands for."""
    if not _LEGACY_IPV4.fullmatch(host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


@functools.cache
def _verified_context() -> ssl.SSLContext:
    """The context of every TLS connection: certifi's CA bundle, made at the first https
    request (loading the bundle is ~30 ms: not for a pass, or a process, that has none)."""
    return ssl.create_default_context(cafile=certifi.where())


def _refusing_context() -> ssl.SSLContext:
    """The context of the sessions for plain-http hops: it trusts no CA, so a TLS handshake
    through one of them (which `Fetcher._session` never asks for) fails rather than going
    unverified."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, hostname checked, no CA


# --------------------------------------------------------------------------- body decoding


class _Decoder:
    """gzip/deflate decoded in pieces of at most 64 KiB, so a bomb never expands at once.

    Hand-written because httpx's decoder inflates a whole network chunk in one call (a 200 KB
    gzip bomb became one 67 MB chunk, see research §4); zlib's `max_length` bounds each step.
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._first = True
        if encoding in ("gzip", "x-gzip"):
            self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            self._z = None

    def feed(self, data: bytes) -> Iterable[bytes]:
        if self._z is None:
            if data:
                yield data
            return
        if self._first and self.encoding == "deflate" and data:
            self._sniff_deflate(data)
        while data and not self._z.eof:  # bytes after the end of the stream are ignored
            out = self._z.decompress(data, _DECODE_PIECE)
            if out:
                yield out
            data = self._z.unconsumed_tail
            if not data and len(out) == _DECODE_PIECE:
                # Output filled exactly: zlib may hold more for the input it already took.
                while not self._z.eof:
                    more = self._z.decompress(b"", _DECODE_PIECE)
                    if not more:
                        break
                    yield more

    def _sniff_deflate(self, data: bytes) -> None:
        """On the first bytes of a "deflate" body: switch to raw deflate unless zlib-wrapped."""
        self._first = False
        # "deflate" is meant to be zlib-wrapped (RFC 9110), but some servers send raw
        # deflate; a zlib header has compression method 8 and a header checksum.
        if len(data) < 2 or (data[0] & 0x0F) != 8 or ((data[0] << 8) | data[1]) % 31:
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)

    def finish(self) -> None:
        if self._z is not None and not self._z.eof:
            raise zlib.error("compressed body ends before the end of its stream")


_MAX_AGE_RE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def _cache_max_age(value: str | None) -> float | None:
    if not value:
        return None
    lowered = value.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return None
    match = _MAX_AGE_RE.search(value)
    return float(match.group(1)) if match else None


# --------------------------------------------------------------------------- fetcher


class _RateWatch:
    """Decides when a body trickles too slowly: fewer than `min_rate` bytes per second over
    the last `window` seconds. Pure bookkeeping on (time, bytes) samples; the caller reads.

    A body that finishes within the first window is never judged, so a small answer from a
    slow-to-start server passes; a body that starts fast and then trickles is caught once the
    window slides past its fast part.
    """

    def __init__(self, min_rate: float, window: float, started: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self.started = started
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque([(started, 0)])

    def add(self, now: float, size: int) -> float | None:
        """Count `size` bytes received at `now`; the rate over the window if it is too slow."""
        self.total += size
        self._samples.append((now, self.total))
        if self.min_rate <= 0 or now - self.started < self.window:
            return None
        cutoff = now - self.window
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        then, at_then = self._samples[0]
        rate = (self.total - at_then) / max(now - then, 1e-9)
        return rate if rate < self.min_rate else None


class _Deadline:
    """What is left of one fetch's deadline (spent only while a hop holds its slots)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = seconds


#: How many slow URLs a host's gate remembers (the oldest mark is dropped first).
_SLOW_MARKS = 256


class _HostGate:
    """Per-host politeness and fairness: at most `per_host` requests at once, a gap between
    starts, and at most one of those slots held by URLs marked slow.

    The policy, kept simple so that it can be explained in one sentence: a URL whose last
    request on this host was cut (deadline, idle, slow) or took longer than `idle_timeout` is
    "slow" until a request of it is quick again, and a slow URL must first take the host's one
    slow-lane token. Healthy URLs never wait for that token, so with `per_host` 2 or more the
    slow ones can hold at most one slot and the healthy ones always keep the others. With
    `per_host: 1` there is nothing to keep back: everyone shares the one slot.
    """

    def __init__(self, per_host: int, delay: float) -> None:
        self.per_host = per_host
        self.semaphore = asyncio.Semaphore(per_host)
        self.slow_lane = asyncio.Semaphore(1)
        self.delay = delay
        self.next_start = 0.0
        self.users = 0
        self._slow: OrderedDict[str, None] = OrderedDict()

    def is_slow(self, url: str) -> bool:
        return url in self._slow

    def judge(self, url: str, *, slow: bool) -> None:
        """Record how the last request of `url` went (see the class's policy)."""
        if not slow:
            self._slow.pop(url, None)
            return
        self._slow[url] = None
        self._slow.move_to_end(url)
        while len(self._slow) > _SLOW_MARKS:
            self._slow.popitem(last=False)

    @contextlib.asynccontextmanager
    async def slot(self, *, slow: bool = False) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as held:
            if slow and self.per_host > 1:
                await held.enter_async_context(self.slow_lane)
            await held.enter_async_context(self.semaphore)
            if self.delay > 0:
                now = time.monotonic()
                wait = self.next_start - now
                self.next_start = max(now, self.next_start) + self.delay
                if wait > 0:
                    await asyncio.sleep(wait)
            yield


#: (scheme, host, port) with the host lower-cased and the port filled in from the scheme.
Origin = tuple[str, str, int | None]


def _origin_of(url: str | URL | None) -> Origin | None:
    """The origin of `url`, or None if there is none or it cannot be parsed."""
    if url is None:
        return None
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        return (parsed.scheme.lower(), (parsed.raw_host or "").lower(), parsed.port)
    except (TypeError, ValueError):
        return None


def _check_url(url: str) -> URL:
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise BadURL(url, f"invalid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise BadURL(url, f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not parsed.raw_host:
        raise BadURL(url, "URL has no host")
    try:
        parsed.port  # noqa: B018 - an out-of-range port raises here, not in the connector
    except ValueError as exc:
        raise BadURL(url, f"invalid port: {exc}") from exc
    return parsed


class Fetcher:
    """The process's HTTP client. Use one for the whole run; `aclose()` (or `async with`).

    aiohttp rather than httpx for this one hot path: measured in bench/bench_fetch.py, 2,000
    GETs on loopback cost 2.1-2.4 s of CPU through httpx + httpcore + anyio and 0.2 s through
    aiohttp (its HTTP parser is compiled, and its pool's bookkeeping is constant per request).
    The notifiers, a few requests a minute, keep httpx. HTTP/1.1 only (keep-alive pooled).
    """

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        s = settings
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,  # waiting for a pool slot is bounded by the fetch's deadline
            sock_connect=s.connect_timeout.total_seconds(),
            sock_read=s.read_timeout.total_seconds(),
        )
        self._headers = {
            "User-Agent": s.user_agent_string,
            "Accept-Encoding": "gzip, deflate",
        }
        self._limit = s.concurrency * 2
        # Two pools, so a connection opened for an `allow_private` feed is never reused by a
        # guarded request to the same origin (which would skip the address check). Sessions
        # are made on first use: aiohttp binds them to the running event loop.
        # And per scheme, so the CA bundle is loaded only for https (`_verified_context`).
        self._sessions: dict[tuple[bool, bool], aiohttp.ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(s.concurrency)
        self._hosts: dict[str, _HostGate] = {}

    def _session(self, allow_private: bool, tls: bool) -> aiohttp.ClientSession:
        session = self._sessions.get((allow_private, tls))
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,  # the per-host limit is `_HostGate`'s (it also spaces starts)
                keepalive_timeout=5.0,
                ssl=_verified_context() if tls else _refusing_context(),
                resolver=_GuardedResolver(allow_private=allow_private),
                socket_factory=_metadata_guard_socket if allow_private else _guard_socket,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                auto_decompress=False,  # decoded here, in bounded pieces (`_Decoder`)
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies carried between feeds
                trust_env=False,
            )
            self._sessions[allow_private, tls] = session
        return session

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _rebind(self) -> None:
        """Start new pools on this event loop (a CLI or a test may run one loop per call).

        A pool is bound to the loop it was made on; connections of an ended loop died with it,
        and closing their session then only marks it closed.
        """
        await self.aclose()
        self._loop = asyncio.get_running_loop()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await session.close()

    def _gate(self, host: str) -> _HostGate:
        gate = self._hosts.get(host)
        if gate is None:
            if len(self._hosts) > 10_000:  # forget idle hosts so the map cannot grow forever
                for key in [k for k, g in self._hosts.items() if g.users == 0]:
                    del self._hosts[key]
            gate = _HostGate(self.settings.per_host, self.settings.per_host_delay.total_seconds())
            self._hosts[host] = gate
        return gate

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        max_bytes: int | None = None,
        allow_private: bool = False,
        private_origin: str | None = None,
        accept: str = FEED_ACCEPT,
    ) -> FetchResult:
        """GET `url` politely and safely. Raises a `FetchError` subclass on any failure.

        `etag`/`last_modified` make it a conditional GET (a 304 gives `not_modified=True`).
        `max_bytes` defaults to `max_feed_bytes`. `private_origin` is a URL whose origin
        (scheme, host, port) may be on a private address (a feed's `allow_private`): it is
        decided at every hop, the first included, so a hop to any other origin gets the full
        guard, and a cloud metadata address is refused even on that origin. `allow_private`
        is short for `private_origin=url`.
        """
        # The URL is checked (and parsed, once per hop) by `_follow`.
        cap = max_bytes if max_bytes is not None else self.settings.max_feed_bytes
        headers = {"Accept": accept}
        if etag and _sendable(etag):
            headers["If-None-Match"] = etag
        if last_modified and _sendable(last_modified):
            headers["If-Modified-Since"] = last_modified
        origin = private_origin if private_origin is not None else url if allow_private else None
        return await self._follow(url, headers, cap, _origin_of(origin))

    async def _follow(
        self, url: str, headers: dict[str, str], cap: int, origin: Origin | None
    ) -> FetchResult:
        if asyncio.get_running_loop() is not self._loop:
            await self._rebind()
        current = url
        visited = {url}
        all_permanent = True
        hops = 0
        # The deadline counts time on the wire only: each hop spends from it once it holds
        # its slots, so waiting behind other requests to a host never times a request out.
        deadline = _Deadline(self.settings.deadline.total_seconds())
        while True:
            target = _check_url(current)
            host = target.raw_host or ""
            # Decided per hop: only a hop on the opted-in origin may reach a private address.
            private = origin is not None and _origin_of(target) == origin
            session = self._session(private, target.scheme == "https")
            if not private:
                legacy = _legacy_ipv4(host)
                if legacy is not None:  # aiohttp refuses these forms; say what they mean
                    try:
                        _check_address(host, legacy)
                    except _BlockedConnect as exc:
                        raise BlockedAddress(url, str(exc)) from None
            gate = self._gate(host.lower())
            gate.users += 1
            try:
                async with self._slots(gate, url, current):
                    request = self._one(session, url, current, target, headers, cap)
                    result = await self._timed(gate, deadline, url, current, request)
            finally:
                gate.users -= 1
            if isinstance(result, FetchResult):
                if hops and all_permanent:
                    result.permanent_redirect = result.final_url
                return result
            status, location = result
            hops += 1
            all_permanent = all_permanent and status in _PERMANENT_STATUSES
            nxt = _redirect_target(url, current, location, visited)
            if hops > self.settings.max_redirects:
                raise TooManyRedirects(
                    url, f"more than {self.settings.max_redirects} redirects (last to {nxt})"
                )
            visited.add(nxt)
            current = nxt

    @contextlib.asynccontextmanager
    async def _slots(self, gate: _HostGate, url: str, current: str) -> AsyncIterator[None]:
        """The host's slot (its slow lane first if `current` is marked slow), then one of the
        process's; waiting for both together is bounded by `slot_wait`.

        The host's slot comes first so that requests queued behind one busy host never hold
        the process's slots that other hosts could use.
        """
        wait = self.settings.slot_wait.total_seconds()
        slow = gate.is_slow(current)
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(wait):
                    await held.enter_async_context(gate.slot(slow=slow))
                    await held.enter_async_context(self._semaphore)
            except TimeoutError:
                lane = " (its slow lane: this URL was slow last time)" if slow else ""
                raise SlotWaitTimeout(
                    url,
                    f"not requested: no free slot for {urlsplit(current).hostname}{lane} "
                    f"within {wait:g} s (per_host {gate.per_host})",
                ) from None
            yield

    async def _timed(
        self,
        gate: _HostGate,
        deadline: _Deadline,
        url: str,
        current: str,
        request: Coroutine[Any, Any, FetchResult | tuple[int, str]],
    ) -> FetchResult | tuple[int, str]:
        """`request` (one hop) within what is left of the deadline; the gate learns whether
        it was slow."""
        started = time.monotonic()
        slow = True
        try:
            async with asyncio.timeout(max(deadline.left, 0.0)):
                result = await request
            slow = time.monotonic() - started > self.settings.idle_timeout.total_seconds()
            return result
        except TimeoutError as exc:
            raise FetchTimeout(
                url,
                f"no complete response within the {deadline.seconds:g} s deadline "
                "(counted from the request, not from the wait for a slot)",
            ) from exc
        except FetchTimeout:
            raise
        except BaseException:
            slow = False  # refused, broken or cancelled: nothing says the URL is slow
            raise
        finally:
            deadline.left -= time.monotonic() - started
            gate.judge(current, slow=slow)

    async def _one(
        self,
        session: aiohttp.ClientSession,
        url: str,
        current: str,
        target: URL,
        headers: dict[str, str],
        cap: int,
    ) -> FetchResult | tuple[int, str]:
        """One request: a result, or (status, Location) for a redirect to follow. `target` is
        `current` already parsed."""
        try:
            async with session.get(target, headers=headers, allow_redirects=False) as response:
                status = response.status
                location = response.headers.get("location")
                if status in _REDIRECT_STATUSES and location:
                    return status, location
                if status == 304:
                    return self._result(url, current, response, b"", not_modified=True)
                if not 200 <= status < 300:
                    raise _status_error(url, status, response)
                try:
                    body = await _read_capped(url, response, cap, self.settings)
                except BaseException:
                    response.close()  # drop the connection: the rest of the body is unread
                    raise
                return self._result(url, current, response, body, not_modified=False)
        except (aiohttp.ClientError, OSError) as exc:
            error, cause = _wire_error(url, current, exc)
            raise error from cause

    @staticmethod
    def _result(
        url: str,
        current: str,
        response: aiohttp.ClientResponse,
        body: bytes,
        *,
        not_modified: bool,
    ) -> FetchResult:
        h = response.headers
        return FetchResult(
            url=url,
            final_url=current,
            status=response.status,
            body=body,
            content_type=h.get("content-type"),
            etag=_validator(h.get("etag")),
            last_modified=_validator(h.get("last-modified")),
            not_modified=not_modified,
            permanent_redirect=None,
            cache_max_age=_cache_max_age(h.get("cache-control")),
        )


def _redirect_target(url: str, current: str, location: str, visited: set[str]) -> str:
    """Where a redirect from `current` leads, refused when invalid, not HTTP(S) or a loop."""
    try:
        # Percent-encoded controls: the URL is logged and shown in errors and status.
        nxt = clean_url(urljoin(current, location))
    except ValueError as exc:
        raise BadURL(url, f"redirect to an invalid URL {location!r}: {exc}") from exc
    if urlsplit(nxt).scheme not in ("http", "https"):
        raise BadURL(url, f"redirect to {nxt!r} is not http or https")
    if nxt in visited:
        raise TooManyRedirects(url, f"redirect loop back to {nxt}")
    return nxt


def _status_error(url: str, status: int, response: aiohttp.ClientResponse) -> HTTPStatus:
    """The error for a non-2xx answer, with its Retry-After when it is a 429 or 503."""
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return HTTPStatus(url, status, retry_after=retry_after)


def _wire_error(
    url: str, current: str, exc: aiohttp.ClientError | OSError
) -> tuple[FetchError, BaseException | None]:
    """The error a failed request raises, and its cause (None: the cause is not shown).

    The checks go from the most to the least specific class, like except clauses would."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, _BlockedConnect):
            return BlockedAddress(url, str(cause)), None
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return ConnectFailed(url, f"TLS failed for {current}: {exc}"), exc
        return ConnectFailed(url, f"{current}: {cause or type(exc).__name__}"), exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return FetchTimeout(url, f"connecting timed out on {current}"), exc
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return FetchTimeout(url, f"reading the response timed out on {current}"), exc
    if isinstance(exc, aiohttp.InvalidURL):
        return BadURL(url, f"invalid URL {current}: {exc}"), exc
    if isinstance(exc, aiohttp.ClientResponseError):  # a response aiohttp could not parse
        return ConnectFailed(url, f"{current}: broken response: {exc.message}"), exc
    if isinstance(exc, aiohttp.ClientError):
        return ConnectFailed(url, f"{current}: {exc or type(exc).__name__}"), exc
    if isinstance(exc, ssl.SSLError):
        return ConnectFailed(url, f"TLS failed for {current}: {exc}"), exc
    return ConnectFailed(url, f"{current}: {exc}"), exc


def _sendable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _validator(value: str | None) -> str | None:
    """A validator we can store and send back: printable ASCII, at most 1,000 characters.

    aiohttp decodes header bytes as UTF-8 with surrogate escapes; such a value could neither be
    stored as text nor sent again, so a feed with one is simply polled unconditionally.
    """
    if value is None or len(value) > 1000 or not _sendable(value):
        return None
    return value


async def _read_capped(
    url: str, response: aiohttp.ClientResponse, cap: int, settings: FetchSettings
) -> bytes:
    """The decoded body, refusing it as soon as it (raw or decoded) passes `cap` bytes, and
    cutting it when it stalls (`idle_timeout`) or trickles (`min_rate` over `rate_window`)."""
    too_large = f"body larger than the {cap:,}-byte cap"
    length = response.headers.get("content-length")
    if length and length.strip().isdigit() and int(length) > cap:
        raise BodyTooLarge(url, f"{too_large} (Content-Length {int(length):,})")
    decoder = _Decoder(_content_encoding(url, response))
    parts: list[bytes] = []
    size = 0
    raw_size = 0
    idle = settings.idle_timeout.total_seconds()
    window = settings.rate_window.total_seconds()
    pace = _RateWatch(float(settings.min_rate), window, time.monotonic())
    try:
        while chunk := await _next_chunk(url, response, idle):
            rate = pace.add(time.monotonic(), len(chunk))
            if rate is not None:
                raise TooSlow(
                    url,
                    f"body trickles at {rate:.0f} bytes/s over {window:g} s, under the "
                    f"{settings.min_rate:,} bytes/s minimum ({pace.total:,} bytes so far)",
                )
            raw_size += len(chunk)
            if raw_size > cap:
                raise BodyTooLarge(url, too_large)
            for piece in decoder.feed(chunk):
                size += len(piece)
                if size > cap:
                    raise BodyTooLarge(url, f"{too_large} (after {decoder.encoding} decoding)")
                parts.append(piece)
        decoder.finish()
    except zlib.error as exc:
        raise DecodeFailed(url, f"corrupt {decoder.encoding} body: {exc}") from exc
    return b"".join(parts)


def _content_encoding(url: str, response: aiohttp.ClientResponse) -> str:
    """The body's one supported Content-Encoding ("identity" when none), else `DecodeFailed`."""
    encodings = [
        e.strip().lower()
        for e in response.headers.get("content-encoding", "").split(",")
        if e.strip() and e.strip().lower() != "identity"
    ]
    if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
        raise DecodeFailed(url, f"unsupported Content-Encoding {', '.join(encodings)!r}")
    return encodings[0] if encodings else "identity"


async def _next_chunk(url: str, response: aiohttp.ClientResponse, idle: float) -> bytes:
    """The next piece of the raw body (b"" at its end), or `IdleTimeout` after `idle` s."""
    waiting = asyncio.timeout(idle)
    try:
        async with waiting:
            return await response.content.readany()
    except TimeoutError:
        if not waiting.expired():
            raise
        raise IdleTimeout(url, f"body stalled: no byte for {idle:g} s") from None
