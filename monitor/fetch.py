"""The one HTTP client of the process: politeness, caps, the SSRF guard and the retry policy.

`Fetcher.fetch` turns a URL into a `FetchResult` or a typed `FetchError`. It owns everything
between "this URL is due" and "here are its bytes": conditional GET, redirects (followed here,
one hop at a time, so each hop is checked), a total deadline, global and per-host concurrency
limits with an optional per-host delay, a body cap enforced on the raw stream with bounded
decompression, and refusal of private, loopback and metadata addresses at connection time.
`parse_retry_after` reads the server's Retry-After for the pipeline and the channels (the
backoff itself is `monitor.schedule.next_poll_after_failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import select
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from monitor.config import FetchSettings
from monitor.errors import FetchError

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


class ConnectFailed(FetchError):
    """No connection (DNS failure, refused, reset, TLS failure) or a broken response."""

    kind = "connect"


class HTTPStatus(FetchError):
    """The server answered with a status we cannot use. `retry_after` is set for 429/503."""

    kind = "http_status"

    def __init__(self, url: str, status: int, *, retry_after: float | None = None) -> None:
        self.status = status
        phrase = httpx.codes.get_reason_phrase(status) or "unknown status"
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
    content_hash: str


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

_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud metadata
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why the guard refuses `ip` (e.g. "loopback"), or None if it is a public address."""
    if ip in _METADATA:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} (embedded in IPv6 {ip})" if reason else None
        if ip.scope_id:
            return "scoped IPv6 address"
    for attr, reason in (
        ("is_unspecified", "unspecified address"),
        ("is_loopback", "loopback address"),
        ("is_link_local", "link-local address"),
        ("is_multicast", "multicast address"),
        ("is_reserved", "reserved address"),
        ("is_private", "private address"),
    ):
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


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


class _BlockedConnect(Exception):
    """Raised inside the transport; `Fetcher` turns it into `BlockedAddress` with the URL."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        where = address if host.strip("[]") == address else f"{host} -> {address}"
        super().__init__(f"refused to connect to {where}: {reason}")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses non-public addresses, connects to the checked IP.

    Written here rather than taken from httpx-secure 2.0.0 because that package (young, rarely
    used) says its address selection may open TCP probes, including to a denied address, and
    we promise no packet reaches a denied address. Checking the resolved IP at connection time
    and connecting to that very IP (not re-resolving) is what defeats DNS rebinding; httpcore
    still starts TLS with the hostname, so SNI and certificate checks use the name, and the
    Host header comes from the URL.
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await _resolve(host.strip("[]"), port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        # Every address is checked before any is tried: a name that resolves to one public and
        # one private address is refused outright rather than raced.
        for address in addresses:
            reason = blocked_reason(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                raise _BlockedConnect(host, address, reason)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _CheapReadableStream(httpcore.AsyncNetworkStream):
    """A network stream whose "is the idle connection readable?" check is one poll(2).

    httpcore asks that of every idle pooled connection each time it assigns a request (a
    server that closed a keep-alive connection makes it readable). Through anyio the question
    first builds the stream's whole attribute table, which calls getpeername(2): measured in
    bench/bench_fetch.py, that was the biggest single CPU cost of a poll. The socket is looked
    up once instead; the answer is the same.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: Any = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _CheapReadableStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            fd = self._socket.fileno()
            if fd == -1:
                return True  # closed under us: treat as expired, as httpcore does
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return self._inner.get_extra_info(info)


