"""Auth on a real node: every permission rule through the SDK, enable/disable, token expiry,
leases and watches, restarts, and fuzzed auth requests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator

import cbor2
import pytest
import zmq

from etcdz import Client, Value, ops
from etcdz.aio import AsyncClient
from etcdz.errors import (
    AuthFailed,
    AuthNotEnabled,
    Compacted,
    PermissionDenied,
    RootUserNotExist,
    UserEmpty,
)
from proto_schemas.auth import AuthenticateRequest, UserAddRequest
from proto_schemas.codec import decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.kv import RangeResponse
from tools.cluster import LocalCluster, running

Secure = Callable[[LocalCluster], Client]


@pytest.fixture
def secured(node: LocalCluster, secure: Secure) -> Iterator[tuple[LocalCluster, Client, Client]]:
    root = secure(node)
    alice = Client(node.endpoints, user="alice", password="apw")
    yield node, root, alice
    alice.close()
    root.close()


def test_a_user_does_only_what_their_roles_grant(secured: tuple[LocalCluster, Client, Client]) -> None:
    node, root, alice = secured
    assert alice.get("/a/x").kvs[0].value == b"1"
    assert alice.get("/a/", prefix=True).count == 1
    assert alice.get("/a/x", serializable=True).kvs[0].value == b"1"
    for refused in (
        lambda: alice.put("/a/x", "2"),  # read only
        lambda: alice.get("/secret"),
        lambda: alice.get("/a/", from_key=True),  # past the prefix
        lambda: alice.get("/a", prefix=True),  # a wider prefix
        lambda: alice.delete("/a/x"),
        lambda: alice.get("/w"),  # write only
        lambda: alice.compact(1),
        lambda: alice.user_list(),
        lambda: alice.defragment(),
    ):
        with pytest.raises(PermissionDenied, match="etcdserver: permission denied"):
            refused()
    alice.put("/b", "1")
    alice.put("/bz", "2")
    alice.put("/w", "3")
    assert alice.get("/b", range_end="/c").count == 2
    assert alice.delete("/b", range_end="/c").deleted == 2
    with pytest.raises(PermissionDenied):
        alice.get("/b", range_end="/c0")  # one key past the granted range
    with pytest.raises(PermissionDenied):
        alice.put("/c", "x")  # range_end itself is outside
    with Client(node.endpoints) as anonymous:
        with pytest.raises(UserEmpty, match="etcdserver: user name is empty"):
            anonymous.get("/a/x")
    with pytest.raises(AuthFailed, match="invalid user ID or password"):
        Client(node.endpoints, user="alice", password="nope").get("/a/x")
    assert root.get("/secret").kvs[0].value == b"s"


def test_txns_are_checked_on_every_compare_and_both_branches(
    secured: tuple[LocalCluster, Client, Client],
) -> None:
    _, root, alice = secured
    ok = (
        alice.transaction()
        .when(Value("/a/x") == "1")
        .then(ops.put("/b", "t"))
        .otherwise(ops.get("/a/x"))
        .commit()
    )
    assert ok.succeeded and alice.get("/b").kvs[0].value == b"t"
    for compare, success, failure in (
        ([Value("/secret") == "s"], [ops.put("/b", "1")], []),  # a compare it cannot read
        ([Value("/a/x") == "1"], [ops.put("/b", "1")], [ops.put("/secret", "x")]),  # the branch not taken
        ([], [ops.txn([], [ops.delete("/a/x")], [])], []),  # a nested txn
    ):
        with pytest.raises(PermissionDenied):
            alice.txn(compare, success, failure)
    assert root.get("/secret").kvs[0].value == b"s" and root.get("/a/x").kvs[0].value == b"1"


def test_a_revoked_role_or_permission_stops_working_on_the_next_request(
    secured: tuple[LocalCluster, Client, Client],
) -> None:
    _, root, alice = secured
    alice.put("/b", "1")
    root.role_revoke_permission("reader", "/b", "/c")
    with pytest.raises(PermissionDenied):
        alice.put("/b", "2")
    assert alice.get("/a/x").count == 1
    root.user_revoke_role("alice", "reader")
    with pytest.raises(PermissionDenied):
        alice.get("/a/x")
    root.user_grant_role("alice", "reader")
    assert alice.get("/a/x").count == 1
    root.user_change_password("alice", "new")  # the old token dies with the old password
    with pytest.raises(AuthFailed):
        alice.get("/a/x")  # the SDK's re-login with the old password fails
    assert Client(alice.endpoints, user="alice", password="new").get("/a/x").count == 1


def test_auth_enable_is_refused_without_root_and_disable_opens_the_door(
    node: LocalCluster, secure: Secure
) -> None:
    with node.client() as c:
        with pytest.raises(RootUserNotExist, match="etcdserver: root user does not exist"):
            c.auth_enable()
        with pytest.raises(AuthNotEnabled):
            c.authenticate("root", "x")
        assert not c.auth_status().enabled
    root = secure(node)
    status = root.auth_status()
    assert status.enabled and status.auth_revision > 0
    root.auth_disable()
    with node.client() as c:
        assert c.get("/secret").kvs[0].value == b"s"
        assert not c.auth_status().enabled
    # a client with credentials goes on without a token while auth is off (as clientv3)
    alice = Client(node.endpoints, user="alice", password="apw")
    assert alice.get("/secret").count == 1
    # once auth is on again, it logs in for its next call and for its next watch alike
    root.auth_enable()
    with alice.watch("/a/", prefix=True) as w:
        assert w.created.wait(10)
        root.put("/a/w", "1")
        got = w.get(timeout=10)
        assert got is not None and [e.kv.key for e in got.events] == [b"/a/w"]
    with pytest.raises(PermissionDenied):
        alice.get("/secret")
    alice.close()
    root.close()


def raw_call(url: str, body: object, token: str = "", source: str = "") -> object:
    """One request on its own connection; from the address ``source`` if given (any of
    127.0.0.0/8 works on the loopback)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url.replace("tcp://", f"tcp://{source}:0;") if source else url)
    try:
        sock.send_multipart(pack(body, msg_id=1, token=token))
        assert sock.poll(5000), "no answer"
        return decode(unpack_header(sock.recv_multipart())[1])
    finally:
        ctx.destroy(linger=0)


