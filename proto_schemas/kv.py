"""etcd's v3 KV API (rpc.proto / kv.proto) as etcdz messages.

Field names, defaults and enum values follow etcd's protobuf definitions so that a user of etcd
reads them without a dictionary. Type ids 100-199.
"""

from __future__ import annotations

import enum
from dataclasses import field

from proto_schemas.codec import message, wire


class SortOrder(enum.IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(enum.IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(enum.IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


@message(100)
@wire
class ResponseHeader:
    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@message(101)
@wire
class KeyValue:
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


@message(102)
@wire
class RangeRequest:
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@message(103)
@wire
class RangeResponse:
    header: ResponseHeader
    kvs: list[KeyValue] = field(default_factory=list)
    more: bool = False
    count: int = 0


@message(104)
@wire
class PutRequest:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@message(105)
@wire
class PutResponse:
    header: ResponseHeader
    prev_kv: KeyValue | None = None


@message(106)
@wire
class DeleteRangeRequest:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@message(107)
@wire
class DeleteRangeResponse:
    header: ResponseHeader
    deleted: int = 0
    prev_kvs: list[KeyValue] = field(default_factory=list)


@message(108)
@wire
class Compare:
    """etcd's Compare; the ``target_union`` is flattened: the field named by ``target`` is used."""

    key: bytes
    result: CompareResult = CompareResult.EQUAL
    target: CompareTarget = CompareTarget.VALUE
    range_end: bytes = b""
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0


@message(109)
@wire
class TxnRequest:
    compare: list[Compare] = field(default_factory=list)
    success: list[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest] = field(default_factory=list)
    failure: list[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest] = field(default_factory=list)


@message(110)
@wire
class TxnResponse:
    header: ResponseHeader
    succeeded: bool = False
    responses: list[RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse] = field(
        default_factory=list
    )


@message(111)
@wire
class CompactionRequest:
    revision: int
    physical: bool = False


@message(112)
@wire
class CompactionResponse:
    header: ResponseHeader


@message(113)
@wire
class RangeStreamRequest:
    """A range delivered in bounded chunks (etcd 3.7's RangeStream), pulled chunk by chunk.

    The first chunk pins the revision; the client asks for the next one with ``resume_key`` set
    to the previous chunk's ``resume_key`` and ``range.revision`` set to the pinned revision, so
    neither side ever holds the whole range in one message.
    """

    range: RangeRequest
    chunk_bytes: int = 1 << 20
    resume_key: bytes = b""


@message(114)
@wire
class RangeStreamResponse:
    header: ResponseHeader
    kvs: list[KeyValue] = field(default_factory=list)
    resume_key: bytes = b""  # empty: this was the last chunk
    count: int = 0


@message(115)
@wire
class StatusRequest:
    pass


@message(116)
@wire
class StatusResponse:
    header: ResponseHeader
    version: str = ""
    db_size: int = 0
    leader: int = 0
    raft_index: int = 0
    raft_term: int = 0
    raft_applied_index: int = 0
    errors: list[str] = field(default_factory=list)
    db_size_in_use: int = 0
    is_learner: bool = False


@message(117)
@wire
class HashKVRequest:
    revision: int = 0


@message(118)
@wire
class HashKVResponse:
    header: ResponseHeader
    hash: int = 0
    compact_revision: int = 0


WRITE_REQUESTS = (PutRequest, DeleteRangeRequest, TxnRequest, CompactionRequest)
