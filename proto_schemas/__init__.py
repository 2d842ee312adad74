"""Every message that crosses a process or network boundary, defined once.

Import a protocol module (``kv``, ``raft``, ``internal``, ``errors``, ``envelope``) for its
classes; ``codec.encode``/``codec.decode`` turn them into bytes and back. A protocol module is
imported when first needed, not with the package: building its classes costs about a
millisecond each, and a client call or an actor needs only a few of the modules. The codec
imports the module of a type id it meets for the first time (``codec.MODULES``).
"""

from __future__ import annotations

import importlib
from typing import Any

from proto_schemas.codec import DecodeError, decode, encode

PROTOCOLS = (
    "auth",
    "cluster",
    "envelope",
    "errors",
    "internal",
    "kv",
    "lease",
    "maintenance",
    "raft",
    "watch",
)

__all__ = ["DecodeError", "decode", "encode", *PROTOCOLS]


def __getattr__(name: str) -> Any:
    if name not in PROTOCOLS:
        raise AttributeError(f"module 'proto_schemas' has no attribute {name!r}")
    return importlib.import_module(f"proto_schemas.{name}")
