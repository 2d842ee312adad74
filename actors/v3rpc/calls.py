"""What every handler of the gRPC door takes from a call's context or gives back to it: the
caller's token and certificate name, the request decoded and translated, an etcdz error as the
gRPC status etcd gives for it. Shared by the unary calls (shell.py) and the streams."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from actors.v3rpc.translate import UNMARSHAL, Untranslatable, status_of, to_cbor
from proto_schemas.errors import ErrorResponse


def token_of(context: grpc.aio.ServicerContext) -> str:
    """The auth token, in the ``token`` metadata as clientv3 sends it."""
    for key, value in context.invocation_metadata() or ():
        if key in ("token", "authorization"):
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""


def common_name(context: grpc.aio.ServicerContext) -> str:
    """The Common Name of the client's certificate, as the TLS handshake verified it."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else ""


async def fail(context: grpc.aio.ServicerContext, error: ErrorResponse) -> None:
    code, message = status_of(error)
    await context.abort(getattr(grpc.StatusCode, code), message)


async def parse(context: grpc.aio.ServicerContext, cls: type[Message], raw: bytes) -> Message:
    try:
        return cls.FromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        await context.abort(grpc.StatusCode.INTERNAL, f"{UNMARSHAL}: {exc}")
        raise  # not reached: abort raises


async def translated(context: grpc.aio.ServicerContext, msg: Message) -> Any:
    try:
        return to_cbor(msg)
    except Untranslatable as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
