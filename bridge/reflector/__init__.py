"""Directional, policy-filtered mDNS reflection between VLANs, IPv4 and IPv6, that cannot storm.

One module per concept: ``plan`` (the policy folded into VLAN bitmasks), ``suppress``
(duplicate marks and token buckets), ``oneshot`` (one-shot queriers waiting for answers, and
the replies they get), ``decide`` (:class:`Reflector`, pure: one accepted
datagram and ``now`` in, one :class:`Output` per destination out, every outcome counted),
``metrics`` (its collector) and ``shell`` (:class:`ReflectorGlue`: ingest's packets in, the
transport's send out). The raw-packet rewrite is ``bridge/mdns/rewrite.py``; ``bridge/app.py``
builds all of it and makes its subscriptions.

What crosses (``reflect: true`` ServicePolicies, via ``ViewPolicy.reflect_visible``):

* a question from VLAN A goes to VLAN D only when A may see D's services of that type (or that
  instance); ``_services._dns-sd._udp`` questions go to every VLAN A may see anything of; host
  name questions go where the host is the SRV target of a service A may see; others go nowhere;
* a record from VLAN S goes to VLAN D only when D may see it: PTR/SRV/TXT/NSEC by the service
  they name, ``_services._dns-sd._udp`` PTRs by type, address records (and other host records)
  only with an SRV that targets the host, in the same packet or seen before;
  link-local A/AAAA (169.254/16, fe80::/10) never cross, nor does a service whose host has
  addresses and none other than link-local ones (a client elsewhere could never reach it);
* a record the ingest record guard refused (a goodbye or flush of another device's record, an
  address off the VLAN) is not reflected either: reflection never carries what the cache
  would not believe;
* records a destination may not see are removed from its copy; a query is sent only with a
  question left, a response only with an answer left;
* never back into the source VLAN, never a packet off the source's link, no probes (their
  authority section claims a name on their own link); QU bits are cleared so answers come back
  by multicast (TTL 255 is the transport's business);
* one-shot (legacy unicast) queries, from a port other than 5353 (``oneshot``, RFC 6762 §6.7,
  as avahi's reflector does): under the same policy, answered by unicast to the querier's
  address and port with its ID, from the store when it holds what the querier's VLAN may see,
  else the question is asked in the other VLANs and their answers relayed as they arrive
  (bounded: ``const.ONESHOT_PENDING_MAX`` waiting queriers, ``const.ONESHOT_WAIT`` each).

Storms and loops: each packet, question and record is sent into a VLAN at most once per
``const.REFLECT_DUP_WINDOW`` (also when it arrived there first); token buckets per VLAN and
direction; a response whose every record we just sent into its VLAN, or just saw on another
VLAN, is evidence of another reflector (counted and logged). One input gives at most one copy per
destination (split only to fit a smaller MTU); we never originate traffic.

Cost: the policy is folded into per-VLAN bitmasks when it changes and memoised per (VLAN, type,
instance); an unchanged packet is sent as received; a changed one is rebuilt from the received
bytes (records copied, names re-pointed), not re-encoded through dnspython.
"""

from .decide import (
    DUPLICATE,
    ERROR,
    FILTERED,
    ONESHOT_ANSWERED,
    ONESHOT_ASKED,
    ONESHOT_FULL,
    ONESHOT_RELAYED,
    PROBE,
    RATE_LIMITED,
    REFLECTED,
    SEND_ERROR,
    SPOOFED,
    TOO_BIG,
    Output,
    Reflector,
)
from .metrics import ReflectorCollector
from .shell import ReflectorGlue, Sender, interface_mtu
from .suppress import TokenBucket

__all__ = [
    "DUPLICATE",
    "ERROR",
    "FILTERED",
    "ONESHOT_ANSWERED",
    "ONESHOT_ASKED",
    "ONESHOT_FULL",
    "ONESHOT_RELAYED",
    "PROBE",
    "RATE_LIMITED",
    "REFLECTED",
    "SEND_ERROR",
    "SPOOFED",
    "TOO_BIG",
    "Output",
    "Reflector",
    "ReflectorCollector",
    "ReflectorGlue",
    "Sender",
    "TokenBucket",
    "interface_mtu",
]
