"""The MVCC backend's shell: the sole owner of the LevelDB database.

One inbox carries apply batches (from the apply worker) and reads (from the gateway); they are
handled in arrival order, which is what makes a linearizable read correct: the gateway sends a
read only after it saw the apply result that covers its read index, so the batch is already
in the database when the read arrives. A batch's results go from here straight to the gateway
(``Results``), its lease events to the lease expirer, and only ``ApplyDone`` to the apply
worker: one hop less per write, and a restarting apply worker loses no answer.

After each apply batch is committed, its events go out on a PUB socket for the watch hubs (one
``EventBatch`` per batch, revisions contiguous), with a heartbeat of the current revision every
``HEARTBEAT_S`` so that a hub that missed a batch notices. PUB never blocks the backend: under
overload it drops, and the hubs read what they missed back from history. The socket is an XPUB
so that the backend knows whether any hub listens (an idle hub unsubscribes): with none, a
batch is not even encoded, as a PUB socket would have dropped it unsent.
"""

from __future__ import annotations

import os
import time
from typing import Any

import plyvel
import structlog
import zmq

from actors.mvcc import keys as K
from actors.mvcc import snapshots
from actors.mvcc.store import MvccStore
from actors.mvcc.verified import Verified
from actors.runtime import curve, failpoints
from actors.runtime.config import NodeConfig
from actors.runtime.listen import bind_all
from actors.runtime.loop import FatalError, Loop, send
from proto_schemas.cluster import SnapshotChunk, SnapshotInstalled, SnapshotPiece, SnapshotPull
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorCode, EtcdzError, error_response
from proto_schemas.internal import (
    ActorStarted,
    ApplyBatch,
    ApplyDone,
    BackendStateRequest,
    Committed,
    InternalRequest,
    ReadBatch,
    ReadRequest,
    ReadResult,
    ReadResults,
    Results,
)
from proto_schemas.kv import HashKVRequest, RangeRequest, RangeStreamRequest
from proto_schemas.lease import (
    LeaseEvent,
    LeaseEvents,
    LeaseLeasesRequest,
    LeaseRead,
    LeaseTableRequest,
    LeaseTimeToLiveRequest,
)
from proto_schemas.maintenance import (
    AlarmType,
    DefragmentRequest,
    DefragmentResponse,
    SnapshotRequest,
    SnapshotResponse,
)
from proto_schemas.raft import EntryType
from proto_schemas.watch import EventBatch, WatchHistoryRequest

DB_SIZE_REFRESH_S = 1.0
HEARTBEAT_S = 0.5
EVENTS_HWM = 100_000
HISTORY_BYTES = (1 << 10, 4 << 20)  # what a hub may ask for in one history read


