"""The HTTP surface (bridge/http.py) over a real loopback socket, with an unstarted Gateway."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.app import Gateway
from bridge.config import Config
from bridge.http import HttpSurface


async def get(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def surface_port() -> object:
    async def make() -> tuple[HttpSurface, int]:
        gw = Gateway(Config(vlans={}))
        surface = HttpSurface(gw)
        await surface.start(("127.0.0.1", 0))
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
            status, _, body = await get(port, b"GET /readyz HTTP/1.1\r\n\r\n")
            assert status == 503 and json.loads(body) == {"ready": False}
            status, _, body = await get(port, b"GET /api/records?vlan=x HTTP/1.1\r\n\r\n")
            assert status == 200 and json.loads(body) == {"records": [], "total": 0}
            status, _, body = await get(
                port, b"GET /api/explain?view=a&vlan=b&service=_ipp._tcp HTTP/1.1\r\n\r\n"
            )
            assert status == 400 and "error" in json.loads(body)
            assert (await get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
            assert (await get(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
            assert (await get(port, b"garbage\r\n\r\n"))[0] == 400
            huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n"
            assert (await get(port, huge))[0] == 431
        finally:
            await surface.stop()

    asyncio.run(run())
