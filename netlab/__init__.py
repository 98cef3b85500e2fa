"""The namespace VLAN lab and its peers, shared by tests/integration and loadtest/.

``lab`` builds the router and host namespaces and runs real daemons in them; ``mdns_probe`` sends
and sniffs raw mDNS there; ``zc_publish.py`` and ``zc_browse.py`` are scripts the lab runs as
processes inside host namespaces (by path, so they need nothing but python-zeroconf);
``coredns_forward`` is a client that treats the gateway as CoreDNS's forward plugin does;
``vitals`` watches a gateway under attack (``dns_prober.py`` in another host: the longest time
without an answer; its memory and CPU from /proc).
Not part of the gateway's wheel: a checkout's test and benchmark harness.
"""
