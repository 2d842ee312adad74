"""The one shell loop every actor runs: poll, drain, handle as a batch, fire timers, flush.

Why this shape (DESIGN.md, "batch at every hop"): an actor never handles one message and goes
back to sleep. It drains everything already waiting on a socket (up to ``DRAIN_CAP``), hands the
whole batch to its core, and sends what the core produced once per iteration in ``flush``.
Under load batches grow by themselves; idle, the loop sleeps in ``poll`` until the next timer.

Internal sockets are PULL inboxes (bound, one per actor) and PUSH outboxes (connected): every
hop inside a node is a one-way pipeline and replies travel to the asker's inbox. A send that
cannot complete within ``SEND_TIMEOUT_MS`` means the receiving actor is gone; the sender
raises, exits, and the supervisor restarts the node from disk (crash-only).
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from actors.runtime.metrics import Registry
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.internal import MetricsReport

EXIT_FATAL = 3  # exit code of an actor whose durable state is unusable: do not restart it
DRAIN_CAP = 4096
SEND_TIMEOUT_MS = 10_000
INTERNAL_HWM = 200_000
LINGER_MS = 200
RECONNECT_MS = 10
METRICS_REPORT_S = 1.0
PROFILE_VARIABLE = "ETCDZ_PROFILE_DIR"  # set: every actor profiles its loop (cProfile) into that dir
HEARTBEAT_S = 1.0  # how often a member's actor touches its heartbeat file
SPAWNED_VARIABLE = "ETCDZ_SPAWNED_NS"  # the supervisor's monotonic clock when it spawned the actor


class FatalError(Exception):
    """The node's durable state cannot be used (a corrupt WAL, another member's data dir):
    restarting cannot help, an operator must act."""


class Loop:
    """A poller with batch handlers and monotonic timers; stops cleanly on SIGTERM/SIGINT."""

    def __init__(self, log: structlog.BoundLogger) -> None:
        self.log = log
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self._handlers: dict[zmq.Socket[bytes], Callable[[list[list[bytes]]], None]] = {}
        self._addressed: set[zmq.Socket[bytes]] = set()  # their frames start with the peer's address
        self._timers: list[tuple[float, int, float, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._flushers: list[Callable[[], None]] = []
        self.stopping = False
        self.metrics = Registry()
        self.report_now: Callable[[], None] = lambda: None  # see report_metrics

    # -- sockets -------------------------------------------------------------------------
    def inbox(self, address: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, INTERNAL_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        return sock

    def outbox(self, address: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, INTERNAL_HWM)
        sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.IMMEDIATE, 0)
        # A restarted neighbour binds its inbox a few ms after it is forked; ZeroMQ's default
        # 100 ms between connect attempts would add that much to every actor restart.
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        sock.connect(address)
        return sock

    def on_frames(
        self,
        sock: zmq.Socket[bytes],
        handler: Callable[[list[list[bytes]]], None],
        *,
        peer_address: bool = False,
    ) -> None:
        """Call ``handler`` with every multipart message drained from ``sock``; with
        ``peer_address`` each message's first frame is the address it came from (ZeroMQ's
        ``Peer-Address``: the IP of a tcp peer), for limits per client source."""
        self._handlers[sock] = handler
        if peer_address:
            self._addressed.add(sock)
        self.poller.register(sock, zmq.POLLIN)

    def forget(self, sock: zmq.Socket[bytes]) -> None:
        """Stop polling ``sock`` (the caller closes it)."""
        self._handlers.pop(sock, None)
        self._addressed.discard(sock)
        self.poller.unregister(sock)

    def on_messages(self, sock: zmq.Socket[bytes], handler: Callable[[list[Any]], None]) -> None:
        """Like ``on_frames`` for internal inboxes: bodies decoded; a malformed one is logged
        and dropped (it came from a peer actor, so it is a bug, not client input)."""

        def decode_all(batch: list[list[bytes]]) -> None:
            msgs = []
            for frames in batch:
                try:
                    _, body = unpack_header(frames)
                    msgs.append(decode(body))
                except DecodeError as exc:
                    self.log.error("dropped malformed internal message", error=str(exc))
            if msgs:
                handler(msgs)

        self.on_frames(sock, decode_all)

    def after_batch(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after every iteration (the place to take ``ready()`` and send once)."""
        self._flushers.append(fn)

    def report_metrics(self, address: str, actor: str) -> None:
        """Send this actor's metrics to the node's metrics process every second. Best effort:
        a report that cannot leave at once (no metrics process yet) is dropped, never waited for."""
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 2)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        # etcd's process metric; the metrics process sums equal series, so a member's page shows
        # the resident memory of all its actors (what ``etcdzctl check datascale`` reads)
        rss = self.metrics.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")

        def report() -> None:
            resident = _resident_bytes()
            if resident is not None:
                rss.set(resident)
            try:
                sock.send_multipart(
                    pack(MetricsReport(actor=actor, families=self.metrics.families())), zmq.NOBLOCK
                )
            except zmq.Again:
                pass

        self.report_now = report  # for a change the metrics process should not learn a second late
        self.every(METRICS_REPORT_S, report)

    def beat(self, path: str, interval_s: float) -> None:
        """Touch ``path`` now and every ``interval_s`` while the loop turns: a loop that stops
        (a stopped process, a deadlock, an endless batch) stops touching it."""

        def touch() -> None:
            touch_heartbeat(path)

        touch()
        self.every(interval_s, touch)

    # -- timers --------------------------------------------------------------------------
    def every(self, interval_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + interval_s, next(self._seq), interval_s, fn))

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` once, ``delay_s`` from now."""
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._seq), 0.0, fn))

    # -- running -------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        # The supervisor blocks these to wait for them; a child inherits that mask.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            while not self.stopping:
                self.run_once()
        finally:
            self.ctx.destroy(linger=LINGER_MS)

    def run_once(self) -> None:
        timeout_ms = 100
        if self._timers:
            # Whole milliseconds, rounded up: a fraction would be truncated to 0 by poll and the
            # loop would spin until the timer is due.
            wait_ms = math.ceil((self._timers[0][0] - time.monotonic()) * 1000)
            timeout_ms = max(0, min(timeout_ms, wait_ms))
        try:
            ready = zmq.zmq_poll(self.poller.sockets, timeout_ms)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EINTR:  # a signal arrived
                return
            raise
        for sock, _ in ready:
            batch = _drain(sock, sock in self._addressed)
            if batch:
                self._handlers[sock](batch)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            due, _, interval, fn = heapq.heappop(self._timers)
            if interval:  # periodic: skip missed periods rather than fire a burst after a stall
                next_due = due + interval if due + interval > now else now + interval
                heapq.heappush(self._timers, (next_due, next(self._seq), interval, fn))
            fn()
        for fn in self._flushers:
            fn()


NOBLOCK = int(zmq.NOBLOCK)  # flags as plain ints: combining pyzmq's flag enums costs a call each
_EVENTS, _POLLIN, _SNDMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.SNDMORE)
CHECKED_DRAIN = 4  # messages after which a drain stops asking whether more wait


def _drain(sock: zmq.Socket[bytes], addressed: bool) -> list[list[bytes]]:
    """Every message waiting on ``sock`` (up to ``DRAIN_CAP``), each as its frames (with the
    peer's address first if ``addressed``). Why not ``recv_multipart`` until ``zmq.Again``:
    pyzmq builds the exception with its error text (~6 us) and asks ``RCVMORE`` of the socket
    per message (~2 us), while a drain usually finds one or two messages; so the first
    ``CHECKED_DRAIN`` receives ask the socket whether another waits (~2 us) and read "more"
    from the frame itself, and only a longer drain ends on ``Again``."""
    batch: list[list[bytes]] = []
    recv, get = sock.recv, sock.getsockopt
    try:
        while True:
            frame = recv(NOBLOCK, copy=False)
            if frame.more or addressed:
                parts = [frame]
                while parts[-1].more:
                    parts.append(recv(NOBLOCK, copy=False))
                frames = [p.bytes for p in parts]
                batch.append([_peer_address(parts[-1]), *frames] if addressed else frames)
            else:
                batch.append([frame.bytes])
            n = len(batch)
            if n >= DRAIN_CAP or (n <= CHECKED_DRAIN and not get(_EVENTS) & _POLLIN):  # type: ignore[operator]  # an int option
                return batch
    except zmq.Again:
        return batch


def _peer_address(frame: zmq.Frame) -> bytes:
    try:
        return str(frame.get("Peer-Address") or "").encode()
    except zmq.ZMQError:  # no metadata (an inproc peer)
        return b""


def touch_heartbeat(path: str) -> None:
    """Show the supervisor that this process still turns (best effort: never raises)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        with open(path, "ab"):
            pass
    except OSError:
        pass


def send(sock: zmq.Socket[bytes], body: Any, msg_id: int = 0, in_reply_to: int = 0, flags: int = 0) -> None:
    """Send one message (a registered message or its encoded bytes) on an internal socket."""
    send_frames(sock, pack(body, msg_id=msg_id, in_reply_to=in_reply_to), flags)


def send_frames(sock: zmq.Socket[bytes], frames: list[bytes], flags: int = 0) -> None:
    """``sock.send_multipart(frames, flags)`` at less than half its cost (2.7 against 6.1 us
    for two frames): pyzmq's version checks every part and combines its flag enums per part."""
    last = len(frames) - 1
    for i in range(last):
        sock.send(frames[i], _SNDMORE | flags)
    sock.send(frames[last], flags)


def with_metrics(loop: Loop, config: Any, actor: str) -> Loop:
    """Have the actor report its metrics when the node serves them, and show the supervisor
    that its loop turns (a heartbeat file touched every second)."""
    if config.listen_metrics_urls:
        loop.report_metrics(config.inbox("metrics"), actor)
    loop.beat(config.heartbeat_path(actor), HEARTBEAT_S)
    return loop


def run_actor(log: structlog.BoundLogger, build: Callable[[], Loop], name: str = "actor") -> int:
    """Build and run an actor's loop; the exit code says how it ended (crash-only: a failure
    is one structured log line and an exit, and the supervisor decides what follows)."""
    try:
        loop = build()
        log.info("actor started", **_since_spawned())
        _run(loop, name)
    except FatalError as exc:
        cause = exc.__cause__ or exc
        log.error("actor failed", error=str(exc), error_type=type(cause).__name__, fatal=True)
        return EXIT_FATAL
    except Exception as exc:
        log.error("actor failed", error=str(exc), error_type=type(exc).__name__, exc_info=True)
        return 2
    log.info("actor stopped")
    return 0


def _since_spawned() -> dict[str, float]:
    """``ready_ms``: from the supervisor's exec to a loop ready to serve (imports, sockets,
    recovery), the figure a restart costs before anything else (CLOCK_MONOTONIC is one clock
    for every process of the host)."""
    spawned = os.environ.get(SPAWNED_VARIABLE, "")
    if not spawned.isdigit():
        return {}
    return {"ready_ms": round((time.monotonic_ns() - int(spawned)) / 1e6, 1)}


def _run(loop: Loop, name: str) -> None:
    """Run the loop, under cProfile when ``PROFILE_VARIABLE`` names a directory: the profile is
    written there as ``<name>.prof`` when the actor stops (see tools/profile.py)."""
    directory = os.environ.get(PROFILE_VARIABLE)
    if not directory:
        loop.run()
        return
    import cProfile

    # The loop thread's CPU time, not the wall clock: on a loaded machine a call preempted
    # midway would otherwise be charged for the other processes' turn.
    profiler = cProfile.Profile(time.thread_time)
    try:
        profiler.runcall(loop.run)
    finally:
        profiler.dump_stats(os.path.join(directory, f"{name}.prof"))


def _resident_bytes() -> int | None:
    """This process's resident set (Linux's /proc/self/statm), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
