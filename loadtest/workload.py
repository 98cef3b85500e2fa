"""The service set the benchmark runs on, and everything derived from it (pure, seeded).

A home/small-office network: printers, Chromecasts, AirPlay receivers and HomeKit accessories
plus ordinary hosts (SSH/SMB), spread over the lab's VLANs. From one list of devices come:

* the publishers' configs (python-zeroconf in host namespaces, or the bulk announcer),
* NSD zone files holding exactly the records the gateway serves for them (``.local`` as the
  router's ``*`` view sees it, and each VLAN's wide-area domain, RFC 8766 rewritten),
* dnsperf query files (binary format, so instance names keep their spaces and UTF-8).

Nothing here touches the network.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rdatatype

SEED = 6  # issue 6
LOCAL = "local."
TTL = 10  # s; the gateway caps answers at dns.max_ttl (10 s) and NSD serves this
# query mix by type (shares of the file); half .local, half wide-area <vlan>.home.arpa.
MIX: Mapping[str, float] = {"PTR": 0.10, "SRV": 0.20, "TXT": 0.20, "A": 0.30, "AAAA": 0.20}


@dataclass(frozen=True, slots=True)
class Service:
    instance: str  # the instance label, spaces and UTF-8 allowed
    type: str  # "_ipp._tcp"
    port: int
    txt: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Device:
    vlan: str
    host: str  # host label: <host>.local.
    ipv4: str
    ipv6: str
    kind: str  # printer | chromecast | airplay | homekit | host
    services: tuple[Service, ...]


# --- devices -----------------------------------------------------------------------------

_PRINTERS = [
    "HP LaserJet M404dn",
    "Brother HL-L2350DW",
    "EPSON ET-2850 Series",
    "Canon MF743C",
    "Xerox B210",
    "HP OfficeJet Pro 9010",
]
_ROOMS = [
    "Living Room",
    "Kitchen",
    "Bedroom",
    "Office",
    "Den",
    "Garage",
    "Patio",
    "Hall",
    "Studio",
    "Attic",
    "Basement",
    "Guest Room",
    "Nursery",
    "Gym",
    "Library",
    "Porch",
]
_HOMEKIT = [
    "Eve Energy",
    "Hue Bridge",
    "ecobee3",
    "Nanoleaf Shapes",
    "Aqara Hub",
    "August Lock",
    "Eve Door & Window",
    "Meross Plug",
]
_PEOPLE = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
]

# device patterns per VLAN position: trusted (1st), iot (2nd), guest (3rd and later)
_PATTERNS = (
    ("printer", "airplay", "host", "host", "chromecast", "host"),
    ("homekit", "homekit", "chromecast", "homekit", "airplay", "printer"),
    ("chromecast", "airplay", "homekit", "host"),
)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(n))


def _device(kind: str, vlan: str, vid: int, index: int, rng: random.Random) -> Device:
    services: tuple[Service, ...]
    k = index + 100  # 10.N.0.100.. : inside the VLAN's /24, away from the lab's hosts (2..)
    ipv4, ipv6 = f"10.{vid}.{k // 254}.{k % 254 + 1}", f"fd00:{vid}::{k:x}:1"
    room = f"{_ROOMS[index % len(_ROOMS)]} {index // len(_ROOMS) + 1}"
    tag = _hex(rng, 6)
    if kind == "printer":
        model = _PRINTERS[index % len(_PRINTERS)]
        inst = f"{model} [{tag}]"
        host = f"{model.split()[0].lower()}-{tag.lower()}"
        base = (
            "txtvers=1",
            f"ty={model}",
            f"product=({model})",
            f"note={room}",
            "pdl=application/pdf,image/urf,image/pwg-raster,application/postscript",
            f"UUID={_hex(rng, 8).lower()}-{_hex(rng, 4).lower()}-"
            f"{_hex(rng, 4).lower()}-{_hex(rng, 12).lower()}",
            "Color=T",
            "Duplex=T",
            "URF=W8,SRGB24,CP1,IS1-4,MT1-3,RS600",
            "qtotal=1",
            "adminurl=http://" + host + ".local./",
        )
        services = (
            Service(inst, "_ipp._tcp", 631, (*base, "rp=ipp/print")),
            Service(inst, "_ipps._tcp", 631, (*base, "rp=ipp/print", "TLS=1.3")),
            Service(inst, "_pdl-datastream._tcp", 9100, base[:4]),
        )
    elif kind == "chromecast":
        uuid = _hex(rng, 32).lower()
        inst = f"Chromecast-{uuid}"
        host = uuid[:8] + "-" + uuid[8:12] + "-" + uuid[12:16]
        services = (
            Service(
                inst,
                "_googlecast._tcp",
                8009,
                (
                    f"id={uuid}",
                    f"cd={_hex(rng, 32)}",
                    "rm=",
                    "ve=05",
                    "md=Chromecast",
                    "ic=/setup/icon.png",
                    f"fn={room} TV",
                    "ca=465413",
                    "st=0",
                    f"bs={_hex(rng, 12)}",
                    "nf=1",
                    "rs=",
                ),
            ),
        )
    elif kind == "airplay":
        mac = ":".join(_hex(rng, 2) for _ in range(6))
        name = f"{room} Apple TV" + (f" ({vid})" if vid != 10 else "")
        host = f"{room} Apple TV".lower().replace(" ", "-")
        txt = (
            f"deviceid={mac}",
            "features=0x4A7FDFD5,0x3C155FDE",
            "flags=0x18644",
            "model=AppleTV11,1",
            f"pk={_hex(rng, 64).lower()}",
            f"pi={_hex(rng, 8).lower()}-{_hex(rng, 4).lower()}",
            "srcvers=670.6.2",
            "vv=2",
            "osvers=17.2",
            "protovers=1.1",
            "acl=0",
            "btaddr=00:00:00:00:00:00",
        )
        services = (
            Service(name, "_airplay._tcp", 7000, txt),
            Service(
                f"{mac.replace(':', '')}@{name}",
                "_raop._tcp",
                7000,
                (
                    "cn=0,1,2,3",
                    "da=true",
                    "et=0,3,5",
                    "ft=0x4A7FDFD5,0x3C155FDE",
                    "md=0,1,2",
                    "am=AppleTV11,1",
                    "sf=0x18644",
                    "tp=UDP",
                    "vn=65537",
                    "vs=670.6.2",
                    "ov=17.2",
                    f"pk={_hex(rng, 64).lower()}",
                ),
            ),
        )
    elif kind == "homekit":
        model = _HOMEKIT[index % len(_HOMEKIT)]
        inst = f"{model} {tag[:4]}"
        host = model.lower().replace(" ", "-").replace("&", "and") + "-" + tag[:4].lower()
        services = (
            Service(
                inst,
                "_hap._tcp",
                80,
                (
                    f"c#={rng.randint(1, 40)}",
                    "ff=0",
                    f"id={':'.join(_hex(rng, 2) for _ in range(6))}",
                    f"md={model}",
                    "pv=1.1",
                    "s#=1",
                    "sf=0",
                    "ci=7",
                    f"sh={_hex(rng, 6)}==",
                ),
            ),
        )
    else:
        person = _PEOPLE[index % len(_PEOPLE)]
        host = f"{person}-laptop-{index}-{vid}"
        services = (
            Service(host, "_ssh._tcp", 22, ()),
            Service(host, "_smb._tcp", 445, ()),
            Service(host, "_device-info._tcp", 0, ("model=MacBookPro18,3", "osxvers=23")),
        )
    if kind != "host":
        host = f"{host}-{vid}-{index}"
    return Device(vlan, host, ipv4, ipv6, kind, services)


def devices(
    vlans: Mapping[str, int], n_services: int, seed: int = SEED, balanced: bool = False
) -> list[Device]:
    """``n_services`` service instances (the last device trimmed to fit) over the VLANs: devices
    in turn, or with ``balanced`` each to the VLAN with the fewest services so far."""
    rng = random.Random(seed)
    out: list[Device] = []
    counts = dict.fromkeys(vlans, 0)
    per_vlan = dict.fromkeys(vlans, 0)
    total = 0
    order = list(vlans.items())
    i = 0
    while total < n_services:
        pos = i % len(order)
        if balanced:
            pos = min(range(len(order)), key=lambda p: (per_vlan[order[p][0]], p))
        vlan, vid = order[pos]
        pattern = _PATTERNS[min(pos, len(_PATTERNS) - 1)]
        index = counts[vlan]
        dev = _device(pattern[index % len(pattern)], vlan, vid, index, rng)
        counts[vlan] += 1
        i += 1
        take = dev.services[: n_services - total]
        total += len(take)
        per_vlan[vlan] += len(take)
        out.append(Device(dev.vlan, dev.host, dev.ipv4, dev.ipv6, dev.kind, take))
    return out


def spread_types(devs: Sequence[Device], per_type: int = 63) -> list[Device]:
    """The same devices with service types numbered so no (VLAN, type) holds more than
    ``per_type`` instances: the store keeps at most const.STORE_MAX_RRSET (64) rdatas per name
    and type, so 10,000 services on three VLANs need more types than a home has. Record sizes
    stay within a byte or two of the originals."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for d in devs:
        services = []
        for s in d.services:
            n = seen.get((d.vlan, s.type), 0)
            seen[(d.vlan, s.type)] = n + 1
            group = n // per_type
            name, proto = s.type.split(".")
            stype = f"{name[:11]}{group:03d}.{proto}" if group else s.type
            services.append(Service(s.instance, stype, s.port, s.txt))
        out.append(Device(d.vlan, d.host, d.ipv4, d.ipv6, d.kind, tuple(services)))
    return out


