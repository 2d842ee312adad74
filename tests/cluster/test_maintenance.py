"""Day-2 operations on a real 3-member cluster: quota and the NOSPACE alarm with its recovery
(compact, defrag, disarm), hash checks, and snapshots saved under a write load and restored
into a new cluster (through etcdzctl, which hands the data-dir work to the server's ``etcdz``
command, as etcdctl 3.5 hands it to etcdutl), that defragments offline and starts again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from etcdz import Client, ops, snapshot
from etcdz.errors import Compacted, NoSpace
from proto_schemas.maintenance import AlarmMember, AlarmType
from tools.cluster import LocalCluster, running

QUOTA = 1 << 20


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = str(tmp_path_factory.mktemp("quota"))
    with running(root, 3, extra_args=["--quota-backend-bytes", str(QUOTA)]) as c:
        yield c


def server(*args: str) -> subprocess.CompletedProcess[str]:
    """The server's ``etcdz`` command (etcdutl's offline commands)."""
    return subprocess.run(
        [sys.executable, "-m", "actors.supervisor", *args], capture_output=True, text=True, timeout=60
    )


def alarms_at(endpoint: str) -> list[AlarmMember]:
    with Client([endpoint], timeout=5) as c:
        return c.alarms().alarms


def ctl(cluster: LocalCluster, *args: str, endpoint: int | None = None) -> subprocess.CompletedProcess[str]:
    endpoints = cluster.endpoints if endpoint is None else [cluster.endpoints[endpoint]]
    return subprocess.run(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", ",".join(endpoints), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_full_backend_raises_nospace_everywhere_and_compact_defrag_disarm_recover(
    cluster: LocalCluster,
) -> None:
    with cluster.client() as c:
        with pytest.raises(NoSpace):
            for n in range(2000):  # 8 KiB values over 10 keys: the quota falls within ~150 puts
                c.put(f"/full/{n % 10}", os.urandom(8192))
        assert n < 1000
        raised = c.alarms().alarms
        assert [m.alarm for m in raised] == [AlarmType.NOSPACE]
        for i in range(3):  # every member refuses what would grow the backend, and still serves
            with Client([cluster.endpoints[i]], timeout=5) as member:
                for grow in (
                    lambda: member.put("/x", "y"),
                    lambda: member.txn([], [ops.put("/x", "y")]),
                    lambda: member.lease_grant(60),
                ):
                    with pytest.raises(NoSpace):
                        grow()
                assert member.get("/full/1").kvs
        # A member refusing a put for lack of room raises NOSPACE for itself; every member
        # holds the same list (the alarms are raft entries).
        everywhere = [alarms_at(e) for e in cluster.endpoints]
        assert everywhere[0] == everywhere[1] == everywhere[2]
        assert raised[0] in everywhere[0] and {m.alarm for m in everywhere[0]} == {AlarmType.NOSPACE}
        listed = ctl(cluster, "alarm", "list")
        assert listed.stdout == "".join(f"memberID:{m.member_id} alarm:NOSPACE\n" for m in everywhere[0])
        deleted = c.delete("/full/9")  # deletes and compaction go on
        assert deleted.deleted == 1
        c.compact(deleted.header.revision)
    defrag = ctl(cluster, "defrag", "--cluster")
    assert defrag.returncode == 0, defrag.stderr
    assert defrag.stdout.count("Finished defragmenting etcd member[") == 3
    with cluster.client() as c:
        assert c.status().db_size < QUOTA // 2
    disarm = ctl(cluster, "alarm", "disarm")
    assert disarm.stdout == listed.stdout
    with cluster.client() as c:
        deadline_puts = 0
        while True:  # the members re-measure their backends within a second
            try:
                c.put("/after", "room again")
                break
            except NoSpace:
                deadline_puts += 1
                assert deadline_puts < 30
                threading.Event().wait(0.2)
        assert c.alarms().alarms == []
    hashes = ctl(cluster, "endpoint", "hashkv")
    assert hashes.returncode == 0 and len(hashes.stdout.splitlines()) == 3


def test_snapshot_saved_under_write_load_is_consistent_and_checked(
    cluster: LocalCluster, tmp_path: os.PathLike[str]
) -> None:
    stop = threading.Event()

    def writer() -> None:
        with cluster.client() as c:
            lease = c.lease_grant(600).id
            n = 0
            while not stop.is_set():
                if n % 7 == 3:
                    c.delete(f"/load/{(n - 3) % 50}")
                else:
                    c.put(f"/load/{n % 50}", str(n), lease=lease if n % 5 == 0 else 0)
                n += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    path = os.path.join(str(tmp_path), "backup.db")
    planted = os.path.join(str(tmp_path), "planted")
    with open(planted, "w") as mine:
        mine.write("not yours")
    os.symlink(planted, path + ".part")  # a link where the partial file goes is not followed
    try:
        saved = ctl(cluster, "snapshot", "save", path, endpoint=1)
    finally:
        stop.set()
        t.join(10)
    assert saved.returncode == 0 and saved.stdout == f"Snapshot saved at {path}\n", saved.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600  # every key and password hash: the owner's only
    assert open(planted).read() == "not yours" and not os.path.exists(path + ".part")
    st = snapshot.status(path)
    assert st.revision > 1 and st.total_keys > 0 and st.total_size == os.path.getsize(path)
    shown = ctl(cluster, "snapshot", "status", path)
    assert shown.stdout.split(", ")[:3] == [f"{st.hash:x}", str(st.revision), str(st.total_keys)]
    for mode in ("simple", "json", "table"):  # etcdzctl's and the server's read the file alike
        assert (
            server("snapshot", "status", path, "-w", mode).stdout
            == ctl(cluster, "snapshot", "status", path, "-w", mode).stdout
        )
    restored_the_same(cluster, path, st.revision, os.path.join(str(tmp_path), "restored"))
    with open(path, "r+b") as f:  # one flipped byte in the middle
        f.seek(st.total_size // 2)
        byte = f.read(1)
        f.seek(st.total_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    broken = ctl(cluster, "snapshot", "status", path)
    assert broken.returncode != 0 and "integrity check failed" in broken.stderr
    offline = server("snapshot", "status", path)
    assert offline.returncode == 1 and "integrity check failed" in offline.stderr
    several = ctl(cluster, "snapshot", "save", path + "2")
    assert several.returncode != 0 and "one selected node" in several.stderr


def every_key(client: Client, **options: object) -> tuple[int, list[tuple[object, ...]]]:
    resp = client.get(b"\0", from_key=True, serializable=True, **options)
    return resp.header.revision, [
        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in resp.kvs
    ]


def restored_the_same(old: LocalCluster, path: str, revision: int, root: str) -> None:
    """Restore ``path`` into a new 3-member cluster: it starts at the snapshot's revision with
    every key as the old cluster had it then, under a new cluster id, and takes writes."""
    new = LocalCluster(root, 3)
    for m in new.members:
        made = ctl(
            new,
            "snapshot",
            "restore",
            path,
            "--data-dir",
            m.data_dir,
            "--name",
            m.name,
            "--initial-cluster",
            new.initial_cluster,
            "--initial-advertise-peer-urls",
            m.peer_url,
        )
        assert made.returncode == 0 and made.stdout == "" and "restored snapshot" in made.stderr, made.stderr
        assert made.stderr.startswith("Deprecated: Use `etcdz snapshot restore` instead.\n\n")
    again = ctl(new, "snapshot", "restore", path, "--data-dir", new.members[0].data_dir)
    assert again.returncode == 1 and "exists" in again.stderr
    with old.client() as c:
        _, expected = every_key(c, revision=revision)
        old_cluster_id = c.status().header.cluster_id
    new.start()
    try:
        new.wait_ready(timeout=30)
        for m in new.members:
            with m.client(timeout=5) as c:
                assert every_key(c) == (revision, expected), m.name
        with new.client() as c:
            assert c.status().header.cluster_id != old_cluster_id
            assert len(c.member_list().members) == 3
            assert c.put("/after-restore", "x").header.revision == revision + 1
            assert not c.alarms().alarms
            _, expected = every_key(c)
        in_use = server("defrag", "--data-dir", new.members[0].data_dir)
        assert in_use.returncode == 1 and "the member is running" in in_use.stderr
        new.stop()
        assert server("defrag", "--data-dir", new.members[0].data_dir).returncode == 0
        assert ctl(new, "defrag", "--data-dir", new.members[1].data_dir).returncode == 0
        new.start()
        new.wait_ready(timeout=30)
        for m in new.members:  # the defragmented backends hold what they held
            with m.client(timeout=5) as c:
                assert every_key(c) == (revision + 1, expected), m.name
    finally:
        new.stop()


def test_periodic_auto_compaction_compacts_every_member_to_a_retention_ago(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = str(tmp_path_factory.mktemp("autocompact"))
    retention = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"]
    with running(root, 3, extra_args=retention) as cluster:
        with cluster.client() as c:
            first = c.put("k", "0").header.revision
        deadline = time.monotonic() + 20
        compacted: set[str] = set()
        while len(compacted) < 3 and time.monotonic() < deadline:
            with cluster.client() as c:
                recent = c.put("k", "x").header.revision
            for m in cluster.members:
                with m.client(timeout=5) as c:
                    try:
                        c.get("k", revision=first, serializable=True)
                    except Compacted:
                        compacted.add(m.name)
                    # a retention period is kept: what was just written is still readable there
                    assert c.get("k", revision=min(recent, c.get("k").header.revision), serializable=True).kvs
            time.sleep(0.2)
        assert compacted == {"etcdz-1", "etcdz-2", "etcdz-3"}
        logs = "".join(open(m.log_path, encoding="utf-8").read() for m in cluster.members)
        assert "finished auto-compaction" in logs
