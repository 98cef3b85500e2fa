"""mdns-gateway: an mDNS / DNS-SD gateway for routers with VLANs."""

__version__ = "0.1.0"
