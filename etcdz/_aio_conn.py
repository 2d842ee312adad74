"""One asyncio connection to one member with any number of calls in flight.

Each call registers a future under its ``msg_id`` and queues its frames; the queue is sent at
once on the loop's next turn, so the requests of every task that ran in between leave in one
batch, and every reply waiting on the socket is read in one go when the loop sees the socket
ready (replies come in any order; one for a call given up is dropped). A call whose deadline
passes is answered ``NO_REPLY`` (one timer serves the calls in deadline order); a request that
cannot leave (no connection to the member: ``IMMEDIATE``) within its dial time is answered
``NOT_SENT``. A dropped connection (the socket's monitor reports it at once) answers every call
sent and not answered ``LOST``, and so does ``close()`` (``NOT_SENT`` if still queued): the
failover rules of ``etcdz._calls`` decide what each becomes.

The socket is a plain ZeroMQ socket whose file descriptor the loop watches (``add_reader``):
pyzmq's asyncio sockets make a future and a round of flag objects per send and per receive,
which cost more than the rest of a call. ZeroMQ's descriptor is edge-triggered — it signals
that the socket's events may have changed, and any send or receive may consume that signal —
so after each batch the socket's events are read again and, while a reply is waiting, the
reading goes on.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import zmq

from etcdz._calls import LOST, MAX_IN_FLIGHT, NO_REPLY, NOT_SENT, reply_id
from etcdz._conn import close_monitored, dealer, monitor

_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)
_MORE, _LAST = int(zmq.NOBLOCK | zmq.SNDMORE), int(zmq.NOBLOCK)
_READ_BATCH = 1000  # replies read in one turn of the loop before other tasks get theirs


class AioConnection:
    def __init__(self, ctx: zmq.Context[Any], url: str, configure: Callable[[zmq.Socket[Any]], None]) -> None:
        self.url = url
        self.generation = 0
        self._sock: zmq.Socket[bytes] = dealer(ctx, url, configure)
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[object]] = {}
        self._outbox: collections.deque[tuple[int, list[bytes], float]] = collections.deque()
        self._flush_due = False
        self._dial_timer: asyncio.TimerHandle | None = None
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.closed = False
        self._fd = self._sock.get(zmq.FD)
        self._loop.add_reader(self._fd, self._on_events)
        self._monitor: zmq.Socket[bytes] = monitor(self._sock)
        self._monitor_fd = self._monitor.get(zmq.FD)
        self._loop.add_reader(self._monitor_fd, self._on_monitor)

    async def exchange(self, msg_id: int, frames: list[bytes], deadline: float, dial_s: float) -> object:
        """The reply's body (bytes), ``NOT_SENT``, ``NO_REPLY`` or ``LOST``; ``deadline`` on the
        loop's clock."""
        async with self._slots:
            now = self._loop.time()
            if self.closed or now >= deadline:
                return NOT_SENT
            if not self._pending:  # a drop reported while nothing was in flight concerns no call
                self._drain_monitor()
            future: asyncio.Future[object] = self._loop.create_future()
            self._pending[msg_id] = future
            self._outbox.append((msg_id, frames, min(deadline, now + dial_s)))
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush)
            self._watch_deadline(msg_id, deadline)
            try:
                return await future
            finally:
                self._pending.pop(msg_id, None)

    def _watch_deadline(self, msg_id: int, deadline: float) -> None:
        """Calls of one client mostly share a timeout, so their deadlines come in order: one
        timer for the earliest, instead of a timer made and cancelled per call."""
        if self._deadlines and deadline < self._deadlines[-1][0]:  # a shorter timeout
            self._loop.call_at(deadline, self._expire_one, msg_id)
            return
        self._deadlines.append((deadline, msg_id))
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Answer ``NO_REPLY`` to the calls whose deadline passed; forget those answered."""
        self._deadline_timer = None
        now, deadlines, pending = self._loop.time(), self._deadlines, self._pending
        while deadlines:
            deadline, msg_id = deadlines[0]
            future = pending.get(msg_id)
            if future is not None and not future.done():
                if deadline > now:
                    self._deadline_timer = self._loop.call_at(deadline, self._expire)
                    return
                _resolve(future, NO_REPLY)
            deadlines.popleft()

    def _expire_one(self, msg_id: int) -> None:
        if (future := self._pending.get(msg_id)) is not None:
            _resolve(future, NO_REPLY)

    def _flush(self) -> None:
        """Send every queued request that can leave now; then read what came meanwhile."""
        self._flush_due = False
        if self.closed:
            return
        outbox, sock = self._outbox, self._sock
        try:
            while outbox:
                msg_id, frames, _ = outbox[0]
                future = self._pending.get(msg_id)
                if future is not None and not future.done():
                    if len(frames) == 2:  # header and body (what pyzmq's send_multipart does,
                        sock.send(frames[0], _MORE)  # less its flag objects)
                        sock.send(frames[1], _LAST)
                    else:
                        sock.send_multipart(frames, zmq.NOBLOCK)
                outbox.popleft()
        except zmq.Again:  # not connected (yet): the rest waits for the socket, or its dial time
            self._arm_dial_timer()
        self._on_events()

    def _arm_dial_timer(self) -> None:
        if self._dial_timer is None and self._outbox:
            first = min(dial for _, _, dial in self._outbox)
            self._dial_timer = self._loop.call_at(first, self._dial_expired)

    def _dial_expired(self) -> None:
        """Requests whose dial time is over never left: ``NOT_SENT`` (they may go elsewhere)."""
        self._dial_timer = None
        now = self._loop.time()
        kept: collections.deque[tuple[int, list[bytes], float]] = collections.deque()
        for item in self._outbox:
            future = self._pending.get(item[0])
            if item[2] <= now:
                if future is not None:
                    _resolve(future, NOT_SENT)
            elif future is not None and not future.done():
                kept.append(item)
        self._outbox = kept
        self._arm_dial_timer()

    def _on_events(self) -> None:
        """The socket may have news: read every waiting reply, send what waits for a connection."""
        if self.closed:
            return
        sock, pending = self._sock, self._pending
        events = _events(sock)
        for _ in range(_READ_BATCH):
            if not events & _POLLIN:
                break
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = reply_id(frames)
            if reply is not None and (future := pending.get(reply[0])) is not None:
                _resolve(future, reply[1])
            events = _events(sock)
        else:
            self._loop.call_soon(self._on_events)  # more waiting: after the others' turn
            return
        if self._outbox and events & _POLLOUT and not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _drain_monitor(self) -> bool:
        dropped = False
        while _events(self._monitor) & _POLLIN:
            self._monitor.recv_multipart(zmq.NOBLOCK)
            dropped = True
        return dropped

    def _on_monitor(self) -> None:
        """The connection dropped: what was sent on it and not answered never will be."""
        if self.closed or not self._drain_monitor():
            return
        self._on_events()  # what arrived before the drop
        queued = {item[0] for item in self._outbox}
        for msg_id, future in self._pending.items():
            if msg_id not in queued:
                _resolve(future, LOST)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_reader(self._monitor_fd)
        for timer in (self._dial_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        for msg_id, _, _ in self._outbox:  # never left
            if (future := self._pending.get(msg_id)) is not None:
                _resolve(future, NOT_SENT)
        self._outbox.clear()
        for future in self._pending.values():
            _resolve(future, LOST)
        close_monitored(self._sock, self._monitor)


def _events(sock: zmq.Socket[bytes]) -> int:
    return sock.get(zmq.EVENTS)  # type: ignore[return-value]


def _resolve(future: asyncio.Future[object], value: object) -> None:
    if not future.done():
        future.set_result(value)
