"""CurveZMQ on a 3-member cluster: trusted clients and peers get in; clients and peers without
the right keys are refused, nothing they send is applied, the cluster keeps serving. Signed
(JWT) auth tokens good on every member. And the node's private directories."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth

from actors.runtime import curve
from etcdz import Client
from etcdz.errors import AuthOldRevision, PermissionDenied, Unavailable, UserAlreadyExists
from proto_schemas.cluster import HashAnswer, HashQuery, PeerBatch
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import pack
from proto_schemas.kv import HashKVResponse, PutRequest
from proto_schemas.raft import Entry, EntryType, MessageType, RaftMessage
from proto_schemas.watch import HubAnnounce, WatchHubsRequest
from tools.cluster import LocalCluster, running


def keygen(directory: Path, *names: str) -> None:
    subprocess.run([sys.executable, "-m", "actors.supervisor", "keygen", str(directory), *names], check=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    keygen(root, "server", "peer", "client", "stranger", "stranger-peer")
    trusted = root / "trusted"
    trusted.mkdir()
    (trusted / "client.key").write_bytes((root / "client.key").read_bytes())
    (root / "jwt.key").write_bytes(os.urandom(32))
    (root / "jwt.key").chmod(0o600)
    return root


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[LocalCluster]:
    flags = [
        *("--key-file", str(keys / "server.key_secret"), "--client-cert-auth"),
        *("--trusted-keys-dir", str(keys / "trusted")),
        *("--peer-key-file", str(keys / "peer.key_secret"), "--peer-client-cert-auth"),
        *("--auth-token", f"jwt,priv-key={keys / 'jwt.key'},sign-method=HS256,ttl=5m"),
        "--experimental-allow-unauthenticated-hubs=false",  # secured: hubs prove themselves
    ]
    options = {"server_key": str(keys / "server.key"), "client_key": str(keys / "client.key_secret")}
    with running(str(tmp_path_factory.mktemp("secured")), 3, extra_args=flags, client_options=options) as c:
        yield c


def test_keygen_writes_a_private_secret_and_a_public_key(keys: Path) -> None:
    assert stat.S_IMODE(os.stat(keys / "client.key_secret").st_mode) == 0o600
    assert b"secret-key" in (keys / "client.key_secret").read_bytes()
    assert b"secret-key" not in (keys / "client.key").read_bytes()


def test_a_trusted_client_reads_writes_and_watches(secured: LocalCluster) -> None:
    with secured.client() as c:
        start = c.put("/s/k", "1").header.revision
        assert c.get("/s/k").kvs[0].value == b"1"
        with c.watch("/s/", prefix=True, start_revision=start) as w:
            got = w.get(timeout=10)
            assert got is not None and got.events[0].kv.value == b"1"
        lease = c.lease_grant(30).id
    for member in secured.members:  # a follower passes keep-alives on over the keyed peer mesh
        with member.client(timeout=5.0) as one:
            assert one.lease_keep_alive_once(lease).ttl > 0


def test_clients_without_the_right_keys_are_refused_and_change_nothing(
    secured: LocalCluster, keys: Path
) -> None:
    for options in (
        {},  # no Curve at all
        {"server_key": str(keys / "server.key")},  # encrypted, but a made-up key
        {"server_key": str(keys / "server.key"), "client_key": str(keys / "stranger.key_secret")},
        {
            "server_key": str(keys / "stranger.key"),
            "client_key": str(keys / "client.key_secret"),
        },  # wrong server
    ):
        with Client(secured.endpoints, timeout=1.5, dial_timeout=0.5, **options) as c:
            with pytest.raises(Unavailable):
                c.put("/s/intruder", "x")
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(secured.endpoints[0])
        sock.send_multipart(pack(PutRequest(key=b"/s/intruder", value=b"x"), msg_id=1))
        assert not sock.poll(1500)  # no answer: the handshake never completed
    finally:
        ctx.destroy(linger=0)
    with secured.client() as c:
        assert c.get("/s/intruder").count == 0


def test_a_peer_without_the_mesh_key_cannot_inject_raft_messages(secured: LocalCluster, keys: Path) -> None:
    leader = secured.leader()
    with leader.client() as c:
        term = c.status().raft_term
        cluster_id = c.status().header.cluster_id
    forged = encode(
        PeerBatch(
            cluster_id=cluster_id,
            from_=leader.member_id,
            messages=[
                RaftMessage(type=MessageType.VOTE, to=m.member_id, from_=leader.member_id, term=term + 1000)
                for m in secured.members
            ]
            + [
                RaftMessage(
                    type=MessageType.APP,
                    to=m.member_id,
                    from_=leader.member_id,
                    term=term,
                    entries=[Entry(term=term, index=10**6, type=EntryType.NORMAL, data=b"x")],
                )
                for m in secured.members
            ],
        )
    )
    stranger_public, stranger_secret = zmq.auth.load_certificate(str(keys / "stranger-peer.key_secret"))
    peer_public, _ = zmq.auth.load_certificate(str(keys / "peer.key"))
    ctx = zmq.Context()
    try:
        for curve in (False, True):
            for m in secured.members:
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                if curve:  # knows the mesh's public key, not its secret
                    sock.curve_serverkey, sock.curve_publickey = peer_public, stranger_public
                    sock.curve_secretkey = stranger_secret
                sock.connect(m.peer_url)
                for _ in range(20):
                    if sock.poll(0, zmq.POLLOUT):
                        sock.send(forged, zmq.NOBLOCK)
        time.sleep(2.0)
    finally:
        ctx.destroy(linger=0)
    with secured.client() as c:
        assert c.status().raft_term == term  # no forged vote reached a raft core
        assert c.put("/s/after", "ok").header.revision > 0
    for m in secured.members:
        assert all(pid > 0 for pid in m.actor_pids().values())


def test_a_signed_token_is_good_on_every_member_until_the_auth_store_moves_on(
    secured: LocalCluster, secure: Callable[[LocalCluster], Client]
) -> None:
    root = secure(secured)
    try:
        token = root.authenticate("alice", "apw").token
        assert token.count(".") == 2  # a JWT, signed by the member that checked the password
        for m in secured.members:  # no member kept anything of it, yet each takes it
            with Client([m.client_url], token=token, **secured.client_options) as bearer:
                assert bearer.get("/a/x").kvs[0].value == b"1"
                with pytest.raises(PermissionDenied):
                    bearer.get("/secret")
        with Client(secured.endpoints, user="alice", password="apw", **secured.client_options) as alice:
            assert alice.get("/a/x").count == 1
            root.role_grant_permission("reader", "read", "/secret")
            for m in secured.members:  # issued before the change: refused everywhere
                with Client([m.client_url], user="root", password="rootpw", **secured.client_options) as r:
                    r.get("/a/x")  # a linearizable read: this member has applied the change
                with Client([m.client_url], token=token, **secured.client_options) as bearer:
                    with pytest.raises(AuthOldRevision, match="revision of auth store is old"):
                        bearer.get("/a/x", serializable=True)
            assert alice.get("/secret").kvs[0].value == b"s"  # the SDK logged in again by itself
            with alice.watch("/a/", prefix=True) as w:  # so does its watch stream
                assert w.created.wait(10)
                root.put("/a/jwt", "1")
                got = w.get(timeout=10)
                assert got is not None and got.events[0].kv.key == b"/a/jwt"
    finally:
        root.auth_disable()  # the other tests of this cluster run without auth
        root.close()


def ask_hash(peer_url: str, query: HashQuery, key: Path | None, server: Path) -> HashAnswer | None:
    """A hash query on a member's peer port, as a member's corruption checker asks it (with
    the mesh's key pair ``key``); None without an answer."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if key is not None:
            sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(key))
            sock.curve_serverkey = zmq.auth.load_certificate(str(server))[0]
        sock.connect(peer_url)
        sock.send(encode(query))
        if not sock.poll(3000):
            return None
        return decode(sock.recv(), expect=HashAnswer)
    finally:
        ctx.destroy(linger=0)


