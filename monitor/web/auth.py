"""Who is asking, and may they: users, password hashes, API tokens, roles and CSRF.

- Passwords are stored as scrypt hashes (`hashlib.scrypt`, n=2**14, r=8, p=1, 16-byte salt):
  `scrypt$16384$8$1$<salt>$<hash>` (base64). `python -m monitor.web.auth` prints one.
- A browser logs in with a form and gets a session: Starlette's `SessionMiddleware`, a cookie
  signed with `itsdangerous` (HttpOnly, SameSite=Strict, Secure when `web.cookie_secure`).
  The session holds the user name and a random CSRF token; every state-changing request made
  with a session must carry that token (form field `csrf` or header `X-CSRF-Token`).
- A script sends `Authorization: Bearer <token>`. Such a request carries no ambient
  credential a third-party page could make the browser send, so it needs no CSRF token.
- Roles: `read` sees everything; `operator` may also pause, poll, retry, replay and label.
  The user's role is looked up on every request, so a reload that removes a user or changes
  a role takes effect at once.
- `/healthz`, `/readyz` and `/metrics` (`probe_allowed`): open to anyone when
  `web.public_health` / `web.public_metrics`; otherwise to a client on a loopback address, a
  request with `Authorization: Bearer <web.metrics_token>`, or a user of any role.
- Failed logins are counted per user name and per client address (`LoginLimiter`); past the
  limit within the window, further attempts are refused with 429 before any password is
  checked, and the lockout is logged once.
- Failed API-token attempts (a wrong `Authorization: Bearer`) are counted per client address
  the same way (`web.login_max_failures_per_address` within `web.login_window`, a limiter of
  their own): past the limit, every bearer request from that address gets 429 with
  `Retry-After` before its token is compared, so tokens cannot be guessed at request speed.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import logging
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request

from monitor.config import WebSettings

log = logging.getLogger("monitor.web")
Role = Literal["read", "operator"]
ROLES: dict[str, int] = {"read": 0, "operator": 1}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` string (False for a malformed one)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
            maxmem=128 * int(r) * int(n) * 2 + 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    via: Literal["session", "token"]

    def may(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


def authenticate_password(web: WebSettings, name: str, password: str) -> bool:
    user = web.users.get(name)
    if user is None or not user.password_hash:
        # The same work for an unknown name, so timing does not tell which names exist.
        verify_password(password, _DUMMY_HASH)
        return False
    return verify_password(password, user.password_hash)


def user_for_token(web: WebSettings, token: str) -> User | None:
    found: User | None = None
    for name, cfg in web.users.items():
        if cfg.token is not None and hmac.compare_digest(
            cfg.token.get_secret_value().encode(), token.encode()
        ):
            found = User(name, cfg.role, "token")
    return found


def current_user(
    request: Request, web: WebSettings, tokens: LoginLimiter | None = None
) -> User | None:
    """The user a request is made by (token first, then session), or None. With `tokens`, a
    wrong bearer token counts against the client's address, and an address past the limit is
    refused (429) before its token is compared. The answer is kept on the request, so a
    request is counted (and refused) once however often its user is asked for."""
    known = request.scope.get("monitor.user", _UNKNOWN)
    if known is not _UNKNOWN:
        return known  # type: ignore[no-any-return]
    request.scope["monitor.user"] = None
    user = _current_user(request, web, tokens)
    request.scope["monitor.user"] = user
    return user


_UNKNOWN = object()


def _current_user(request: Request, web: WebSettings, tokens: LoginLimiter | None) -> User | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if tokens is None:
            return user_for_token(web, header[7:].strip())
        return _token_user(request, web, tokens, header[7:].strip())
    name = request.session.get("user")
    cfg = web.users.get(name) if isinstance(name, str) else None
    if cfg is None or not cfg.password_hash:
        return None
    return User(name, cfg.role, "session")  # type: ignore[arg-type]


def _token_user(
    request: Request, web: WebSettings, tokens: LoginLimiter, token: str
) -> User | None:
    address = request.client.host if request.client else None
    keys = {f"addr:{address}": web.login_max_failures_per_address} if address else {}
    refused = tokens.blocked(keys, web.login_window.total_seconds())
    if refused is not None:
        raise HTTPException(
            429,
            "too many failed API-token attempts from this address: try again later",
            headers={"Retry-After": str(int(refused[1]) + 1)},
        )
    user = user_for_token(web, token)
    if user is None:
        tokens.failed(list(keys))
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def csrf_ok(request: Request) -> bool:
    """Whether an unsafe request made with a session carries the session's CSRF token."""
    want = request.session.get("csrf")
    if not isinstance(want, str):
        return False
    got = request.headers.get("x-csrf-token")
    if got is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf")
        got = value if isinstance(value, str) else None
    return got is not None and hmac.compare_digest(got.encode(), want.encode())


