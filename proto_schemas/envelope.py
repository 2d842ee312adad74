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

from proto_schemas.codec import DecodeError, decode, encode, message, wire

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 8192  # three ints and a token (a JWT is a few hundred bytes)
MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes (a watch hub's limit)
MAX_REQUEST_ITEMS = 1 << 16  # CBOR items in one client request (a txn of 128 ops has ~1,500)


@message(1)
@wire
class Header:
    version: int = PROTOCOL_VERSION
    msg_id: int = 0
    in_reply_to: int = 0
    token: str = ""  # from Authenticate; checked by the gateway when auth is enabled


# Most messages between a node's actors carry the empty header: it is not sent at all (one
# frame), and when it is sent anyway its bytes are recognised rather than decoded.
PLAIN_HEADER = Header()
_PLAIN_FRAME = encode(PLAIN_HEADER)


def pack(body: Any, msg_id: int = 0, in_reply_to: int = 0, token: str = "") -> list[bytes]:
    """Frames for one message; ``body`` may be a message or its already-encoded bytes."""
    raw = body if isinstance(body, bytes) else encode(body)
    if not (msg_id or in_reply_to or token):
        return [raw]
    return [encode(Header(msg_id=msg_id, in_reply_to=in_reply_to, token=token)), raw]


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
