"""``snapshot restore``: a new member's data dir made from a snapshot file, offline.

As etcdutl does: the backend is the snapshot's records with a new consistent index, and the
log starts from a raft snapshot at index n (n = the members of the new cluster, term 1) whose
conf state and member table are the new cluster's. Every member restored from the same file
with the same ``--initial-cluster`` and token gets the same ids and the same log, so they form
one cluster with a new cluster id; nothing of the old cluster's membership survives. Alarms
name members of the old cluster and are dropped; leases are kept (the new leader renews their
TTLs, as after any leader change).

The data dir is built beside its target and renamed into place, so a crash leaves either no
data dir or a complete one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import plyvel

from actors.mvcc import keys as K
from actors.raft.membership import MemberTable, bootstrap_changes
from actors.runtime.config import cluster_id_for, member_id_for
from actors.supervisor.flags import check_member, parse_initial_cluster
from actors.wal import snapfiles
from actors.wal.files import Wal
from proto_schemas.codec import encode
from proto_schemas.raft import HardState, Snapshot, SnapshotMetadata

RESTORE_TERM = 1


class RestoreError(Exception):
    """The restore cannot go ahead (the message says why, in etcdutl's words where it has some)."""


@dataclass(frozen=True)
class RestorePlan:
    name: str
    member_id: int
    cluster_id: int
    snapshot: Snapshot  # the raft snapshot the new log starts from

    @property
    def index(self) -> int:
        return self.snapshot.metadata.index

    @property
    def hard_state(self) -> HardState:
        return HardState(term=RESTORE_TERM, vote=0, commit=self.index)


def plan(name: str, initial_cluster: str, token: str, advertise_peer_urls: list[str]) -> RestorePlan:
    """The ids and first raft snapshot of one member of the restored cluster."""
    try:
        cluster = parse_initial_cluster(initial_cluster)
        check_member(name, cluster, advertise_peer_urls)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    ids = {member_id_for(n, urls, token): (n, urls) for n, urls in cluster.items()}
    table = MemberTable()
    for cc in bootstrap_changes(ids):
        table.apply(cc)
    meta = SnapshotMetadata(index=len(ids), term=RESTORE_TERM, conf_state=table.conf_state())
    return RestorePlan(
        name=name,
        member_id=member_id_for(name, advertise_peer_urls, token),
        cluster_id=cluster_id_for(list(ids)),
        snapshot=Snapshot(metadata=meta, data=encode(table.snapshot())),
    )


def kept(pairs: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The records of one piece the new member's backend keeps (its consistent index is set
    apart, once every record is in)."""
    for i in range(0, len(pairs), 2):
        key = pairs[i]
        if not key.startswith(K.ALARM) and key != K.META_CONSISTENT_INDEX:
            yield key, pairs[i + 1]


def restore(data_dir: str, restore_plan: RestorePlan, pieces: Iterable[list[bytes]]) -> None:
    """Write the member's data dir: backend, raft snapshot file, WAL (refuses an existing dir)."""
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(data_dir):
        raise RestoreError(f'data-dir "{data_dir}" exists')
    building = data_dir + ".restoring"
    shutil.rmtree(building, ignore_errors=True)
    member = os.path.join(building, "member")
    os.makedirs(member, mode=0o700)
    try:
        db = plyvel.DB(os.path.join(member, "db"), create_if_missing=True, error_if_exists=True)
        try:
            for pairs in pieces:
                with db.write_batch() as wb:
                    for key, value in kept(pairs):
                        wb.put(key, value)
            db.put(K.META_CONSISTENT_INDEX, K.int_bytes(restore_plan.index), sync=True)
        finally:
            db.close()
        snapfiles.save(os.path.join(member, "snap"), restore_plan.snapshot)
        wal, _ = Wal.open(
            os.path.join(member, "wal"), member_id=restore_plan.member_id, cluster_id=restore_plan.cluster_id
        )
        with wal:
            meta = restore_plan.snapshot.metadata
            wal.save_snapshot(meta.index, meta.term)
            wal.append([], restore_plan.hard_state)
            wal.sync()
        os.rename(building, data_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    fd = os.open(os.path.dirname(data_dir), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
