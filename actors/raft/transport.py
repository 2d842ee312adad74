"""The peer mesh between raft cores: one ROUTER bound on the member's peer URLs, and per peer
two DEALER sockets connected to that peer's URLs.

Why this shape:
- DEALER -> ROUTER for the whole mesh: raft messages are one-way (every answer is itself a
  message), ZeroMQ reconnects by itself after a peer restarts, and the receiving ROUTER
  fair-queues between its connections. (The ROUTER could also answer a dialler that is not a
  member yet; raft itself never needs that.)
- Two lanes per peer: raft messages on one, snapshot chunks on the other. The receiving PULL
  reads both connections in turn, so a heartbeat never waits behind megabytes of snapshot
  (no head-of-line blocking); the snapshot lane's queue is short so a big snapshot cannot
  fill memory.
- ``IMMEDIATE`` and non-blocking sends: nothing queues for a peer that is not connected and a
  full queue drops instead of blocking the raft loop. Raft retransmits what is lost; the caller
  learns about drops (``unreachable``) and lets the leader fall back to probing that peer.
- Frames are plain CBOR (no envelope), decoded with an item bound. A frame that does not decode
  to a peer message, comes from another cluster, from a removed member or from a sender that
  is not verified is dropped with a warning (at most one a second per reason, with the count
  of those not logged), never a crash; nothing it names is connected to before it is verified.
- Verified: a member of the member table the raft core holds; or, for a member that does not
  know its leader yet (one joining, whose table is still empty, or one that is behind the
  membership changes), a sender whose advertised URLs are all valid and all named by
  ``--initial-cluster`` without belonging to another member of the table. Such a sender is
  reached at those URLs until the member table names it.
- A member's query (``MEMBER_QUERIES``: its corruption checker asking for our hash, its
  gateway passing on a lease keep-alive or time-to-live, or asking for a ReadIndex) is handed
  to ``on_query`` with the asker's routing identity, and answered later with ``answer``; one
  from another cluster or from a member that is not in our table is dropped, and so is one
  from a member whose messages are blocked by injected faults (a partition cuts its gateway
  off too; its raft messages and forwarded proposals are blocked the same way).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from actors.raft.membership import url_problem
from actors.runtime import curve as curvezmq
from actors.runtime.curve import Curve
from proto_schemas.cluster import (
    HashAnswer,
    HashQuery,
    JoinInfo,
    JoinQuery,
    PeerBatch,
    PeerFaults,
    ReadIndexAnswer,
    ReadIndexQuery,
    SnapshotChunk,
)
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.lease import LeaseAnswer, LeaseQuery
from proto_schemas.raft import RaftMessage

MSG_HWM = 10_000
SNAP_HWM = 8
MAX_PEER_FRAME = 64 * 1024 * 1024
MAX_PEER_ITEMS = 1 << 22  # CBOR items in one frame (a batch of ~500k small entries): ~250 MB at worst
MemberQuery = HashQuery | LeaseQuery | ReadIndexQuery
MEMBER_QUERIES = (HashQuery, LeaseQuery, ReadIndexQuery)  # answered later to the asker's connection
PEER_MESSAGES = (PeerBatch, SnapshotChunk, JoinQuery, *MEMBER_QUERIES)  # what a peer frame may hold
WARN_EVERY_S = 1.0  # one warning per drop reason at most this often
URL_SCHEMES = ("tcp", "ipc")


class _Peer:
    def __init__(self, ctx: zmq.Context[Any], urls: list[str], curve: Curve | None) -> None:
        self.urls = list(urls)
        self.msgs = _dealer(ctx, urls, MSG_HWM, curve)
        self.snaps = _dealer(ctx, urls, SNAP_HWM, curve)

    def close(self) -> None:
        self.msgs.close(linger=0)
        self.snaps.close(linger=0)


def _dealer(ctx: zmq.Context[Any], urls: list[str], hwm: int, curve: Curve | None) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    curvezmq.connect_as(sock, curve)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    for url in urls:
        sock.connect(url)
    return sock


class PeerTransport:
    def __init__(
        self,
        ctx: zmq.Context[Any],
        *,
        member_id: int,
        cluster_id: int,
        listen_urls: list[str],
        advertise_urls: list[str],
        log: structlog.BoundLogger,
        alive_s: float = 1.0,
        curve: Curve | None = None,
        initial_urls: list[str] | None = None,
    ) -> None:
        """``curve``: the mesh's CurveZMQ settings (a ZAP handler for its allowed keys must
        already serve in ``ctx`` when they are restricted). ``initial_urls``: the peer URLs
        ``--initial-cluster`` names (see the module's rules)."""
        self.ctx = ctx
        self.curve = curve
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.advertise_urls = list(advertise_urls)
        self.log = log
        self.alive_s = alive_s
        self.inbox = ctx.socket(zmq.ROUTER)
        self.inbox.setsockopt(zmq.RCVHWM, MSG_HWM)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, MAX_PEER_FRAME)
        self.inbox.setsockopt(zmq.LINGER, 0)
        curvezmq.serve(self.inbox, curve, "peers")
        for url in listen_urls:
            self.inbox.bind(url)
        self.peers: dict[int, _Peer] = {}
        self.known: dict[int, list[str]] = {}  # the member table's addresses
        self.heard: dict[int, float] = {}  # peer -> when we last received from it
        self.faults = PeerFaults()  # fault injection: partitions, loss, delay
        self.blocked: frozenset[int] = frozenset()
        self._held: deque[tuple[float, PeerBatch | SnapshotChunk]] = deque()  # delayed frames
        self._luck = random.Random()
        self.removed: frozenset[int] = frozenset()
        self.dropped = 0
        self.members: frozenset[int] = frozenset()  # the member table's ids
        self.initial_urls = frozenset(initial_urls or []) - frozenset(advertise_urls)
        self.admitted: dict[int, list[str]] = {}  # verified senders the table does not name yet
        self.refused = 0  # frames dropped on receipt
        self._warned: dict[str, tuple[float, int]] = {}  # reason -> (last warning, not logged)

    def set_peers(self, peers: dict[int, list[str]]) -> None:
        """Connect to the members of the current member table (not ourselves)."""
        self.members = frozenset(peers)
        self.known = {pid: urls for pid, urls in peers.items() if pid != self.member_id and urls}
        self.admitted = {pid: urls for pid, urls in self.admitted.items() if pid not in self.members}
        wanted = {**self.admitted, **self.known}
        for pid in list(self.peers):
            if pid not in wanted or self.peers[pid].urls != wanted[pid]:
                self.peers.pop(pid).close()
        for pid, urls in self.known.items():
            self._connect(pid, urls)

    def _connect(self, pid: int, urls: list[str]) -> bool:
        if pid in self.peers:
            return True
        bad = [problem for problem in map(lambda u: url_problem(u, URL_SCHEMES), urls) if problem]
        if bad:
            self._warn("peer not connected", reason=bad[0], peer=f"{pid:x}")
            return False
        try:
            self.peers[pid] = _Peer(self.ctx, urls, self.curve)
        except zmq.ZMQError as exc:  # a URL ZeroMQ refuses: never a crash of the raft loop
            self._warn("peer not connected", reason=str(exc), peer=f"{pid:x}")
            return False
        self.log.info("peer connected", peer=f"{pid:x}", urls=urls)
        return True

    def _warn(self, event: str, reason: str, **fields: Any) -> None:
        """A warning per ``reason`` at most every ``WARN_EVERY_S``: a flood of bad frames must
        not turn into a flood of log lines."""
        now = time.monotonic()
        last, quiet = self._warned.get(reason, (float("-inf"), 0))
        if now - last < WARN_EVERY_S:
            self._warned[reason] = (last, quiet + 1)
            return
        if len(self._warned) > 1024:  # reasons carry details: keep the table small
            self._warned.clear()
        self._warned[reason] = (now, 0)
        self.log.warning(event, reason=reason, not_logged=quiet, **fields)

    def _drop(self, reason: str, **fields: Any) -> None:
        self.refused += 1
        self._warn("peer frame dropped", reason, **fields)

    def _verified(self, msg: PeerBatch | SnapshotChunk) -> bool:
        """Whether ``msg`` comes from a peer we may talk to (see the module's rules); a sender
        admitted here is connected to at once."""
        sender = msg.from_
        if sender in self.members or sender in self.admitted:
            return sender != self.member_id
        if not isinstance(msg, PeerBatch) or not msg.from_urls:
            return False
        urls = list(msg.from_urls)
        taken = {u for pid, known in self.known.items() for u in known}
        if any(u not in self.initial_urls or u in taken for u in urls):
            return False
        if not self._connect(sender, urls):
            return False
        self.admitted[sender] = urls
        return True

    def started(self) -> set[int]:
        """Peers we heard from within ``alive_s`` (etcd's "started members" for reconfig checks)."""
        now = time.monotonic()
        return {pid for pid, t in self.heard.items() if now - t <= self.alive_s}

    def send(self, messages: list[RaftMessage]) -> list[int]:
        """Send messages grouped per peer, one frame per peer; returns the peers whose frame
        could not be queued (unknown, not connected, or queue full)."""
        by_peer: dict[int, list[RaftMessage]] = {}
        for m in messages:
            by_peer.setdefault(m.to, []).append(m)
        failed = []
        for pid, msgs in by_peer.items():
            batch = PeerBatch(
                cluster_id=self.cluster_id, from_=self.member_id, from_urls=self.advertise_urls, messages=msgs
            )
            frame = encode(batch)
            if not self._send(pid, frame, snapshot_lane=False):
                failed.append(pid)
        return failed

    def send_chunk(self, to: int, chunk: SnapshotChunk) -> bool:
        return self._send(to, encode(chunk), snapshot_lane=True)

    def _send(self, pid: int, frame: bytes, *, snapshot_lane: bool) -> bool:
        peer = self.peers.get(pid)
        if peer is None or pid in self.blocked:
            self.dropped += 1
            return False
        try:
            (peer.snaps if snapshot_lane else peer.msgs).send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
        except zmq.Again:
            self.dropped += 1
            return False
        return True

    def receive(
        self,
        frames: list[list[bytes]],
        on_batch: Callable[[PeerBatch | SnapshotChunk], None],
        on_join: Callable[[JoinQuery], JoinInfo],
        on_query: Callable[[bytes, MemberQuery], None] | None = None,
    ) -> None:
        for parts in frames:
            if len(parts) != 2:  # ROUTER: [sender identity, frame]
                self._drop("unexpected frame count")
                continue
            try:
                msg = decode(
                    parts[1],
                    expect=PEER_MESSAGES,
                    max_items=MAX_PEER_ITEMS,
                )
            except DecodeError as exc:
                self._drop("undecodable", error=str(exc)[:200])
                continue
            if isinstance(msg, JoinQuery):
                self._answer(parts[0], on_join(msg))
                continue
            if isinstance(msg, MEMBER_QUERIES):
                self._member_query(parts[0], msg, on_query)
                continue
            if msg.cluster_id != self.cluster_id:
                self._drop("cluster ID mismatch", sender=f"{msg.from_:x}")
                continue
            if msg.from_ in self.blocked or msg.from_ in self.removed:
                continue
            if not self._verified(msg):
                self._drop("sender is not a verified member", sender=f"{msg.from_:x}")
                continue
            if self.faults.drop_percent and self._luck.randrange(100) < self.faults.drop_percent:
                continue
            if self.faults.delay_ms or self._held:  # held frames keep their order
                self._held.append((time.monotonic() + self.faults.delay_ms / 1000, msg))
                continue
            self._deliver(msg, on_batch)
        self.release(on_batch)

    def inject(self, faults: PeerFaults) -> None:
        self.faults = faults
        self.blocked = frozenset(faults.blocked)

    def release(self, on_batch: Callable[[PeerBatch | SnapshotChunk], None]) -> None:
        """Deliver the delayed frames that are due (called from receive and a timer)."""
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            self._deliver(self._held.popleft()[1], on_batch)

    def _deliver(
        self, msg: PeerBatch | SnapshotChunk, on_batch: Callable[[PeerBatch | SnapshotChunk], None]
    ) -> None:
        if msg.from_ in self.blocked:
            return
        self.heard[msg.from_] = time.monotonic()
        on_batch(msg)

    def _answer(self, identity: bytes, info: JoinInfo) -> None:
        try:
            self.inbox.send_multipart([identity, encode(info)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the asker is gone
            self.log.debug("join answer dropped", error=str(exc))

    # -- member-to-member queries (hashes, followers' lease calls and ReadIndex rounds) --------
    def _member_query(
        self, identity: bytes, query: MemberQuery, handler: Callable[[bytes, MemberQuery], None] | None
    ) -> None:
        if query.cluster_id != self.cluster_id or query.from_ not in self.known or handler is None:
            self._drop(f"{type(query).__name__} not from a member of this cluster", sender=f"{query.from_:x}")
            return
        if query.from_ in self.blocked:
            return
        handler(identity, query)

    def answer(self, identity: bytes, answer: HashAnswer | LeaseAnswer | ReadIndexAnswer) -> None:
        try:
            self.inbox.send_multipart([identity, encode(answer)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the asker is gone
            self.log.debug("peer answer dropped", error=str(exc))

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()
        self.peers.clear()
        self.inbox.close(linger=0)
