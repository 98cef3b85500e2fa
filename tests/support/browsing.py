"""The browser with a recording sender, shared by the browsing tests."""

from __future__ import annotations

import socket

from bridge.mdns import wire
from bridge.mdns.browser import Browser
from bridge.store import Store
from tests.support.links import setup


def make() -> tuple[Store, Browser, list[tuple[wire.Packet, int, int]]]:
    store, _, links = setup()
    sent: list[tuple[wire.Packet, int, int]] = []

    def send(data: bytes, ifindex: int, family: int) -> bool:
        sent.append((wire.parse(data), ifindex, family))
        return True

    browser = Browser(store, links, send)
    store.subscribe(browser.on_record)  # as bridge/app.py wires it
    return store, browser, sent


def questions(
    sent: list[tuple[wire.Packet, int, int]], family: int = socket.AF_INET
) -> set[tuple[str, int, bool]]:
    return {
        (q.name.to_text(), q.rdtype, q.unicast)
        for p, _, fam in sent
        if fam == family
        for q in p.questions
    }