def test_members_ask_each_other_for_hashes_on_the_peer_mesh_only(
    secured: LocalCluster, keys: Path, secure: Callable[[LocalCluster], Client]
) -> None:
    """The corruption checker's member-to-member calls need no credential on a client port
    (auth on or off): they travel on the peer mesh, which answers only its key holders and
    members of its cluster."""
    try:
        root = secure(secured)
    except UserAlreadyExists:  # made by an earlier test of this cluster, which turned auth off
        with secured.client() as anyone:
            anyone.auth_enable()
        root = Client(secured.endpoints, user="root", password="rootpw", **secured.client_options)
    try:
        asker, asked = secured.members[0], secured.members[1]
        with Client([asked.client_url], user="root", password="rootpw", **secured.client_options) as c:
            own = c.hash_kv(0)
        query = HashQuery(
            cluster_id=own.header.cluster_id, from_=asker.member_id, query_id=7, revision=own.header.revision
        )
        mesh, stranger, server = (
            keys / "peer.key_secret",
            keys / "stranger-peer.key_secret",
            keys / "peer.key",
        )
        answer = ask_hash(asked.peer_url, query, mesh, server)
        assert answer is not None and (answer.query_id, answer.member_id) == (7, asked.member_id)
        body = decode(answer.body, expect=HashKVResponse)
        assert (body.hash, body.compact_revision) == (own.hash, own.compact_revision)
        assert ask_hash(asked.peer_url, query, stranger, server) is None  # refused at the handshake
        assert ask_hash(asked.peer_url, query, None, server) is None
        for wrong in ({"cluster_id": query.cluster_id + 1}, {"from_": 12345}):  # not a member of ours
            forged = HashQuery(
                **{**{f: getattr(query, f) for f in ("cluster_id", "from_", "query_id", "revision")}, **wrong}
            )
            assert ask_hash(asked.peer_url, forged, mesh, server) is None
    finally:
        root.auth_disable()  # the other tests of this cluster run without auth
        root.close()


