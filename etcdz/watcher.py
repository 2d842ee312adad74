"""Watching from the SDK: ``client.watch(key, ...)`` iterates over etcd ``WatchResponse``s.

All watches of one ``Client`` share one stream: a connection to one watch hub, owned by a
background thread (as clientv3's watcher goroutine), which user threads reach through a queue
and an inproc wake-up pipe. Watch ids are chosen here, so a watch keeps its id when the stream
moves. The thread pings an idle hub every second; when a hub stays silent for ``DEAD_AFTER_S``
the stream moves to another hub the cluster advertises and every live watch is created again
from the last revision it delivered + 1: no gap, and events at or below that revision are
dropped should any arrive twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import zmq

from etcdz import ops
from etcdz.errors import Compacted, EtcdzError, Unavailable, from_reason
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import RELOGIN, TEXTS, ErrorResponse
from proto_schemas.watch import (
    DUPLICATE_WATCH_ID,
    PROGRESS_ALL,
    Event,
    FilterType,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

if TYPE_CHECKING:
    from etcdz.client import Client

PING_S = 1.0
DEAD_AFTER_S = 3.0
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


class WatchStream(threading.Thread):
    """The connection to one hub, shared by the watches of one client."""

    def __init__(self, client: Client) -> None:
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

    # -- user threads ----------------------------------------------------------------------------
    def watch(self, request: WatchCreateRequest, sink: Callable[[Any], None] | None = None) -> Watch:
        if self.error is not None:
            raise self.error
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
                sock = self._connect(exclude=self.hub)
                self._serve(sock)
                sock.close(linger=0)
                sock = None
        finally:
            if sock is not None:
                sock.close(linger=0)
            self._wake_in.close(linger=0)
            for w in self._watches.values():
                w._put(self.error or _STOP)

    def _connect(self, exclude: str) -> zmq.Socket[bytes]:
        deadline = time.monotonic() + self._client.timeout
        while True:
            try:
                urls = self._client.watch_endpoints or self._client.watch_hubs()
            except EtcdzError as exc:
                urls, last_error = [], exc
            else:
                last_error = Unavailable("no watch hub is serving this cluster")
            if urls:
                others = [u for u in urls if u != exclude] or urls
                self.hub = random.choice(others)
                sock = self._ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                self._client.secure(sock)
                sock.connect(self.hub)
                self._hub_id = ""
                self._send(sock, WatchPing())  # its answer tells which hub instance this is
                self._resume_all(sock)
                return sock
            if time.monotonic() > deadline or self._stopping:
                self.error = last_error
                self._stopping = True
                raise last_error
            time.sleep(0.2)

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
            if now - heard > DEAD_AFTER_S:
                return  # the hub is gone: move the stream
            if now - sent >= PING_S:
                self._send(sock, WatchPing())
                sent = now

    def _resume_all(self, sock: zmq.Socket[bytes]) -> None:
        for w in self._watches.values():  # created again where they left off
            w.confirmed = False
            self._send(sock, WatchRequest(request=w._resume_request()))

    def _run_commands(self, sock: zmq.Socket[bytes], now: float) -> float | None:
        sent = None
        while True:
            try:
                op, arg = self._commands.get_nowait()
            except queue.Empty:
                return sent
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
            return  # a request this SDK built was refused: a bug, nothing to hand to a watch
        if isinstance(msg, WatchPong):
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
