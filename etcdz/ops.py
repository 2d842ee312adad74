"""Request builders shared by ``Client`` methods, txn branches and the CLI.

Keys and values may be ``str`` (UTF-8) or ``bytes``. ``prefix=True`` and ``from_key=True``
compute ``range_end`` as etcd's clientv3 does.
"""

from __future__ import annotations

from typing import Any

from proto_schemas.kv import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)

Bytes = str | bytes


def to_bytes(value: Bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def prefix_end(key: bytes) -> bytes:
    """The smallest key greater than every key with ``key`` as prefix (etcd's GetPrefixRangeEnd)."""
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # all 0xff: no upper bound


def range_end_for(key: bytes, range_end: Bytes | None, prefix: bool, from_key: bool) -> bytes:
    if prefix:
        return prefix_end(key) if key else b"\0"
    if from_key:
        return b"\0"
    return to_bytes(range_end) if range_end is not None else b""


def key_and_end(key: Bytes, range_end: Bytes | None, prefix: bool, from_key: bool) -> tuple[bytes, bytes]:
    k = to_bytes(key)
    if (prefix or from_key) and not k:
        return b"\0", b"\0"  # etcdctl: an empty key with --prefix/--from-key means every key
    return k, range_end_for(k, range_end, prefix, from_key)


def get(
    key: Bytes,
    *,
    range_end: Bytes | None = None,
    prefix: bool = False,
    from_key: bool = False,
    limit: int = 0,
    revision: int = 0,
    sort_order: SortOrder = SortOrder.NONE,
    sort_target: SortTarget = SortTarget.KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> RangeRequest:
    k, end = key_and_end(key, range_end, prefix, from_key)
    return RangeRequest(
        key=k,
        range_end=end,
        limit=limit,
        revision=revision,
        sort_order=sort_order,
        sort_target=sort_target,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        min_mod_revision=min_mod_revision,
        max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision,
        max_create_revision=max_create_revision,
    )


def put(
    key: Bytes,
    value: Bytes = b"",
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> PutRequest:
    return PutRequest(
        key=to_bytes(key),
        value=to_bytes(value),
        lease=lease,
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def delete(
    key: Bytes,
    *,
    range_end: Bytes | None = None,
    prefix: bool = False,
    from_key: bool = False,
    prev_kv: bool = False,
) -> DeleteRangeRequest:
    k, end = key_and_end(key, range_end, prefix, from_key)
    return DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)


class _Target:
    """``Value(key) == b"x"``, ``Version(key) > 0``: comparisons that build etcd ``Compare``s."""

    target: CompareTarget
    field: str

    def __init__(self, key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False) -> None:
        self.key = to_bytes(key)
        self.range_end = range_end_for(self.key, range_end, prefix, False)

    def _cmp(self, result: CompareResult, other: object) -> Compare:
        value: Any = to_bytes(other) if self.target == CompareTarget.VALUE else other  # type: ignore[arg-type]
        if self.target != CompareTarget.VALUE and type(value) is not int:
            raise TypeError(f"{type(self).__name__} compares with an int")
        return Compare(
            key=self.key,
            range_end=self.range_end,
            result=result,
            target=self.target,
            **{self.field: value},
        )

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp(CompareResult.EQUAL, other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp(CompareResult.NOT_EQUAL, other)

    def __lt__(self, other: object) -> Compare:
        return self._cmp(CompareResult.LESS, other)

    def __gt__(self, other: object) -> Compare:
        return self._cmp(CompareResult.GREATER, other)

    __hash__ = None  # type: ignore[assignment]


class Value(_Target):
    target, field = CompareTarget.VALUE, "value"


class Version(_Target):
    target, field = CompareTarget.VERSION, "version"


class CreateRevision(_Target):
    target, field = CompareTarget.CREATE, "create_revision"


class ModRevision(_Target):
    target, field = CompareTarget.MOD, "mod_revision"


class LeaseId(_Target):
    target, field = CompareTarget.LEASE, "lease"


def txn(
    compare: list[Compare] | None = None,
    success: list[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest] | None = None,
    failure: list[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest] | None = None,
) -> TxnRequest:
    return TxnRequest(compare=list(compare or []), success=list(success or []), failure=list(failure or []))
