"""The frame layout every etcdz socket uses, built and parsed only here.

A message travels as ``[*routing_ids, header, body]``: ``header`` is a small CBOR
``Header`` (protocol version, msg_id, in_reply_to, and the client's auth token), ``body`` an
encoded message. Keeping the
body in its own frame lets a hop that only forwards (the gateway relaying a backend's response)
pass the bytes on without decoding and re-encoding them. Type id 1.

A message with the empty header (almost every message between a node's actors) travels as
``[*routing_ids, body]``: a second frame costs the sender ~6 us (pyzmq's multipart send) and
the receiver ~1 us, on every hop of every write.

Sizes are checked before anything is decoded: a header frame longer than ``MAX_HEADER_BYTES``
is refused, and a receiver facing clients passes its body limit (``TooLarge`` then carries the
header, decoded once its size was known to be small, so the refusal names the request). Such a
receiver decodes the body with ``MAX_REQUEST_ITEMS``.
"""

from __future__ import annotations

from typing import Any

import cbor2

from proto_schemas.codec import DecodeError, decode, encode, message, wire

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 8192  # three ints and a token (a JWT is a few hundred bytes)
MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes (a watch hub's limit)
MAX_REQUEST_ITEMS = 1 << 16  # CBOR items in one client request (a txn of 128 ops has ~1,500)


def reply_queue(max_in_flight: int) -> int:
    """Replies a connection's socket may queue (ZeroMQ's high-water mark) when it carries at
    most ``max_in_flight`` calls: a gateway's reply pipe to a client, a client's receive side.
    A reader that keeps up is never owed more than its calls in flight, but a ZeroMQ pipe tells
    its writer of the reader's progress only every half of its mark: with the mark at the
    in-flight limit, a burst of answers to a full window made the next answers find the pipe
    "full" (dropped by a gateway, the calls waiting out their deadline). Twice the limit never
    drops a reply so owed; a client that does not read still has its replies dropped past it."""
    return 2 * max_in_flight + 64


@message(1)
@wire
class Header:
    version: int = PROTOCOL_VERSION
    msg_id: int = 0
    in_reply_to: int = 0
    token: str = ""  # from Authenticate; checked by the gateway when auth is enabled
    # A client's write session (exactly-once writes, see actors/mvcc/sessions.py): its id, and
    # the lowest msg_id among its writes not yet answered. A write keeps its msg_id on every
    # attempt, so (client_id, msg_id) names it wherever it is sent again.
    client_id: int = 0
    acked: int = 0


# Most messages between a node's actors carry the empty header: it is not sent at all (one
# frame), and when it is sent anyway its bytes are recognised rather than decoded.
PLAIN_HEADER = Header()
_PLAIN_FRAME = encode(PLAIN_HEADER)


def pack(
    body: Any, msg_id: int = 0, in_reply_to: int = 0, token: str = "", client_id: int = 0, acked: int = 0
) -> list[bytes]:
    """Frames for one message; ``body`` may be a message or its already-encoded bytes."""
    raw = body if isinstance(body, bytes) else encode(body)
    if not (msg_id or in_reply_to or token or client_id):
        return [raw]
    if not in_reply_to and 0 < msg_id < 1 << 64 and 0 <= client_id < 1 << 64 and 0 <= acked < 1 << 64:
        return [request_header(msg_id, token, client_id, acked), raw]
    if not (msg_id or token or client_id or acked) and 0 < in_reply_to < 1 << 64:
        return [_REPLY_PREFIX + _cbor_uint(in_reply_to) + _REPLY_SUFFIX, raw]
    header = Header(msg_id=msg_id, in_reply_to=in_reply_to, token=token, client_id=client_id, acked=acked)
    return [encode(header), raw]


# A client's request header and a member's reply header are made without the codec, and a
# client reads its replies' headers so (a client's and a gateway's CPU per call is mostly such
# fixed costs: a reply header made through the codec costs 5 us, so 1 us): the bytes are
# exactly ``encode(Header(...))``'s — array of seven, type id 1, version, msg_id, in_reply_to,
# token, client_id, acked — so the other end cannot tell (tests/unit/test_codec.py checks it).
# A request header is read by the codec: cbor2's decoder beats parsing it in Python.
_HEADER_PREFIX = _PLAIN_FRAME[:3]  # array(7), type id 1, version 1
_tokens: dict[str, bytes] = {}


def _cbor_uint(n: int) -> bytes:
    if n < 24:
        return bytes((n,))
    if n < 1 << 8:
        return b"\x18" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\x19" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\x1a" + n.to_bytes(4, "big")
    return b"\x1b" + n.to_bytes(8, "big")


def request_header(msg_id: int, token: str, client_id: int = 0, acked: int = 0) -> bytes:
    """``encode(Header(msg_id=..., token=..., client_id=..., acked=...))`` (each int below
    2**64, msg_id above 0), made directly."""
    token_bytes = _tokens.get(token)
    if token_bytes is None:
        if len(_tokens) > 64:  # tokens change rarely; never let them pile up
            _tokens.clear()
        token_bytes = _tokens[token] = cbor2.dumps(token)
    session = _cbor_uint(client_id) + _cbor_uint(acked)
    return _HEADER_PREFIX + _cbor_uint(msg_id) + b"\x00" + token_bytes + session


def reply_to(raw: bytes) -> int:
    """``in_reply_to`` of a reply's header frame made as a member makes them (no msg_id, no
    token, no session); -1 for any other header, to be decoded instead."""
    n = len(raw)
    if n < _REPLY_SHORTEST or not raw.startswith(_REPLY_PREFIX) or not raw.endswith(_REPLY_SUFFIX):
        return -1
    first = raw[_AT]
    if first < 24:
        return first if n == _REPLY_SHORTEST else -1
    width = _UINT_WIDTH.get(first, 0)
    if not width or n != _REPLY_SHORTEST + width:
        return -1
    return int.from_bytes(raw[_AT + 1 : _AT + 1 + width], "big")


_REPLY_PREFIX = _HEADER_PREFIX + b"\x00"  # msg_id 0
_REPLY_SUFFIX = b"\x60\x00\x00"  # no token, client_id 0, acked 0
_AT = len(_REPLY_PREFIX)  # where in_reply_to starts
_REPLY_SHORTEST = _AT + 1 + len(_REPLY_SUFFIX)
_UINT_WIDTH = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}


class TooLarge(DecodeError):
    """A body over the receiver's limit, refused without decoding it."""

    def __init__(self, header: Header, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes is larger than the limit of {limit}")
        self.header = header


def unpack_header(frames: list[bytes], max_body: int | None = None) -> tuple[Header, bytes]:
    """Split ``[body]`` or ``[header, body]`` (routing ids already removed) and check the
    header; a body longer than ``max_body`` raises ``TooLarge``."""
    if len(frames) == 1:
        header, body = PLAIN_HEADER, frames[0]
    elif len(frames) != 2:
        raise DecodeError(f"expected 1 or 2 frames ([header,] body), got {len(frames)}")
    else:
        raw, body = frames
        if len(raw) > MAX_HEADER_BYTES:
            raise DecodeError(f"header of {len(raw)} bytes is larger than the limit of {MAX_HEADER_BYTES}")
        header = PLAIN_HEADER if raw == _PLAIN_FRAME else decode(raw, Header)
        if header.version != PROTOCOL_VERSION:
            raise DecodeError(f"unsupported protocol version {header.version}")
    if max_body is not None and len(body) > max_body:
        raise TooLarge(header, len(body), max_body)
    return header, body
