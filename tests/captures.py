"""Real packets from ../shared/testdata (see its SOURCES.md): pcap payloads on UDP 5353/53."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = next(
    (
        p
        for p in (ROOT.parent / "shared" / "testdata", ROOT / "tests" / "data" / "testdata")
        if p.is_dir()
    ),
    None,
)


def _l3(datalink: int, buf: bytes) -> object:
    if datalink == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if datalink == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if datalink == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(buf).data
    return None


def udp_payloads(path: Path, ports: tuple[int, ...] = (5353,)) -> Iterator[bytes]:
    """UDP payloads to or from the given ports. IP fragments that dpkt cannot parse are skipped."""
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        datalink = reader.datalink()
        for _, buf in reader:
            try:
                ip = _l3(datalink, buf)
                udp = getattr(ip, "data", None)
            except (dpkt.UnpackError, ValueError, IndexError):
                continue
            if isinstance(udp, dpkt.udp.UDP) and (udp.sport in ports or udp.dport in ports):
                yield bytes(udp.data)


def mdns_pcaps() -> list[Path]:
    assert TESTDATA is not None, "shared/testdata not found beside the checkout"
    return sorted((TESTDATA / "mdns").glob("*.pcap"))


def malformed_pcaps() -> list[Path]:
    assert TESTDATA is not None
    return sorted((TESTDATA / "dns-malformed").glob("*.pcap"))


def esp_idf_packets() -> list[Path]:
    assert TESTDATA is not None
    return sorted((TESTDATA / "mdns" / "esp-idf").glob("*.bin"))


def raw_udp_payloads_from_ip(path: Path) -> Iterator[bytes]:
    """Payloads by the IP length, ignoring the UDP length field (the zlip attacks lie in it)."""
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        datalink = reader.datalink()
        for _, buf in reader:
            try:
                ip = _l3(datalink, buf)
            except (dpkt.UnpackError, ValueError, IndexError):
                continue
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                raw = bytes(ip.data) if not isinstance(ip.data, bytes) else ip.data
                if isinstance(ip.data, dpkt.udp.UDP):
                    raw = bytes(ip.data)
                yield raw[8:]