class _CheapReadableBackend(httpcore.AsyncNetworkBackend):
    """`AnyIOBackend` whose streams are `_CheapReadableStream`s."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _CheapReadableStream(
            await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its request assignment in linear time.

    httpcore 1.0 decides whether to close a surplus idle connection by building a list of all
    its connections, once per connection: quadratic in the pool size, on every request start
    and end (with 2 x concurrency connections, thousands of calls per request; the largest
    item of the benchmark's profile). This is the same method with that list replaced by its
    length, which is what the original compares: the same decisions, in the same order.
    Only used with the httpcore version it was copied from.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing_connections = []
        connections = self._connections
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing_connections.append(connection)

        queued_requests = [request for request in self._requests if request.is_queued()]
        for pool_request in queued_requests:
            origin = pool_request.request.url.origin
            available_connections = [
                connection
                for connection in connections
                if connection.can_handle_request(origin) and connection.is_available()
            ]
            if available_connections:
                pool_request.assign_to_connection(available_connections[0])
            elif len(connections) < self._max_connections:
                connection = self.create_connection(origin)
                connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle_connections = [c for c in connections if c.is_idle()]
                if idle_connections:
                    connection = idle_connections[0]
                    connections.remove(connection)
                    closing_connections.append(connection)
                    connection = self.create_connection(origin)
                    connections.append(connection)
                    pool_request.assign_to_connection(connection)

        return closing_connections


_POOL = _Pool if httpcore.__version__ == "1.0.9" else httpcore.AsyncConnectionPool


class _Transport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connection pool uses a given network backend.

    httpx 0.28 has no public way to pass a network backend, so the pool is rebuilt with the
    same options; `_pool` is httpx's own attribute (pinned to httpx<0.29 in pyproject).
    """

    def __init__(
        self, backend: httpcore.AsyncNetworkBackend, *, limits: httpx.Limits, http2: bool
    ) -> None:
        super().__init__(trust_env=False, limits=limits, http2=http2)
        self._pool = _POOL(
            ssl_context=_SSL_CONTEXT,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=backend,
        )


_SSL_CONTEXT = httpx.create_ssl_context(trust_env=False)


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
            self._first = False
            # "deflate" is meant to be zlib-wrapped (RFC 9110), but some servers send raw
            # deflate; a zlib header has compression method 8 and a header checksum.
            if len(data) < 2 or (data[0] & 0x0F) != 8 or ((data[0] << 8) | data[1]) % 31:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
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


class _HostGate:
    """Per-host politeness: at most `per_host` requests at once and a gap between starts."""

    def __init__(self, per_host: int, delay: float) -> None:
        self.semaphore = asyncio.Semaphore(per_host)
        self.delay = delay
        self.next_start = 0.0
        self.users = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self.semaphore:
            if self.delay > 0:
                now = time.monotonic()
                wait = self.next_start - now
                self.next_start = max(now, self.next_start) + self.delay
                if wait > 0:
                    await asyncio.sleep(wait)
            yield