def test_only_hubs_holding_the_members_key_subscribe_to_events_and_announce(
    secured: LocalCluster, keys: Path
) -> None:
    """The event stream carries every key and value: a trusted client's key is refused there;
    the members' key pair gets in. Announcing a hub takes the token derived from that pair."""
    member = secured.members[0]
    assert member.events_url
    ctx = zmq.Context()
    try:
        subs = {}
        for name, pair in (("client", "client.key_secret"), ("members", "server.key_secret")):
            public, secret = zmq.auth.load_certificate(str(keys / pair))
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.curve_serverkey = zmq.auth.load_certificate(str(keys / "server.key"))[0]
            sub.curve_publickey, sub.curve_secretkey = public, secret
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(member.events_url)
            subs[name] = sub
        with secured.client() as c:
            deadline = time.monotonic() + 30
            while not subs["members"].poll(100) and time.monotonic() < deadline:
                c.put("/s/events", "1")  # until the subscription is in place
        assert subs["members"].poll(0)  # the members' key pair hears the events
        assert not subs["client"].poll(500)  # a trusted client's key does not
    finally:
        ctx.destroy(linger=0)
    hub = HubAnnounce(hub_id="remote", urls=["tcp://127.0.0.1:1"])
    with secured.client() as c:
        with pytest.raises(PermissionDenied):
            c.call(hub)
        assert c.call(WatchHubsRequest()).events_urls == []
    token = curve.hub_token(curve.for_node(str(keys / "server.key_secret"), False, ""))
    with Client([member.client_url], token=token, **secured.client_options) as hub_client:
        answer = hub_client.call(hub)
        assert "tcp://127.0.0.1:1" in answer.urls and answer.events_urls == [member.events_url]


def test_the_data_and_socket_dirs_are_private(secured: LocalCluster) -> None:
    for m in secured.members:
        for sub in ("", "member", "member/wal", "run", "run/sock"):
            path = os.path.join(m.data_dir, sub)
            if os.path.isdir(path):
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
        for name in os.listdir(os.path.join(m.data_dir, "member", "wal")):
            mode = stat.S_IMODE(os.stat(os.path.join(m.data_dir, "member", "wal", name)).st_mode)
            assert mode & 0o077 == 0, name


def test_a_standalone_hub_logs_in_once_auth_is_enabled_and_checks_each_watcher(
    tmp_path: Path, secure: Callable[[LocalCluster], Client]
) -> None:
    cluster = LocalCluster(str(tmp_path), 1, watch_hubs=1, member_hubs=0)
    (hub,) = cluster.hubs
    hub.env.update({"ETCDZ_USER": "root", "ETCDZ_PASSWORD": "rootpw"})
    cluster.start()
    try:
        cluster.wait_ready(timeout=30)
        with secure(cluster) as root:
            start = root.put("/a/k", "1").header.revision
        cluster.stop(hub)  # started again, its window begins after the put: the watch reads history
        cluster.start(hub)
        with Client(
            cluster.endpoints, user="alice", password="apw", watch_endpoints=[hub.watch_url]
        ) as alice:
            with alice.watch("/a/k", start_revision=start) as w:  # the hub reads history as root
                got = w.get(timeout=15)
                assert got is not None and got.events[0].kv.value == b"1"
            with pytest.raises(PermissionDenied):
                alice.watch("/secret").get(timeout=15)
        with open(hub.log_path, encoding="utf-8") as f:
            log = f.read()
        assert "logged in to the cluster" in log
        assert "rootpw" not in log and "apw" not in log  # no secret in the logs
        with open(cluster.members[0].log_path, encoding="utf-8") as f:
            assert "apw" not in f.read()
    finally:
        cluster.stop()
