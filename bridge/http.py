"""The HTTP surface (aiohttp): /metrics, /healthz, /readyz and a JSON diagnostics API."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import registry_for

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger(__name__)
_MAX_RECORDS_LISTED = 5000  # a diagnostics page must stay small on a busy network


class HttpSurface:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.registry = registry_for(gateway)
        self.app = web.Application()
        self.app.add_routes([
            web.get("/metrics", self.metrics),
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/api/vlans", self.vlans),
            web.get("/api/records", self.records),
            web.get("/api/policies", self.policies),
            web.get("/api/explain", self.explain),
        ])
        self._runner: web.AppRunner | None = None

    async def start(self, address: tuple[str, int]) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address[0], address[1], reuse_address=True)
        await site.start()
        log.info("HTTP on %s port %d (/metrics, /healthz, /readyz, /api/...)", *address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self.gw.ready.is_set()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def vlans(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {}
        for name, vlan in self.gw.config.vlans.items():
            link = self.gw.links.by_vlan.get(name)
            out[name] = {
                "interface": vlan.interface,
                "domain": vlan.domain.to_text(),
                "up": bool(link and link.up),
                "ifindex": link.ifindex if link else None,
                "subnets": [str(s) for s in link.subnets] if link else [],
            }
        return web.json_response(out)

    async def records(self, request: web.Request) -> web.Response:
        vlan = request.query.get("vlan")
        now = self.gw._loop.time() if self.gw._loop else 0.0
        rows = []
        for c in self.gw.store.items(now):
            if vlan and c.vlan != vlan:
                continue
            rows.append({"vlan": c.vlan, "name": c.name.to_unicode(),
                         "type": c.rdtype, "rdata": c.rdata.to_text(),
                         "ttl": c.ttl,
                         "remaining": None if c.remaining == float("inf")
                         else round(c.remaining, 1)})
            if len(rows) >= _MAX_RECORDS_LISTED:
                break
        return web.json_response({"records": rows, "total": len(self.gw.store)})

    async def policies(self, request: web.Request) -> web.Response:
        return web.json_response({
            "valid": self.gw.policy_error is None,
            "error": self.gw.policy_error,
            "policies": [{"name": p.name, "source": p.where} for p in self.gw.engine.policies],
        })

    async def explain(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            exp = self.gw.engine.explain(q.get("view", ""), q.get("vlan", ""),
                                         q.get("service", ""))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"visible": exp.visible, "reflect": exp.reflect,
                                  "reasons": list(exp.reasons), "text": str(exp)})
