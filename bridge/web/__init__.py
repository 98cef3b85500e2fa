"""The HTTP surface: metrics, probes, the JSON API and the web page (aiohttp).

``server.py`` holds the aiohttp application and its connection guards, ``views.py`` the pure
functions that turn the diagnostics window into the JSON the API and the page show, ``client.py``
the CLI's side (``browse``, ``explain --live``), ``static/`` the page itself.
"""

from .server import HttpSurface

__all__ = ["HttpSurface"]
