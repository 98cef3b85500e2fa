"""ServicePolicy and ServiceAnnouncement objects from the Kubernetes API: the asyncio shell of
:mod:`.kubewatch`, one list/watch loop (and one :class:`.kubewatch.WatchState`) per resource.

It owns the list/watch loop (client libraries differ on it): list every page, then watch from
the list's ``resourceVersion`` with ``allowWatchBookmarks``; when the connection drops or the
server ends the watch, watch again from the last version seen (no relist); on 410 Gone list
again; when the API cannot be reached, retry after an exponential backoff with jitter. Until
the first list has arrived, :meth:`KubePolicySource.not_ready` gives the reason and the gateway
keeps the default policy; afterwards a failing API leaves the policies in force.

Every change is validated per object (:func:`.kubeobjects.validate_object`, the file loader's
own checks): an invalid object is rejected alone. A change reaches ``on_change`` with the new
engine, built in a worker thread, within a fraction of a second of its event; changes that come
while an engine is built share the next build.

Valid announcements reach ``on_announcements`` (the publisher) at once, no engine to build.

Each policy's status gets this gateway's entry (``status.gateways[]``, keyed by node name, a
condition ``Accepted``) through the ``/status`` subresource (the announcement's CRD has none),
and a rejected object of either kind a Warning Event. Talks HTTP with aiohttp (already a
dependency); authentication is :mod:`.kubeauth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from .. import const
from ..errors import GatewayError
from ..memory import import_aiohttp
from .announcement import KIND as ANNOUNCEMENT_KIND
from .announcement import ServiceAnnouncement
from .engine import PolicyEngine
from .kubeauth import Endpoint, KubeConfigError, resolve
from .kubeobjects import ObjectKey, object_key
from .kubewatch import (
    KubeProtocolError,
    Step,
    Tracked,
    WatchState,
    backoff,
    parse_event,
    parse_list,
)
from .model import API_VERSION

if TYPE_CHECKING:
    import aiohttp

__all__ = ["KubePolicySource"]

log = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"


def _import_aiohttp() -> None:
    """Bind this module's ``aiohttp``; ``_run`` calls it in a worker thread before the
    session, and nothing here touches aiohttp before the session exists.

    aiohttp and its client are 106 modules, 0.2-0.3 s of CPU here: imported at module level
    they were imported by ``Gateway.__init__``, before DNS could answer, whenever Kubernetes was
    configured (docs/performance.md, "Start-up"). tests/test_app.py checks that building the
    Gateway does not import it."""
    import_aiohttp()  # without the CA bundle of its default contexts (unused here)
    globals()["aiohttp"] = importlib.import_module("aiohttp")


class _ApiError(GatewayError):
    """The API server answered with an error status; ``reason`` is counted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Gone(GatewayError):
    """410 Gone: the version to watch from is too old; list again."""


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: a key of _status_due
class _Resource:
    """One resource followed: its URL plural, its state, what to do when its set changed."""

    plural: str
    state: WatchState
    changed: Callable[[], None]


