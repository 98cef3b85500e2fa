"""chrony: parsing real chronyc output, the health rule, hysteresis, records, the service.

The service tests run the real Gateway components (store, resolver, responder) without
sockets: chronyc is replaced by canned captures, time is the event loop's.
"""

# Rdata subclasses (SRV, PTR, TXT) carry their fields as attributes dnspython does not type.
# mypy: disable-error-code="attr-defined"

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge import config as cfgmod
from bridge import const
from bridge.app import Gateway
from bridge.chrony import (
    LOCAL_REFID,
    ChronyError,
    ChronyService,
    ServerState,
    Source,
    Tracking,
    chronyc_argv,
    judge,
    ntp_spec,
    parse_report,
    parse_source,
    query_chronyd,
    server_addresses,
    store_records,
    synchronised,
)
from bridge.configsections import ChronyServer
from bridge.mdns import wire
from bridge.mdns.links import Link

DATA = Path(__file__).parent / "data" / "chrony"
N = dns.name.from_text
A, AAAA, PTR, SRV, TXT = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
)


def capture(name: str) -> str:
    return (DATA / f"{name}.csv").read_text()


def report(name: str) -> tuple[Tracking, list[Source]]:
    return parse_report(capture(name))


# --- parsing ---------------------------------------------------------------------------------


def test_parse_synced_tracking() -> None:
    t, sources = report("synced")
    assert t.ref_id == 0x0A630002 and t.ref_name == "10.99.0.2"
    assert t.stratum == 9
    assert t.leap == "Normal"
    assert t.correction == pytest.approx(-1.937e-6)
    assert t.offset == pytest.approx(1.937e-6)  # "0.000001937 seconds fast of NTP time"
    assert t.frequency_ppm == pytest.approx(0.026)
    assert t.root_delay == pytest.approx(8.457e-6)
    assert t.root_dispersion == pytest.approx(8.02e-7)
    assert len(sources) == 1
    s = sources[0]
    assert (s.mode, s.state, s.address, s.stratum, s.poll) == ("^", "*", "10.99.0.2", 8, -4)
    assert s.reach == 0o377 and s.reachability == 1.0
    assert s.selected and s.last_rx == 0.0
    assert s.offset == pytest.approx(4.79e-7)


def test_parse_not_synchronised_and_never_heard_sources() -> None:
    t, sources = report("not_synchronised")
    assert t.leap == "Not synchronised" and t.stratum == 0 and t.ref_id == 0
    assert [s.state for s in sources] == ["?", "?", "?"]
    assert all(s.last_rx is None and s.reach == 0 for s in sources)


def test_parse_several_sources() -> None:
    _, sources = report("several_sources")
    assert [(s.address, s.state) for s in sources] == [
        ("10.99.0.2", "?"),
        ("10.99.0.77", "?"),
        ("127.0.0.1", "?"),
        ("10.99.0.3", "*"),
        ("10.99.0.4", "+"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "506 Cannot talk to daemon",
        "a,b,c",
        "zz,,0,0,0,0,0,0,0,0,0,0,0,Normal",
        "00000000,,x,0,0,0,0,0,0,0,0,0,0,Normal",
    ],
)
def test_parse_errors_are_chrony_errors(text: str) -> None:
    with pytest.raises(ChronyError):
        parse_report(text)


def test_bad_source_line() -> None:
    with pytest.raises(ChronyError):
        parse_source("^,*,10.0.0.1,x,0,377,0,0,0,0")
    with pytest.raises(ChronyError):
        parse_source("^,*,10.0.0.1,1,0,9,0,0,0,0")  # reach is octal


def test_source_list_is_bounded() -> None:
    line = "^,?,10.0.0.1,0,0,0,4294967295,0,0,0"
    text = capture("synced").splitlines()[0] + "\n" + "\n".join([line] * 500)
    assert len(parse_report(text)[1]) == const.CHRONY_MAX_SOURCES


