"""A stand-in Kubernetes API server for ServicePolicy and ServiceAnnouncement objects (aiohttp),
for the tests.

No real API server can run here (no kube-apiserver, kind, k3s or envtest binaries among the
reachable packages), so this reproduces the behaviours the gateway relies on, as documented:

* **Lists** (https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks):
  ``GET .../servicepolicies`` (namespaced, or across namespaces without ``/namespaces/<ns>``)
  returns a ``ServicePolicyList`` with ``metadata.resourceVersion``; ``limit`` cuts it into
  pages chained by ``metadata.continue``, every page of one list carrying the same version; a
  continue token older than the compacted history answers 410 Gone (reason ``Expired``).
* **Resource versions** (API concepts, "Resource versions"): one counter across all objects,
  bumped by every write; opaque strings to clients. ``metadata.generation`` starts at 1 and
  goes up only when ``spec`` changes (API conventions, "Metadata"; a status write leaves it).
* **Watches** (API concepts, "Efficient detection of changes"): ``?watch=1&resourceVersion=N``
  streams every change after N, then live ones, as newline-delimited JSON ``{"type", "object"}``
  events (ADDED, MODIFIED, DELETED) over a chunked response; ``allowWatchBookmarks=true`` adds
  BOOKMARK events carrying only ``metadata.resourceVersion`` ("Watch bookmarks");
  ``timeoutSeconds`` ends the stream cleanly. A watch from a version older than the history
  kept (:meth:`KubeApi.compact`) gets an ERROR event with a ``Status`` of code 410, reason
  ``Expired`` ("410 Gone responses"), or an HTTP 410 with ``gone_as_http``.
* **Status subresource** (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource):
  ``PATCH .../servicepolicies/<name>/status`` with ``application/merge-patch+json`` (RFC 7386:
  mappings merge, ``null`` deletes, lists are replaced whole) changes only ``status``; a
  ``metadata.resourceVersion`` in the patch is a precondition, 409 Conflict when stale
  (API conventions, "Concurrency Control and Consistency"); 415 for another patch type.
* **Events**: ``POST /api/v1/namespaces/<ns>/events`` stores a core/v1 Event (201), its
  ``involvedObject`` and ``metadata.namespace`` checked against the path.
* **Several resources** (``servicepolicies``, ``serviceannouncements``): each its own objects,
  lists and watches; one resource version counter across them all (etcd's revision); only
  ``servicepolicies`` has the status subresource (as the CRDs in ``policies/`` declare).
* **Errors** are ``Status`` objects (API conventions, "Response Status Kind"): 401 without the
  bearer token, 404 for an absent object.

:meth:`KubeApi.drop_watches` cuts every watch connection mid-stream (a restarted API server or
a dropped TCP connection); :meth:`KubeApi.stop` takes the server away and :meth:`KubeApi.start`
brings it back on the same port (``make_socket`` makes the listening socket: one in a network
namespace, for the lab). Every request is recorded (:attr:`KubeApi.requests`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

GROUP = "mdnsgateway.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServicePolicy"
POLICIES = "servicepolicies"
ANNOUNCEMENTS = "serviceannouncements"
KINDS = {POLICIES: KIND, ANNOUNCEMENTS: "ServiceAnnouncement"}  # plural -> kind
_T = TypeVar("_T")


def status(code: int, reason: str, message: str) -> web.Response:
    """A metav1.Status error response."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class KubeApi:
    """The API server: objects, history, watches. Runs on one event loop."""

    def __init__(
        self,
        *,
        token: str = "lab-token",
        bookmark_interval: float = 0.5,
        make_socket: Callable[[], socket.socket] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: serve HTTPS with it (the API server's certificate)."""
        self._ssl = ssl_context
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.gone_as_http = False
        self.stores: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in KINDS}
        self.objects = self.stores[POLICIES]  # the ServicePolicy objects
        self.rv = 1000
        self.oldest = self.rv  # history holds every change after this version
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, plural, type, obj
        self.posted_events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._watchers: set[asyncio.Queue[tuple[str, str, dict[str, Any]] | None]] = set()
        self._streams: dict[int, web.Request] = {}  # the watches being served, by id()
        self._runner: web.AppRunner | None = None
        self._make_socket = make_socket or (
            lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        )
        self.port = 0

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> int:
        """Serve on 127.0.0.1 (a new port the first time, the same one after :meth:`stop`),
        on a socket from ``make_socket`` (e.g. one made in a network namespace)."""
        sock = self._make_socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self._ssl).start()
        return self.port

    async def stop(self) -> None:
        """Take the server away: connections cut, the port refuses until :meth:`start`."""
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()  # closes the listening socket
            self._runner = None

    def drop_watches(self) -> None:
        """Cut every watch connection mid-stream."""
        for request in list(self._streams.values()):
            if request.transport is not None:
                request.transport.abort()
        for queue in list(self._watchers):
            queue.put_nowait(None)

    # -- objects -----------------------------------------------------------------------------

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        self.history.append((self.rv, plural, kind, snapshot))
        for queue in self._watchers:
            queue.put_nowait((plural, kind, snapshot))

    def put(self, obj: Mapping[str, Any], plural: str = POLICIES) -> dict[str, Any]:
        """Create or update (kubectl apply): metadata.labels/annotations and spec from ``obj``;
        generation goes up when spec changes. Returns the stored object."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        objects = self.stores[plural]
        old = objects.get(key)
        stored: dict[str, Any] = copy.deepcopy(dict(obj))
        stored.setdefault("apiVersion", API_VERSION)
        stored.setdefault("kind", KINDS[plural])
        stored["metadata"] = {**copy.deepcopy(dict(meta)), "namespace": key[0]}
        if old is None:
            stored["metadata"].update(
                uid=str(uuid.uuid4()), generation=1, creationTimestamp="2026-12-01T00:00:00Z"
            )
            stored.pop("status", None)
            kind = "ADDED"
        else:
            generation = old["metadata"]["generation"]
            if old.get("spec") != stored.get("spec"):
                generation += 1
            stored["metadata"].update(
                uid=old["metadata"]["uid"],
                generation=generation,
                creationTimestamp=old["metadata"]["creationTimestamp"],
            )
            if "status" in old:
                stored["status"] = old["status"]
            else:
                stored.pop("status", None)
            kind = "MODIFIED"
        stored["metadata"]["resourceVersion"] = self._bump()
        objects[key] = stored
        self._emit(plural, kind, stored)
        return stored

    def delete(self, namespace: str, name: str, plural: str = POLICIES) -> None:
        obj = self.stores[plural].pop((namespace, name))
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._bump()
        self._emit(plural, "DELETED", obj)

    def compact(self) -> None:
        """Forget the history (etcd compaction): a watch or continue from before now gets 410."""
        self.history.clear()
        self.oldest = self.rv

    def list_requests(self, plural: str = POLICIES) -> int:
        """Lists (every page counts) of the collection; a GET of one object is no list."""
        return sum(
            1
            for m, path, q in self.requests
            if m == "GET" and path.endswith(f"/{plural}") and "watch" not in q
        )

    def watch_requests(self, plural: str = POLICIES) -> list[dict[str, str]]:
        return [
            q
            for m, path, q in self.requests
            if m == "GET" and "watch" in q and path.endswith(f"/{plural}")
        ]

    def gateway_entry(self, namespace: str, name: str, node: str) -> dict[str, Any] | None:
        obj = self.objects.get((namespace, name))
        for entry in (obj or {}).get("status", {}).get("gateways", []):
            if entry.get("nodeName") == node:
                return dict(entry)
        return None

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "events":
            if request.method != "POST":
                return status(405, "MethodNotAllowed", "only POST here")
            return await self._post_event(request, parts[3])
        if parts[:3] != ["apis", GROUP, VERSION]:
            return status(404, "NotFound", f"the server could not find {request.path}")
        rest = parts[3:]
        namespace: str | None = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        if plural not in KINDS:
            return status(404, "NotFound", f"the server could not find {request.path}")
        if len(rest) == 1 and request.method == "GET":
            if request.query.get("watch") in ("1", "true"):
                return await self._watch(request, plural, namespace)
            return self._list(request, plural, namespace)
        if namespace is None or len(rest) not in (2, 3):
            return status(404, "NotFound", f"the server could not find {request.path}")
        key = (namespace, rest[1])
        if len(rest) == 2 and request.method == "GET":
            obj = self.stores[plural].get(key)
            if obj is None:
                return status(404, "NotFound", f'{plural} "{key[1]}" not found')
            return web.json_response(obj)
        if rest[2:] == ["status"] and request.method == "PATCH" and plural == POLICIES:
            return await self._patch_status(request, key)
        return status(405, "MethodNotAllowed", f"{request.method} is not served here")

    def _selected(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        objects = self.stores[plural]
        return [o for k, o in sorted(objects.items()) if namespace in (None, k[0])]

    def _list(self, request: web.Request, plural: str, namespace: str | None) -> web.Response:
        items = self._selected(plural, namespace)
        list_rv, start = self.rv, 0
        token = request.query.get("continue")
        if token:
            state = json.loads(base64.urlsafe_b64decode(token))
            list_rv, start = state["rv"], state["start"]
            if list_rv < self.oldest:
                return status(410, "Expired", "The provided continue parameter is too old")
            # the stand-in pages over the current objects (a real server reads its snapshot)
        limit = int(request.query.get("limit", "0")) or len(items) or 1
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if start + limit < len(items):
            nxt = {"rv": list_rv, "start": start + limit}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(nxt).encode()).decode()
        return web.json_response(
            {
                "apiVersion": API_VERSION,
                "kind": f"{KINDS[plural]}List",
                "metadata": meta,
                "items": page,
            }
        )

    async def _watch(
        self, request: web.Request, plural: str, namespace: str | None
    ) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self.rv)
        gone = since < self.oldest
        if gone and self.gone_as_http:
            return status(410, "Expired", f"too old resource version: {since} ({self.oldest})")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if gone:
            error = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {since} ({self.oldest})",
                "reason": "Expired",
                "code": 410,
            }
            await resp.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
            return resp
        queue: asyncio.Queue[tuple[str, str, dict[str, Any]] | None] = asyncio.Queue()
        for rv, what, kind, obj in self.history:  # the backlog, then live events (no await)
            if rv > since:
                queue.put_nowait((what, kind, obj))
        self._watchers.add(queue)
        self._streams[id(request)] = request
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        loop = asyncio.get_running_loop()
        end = loop.time() + float(request.query.get("timeoutSeconds", "1800"))
        try:
            while (left := end - loop.time()) > 0:
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < end:
                        mark = {"kind": KINDS[plural], "apiVersion": API_VERSION,
                                "metadata": {"resourceVersion": str(self.rv)}}  # fmt: skip
                        await resp.write(
                            json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                        )
                    continue
                if item is None:  # dropped
                    break
                what, kind, obj = item
                if what != plural:
                    continue
                if namespace is not None and obj["metadata"]["namespace"] != namespace:
                    continue
                await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, RuntimeError):
            pass  # the connection went (dropped on purpose, or the client left)
        finally:
            self._watchers.discard(queue)
            self._streams.pop(id(request), None)
        return resp

    async def _patch_status(self, request: web.Request, key: tuple[str, str]) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return status(415, "UnsupportedMediaType", f"{request.content_type} not supported")
        obj = self.objects.get(key)
        if obj is None:
            return status(404, "NotFound", f'servicepolicies "{key[1]}" not found')
        patch = await request.json()
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on servicepolicies.{GROUP} "{key[1]}": the '
                "object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if "status" in patch:  # the status subresource changes nothing else
            new_status = merge_patch(obj.get("status"), patch["status"])
            obj["status"] = new_status
        obj["metadata"]["resourceVersion"] = self._bump()
        self._emit(POLICIES, "MODIFIED", obj)
        return web.json_response(obj)

    async def _post_event(self, request: web.Request, namespace: str) -> web.Response:
        event = await request.json()
        involved = event.get("involvedObject") or {}
        if (event.get("metadata") or {}).get("namespace") != namespace or involved.get(
            "namespace"
        ) != namespace:
            return status(422, "Invalid", "involvedObject.namespace does not match")
        if not event.get("reason") or not event.get("message") or not involved.get("uid"):
            return status(422, "Invalid", "reason, message and involvedObject.uid are required")
        self.posted_events.append(event)
        return web.json_response(event, status=201)


class KubeApiThread:
    """A :class:`KubeApi` on its own event loop in a thread, driven from synchronous tests."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> KubeApiThread:
        self._thread.start()
        self.run(self.api.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the server's loop (the objects are the loop's)."""

        async def wrapped() -> _T:
            return fn(*args)

        future: Future[_T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(10)


def write_kubeconfig(path: Path, server: str, token: str = "lab-token") -> Path:
    """A kubeconfig with one context: ``server`` and a bearer token."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "lab",
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "gw"}}],
                "clusters": [{"name": "lab", "cluster": {"server": server}}],
                "users": [{"name": "gw", "user": {"token": token}}],
            }
        )
    )
    return path
