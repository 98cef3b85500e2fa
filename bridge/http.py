"""The HTTP surface: /metrics, /healthz, /readyz and a JSON diagnostics API.

A small HTTP/1.1 server on asyncio streams (GET only, one request per connection, bounded
request size and time): the surface is a handful of read-only pages, and a web framework
would cost the gateway more memory (aiohttp: ~12 MB RSS) than everything else it imports.
Connections are capped (HTTP_MAX_CONNECTIONS; 1,105 idle ones once used up every descriptor
of the process and TCP DNS stopped accepting); when full, the oldest connection still waiting for
its request head is closed, so a scrape that sends its request at once is served during a flood.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dns.name
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from . import const
from .announce.records import origin_lines
from .diagnostics import Diagnostics

log = logging.getLogger(__name__)
_JSON = "application/json; charset=utf-8"

Response = tuple[int, str, bytes]  # (status, content type, body)
Handler = Callable[[Mapping[str, str]], Awaitable[Response]]


def _json(data: Any, status: int = 200) -> Response:
    return status, _JSON, json.dumps(data).encode()


def _unicode(name: dns.name.Name) -> str:
    """The name for people; as sent when it is no valid IDNA (an announced xn--.local made
    every /api/records request fail with 500)."""
    try:
        return name.to_unicode()
    except (dns.name.IDNAException, UnicodeError):
        return name.to_text()


class HttpSurface:
    """The read-only pages: what ``diagnostics`` shows, and ``registry`` for /metrics."""

    def __init__(self, diagnostics: Diagnostics, registry: CollectorRegistry) -> None:
        self.diag = diagnostics
        self.registry = registry
        self.routes: dict[str, Handler] = {
            "/metrics": self.metrics,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/api/vlans": self.vlans,
            "/api/records": self.records,
            "/api/policies": self.policies,
            "/api/explain": self.explain,
        }
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        # connections still reading their request head, oldest first (the ones to close when full)
        self._waiting: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # connections closed by us, by reason: full (none waiting to close instead), idle (the
        # oldest waiting one, for a new one), timeout (head not sent or response not read in time)
        self.closed = {"full": 0, "idle": 0, "timeout": 0}

    async def start(self, address: tuple[str, int]) -> None:
        self._server = await asyncio.start_server(
            self._client,
            address[0],
            address[1],
            reuse_address=True,
            limit=const.HTTP_MAX_REQUEST_HEAD,
        )
        log.info("HTTP on %s port %d (/metrics, /healthz, /readyz, /api/...)", *address)

    @property
    def port(self) -> int | None:
        """The bound port (useful when started on port 0)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= const.HTTP_MAX_CONNECTIONS:
            if not self._waiting:
                self.closed["full"] += 1
                writer.transport.abort()  # no answer: a full table must cost nothing more
                return
            oldest = next(iter(self._waiting))
            self._waiting.pop(oldest).transport.abort()  # its read ends, its task finishes
            self.closed["idle"] += 1
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            self._waiting[task] = writer
        done = False
        try:
            status, ctype, body = await self._respond(reader, task)
            reason = HTTPStatus(status).phrase
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            async with asyncio.timeout(const.HTTP_WRITE_TIMEOUT):
                await writer.drain()
            done = True
        except TimeoutError:
            self.closed["timeout"] += 1
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): end normally, or asyncio's stream callback
            pass  # (3.11) logs a traceback per open connection
        finally:
            if task is not None:
                self._clients.discard(task)
                self._waiting.pop(task, None)
            if done:
                writer.close()
            else:  # close() would keep the descriptor until a non-reading client reads
                writer.transport.abort()

    async def _respond(
        self, reader: asyncio.StreamReader, task: asyncio.Task[None] | None
    ) -> Response:
        try:
            async with asyncio.timeout(const.HTTP_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 431, "text/plain", b"request head too large\n"
        except TimeoutError:
            self.closed["timeout"] += 1
            return 408, "text/plain", b"request timeout\n"
        finally:
            if task is not None:
                self._waiting.pop(task, None)
        try:
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        except ValueError:
            return 400, "text/plain", b"bad request line\n"
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        try:
            url = urlsplit(target)
            query = dict(parse_qsl(url.query, max_num_fields=const.HTTP_MAX_QUERY_FIELDS))
        except ValueError:
            return 400, "text/plain", b"bad request target\n"
        handler = self.routes.get(url.path)
        if handler is None:
            return 404, "text/plain", b"not found\n"
        try:
            return await handler(query)
        except Exception:  # a diagnostics bug must not take the page (or the gateway) down
            log.exception("HTTP %s failed", url.path)
            return 500, "text/plain", b"internal error\n"

    async def metrics(self, query: Mapping[str, str]) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    async def healthz(self, query: Mapping[str, str]) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, query: Mapping[str, str]) -> Response:
        ready, reason = self.diag.readiness()
        body: dict[str, Any] = (
            {"ready": ready} if reason is None else {"ready": ready, "reason": reason}
        )
        return _json(body, status=200 if ready else 503)

    async def vlans(self, query: Mapping[str, str]) -> Response:
        out: dict[str, Any] = {}
        refused = self.diag.refusals()
        for name, vlan in self.diag.vlans.items():
            link = self.diag.links.by_vlan.get(name)
            out[name] = {
                "interface": vlan.interface,
                "domain": vlan.domain.to_text(),
                "up": bool(link and link.up),
                "ifindex": link.ifindex if link else None,
                "subnets": [str(s) for s in link.subnets] if link else [],
                "trust_any_address": vlan.trust_any_address,
                # the record guard's refusals (README, "Security"), by reason
                "refused_records": {
                    reason: n for (v, reason), n in sorted(refused.items()) if v == name
                },
            }
        return _json(out)

    async def records(self, query: Mapping[str, str]) -> Response:
        vlan = query.get("vlan")
        rows = []
        store = self.diag.store
        for c in store.items(self.diag.clock()):
            if vlan and c.vlan != vlan:
                continue
            origin, source = self.diag.origin(c)
            rows.append(
                {
                    "vlan": c.vlan,
                    "name": _unicode(c.name),
                    "type": c.rdtype,
                    "rdata": c.rdata.to_text(),
                    "ttl": c.ttl,
                    "remaining": None if c.remaining == float("inf") else round(c.remaining, 1),
                    "origin": origin,  # mdns, announcement, lease or router
                    "source": source,  # the announcement or lease file, else null
                }
            )
            if len(rows) >= const.HTTP_MAX_RECORDS_LISTED:
                break
        return _json({"records": rows, "total": len(store)})

    async def policies(self, query: Mapping[str, str]) -> Response:
        policy = self.diag.policy()
        return _json(
            {
                "valid": policy.error is None,
                "error": policy.error,
                "policies": [{"name": p.name, "source": p.where} for p in policy.engine.policies],
            }
        )

    async def explain(self, query: Mapping[str, str]) -> Response:
        q = query
        try:
            engine = self.diag.policy().engine
            exp = engine.explain(q.get("view", ""), q.get("vlan", ""), q.get("service", ""))
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        origins = origin_lines(self.diag.announcements(), exp.vlan, exp.service_type, exp.instance)
        return _json(
            {
                "visible": exp.visible,
                "reflect": exp.reflect,
                "reasons": list(exp.reasons),
                "origins": origins,
                "text": "\n".join([str(exp), *origins]),
            }
        )