# --- the health rule ------------------------------------------------------------------------


def test_synced_is_healthy() -> None:
    h = judge(*report("synced"), 0.010)
    assert h.healthy and h.reason == "ok"


def test_several_sources_healthy() -> None:
    assert judge(*report("several_sources"), 0.010).healthy


def test_local_reference_is_synchronised() -> None:
    t, sources = report("local_reference")
    assert t.ref_id == LOCAL_REFID and not sources
    assert synchronised(t, sources)
    assert judge(t, sources, 0.010).healthy


def test_not_synchronised() -> None:
    h = judge(*report("not_synchronised"), 0.010)
    assert not h.healthy and h.reason == "unsynchronised"


def test_lost_upstream_is_unhealthy_although_leap_says_normal() -> None:
    t, sources = report("upstream_lost")
    assert t.leap == "Normal"
    h = judge(t, sources, 0.010)
    assert not h.healthy and h.reason == "no_source"


def test_no_answer() -> None:
    h = judge(None, [], 0.010, "506 Cannot talk to daemon")
    assert not h.healthy and h.reason == "no_answer" and "506" in h.detail


def test_offset_bound_both_signs() -> None:
    t, sources = report("synced")
    for correction in (0.0101, -0.0101):
        h = judge(dataclasses.replace(t, correction=correction), sources, 0.010)
        assert not h.healthy and h.reason == "offset"
    assert judge(dataclasses.replace(t, correction=0.0099), sources, 0.010).healthy
    assert judge(dataclasses.replace(t, correction=0.05), sources, 0.1).healthy


def test_stratum_16_is_unhealthy() -> None:
    t, sources = report("synced")
    h = judge(dataclasses.replace(t, stratum=16), sources, 0.010)
    assert not h.healthy and h.reason == "stratum"


# --- hysteresis ----------------------------------------------------------------------------


SERVER = ChronyServer("router", ("127.0.0.1", 323), host="router")


def test_advertised_at_once_on_start_then_withdrawn_at_once_then_back_after_two() -> None:
    st = ServerState(SERVER)
    good, lost = report("synced"), report("upstream_lost")
    assert st.update(*good, 0.010, 0.0) and st.advertised
    assert st.update(*lost, 0.010, 2.0) and not st.advertised
    assert not st.update(*good, 0.010, 4.0) and not st.advertised  # one good poll: not yet
    assert st.update(*good, 0.010, 6.0) and st.advertised
    assert st.update(None, [], 0.010, 8.0, "gone") and not st.advertised
    assert st.failures == 1 and st.polls == 5


# --- records -------------------------------------------------------------------------------


def test_ntp_spec_txt_srv_and_nts() -> None:
    t, _ = report("synced")
    server = ChronyServer(
        "router2",
        ("10.10.0.254", 323),
        {"trusted": ("10.10.0.254",)},
        "router2",
        priority=1,
        weight=5,
        nts=True,
    )
    spec = ntp_spec(server, t, ("10.10.0.254",))
    ntp, nts = spec.services
    assert (ntp.stype, ntp.port, ntp.priority, ntp.weight) == ("_ntp._udp", 123, 1, 5)
    assert set(ntp.txt) == {b"txtvers=1", b"stratum=9", b"leap=normal"}
    assert (nts.stype, nts.port) == ("_ntske._tcp", 4460)
    recs = store_records(spec, "router2", ["router2", "router2"])
    by = {(n.to_text(), t) for n, t, _ in recs}
    assert ("router2._ntp._udp.local.", SRV) in by and ("router2._ntske._tcp.local.", SRV) in by
    assert ("_services._dns-sd._udp.local.", PTR) in by
    assert ("ntp.local.", A) in by and ("router2.local.", A) in by
    ptr = [r for n, t, r in recs if n == N("254.0.10.10.in-addr.arpa.")]
    assert [p.target for p in ptr] == [N("ntp.local.")]
    srv = next(r for n, t, r in recs if t == SRV and n.labels[1] == b"_ntp")
    assert (srv.priority, srv.weight, srv.port, srv.target) == (1, 5, 123, N("router2.local."))


