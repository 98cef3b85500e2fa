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


def announcements(gw: Any, devs: list[Any]) -> list[tuple[Any, str, list[bytes]]]:
    """The memory phase's announcements as packets per VLAN (link, source, packets), built
    before anything is measured: built while the store fills, the harness's own records and
    names were freed between the store's and left the allocators' arenas part-used (the
    in-process figures then read lower than the lab's after asking, higher when stored)."""
    from bridge.mdns.links import Link

    out = []
    for vlan, vid in VLANS.items():
        recs = [
            [o, t, r, 4500] for o, t, r in workload.records([d for d in devs if d.vlan == vlan])
        ]
        # the VLAN's link as Links.refresh makes it, without the interface (no lab here)
        cfg = gw.config.vlans[vlan]
        link = Link(vlan, cfg.interface, 0, True, cfg.subnets, (), True, True)
        out.append((link, sys.intern(f"10.{vid}.0.77"), _packets(_records(recs), 1400)))
    return out


def populate(gw: Any, packets: list[tuple[Any, str, list[bytes]]], now: float) -> float:
    """The announcements parsed and stored by ingest (its record guard too), one time per
    packet at the memory phase's 300 packets/s as ingest has: the time after the last."""
    from bridge.mdns import wire

    sent = 0
    for link, src, datas in packets:
        for data in datas:
            gw.ingest.apply(link, wire.parse(data), src, now + sent / 300)
            sent += 1
    return now + sent / 300


def questions(devs: list[Any]) -> list[bytes]:
    """Every name of the memory phase's question pool, as query wire (EDNS 1232, as dnsperf)."""
    domains = {name: f"{name}.home.arpa." for name in VLANS}
    pool = workload.question_pool(devs, domains)
    return [
        dns.message.make_query(
            name, dns.rdatatype.from_text(rtype), use_edns=0, payload=1232, id=i & 0xFFFF
        ).to_wire()
        for rtype, names in pool.items()
        for i, name in enumerate(names)
    ]


def ask_all(gw: Any, queries: list[bytes], now: float) -> int:
    """Every query asked once through the DNS answers: how many were answered."""
    answered = 0
    for q in queries:
        if isinstance(gw.answers.answer(q, "*", False, now), bytes):
            answered += 1
    return answered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--top", type=int, default=0, help="tracemalloc's N largest lines")
    ap.add_argument("--stage", choices=("store", "warm"), default="warm")
    ap.add_argument(
        "--again",
        type=int,
        default=0,
        help="announce everything N more times once stored (the lab does, up to 3, while "
        "avahi-daemon holds fewer records): refreshes, not new records",
    )
    args = ap.parse_args(argv)
    if args.top:
        tracemalloc.start()
    gc.collect()
    base = rss()
    gw, devs = build(args.services)
    packets = announcements(gw, devs)
    queries = questions(devs) if args.stage == "warm" else []
    gc.collect()
    built = rss()
    now = populate(gw, packets, time.monotonic())
    held = len(gw.store)
    gc.collect()
    stored = rss()
    snap_store = tracemalloc.take_snapshot() if args.top else None
    for _ in range(args.again):
        now = populate(gw, packets, now + 1.0)
    gc.collect()
    again = rss()
    answered = ask_all(gw, queries, now)
    gc.collect()
    warm = rss()
    cache_bytes = sum(
        c.bytes for caches in gw.answers._by_ceiling.values() for c in caches.values()
    )
    print(
        f"services {args.services}: records {held}; RSS imports {base / MB:.1f} MB, "
        f"gateway built (and the test's packets) {built / MB:.1f} MB, stored {stored / MB:.1f} MB, "
        f"announced {args.again} more times {again / MB:.1f} MB, "
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