def test_tokens_expire_after_their_ttl_idle_and_the_sdk_logs_in_again(secure: Secure) -> None:
    with (
        tempfile.TemporaryDirectory() as root_dir,
        running(root_dir, 1, extra_args=["--auth-token-ttl", "3"]) as node,
    ):
        root = secure(node)
        token = root.authenticate("alice", "apw").token
        url = node.endpoints[0]
        assert isinstance(raw_call(url, ops.get("/a/x"), token), RangeResponse)
        time.sleep(1.8)  # idle gaps of 1.8 s, 1.2 s short of the TTL (room for a loaded machine)
        assert isinstance(raw_call(url, ops.get("/a/x"), token), RangeResponse)  # renewed by use
        time.sleep(1.8)  # 3.6 s since the login: only the renewal keeps it
        assert isinstance(raw_call(url, ops.get("/a/x"), token), RangeResponse)
        time.sleep(4.5)
        expired = raw_call(url, ops.get("/a/x"), token)
        assert isinstance(expired, ErrorResponse) and expired.code == ErrorCode.INVALID_AUTH_TOKEN
        assert root.get("/secret").count == 1  # root's token expired too: logged in again
        root.close()


def test_asymmetric_jwt_tokens_as_etcd_signs_them(secure: Secure, tmp_path: os.PathLike[str]) -> None:
    """``--auth-token jwt,pub-key=...,priv-key=...,sign-method=ES256``: the login answers a
    token signed with the member's private key, which checks it with the public one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = os.path.join(str(tmp_path), "jwt.pem"), os.path.join(str(tmp_path), "jwt.pub")
    with open(os.open(priv, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(pub, "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    flag = f"jwt,pub-key={pub},priv-key={priv},sign-method=ES256,ttl=5m"
    with running(os.path.join(str(tmp_path), "node"), 1, extra_args=["--auth-token", flag]) as node:
        root = secure(node)
        token = root.authenticate("alice", "apw").token
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert header["alg"] == "ES256"
        url = node.endpoints[0]
        assert isinstance(raw_call(url, ops.get("/a/x"), token), RangeResponse)
        forged = raw_call(
            url, ops.get("/a/x"), token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        )
        assert isinstance(forged, ErrorResponse) and forged.code == ErrorCode.INVALID_AUTH_TOKEN
        root.close()


def test_leases_and_watches_are_checked(secured: tuple[LocalCluster, Client, Client]) -> None:
    node, root, alice = secured
    with Client(node.endpoints) as anonymous:
        with pytest.raises(UserEmpty):
            anonymous.lease_grant(10)
    lease = root.lease_grant(30).id
    with Client(node.endpoints) as anonymous:
        with pytest.raises(UserEmpty):
            anonymous.lease_keep_alive_once(lease)
    assert alice.lease_keep_alive_once(lease).ttl > 0  # any user may keep a lease alive
    root.put("/secret2", "x", lease=lease)
    with pytest.raises(PermissionDenied):
        alice.lease_revoke(lease)  # it holds a key alice may not write
    with alice.watch("/a/", prefix=True) as allowed:
        assert allowed.created.wait(10)  # a watch from now sees what comes after its creation
        root.put("/a/y", "2")
        got = allowed.get(timeout=10)
        assert got is not None and [e.kv.key for e in got.events] == [b"/a/y"]
    denied = alice.watch("/secret")
    with pytest.raises(PermissionDenied):
        denied.get(timeout=10)
    with Client(node.endpoints) as anonymous:
        with pytest.raises(UserEmpty):
            anonymous.watch("/a/").get(timeout=10)

    async def asyncio_watches() -> None:  # the asyncio client's stream: same token, same errors
        async with AsyncClient(node.endpoints, user="alice", password="apw") as aio_alice:
            since = root.put("/a/y", "3").header.revision
            async with aio_alice.watch("/a/", prefix=True, start_revision=since) as w:
                got = await w.get(timeout=10)
                assert got is not None and [e.kv.value for e in got.events] == [b"3"]
            with pytest.raises(PermissionDenied):
                await aio_alice.watch("/secret").get(timeout=10)
        async with AsyncClient(node.endpoints) as aio_anonymous:
            with pytest.raises(UserEmpty):
                await aio_anonymous.watch("/a/").get(timeout=10)

    asyncio.run(asyncio.wait_for(asyncio_watches(), 60))
    with pytest.raises(Compacted):
        root.compact(root.put("/a/z", "1").header.revision)
        alice.watch("/a/", prefix=True, start_revision=1).get(timeout=10)


def test_the_auth_store_survives_a_restart_and_clients_log_in_again(
    secured: tuple[LocalCluster, Client, Client],
) -> None:
    node, root, alice = secured
    assert alice.get("/a/x").count == 1
    node.stop()
    node.start()
    node.wait_ready(timeout=30)
    assert alice.get("/a/x").count == 1  # tokens are not kept: the SDK logged in again
    with pytest.raises(PermissionDenied):
        alice.get("/secret")
    assert root.auth_status().enabled


def test_fuzzed_auth_requests_get_typed_errors_and_the_node_keeps_serving(
    secured: tuple[LocalCluster, Client, Client],
) -> None:
    node, root, _ = secured
    member = node.members[0]
    pids = member.actor_pids()
    url = node.endpoints[0]
    token = root.authenticate("root", "rootpw").token
    absurd = [
        UserAddRequest(name="x" * 100_000, password="p"),
        UserAddRequest(name="\x00\uffff\U0001f600 /..", password="p"),
        UserAddRequest(name="big", password="p" * 600_000),
        UserAddRequest(name="huge", password="p" * 3_000_000),
        AuthenticateRequest(name="root", password="p" * 10_000),
        AuthenticateRequest(name="", password=""),
    ]
    codes = []
    for request in absurd:
        answer = raw_call(url, request, token)
        codes.append(answer.code if isinstance(answer, ErrorResponse) else None)
    assert codes == [
        None,
        None,
        ErrorCode.BAD_REQUEST,  # longer than any password
        ErrorCode.REQUEST_TOO_LARGE,
        ErrorCode.AUTH_FAILED,
        ErrorCode.AUTH_FAILED,
    ]
    for type_id, fields in (
        (219, [5, "p"]),
        (217, [None]),
        (239, ["r", "not a permission"]),
        (241, [1, 2, 3, 4, 5]),
    ):
        wrong = cbor2.dumps([type_id, *fields])
        answer = raw_call(url, wrong, token)
        assert isinstance(answer, ErrorResponse) and answer.code == ErrorCode.BAD_REQUEST
    assert member.actor_pids() == pids  # no process died
    assert root.get("/secret").count == 1
    listed = root.user_list().users
    assert "\x00\uffff\U0001f600 /.." in listed and "big" not in listed and "huge" not in listed
    with pytest.raises(PermissionDenied):  # a long name is a name: it logs in, and holds no role
        Client(node.endpoints, user="x" * 100_000, password="p").get("/a/x")
    # Guessing root's password from one address locks root out there only.
    guesses = [
        raw_call(url, AuthenticateRequest(name="root", password="guess"), source="127.0.0.2")
        for _ in range(8)
    ]
    codes = [g.code for g in guesses if isinstance(g, ErrorResponse)]
    assert len(codes) == 8 and codes[0] == ErrorCode.AUTH_FAILED and codes[-1] == ErrorCode.TOO_MANY_REQUESTS
    with Client(node.endpoints, user="root", password="rootpw") as again:
        assert again.get("/secret").count == 1


def test_no_password_or_token_is_written_to_a_log_the_wal_or_the_backend(secure: Secure) -> None:
    """Passwords are hashed before they are proposed and tokens reach the log only as digests;
    the debug logs of every actor name neither, whatever the request did."""
    passwords = ["Pw-first-7q2Kx9", "Pw-second-Vt83Lm", "Pw-wrong-Hh41Zc"]
    with (
        tempfile.TemporaryDirectory() as root_dir,
        running(root_dir, 1, extra_args=["--log-level", "debug"]) as node,
    ):
        root = secure(node)
        root.user_add("carol", passwords[0])
        token = root.authenticate("carol", passwords[0]).token
        with pytest.raises(AuthFailed):
            root.authenticate("carol", passwords[2])
        root.user_change_password("carol", passwords[1])
        carol = Client(node.endpoints, user="carol", password=passwords[1])
        with pytest.raises(PermissionDenied):
            carol.get("/secret")  # a request under a fresh token, refused
        tokens = [token, carol.auth_token()]
        carol.close()
        root.close()
        node.stop()  # logs flushed, LevelDB and WAL closed
        secrets_ = [s.encode() for s in passwords + tokens]
        written = 0
        for directory, _, files in os.walk(root_dir):
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.isfile(path):
                    continue  # the node's sockets
                with open(path, "rb") as f:
                    data = f.read()
                written += len(data)
                leaked = [s for s in secrets_ if s in data]
                assert not leaked, f"{leaked} in {path}"
        assert written > 100_000  # the logs, the WAL and the backend were all there to read