def test_server_addresses_own_or_configured() -> None:
    own = {"trusted": ("10.10.0.1", "fd00:10::1", "fe80::1", "169.254.3.3")}
    assert server_addresses(SERVER, "trusted", lambda v: own.get(v, ())) == (
        "10.10.0.1",
        "fd00:10::1",
    )
    remote = ChronyServer("r2", ("10.10.0.254", 323), {"trusted": ("10.10.0.254",)})
    assert server_addresses(remote, "trusted", lambda v: own[v]) == ("10.10.0.254",)
    assert server_addresses(remote, "iot", lambda v: ()) == ()


def test_chronyc_argv() -> None:
    assert chronyc_argv(("127.0.0.1", 323))[:6] == ["chronyc", "-c", "-n", "-h", "127.0.0.1", "-p"]
    argv = chronyc_argv("/run/chrony/chronyd.sock")
    assert argv[3:5] == ["-h", "/run/chrony/chronyd.sock"] and "-p" not in argv
    assert argv[-2:] == ["tracking", "sources"]


# --- config ----------------------------------------------------------------------------------


def _config(chrony: dict[str, Any]) -> cfgmod.Config:
    return cfgmod.from_dict(
        {
            "vlans": {"trusted": {"interface": "br10"}, "iot": {"interface": "br20"}},
            "http": {"listen": None},
            "chrony": chrony,
        },
        "test.yaml",
    )


def test_config_as_in_the_issue() -> None:
    c = _config(
        {
            "servers": [
                {"name": "router", "control": "127.0.0.1:323"},
                {
                    "name": "router2",
                    "control": "10.10.0.254:323",
                    "addresses": {"trusted": "10.10.0.254"},
                },
            ],
            "max_offset_seconds": 0.010,
            "vlans": ["*"],
        }
    ).chrony
    assert c is not None
    assert [s.name for s in c.servers] == ["router", "router2"]
    assert [s.priority for s in c.servers] == [0, 1]
    assert c.servers[1].addresses == {"trusted": ("10.10.0.254",)}
    assert c.vlans == ("trusted", "iot") and c.max_offset_seconds == 0.010


@pytest.mark.parametrize(
    ("control", "want"),
    [
        ("127.0.0.1", ("127.0.0.1", 323)),
        ("[::1]", ("::1", 323)),
        ("::1", ("::1", 323)),
        ("[::1]:3230", ("::1", 3230)),
        ("/run/chrony/chronyd.sock", "/run/chrony/chronyd.sock"),
    ],
)
def test_config_control_forms(control: str, want: object) -> None:
    c = _config({"servers": [{"name": "router", "control": control}]}).chrony
    assert c is not None and c.servers[0].control == want


@pytest.mark.parametrize(
    ("chrony", "key"),
    [
        ({"servers": []}, "chrony.servers"),
        ({"servers": [{"name": "router"}]}, "chrony.servers[0].control"),
        ({"servers": [{"name": "Router!", "control": "127.0.0.1"}]}, "chrony.servers[0].name"),
        ({"servers": [{"name": "a", "control": "x.y"}]}, "chrony.servers[0].control"),
        (
            {"servers": [{"name": "a", "control": "127.0.0.1", "adresses": {}}]},
            "chrony.servers[0].adresses",
        ),
        (
            {"servers": [{"name": "a", "control": "127.0.0.1", "addresses": {"lab": "1.2.3.4"}}]},
            "chrony.servers[0].addresses.lab",
        ),
        ({"servers": [{"name": "a", "control": "127.0.0.1"}], "vlans": ["nope"]}, "chrony.vlans"),
        (
            {"servers": [{"name": "a", "control": "127.0.0.1"}], "max_offset_seconds": -1},
            "chrony.max_offset_seconds",
        ),
        ({"servers": [{"name": "a", "control": "127.0.0.1"}], "extra": 1}, "chrony.extra"),
    ],
)
def test_config_errors_name_file_key_and_fix(chrony: dict[str, Any], key: str) -> None:
    with pytest.raises(cfgmod.ConfigError) as err:
        _config(chrony)
    text = str(err.value)
    assert f"test.yaml: {key}:" in text and "fix:" in text


