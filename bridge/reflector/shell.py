"""The thin shell around :class:`~.decide.Reflector`: ingest's packets in, the transport's
send out, link and policy changes in. Its collaborators are passed in by ``bridge/app.py``,
which also makes its subscriptions (ingest listener, policy hook, metrics, link refresh)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .. import const
from ..logutil import RateLimitedLog
from ..mdns import wire
from ..mdns.links import Links
from ..policy import PolicyEngine
from .decide import ERROR, Reflector

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)


def interface_mtu(name: str) -> int:
    """An interface's MTU as the kernel has it (``REFLECT_DEFAULT_MTU`` if unreadable)."""
    try:
        return int(Path(f"/sys/class/net/{name}/mtu").read_text().strip())
    except (OSError, ValueError):
        return const.REFLECT_DEFAULT_MTU


# (payload, ifindex, family, unicast destination or None for the group) -> sent?
Sender = Callable[[bytes, int, int, tuple[str, int] | None], bool]


class ReflectorGlue:
    """Ingest listener in, transport send out; follows link and policy changes."""

    def __init__(
        self,
        reflector: Reflector,
        links: Links,
        send: Sender,
        mtu: Callable[[str], int] = interface_mtu,
    ) -> None:
        self.reflector = reflector
        self.links = links
        self.send = send
        self.mtu = mtu
        self.errors = 0

    def on_packet(
        self,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        src: str,
        port: int,
        family: int,
        now: float,
    ) -> None:
        """An ``Ingest.listeners`` entry; ``now`` is ingest's, on the event loop's clock."""
        try:
            reflector = self.reflector
            outputs = reflector.handle(vlan, packet, raw, src, port, family, now)
            if reflector.oneshot.count:  # one-shot queriers wait for answers
                outputs += reflector.relay(vlan, packet, now)
        except Exception:  # a packet must never take the reader down
            self.errors += 1
            self.reflector.packets[(vlan, "", ERROR)] += 1
            _limited.warning(
                ("reflector-error", vlan), "reflector: packet from %s on VLAN %s failed", src, vlan
            )
            log.debug("reflector failure", exc_info=True)
            return
        for out in outputs:
            if not self.send(out.data, out.ifindex, out.family, out.dest):
                self.reflector.sent_failed(out, vlan)

    def refresh_links(self) -> None:
        """Pass the VLAN links as they are now, with their MTUs (after every interface scan)."""
        by_vlan = self.links.by_vlan
        self.reflector.set_links(
            by_vlan, {v: self.mtu(link.interface) for v, link in by_vlan.items()}
        )

    def set_policy(self, engine: PolicyEngine) -> None:
        """Fold a new policy set into the reflector's plan (the policy hook)."""
        self.reflector.set_policy(engine)
