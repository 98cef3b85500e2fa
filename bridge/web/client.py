"""The CLI's side of the HTTP surface: ask the running gateway, print lines for people.

``browse`` prints services as avahi-browse does (one ``+`` line each; ``=`` and the resolved
fields with ``--resolve``); ``explain --live`` adds to the policy's answer what the gateway
holds. Fetching is plain urllib (the CLI needs no event loop); formatting is pure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from .. import const
from ..config import Address
from ..errors import GatewayError

Json = dict[str, Any]


class GatewayUnreachable(GatewayError):
    """The running gateway could not be asked (not running, wrong --url, or no token)."""


def default_url(listen: Address | None) -> str | None:
    """The URL for the config's ``http.listen``: a wildcard address is asked on loopback."""
    if listen is None:
        return None
    host, port = listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetch(url: str, path: str, query: Mapping[str, str], token: str | None) -> Json:
    """GET ``path`` with ``query``; the JSON body (also of a 400, which names the problem)."""
    target = url.rstrip("/") + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(target, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=const.CLI_HTTP_TIMEOUT) as resp:
            body: Json = json.load(resp)
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 400:
            return dict(json.load(exc))
        detail = exc.read(500).decode("utf-8", "replace").strip()
        raise GatewayUnreachable(f"{target.split('?')[0]}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayUnreachable(
            f"{url}: cannot ask the gateway ({reason}); is it running, and is --url its "
            "http.listen?"
        ) from None


def browse_lines(services: Json, resolve: bool) -> Iterator[str]:
    """avahi-browse's layout: ``+ VLAN type instance``; resolved: ``=`` and the fields."""
    for vlan, entry in services.items():
        for s in entry["services"]:
            yield f"{'=' if resolve else '+'} {vlan:<10} {s['type']:<22} {s['instance']}"
            if resolve:
                yield f"   hostname = [{s['host'] or ''}]"
                yield f"   address = [{', '.join(s['addresses'])}]"
                yield f"   port = [{'' if s['port'] is None else s['port']}]"
                yield "   txt = [" + " ".join(json.dumps(t) for t in s["txt"]) + "]"
        if entry["total"] > len(entry["services"]):
            yield f"# {vlan}: {len(entry['services'])} of {entry['total']} shown"


def _ttl(value: float | None) -> str:
    return "pinned" if value is None else f"{value:.0f} s"


def explain_lines(body: Json) -> Iterator[str]:
    """Per VLAN: what is held there, whether the view sees it, what decided, and why."""
    what = body["service"]
    found = "exists" if body["exists"] else "is announced on no VLAN right now"
    yield f"{what}: {found} (view {body['view']})"
    for w in body["vlans"]:
        if w["held"]:
            held = "; ".join(
                f"{h['instance']} (last announced {h['last_seen_ago']:.0f} s ago, "
                f"TTL left {_ttl(h['ttl_left'])})"
                for h in w["held"]
            )
        else:
            held = "nothing"
        yield f"VLAN {w['vlan']}: holds {held}"
        yield (
            f"  view {body['view']} sees it: {'yes' if w['visible'] else 'no'} "
            f"(decided by {w['decided_by']}); reflector passes it: "
            f"{'yes' if w['reflected'] else 'no'}"
            + ("" if body["reflector"] else " (the reflector is off)")
        )
        for reason in w["reasons"]:
            yield f"    {reason}"