# --- the service, with the real store and resolver ----------------------------------------------


class Canned:
    """chronyc stand-in: per control address, the capture to return (None: not answering)."""

    def __init__(self) -> None:
        self.answers: dict[object, str | None] = {}

    async def __call__(self, control: tuple[str, int] | str) -> str:
        text = self.answers.get(control)
        if text is None:
            raise ChronyError("506 Cannot talk to daemon")
        return text


def _link(vlan: str, n: int, index: int) -> Link:
    return Link(
        vlan,
        f"br{n}",
        index,
        True,
        (ipaddress.ip_network(f"10.{n}.0.0/24"), ipaddress.ip_network(f"fd00:{n}::/64")),
        (f"10.{n}.0.1", f"fd00:{n}::1", "fe80::1"),
        True,
        True,
    )


def _gateway() -> tuple[Gateway, ChronyService, Canned, list[tuple[bytes, int, int, object]]]:
    c = _config(
        {
            "servers": [
                {"name": "router", "control": "127.0.0.1:323"},
                {
                    "name": "router2",
                    "control": "10.10.0.254",
                    "addresses": {"trusted": "10.10.0.254"},
                    "nts": True,
                },
            ]
        }
    )
    gw = Gateway(c)
    gw.links.by_vlan = {"trusted": _link("trusted", 10, 7), "iot": _link("iot", 20, 8)}
    gw.links.by_index = {link.ifindex: link for link in gw.links.by_vlan.values()}
    gw.resolver.zones = gw._zones()
    svc = gw.chrony
    assert isinstance(svc, ChronyService)
    canned = Canned()
    svc._query = canned
    sent: list[tuple[bytes, int, int, object]] = []

    def send(data: bytes, ifindex: int, family: int, dest: object) -> bool:
        sent.append((data, ifindex, family, dest))
        return True

    svc.shell.send = send
    return gw, svc, canned, sent


def _answer(gw: Gateway, view: str, qname: str, qtype: int) -> list[str]:
    views = gw.views(gw.engine)
    ans = gw.resolver.resolve(views[view], N(qname), qtype, 0.0)
    return sorted(r.to_text() for rrset in ans.answer for r in rrset)


def _goodbyes(sent: list[tuple[bytes, int, int, object]]) -> set[tuple[str, int]]:
    out = set()
    for data, *_ in sent:
        p = wire.parse(data)
        out |= {(r.name.to_text(), r.rdtype) for r in p.answers if p.is_response and r.ttl == 0}
    return out