def utc_now() -> str:
    """RFC 3339 in UTC, seconds: Kubernetes' metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubePolicySource:
    """Lists and watches ServicePolicy objects; hands each new engine to ``on_change``. With
    ``on_announcements``, ServiceAnnouncement objects too: the accepted ones go to it.

    ``on_change(engine, problems)`` runs on the event loop; ``problems`` is one line per problem
    of the rejected objects (``namespace/name: field: reason; fix: ...``), or None.
    """

    def __init__(
        self,
        namespace: str,
        node: str,
        kubeconfig: Path | None,
        vlans: Collection[str],
        on_change: Callable[[PolicyEngine, str | None], None],
        *,
        env: Mapping[str, str],
        rand: Callable[[], float] = random.random,
        now: Callable[[], str] = utc_now,
        on_announcements: Callable[[Sequence[ServiceAnnouncement]], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.vlans = frozenset(vlans)
        self.state = WatchState(self.vlans, node, namespace)
        self.announcement_state = WatchState(self.vlans, node, namespace, kind=ANNOUNCEMENT_KIND)
        self._resources = [_Resource("servicepolicies", self.state, self._policies_changed)]
        if on_announcements is not None:
            self._resources.append(
                _Resource("serviceannouncements", self.announcement_state, self._announced)
            )
        self._on_change = on_change
        self._on_announcements = on_announcements
        self._env = env
        self._rand = rand
        self._now = now
        self.endpoint: Endpoint | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty = asyncio.Event()  # the policy set changed: build an engine
        self._status_wake = asyncio.Event()
        # an ordered set of (resource, object), bounded by the objects
        self._status_due: dict[tuple[_Resource, ObjectKey], None] = {}
        self.last_error = "not started"
        # counters (KubeCollector exports them)
        self.lists = 0  # complete lists (every page)
        self.relists = 0  # lists forced by 410 Gone
        self.watches = 0  # watch requests answered 200
        self.events: Counter[str] = Counter()  # watch events by type
        self.errors: Counter[str] = Counter()  # failures by reason
        self.builds = 0  # engines built and handed on
        self.status_writes = 0  # status patches accepted
        self.status_conflicts = 0  # status patches refused with 409 Conflict
        self.events_created = 0  # rejection Events posted

    # -- readiness ---------------------------------------------------------------------------

    def states(self) -> list[WatchState]:
        """The state of each resource followed (policies first)."""
        return [r.state for r in self._resources]

    def not_ready(self) -> str | None:
        """Why the policies are not the API's yet; None once a whole list of every resource
        followed has arrived."""
        waiting = [r.state.kind for r in self._resources if not r.state.listed]
        if not waiting:
            return None
        where = self.endpoint.source if self.endpoint is not None else "the Kubernetes API"
        kinds = " and ".join(f"{kind} objects" for kind in waiting)
        return (
            f"policies: waiting for the first list of {kinds} from {where} "
            f"(the default policy is in force: every VLAN sees only itself): {self.last_error}"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="kube-policies: list/watch"),
            loop.create_task(self._builder(), name="kube-policies: engine"),
            loop.create_task(self._status_writer(), name="kube-policies: status"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- URLs ----------------------------------------------------------------------------------

    def _collection(self, plural: str) -> str:
        assert self.endpoint is not None
        base = f"{self.endpoint.server}/apis/{API_VERSION}"
        if self.namespace == "*":
            return f"{base}/{plural}"
        return f"{base}/namespaces/{quote(self.namespace)}/{plural}"

    def _object(self, plural: str, key: ObjectKey, sub: str = "") -> str:
        assert self.endpoint is not None
        ns, name = (quote(k, safe="") for k in key)
        return f"{self.endpoint.server}/apis/{API_VERSION}/namespaces/{ns}/{plural}/{name}{sub}"

    # -- list and watch --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        await asyncio.to_thread(_import_aiohttp)  # off the loop: DNS answers meanwhile
        while self._session is None:
            try:
                self.endpoint = await asyncio.to_thread(resolve, self.kubeconfig, self._env)
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=self.endpoint.ssl or False),
                    read_bufsize=1 << 16,
                )
            except (KubeConfigError, OSError, ssl.SSLError) as exc:
                failures += 1
                await self._failed("config", str(exc), failures)
            except Exception as exc:  # a bug must not end the source: counted, logged, retried
                failures += 1
                await self._bug("config", exc, failures)
        await asyncio.gather(*(self._follow(resource) for resource in self._resources))

    async def _follow(self, res: _Resource) -> None:
        """List and watch one resource, for ever."""
        failures = 0
        while True:
            try:
                if res.state.resource_version is None:
                    await self._list(res)
                    failures = 0
                started = asyncio.get_running_loop().time()
                if await self._watch(res):
                    failures = 0
                elif asyncio.get_running_loop().time() - started < const.KUBE_BACKOFF_MIN:
                    failures += 1  # ended at once without an event: no tight loop
                    await self._failed("empty_watch", "watch: ended at once", failures)
            except _Gone:
                self.relists += 1
                res.state.resource_version = None
                log.info(
                    "kubernetes: %s resourceVersion too old (410 Gone): listing again", res.plural
                )
            except _ApiError as exc:
                failures += 1
                await self._failed(exc.reason, str(exc), failures)
            except KubeProtocolError as exc:
                failures += 1
                await self._failed(exc.reason, str(exc), failures)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                failures += 1
                reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
                await self._failed(reason, f"{type(exc).__name__}: {exc}", failures)
            except Exception as exc:  # a bug must not end the watch: counted, logged, relisted
                failures += 1
                res.state.resource_version = None  # what was half applied is listed anew
                await self._bug(f"{res.plural} list/watch", exc, failures)

    async def _bug(self, where: str, exc: Exception, failures: int) -> None:
        """An exception no handler expects (a bug, or input the parser let through): its
        traceback once a burst, then the backoff of any other failure, counted as
        ``internal``."""
        if failures == 1:
            log.error("kubernetes: %s failed unexpectedly", where, exc_info=exc)
        await self._failed("internal", f"{where}: {type(exc).__name__}: {exc}", failures)

    async def _failed(self, reason: str, message: str, failures: int) -> None:
        self.errors[reason] += 1
        self.last_error = message
        delay = backoff(failures, self._rand())
        log.warning("kubernetes: %s; retrying in %.1f s", message, delay)
        await asyncio.sleep(delay)

    def _request_args(self, timeout: aiohttp.ClientTimeout) -> dict[str, Any]:
        assert self.endpoint is not None
        return {"headers": self.endpoint.headers(), "timeout": timeout}

    async def _list(self, res: _Resource) -> None:
        """Every page of the list; replaces the objects only once the last page is in."""
        assert self._session is not None
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        rv = ""
        timeout = aiohttp.ClientTimeout(total=const.KUBE_REQUEST_TIMEOUT)
        while True:
            params = {"limit": str(const.KUBE_LIST_PAGE)}
            if token is not None:
                params["continue"] = token
            url = self._collection(res.plural)
            async with self._session.get(url, params=params, **self._request_args(timeout)) as resp:
                if resp.status == 410:  # the continue token expired: the list starts again
                    raise _Gone()
                await _check(resp, "list")
                body = await _read_bounded(resp, const.KUBE_MAX_LIST_BYTES)
            try:
                page, rv, token = parse_list(json.loads(body))
            except (ValueError, RecursionError) as exc:
                raise KubeProtocolError("bad_list", str(exc)[:120]) from None
            items.extend(page[: const.KUBE_MAX_OBJECTS + 1 - len(items)])
            if token is None:
                break
        state = res.state
        first = not state.listed
        changed = state.replace(items, rv)
        self.lists += 1
        self.last_error = ""
        log.info(
            "kubernetes: %d %s objects listed (%d rejected), resourceVersion %s",
            len(state.objects),
            state.kind,
            len(state.rejected()),
            rv,
        )
        if changed or first:
            res.changed()
        for tracked in state.objects.values():
            self._queue_status(res, tracked)

    async def _watch(self, res: _Resource) -> bool:
        """One watch, until the server ends it. True if any event arrived."""
        state = res.state
        assert self._session is not None and state.resource_version is not None
        seconds = int(const.KUBE_WATCH_TIMEOUT * (0.8 + 0.2 * self._rand()))
        params = {
            "watch": "1",
            "resourceVersion": state.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=const.KUBE_REQUEST_TIMEOUT,
            sock_read=seconds + const.KUBE_WATCH_IDLE,
        )
        progressed = False
        url = self._collection(res.plural)
        async with self._session.get(url, params=params, **self._request_args(timeout)) as resp:
            if resp.status == 410:
                raise _Gone()
            await _check(resp, "watch")
            self.watches += 1
            async for line in _lines(resp.content, const.KUBE_MAX_EVENT_BYTES):
                event = parse_event(line)
                self.events[event.type] += 1
                progressed = True
                step = state.apply(event)
                if step is Step.RELIST:
                    raise _Gone()
                if step is Step.RESUME:
                    message = str(event.object.get("message", "watch error"))[:200]
                    raise _ApiError("watch_error", f"watch: the server sent an error: {message}")
                if step is Step.APPLY:
                    res.changed()
                if event.type in ("ADDED", "MODIFIED"):
                    key = object_key(event.object)
                    tracked = None if key is None else state.objects.get(key)
                    if tracked is not None:
                        self._queue_status(res, tracked)
        return progressed

    # -- announcements -----------------------------------------------------------------------

    def _announced(self) -> None:
        """The announcement set changed: the accepted ones to the publisher (the others are
        logged, and reported by Events)."""
        assert self._on_announcements is not None
        problems = self.announcement_state.problems()
        if problems:
            log.warning(
                "kubernetes: ServiceAnnouncement objects rejected (the others apply):\n%s",
                problems,
            )
        try:
            self._on_announcements(self.announcement_state.announcements())
        except Exception:  # a publisher bug must not end the watch
            log.exception("kubernetes: on_announcements failed")

    # -- engine ------------------------------------------------------------------------------

    def _policies_changed(self) -> None:
        self._dirty.set()

    async def _builder(self) -> None:
        """Builds an engine when the set changed; changes during a build share the next."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                policies, problems = self.state.policies(), self.state.problems()
                engine = await asyncio.to_thread(PolicyEngine, policies, self.vlans)
            except Exception:  # an engine bug must not end the watch; the next change retries
                log.exception("kubernetes: cannot build the policy engine")
                self.errors["engine"] += 1
                continue
            self.builds += 1
            if problems:
                log.warning(
                    "kubernetes: ServicePolicy objects rejected (the others apply):\n%s", problems
                )
            log.info("kubernetes: %d policies in force", len(policies))
            try:
                self._on_change(engine, problems)
            except Exception:
                log.exception("kubernetes: on_change failed")

    # -- status and events -------------------------------------------------------------------

    def _queue_status(self, res: _Resource, tracked: Tracked) -> None:
        if res.state.status_due(tracked) or res.state.event_due(tracked):
            self._status_due[res, tracked.key] = None
            self._status_wake.set()

    async def _status_writer(self) -> None:
        failures = 0
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            while self._status_due:
                res, key = due = next(iter(self._status_due))
                del self._status_due[due]
                try:
                    await self._write_status(res, key)
                    failures = 0
                except Exception as exc:  # API errors, and bugs: neither ends the writer
                    failures += 1
                    self.errors["status"] += 1
                    if not isinstance(
                        exc, (_ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError)
                    ):
                        self.errors["internal"] += 1
                        if failures == 1:
                            log.error("kubernetes: status writer failed unexpectedly", exc_info=exc)
                    self._status_due.setdefault(due, None)
                    delay = backoff(failures, self._rand())
                    log.warning(
                        "kubernetes: status of %s/%s not written: %s; retrying in %.1f s",
                        *key,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)

    async def _write_status(self, res: _Resource, key: ObjectKey) -> None:
        """The rejection Event if one is due, then this gateway's status entry (re-read and
        patched again after a 409, a few times)."""
        assert self._session is not None and self.endpoint is not None
        timeout = aiohttp.ClientTimeout(total=const.KUBE_REQUEST_TIMEOUT)
        state = res.state
        tracked = state.objects.get(key)
        if tracked is not None and state.event_due(tracked):
            event = state.rejection_event(tracked, self._now())
            url = f"{self.endpoint.server}/api/v1/namespaces/{quote(key[0], safe='')}/events"
            async with self._session.post(url, json=event, **self._request_args(timeout)) as resp:
                await _check(resp, "event")
            self.events_created += 1
        for _ in range(const.KUBE_STATUS_ATTEMPTS):
            tracked = state.objects.get(key)  # the watch may have brought a newer one
            if tracked is None or not state.status_due(tracked):
                return
            patch = state.status_patch(tracked, self._now())
            args = self._request_args(timeout)
            args["headers"]["Content-Type"] = MERGE_PATCH
            async with self._session.patch(
                self._object(res.plural, key, "/status"), data=json.dumps(patch), **args
            ) as resp:
                if resp.status == 404:  # deleted meanwhile: its DELETED event follows
                    return
                conflict = resp.status == 409
                if not conflict:
                    await _check(resp, "status")
                    state.refresh(json.loads(await _read_bounded(resp, _MAX_OBJECT)))
                    self.status_writes += 1
                    continue
            # another gateway wrote first: read the object, compute the patch again
            self.status_conflicts += 1
            url = self._object(res.plural, key)
            async with self._session.get(url, **self._request_args(timeout)) as resp:
                if resp.status == 404:
                    return
                await _check(resp, "get")
                state.refresh(json.loads(await _read_bounded(resp, _MAX_OBJECT)))
        log.warning(
            "kubernetes: status of %s/%s: %d conflicts in a row; written on its next change",
            *key,
            const.KUBE_STATUS_ATTEMPTS,
        )


