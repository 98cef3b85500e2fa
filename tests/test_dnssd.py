"""The DNS-SD naming rules (bridge.dnssd): one answer per name, whatever its case."""

from __future__ import annotations

import ipaddress

import dns.name
import pytest

from bridge import dnssd
from bridge.mdns import wire

N = dns.name.from_text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("_http._tcp.local.", ("_http._tcp", None)),
        ("_HTTP._TCP.LOCAL.", ("_http._tcp", None)),
        ("Living Room._AirPlay._tcp.local.", ("_airplay._tcp", "Living Room")),
        ("_printer._SUB._ipp._udp.Local.", ("_ipp._udp", None)),
        ("a.b._http._tcp.local.", None),  # two labels before the type: no DNS-SD name
        ("_http._tcp.example.", None),  # not in local.
        ("_http._sctp.local.", None),
        ("http._tcp.local.", None),
        ("host.local.", None),
    ],
)
def test_service_parts(text: str, parts: tuple[str, str | None] | None) -> None:
    assert dnssd.service_parts(N(text)) == parts
    assert dnssd.is_browse_target(N(text)) == (parts is not None and parts[1] is None)


def test_instance_label_keeps_dots_and_utf8() -> None:
    name = dnssd.instance_name("Küche v1.2 (2)", "_http._tcp")
    assert name.labels[0] == "Küche v1.2 (2)".encode()
    assert dnssd.service_parts(name) == ("_http._tcp", "Küche v1.2 (2)")
    assert dnssd.host_name("tv") == N("tv.local.")
    assert dnssd.service_type_name("_ipp._tcp") == N("_ipp._tcp.local.")


@pytest.mark.parametrize(
    "text",
    [
        "_services._dns-sd._udp.local.",
        "_Services._DNS-SD._UDP.LOCAL.",
        "_SERVICES._dns-sd._udp.local.",
    ],
)
def test_enumeration_name_in_any_case(text: str) -> None:
    name = N(text)
    assert dnssd.is_services(name)
    assert name == dnssd.SERVICES
    assert dnssd.is_services(wire.intern(name.labels[:-1]))


@pytest.mark.parametrize(
    "text",
    [
        "_services._dns-sd._tcp.local.",
        "_services._dns-sd._udp.example.",
        "x._services._dns-sd._udp.local.",
    ],
)
def test_not_the_enumeration_name(text: str) -> None:
    assert not dnssd.is_services(N(text))


def test_browse_queries_in_any_case() -> None:
    assert dnssd.browse_query((b"b", b"_dns-sd", b"_udp")) == "all"
    assert dnssd.browse_query((b"DB", b"_DNS-sd", b"_udp")) == "default"
    assert dnssd.browse_query((b"lb", b"_dns-sd", b"_UDP")) == "default"
    assert dnssd.browse_query((b"r", b"_dns-sd", b"_udp")) is None
    assert dnssd.browse_query((b"lb", b"_dns-sd")) is None
    for meta in [(b"_dns-SD", b"_udp"), (b"_UDP",), (b"r", b"_dns-sd", b"_Udp")]:
        assert dnssd.is_dnssd_meta(meta)
    assert not dnssd.is_dnssd_meta((b"tv",))


@pytest.mark.parametrize(
    "text",
    [
        "169.254.0.1",
        "169.254.255.255",
        "169.253.1.1",
        "169.255.0.0",
        "10.0.0.1",
        "fe80::1",
        "febf:ffff::1",
        "fec0::1",
        "fe7f::1",
        "2001:db8::1",
        "::ffff:169.254.1.1",
    ],
)
def test_link_local_agrees_with_ipaddress(text: str) -> None:
    ip = ipaddress.ip_address(text)
    assert dnssd.is_link_local(ip.packed) == ip.is_link_local
    assert dnssd.is_link_local_text(text) == ip.is_link_local
    assert dnssd.address_octets(text) == ip.packed


@pytest.mark.parametrize(
    ("text", "stype"),
    [
        ("_IPP._tcp.local.", "_ipp._tcp"),
        ("_ipp._tcp.LOCAL", "_ipp._tcp"),
        ("_Printer._SUB._http._tcp.local.", "_http._tcp"),
        ("_airplay._tcp", "_airplay._tcp"),
    ],
)
def test_textual_service_types(text: str, stype: str) -> None:
    assert dnssd.service_type_text(text) == stype
    assert dnssd.strip_local(text).lower() == text.lower().removesuffix(".").removesuffix(".local")


def test_link_local_text_ignores_a_zone_index() -> None:
    assert dnssd.is_link_local_text("fe80::1%eth0")
    assert not dnssd.is_link_local(b"\xfe\x80")  # neither 4 nor 16 octets
