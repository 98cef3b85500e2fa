"""Real packets: pcap payloads on UDP 5353/53.

The permissively licensed captures are the project's own (tests/data/captures, attributed in its
SOURCES.md), so the suite runs from a plain clone. The copyleft ones (pypacker, nfstream, nDPI)
stay outside the project in ../shared/testdata; tests that use them skip, saying why, without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"


def _shared_testdata() -> Path:
    """../shared/testdata beside the checkout; for a git worktree, beside its main checkout."""
    beside = ROOT.parent / "shared" / "testdata"
    dot_git = ROOT / ".git"
    if not beside.is_dir() and dot_git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/x"
        gitdir = Path(dot_git.read_text().partition(":")[2].strip())
        main = gitdir.parents[2] if gitdir.parent.name == "worktrees" else None
        if main is not None and (main.parent / "shared" / "testdata").is_dir():
            return main.parent / "shared" / "testdata"
    return beside


SHARED = _shared_testdata()
SHARED_MISSING = (
    f"copyleft captures (pypacker, nfstream, nDPI) are kept outside the project: {SHARED} "
    "is absent (see tests/data/captures/SOURCES.md)"
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
    return sorted((CAPTURES / "mdns").glob("*.pcap"))


def malformed_pcaps() -> list[Path]:
    return sorted((CAPTURES / "dns-malformed").glob("*.pcap"))


def esp_idf_packets() -> list[Path]:
    return sorted((CAPTURES / "mdns" / "esp-idf").glob("*.bin"))


def _copyleft(folder: str) -> list[Path]:
    """The captures in ../shared/testdata/<folder> that the project does not carry."""
    if not SHARED.is_dir():
        pytest.skip(SHARED_MISSING)
    ours = {p.name for p in (CAPTURES / folder).glob("*.pcap")}
    return sorted(p for p in (SHARED / folder).glob("*.pcap") if p.name not in ours)


def copyleft_mdns_pcaps() -> list[Path]:
    """Skips the calling test when ../shared/testdata is absent."""
    return _copyleft("mdns")


def copyleft_malformed_pcaps() -> list[Path]:
    """Skips the calling test when ../shared/testdata is absent."""
    return _copyleft("dns-malformed")


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
