"""The frame layout every etcdz socket uses, built and parsed only here.

A message travels as ``[*routing_ids, header, body]``: ``header`` is a small CBOR
``Header`` (protocol version, msg_id, in_reply_to, and the client's auth token), ``body`` an
encoded message. Keeping the
body in its own frame lets a hop that only forwards (the gateway relaying a backend's response)
pass the bytes on without decoding and re-encoding them. Type id 1.

A message with the empty header (almost every message between a node's actors) travels as
``[*routing_ids, body]``: a second frame costs the sender ~6 us (pyzmq's multipart send) and
the receiver ~1 us, on every hop of every write.
"""

from __future__ import annotations

from typing import Any

from proto_schemas.codec import DecodeError, decode, encode, message, wire

PROTOCOL_VERSION = 1


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


def unpack_header(frames: list[bytes]) -> tuple[Header, bytes]:
    """Split ``[body]`` or ``[header, body]`` (routing ids already removed) and check the
    header."""
    if len(frames) == 1:
        return PLAIN_HEADER, frames[0]
    if len(frames) != 2:
        raise DecodeError(f"expected 1 or 2 frames ([header,] body), got {len(frames)}")
    if frames[0] == _PLAIN_FRAME:
        return PLAIN_HEADER, frames[1]
    header = decode(frames[0], Header)
    if header.version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported protocol version {header.version}")
    return header, frames[1]