def test_service_publishes_withdraws_and_restores() -> None:
    async def main() -> None:
        gw, svc, canned, sent = _gateway()
        loop = asyncio.get_running_loop()
        svc._loop = loop
        svc.shell.start(loop)
        canned.answers[("127.0.0.1", 323)] = capture("synced")
        canned.answers[("10.10.0.254", 323)] = capture("local_reference")
        await svc.poll_once()
        assert svc.advertised_on("router") == ["iot", "trusted"]
        assert svc.advertised_on("router2") == ["trusted"]
        # DNS: the service, the alias, the reverse PTR, in each VLAN's own domain
        assert _answer(gw, "trusted", "_ntp._udp.trusted.home.arpa.", PTR) == [
            "router._ntp._udp.trusted.home.arpa.",
            "router2._ntp._udp.trusted.home.arpa.",
        ]
        assert _answer(gw, "trusted", "router._ntp._udp.trusted.home.arpa.", SRV) == [
            "0 0 123 router.trusted.home.arpa."
        ]
        assert _answer(gw, "trusted", "router2._ntp._udp.trusted.home.arpa.", SRV) == [
            "1 0 123 router2.trusted.home.arpa."
        ]
        assert _answer(gw, "trusted", "router2._ntske._tcp.trusted.home.arpa.", SRV) == [
            "1 0 4460 router2.trusted.home.arpa."
        ]
        txt = _answer(gw, "trusted", "router._ntp._udp.trusted.home.arpa.", TXT)
        assert txt == ['"txtvers=1" "stratum=9" "leap=normal"']
        assert _answer(gw, "trusted", "ntp.trusted.home.arpa.", A) == ["10.10.0.1", "10.10.0.254"]
        assert _answer(gw, "trusted", "ntp.trusted.home.arpa.", AAAA) == ["fd00:10::1"]
        assert _answer(gw, "iot", "ntp.iot.home.arpa.", A) == ["10.20.0.1"]
        assert _answer(gw, "iot", "router.iot.home.arpa.", A) == ["10.20.0.1"]
        assert _answer(gw, "trusted", "1.0.10.10.in-addr.arpa.", PTR) == ["ntp.trusted.home.arpa."]
        assert _answer(gw, "trusted", "_services._dns-sd._udp.trusted.home.arpa.", PTR) == [
            "_ntp._udp.trusted.home.arpa.",
            "_ntske._tcp.trusted.home.arpa.",
        ]
        assert _answer(gw, "iot", "router2._ntp._udp.iot.home.arpa.", SRV) == []
        # mDNS: probing, then announcements on both VLANs and both families (the shell's
        # timer runs on this loop)
        deadline = loop.time() + 5
        while svc.responder.state("trusted", "ntp:router") != "announced":
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        assert {ifindex for _, ifindex, _, _ in sent} == {7, 8}
        assert {fam for _, _, fam, _ in sent} == {socket.AF_INET, socket.AF_INET6}
        assert svc.responder.sent["probe"] >= 9 and svc.responder.sent["announce"] >= 6
        sent.clear()

        # the upstream is lost: goodbyes on both VLANs, DNS answers gone, router2 stays
        canned.answers[("127.0.0.1", 323)] = capture("upstream_lost")
        await svc.poll_once()
        assert svc.advertised_on("router") == []
        bye = _goodbyes(sent)
        assert ("router._ntp._udp.local.", SRV) in bye and ("router.local.", A) in bye
        assert ("_services._dns-sd._udp.local.", PTR) in bye  # iot had only router
        assert _answer(gw, "trusted", "_ntp._udp.trusted.home.arpa.", PTR) == [
            "router2._ntp._udp.trusted.home.arpa."
        ]
        assert _answer(gw, "trusted", "ntp.trusted.home.arpa.", A) == ["10.10.0.254"]
        assert _answer(gw, "iot", "ntp.iot.home.arpa.", A) == []
        assert _answer(gw, "trusted", "1.0.10.10.in-addr.arpa.", PTR) == []
        assert _answer(gw, "trusted", "_services._dns-sd._udp.trusted.home.arpa.", PTR) == [
            "_ntp._udp.trusted.home.arpa.",
            "_ntske._tcp.trusted.home.arpa.",
        ]

        # chronyd stops answering altogether: still withdrawn
        canned.answers[("127.0.0.1", 323)] = None
        await svc.poll_once()
        assert svc.states["router"].health.reason == "no_answer"
        # healthy again: back after two good polls
        canned.answers[("127.0.0.1", 323)] = capture("synced")
        await svc.poll_once()
        assert svc.advertised_on("router") == []
        await svc.poll_once()
        assert svc.advertised_on("router") == ["iot", "trusted"]
        assert _answer(gw, "iot", "ntp.iot.home.arpa.", A) == ["10.20.0.1"]

        # metrics
        registry = gw.registry
        samples = {
            (x.name, tuple(sorted(x.labels.items()))): x.value
            for fam in text_string_to_metric_families(generate_latest(registry).decode())
            for x in fam.samples
        }

        def metric(name: str, **labels: str) -> float:
            return samples[(f"mdns_gateway_chrony_{name}", tuple(sorted(labels.items())))]

        assert metric("advertised", server="router") == 1.0
        assert metric("advertised", server="router2") == 1.0
        assert metric("healthy", server="router") == 1.0
        assert metric("up", server="router") == 1.0
        assert metric("stratum", server="router") == 9.0
        assert metric("stratum", server="router2") == 8.0
        assert metric("synchronised", server="router") == 1.0
        assert metric("offset_seconds", server="router") == pytest.approx(1.937e-6)
        assert metric("frequency_ratio", server="router") == pytest.approx(0.026e-6)
        assert metric("root_delay_seconds", server="router") == pytest.approx(8.457e-6)
        assert metric("root_dispersion_seconds", server="router") == pytest.approx(8.02e-7)
        assert metric("source_reachability_ratio", server="router", source="10.99.0.2") == 1.0
        assert metric(
            "source_offset_seconds", server="router", source="10.99.0.2"
        ) == pytest.approx(4.79e-7)
        assert metric("source_selected", server="router", source="10.99.0.2") == 1.0
        assert metric("withdrawals_total") == 1.0
        assert metric("polls_total", server="router", outcome="failed") == 1.0
        assert metric("mdns_packets_sent_total", kind="goodbye") >= 2

        # shutdown: goodbyes for everything, store emptied
        sent.clear()
        await svc.stop()
        bye = _goodbyes(sent)
        assert ("router2._ntp._udp.local.", SRV) in bye
        assert _answer(gw, "trusted", "_ntp._udp.trusted.home.arpa.", PTR) == []

    asyncio.run(main())


