"""Random bytes, wrong shapes and hostile CBOR at the client port and a watch hub's port: typed
errors, and every actor of the node keeps serving without a restart."""

from __future__ import annotations

import random
import time

import cbor2
import zmq

from etcdz import Client
from proto_schemas import codec
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import Header, unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.kv import Compare, CompareTarget, PutRequest, RangeRequest, TxnRequest
from proto_schemas.watch import WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest
from tools import fuzz
from tools.cluster import LocalCluster

REQUESTS = [
    encode(PutRequest(key=b"/fuzz/k", value=b"v")),
    encode(RangeRequest(key=b"/fuzz/", range_end=b"/fuzz0", limit=3)),
    encode(
        TxnRequest(
            compare=[Compare(key=b"/fuzz/k", target=CompareTarget.VERSION, version=1)],
            success=[
                PutRequest(key=b"/fuzz/t", value=b"1"),
                TxnRequest(success=[RangeRequest(key=b"/fuzz/t")]),
            ],
            failure=[RangeRequest(key=b"/fuzz/k")],
        )
    ),
]
WATCHES = [
    encode(WatchRequest(request=WatchCreateRequest(key=b"/fuzz/w", range_end=b"/fuzz/x", prev_kv=True))),
    encode(WatchRequest(request=WatchCancelRequest(watch_id=1))),
    encode(WatchRequest(request=WatchProgressRequest())),
]
HOSTILE = 200  # frames per port


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
        message = [tid, *fields]  # as written now, or in the old tagged form (still read)
        return [
            header,
            cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, message) if rng.random() < 0.2 else message),
        ]
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


def hostile_frames(rng: random.Random, valid: list[bytes]) -> list[list[bytes]]:
    """Requests with a hostile body, and some with a hostile header."""
    out = []
    for i, body in enumerate(fuzz.frames(rng, valid, HOSTILE)):
        header = encode(Header(msg_id=i + 1))
        if rng.random() < 0.1:
            header = fuzz.hostile(rng, header)
        out.append([header, body])
    out.append([encode(Header(msg_id=HOSTILE + 1)), b"\x80" * (2 << 20)])  # over the limit
    out.append([encode(Header(msg_id=HOSTILE + 2, token="t" * (1 << 20))), REQUESTS[0]])  # header too
    return out


def test_hostile_cbor_at_the_gateway_and_a_watch_hub_leaves_every_actor_serving(
    shared_node: LocalCluster,
) -> None:
    member = shared_node.members[0]
    pids = member.actor_pids()
    assert "gateway" in pids and "watch0" in pids
    rng = random.Random(4242)
    ctx = zmq.Context()
    try:
        for url, valid in ((member.client_url, REQUESTS), (member.watch_url, WATCHES)):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url)
            sent = hostile_frames(rng, valid)
            for frames in sent:
                sock.send_multipart(frames)
            codes: dict[int, ErrorCode] = {}
            while sock.poll(3000):  # until the port falls quiet (watch events may follow)
                header, body = unpack_header(sock.recv_multipart())
                reply = decode(body)
                if isinstance(reply, ErrorResponse):
                    assert reply.definite and reply.message.startswith("etcdserver: ")
                    codes[header.in_reply_to] = reply.code
            assert codes.get(HOSTILE + 1) == ErrorCode.REQUEST_TOO_LARGE, url
            assert codes.get(0) == ErrorCode.BAD_REQUEST, url  # the headers that could not be read
            sock.close()
    finally:
        ctx.destroy(linger=0)
    deadline = time.monotonic() + 60
    while True:  # generous: the node may still be working through the last frames
        try:
            with Client(shared_node.endpoints, timeout=5.0) as c:
                watch = c.watch("/fuzz/after")
                assert watch.created.wait(10), "the hub never confirmed the watch"
                c.put("/fuzz/after", "ok")
                resp = watch.get(timeout=10)
                assert resp is not None and resp.events[0].kv.value == b"ok"
                assert c.get("/fuzz/after").kvs[0].value == b"ok"
            break
        except Exception:
            assert time.monotonic() < deadline, "the node did not serve again"
            time.sleep(0.5)
    assert member.actor_pids() == pids, "an actor died or was restarted"
