"""Watching from the SDK: ``client.watch(key, ...)`` iterates over etcd ``WatchResponse``s.

All watches of one ``Client`` share one stream: a connection to one watch hub, owned by a
background thread (as clientv3's watcher goroutine), which user threads reach through a queue
and an inproc wake-up pipe. The stream's rules (watch ids, the handshake, moving to another hub
and resuming every watch from the last revision it delivered + 1 with no gap and no duplicate,
hubs of another cluster) are ``etcdz._watch_core``'s, shared with the asyncio client; this
module is the thread around them. The thread pings an idle hub every second; when a hub stays
silent for ``DEAD_AFTER_S`` the stream moves to another hub the cluster advertises.

Never silence: when no hub has answered for the client's timeout (+ ``DEAD_AFTER_S``), every
watch ends with the error (``Unavailable``, or ``ClusterIdMismatch`` when every hub serves
another cluster) raised from its iterator. The members serve no watches themselves, so there is
no other path to fall back to.

A client dropped without ``close()`` would leave the thread polling its hub while the
interpreter exits (and ZeroMQ's context waiting for its socket): every stream still running at
exit is closed first.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from etcdz import ops
from etcdz._transport import Transport
from etcdz._watch_core import DEAD_AFTER_S, FOREIGN, PING_S, StreamCore, WatchState, ping
from etcdz.errors import EtcdzError, Unavailable
from proto_schemas.envelope import pack
from proto_schemas.watch import (
    Event,
    FilterType,
    WatchCreateRequest,
    WatchHubsRequest,
    WatchResponse,
)

__all__ = ["DEAD_AFTER_S", "FOREIGN", "PING_S", "Events", "Watch", "WatchStream", "create_request"]
_live: weakref.WeakSet[WatchStream] = weakref.WeakSet()


class Watch(WatchState):
    """One watch: iterate for responses (events of one revision always together); ``cancel()``
    ends the iteration. A start revision that was compacted raises ``Compacted``."""

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        request: WatchCreateRequest,
        sink: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(watch_id, request, sink)
        self._stream = stream
        self.created = threading.Event()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _created(self) -> None:
        self.created.set()

    def _enqueue(self, item: Any) -> None:
        self._queue.put(item)

    def get(self, timeout: float | None = None) -> WatchResponse | None:
        """The next response, or None after ``timeout`` seconds / once the watch is over."""
        if self._done:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._take(item)

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


def dealer_to_hub(ctx: Any, url: str, secure: Callable[[Any], None], core: StreamCore) -> Any:
    """A DEALER of ``ctx`` (a blocking or an asyncio context) connected to the hub at ``url``;
    None, with the hub marked failed in ``core``, for an announced URL ZeroMQ cannot use."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure(sock)
    try:
        sock.connect(url)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        core.fail(url, f"invalid hub URL ({exc})")
        return None
    return sock


class WatchStream(threading.Thread):
    """The connection to one hub, shared by the watches of one client."""

    def __init__(self, client: Transport) -> None:
        super().__init__(daemon=True, name="etcdz-watch")
        self._client = client
        self._core = StreamCore(client.user is not None, time.monotonic())
        self._ctx = zmq.Context()
        self._wake_in = self._ctx.socket(zmq.PAIR)
        address = f"inproc://wake-{id(self)}"
        self._wake_in.bind(address)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        self._wake_out.connect(address)
        self._wake_lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._stopping = False
        self._end_lock = threading.Lock()
        self._ended = False  # the thread is done: no more watches
        _live.add(self)

    @property
    def error(self) -> EtcdzError | None:
        return self._core.error

    @property
    def hub(self) -> str:
        return self._core.hub

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
        if self.is_alive():
            self.join(5)
        with self._wake_lock:
            self._wake_out.close(linger=0)
        if not self.is_alive():  # its sockets are closed: the context ends at once
            self._ctx.term()
        _live.discard(self)

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
            self._core.error = self._core.error or EtcdzError(f"watch stream failed: {exc!r}")
        finally:
            self._stopping = True
            if sock is not None:
                sock.close(linger=0)
            self._wake_in.close(linger=0)
            with self._end_lock:  # watches asked for but never sent end too
                self._ended = True
                self._run_commands(None, 0.0)
            self._core.end_all()

    def _connect(self) -> zmq.Socket[bytes] | None:
        """A connection to a hub not known to have failed, None (``error`` set) when none
        turns up within the client's timeout: the watches then end with that error."""
        core = self._core
        while not self._stopping:
            try:
                if not self._client.cluster_id:
                    self._client.call(WatchHubsRequest())  # learn the cluster the hubs must serve
                urls = self._client.watch_endpoints or self._client.watch_hubs()
                last_error: EtcdzError = core.no_hub_error(urls)
            except EtcdzError as exc:
                urls, last_error = [], exc
            now = time.monotonic()
            candidates = core.candidates(urls, now)
            while candidates:
                url = random.choice(candidates)
                sock = self._open(url)
                if sock is not None:
                    return sock
                candidates.remove(url)
            if core.gave_up(now, self._client.timeout):
                core.error = last_error
                return None
            time.sleep(0.2)
        return None

    def _open(self, url: str) -> zmq.Socket[bytes] | None:
        sock: zmq.Socket[bytes] | None = dealer_to_hub(self._ctx, url, self._client.secure, self._core)
        if sock is not None:
            self._send(sock, self._core.opened(url, self._client.cluster_id))
        return sock

    def _serve(self, sock: zmq.Socket[bytes]) -> None:
        core = self._core
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
                    core.receive(sock.recv_multipart(), now, self._client.cluster_id)
                if core.relogin_wanted:
                    core.relogin_wanted = False
                    self._client.relogin()
                self._send(sock, core.after_receive())
            if core.left(now, heard):
                return  # a hub of another cluster, or a silent one: move the stream
            if now - sent >= PING_S:
                self._send(sock, [ping()])
                sent = now

    def _run_commands(self, sock: zmq.Socket[bytes] | None, now: float) -> float | None:
        """Carry out the user threads' commands (``sock`` None: the stream has ended, a new
        watch is only registered, to be ended with the others)."""
        sent = None
        while True:
            try:
                op, arg = self._commands.get_nowait()
            except queue.Empty:
                return sent
            body = None
            if op == "create":
                body = self._core.create(arg)
            elif op == "cancel":
                body = self._core.cancel(arg)
            elif op == "progress":
                body = self._core.progress()
            if sock is not None and body is not None:
                self._send(sock, [body])
                sent = now

    def _send(self, sock: zmq.Socket[bytes], bodies: list[Any]) -> None:
        if not bodies:
            return
        try:
            token = self._client.auth_token()
        except EtcdzError as exc:  # cannot log in: the watches end with the reason
            self._core.error, self._stopping = exc, True
            return
        for body in bodies:
            try:
                sock.send_multipart(pack(body, msg_id=next(self._msg_ids), token=token), zmq.NOBLOCK)
            except zmq.Again:
                pass  # not connected yet: the hub will look dead and the stream moves


@atexit.register
def _close_streams_at_exit() -> None:
    """Close the streams of clients nobody closed, so that the interpreter can exit."""
    for stream in list(_live):
        stream.close()


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
