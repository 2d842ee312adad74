"""etcd's protobuf messages <-> etcdz's CBOR messages, and etcdz errors -> gRPC statuses.

etcdz's messages already carry etcd's names (proto_schemas/kv.py says so), so most of the
translation is by name: a protobuf message maps to the etcdz class of the same name (the auth
service's ``AuthUserAddRequest`` to ``UserAddRequest``: etcdz drops the service prefix), and a
field to the etcdz field of the same name in snake case (``ID`` -> ``id``, ``peerURLs`` ->
``peer_urls``, ``grantedTTL`` -> ``granted_ttl``). Where the shapes differ the difference is
written out here, once: the oneofs of ``RequestOp``/``ResponseOp``/``WatchRequest`` (etcdz
lists the message itself), ``Compare``'s ``target_union`` (etcdz flattens it: same names),
``UserAddOptions`` (etcdz flattens ``no_password``).

A request that cannot be expressed (an empty ``RequestOp``, a ``WatchRequest`` with nothing
set) raises ``Untranslatable``, answered as etcd answers a malformed request. Pure: no sockets.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from proto_schemas.errors import TEXTS, ErrorCode, ErrorResponse

CBOR_MODULES = ("kv", "watch", "lease", "cluster", "maintenance", "auth")

# gRPC status codes by name (grpc.StatusCode's names), as etcd's api/v3rpc/rpctypes/error.go
# pairs each of its error texts with a code: clients branch on the pair.
STATUS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "INVALID_ARGUMENT",
    ErrorCode.UNKNOWN_OP: "INVALID_ARGUMENT",
    ErrorCode.REQUEST_TOO_LARGE: "INVALID_ARGUMENT",
    ErrorCode.TOO_MANY_REQUESTS: "RESOURCE_EXHAUSTED",
    ErrorCode.TIMEOUT: "UNAVAILABLE",
    ErrorCode.COMPACTED: "OUT_OF_RANGE",
    ErrorCode.FUTURE_REV: "OUT_OF_RANGE",
    ErrorCode.TOO_MANY_OPS: "INVALID_ARGUMENT",
    ErrorCode.DUPLICATE_KEY: "INVALID_ARGUMENT",
    ErrorCode.EMPTY_KEY: "INVALID_ARGUMENT",
    ErrorCode.NO_LEADER: "UNAVAILABLE",
    ErrorCode.LEADER_CHANGED: "UNAVAILABLE",
    ErrorCode.STOPPING: "UNAVAILABLE",
    ErrorCode.NO_SPACE: "RESOURCE_EXHAUSTED",
    ErrorCode.LEASE_NOT_FOUND: "NOT_FOUND",
    ErrorCode.INTERNAL: "INTERNAL",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.KEY_NOT_FOUND: "INVALID_ARGUMENT",
    ErrorCode.MEMBER_EXIST: "FAILED_PRECONDITION",
    ErrorCode.PEER_URL_EXIST: "FAILED_PRECONDITION",
    ErrorCode.MEMBER_NOT_ENOUGH_STARTED: "FAILED_PRECONDITION",
    ErrorCode.MEMBER_BAD_URLS: "INVALID_ARGUMENT",
    ErrorCode.MEMBER_NOT_FOUND: "NOT_FOUND",
    ErrorCode.MEMBER_NOT_LEARNER: "FAILED_PRECONDITION",
    ErrorCode.LEARNER_NOT_READY: "FAILED_PRECONDITION",
    ErrorCode.TOO_MANY_LEARNERS: "FAILED_PRECONDITION",
    ErrorCode.NOT_LEADER: "FAILED_PRECONDITION",
    ErrorCode.BAD_LEADER_TRANSFEREE: "FAILED_PRECONDITION",
    ErrorCode.UNHEALTHY: "UNAVAILABLE",
    ErrorCode.ID_REMOVED: "FAILED_PRECONDITION",
    ErrorCode.CLUSTER_ID_MISMATCH: "FAILED_PRECONDITION",
    ErrorCode.LEASE_EXIST: "FAILED_PRECONDITION",
    ErrorCode.LEASE_TTL_TOO_LARGE: "OUT_OF_RANGE",
    ErrorCode.CORRUPT: "DATA_LOSS",
    ErrorCode.AUTH_FAILED: "INVALID_ARGUMENT",
    ErrorCode.INVALID_AUTH_TOKEN: "UNAUTHENTICATED",
    ErrorCode.PERMISSION_DENIED: "PERMISSION_DENIED",
    ErrorCode.USER_NOT_FOUND: "FAILED_PRECONDITION",
    ErrorCode.ROLE_NOT_FOUND: "FAILED_PRECONDITION",
    ErrorCode.AUTH_NOT_ENABLED: "FAILED_PRECONDITION",
    ErrorCode.USER_EMPTY: "INVALID_ARGUMENT",
    ErrorCode.USER_ALREADY_EXIST: "FAILED_PRECONDITION",
    ErrorCode.ROLE_ALREADY_EXIST: "FAILED_PRECONDITION",
    ErrorCode.ROLE_EMPTY: "INVALID_ARGUMENT",
    ErrorCode.ROOT_USER_NOT_EXIST: "FAILED_PRECONDITION",
    ErrorCode.ROOT_ROLE_NOT_EXIST: "FAILED_PRECONDITION",
    ErrorCode.ROLE_NOT_GRANTED: "FAILED_PRECONDITION",
    ErrorCode.PERMISSION_NOT_GRANTED: "FAILED_PRECONDITION",
    ErrorCode.INVALID_AUTH_MGMT: "INVALID_ARGUMENT",
    ErrorCode.AUTH_OLD_REVISION: "INVALID_ARGUMENT",
    ErrorCode.NOT_SUPPORTED_FOR_LEARNER: "UNAVAILABLE",  # etcd 3.4's (3.5 says FAILED_PRECONDITION)
    ErrorCode.MEMBER_NAME_EXIST: "FAILED_PRECONDITION",
    ErrorCode.CLUSTER_TOKEN_MISMATCH: "FAILED_PRECONDITION",
}
NOT_CAPABLE = "etcdserver: not capable"  # etcd's answer to an RPC this server does not offer
UNMARSHAL = "grpc: error unmarshalling request"  # grpc-go's text for undecodable bytes

# The oneofs etcdz spells as the message itself: oneof field name by etcdz class name.
REQUEST_OP = {
    "RangeRequest": "request_range",
    "PutRequest": "request_put",
    "DeleteRangeRequest": "request_delete_range",
    "TxnRequest": "request_txn",
}
RESPONSE_OP = {
    "RangeResponse": "response_range",
    "PutResponse": "response_put",
    "DeleteRangeResponse": "response_delete_range",
    "TxnResponse": "response_txn",
}


class Untranslatable(ValueError):
    """A well-formed protobuf message with no etcdz meaning (an empty oneof, say)."""


def status_of(error: ErrorResponse) -> tuple[str, str]:
    """The gRPC status (code name, message) etcd gives for this error."""
    return STATUS.get(error.code, "UNKNOWN"), error.message


def cancel_reason(reason: str) -> str:
    """A watch's cancel reason as etcd words it: a watch refused for want of permission carries
    the gRPC error's text (``rpc error: code = PermissionDenied desc = etcdserver: permission
    denied``), which etcdctl prints; the hubs and the ZeroMQ SDK keep etcd's plain text."""
    if reason != TEXTS[ErrorCode.PERMISSION_DENIED]:
        return reason
    code = "".join(part.title() for part in STATUS[ErrorCode.PERMISSION_DENIED].split("_"))
    return f"rpc error: code = {code} desc = {reason}"


