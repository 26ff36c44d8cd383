"""Loopback receivers for tests: a scriptable webhook, a Slack stand-in, an SMTP server.

Each runs in a background thread on 127.0.0.1, so it serves sync and async tests alike:

    with WebhookReceiver() as hook:
        hook.script(Respond(500), Respond(429, headers={"Retry-After": "7"}))
        ...  # POST to hook.url; the first request gets 500, the second 429, later ones 200
        hook.requests   # every request that arrived
        hook.received   # the requests that were answered 2xx

`SlackReceiver` enforces Slack's limits on incoming-webhook messages and its one message per
second; `SmtpReceiver` is aiosmtpd with STARTTLS (or implicit TLS), AUTH and a self-signed
certificate made on the spot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import json
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening on it (for connection-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- HTTP


@dataclass
class Respond:
    """Answer with `status`, `body` and `headers`, after `delay` seconds."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Drop:
    """Close the connection without answering, after `delay` seconds."""

    delay: float = 0.0


Action = Respond | Drop


@dataclass
class Request:
    """One HTTP request as the receiver saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """An HTTP server on 127.0.0.1 answering each request by script, else by `answer()`."""

    def __init__(self, default: Action | None = None, *, port: int = 0) -> None:
        self.default: Action = default or Respond(200, b"ok")
        self._port = port  # 0: any free port
        self.requests: list[Request] = []
        self.received: list[Request] = []
        self._script: list[Action] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            do_PUT = do_POST
            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer((HOST, self._port), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the receiver first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    # ---- behaviour

    def script(self, *actions: Action) -> None:
        """Queue answers for the next requests, in order; afterwards `answer()` decides."""
        with self._lock:
            self._script.extend(actions)

    def answer(self, request: Request) -> Action:
        """How to answer a request no script covers (subclasses override)."""
        return self.default

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Block until `count` requests have arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
                self._arrived.wait(left)
            return list(self.requests)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-body (a sender killed with SIGKILL): no request arrived,
            # as for a real server, and no answer can reach it.
            handler.close_connection = True
            return
        request = Request(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            scripted = self._script.pop(0) if self._script else None
        action = scripted if scripted is not None else self.answer(request)
        if action.delay:
            time.sleep(action.delay)
        if isinstance(action, Drop):
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = action.body.encode() if isinstance(action.body, str) else action.body
        if 200 <= action.status < 300:
            with self._lock:
                self.received.append(request)
        # The client may have given up (a timeout test); that is its business, not an error.
        with contextlib.suppress(OSError):
            handler.send_response(action.status)
            for name, value in action.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)


class WebhookReceiver(HttpReceiver):
    """A generic webhook endpoint: 200 unless scripted otherwise."""


class SlackReceiver(HttpReceiver):
    """A stand-in for a Slack incoming webhook that is as strict as Slack.

    Rejects with 400 `invalid_blocks` a message without a top-level `text`, with more than 50
    blocks, a section text over 3,000 characters, a header over 150, or more than
    `max_total_chars` of block text; answers 429 with `Retry-After: 1` when a message comes
    less than a second after the previous accepted one (minus `tolerance`, for the jitter
    between a client's clock and arrival here). Accepted messages get 200 `ok`.
    """

    def __init__(self, *, tolerance: float = 0.05, max_total_chars: int = 13_000) -> None:
        super().__init__()
        self.tolerance = tolerance
        self.max_total_chars = max_total_chars
        self.rejected: list[tuple[Request, str]] = []
        self._last_accepted: float | None = None

    def answer(self, request: Request) -> Action:
        problem = self.violation(request.body)
        with self._lock:
            if problem is None:
                last = self._last_accepted
                if last is not None and request.at - last < 1.0 - self.tolerance:
                    problem = "rate_limited"
                else:
                    self._last_accepted = request.at
            if problem is not None:
                self.rejected.append((request, problem))
        if problem == "rate_limited":
            return Respond(429, "rate_limited", {"Retry-After": "1"})
        if problem is not None:
            return Respond(400, "invalid_blocks")
        return Respond(200, "ok")

    def violation(self, body: bytes) -> str | None:
        """Why Slack would refuse this payload, or None."""
        try:
            payload = json.loads(body)
        except ValueError:
            return "invalid_payload: not JSON"
        if not isinstance(payload, dict):
            return "invalid_payload: not an object"
        if not isinstance(payload.get("text"), str) or not payload["text"].strip():
            return "missing top-level text"
        blocks = payload.get("blocks", [])
        if len(blocks) > 50:
            return f"{len(blocks)} blocks (max 50)"
        total = 0
        for i, block in enumerate(blocks):
            kind = block.get("type")
            texts: list[str] = []
            if kind in ("section", "header"):
                texts.append(block["text"]["text"])
                texts.extend(f["text"] for f in block.get("fields", []))
            elif kind == "context":
                if len(block["elements"]) > 10:
                    return f"block {i}: context with more than 10 elements"
                texts.extend(e.get("text", "") for e in block["elements"])
            for text in texts:
                if not text:
                    return f"block {i}: empty text"
            if kind == "header" and len(texts[0]) > 150:
                return f"block {i}: header of {len(texts[0])} chars (max 150)"
            if kind == "section" and len(texts[0]) > 3000:
                return f"block {i}: section text of {len(texts[0])} chars (max 3000)"
            total += sum(len(t) for t in texts)
        if total > self.max_total_chars:
            return f"msg_blocks_too_long: {total} chars"
        return None


# --------------------------------------------------------------------------- SMTP


def self_signed_cert(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    """Write a self-signed certificate for `host` and its key; return (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class ReceivedMail:
    """One message as the SMTP server got it: the envelope and the parsed message."""

    sender: str
    recipients: list[str]
    data: bytes
    auth_user: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.receiver.reject_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        auth = session.auth_data
        user = auth.login.decode() if isinstance(auth, LoginPassword) else None
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, user)
        self.receiver._record(mail)
        return "250 2.0.0 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 with STARTTLS (required), implicit TLS, or none.

    With `users`, AUTH is required; under STARTTLS it is only offered once TLS is up
    (aiosmtpd's auth_require_tls). `cert` is the self-signed certificate, for clients that
    want to trust it rather than skip verification. Addresses in `reject_recipients` are
    refused at RCPT TO with `550`.
    """

    def __init__(
        self,
        *,
        tls: Literal["starttls", "implicit", "none"] = "starttls",
        users: dict[str, str] | None = None,
        reject_recipients: set[str] | None = None,
    ) -> None:
        self.tls = tls
        self.users = users or {}
        self.reject_recipients = reject_recipients or set()
        self.received: list[ReceivedMail] = []
        self._arrived = threading.Condition()
        self._controller: Controller | None = None
        self._dir: Path | None = None
        self.cert: Path | None = None
        self.port = 0

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def start(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="smtp-receiver-"))
        self.cert, key = self_signed_cert(self._dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        # aiosmtpd only knows of TLS it negotiated itself (STARTTLS): on an implicit-TLS
        # socket it would never offer AUTH if told to require TLS for it.
        kwargs: dict[str, Any] = {"auth_require_tls": self.tls == "starttls"}
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if self.tls == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif self.tls == "implicit":
            kwargs["ssl_context"] = context
        self.port = free_port()
        self._controller = Controller(
            _Handler(self), hostname=HOST, port=self.port, server_hostname="localhost", **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return HOST

    def _record(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self.received.append(mail)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until `count` messages have arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.received)} of {count} messages arrived")
                self._arrived.wait(left)
            return list(self.received)


@contextlib.contextmanager
def running(*receivers: HttpReceiver | SmtpReceiver) -> Iterator[None]:
    """Start several receivers for the length of a `with` block."""
    with contextlib.ExitStack() as stack:
        for receiver in receivers:
            stack.enter_context(receiver)
        yield
