"""Every message that crosses a process or network boundary, defined once.

Import a protocol module (``kv``, ``raft``, ``internal``, ``errors``, ``envelope``) for its
classes; ``codec.encode``/``codec.decode`` turn them into bytes and back.
"""

from proto_schemas import (  # noqa: F401  (registers types)
    auth,
    cluster,
    envelope,
    errors,
    internal,
    kv,
    lease,
    maintenance,
    raft,
    watch,
)
from proto_schemas.codec import DecodeError, decode, encode

__all__ = [
    "auth",
    "cluster",
    "DecodeError",
    "decode",
    "encode",
    "envelope",
    "errors",
    "internal",
    "kv",
    "lease",
    "maintenance",
    "raft",
    "watch",
]
