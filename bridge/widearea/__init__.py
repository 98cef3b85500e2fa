"""Wide-area publishing (issue 16): services of ``wideArea: true`` policies into a DNS zone.

``desired`` computes the records the zone should hold (pure), ``update`` turns differences
into signed RFC 2136 UPDATE messages and reads a zone transfer (pure), ``publisher`` is the
asyncio shell (batching, sending, retries, reconciliation), ``metrics`` its collector and
``tsigkey`` reads the key file. Nothing is imported here: bridge/config.py imports
``tsigkey`` (when the config has ``wide_area:``) while the other modules import the config.
"""
