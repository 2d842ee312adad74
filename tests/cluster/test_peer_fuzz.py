"""Random bytes, wrong shapes and absurd raft messages at a member's peer port: no process of
the member dies, and the cluster keeps (or gets back to) serving with its data intact."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import cbor2
import pytest
import zmq

from etcdz.errors import EtcdzError
from proto_schemas import codec
from proto_schemas.cluster import JoinQuery, PeerBatch
from proto_schemas.codec import encode
from proto_schemas.raft import Entry, EntryType, MessageType, RaftMessage
from tools.cluster import LocalCluster, running

ABSURD = [0, 1, 2**31, 2**63 - 1, 2**64 - 1]


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("peerfuzz")), 3) as c:
        yield c


def garbage(rng: random.Random, cluster_id: int) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 128))
    if kind == 1:  # valid CBOR of a wrong shape
        tid = rng.choice(sorted(codec.registered()))
        fields: list[object] = [
            rng.choice([0, -1, 2**63, b"", "s", [], None, True, 1.5]) for _ in range(rng.randrange(8))
        ]
        return cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [tid, *fields]))
    if kind == 2:  # deep nesting
        return b"\x81" * rng.randrange(50, 3000) + b"\x00"
    if kind == 3:  # truncated
        whole = encode(
            PeerBatch(cluster_id=cluster_id, from_=7, messages=[RaftMessage(type=MessageType.HEARTBEAT)])
        )
        return whole[: rng.randrange(1, len(whole))]
    if kind == 4:  # another cluster
        return encode(
            PeerBatch(cluster_id=cluster_id + 1, from_=7, messages=[RaftMessage(type=MessageType.APP)])
        )
    if kind == 5:
        return encode(JoinQuery(peer_urls=["tcp://x:" + "9" * 20, rng.choice(["", "ipc:///", "\0"])]))
    # this cluster's id, from a member that does not exist, with absurd numbers
    msgs = [
        RaftMessage(
            type=rng.choice(list(MessageType)),
            to=rng.choice(ABSURD),
            from_=rng.choice(ABSURD[1:]) + 17,
            term=rng.choice(ABSURD),
            log_term=rng.choice(ABSURD),
            index=rng.choice(ABSURD),
            commit=rng.choice(ABSURD),
            entries=[
                Entry(term=rng.choice(ABSURD), index=rng.choice(ABSURD), type=EntryType.NORMAL, data=b"\xff")
            ],
        )
        for _ in range(rng.randrange(1, 4))
    ]
    return encode(PeerBatch(cluster_id=cluster_id, from_=msgs[0].from_, messages=msgs))


def test_the_peer_port_survives_garbage_and_messages_from_nowhere(cluster: LocalCluster) -> None:
    target = cluster.members[1]
    pids = target.actor_pids()
    with cluster.client() as c:
        cluster_id = c.status().header.cluster_id
        before = c.put("/peerfuzz", "before").header.revision
    rng = random.Random(99)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(target.peer_url)
    try:
        for _ in range(500):
            sock.send(garbage(rng, cluster_id))
        sock.send(b"\0" * ((64 << 20) + 1))  # larger than any peer frame
        time.sleep(1)
    finally:
        ctx.destroy(linger=0)
    assert target.actor_pids() == pids, "a process of the member died or was restarted"
    deadline = time.monotonic() + 30
    while True:  # a message from nowhere may cost an election; the cluster gets over it
        try:
            with cluster.client() as c:
                assert c.get("/peerfuzz").kvs[0].mod_revision == before
                c.put("/peerfuzz", "after")
            break
        except EtcdzError:
            assert time.monotonic() < deadline, "the cluster did not serve again"
            time.sleep(0.5)
    assert target.actor_pids() == pids
    assert LocalCluster.hashes_agree(cluster.members)
