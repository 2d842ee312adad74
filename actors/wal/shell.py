"""The WAL writer's shell: replay on start, then group commit.

Every ``Persist`` drained in one loop iteration is appended and made durable by a single
fsync; what arrives while that fsync runs waits in the socket and forms the next batch. Only
then is ``Persisted`` sent, carrying the raft messages that had to wait for durability
(a follower's append response, a vote) — so nothing is acknowledged before it is on disk.

Snapshots: a snapshot file is written before its WAL marker (a marker never names a missing
file), and segments are released only up to the snapshot's index — the raft core asks for a
snapshot only at an index the backend has synced (DESIGN.md principle 4).

A raft core restarted alone loads the log from this writer's ``WalLog`` (what a replay would
find) without a replay; the batch open at its ``WalLoad`` is made durable first, and what its
predecessor sent later is dropped (see core.py, generations).
"""

from __future__ import annotations

import time

import structlog

from actors.runtime import failpoints
from actors.runtime.config import NodeConfig
from actors.runtime.loop import FatalError, Loop, send
from actors.wal import snapfiles
from actors.wal.core import WalLog, WalWriterCore
from actors.wal.files import Wal
from actors.wal.records import WalCorruptError
from actors.wal.replay import WalMismatchError
from proto_schemas.cluster import SaveSnapshot, SnapshotSaved
from proto_schemas.internal import Persist, WalLoad, WalState
from proto_schemas.raft import Snapshot


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    started = time.monotonic()
    try:
        wal, contents = Wal.open(
            config.wal_dir,
            member_id=config.member_id,
            cluster_id=config.cluster_id,
            segment_bytes=config.wal_segment_bytes,
            logger=log,
        )
        snapshot = None
        if contents.snapshot is not None:
            snapshot = snapfiles.load(config.snap_dir, contents.snapshot.term, contents.snapshot.index)
    except (WalCorruptError, WalMismatchError, snapfiles.SnapshotFileError) as exc:
        raise FatalError(str(exc)) from exc
    log.info(
        "wal replayed",
        entries=len(contents.entries),
        hard_state=str(contents.hard_state),
        snapshot_index=snapshot.metadata.index if snapshot is not None else 0,
        seconds=round(time.monotonic() - started, 3),
    )
    core = WalWriterCore(last_index=wal.last_index, last_term=wal.last_term, hard_state=contents.hard_state)
    held = WalLog(contents.entries, contents.hard_state, snapshot)
    del contents  # ``held`` has its entries
    fsync_seconds = loop.metrics.histogram(
        "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL."
    )
    inbox = loop.inbox(config.inbox("wal"))
    to_raft = loop.outbox(config.inbox("raft"))

    def save_snapshot(snap: Snapshot) -> None:
        snapfiles.save(config.snap_dir, snap)
        wal.save_snapshot(snap.metadata.index, snap.metadata.term)

    def handle(msgs: list[object]) -> None:
        for msg in msgs:
            if isinstance(msg, Persist):
                if not core.add(msg):
                    log.warning("dropped a dead raft core's write", entries=len(msg.entries))
            elif isinstance(msg, SaveSnapshot):
                # Entries up to the snapshot are durable already (it is taken at an applied
                # index), so the marker may precede whatever the open batch still holds.
                save_snapshot(msg.snapshot)
                held.snapshot_saved(msg.snapshot)
                released = wal.release_to(msg.snapshot.metadata.index)
                log.info("snapshot saved", index=msg.snapshot.metadata.index, segments_released=released)
                send(to_raft, SnapshotSaved(index=msg.snapshot.metadata.index))
            elif isinstance(msg, WalLoad):
                flush()  # what the old core sent before it died belongs to the log it loads
                core.generation = msg.generation
                send(
                    to_raft,
                    WalState(
                        member_id=config.member_id,
                        cluster_id=config.cluster_id,
                        hard_state=held.hard_state,
                        entries=held.entries,
                        snapshot=held.snapshot,
                    ),
                )

    def flush() -> None:
        batch = core.take_batch()
        if batch is None:
            return
        if batch.snapshot is not None:
            save_snapshot(batch.snapshot)
            log.info("snapshot installed", index=batch.snapshot.metadata.index)
        wal.append(batch.entries, batch.hard_state)
        held.saved(batch)
        if not batch.must_sync:  # only the commit index moved: the next fsync carries it
            send(to_raft, core.persisted(batch))
            return
        failpoints.hit("wal-before-fsync")
        started = time.perf_counter()
        wal.sync()
        took = time.perf_counter() - started
        failpoints.hit("wal-after-fsync")
        fsync_seconds.observe(took)
        log.debug("wal synced", entries=len(batch.entries), fsync_ms=round(took * 1000, 3))
        send(to_raft, core.persisted(batch))

    loop.on_messages(inbox, handle)
    loop.after_batch(flush)
    return loop
