"""Load tests: the gateway beside NSD (unicast DNS) and avahi-daemon (mDNS), in the VLAN lab.

``python -m loadtest`` (``make bench``) runs every phase and writes
``loadtest/results/<timestamp>.json`` and ``.md``; see README.md, "Performance".
"""
