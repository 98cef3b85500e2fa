"""DHCP lease host names: ``<hostname>.<VLAN domain>`` for each active lease (issue 19).

:mod:`.leases` parses dnsmasq's and Kea's lease files (pure), :mod:`.hostnames` turns leases
into host names per VLAN (which names are labels, who holds a name; pure), :mod:`.watch` polls
the files and hands the names to the publisher (``bridge/announce/service.py``), which pins
them in the store (and announces them by mDNS with ``dhcp.publish_mdns``).
"""
