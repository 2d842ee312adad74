"""Watching from the SDK: ``client.watch(key, ...)`` iterates over etcd ``WatchResponse``s.

All watches of one ``Client`` share one stream: a connection to one watch hub, owned by a
background thread (as clientv3's watcher goroutine), which user threads reach through a queue
and an inproc wake-up pipe. Watch ids are chosen here, so a watch keeps its id when the stream
moves. The thread pings an idle hub every second; when a hub stays silent for ``DEAD_AFTER_S``
the stream moves to another hub the cluster advertises and every live watch is created again
from the last revision it delivered + 1: no gap, and events at or below that revision are
dropped should any arrive twice.

Never silence: the first ping is a handshake carrying the cluster id the client learned from
the members, and a hub of another cluster (its pong says so, or it refuses the stream) is
left at once. A hub of another cluster or an announced URL ZeroMQ cannot use is not tried
again until some hub works, a silent one not for ``DEAD_AFTER_S``; when no hub has answered
for the client's timeout (+ ``DEAD_AFTER_S``), every watch ends with the error
(``Unavailable``, or ``ClusterIdMismatch`` when every hub serves another cluster) raised from
its iterator. The members serve no watches themselves, so there is no other path to fall
back to.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from etcdz import ops
from etcdz._transport import Transport
from etcdz.errors import ClusterIdMismatch, Compacted, EtcdzError, Unavailable, from_reason
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import RELOGIN, TEXTS, ErrorCode, ErrorResponse
from proto_schemas.watch import (
    DUPLICATE_WATCH_ID,
    PROGRESS_ALL,
    Event,
    FilterType,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchHubsRequest,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

PING_S = 1.0
DEAD_AFTER_S = 3.0
FOREIGN = "another cluster's hub"
_STOP = object()
_LOGIN_CURES = frozenset(TEXTS[c] for c in RELOGIN)  # as for calls: what a fresh login cures


class Watch:
    """One watch: iterate for responses (events of one revision always together); ``cancel()``
    ends the iteration. A start revision that was compacted raises ``Compacted``."""

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        request: WatchCreateRequest,
        sink: Callable[[Any], None] | None = None,
    ) -> None:
        self._stream = stream
        self.id = watch_id
        self.request = request
        self.revision = request.start_revision - 1 if request.start_revision > 0 else 0
        self.created = threading.Event()
        self.confirmed = False  # the current hub has created it (its progress answers count)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._fragments: list[Event] = []
        self._done = False
        self._relogins = 0  # logins for this watch since it was last created
        # Called on the stream thread instead of queueing (the asyncio bridge); given at
        # creation, so that not even the first response can reach the queue instead.
        self.sink = sink

    # -- fed by the stream thread ---------------------------------------------------------------
    def _resume_request(self) -> WatchCreateRequest:
        start = self.revision + 1 if self.revision else self.request.start_revision
        return _replace(self.request, start_revision=start, watch_id=self.id)

    def _feed(self, resp: WatchResponse) -> bool:
        """Take one response from the hub; False once the watch is over."""
        if resp.created and not resp.canceled:
            self.confirmed = True
            self._relogins = 0
            if not self.revision and self.request.start_revision <= 0:  # a watch from now
                self.revision = resp.header.revision
            self.created.set()
            return True
        if resp.canceled and resp.cancel_reason == DUPLICATE_WATCH_ID:
            return True  # re-created on a hub that still had it: the watch goes on
        if resp.canceled:
            self.created.set()
            error = (
                Compacted(resp.cancel_reason) if resp.compact_revision else from_reason(resp.cancel_reason)
            )
            if resp.compact_revision:
                error.compact_revision = resp.compact_revision  # type: ignore[union-attr]
            self._put(error if error is not None else _STOP)
            return False
        events = [e for e in resp.events if e.kv.mod_revision > self.revision]
        if resp.events and not events:
            return True  # already delivered before the stream moved
        if self._fragments:  # a revision resent from its first fragment (a stall, a new hub)
            have = {e.kv.key for e in self._fragments}
            events = [e for e in events if e.kv.key not in have]
        if resp.fragment:
            self._fragments.extend(events)
            return True
        if self._fragments:
            events, self._fragments = self._fragments + events, []
        self.revision = max(self.revision, resp.header.revision)
        self._put(_replace(resp, events=events, fragment=False))
        return True

    def _put(self, item: Any) -> None:
        if self.sink is not None:
            self.sink(item)
        else:
            self._queue.put(item)

    # -- the user's side -----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> WatchResponse | None:
        """The next response, or None after ``timeout`` seconds / once the watch is over."""
        if self._done:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._take(item)

    def _take(self, item: Any) -> WatchResponse | None:
        """What the user sees of one queued item: a response, None at the end, or the error."""
        if isinstance(item, EtcdzError):
            self._done = True
            raise item
        if item is _STOP:
            self._done = True
            return None
        return item

    def __iter__(self) -> Iterator[WatchResponse]:
        while True:
            resp = self.get()
            if resp is None:
                return
            yield resp

    def events(self) -> Iterator[Event]:
        for resp in self:
            yield from resp.events

    def cancel(self) -> None:
        self._stream.cancel(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class Events:
    """The events of one watch, one at a time (python-etcd3's ``watch_prefix`` iterator):
    ``for event in client.watch_prefix("/config/"):``; ``cancel()`` or a ``with`` block ends
    it, and a compacted start revision raises ``Compacted`` from the loop."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self._events = watch.events()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def cancel(self) -> None:
        self.watch.cancel()

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class WatchStream(threading.Thread):
    """The connection to one hub, shared by the watches of one client."""

    def __init__(self, client: Transport) -> None:
        super().__init__(daemon=True, name="etcdz-watch")
        self._client = client
        self._ctx = zmq.Context()
        self._wake_in = self._ctx.socket(zmq.PAIR)
        address = f"inproc://wake-{id(self)}"
        self._wake_in.bind(address)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        self._wake_out.connect(address)
        self._wake_lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._watches: dict[int, Watch] = {}
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._stopping = False
        self.hub = ""
        self._hub_id = ""
        self._recreate = False
        self._relogged: list[Watch] = []
        self.error: EtcdzError | None = None
        self._failed: dict[str, tuple[str, float]] = {}  # hub URL -> (why, left alone until)
        self._answered = False  # the current hub answered the handshake
        self._last_good = time.monotonic()  # when a hub of this cluster last answered
        self._end_lock = threading.Lock()
        self._ended = False  # the thread is done: no more watches

    # -- user threads ----------------------------------------------------------------------------
    def watch(self, request: WatchCreateRequest, sink: Callable[[Any], None] | None = None) -> Watch:
        with self._end_lock:
            if self._ended:
                raise self.error or Unavailable("the watch stream is closed")
            w = Watch(self, next(self._ids), request, sink)
            self._command("create", w)
        return w

    def cancel(self, w: Watch) -> None:
        self._command("cancel", w)

    def request_progress(self) -> None:
        self._command("progress", None)

    def close(self) -> None:
        self._stopping = True
        self._command("stop", None)
        self.join(5)
        with self._wake_lock:
            self._wake_out.close(linger=0)
        if not self.is_alive():  # its sockets are closed: the context ends at once
            self._ctx.term()

    def _command(self, op: str, arg: Any) -> None:
        self._commands.put((op, arg))
        with self._wake_lock:
            if not self._wake_out.closed:
                try:
                    self._wake_out.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the stream thread has wakes queued already: it will see the command

    # -- the stream thread -----------------------------------------------------------------------
    def run(self) -> None:
        sock: zmq.Socket[bytes] | None = None
        try:
            while not self._stopping:
                sock = self._connect()
                if sock is None:
                    break
                self._serve(sock)
                sock.close(linger=0)
                sock = None
        except Exception as exc:  # a bug must end the watches with an error, never silently
            self.error = self.error or EtcdzError(f"watch stream failed: {exc!r}")
        finally:
            self._stopping = True
            if sock is not None:
                sock.close(linger=0)
            self._wake_in.close(linger=0)
            with self._end_lock:  # watches asked for but never sent end too
                self._ended = True
                self._run_commands(None, 0.0)
            for w in self._watches.values():
                w._put(self.error or _STOP)

    def _connect(self) -> zmq.Socket[bytes] | None:
        """A connection to a hub not known to have failed, None (``error`` set) when none
        turns up within the client's timeout: the watches then end with that error."""
        while not self._stopping:
            try:
                if not self._client.cluster_id:
                    self._client.call(WatchHubsRequest())  # learn the cluster the hubs must serve
                urls = self._client.watch_endpoints or self._client.watch_hubs()
                last_error: EtcdzError = self._no_hub_error(urls)
            except EtcdzError as exc:
                urls, last_error = [], exc
            now = time.monotonic()
            candidates = [u for u in urls if self._failed.get(u, ("", 0.0))[1] <= now]
            while candidates:
                self.hub = random.choice(candidates)
                self._failed.pop(self.hub, None)  # its cool-off is over: a fresh chance
                sock = self._open(self.hub)
                if sock is not None:
                    return sock
                candidates.remove(self.hub)
            if now - self._last_good > self._client.timeout + DEAD_AFTER_S:
                self.error = last_error
                return None
            time.sleep(0.2)
        return None

    def _fail(self, url: str, reason: str, for_s: float = math.inf) -> None:
        """Leave ``url`` alone for ``for_s`` (for good: until some hub works)."""
        self._failed[url] = (reason, time.monotonic() + for_s)

    def _no_hub_error(self, urls: list[str]) -> EtcdzError:
        if not urls:
            return Unavailable("no watch hub is serving this cluster")
        why = {u: self._failed[u][0] for u in urls if u in self._failed}
        reasons = "; ".join(f"{u}: {reason}" for u, reason in why.items())
        if len(why) == len(urls) and all(r.startswith(FOREIGN) for r in why.values()):
            return ClusterIdMismatch(f"etcdserver: cluster ID mismatch ({reasons})")
        return Unavailable(f"no watch hub works for this cluster ({reasons or 'none answered'})")

    def _open(self, url: str) -> zmq.Socket[bytes] | None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        self._client.secure(sock)
        try:
            sock.connect(url)
        except zmq.ZMQError as exc:  # an announced URL ZeroMQ cannot use
            sock.close(linger=0)
            self._fail(url, f"invalid hub URL ({exc})")
            return None
        self._hub_id = ""
        self._answered = False
        # The handshake: the answer says which hub instance this is and whose cluster it serves.
        self._send(sock, WatchPing(cluster_id=self._client.cluster_id))
        self._resume_all(sock)
        return sock

    def _serve(self, sock: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        heard = sent = time.monotonic()
        while not self._stopping:
            ready = dict(poller.poll(int(PING_S * 1000 / 2)))
            now = time.monotonic()
            if self._wake_in in ready:
                while self._wake_in.poll(0):
                    self._wake_in.recv()
                sent = self._run_commands(sock, now) or sent
            if sock in ready:
                heard = now
                while sock.poll(0):
                    self._receive(sock.recv_multipart())
                if self._recreate:
                    self._recreate = False
                    self._resume_all(sock)
                for w in self._relogged:  # refused for an expired token: logged in again
                    self._send(sock, WatchRequest(request=w._resume_request()))
                self._relogged.clear()
            if self.hub in self._failed:
                return  # a hub of another cluster: move the stream
            if now - heard > DEAD_AFTER_S:  # the hub is gone (or never was): move the stream
                self._fail(self.hub, "went silent" if self._answered else "no answer", DEAD_AFTER_S)
                return
            if now - sent >= PING_S:
                self._send(sock, WatchPing())
                sent = now

    def _resume_all(self, sock: zmq.Socket[bytes]) -> None:
        for w in self._watches.values():  # created again where they left off
            w.confirmed = False
            self._send(sock, WatchRequest(request=w._resume_request()))

    def _run_commands(self, sock: zmq.Socket[bytes] | None, now: float) -> float | None:
        """Carry out the user threads' commands (``sock`` None: the stream has ended, a new
        watch is only registered, to be ended with the others)."""
        sent = None
        while True:
            try:
                op, arg = self._commands.get_nowait()
            except queue.Empty:
                return sent
            if sock is None:
                if op == "create":
                    self._watches[arg.id] = arg
                continue
            if op == "create":
                self._watches[arg.id] = arg
                self._send(sock, WatchRequest(request=arg._resume_request()))
            elif op == "cancel" and arg.id in self._watches:
                self._send(sock, WatchRequest(request=WatchCancelRequest(watch_id=arg.id)))
            elif op == "progress":
                self._send(sock, WatchRequest(request=WatchProgressRequest()))
            sent = now

    def _receive(self, frames: list[bytes]) -> None:
        try:
            _, body = unpack_header(frames)
            msg = decode(body)
        except DecodeError:
            return
        if isinstance(msg, ErrorResponse):
            if msg.code == ErrorCode.CLUSTER_ID_MISMATCH:
                self._fail(self.hub, f"{FOREIGN}: {msg.message}")
            return  # else a request this SDK built was refused: a bug, nothing to hand to a watch
        if isinstance(msg, WatchPong):
            mine = self._client.cluster_id
            if msg.cluster_id and mine and msg.cluster_id != mine:
                self._fail(self.hub, f"{FOREIGN}: it serves cluster {msg.cluster_id:x}, not {mine:x}")
                return
            self._answered = True
            self._last_good = time.monotonic()
            self._failed.clear()  # a working hub: those that failed may be tried again later
            if self._hub_id and msg.hub_id != self._hub_id:
                # The hub restarted at the same address and forgot us: nothing it says counts
                # for a watch until it has created that watch again.
                self._recreate = True
                for w in self._watches.values():
                    w.confirmed = False
            self._hub_id = msg.hub_id
            return
        if isinstance(msg, WatchResponses):
            for resp in msg.responses:
                self._dispatch(resp)
        elif isinstance(msg, WatchResponse):
            self._dispatch(msg)

    def _dispatch(self, resp: WatchResponse) -> None:
        if resp.watch_id == PROGRESS_ALL:  # not for watches this hub has yet to create
            targets = [w for w in self._watches.values() if w.confirmed]
        else:
            one = self._watches.get(resp.watch_id)
            targets = [one] if one is not None else []
        for w in targets:
            if self._needs_login(w, resp):
                continue
            if not w._feed(resp):
                self._watches.pop(w.id, None)

    def _needs_login(self, w: Watch, resp: WatchResponse) -> bool:
        """A create refused for a token the cluster no longer takes (expired, a member
        restarted, older than the auth store) or for want of one (auth enabled since this
        client found it off): log in again and re-create it, once per refusal streak."""
        if not (resp.canceled and resp.cancel_reason in _LOGIN_CURES and self._client.user is not None):
            return False
        if w._relogins >= 1:
            return False
        w._relogins += 1
        self._client.relogin()
        self._relogged.append(w)
        return True

    def _send(self, sock: zmq.Socket[bytes], body: Any) -> None:
        try:
            token = self._client.auth_token()
        except EtcdzError as exc:  # cannot log in: the watches end with the reason
            self.error, self._stopping = exc, True
            return
        try:
            sock.send_multipart(pack(body, msg_id=next(self._msg_ids), token=token), zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: the hub will look dead and the stream moves


def create_request(
    key: ops.Bytes,
    range_end: ops.Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
    filters: tuple[FilterType, ...] | list[FilterType] = (),
    progress_notify: bool = False,
    fragment: bool = False,
) -> WatchCreateRequest:
    k, end = ops.key_and_end(key, range_end, prefix, from_key)
    return WatchCreateRequest(
        key=k,
        range_end=end,
        start_revision=start_revision,
        prev_kv=prev_kv,
        filters=list(filters),
        progress_notify=progress_notify,
        fragment=fragment,
    )


def _replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
