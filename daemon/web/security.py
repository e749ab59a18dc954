"""What keeps the review page safe to run: where it may listen, who may use it, and which
requests it refuses before any route sees them.

- ``check_bind``: loopback addresses only, unless a token is set (``web_token`` /
  ``GENRED_WEB_TOKEN``); the server refuses to start otherwise.
- ``Guard`` (ASGI middleware), for every request:
  1. on a loopback bind, the ``Host`` header must name the loopback too (a web page that
     re-binds its own DNS name to 127.0.0.1 cannot read the library);
  2. with a token, every request but the login form needs it: ``Authorization: Bearer
     TOKEN``, or the session cookie the login form sets (an HMAC of the token, so the
     cookie does not hold the token itself);
  3. state-changing methods (POST, PUT, PATCH, DELETE) must come from this origin:
     ``Sec-Fetch-Site`` (when sent) is ``same-origin`` or ``none``, ``Origin`` (else
     ``Referer``), when sent, is this server. Clients that send neither (curl, scripts)
     are not browsers and cannot be forged into a request by a page;
  4. request bodies are capped at ``MAX_BODY`` bytes (413).
- Every response carries a strict Content-Security-Policy (scripts, styles, media and
  images from this server only) and ``nosniff``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from daemon.config import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024
COOKIE = "genred_session"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = ("/login", "/static/")  # reachable without the token
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of the loopback network (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse a non-loopback address without a token (ConfigError names the key)."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"genred web: refusing to listen on {host} without a token: anyone who can "
            "reach it could change your labels. Set web_token in the config (or "
            "GENRED_WEB_TOKEN), or listen on 127.0.0.1")


def session_value(token: str) -> str:
    """The login cookie's value for ``token``."""
    return hmac.new(token.encode(), b"genred web session", hashlib.sha256).hexdigest()


def token_ok(token: str, headers: dict[str, str]) -> bool:
    """Does the request carry ``token`` (Bearer header or session cookie)?"""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(),
                                                             token.encode()):
        return True
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is simply no session
        return False
    morsel = cookies.get(COOKIE)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(),
                                                      session_value(token).encode())


def _host_name(host_header: str) -> str:
    return urlsplit("//" + host_header).hostname or ""


def same_origin(scope: Scope, headers: dict[str, str]) -> bool:
    """Did a state-changing request come from a page of this server (or from no page)?"""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin.lower() == own
    referer = headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return True


class Guard:
    """The checks of the module doc, in that order, around ``app``."""

    def __init__(self, app: ASGIApp, *, token: str, loopback: bool,
                 max_body: int = MAX_BODY) -> None:
        self.app, self.token, self.loopback, self.max_body = app, token, loopback, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path: str = scope.get("path", "/")
        method: str = scope.get("method", "GET")
        refusal = self._refusal(scope, headers, path, method)
        if refusal is not None:
            await refusal(scope, receive, _secure(send))
            return
        if method in UNSAFE:
            body = await self._body(receive, headers)
            if body is None:
                await _error(413, f"request body over {self.max_body} bytes")(
                    scope, receive, _secure(send))
                return
            receive = _replay(body)
        await self.app(scope, receive, _secure(send))

    def _refusal(self, scope: Scope, headers: dict[str, str], path: str,
                 method: str) -> ASGIApp | None:
        if self.loopback and not is_loopback(_host_name(headers.get("host", ""))):
            return _error(400, "this server answers to localhost / 127.0.0.1 only")
        if self.token and not path.startswith(OPEN_PATHS) and not token_ok(self.token,
                                                                           headers):
            if path.startswith("/api/"):
                return _error(401, "a token is needed (Authorization: Bearer, or log in)")
            return _redirect("/login?next=" + _safe_next(path))
        if method in UNSAFE and not same_origin(scope, headers):
            return _error(403, "cross-origin request refused")
        return None

    async def _body(self, receive: Receive, headers: dict[str, str]) -> bytes | None:
        """The whole body, or None once it exceeds the cap (Content-Length first)."""
        try:
            if int(headers.get("content-length", "0")) > self.max_body:
                return None
        except ValueError:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _safe_next(path: str) -> str:
    from urllib.parse import quote

    return quote(path if path.startswith("/") and not path.startswith("//") else "/")


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _secure(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {k.lower() for k, _ in headers}
            extra = [(b"content-security-policy", CSP.encode()),
                     (b"x-content-type-options", b"nosniff"),
                     (b"referrer-policy", b"same-origin"),
                     (b"x-frame-options", b"DENY")]
            headers += [(k, v) for k, v in extra if k not in names]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _error(status: int, message: str) -> ASGIApp:
    body = json.dumps({"error": message}).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def _redirect(location: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode()),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return app