def service_count(devs: Iterable[Device]) -> int:
    return sum(len(d.services) for d in devs)


# --- records -----------------------------------------------------------------------------

Rec = tuple[str, str, str]  # (owner, type, rdata text) with absolute names


def _label(text: str) -> str:
    """An instance label in master-file syntax (dots, spaces and backslashes escaped)."""
    label = dns.name.Name([text.encode()]).to_text().rstrip(".")
    return label.replace("\\@", "\\064")  # NSD reads \@ as a syntax error


def records(devs: Iterable[Device], domain: str = LOCAL) -> list[Rec]:
    """Every record the devices announce, under ``domain`` (``local.`` or a wide-area one)."""
    out: list[Rec] = []
    types: set[str] = set()
    for d in devs:
        host = f"{d.host}.{domain}"
        out.append((host, "A", d.ipv4))
        out.append((host, "AAAA", d.ipv6))
        for s in d.services:
            stype = f"{s.type}.{domain}"
            inst = f"{_label(s.instance)}.{stype}"
            types.add(stype)
            out.append((stype, "PTR", inst))
            out.append((inst, "SRV", f"0 0 {s.port} {host}"))
            txt = (
                " ".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in s.txt)
                or '""'
            )
            out.append((inst, "TXT", txt))
    for stype in sorted(types):
        out.append((f"_services._dns-sd._udp.{domain}", "PTR", stype))
    return out


