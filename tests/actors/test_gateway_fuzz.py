"""Random bytes and wrong shapes at the client port: typed errors, and the gateway keeps serving
without a restart."""

from __future__ import annotations

import random

import cbor2
import zmq

from etcdz import Client
from proto_schemas import codec
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import Header, unpack_header
from proto_schemas.errors import ErrorResponse
from tools.cluster import LocalCluster


def garbage(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(6)
    header = encode(Header(msg_id=rng.randrange(1, 1000)))
    if kind == 0:
        return [rng.randbytes(rng.randrange(0, 64))]
    if kind == 1:
        return [header, rng.randbytes(rng.randrange(0, 256))]
    if kind == 2:
        return [rng.randbytes(8), header, b"x"]
    if kind == 3:  # valid CBOR of a wrong shape
        tid = rng.choice(sorted(codec.registered()))
        fields: list[object] = [
            rng.choice([0, -1, 2**63, b"", "s", [], None, True, 1.5]) for _ in range(rng.randrange(8))
        ]
        return [header, cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [tid, *fields]))]
    if kind == 4:  # deep nesting
        return [header, b"\x81" * rng.randrange(50, 3000) + b"\x00"]
    return [header, cbor2.dumps({"op": "put", "key": rng.randbytes(4)})]


def test_gateway_answers_garbage_with_typed_errors_and_keeps_serving(shared_node: LocalCluster) -> None:
    member = shared_node.members[0]
    gateway_pid = member.actor_pids()["gateway"]
    rng = random.Random(1234)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(member.client_url)
    errors = 0
    try:
        for _ in range(300):
            sock.send_multipart(garbage(rng))
        while sock.poll(1500):
            header, body = unpack_header(sock.recv_multipart())
            reply = decode(body)
            if isinstance(reply, ErrorResponse):
                assert reply.definite and reply.message.startswith("etcdserver: ")
            else:  # random fields can make a valid request (say, HashKV with defaults)
                assert type(reply).__name__.endswith("Response")
            errors += 1
    finally:
        ctx.destroy(linger=0)
    assert errors == 300  # every message got exactly one answer
    with Client(shared_node.endpoints) as c:
        c.put("/after-fuzz", "ok")
        assert c.get("/after-fuzz").kvs[0].value == b"ok"
    assert member.actor_pids()["gateway"] == gateway_pid