def test_service_follows_a_rename_on_conflict() -> None:
    async def main() -> None:
        gw, svc, canned, _ = _gateway()
        loop = asyncio.get_running_loop()
        svc._loop = loop
        svc.shell.start(loop)
        canned.answers[("127.0.0.1", 323)] = capture("synced")
        await svc.poll_once()
        # another host on trusted claims router.local while we probe
        import dns.rdtypes.IN.A

        other = wire.Record(
            N("router.local."), A, 120, dns.rdtypes.IN.A.A(1, A, "10.10.0.77"), 1, True
        )
        pkt = wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], [other])
        svc.shell.on_packet(
            "trusted", pkt, wire.encode(pkt), "10.10.0.77", 5353, socket.AF_INET, svc.shell.now()
        )
        assert svc.responder.labels("trusted", "ntp:router") == ("router-2", ["router"])
        assert _answer(gw, "trusted", "router._ntp._udp.trusted.home.arpa.", SRV) == [
            "0 0 123 router-2.trusted.home.arpa."
        ]
        assert _answer(gw, "trusted", "router-2.trusted.home.arpa.", A) == ["10.10.0.1"]
        assert svc.responder.labels("iot", "ntp:router") == ("router", ["router"])
        await svc.stop()

    asyncio.run(main())


def _state(pid: int) -> str:
    """The process's state letter (Z: exited, not yet reaped), or '' when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def test_a_cancelled_poll_kills_its_chronyc(tmp_path: Path) -> None:
    """A cancelled query (shutdown, a stopped service) left chronyc running."""
    pidfile = tmp_path / "pid"
    script = tmp_path / "chronyc"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    script.chmod(0o755)

    async def main() -> int:
        task = asyncio.create_task(query_chronyd(("127.0.0.1", 323), str(script), timeout=30))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert loop.time() < deadline, "the stand-in did not start"
            await asyncio.sleep(0.01)
        pid = int(pidfile.read_text())
        assert _state(pid) not in ("", "Z")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while _state(pid) not in ("", "Z"):
            assert loop.time() < deadline, f"chronyc {pid} still running: {_state(pid)}"
            await asyncio.sleep(0.01)
        return pid

    asyncio.run(main())