def zone_text(origin: str, recs: Iterable[Rec], ttl: int = TTL) -> str:
    """An NSD master file for ``origin`` (SOA and NS added) with ``recs``."""
    lines = [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {ttl}",
        f"@ IN NS ns.{origin}",
        f"ns.{origin} IN A 127.0.0.1",
    ]
    lines += [f"{owner} IN {rtype} {rdata}" for owner, rtype, rdata in recs]
    return "\n".join(lines) + "\n"


def zones(devs: Sequence[Device], domains: Mapping[str, str]) -> dict[str, str]:
    """origin -> zone text: ``local.`` (every VLAN: the ``*`` view) and each VLAN's domain."""
    out = {LOCAL: zone_text(LOCAL, records(devs))}
    for vlan, domain in domains.items():
        out[domain] = zone_text(domain, records([d for d in devs if d.vlan == vlan], domain))
    return out


# --- queries -----------------------------------------------------------------------------


def question_pool(devs: Sequence[Device], domains: Mapping[str, str]) -> dict[str, list[str]]:
    """qtype -> names that have data of that type, over ``.local`` and the wide-area domains."""
    pool: dict[str, list[str]] = {t: [] for t in MIX}
    for vlan_domain in (None, *domains.items()):
        if vlan_domain is None:
            subset, domain = list(devs), LOCAL
        else:
            vlan, domain = vlan_domain
            subset = [d for d in devs if d.vlan == vlan]
        for owner, rtype, _ in records(subset, domain):
            if rtype in pool and not owner.startswith("_services."):
                pool[rtype].append(owner)
    return {t: sorted(set(names)) for t, names in pool.items()}


def query_list(
    devs: Sequence[Device], domains: Mapping[str, str], count: int, seed: int = SEED
) -> list[tuple[str, str]]:
    """``count`` (name, type) questions drawn with the MIX shares, half .local, half wide-area."""
    rng = random.Random(seed)
    pool = question_pool(devs, domains)
    local = {t: [n for n in names if n.endswith(".local.")] for t, names in pool.items()}
    wide = {t: [n for n in names if not n.endswith(".local.")] for t, names in pool.items()}
    out: list[tuple[str, str]] = []
    for rtype, share in MIX.items():
        for i in range(round(count * share)):
            names = local[rtype] if i % 2 == 0 else wide[rtype]
            if names:
                out.append((rng.choice(names), rtype))
    rng.shuffle(out)
    return out


def dnsperf_binary(questions: Iterable[tuple[str, str]], edns_payload: int = 1232) -> bytes:
    """dnsperf ``-B`` input: length-prefixed wire queries (RD set, EDNS0 as stub resolvers send)."""
    out = bytearray()
    for name, rtype in questions:
        q = dns.message.make_query(
            name, dns.rdatatype.from_text(rtype), use_edns=0, payload=edns_payload, id=0
        )
        wire = q.to_wire()
        out += struct.pack("!H", len(wire)) + wire
    return bytes(out)
