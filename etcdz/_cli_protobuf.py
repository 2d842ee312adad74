"""``-w protobuf``: a response as etcd sends it on the wire, in protobuf's binary encoding.

A small encoder of the few messages etcdctl prints this way (the key-value responses), with
etcd's field numbers from its rpc.proto and kv.proto. Its rules are proto3's: a field holding its
zero value is left out, integers are varints (a negative int64 takes ten bytes, as two's
complement), bytes and nested messages are length-delimited, repeated messages are one field
each. Kept self-contained so that a generated encoder can replace it without touching the CLI.
"""

from __future__ import annotations

from typing import Any

from proto_schemas.kv import (
    DeleteRangeResponse,
    KeyValue,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    TxnResponse,
)

_VARINT, _LEN = 0, 2


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as Go encodes it: two's complement, ten bytes when negative
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3 | _VARINT) + _varint(value) if value else b""


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | _LEN) + _varint(len(value)) + value if value else b""


def _message(field: int, body: bytes) -> bytes:
    """A nested message is written even when empty (it is set, unlike a zero scalar)."""
    return _varint(field << 3 | _LEN) + _varint(len(body)) + body


def header(h: ResponseHeader) -> bytes:
    return _int(1, h.cluster_id) + _int(2, h.member_id) + _int(3, h.revision) + _int(4, h.raft_term)


def key_value(kv: KeyValue) -> bytes:
    return (
        _bytes(1, kv.key)
        + _int(2, kv.create_revision)
        + _int(3, kv.mod_revision)
        + _int(4, kv.version)
        + _bytes(5, kv.value)
        + _int(6, kv.lease)
    )


def member_list(resp: Any) -> bytes:
    """MemberListResponse: header 1, members 2 (Member: ID 1, name 2, peerURLs 3, clientURLs 4,
    isLearner 5)."""
    out = _message(1, header(resp.header))
    for m in resp.members:
        body = _int(1, m.id) + _bytes(2, m.name.encode())
        body += b"".join(_bytes(3, u.encode()) for u in m.peer_urls)
        body += b"".join(_bytes(4, u.encode()) for u in m.client_urls)
        out += _message(2, body + _int(5, int(m.is_learner)))
    return out


_OPS = {RangeResponse: 1, PutResponse: 2, DeleteRangeResponse: 3, TxnResponse: 4}  # ResponseOp's oneof


def encode(resp: Any) -> bytes:
    """The wire bytes of a RangeResponse, PutResponse, DeleteRangeResponse or TxnResponse."""
    out = _message(1, header(resp.header))
    if isinstance(resp, RangeResponse):
        out += b"".join(_message(2, key_value(kv)) for kv in resp.kvs)
        return out + _int(3, int(resp.more)) + _int(4, resp.count)
    if isinstance(resp, PutResponse):
        return out + (_message(2, key_value(resp.prev_kv)) if resp.prev_kv is not None else b"")
    if isinstance(resp, DeleteRangeResponse):
        return out + _int(2, resp.deleted) + b"".join(_message(3, key_value(kv)) for kv in resp.prev_kvs)
    if isinstance(resp, TxnResponse):
        ops = b"".join(_message(3, _message(_OPS[type(r)], encode(r))) for r in resp.responses)
        return out + _int(2, int(resp.succeeded)) + ops
    raise TypeError(f"protobuf not supported for {type(resp).__name__}")