async def require(
    request: Request, web: WebSettings, role: str = "read", tokens: LoginLimiter | None = None
) -> User:
    """The request's user if it may act with `role`; else 401 (who are you?), 403, or 429
    (too many wrong tokens from this address; see `current_user`)."""
    user = current_user(request, web, tokens)
    if user is None:
        raise HTTPException(401, "log in first (or send an API token)")
    if request.method in UNSAFE_METHODS and user.via == "session" and not await csrf_ok(request):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    if not user.may(role):
        raise HTTPException(403, f"{user.name} has the {user.role!r} role; this needs {role!r}")
    return user


def is_loopback_client(host: str | None) -> bool:
    """Whether a peer address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def probe_allowed(
    request: Request, web: WebSettings, endpoint: str, tokens: LoginLimiter | None = None
) -> bool:
    """Whether `/healthz`, `/readyz` (`endpoint` "health") or `/metrics` ("metrics") may
    answer this request (see the module's docstring)."""
    if web.public_health if endpoint == "health" else web.public_metrics:
        return True
    if web.probes_from_loopback and is_loopback_client(
        request.client.host if request.client else None
    ):
        return True
    header = request.headers.get("authorization", "")
    if web.metrics_token is not None and header.lower().startswith("bearer "):
        want = web.metrics_token.get_secret_value().encode()
        if hmac.compare_digest(header[7:].strip().encode(), want):
            return True
    return current_user(request, web, tokens) is not None


@dataclass
class LoginLimiter:
    """Failed logins per key ("user:NAME", "addr:IP") in a sliding window. `blocked` says for
    how many seconds a key is refused (0: not refused); the first refusal of a lockout is
    logged, once. Each node counts its own; at most `max_keys` keys are kept (the oldest
    dropped), so made-up user names cannot grow it without bound."""

    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000
    #: What the lockout's log line names: "login: 5 failed logins for addr 10.0.0.1 ...".
    label: str = "login"
    noun: str = "failed logins"
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _logged: set[str] = field(default_factory=set)

    def _recent(self, key: str, window: float) -> deque[float]:
        times = self._failures.get(key, deque())
        now = self.clock()
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
            self._logged.discard(key)
        return times

    def blocked(self, keys: dict[str, int], window: float) -> tuple[str, float] | None:
        """The first of `keys` (key -> its limit) at its limit, and the seconds until it is
        let through again; None when none is."""
        for key, limit in keys.items():
            times = self._recent(key, window)
            if len(times) >= limit:
                wait = times[-limit] + window - self.clock()
                if key not in self._logged:
                    self._logged.add(key)
                    log.warning(
                        "%s: %d %s for %s within %.0f s: further attempts refused for %.0f s",
                        self.label,
                        len(times),
                        self.noun,
                        key.replace(":", " ", 1),
                        window,
                        wait,
                    )
                return key, max(wait, 1.0)
        return None

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=1000)).append(now)
        while len(self._failures) > self.max_keys:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
            self._logged.discard(oldest)

    def succeeded(self, keys: list[str]) -> None:
        """A good login: its user name's count is cleared; the one attempt counted for each
        other key (its address) is taken back."""
        for key in keys:
            times = self._failures.get(key)
            if key.startswith("user:") or (times is not None and len(times) <= 1):
                self._failures.pop(key, None)
                self._logged.discard(key)
            elif times:
                times.pop()


def login_keys(web: WebSettings, name: str, address: str | None) -> dict[str, int]:
    """The limiter's keys for a login attempt, each with its limit."""
    keys = {f"user:{name[:100]}": web.login_max_failures}
    if address:
        keys[f"addr:{address}"] = web.login_max_failures_per_address
    return keys


_DUMMY_HASH = hash_password("not a password", salt=b"\0" * 16)


def main() -> int:
    """`python -m monitor.web.auth`: read a password (twice) and print its hash."""
    try:
        if sys.stdin.isatty():
            first = getpass.getpass("password: ")
            if getpass.getpass("again: ") != first:
                print("the passwords differ", file=sys.stderr)
                return 1
        else:
            first = sys.stdin.readline().rstrip("\n")
    except (KeyboardInterrupt, EOFError):
        return 1
    if len(first) < 8:
        print("use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