_MAX_OBJECT: Final = const.KUBE_MAX_EVENT_BYTES  # bytes of one object read (etcd's bound)


async def _check(resp: aiohttp.ClientResponse, what: str) -> None:
    """Raise :class:`_ApiError` for an error status, with the server's Status message."""
    if resp.status < 300:
        return
    body = await resp.content.read(const.KUBE_ERROR_BODY_MAX)
    message = body.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and parsed.get("message"):
            message = str(parsed["message"])
    reason = {401: "unauthorized", 403: "forbidden"}.get(resp.status, f"http_{resp.status}")
    hint = ""
    if resp.status in (401, 403):
        hint = (
            "; fix: the gateway's service account needs get, list and watch on "
            "servicepolicies and serviceannouncements, patch on servicepolicies/status "
            "and create on events"
        )
    raise _ApiError(reason, f"{what}: HTTP {resp.status}: {message[:300]}{hint}")


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = await resp.content.read(limit + 1)
    if len(body) > limit:
        raise KubeProtocolError("too_large", f"a response of more than {limit} bytes")
    while not resp.content.at_eof():  # read() may return less than asked before the end
        more = await resp.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
        if len(body) > limit:
            raise KubeProtocolError("too_large", f"a response of more than {limit} bytes")
    return body


async def _lines(stream: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """The non-empty lines of a watch stream, each at most ``limit`` bytes."""
    buf = bytearray()
    async for chunk in stream.iter_any():
        start = len(buf)
        buf += chunk
        while (end := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[:end])
            del buf[: end + 1]
            start = 0
            if line.strip():
                yield line
        if len(buf) > limit:
            raise KubeProtocolError("event_too_large", f"a watch event of more than {limit} bytes")
    if buf.strip():
        yield bytes(buf)
