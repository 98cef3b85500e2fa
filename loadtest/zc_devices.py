"""Many devices' services from one python-zeroconf responder; run inside a lab host namespace.

Usage: ``python -m loadtest.zc_devices '<json>'`` with ``interfaces`` (addresses to bind) and
``services``: ``[{"name", "type", "port", "txt": [...], "server": "host.local.",
"addresses": [...]}]``. Every service is registered at once (probing and announcing run
concurrently, as on a network where the devices are already up), then ``{"event": "ready"}``
is printed; it answers queries until SIGTERM, which unregisters everything (goodbyes).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf


def _info(svc: dict[str, Any]) -> ServiceInfo:
    stype = svc["type"] + ".local."
    props: dict[str, str | None] = {}
    for item in svc.get("txt", []):
        key, sep, value = item.partition("=")
        props[key] = value if sep else None
    return ServiceInfo(
        stype,
        f"{svc['name']}.{stype}",
        port=int(svc["port"]),
        properties=props,
        server=svc["server"],
        parsed_addresses=list(svc["addresses"]),
    )


async def main() -> int:
    arg = sys.argv[1]  # the JSON, or @file holding it
    cfg = json.loads(Path(arg[1:]).read_text() if arg.startswith("@") else arg)
    azc = AsyncZeroconf(interfaces=cfg["interfaces"], ip_version=IPVersion.V4Only)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    infos = [_info(s) for s in cfg["services"]]
    try:
        tasks = await asyncio.gather(*(azc.async_register_service(i) for i in infos))
        await asyncio.gather(*tasks)
        print(json.dumps({"event": "ready", "count": len(infos)}), flush=True)
        await stop.wait()
        await azc.async_unregister_all_services()
    finally:
        await azc.async_close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
