"""The HTTP surface (bridge/web/server.py, aiohttp) over a real loopback socket, with an
unstarted Gateway: pages, limits, the connection cap and bearer tokens."""

from __future__ import annotations

import asyncio
import json
import resource
import socket

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from aiohttp import web

from bridge import const
from bridge.app import Gateway, raise_file_limit
from bridge.config import Config
from bridge.web import HttpSurface


async def get(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if headers.get("Transfer-Encoding") == "chunked":
        body = _unchunk(body)
    return int(lines[0].split()[1]), headers, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + rest[:n], rest[n + 2 :]
    return out


@pytest.fixture
def surface_port() -> object:
    async def make(token: str | None = None, host: str = "127.0.0.1") -> tuple[HttpSurface, int]:
        gw = Gateway(Config(vlans={}))
        surface = HttpSurface(gw.diagnostics, gw.registry, token)
        await surface.start((host, 0))
        assert surface.port is not None
        return surface, surface.port

    return make


def test_pages(surface_port: object) -> None:
    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        try:
            status, headers, body = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert int(headers["Content-Length"]) == len(body)
            assert b"mdns_gateway_store_records 0.0" in body
            status, _, body = await get(port, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert status == 200 and json.loads(body) == {"status": "ok"}
            status, _, body = await get(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503 and json.loads(body) == {"ready": False}
            status, _, body = await get(
                port, b"GET /api/records?vlan=x HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert status == 200 and json.loads(body) == {"records": [], "total": 0}
            status, _, body = await get(
                port,
                b"GET /api/explain?view=a&vlan=b&service=_ipp._tcp HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            assert status == 400 and "error" in json.loads(body)
            assert (await get(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
            assert (await get(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 405
            assert (await get(port, b"garbage\r\n\r\n"))[0] == 400
            huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n"
            assert (await get(port, huge))[0] == 431
        finally:
            await surface.stop()

    asyncio.run(run())


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within the deadline."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_connection_flood_closes_the_oldest_idle_and_serves_a_prompt_request(
    surface_port: object,
) -> None:
    """1,105 idle connections once used every descriptor; now at most HTTP_MAX_CONNECTIONS."""

    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        idle = []
        try:
            for _ in range(const.HTTP_MAX_CONNECTIONS + 20):
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            # the 20 beyond the cap closed the 20 oldest idle ones
            closed = [await _closed_by_peer(r, 2.0) for r, _ in idle[:20]]
            assert all(closed), closed
            assert surface.closed["idle"] == 20 and surface.closed["full"] == 0
            assert len(surface.connections) == const.HTTP_MAX_CONNECTIONS
            # a scrape during the flood is served (it closes one more idle connection)
            status, _, body = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200 and b"mdns_gateway_store_records" in body
            assert surface.closed["idle"] == 21
        finally:
            for _, w in idle:
                w.close()
            await surface.stop()

    asyncio.run(run())


def test_a_client_that_does_not_read_its_response_is_cut(
    surface_port: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(const, "HTTP_WRITE_TIMEOUT", 0.3)

    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]

        async def big(request: web.Request) -> web.Response:
            return web.Response(body=b"x" * 32_000_000)  # far beyond both socket buffers

        surface.app.router._frozen = False  # a route for this test only, on the started app
        surface.app.router.add_get("/big", big)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            sock.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = asyncio.get_running_loop().time() + 5.0
            while not surface.closed["timeout"]:
                assert asyncio.get_running_loop().time() < deadline, surface.closed
                await asyncio.sleep(0.05)
            assert not surface.connections
            sock.close()
        finally:
            await surface.stop()

    asyncio.run(run())


def test_records_page_survives_a_name_that_is_no_valid_idna(surface_port: object) -> None:
    """One announcement of xn--.local made /api/records answer 500 on every request."""

    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, "10.0.0.2")
            now = asyncio.get_running_loop().time()  # the store's clock
            surface.diag.store.add("t", dns.name.from_text("xn--.local."), 1, rdata, 120, now=now)
            status, _, body = await get(port, b"GET /api/records HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200, body
            assert [r["name"] for r in json.loads(body)["records"]] == ["xn--.local."]
            many = "&".join(f"k{i}=v" for i in range(const.HTTP_MAX_QUERY_FIELDS + 1))
            assert (
                await get(port, f"GET /api/records?{many} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            )[0] == 400
        finally:
            await surface.stop()

    asyncio.run(run())


def test_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        got = raise_file_limit()
        want = const.FD_LIMIT_UNBOUNDED if hard == resource.RLIM_INFINITY else hard
        assert got == want == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


TOKEN = "0123456789abcdef0123"


def test_token_required_for_everything_but_the_probes(surface_port: object) -> None:
    async def run() -> None:
        surface, port = await surface_port(TOKEN)  # type: ignore[operator]
        try:
            for path in ("/metrics", "/", "/api/state", "/api/stream", "/nope"):
                status, headers, body = await get(
                    port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                assert status == 401, (path, status)
                assert headers["WWW-Authenticate"].startswith("Bearer")
                assert b"http.token_file" in body
            wrong = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n"
            assert (await get(port, wrong))[0] == 401
            assert (await get(port, b"GET /metrics?token=nope HTTP/1.1\r\nHost: x\r\n\r\n"))[
                0
            ] == 401
            right = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            status, _, body = await get(port, right.encode())
            assert status == 200 and b"mdns_gateway_store_records" in body
            status, _, body = await get(
                port, f"GET /?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            assert status == 200 and b"<title>mdns-gateway</title>" in body
            for probe in (b"/healthz", b"/readyz"):
                assert (await get(port, b"GET " + probe + b" HTTP/1.1\r\nHost: x\r\n\r\n"))[0] in (
                    200,
                    503,
                )
            assert surface.refused["401"] == 7
        finally:
            await surface.stop()

    asyncio.run(run())


def test_no_token_on_a_non_loopback_address_serves_only_the_probes(surface_port: object) -> None:
    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        surface.open = False  # as start() sets it for 0.0.0.0 (the test stays on loopback)
        try:
            status, _, body = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 403 and b"http.token_file" in body
            assert (await get(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
        finally:
            await surface.stop()

    asyncio.run(run())


def test_a_slow_client_gets_408_and_others_are_served(
    surface_port: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(const, "HTTP_REQUEST_TIMEOUT", 0.3)

    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end
            await writer.drain()
            status, _, _ = await get(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200  # served while the slow one waits
            async with asyncio.timeout(5.0):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert surface.closed["timeout"] == 1 and surface.refused["408"] == 1
            writer.close()
        finally:
            await surface.stop()

    asyncio.run(run())


def test_a_head_split_across_reads_is_measured_whole(surface_port: object) -> None:
    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for part in (b"GET /healthz HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\n"):
                writer.write(part)
                await writer.drain()
            async with asyncio.timeout(5.0):
                assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            writer.close()
            # many small header lines: the whole head counts, not each line
            lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(100))
            huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
            assert (await get(port, huge))[0] == 431
        finally:
            await surface.stop()

    asyncio.run(run())


def test_the_page_and_its_stream(surface_port: object) -> None:
    async def run() -> None:
        surface, port = await surface_port()  # type: ignore[operator]
        try:
            status, headers, page = await get(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            for name in ("app.js", "style.css"):
                status, _, body = await get(
                    port, f"GET /static/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                assert status == 200 and body
                # offline routers: no external asset of any kind
                assert b"http://" not in body and b"https://" not in body, name
                assert b"innerHTML" not in body  # names from the network are text, not markup
            assert b"http://" not in page and b"https://" not in page
            assert (await get(port, b"GET /static/x.js HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
            status, _, body = await get(port, b"GET /api/state HTTP/1.1\r\nHost: x\r\n\r\n")
            state = json.loads(body)
            assert (
                status == 200 and state["records"] == 0 and state["reflection"]["enabled"] is False
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
                assert b"text/event-stream" in head
                event = await reader.readuntil(b"\n\n")
            assert b"event: state\ndata: " in event and b'"matrix"' in event
            # stop() ends the live stream instead of waiting for it
            async with asyncio.timeout(5.0):
                await surface.stop()
            writer.close()
        finally:
            await surface.stop()

    asyncio.run(run())
