"""One connection to one member shared by any number of threads, each with calls in flight.

A ZeroMQ socket must be used by one thread at a time, and a caller should not pay a hop to a
background thread for every call. So the threads take turns (leader/followers): a caller that
finds nobody leading becomes the leader and does all the socket's I/O — it sends every queued
request (its own and the followers'), receives every reply and hands each to the thread whose
``msg_id`` it answers — until its own reply is in, then steps down and wakes the followers, one
of which takes over. A follower queues its request, wakes the leader through an inproc pipe
and waits for its reply. One thread alone never waits for anyone: it leads its own call.

A lost connection (the member's gateway died: the socket's monitor reports the disconnect at
once) answers every call sent and not answered ``LOST``: no reply can come for it. ``close()``
from any thread: the socket is closed by the leader, or at once if there is none; calls still
waiting get ``LOST`` (sent) or ``NOT_SENT`` (still queued). The client's failover rules
(etcdz._calls) decide what each of those becomes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from etcdz._calls import LOST, MAX_IN_FLIGHT, NO_REPLY, NOT_SENT, reply_id
from proto_schemas.envelope import reply_queue

_PENDING = object()
_wake_ids = itertools.count(1)


def monitor(sock: zmq.Socket[Any]) -> Any:
    """A socket that receives a message whenever ``sock``'s connection drops."""
    return sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)


def close_monitored(sock: zmq.Socket[Any], watcher: zmq.Socket[Any]) -> None:
    sock.disable_monitor()
    watcher.close(linger=0)
    sock.close(linger=0)


def dealer(ctx: zmq.Context[Any], url: str, configure: Callable[[zmq.Socket[Any]], None]) -> Any:
    """A client's socket to one member (blocking or asyncio, as ``ctx`` makes them)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    # Queue nothing for an endpoint we are not connected to: a request either reaches a live
    # connection or is known not to have been sent (and may go elsewhere).
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.setsockopt(zmq.RCVHWM, reply_queue(MAX_IN_FLIGHT))
    configure(sock)
    sock.connect(url)
    return sock


class Connection:
    def __init__(
        self, ctx: zmq.Context[zmq.Socket[bytes]], url: str, configure: Callable[[zmq.Socket[bytes]], None]
    ) -> None:
        self.url = url
        self.generation = 0  # the client's endpoint generation this connection was made for
        self._sock: zmq.Socket[bytes] = dealer(ctx, url, configure)
        self._monitor: zmq.Socket[bytes] = monitor(self._sock)
        address = f"inproc://etcdz-call-{next(_wake_ids)}-{id(self)}"
        self._wake_in = ctx.socket(zmq.PAIR)
        self._wake_in.bind(address)
        self._wake_out = ctx.socket(zmq.PAIR)
        self._wake_out.connect(address)
        self._cond = threading.Condition()
        self._leading = False
        self._outbox: list[tuple[int, list[bytes], float]] = []
        self._replies: dict[int, object] = {}
        self._closing = False
        self.shut = threading.Event()

    def exchange(self, msg_id: int, frames: list[bytes], deadline: float, dial_s: float) -> object:
        """The reply's body (bytes), ``NOT_SENT``, ``NO_REPLY`` or ``LOST``."""
        with self._cond:
            if self._closing:
                return NOT_SENT
            self._replies[msg_id] = _PENDING
            self._outbox.append((msg_id, frames, min(deadline, time.monotonic() + dial_s)))
            if self._leading:
                self._wake()
            while self._leading:
                got = self._replies[msg_id]
                if got is not _PENDING:
                    return self._replies.pop(msg_id)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._give_up(msg_id)
                self._cond.wait(remaining)
            if self._replies[msg_id] is not _PENDING:  # answered as the last leader stepped down
                return self._replies.pop(msg_id)
            self._leading = True
        try:
            return self._lead(msg_id, deadline)
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

    def _give_up(self, msg_id: int) -> object:
        """(lock held) The caller's deadline passed: NOT_SENT if its request is still queued."""
        self._replies.pop(msg_id, None)
        for i, item in enumerate(self._outbox):
            if item[0] == msg_id:
                del self._outbox[i]
                return NOT_SENT
        return NO_REPLY

    def _wake(self) -> None:
        """(lock held) Tell the leader there is work: a queued request or a close."""
        try:
            self._wake_out.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # wakes are queued already: the leader will look at the outbox

    def _lead(self, msg_id: int, deadline: float) -> object:
        with self._cond:
            in_flight = len(self._replies) > len(self._outbox)
        if not in_flight:  # a drop reported while nothing was in flight concerns no call
            self._drain_monitor()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            self._flush()
            with self._cond:
                if self._closing:
                    self._shutdown()
                got = self._replies.get(msg_id, NO_REPLY)
                if got is not _PENDING:
                    self._replies.pop(msg_id, None)
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._give_up(msg_id)
            ready = dict(poller.poll(math.ceil(remaining * 1000)))
            if self._wake_in in ready:
                while self._wake_in.poll(0):
                    self._wake_in.recv()
            if self._sock in ready:
                self._receive()
            if self._monitor in ready:
                self._disconnected()

    def _flush(self) -> None:
        """Send every queued request (the leader only)."""
        with self._cond:
            batch, self._outbox = self._outbox, []
        if not batch:
            return
        unsent: list[int] = []
        for msg_id, frames, dial_deadline in batch:
            wait_ms = math.ceil(max(0.0, dial_deadline - time.monotonic()) * 1000)
            if not (self._sock.poll(0, zmq.POLLOUT) or self._sock.poll(wait_ms, zmq.POLLOUT)):
                unsent.append(msg_id)
                continue
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                unsent.append(msg_id)
        if unsent:
            with self._cond:
                for msg_id in unsent:
                    if msg_id in self._replies:
                        self._replies[msg_id] = NOT_SENT
                self._cond.notify_all()

    def _receive(self) -> None:
        got: list[tuple[int, bytes]] = []
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = reply_id(frames)
            if reply is not None:
                got.append(reply)
        with self._cond:
            for in_reply_to, body in got:
                if self._replies.get(in_reply_to) is _PENDING:  # else a late reply to a call given up
                    self._replies[in_reply_to] = body
            self._cond.notify_all()

    def _disconnected(self) -> None:
        """The connection dropped: what was sent on it and not answered never will be."""
        self._drain_monitor()
        self._receive()  # what arrived before the drop
        with self._cond:
            queued = {item[0] for item in self._outbox}
            for msg_id, got in self._replies.items():
                if got is _PENDING and msg_id not in queued:
                    self._replies[msg_id] = LOST
            self._cond.notify_all()

    def _drain_monitor(self) -> None:
        while self._monitor.poll(0):
            self._monitor.recv_multipart()

    @property
    def closed(self) -> bool:
        """Closed (by a move of the client to another connection, or the client's close)."""
        return self._closing

    def close(self) -> None:
        """Close from any thread; the socket goes now, or when the leader sees the wake-up."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            if self._leading:
                self._wake()
            else:
                self._shutdown()

    def _shutdown(self) -> None:
        """(lock held, by the leader or with nobody leading) Close the sockets; answer every
        waiting call."""
        if self.shut.is_set():
            return
        queued = {item[0] for item in self._outbox}
        self._outbox.clear()
        for msg_id, got in self._replies.items():
            if got is _PENDING:
                self._replies[msg_id] = NOT_SENT if msg_id in queued else LOST
        close_monitored(self._sock, self._monitor)
        self._wake_in.close(linger=0)
        self._wake_out.close(linger=0)
        self.shut.set()
        self._cond.notify_all()
