"""The HTTP surface on aiohttp: /metrics, /healthz, /readyz, /api/..., the page and its stream.

aiohttp parses HTTP and routes; what a router's surface needs beyond it sits in ``_Guard``,
a protocol wrapped around each aiohttp connection: a cap on connections (HTTP_MAX_CONNECTIONS;
1,105 idle ones once used up every descriptor of the process and TCP DNS stopped accepting;
when full, the oldest connection still waiting for its request head is closed, so a scrape
that sends its request at once is served during a flood), a bound on the request head
(HTTP_MAX_REQUEST_HEAD, 431) and on the time to send it (HTTP_REQUEST_TIMEOUT, 408), and a cut
of a client that does not read its response (HTTP_WRITE_TIMEOUT). One request per connection.

Access (README "Web page"): on a loopback address every page is open; elsewhere a bearer token
(``http.token_file``) is required for everything but /healthz and /readyz, and without one
configured those are all the surface serves (403 naming the fix). Read-only: GET only.
The JSON comes from views.py (pure); the handlers here only move it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import http_exceptions, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .. import const
from ..announce.records import origin_lines
from ..diagnostics import Diagnostics
from ..logutil import RateLimitedLog
from . import views

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # served without a token (probes)
_STATIC = {  # the page's files (bridge/web/static): no external asset, no build step
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _raw(status: int, reason: str, text: str) -> bytes:
    """A whole response for a connection aiohttp never saw a request on (431, 408)."""
    body = text.encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _BadRequests(logging.Filter):
    """aiohttp logs a traceback for every request it cannot parse (400, 414, ...): bad input
    from the network, counted here and logged in one rate-limited line instead."""

    def __init__(self, refused: dict[str, int]) -> None:
        super().__init__()
        self.refused = refused

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            code = str(exc.code or 400)
            self.refused[code] = self.refused.get(code, 0) + 1
            _limited.debug(("bad request", code), "HTTP: refused a request (%s)", exc.message)
            return False
        return True


def _inline(files: dict[str, bytes]) -> bytes:
    """index.html with its style and script in it: one request (which carries the token: a
    browser would not send it for the page's own assets)."""
    page = files["index.html"]
    for tag, name, inner in (
        (b'<link rel="stylesheet" href="static/style.css">', "style.css", b"style"),
        (b'<script src="static/app.js"></script>', "app.js", b"script"),
    ):
        assert tag in page, tag
        page = page.replace(tag, b"<%s>\n%s</%s>" % (inner, files[name], inner))
    return page


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Guard(asyncio.Protocol):
    """One connection: admitted under the cap, its head bounded in size and time, its
    responses cut when not read; everything else is aiohttp's (``inner``)."""

    def __init__(self, surface: HttpSurface, inner: asyncio.Protocol) -> None:
        self.surface = surface
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.head = 0  # bytes received before the end of the head
        self.tail = b""  # the last 3 bytes, for a terminator split across reads
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.surface._admit(self):
            transport.abort()  # no answer: a full table must cost nothing more
            return
        self.admitted = True
        self.inner.connection_made(transport)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(const.HTTP_REQUEST_TIMEOUT, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self in self.surface.waiting:
            end = (self.tail + data).find(b"\r\n\r\n")
            if end < 0:
                self.head += len(data)
                self.tail = data[-3:]
            else:
                self.head += end - len(self.tail)
                self._head_done()
            if self.head > const.HTTP_MAX_REQUEST_HEAD:
                self.refuse(431, "Request Header Fields Too Large", "request head too large")
                return
        self.inner.data_received(data)

    def _head_done(self) -> None:
        self.surface.waiting.pop(self, None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timeout(self) -> None:
        self.timer = None
        self.surface.closed["timeout"] += 1
        self.refuse(408, "Request Timeout", "request timeout")

    def refuse(self, status: int, reason: str, text: str) -> None:
        """Answer without aiohttp (it has no complete request) and close."""
        self._head_done()
        self.surface.refused[str(status)] = self.surface.refused.get(str(status), 0) + 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_raw(status, reason, text))
            self.transport.close()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        """The client does not take what we send: it has HTTP_WRITE_TIMEOUT to start again."""
        if self.admitted:
            self.inner.pause_writing()
            if self.timer is not None:
                self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(
                const.HTTP_WRITE_TIMEOUT, self._write_timeout
            )

    def resume_writing(self) -> None:
        if self.admitted:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.inner.resume_writing()

    def _write_timeout(self) -> None:
        self.timer = None
        self.surface.closed["timeout"] += 1
        if self.transport is not None:
            self.transport.abort()  # close() would keep the descriptor until the client reads

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.surface._gone(self)
        if self.admitted:
            self.inner.connection_lost(exc)


class HttpSurface:
    """The read-only pages: what ``diagnostics`` shows, and ``registry`` for /metrics."""

    def __init__(
        self,
        diagnostics: Diagnostics,
        registry: CollectorRegistry,
        token: str | None = None,
    ) -> None:
        self.diag = diagnostics
        self.registry = registry
        self.token = token.encode() if token else None
        self.open = True  # no token needed (loopback); set by start() from the address
        self.connections: set[_Guard] = set()
        self.waiting: dict[_Guard, None] = {}  # still sending their request head, oldest first
        # connections closed by us, by reason: full (none waiting to close instead), idle (the
        # oldest waiting one, for a new one), timeout (head not sent or response not read in time)
        self.closed = {"full": 0, "idle": 0, "timeout": 0}
        # requests refused, by status: 401 (token missing or wrong), 403 (no token configured
        # on a non-loopback address), 431 (head too large), 408 (head too slow), 400
        self.refused: dict[str, int] = {}
        self._closing = asyncio.Event()
        self._state: tuple[float, bytes] | None = None  # (built at, JSON) for the live pages
        # aiohttp's own log for this surface, its parse errors counted instead of logged
        self._protocol_log = logging.getLogger(f"{__name__}.protocol")
        self._bad_requests = _BadRequests(self.refused)  # on that log while started
        self._files = {
            name: resources.files(__package__).joinpath("static", name).read_bytes()
            for name in _STATIC
        }
        self._page = _inline(self._files)
        self.app = web.Application(
            middlewares=[self._middleware], client_max_size=const.HTTP_MAX_REQUEST_HEAD
        )
        self.app.on_response_prepare.append(self._one_request)
        get = self.app.router.add_get
        get("/", self.page)
        get("/static/{name}", self.static)
        get("/metrics", self.metrics)
        get("/healthz", self.healthz)
        get("/readyz", self.readyz)
        get("/api/vlans", self._json(lambda r: views.vlans(self.diag)))
        get("/api/records", self._json(lambda r: views.records(self.diag, r.query.get("vlan"))))
        get("/api/policies", self._json(lambda r: views.policies(self.diag)))
        get("/api/services", self.services)
        get("/api/matrix", self._json(lambda r: views.matrix(self.diag)))
        get("/api/state", self._json(lambda r: views.state(self.diag)))
        get("/api/explain", self.explain)
        get("/api/explain/live", self.explain_live)
        get("/api/stream", self.stream)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None

    # --- life cycle --------------------------------------------------------------------------

    async def start(self, address: tuple[str, int]) -> None:
        self.open = is_loopback(address[0])
        self._closing.clear()
        self._protocol_log.addFilter(self._bad_requests)
        runner = web.AppRunner(
            self.app,
            access_log=None,  # one line per scrape; and a ?token= must not reach a log
            logger=self._protocol_log,
            handle_signals=False,
            shutdown_timeout=const.HTTP_SHUTDOWN_TIMEOUT,
            max_line_size=const.HTTP_MAX_REQUEST_HEAD,
            max_field_size=const.HTTP_MAX_REQUEST_HEAD,
        )
        await runner.setup()
        self._runner = runner
        factory = runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guard(self, factory()), address[0], address[1], reuse_address=True
        )
        access = (
            "open (loopback)"
            if self.open
            else "bearer token required"
            if self.token
            else "NO TOKEN: only /healthz and /readyz are served (set http.token_file)"
        )
        log.info(
            "HTTP on %s port %d (/, /metrics, /healthz, /readyz, /api/...): %s", *address, access
        )

    @property
    def port(self) -> int | None:
        """The bound port (useful when started on port 0)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, end the live streams, give requests in flight a moment, close."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for guard in list(self.waiting):
            if guard.transport is not None:
                guard.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for guard in list(self.connections):
            if guard.transport is not None:
                guard.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._protocol_log.removeFilter(self._bad_requests)

    # --- connections -------------------------------------------------------------------------

    def _admit(self, guard: _Guard) -> bool:
        if len(self.connections) >= const.HTTP_MAX_CONNECTIONS:
            if not self.waiting:
                self.closed["full"] += 1
                return False
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest)
            self.connections.discard(oldest)
            if oldest.transport is not None:
                oldest.transport.abort()
            self.closed["idle"] += 1
        self.connections.add(guard)
        self.waiting[guard] = None
        return True

    def _gone(self, guard: _Guard) -> None:
        self.connections.discard(guard)
        self.waiting.pop(guard, None)

    async def _one_request(self, request: web.Request, response: web.StreamResponse) -> None:
        response.force_close()  # one request per connection: the cap counts requests

    # --- access ------------------------------------------------------------------------------

    def _refuse(self, status: int, text: str, **headers: str) -> web.Response:
        self.refused[str(status)] = self.refused.get(str(status), 0) + 1
        return _plain(status, text, **headers)

    def _authorized(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the refusal."""
        if request.path in OPEN_PATHS or (self.open and self.token is None):
            return None
        if self.token is None:
            return self._refuse(
                403,
                "this HTTP address is not loopback and no bearer token is configured; "
                "fix: set http.token_file in the gateway's config (or listen on 127.0.0.1)",
            )
        given = request.headers.get("Authorization", "")
        got = given[7:] if given[:7].lower() == "bearer " else request.query.get("token", "")
        if hmac.compare_digest(got.strip().encode(), self.token):
            return None
        return self._refuse(
            401,
            "a bearer token is required: 'Authorization: Bearer <token>' (or ?token= in a "
            "browser); it is the content of http.token_file",
            **{"WWW-Authenticate": 'Bearer realm="mdns-gateway"'},
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self._refuse(405, "GET only (the surface is read-only)", Allow="GET")
        if len(request.query) > const.HTTP_MAX_QUERY_FIELDS:
            return self._refuse(400, "too many query fields")
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # a diagnostics bug must not take the page (or the gateway) down
            log.exception("HTTP %s failed", request.path)
            return _plain(500, "internal error")

    # --- pages -------------------------------------------------------------------------------

    def _json(self, build: Callable[[web.Request], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(build(request))

        return handler

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        return await self.static_file(request.match_info["name"])

    async def static_file(self, name: str) -> web.StreamResponse:
        if name not in self._files:
            return _plain(404, "not found")
        return web.Response(
            body=self._files[name],
            content_type=_STATIC[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=generate_latest(self.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        ready, reason = self.diag.readiness()
        body: dict[str, Any] = (
            {"ready": ready} if reason is None else {"ready": ready, "reason": reason}
        )
        return web.json_response(body, status=200 if ready else 503)

    async def services(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        view = q.get("view")
        error = views.check_view(self.diag, view)
        if error is not None:
            return web.json_response({"error": error}, status=400)
        return web.json_response(views.services(self.diag, q.get("vlan"), view, q.get("type")))

    async def explain(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            engine = self.diag.policy().engine
            exp = engine.explain(q.get("view", ""), q.get("vlan", ""), q.get("service", ""))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        origins = origin_lines(self.diag.announcements(), exp.vlan, exp.service_type, exp.instance)
        return web.json_response(
            {
                "visible": exp.visible,
                "reflect": exp.reflect,
                "decided_by": exp.decided_by,
                "reasons": list(exp.reasons),
                "origins": origins,
                "text": "\n".join([str(exp), *origins]),
            }
        )

    async def explain_live(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            body = views.explain_live(
                self.diag, q.get("view", ""), q.get("vlan") or None, q.get("service", "")
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(body)

    def _live_state(self) -> bytes:
        """The page's state, built at most once per WEB_PUSH_INTERVAL for all open pages."""
        now = self.diag.clock()
        cached = self._state
        if cached is None or now - cached[0] >= const.WEB_PUSH_INTERVAL * 0.9:
            cached = self._state = (now, json.dumps(views.state(self.diag)).encode())
        return cached[1]

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the page's state once a WEB_PUSH_INTERVAL, until shutdown."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            while not self._closing.is_set():
                await resp.write(b"event: state\ndata: " + self._live_state() + b"\n\n")
                try:
                    async with asyncio.timeout(const.WEB_PUSH_INTERVAL):
                        await self._closing.wait()
                except TimeoutError:
                    pass  # no shutdown within the interval: the next state goes out
        except (ConnectionError, OSError):
            pass  # the page went away
        return resp
