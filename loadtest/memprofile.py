"""Where the gateway's memory goes, in-process: ``python -m loadtest.memprofile``.

The load test's memory phase measures the running gateway over real mDNS; this builds the same
gateway object (``bridge.app.Gateway``, HTTP surface and so aiohttp imported as the service
runs it), feeds the memory phase's announcements through the mDNS parser into the store as
ingest does (no sockets, no lab), asks every name once through the DNS answers, and prints
VmRSS at each stage and, with ``--top N``, tracemalloc's largest allocation sites by line.
Figures are of this process only; the lab's are the ones the README quotes.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from typing import Any

import dns.message
import dns.rdatatype

from . import workload
from .mdns_peer import _packets, _records

VLANS = {"trusted": 10, "iot": 20, "guest": 30}
MB = 1024 * 1024


def rss() -> int:
    """VmRSS of this process, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build(services: int) -> tuple[Any, list[Any]]:
    from bridge import config as _config
    from bridge.app import Gateway

    raw = {
        "vlans": {
            name: {
                "interface": f"br{vid}",
                "domain": f"{name}.home.arpa.",
                "subnets": [f"10.{vid}.0.0/16", f"fd00:{vid}::/64"],
            }
            for name, vid in VLANS.items()
        },
        "dns": {"listen": ["127.0.0.1:5300"], "default_view": "*"},
        "cache": {"max_records": 200_000},
        "http": {"listen": "127.0.0.1:9353"},
    }
    cfg = _config.from_dict(raw, "memprofile")
    gw = Gateway(cfg)
    gw.apply_engine(gw.engine)
    devs = workload.spread_types(
        workload.devices(VLANS, services, seed=workload.SEED + 1, balanced=True)
    )
    return gw, devs


def populate(gw: Any, devs: list[Any], now: float) -> tuple[int, float]:
    """The memory phase's announcements, parsed and stored by ingest (its record guard too):
    the records held, and the time after the last packet."""
    from bridge.mdns import wire
    from bridge.mdns.links import Link

    sent = 0
    for vlan, vid in VLANS.items():
        recs = [
            [o, t, r, 4500] for o, t, r in workload.records([d for d in devs if d.vlan == vlan])
        ]
        # the VLAN's link as Links.refresh makes it, without the interface (no lab here)
        cfg = gw.config.vlans[vlan]
        link = Link(vlan, cfg.interface, 0, True, cfg.subnets, (), True, True)
        src = sys.intern(f"10.{vid}.0.77")
        for data in _packets(_records(recs), 1400):
            # one time per packet, as ingest has, at the memory phase's 300 packets/s
            gw.ingest.apply(link, wire.parse(data), src, now + sent / 300)
            sent += 1
    return len(gw.store), now + sent / 300


def ask_all(gw: Any, devs: list[Any], now: float) -> int:
    """Every name of the memory phase's question pool asked once (EDNS 1232, as dnsperf)."""
    domains = {name: f"{name}.home.arpa." for name in VLANS}
    pool = workload.question_pool(devs, domains)
    answered = 0
    for rtype, names in pool.items():
        for i, name in enumerate(names):
            q = dns.message.make_query(
                name, dns.rdatatype.from_text(rtype), use_edns=0, payload=1232, id=i & 0xFFFF
            )
            if isinstance(gw.answers.answer(q.to_wire(), "*", False, now), bytes):
                answered += 1
    return answered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--top", type=int, default=0, help="tracemalloc's N largest lines")
    ap.add_argument("--stage", choices=("store", "warm"), default="warm")
    args = ap.parse_args(argv)
    if args.top:
        tracemalloc.start()
    gc.collect()
    base = rss()
    gw, devs = build(args.services)
    built = rss()
    now = time.monotonic()
    held, now = populate(gw, devs, now)
    gc.collect()
    stored = rss()
    snap_store = tracemalloc.take_snapshot() if args.top else None
    answered = ask_all(gw, devs, now) if args.stage == "warm" else 0
    gc.collect()
    warm = rss()
    cache_bytes = sum(
        c.bytes for caches in gw.answers._by_ceiling.values() for c in caches.values()
    )
    print(
        f"services {args.services}: records {held}; RSS imports {base / MB:.1f} MB, "
        f"gateway built {built / MB:.1f} MB, stored {stored / MB:.1f} MB, "
        f"{answered} names asked {warm / MB:.1f} MB (answer cache {cache_bytes / MB:.1f} MB est.)"
    )
    if args.top:
        snap = tracemalloc.take_snapshot()
        for title, s in (("stored", snap_store), ("warm", snap)):
            if s is None or (title == "warm" and args.stage != "warm"):
                continue
            stats = s.statistics("lineno")
            total = sum(st.size for st in stats)
            print(f"--- tracemalloc {title}: {total / MB:.1f} MB traced")
            for st in stats[: args.top]:
                frame = st.traceback[0]
                print(f"{st.size / MB:7.2f} MB {st.count:8d}  {frame.filename}:{frame.lineno}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
