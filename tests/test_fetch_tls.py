"""TLS in the fetcher: verified against certifi's CAs, loaded only when a request needs them.

A real TLS server on 127.0.0.1 (a self-signed certificate made for the test): no CA of the
bundle vouches for it, so the fetch must fail its certificate check; trusted through a context
that knows the test's certificate, the same fetch succeeds. A process that fetches only plain
http never loads the bundle, and importing the fetcher leaves no CA in aiohttp's own default
contexts (which it never uses) and the user's `SSL_CERT_*` variables as they were.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hostile_server import HostileServer, fixed
from receivers import self_signed_cert

import monitor.fetch
from monitor.config import FetchSettings
from monitor.fetch import Fetcher, FetchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[HostileServer, Path]]:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = HostileServer("127.0.0.1")
    srv._server.socket = context.wrap_socket(srv._server.socket, server_side=True)
    srv.routes["/feed"] = fixed(200, b"<rss>over tls</rss>")
    with srv:
        yield srv, cert


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchSettings()) as f:
        yield f


def https(srv: HostileServer, path: str) -> str:
    return f"https://127.0.0.1:{srv.port}{path}"


async def test_a_certificate_no_ca_vouches_for_is_refused(
    fetcher: Fetcher, tls_site: tuple[HostileServer, Path]
) -> None:
    srv, _ = tls_site
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        await fetcher.fetch(https(srv, "/feed"), allow_private=True)
    assert not any(r.path == "/feed" for r in srv.requests)  # no request was sent


async def test_a_trusted_certificate_is_fetched(
    monkeypatch: pytest.MonkeyPatch, tls_site: tuple[HostileServer, Path]
) -> None:
    srv, cert = tls_site
    trusted = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(monitor.fetch, "_verified_context", lambda: trusted)
    async with Fetcher(FetchSettings()) as f:
        result = await f.fetch(https(srv, "/feed"), allow_private=True)
    assert result.body == b"<rss>over tls</rss>"


async def test_plain_http_never_loads_the_ca_bundle(fetcher: Fetcher) -> None:
    monitor.fetch._verified_context.cache_clear()
    with HostileServer("127.0.0.1") as srv:
        srv.routes["/feed"] = fixed(200, b"<rss/>")
        result = await fetcher.fetch(srv.url("/feed"), allow_private=True)
    assert result.body == b"<rss/>"
    assert monitor.fetch._verified_context.cache_info().currsize == 0


def test_the_plain_sessions_context_refuses_any_tls() -> None:
    """A TLS handshake through a plain-http session would meet a context with no CA that
    still verifies: it fails rather than going unchecked."""
    context = monitor.fetch._refusing_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0


PROBE = """
import os, sys
import monitor.fetch
import aiohttp.connector as c
print(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"),
      c._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"])
"""


@pytest.mark.parametrize("cert_file", [None, "/etc/ssl/user-chosen.pem"])
def test_importing_the_fetcher_leaves_the_ca_variables_as_they_were(cert_file: str | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    if cert_file is not None:
        env["SSL_CERT_FILE"] = cert_file
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(cert_file), "None", "0"]
