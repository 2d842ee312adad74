"""Corruption detection on a real 3-member cluster: a member whose backend diverged is caught by
its initial check at restart and by the leader's periodic check; a byte flipped on disk is
caught by LevelDB's checksums on read. The CORRUPT alarm then stops every write in the cluster
while reads go on."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import plyvel
import pytest

from actors.mvcc import keys as K
from etcdz import Client
from etcdz.errors import Corrupt, EtcdzError
from proto_schemas.maintenance import AlarmMember, AlarmType
from tools.cluster import LocalCluster, Member, running


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = str(tmp_path_factory.mktemp("corrupt"))
    with running(root, 3, extra_args=["--experimental-corrupt-check-time", "1s"]) as c:
        yield c


def diverge(member: Member, value: bytes) -> None:
    """Rewrite the record holding ``value`` with other bytes (the member is stopped): a backend
    that went its own way, as a bug in applying would make it; LevelDB's checksums are intact."""
    db = plyvel.DB(os.path.join(member.data_dir, "member", "db"))
    try:
        for ikey, raw in db.iterator(start=K.INDEX, stop=K.INDEX_END):
            create, version, lease, tombstone, stored = K.unpack_record(raw)
            if stored == value:
                db.put(ikey, K.pack_record(create, version, lease, b"diverged", tombstone))
                return
    finally:
        db.close()
    raise AssertionError("value not found")


def flipped(value: bytes) -> bytes:
    middle = len(value) // 2
    return value[:middle] + bytes([value[middle] ^ 0xFF]) + value[middle + 1 :]


def flip_a_byte_on_disk(member: Member, value: bytes, compact: bool = True) -> None:
    """Flip one byte of ``value`` inside the member's table files (the member is stopped), as
    a failing disk would. The value is random, so compression leaves it verbatim."""
    db_dir = os.path.join(member.data_dir, "member", "db")
    if compact:
        db = plyvel.DB(db_dir)
        db.compact_range()  # every record into table files (the write-ahead log would repair itself)
        db.close()
    for path in glob.glob(os.path.join(db_dir, "*.ldb")):
        with open(path, "r+b") as f:
            data = f.read()
            at = data.find(value)
            if at >= 0:
                f.seek(at + len(value) // 2)
                f.write(bytes([data[at + len(value) // 2] ^ 0xFF]))
                return
    raise AssertionError("value not found verbatim in the table files")


def load(cluster: LocalCluster, victim: Member) -> list[bytes]:
    """Random values under /data/ (enough for several table blocks), seen by ``victim``."""
    values = [os.urandom(200) for _ in range(100)]
    with cluster.client() as c:
        for i, value in enumerate(values):
            last = c.put(f"/data/{i:03}", value).header.revision
    with victim.client(timeout=5) as c:
        deadline = time.monotonic() + 10
        while c.get("/data/", prefix=True, serializable=True).header.revision < last:
            assert time.monotonic() < deadline, "the member did not catch up"
            time.sleep(0.1)
    return values


def logged(member: Member, text: str) -> bool:
    with open(member.log_path, encoding="utf-8") as f:
        return text in f.read()


def test_a_diverged_member_is_caught_and_the_cluster_refuses_writes(cluster: LocalCluster) -> None:
    victim = cluster.members[2]
    values = load(cluster, victim)
    victim_id = victim.member_id
    cluster.stop(victim)
    diverge(victim, values[50])
    victim.extra_args.append("--experimental-initial-corrupt-check")
    cluster.start(victim)

    expected = AlarmMember(member_id=victim_id, alarm=AlarmType.CORRUPT)
    healthy = cluster.members[0]
    leader = None
    deadline = time.monotonic() + 30
    with healthy.client(timeout=5) as c:
        while time.monotonic() < deadline:
            try:  # the victim may have led: an election follows its stop
                leader_id = c.status().leader
                leader = cluster.find(leader_id) if leader_id else None
                alarmed = expected in c.alarms().alarms
            except EtcdzError:
                time.sleep(0.3)
                continue
            if (
                leader is not None
                and alarmed
                and logged(victim, "found data inconsistency with peers")
                and logged(leader, "found hash mismatch")
            ):
                break
            time.sleep(0.3)
        assert expected in c.alarms().alarms
        assert logged(victim, "found data inconsistency with peers")  # its initial check
        assert leader is not None and logged(leader, "found hash mismatch")  # the leader's check
        with pytest.raises(Corrupt, match="etcdserver: corrupt cluster"):
            c.put("/after", "x")
        assert c.get("/data/000").kvs[0].value == values[0]  # reads go on
    for m in cluster.members:
        with Client([m.client_url], timeout=5) as c, pytest.raises(Corrupt):
            c.delete("/data/001")
    shown = subprocess.run(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", healthy.client_url, "alarm", "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"memberID:{victim_id} alarm:CORRUPT" in shown.stdout.splitlines()


def test_a_byte_flipped_on_disk_is_caught(cluster: LocalCluster) -> None:
    """Reads check LevelDB's block checksums: damage in what the backend reads at start stops
    the member for an operator; damage elsewhere is caught by a checked read (the member
    raises CORRUPT for itself) or by the hash comparison, and the cluster stops taking writes."""
    victim = cluster.members[1]
    values = load(cluster, victim)
    victim_id = victim.member_id
    cluster.stop(victim)
    flip_a_byte_on_disk(victim, values[0])  # the first index block, which start reads
    cluster.start(victim)
    assert victim.proc is not None and victim.proc.wait(30) == 1
    assert logged(victim, "member cannot start: an actor failed in a way a restart cannot cure")

    cluster.stop(victim)
    flip_a_byte_on_disk(victim, flipped(values[0]), compact=False)  # repaired by hand
    flip_a_byte_on_disk(victim, values[50], compact=False)  # a block in the middle: start reads none of it
    victim.extra_args.append("--experimental-initial-corrupt-check")
    cluster.start(victim)
    expected = AlarmMember(member_id=victim_id, alarm=AlarmType.CORRUPT)
    with cluster.members[0].client(timeout=5) as c:
        deadline = time.monotonic() + 30
        while True:
            try:
                if expected in c.alarms().alarms:
                    break
            except EtcdzError:
                pass
            assert time.monotonic() < deadline, "CORRUPT was not raised"
            time.sleep(0.3)
        with pytest.raises(Corrupt):
            c.put("/after", "x")
