"""snapshot restore's plan: the same new cluster on every member, etcdutl's refusals, and the
records a restored backend keeps."""

from __future__ import annotations

import pytest

from actors.mvcc import keys as K
from actors.raft.membership import MemberTable
from actors.supervisor.restore import RestoreError, kept, plan

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