def snake(name: str) -> str:
    """etcd's protobuf field name as etcdz spells it (``peerURLs`` -> ``peer_urls``)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


@functools.cache
def cbor_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    for name in CBOR_MODULES:
        module = importlib.import_module(f"proto_schemas.{name}")
        for attr, value in vars(module).items():
            if dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                classes[attr] = value  # type: ignore[assignment]
    return classes


def cbor_name(pb_name: str) -> str:
    if pb_name.startswith(("AuthUser", "AuthRole")):
        return pb_name[len("Auth") :]
    return pb_name


def _repeated(f: FieldDescriptor) -> bool:
    if hasattr(f, "is_repeated"):  # protobuf 6 (``label`` is deprecated there)
        return bool(f.is_repeated)
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)


@functools.cache
def _required(cls: type) -> frozenset[str]:
    """The etcdz fields without a default: an unset protobuf message there is its empty one
    (as protobuf reads an unset message), for the gateway to judge."""
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


@functools.cache
def _fields(descriptor: Descriptor) -> tuple[tuple[str, str, bool, bool], ...]:
    """(protobuf name, etcdz name, is a message, is repeated) of each field."""
    return tuple(
        (f.name, snake(f.name), f.type == FieldDescriptor.TYPE_MESSAGE, _repeated(f))
        for f in descriptor.fields
    )


def to_cbor(msg: Message) -> Any:
    """A protobuf request (or a message inside one) -> its etcdz message."""
    name = msg.DESCRIPTOR.name
    if name == "RequestOp":
        which = msg.WhichOneof("request")
        if which is None:
            raise Untranslatable("etcdserver: request op is empty")
        return to_cbor(getattr(msg, which))
    if name == "WatchRequest":
        which = msg.WhichOneof("request_union")
        if which is None:
            raise Untranslatable("watch request is empty")
        watch = cbor_classes()["WatchRequest"]
        return watch(request=to_cbor(getattr(msg, which)))
    cls = cbor_classes().get(cbor_name(name))
    if cls is None:
        raise Untranslatable(f"no etcdz message for {name}")
    wanted = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for pb_name, ours, is_message, repeated in _fields(msg.DESCRIPTOR):
        value = getattr(msg, pb_name)
        if pb_name == "options" and name == "AuthUserAddRequest":
            kwargs["no_password"] = value.no_password
            continue
        if ours not in wanted:
            continue
        if repeated:
            kwargs[ours] = [to_cbor(v) for v in value] if is_message else list(value)
        elif is_message:
            if msg.HasField(pb_name) or ours in _required(cls):
                kwargs[ours] = to_cbor(value)
        else:
            kwargs[ours] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a field etcdz requires is missing
        raise Untranslatable(f"{name}: {exc}") from None


def fill(msg: Message, obj: Any) -> Message:
    """Copy an etcdz response (or a message inside one) into the protobuf ``msg``."""
    for pb_name, ours, is_message, repeated in _fields(msg.DESCRIPTOR):
        if pb_name == "responses" and msg.DESCRIPTOR.name == "TxnResponse":
            for op in obj.responses:
                fill(getattr(msg.responses.add(), RESPONSE_OP[type(op).__name__]), op)
            continue
        value = getattr(obj, ours, None)
        if value is None:
            continue
        if repeated:
            target = getattr(msg, pb_name)
            if is_message:
                for item in value:
                    fill(target.add(), item)
            else:
                target.extend(value)
        elif is_message:
            fill(getattr(msg, pb_name), value)
        else:
            setattr(msg, pb_name, value)
    return msg


def to_pb(obj: Any, pb_class: type[Message]) -> Message:
    return fill(pb_class(), obj)


__all__ = [
    "NOT_CAPABLE",
    "STATUS",
    "UNMARSHAL",
    "Untranslatable",
    "fill",
    "snake",
    "status_of",
    "to_cbor",
    "to_pb",
]