def _check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BadURL(url, f"invalid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise BadURL(url, f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not parsed.host:
        raise BadURL(url, "URL has no host")
    return parsed


class Fetcher:
    """The process's HTTP client. Use one for the whole run; `aclose()` (or `async with`)."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        s = settings
        timeout = httpx.Timeout(
            connect=s.connect_timeout.total_seconds(),
            read=s.read_timeout.total_seconds(),
            write=s.read_timeout.total_seconds(),
            pool=s.connect_timeout.total_seconds(),
        )
        limits = httpx.Limits(
            max_connections=s.concurrency * 2,
            max_keepalive_connections=s.concurrency,
            keepalive_expiry=5.0,
        )
        http2 = _h2_available()
        headers = {
            "User-Agent": s.user_agent_string,
            "Accept-Encoding": "gzip, deflate",
        }

        def client(backend: httpcore.AsyncNetworkBackend) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                transport=_Transport(backend, limits=limits, http2=http2),
                timeout=timeout,
                headers=headers,
                follow_redirects=False,
                trust_env=False,
            )

        # Two pools, so a connection opened for an `allow_private` feed is never reused by a
        # guarded request to the same origin (which would skip the address check).
        self._guard = _GuardedBackend(_CheapReadableBackend())
        self._client = client(self._guard)
        self._private_client = client(_CheapReadableBackend())
        self._semaphore = asyncio.Semaphore(s.concurrency)
        self._hosts: dict[str, _HostGate] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()
        await self._private_client.aclose()

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
        accept: str = FEED_ACCEPT,
    ) -> FetchResult:
        """GET `url` politely and safely. Raises a `FetchError` subclass on any failure.

        `etag`/`last_modified` make it a conditional GET (a 304 gives `not_modified=True`).
        `max_bytes` defaults to `max_feed_bytes`. `allow_private` turns the address guard off
        for this request only.
        """
        # The URL is checked (and parsed, once per hop) by `_follow`.
        cap = max_bytes if max_bytes is not None else self.settings.max_feed_bytes
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = self.settings.deadline.total_seconds()
        try:
            async with self._semaphore, asyncio.timeout(deadline):
                return await self._follow(url, headers, cap, allow_private)
        except TimeoutError as exc:
            raise FetchTimeout(
                url, f"no complete response within the {deadline:g} s deadline"
            ) from exc

    async def _follow(
        self, url: str, headers: dict[str, str], cap: int, allow_private: bool
    ) -> FetchResult:
        client = self._private_client if allow_private else self._client
        current = url
        visited = {url}
        all_permanent = True
        hops = 0
        while True:
            target = _check_url(current)
            gate = self._gate(target.host.lower())
            gate.users += 1
            try:
                async with gate.slot():
                    result = await self._one(client, url, current, target, headers, cap)
            finally:
                gate.users -= 1
            if isinstance(result, FetchResult):
                if hops and all_permanent:
                    result.permanent_redirect = result.final_url
                return result
            status, location = result
            hops += 1
            all_permanent = all_permanent and status in _PERMANENT_STATUSES
            try:
                nxt = urljoin(current, location)
            except ValueError as exc:
                raise BadURL(url, f"redirect to an invalid URL {location!r}: {exc}") from exc
            if urlsplit(nxt).scheme not in ("http", "https"):
                raise BadURL(url, f"redirect to {nxt!r} is not http or https")
            if nxt in visited:
                raise TooManyRedirects(url, f"redirect loop back to {nxt}")
            if hops > self.settings.max_redirects:
                raise TooManyRedirects(
                    url, f"more than {self.settings.max_redirects} redirects (last to {nxt})"
                )
            visited.add(nxt)
            current = nxt

    async def _one(
        self,
        client: httpx.AsyncClient,
        url: str,
        current: str,
        target: httpx.URL,
        headers: dict[str, str],
        cap: int,
    ) -> FetchResult | tuple[int, str]:
        """One request: a result, or (status, Location) for a redirect to follow. `target` is
        `current` already parsed (httpx would otherwise parse the string again)."""
        try:
            async with client.stream("GET", target, headers=headers) as response:
                status = response.status_code
                if status in _REDIRECT_STATUSES and response.headers.get("location"):
                    return status, response.headers["location"]
                if status == 304:
                    return self._result(url, current, response, b"", not_modified=True)
                if not 200 <= status < 300:
                    retry_after = None
                    if status in (429, 503):
                        retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise HTTPStatus(url, status, retry_after=retry_after)
                body = await _read_capped(url, response, cap)
                return self._result(url, current, response, body, not_modified=False)
        except _BlockedConnect as exc:
            raise BlockedAddress(url, str(exc)) from None
        except httpx.TimeoutException as exc:
            raise FetchTimeout(url, f"{_what(exc)} timed out on {current}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise BadURL(url, str(exc) or type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise ConnectFailed(url, f"{current}: {exc or type(exc).__name__}") from exc
        except ssl.SSLError as exc:
            raise ConnectFailed(url, f"TLS failed for {current}: {exc}") from exc

    @staticmethod
    def _result(
        url: str, current: str, response: httpx.Response, body: bytes, *, not_modified: bool
    ) -> FetchResult:
        h = response.headers
        return FetchResult(
            url=url,
            final_url=current,
            status=response.status_code,
            body=body,
            content_type=h.get("content-type"),
            etag=h.get("etag"),
            last_modified=h.get("last-modified"),
            not_modified=not_modified,
            permanent_redirect=None,
            cache_max_age=_cache_max_age(h.get("cache-control")),
            content_hash="" if not_modified else hashlib.sha256(body).hexdigest(),
        )


def _what(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting"
    if isinstance(exc, httpx.PoolTimeout):
        return "waiting for a pooled connection"
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request"
    return "reading the response"


async def _read_capped(url: str, response: httpx.Response, cap: int) -> bytes:
    """The decoded body, refusing it as soon as it (raw or decoded) passes `cap` bytes."""
    too_large = f"body larger than the {cap:,}-byte cap"
    length = response.headers.get("content-length")
    if length and length.strip().isdigit() and int(length) > cap:
        raise BodyTooLarge(url, f"{too_large} (Content-Length {int(length):,})")
    encodings = [
        e.strip().lower()
        for e in response.headers.get("content-encoding", "").split(",")
        if e.strip() and e.strip().lower() != "identity"
    ]
    if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
        raise DecodeFailed(url, f"unsupported Content-Encoding {', '.join(encodings)!r}")
    decoder = _Decoder(encodings[0] if encodings else "identity")
    parts: list[bytes] = []
    size = 0
    raw_size = 0
    try:
        async for chunk in response.aiter_raw():
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


def _h2_available() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True
