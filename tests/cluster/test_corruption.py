"""Corruption detection on a real 3-member cluster: a byte flipped in one member's LevelDB
tables is caught by its initial check at restart and by the leader's periodic check; the
CORRUPT alarm then stops every write in the cluster while reads go on."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import plyvel
import pytest

from etcdz import Client
from etcdz.errors import Corrupt, EtcdzError
from proto_schemas.maintenance import AlarmMember, AlarmType
from tools.cluster import LocalCluster, Member, running


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = str(tmp_path_factory.mktemp("corrupt"))
    with running(root, 3, extra_args=["--experimental-corrupt-check-time", "1s"]) as c:
        yield c


def flip_a_value_byte(member: Member, values: list[bytes]) -> None:
    """Flip one byte inside a stored value in the member's table files (the member is stopped).
    The values are random, so compression leaves them verbatim and one is found as is."""
    db_dir = os.path.join(member.data_dir, "member", "db")
    db = plyvel.DB(db_dir)
    db.compact_range()  # every record into table files (the write-ahead log would repair itself)
    db.close()
    for path in glob.glob(os.path.join(db_dir, "*.ldb")):
        with open(path, "r+b") as f:
            data = f.read()
            for value in values:
                at = data.find(value)
                if at >= 0:
                    f.seek(at + len(value) // 2)
                    f.write(bytes([data[at + len(value) // 2] ^ 0xFF]))
                    return
    raise AssertionError("no value found verbatim in the table files")


def logged(member: Member, text: str) -> bool:
    with open(member.log_path, encoding="utf-8") as f:
        return text in f.read()


def test_a_corrupted_member_is_caught_and_the_cluster_refuses_writes(cluster: LocalCluster) -> None:
    values = [os.urandom(64) for _ in range(20)]
    with cluster.client() as c:
        for i, value in enumerate(values):
            last = c.put(f"/data/{i}", value).header.revision
    victim = cluster.members[2]
    with victim.client(timeout=5) as c:
        deadline = time.monotonic() + 10
        while c.get("/data/", prefix=True, serializable=True).header.revision < last:
            assert time.monotonic() < deadline, "the member did not catch up"
            time.sleep(0.1)
    victim_id = victim.member_id
    cluster.stop(victim)
    flip_a_value_byte(victim, values)
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
        assert c.get("/data/0").kvs[0].value == values[0]  # reads go on
    for m in cluster.members:
        with Client([m.client_url], timeout=5) as c, pytest.raises(Corrupt):
            c.delete("/data/1")
    shown = subprocess.run(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", healthy.client_url, "alarm", "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"memberID:{victim_id} alarm:CORRUPT" in shown.stdout.splitlines()
