"""Random bytes, wrong shapes, hostile CBOR and absurd raft messages at a member's peer port: no
process of the member dies, nothing a stranger names is connected to, and the cluster keeps (or
gets back to) serving with its data intact. The transport's rules (who is a verified peer) are
checked first on a transport alone, fed frames directly."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import cbor2
import pytest
import structlog
import zmq

from actors.raft.membership import url_problem
from actors.raft.transport import URL_SCHEMES, PeerTransport
from etcdz.errors import EtcdzError
from proto_schemas import codec
from proto_schemas.cluster import (
    JoinInfo,
    JoinQuery,
    PeerBatch,
    PeerFaults,
    ReadIndexAnswer,
    ReadIndexQuery,
    SnapshotChunk,
)
from proto_schemas.codec import decode, encode
from proto_schemas.lease import LeaseKeepAliveRequest, LeaseQuery
from proto_schemas.raft import Entry, EntryType, MessageType, RaftMessage
from tools import fuzz
from tools.cluster import LocalCluster, free_port, running

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


@pytest.mark.parametrize(
    "url, ok",
    [
        ("tcp://127.0.0.1:2380", True),
        ("tcp://[::1]:2380", True),
        ("tcp://peer-1.example:2380", True),
        ("ipc:///run/etcdz/peer.sock", True),
        ("tcp://x:99999999999", False),  # urlsplit raises on it
        ("tcp://[::1", False),
        ("tcp://host", False),
        ("tcp://host:0", False),
        ("tcp://host:1/path", False),
        ("udp://host:1", False),
        ("ipc://", False),
        ("tcp://a b:1", False),
        ("tcp://h:1\0", False),
        ("tcp://" + "h" * 600 + ":1", False),
        ("", False),
    ],
)
def test_peer_urls_are_checked_before_zeromq_sees_them(url: str, ok: bool) -> None:
    assert (url_problem(url, URL_SCHEMES) == "") is ok


def beat(sender: int, cluster_id: int = 7, urls: list[str] | None = None) -> list[bytes]:
    batch = PeerBatch(
        cluster_id=cluster_id,
        from_=sender,
        from_urls=urls or [],
        messages=[RaftMessage(type=MessageType.HEARTBEAT, to=1, from_=sender)],
    )
    return [b"id", encode(batch)]


def _member_one(ctx: zmq.Context[zmq.Socket[bytes]], initial_urls: list[str]) -> PeerTransport:
    """The transport of member 1 of cluster 7, listening on a free loopback port."""
    return PeerTransport(
        ctx,
        member_id=1,
        cluster_id=7,
        listen_urls=["tcp://127.0.0.1:*"],
        advertise_urls=["tcp://127.0.0.1:1"],
        log=structlog.get_logger(),
        initial_urls=initial_urls,
    )


def test_only_verified_peers_are_heard_and_connected() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    member2, joining = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    transport = _member_one(ctx, ["tcp://127.0.0.1:1", member2, joining])
    heard: list[int] = []

    def receive(*frames: list[bytes]) -> None:
        transport.receive(list(frames), lambda m: heard.append(m.from_), lambda q: JoinInfo(cluster_id=7))

    try:
        transport.set_peers({1: ["tcp://127.0.0.1:1"], 2: [member2]})
        assert set(transport.peers) == {2}
        with structlog.testing.capture_logs() as logs:
            for _ in range(10):  # a stranger, at a URL it names or at one that is no URL at all
                receive(beat(99, urls=["tcp://127.0.0.1:9"]))
                receive(beat(98, urls=["tcp://x:99999999999", "tcp://[::1"]))
                receive(beat(97, urls=[member2]))  # another member's URL
                receive(beat(2, cluster_id=8))  # another cluster
                receive([b"id", encode(SnapshotChunk(cluster_id=7, from_=96, snap_id=1, seq=0))])
                receive(beat(1))  # ourselves
        assert heard == [] and set(transport.peers) == {2}
        assert transport.refused == 60
        assert len(logs) <= 6, "dropped frames are logged at most once a second per reason"
        receive(beat(2))  # a member
        receive(beat(3, urls=[joining]))  # not in the table yet, at a URL --initial-cluster names
        receive([b"id", encode(SnapshotChunk(cluster_id=7, from_=3, snap_id=1, seq=0))])
        assert heard == [2, 3, 3]
        assert set(transport.peers) == {2, 3}
        transport.set_peers({1: ["tcp://127.0.0.1:1"], 2: [member2]})  # the table changes...
        assert set(transport.peers) == {2, 3}  # ...and an admitted peer stays until it names it
        transport.set_peers({1: ["tcp://127.0.0.1:1"], 2: [member2], 4: ["tcp://x:99999999999"]})
        assert set(transport.peers) == {2, 3}  # a bad URL in the table: not connected, no raise
    finally:
        transport.close()
        ctx.destroy(linger=0)


def test_member_queries_are_passed_on_only_from_reachable_members_of_this_cluster() -> None:
    """A follower's lease call (``LeaseQuery``) or ReadIndex (``ReadIndexQuery``) carries no
    user: the leader takes it from a member of its table and its cluster only, as it takes
    raft messages, and not from a member that injected faults cut off (a partition cuts off
    the member's gateway too)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    transport = _member_one(ctx, ["tcp://127.0.0.1:1"])
    asked: list[tuple[bytes, str, int]] = []
    call = LeaseKeepAliveRequest(id=5)

    def receive(query: LeaseQuery | ReadIndexQuery) -> None:
        transport.receive(
            [[b"asker", encode(query)]],
            lambda m: None,
            lambda q: JoinInfo(cluster_id=7),
            lambda who, q: asked.append((who, type(q).__name__, q.query_id)),
        )

    try:
        transport.set_peers(
            {
                1: ["tcp://127.0.0.1:1"],
                2: [f"tcp://127.0.0.1:{free_port()}"],
                3: [f"tcp://127.0.0.1:{free_port()}"],
            }
        )
        for from_, cluster_id, query_id in ((2, 7, 1), (99, 7, 2), (2, 8, 3), (1, 8, 4)):
            receive(LeaseQuery(cluster_id=cluster_id, from_=from_, query_id=query_id, request=call))
            receive(ReadIndexQuery(cluster_id=cluster_id, from_=from_, query_id=query_id))
        assert asked == [(b"asker", "LeaseQuery", 1), (b"asker", "ReadIndexQuery", 1)]
        assert transport.refused == 6
        transport.inject(PeerFaults(blocked=[3]))
        receive(ReadIndexQuery(cluster_id=7, from_=3, query_id=5))
        receive(ReadIndexQuery(cluster_id=7, from_=2, query_id=6))
        assert asked[2:] == [(b"asker", "ReadIndexQuery", 6)]
    finally:
        transport.close()
        ctx.destroy(linger=0)


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
    bait = socket.create_server(("127.0.0.1", 0))  # where strangers' frames point
    bait_url = f"tcp://127.0.0.1:{bait.getsockname()[1]}"
    valid = [
        encode(
            PeerBatch(
                cluster_id=cluster_id,
                from_=7,
                from_urls=[bait_url],
                messages=[RaftMessage(type=MessageType.APP, to=1)],
            )
        ),
        encode(SnapshotChunk(cluster_id=cluster_id, from_=7, snap_id=1, seq=0, pairs=[b"k", b"v"])),
        encode(JoinQuery(peer_urls=[bait_url])),
        encode(LeaseQuery(cluster_id=cluster_id, from_=7, query_id=1, request=LeaseKeepAliveRequest(id=1))),
        encode(ReadIndexQuery(cluster_id=cluster_id, from_=7, query_id=1)),
    ]
    try:
        for _ in range(500):
            sock.send(garbage(rng, cluster_id))
        for frame in fuzz.frames(rng, valid, 300):
            sock.send(frame)
        for url in [bait_url, "tcp://x:99999999999", "tcp://[::1", "udp://127.0.0.1:1", "tcp://127.0.0.1:0"]:
            for sender in range(10):  # more strangers than the supervisor's restart limit
                batch = PeerBatch(cluster_id=cluster_id, from_=1000 + sender, from_urls=[url], messages=[])
                sock.send(encode(batch))
        sock.send(b"\0" * ((64 << 20) + 1))  # larger than any peer frame
        # Frames of one connection are handled in order: once this is answered, so were they.
        sock.send(encode(JoinQuery(peer_urls=[target.peer_url])))
        for _ in range(1000):  # the answers to the earlier queries come first
            assert sock.poll(30_000), "the peer port did not answer"
            if decode(sock.recv(), JoinInfo).member_id == target.member_id:
                break
        bait.settimeout(1.0)
        with pytest.raises(TimeoutError):
            bait.accept()  # nobody dialled the URL a stranger named
    finally:
        ctx.destroy(linger=0)
        bait.close()
    assert target.actor_pids() == pids, "a process of the member died or was restarted"
    deadline = time.monotonic() + 30
    while True:  # generous: a loaded machine may cost an election
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


def test_a_members_read_index_query_is_answered_with_a_read_point_past_every_acknowledged_write(
    cluster: LocalCluster,
) -> None:
    """A follower's gateway asks the leader's peer port for its reads' ReadIndex: the answer
    covers every write acknowledged before the query (a heartbeat round confirmed the
    leadership). Asked of a follower's peer port, its raft core passes the query on to the
    leader and the answer comes back the same."""
    leader = cluster.leader()
    follower, asker = (m for m in cluster.members if m is not leader)
    with cluster.client() as c:
        cluster_id = c.status().header.cluster_id
        c.put("/readindex", "v")
    with leader.client() as c:
        acknowledged = c.status().raft_index
    ctx = zmq.Context()
    try:
        for query_id, asked in enumerate((leader, follower), start=1):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(asked.peer_url)
            sock.send(encode(ReadIndexQuery(cluster_id=cluster_id, from_=asker.member_id, query_id=query_id)))
            assert sock.poll(30_000), f"{asked.name} did not answer"
            answer = decode(sock.recv(), expect=ReadIndexAnswer)
            assert (answer.query_id, answer.member_id, answer.code) == (query_id, asked.member_id, None)
            assert answer.index >= acknowledged
    finally:
        ctx.destroy(linger=0)
