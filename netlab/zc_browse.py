"""Browse DNS-SD service types with python-zeroconf; run inside a lab host namespace.

Usage: ``python zc_browse.py '<json config>'`` with keys ``interfaces`` (addresses),
``ip_version`` (v4, v6, all) and ``types`` (``["_http._tcp", ...]``).

Prints JSON lines: ``{"event": "started"}``, then for every browser event
``{"event": "added"|"updated"|"removed", "type": ..., "name": ...}``, and after each added or
updated one ``{"event": "resolved", "name", "type", "server", "port", "addresses", "txt"}``
(or ``{"event": "unresolved", ...}``). SIGTERM or EOF on stdin stops it.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
from typing import Any

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

_IP_VERSIONS = {"v4": IPVersion.V4Only, "v6": IPVersion.V6Only, "all": IPVersion.All}
_RESOLVE_TIMEOUT_MS = 3000


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def full_type(type_: str) -> str:
    type_ = type_.rstrip(".")
    return type_ + "." if type_.endswith(".local") else type_ + ".local."


def main() -> int:
    cfg = json.loads(sys.argv[1])
    zc = Zeroconf(
        interfaces=cfg["interfaces"], ip_version=_IP_VERSIONS[cfg.get("ip_version", "v4")]
    )
    todo: queue.Queue[tuple[str, str, str] | None] = queue.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        kind = {
            ServiceStateChange.Added: "added",
            ServiceStateChange.Updated: "updated",
            ServiceStateChange.Removed: "removed",
        }[state_change]
        emit(event=kind, type=service_type, name=name)
        if kind != "removed":
            todo.put((kind, service_type, name))

    def on_term(signum: int, frame: Any) -> None:
        todo.put(None)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def watch_stdin() -> None:
        for _ in sys.stdin:
            pass
        todo.put(None)

    threading.Thread(target=watch_stdin, daemon=True).start()
    browsers = [ServiceBrowser(zc, full_type(t), handlers=[on_change]) for t in cfg["types"]]
    emit(event="started")
    try:
        while True:
            item = todo.get()
            if item is None:
                break
            _, service_type, name = item
            info = zc.get_service_info(service_type, name, timeout=_RESOLVE_TIMEOUT_MS)
            if info is None:
                emit(event="unresolved", type=service_type, name=name)
                continue
            txt = {
                k.decode(errors="replace"): (None if v is None else v.decode(errors="replace"))
                for k, v in (info.properties or {}).items()
            }
            emit(
                event="resolved",
                type=service_type,
                name=name,
                server=info.server,
                port=info.port,
                addresses=info.parsed_scoped_addresses(),
                txt=txt,
            )
    finally:
        for b in browsers:
            b.cancel()
        zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