def db_size(path: str) -> int:
    total = 0
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_file():
                total += entry.stat().st_size
    return total


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    recovered = snapshots.recover(config.db_dir)
    if recovered:
        log.warning(recovered)
    os.makedirs(config.db_dir, mode=0o700, exist_ok=True)

    def open_store() -> MvccStore:
        db = plyvel.DB(config.db_dir, create_if_missing=True)
        try:
            return MvccStore(Verified(db), cluster_id=config.cluster_id, member_id=config.member_id)
        except plyvel.CorruptionError as exc:
            raise FatalError(f"backend corrupted: {exc}") from exc

    store = open_store()
    log.info(
        "backend opened",
        consistent_index=store.consistent_index,
        revision=store.current_revision,
        compact_revision=store.compact_revision,
    )
    inbox = loop.inbox(config.inbox("mvcc"))
    outs = {
        "apply": loop.outbox(config.inbox("apply")),
        "gateway": loop.outbox(config.inbox("gateway")),
        "raft": loop.outbox(config.inbox("raft")),
        "lease": loop.outbox(config.inbox("lease")),
    }
    # Hubs on other hosts authenticate with the members' key pair; clients' keys are refused.
    events_curve = config.events_curve()
    curve.guard(loop, events_curve)
    events = loop.ctx.socket(zmq.XPUB)
    events.setsockopt(zmq.SNDHWM, EVENTS_HWM)
    events.setsockopt(zmq.LINGER, 0)
    curve.serve(events, events_curve, "events")
    events.bind(config.events_url)
    bind_all(events, config.listen_events_urls, "--listen-events-urls")
    # Topics some hub subscribes to: an XPUB reports a topic's first subscription (b"\x01"
    # + topic) and its last one's end (b"\x00" + topic), a hub's disconnection included.
    topics: set[bytes] = set()

    def subscriptions(batch: list[list[bytes]]) -> None:
        for frames in batch:
            change = frames[-1]
            if change[:1] == b"\x01":
                topics.add(change[1:])
            elif change[:1] == b"\x00":
                topics.discard(change[1:])

    loop.on_frames(events, subscriptions)

    def publish(first_revision: int, batch_events: list[Any]) -> None:
        if not topics:
            return  # no hub listens: PUB would drop the batch, so it is not made at all
        batch = EventBatch(
            first_revision=first_revision,
            revision=store.current_revision,
            compact_revision=store.compact_revision,
            events=batch_events,
            cluster_id=config.cluster_id,
        )
        try:
            send(events, batch, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # a hub too slow to keep up reads the rest from history

    def heartbeat() -> None:
        publish(store.current_revision + 1, [])

    outgoing: dict[int, snapshots.Outgoing] = {}
    for_clients = snapshots.ForClients()
    incoming: list[snapshots.Incoming] = []  # at most one install at a time
    size = [db_size(config.db_dir)]
    metrics = loop.metrics
    m_commit = metrics.histogram(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend (an apply batch, written in one "
        "LevelDB write).",
    )
    m_size = metrics.gauge(
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
    )
    m_in_use = metrics.gauge(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
    )
    m_revision = metrics.gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.")
    m_compacted = metrics.gauge(
        "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store."
    )
    m_alarms = metrics.gauge("etcdz_alarms", "Alarms raised in the cluster, by type.", ["alarm"])

    def refresh_size() -> None:
        size[0] = db_size(config.db_dir)
        m_size.set(size[0])
        m_in_use.set(store.state(db_size=size[0]).db_size_in_use)
        m_revision.set(store.current_revision)
        m_compacted.set(store.compact_revision)
        m_alarms.clear()
        for alarm in (AlarmType.NOSPACE, AlarmType.CORRUPT):
            m_alarms.set(sum(1 for _, a in store.alarms.raised if a == alarm), alarm=alarm.name)

    def pull(req: SnapshotPull) -> None:
        """A piece of a snapshot for a follower (the first pull opens the snapshot)."""
        snap = outgoing.get(req.snap_id)
        if req.close:
            if snap is not None:
                outgoing.pop(req.snap_id).close()
            return
        if snap is None:
            snap = outgoing[req.snap_id] = snapshots.Outgoing(store.db, store.consistent_index)
            log.info("snapshot send started", snap_id=req.snap_id, index=snap.index)
        seq, pairs, last = snap.next_piece()
        if last:
            del outgoing[req.snap_id]
        send(
            outs["raft"],
            SnapshotPiece(snap_id=req.snap_id, seq=seq, index=snap.index, pairs=pairs, last=last),
        )

    def send_lease_table() -> None:
        """The whole lease table, for the lease expirer (at its start, after a snapshot)."""
        table = [LeaseEvent(id=i, ttl=ttl, remaining=rem) for i, (ttl, rem) in store.leases.leases.items()]
        send(outs["lease"], LeaseEvents(index=store.consistent_index, events=table, initial=True))

    def replace_backend(ready: str) -> None:
        """Swap a complete copy in for the backend (copies being read from the old one end)."""
        nonlocal store
        for snap in outgoing.values():
            snap.close()
        outgoing.clear()
        for_clients.close()
        store.db.close()
        snapshots.swap_in(config.db_dir, ready)
        store = open_store()
        refresh_size()

    def install(chunk: SnapshotChunk) -> None:
        if chunk.seq == 0:
            for old in incoming:
                old.abandon()
            incoming[:] = [snapshots.Incoming(config.db_dir, chunk.snap_id)]
        current = incoming[0] if incoming and incoming[0].snap_id == chunk.snap_id else None
        if current is None:
            return  # the rest of an abandoned snapshot
        if not current.add(chunk.seq, list(chunk.pairs)):
            current.abandon()
            incoming.clear()
            log.warning("snapshot install abandoned", snap_id=chunk.snap_id, reason="piece out of order")
            send(outs["raft"], SnapshotInstalled(snap_id=chunk.snap_id, error="piece out of order"))
            return
        if chunk.done is None:
            return
        incoming.clear()
        replace_backend(current.finish())
        log.info("snapshot installed", index=store.consistent_index, revision=store.current_revision)
        send_lease_table()
        send(outs["gateway"], store.state(db_size=size[0], auth=store.auth.state()))  # a new auth store
        heartbeat()
        send(outs["raft"], SnapshotInstalled(snap_id=chunk.snap_id, index=store.consistent_index))

    def apply(batch: ApplyBatch) -> None:
        requests: list[tuple[int, int, InternalRequest]] = []
        last = 0
        for raw in batch.committed:
            entries = decode(raw, Committed).entries
            last = entries[-1].index
            for entry in entries:
                if entry.type != EntryType.NORMAL or not entry.data:
                    continue
                try:
                    requests.append((entry.index, entry.term, decode(entry.data, InternalRequest)))
                except DecodeError as exc:  # the gateway validated it; a bad entry is a bug
                    log.error("undecodable entry skipped", index=entry.index, error=str(exc))
        revision_before = store.current_revision
        compacted_before = store.compact_revision
        alarms_before = set(store.alarms.raised)
        store.events_wanted = bool(topics)  # no hub listens: publish() would drop them
        started = time.perf_counter()
        results = store.apply(requests, last_index=last)
        m_commit.observe(time.perf_counter() - started)
        failpoints.hit("mvcc-after-commit")
        if store.alarms.raised != alarms_before:
            for member_id, alarm in sorted(store.alarms.raised - alarms_before):
                log.warning("alarm raised", alarm=alarm.name, member=f"{member_id:x}")
            for member_id, alarm in sorted(alarms_before - store.alarms.raised):
                log.info("alarm cleared", alarm=alarm.name, member=f"{member_id:x}")
        applied_events = store.take_events()
        if applied_events or store.compact_revision != compacted_before:
            # A compaction makes no event, but hubs must hear of it before a client that saw
            # it acknowledged creates a watch below it.
            publish(revision_before + 1, applied_events)
        auth, tokens = store.auth.take_changes()
        applied = store.consistent_index
        # The lease expirer hears of a grant before the gateway can answer it, so that a
        # keep-alive right after the grant normally finds the lease (see the lease shell).
        lease_events = store.leases.take_events()
        if lease_events:
            send(outs["lease"], LeaseEvents(index=applied, events=lease_events))
        send(
            outs["gateway"],
            Results(
                applied_index=applied,
                results=results,
                db_size=size[0],
                revision=store.current_revision,
                auth=auth,
                tokens=tokens,
            ),
        )
        send(outs["apply"], ApplyDone(applied_index=applied))

    def read(req: ReadRequest) -> None:
        send(outs.get(req.reply_to, outs["gateway"]), answer(req))

    def read_batch(batch: ReadBatch) -> None:
        """One ``ReadResults`` per asker (a gateway's batch names only the gateway)."""
        answers: dict[str, list[ReadResult]] = {}
        for req in batch.reads:
            answers.setdefault(req.reply_to, []).append(answer(req))
        for reply_to, results in answers.items():
            send(outs.get(reply_to, outs["gateway"]), ReadResults(results=results))

    def answer(req: ReadRequest) -> ReadResult:
        try:
            request = decode(req.body)
            response: Any
            if isinstance(request, RangeRequest):
                response = store.range(request, req.raft_term)
            elif isinstance(request, RangeStreamRequest):
                response = store.range_stream(request, req.raft_term)
            elif isinstance(request, HashKVRequest):
                response = store.hash_kv_response(request, req.raft_term)
            elif isinstance(request, LeaseTimeToLiveRequest):
                response = store.lease_time_to_live(request, None)
            elif isinstance(request, LeaseLeasesRequest):
                response = store.lease_leases()
            elif isinstance(request, DefragmentRequest):
                response = defragment()
            elif isinstance(request, SnapshotRequest):
                response = snapshot_piece(request)
            elif isinstance(request, WatchHistoryRequest):
                limit = min(max(request.max_bytes, HISTORY_BYTES[0]), HISTORY_BYTES[1])
                response = store.history(request.start_revision, limit)
            else:
                raise EtcdzError(ErrorCode.UNKNOWN_OP, type(request).__name__)
            body = encode(response)
        except EtcdzError as exc:
            body = encode(exc.to_response())
        except DecodeError as exc:
            body = encode(error_response(ErrorCode.BAD_REQUEST, str(exc)))
        except plyvel.CorruptionError as exc:  # refused, not served: the gateway raises CORRUPT
            log.error("backend corruption detected", error=str(exc))
            body = encode(error_response(ErrorCode.CORRUPT))
        return ReadResult(read_id=req.read_id, body=body)

    def defragment() -> DefragmentResponse:
        """etcd's defrag: the live records are copied into a fresh LevelDB that replaces the
        backend, so the space of compacted and deleted records is returned to the disk
        (LevelDB's own compaction leaves its bottom level as it is). The copy goes through
        the snapshot install's crash-safe swap."""
        if incoming:
            raise EtcdzError(ErrorCode.UNAVAILABLE, "a snapshot install is in progress")
        before = db_size(config.db_dir)
        started = time.monotonic()
        copy = snapshots.Incoming(config.db_dir, snap_id=0)
        source = snapshots.Outgoing(store.db, store.consistent_index)
        done = False
        while not done:
            seq, pairs, done = source.next_piece()
            copy.add(seq, pairs)
        replace_backend(copy.finish())
        took = round(time.monotonic() - started, 3)
        log.info("defragmented", db_size_before=before, db_size_after=size[0], took_s=took)
        return DefragmentResponse(header=store.header(), db_size_before=before, db_size_after=size[0])

    def snapshot_piece(req: SnapshotRequest) -> SnapshotResponse:
        def opener() -> snapshots.Outgoing:
            log.info("snapshot for a client started", revision=store.current_revision)
            return snapshots.Outgoing(
                store.db, store.consistent_index, store.current_revision, store.compact_revision
            )

        try:
            snap_id, copy, seq, pairs, done = for_clients.piece(
                opener, req.snap_id, req.seq, time.monotonic()
            )
        except KeyError:
            raise EtcdzError(
                ErrorCode.BAD_REQUEST, "no such snapshot in progress (closed after 30 s idle)"
            ) from None
        if done:
            log.info("snapshot for a client sent", revision=copy.revision, pieces=seq + 1)
        return SnapshotResponse(
            header=store.header(),
            snap_id=snap_id,
            seq=seq,
            pairs=pairs,
            done=done,
            revision=copy.revision,
            compact_revision=copy.compact_revision,
            consistent_index=copy.index,
        )

    def state(req: BackendStateRequest) -> None:
        target = outs.get(req.reply_to)
        if target is None:
            log.error("state request from unknown actor", reply_to=req.reply_to)
            return
        if req.sync:
            store.db.put(K.META_CONSISTENT_INDEX, K.int_bytes(store.consistent_index), sync=True)
        auth = store.auth.state() if req.reply_to == "gateway" else None
        send(target, store.state(read_id=req.read_id, db_size=size[0], auth=auth))

    def handle(msgs: list[object]) -> None:
        try:
            dispatch(msgs)
        except plyvel.CorruptionError as exc:  # applying on garbled data would spread it: stop
            raise FatalError(f"backend corrupted: {exc}") from exc

    def dispatch(msgs: list[object]) -> None:
        for msg in msgs:
            if isinstance(msg, ApplyBatch):
                apply(msg)
            elif isinstance(msg, ReadRequest):
                read(msg)
            elif isinstance(msg, ReadBatch):
                read_batch(msg)
            elif isinstance(msg, BackendStateRequest):
                state(msg)
            elif isinstance(msg, SnapshotPull):
                pull(msg)
            elif isinstance(msg, LeaseTableRequest):
                table = [
                    LeaseEvent(id=i, ttl=ttl, remaining=rem) for i, (ttl, rem) in store.leases.leases.items()
                ]
                send(outs["lease"], LeaseEvents(index=store.consistent_index, events=table, initial=True))
            elif isinstance(msg, LeaseRead):
                response = store.lease_time_to_live(msg.request, msg.remaining)
                to = outs.get(msg.reply_to, outs["gateway"])
                send(to, ReadResult(read_id=msg.read_id, body=encode(response)))
            elif isinstance(msg, SnapshotChunk):
                install(msg)

    loop.on_messages(inbox, handle)
    send(outs["gateway"], ActorStarted(actor="mvcc"))  # reads sent to a backend before us are lost
    loop.every(DB_SIZE_REFRESH_S, refresh_size)
    loop.every(HEARTBEAT_S, heartbeat)
    loop.every(5.0, lambda: for_clients.expire(time.monotonic()))
    return loop
