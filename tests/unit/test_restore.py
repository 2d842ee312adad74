"""snapshot restore's plan: the same new cluster on every member, etcdutl's refusals, and the
records a restored backend keeps; offline defrag of a data dir (a real LevelDB, no member), and
the client's delegation of both to the server's command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import plyvel
import pytest

from actors.mvcc import keys as K
from actors.raft.membership import MemberTable
from actors.supervisor.offline import defrag
from actors.supervisor.restore import RestoreError, kept, plan
from etcdz import _cli_format as fmt
from etcdz._cli_maintenance import run_server_command

CLUSTER = "a=tcp://127.0.0.1:1,b=tcp://127.0.0.1:2,c=tcp://127.0.0.1:3"


def test_every_member_plans_the_same_cluster_and_log_start() -> None:
    plans = [plan(n, CLUSTER, "tok", [f"tcp://127.0.0.1:{i}"]) for i, n in enumerate("abc", 1)]
    assert len({p.cluster_id for p in plans}) == 1
    assert len({p.member_id for p in plans}) == 3
    first = plans[0]
    assert all(p.snapshot == first.snapshot for p in plans)
    assert (first.index, first.snapshot.metadata.term) == (3, 1)
    assert first.hard_state.commit == 3 and first.hard_state.vote == 0
    table = MemberTable.restore(first.snapshot.data)
    assert sorted(m.name for m in table.members.values()) == ["a", "b", "c"]
    assert sorted(first.snapshot.metadata.conf_state.voters) == sorted(p.member_id for p in plans)


def test_a_new_token_makes_a_new_cluster() -> None:
    one = plan("a", CLUSTER, "tok", ["tcp://127.0.0.1:1"])
    other = plan("a", CLUSTER, "tok2", ["tcp://127.0.0.1:1"])
    assert one.cluster_id != other.cluster_id and one.member_id != other.member_id


@pytest.mark.parametrize(
    ("name", "urls", "message"),
    [
        ("d", ["tcp://127.0.0.1:4"], 'couldn\'t find local name "d"'),
        ("a", ["tcp://127.0.0.1:2"], "missing from --initial-advertise-peer-urls"),
    ],
)
def test_refuses_a_member_not_in_the_initial_cluster(name: str, urls: list[str], message: str) -> None:
    with pytest.raises(RestoreError, match=message):
        plan(name, CLUSTER, "tok", urls)


def test_restored_backend_drops_old_alarms_and_consistent_index() -> None:
    pairs = [
        K.alarm_key(7, 1),
        b"",
        K.META_CONSISTENT_INDEX,
        K.int_bytes(900),
        K.META_REVISION,
        K.int_bytes(12),
        K.index_key(b"k", 12, 0),
        K.pack_record(12, 1, 0, b"v"),
    ]
    assert dict(kept(pairs)) == {K.META_REVISION: K.int_bytes(12), K.index_key(b"k", 12, 0): pairs[7]}


def _backend(data_dir: Path, records: int) -> dict[bytes, bytes]:
    """A member's backend as LevelDB holds it, half of its records then deleted (the space a
    defrag returns); -> what is left."""
    (data_dir / "member").mkdir(parents=True)
    db = plyvel.DB(str(data_dir / "member" / "db"), create_if_missing=True)
    for n in range(records):
        db.put(K.index_key(b"k%d" % n, n + 1, 0), K.pack_record(n + 1, 1, 0, b"v" * 512))
    for n in range(0, records, 2):
        db.delete(K.index_key(b"k%d" % n, n + 1, 0))
    db.put(K.META_REVISION, K.int_bytes(records), sync=True)
    left = dict(db.iterator())
    db.close()
    return left


def test_offline_defrag_keeps_every_record_and_refuses_a_backend_in_use(tmp_path: Path) -> None:
    left = _backend(tmp_path, 2000)
    db_dir = tmp_path / "member" / "db"
    installing = tmp_path / "member" / "db.incoming"  # a running member's snapshot install
    installing.mkdir()
    holder = plyvel.DB(str(db_dir))  # as a running member holds it
    with pytest.raises(plyvel.IOError, match="lock"):
        defrag(str(tmp_path))
    assert installing.exists()  # refused before anything was touched
    holder.close()
    before, after = defrag(str(tmp_path))
    assert before > 0 and after > 0
    db = plyvel.DB(str(db_dir))
    assert dict(db.iterator()) == left
    db.close()
    assert sorted(os.listdir(tmp_path / "member")) == ["db"]  # no copy left beside it
    with pytest.raises(FileNotFoundError, match="cannot open database"):
        defrag(str(tmp_path / "nowhere"))


def _command(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_defrag_data_dir_runs_offline_from_etcdz_and_from_etcdzctl_with_a_note(tmp_path: Path) -> None:
    left = _backend(tmp_path, 50)
    etcdz = _command(sys.executable, "-m", "actors.supervisor", "defrag", "--data-dir", str(tmp_path))
    assert etcdz.returncode == 0 and etcdz.stdout == "" and '"msg": "defragmented"' in etcdz.stderr
    ctl = _command(sys.executable, "-m", "etcdz.cli", "defrag", "--data-dir", str(tmp_path))
    assert ctl.returncode == 0, ctl.stderr
    assert ctl.stderr.startswith("Deprecated: Use `etcdz defrag --data-dir` instead.\n\n")
    db = plyvel.DB(str(tmp_path / "member" / "db"))
    assert dict(db.iterator()) == left
    db.close()
    missing = _command(sys.executable, "-m", "actors.supervisor", "defrag", "--data-dir", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"Failed to defragment etcd data[{tmp_path / 'x'}] (cannot open database"
    )


def test_the_client_says_so_when_the_server_command_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(fmt.ExitError, match="snapshot restore is the server's work: the etcdz command"):
        run_server_command(["snapshot", "restore", "backup.db"])
