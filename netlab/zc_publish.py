"""Register DNS-SD services with python-zeroconf; run inside a lab host namespace.

Usage: ``python zc_publish.py '<json config>'`` with keys ``interfaces`` (addresses),
``ip_version`` (v4, v6, all), ``host_name``, ``addresses`` (default addresses of services),
``allow_name_change`` and ``services``: a list of ``{"name": "My Service", "type": "_http._tcp",
"port": 80, "txt": {"k": "v"} | ["k=v"], "server": "host", "addresses": [...], "ttl": 120,
"host_ttl": 120}``.

Prints JSON lines: ``{"event": "ready", "names": [...]}`` once all are registered, then replies
to commands read from stdin as JSON lines: ``{"op": "register"|"update", "service": {...}}`` and
``{"op": "unregister", "name": ...}``. SIGTERM (or EOF on stdin) unregisters everything, which
sends goodbye packets, prints ``{"event": "bye"}`` and exits 0.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from zeroconf import IPVersion, ServiceInfo, Zeroconf

_IP_VERSIONS = {"v4": IPVersion.V4Only, "v6": IPVersion.V6Only, "all": IPVersion.All}


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def full_type(type_: str) -> str:
    type_ = type_.rstrip(".")
    return type_ + "." if type_.endswith(".local") else type_ + ".local."


def txt_properties(txt: Any) -> dict[str, str | None]:
    if txt is None:
        return {}
    if isinstance(txt, dict):
        return {str(k): (None if v is None else str(v)) for k, v in txt.items()}
    props: dict[str, str | None] = {}
    for item in txt:
        key, sep, value = str(item).partition("=")
        props[key] = value if sep else None
    return props


def build_info(cfg: dict[str, Any], svc: dict[str, Any]) -> ServiceInfo:
    type_ = full_type(svc["type"])
    name = svc["name"]
    if not name.endswith(type_):
        name = f"{name}.{type_}"
    server = svc.get("server") or cfg.get("host_name") or "zc-host"
    if not server.endswith("."):
        server = server.removesuffix(".local") + ".local."
    kwargs: dict[str, Any] = {}
    if "ttl" in svc:
        kwargs["other_ttl"] = int(svc["ttl"])
    if "host_ttl" in svc:
        kwargs["host_ttl"] = int(svc["host_ttl"])
    return ServiceInfo(
        type_,
        name,
        port=int(svc["port"]),
        properties=txt_properties(svc.get("txt")),
        server=server,
        parsed_addresses=list(svc.get("addresses") or cfg.get("addresses") or []),
        **kwargs,
    )


def main() -> int:
    cfg = json.loads(sys.argv[1])
    zc = Zeroconf(
        interfaces=cfg["interfaces"], ip_version=_IP_VERSIONS[cfg.get("ip_version", "all")]
    )
    allow = bool(cfg.get("allow_name_change", True))
    infos: dict[str, ServiceInfo] = {}
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def find(name: str) -> ServiceInfo | None:
        for full, info in infos.items():
            if name in (full, full.split(".", 1)[0]) or full.startswith(name + "."):
                return info
        return None

    try:
        for svc in cfg.get("services", []):
            info = build_info(cfg, svc)
            zc.register_service(info, allow_name_change=allow)
            infos[info.name] = info
        emit(event="ready", names=list(infos))

        def commands() -> None:
            for line in sys.stdin:
                if stop.is_set():
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    cmd = json.loads(line)
                    op = cmd["op"]
                    if op == "register":
                        info = build_info(cfg, cmd["service"])
                        zc.register_service(info, allow_name_change=allow)
                        infos[info.name] = info
                        emit(event="registered", name=info.name)
                    elif op == "update":
                        info = build_info(cfg, cmd["service"])
                        zc.update_service(info)
                        infos[info.name] = info
                        emit(event="updated", name=info.name)
                    elif op == "unregister":
                        found = find(cmd["name"])
                        if found is None:
                            emit(event="failed", op=op, error=f"unknown service {cmd['name']}")
                            continue
                        zc.unregister_service(found)
                        infos.pop(found.name, None)
                        emit(event="unregistered", name=found.name)
                    else:
                        emit(event="failed", op=op, error="unknown op")
                except Exception as exc:  # reported to the test, never fatal
                    emit(event="failed", error=repr(exc))
            stop.set()

        threading.Thread(target=commands, daemon=True).start()
        stop.wait()
        zc.unregister_all_services()
        emit(event="bye")
    except Exception as exc:
        emit(event="error", error=repr(exc))
        return 1
    finally:
        zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
