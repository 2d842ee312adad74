"""Txn rules that do not need the database: request checks (as etcd's ``checkTxnRequest`` and
``checkIntervals``) and compare evaluation (as etcd's ``applyCompare``).

Budget: each of compare/success/failure may hold at most ``max_txn_ops`` operations; a nested
txn is checked against what its parent left of the budget, so nesting cannot multiply it.
Duplicates: within one branch, a key may be put once, and never inside a range the same branch
deletes; the two branches of a nested txn may touch the same key (only one of them runs).
"""

from __future__ import annotations

from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.kv import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    KeyValue,
    PutRequest,
    RangeRequest,
    TxnRequest,
)

Op = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest


def validate_txn(req: TxnRequest, max_txn_ops: int = 128) -> None:
    _check_budget(req, max_txn_ops)
    for branch in (req.success, req.failure):
        _check_intervals(branch)


def _check_budget(req: TxnRequest, budget: int) -> None:
    used = max(len(req.compare), len(req.success), len(req.failure))
    if used > budget:
        raise EtcdzError(ErrorCode.TOO_MANY_OPS)
    for c in req.compare:
        if not c.key:
            raise EtcdzError(ErrorCode.EMPTY_KEY)
    for op in (*req.success, *req.failure):
        if isinstance(op, TxnRequest):
            _check_budget(op, budget - used)
        elif not op.key:
            raise EtcdzError(ErrorCode.EMPTY_KEY)


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """etcd's range rule: empty end is one key, ``\\0`` is every key from ``start`` on."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


def _check_intervals(ops: list[Op]) -> tuple[list[tuple[bytes, bytes]], set[bytes]]:
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteRangeRequest)]
    puts: set[bytes] = set()
    for op in ops:
        if isinstance(op, PutRequest):
            if op.key in puts:
                raise EtcdzError(ErrorCode.DUPLICATE_KEY)
            puts.add(op.key)
        elif isinstance(op, TxnRequest):
            then_dels, then_puts = _check_intervals(op.success)
            else_dels, else_puts = _check_intervals(op.failure)
            nested = then_puts | else_puts
            if nested & puts:
                raise EtcdzError(ErrorCode.DUPLICATE_KEY)
            puts |= nested
            dels.extend(then_dels + else_dels)
    for key in puts:
        if any(in_range(key, start, end) for start, end in dels):
            raise EtcdzError(ErrorCode.DUPLICATE_KEY)
    return dels, puts


def compare_holds(cmp: Compare, kvs: list[KeyValue]) -> bool:
    """A compare over a key (or range) holds when it holds for every key found; a missing key
    compares as etcd's zero KeyValue, except that a VALUE compare on it is false."""
    if not kvs:
        if cmp.target == CompareTarget.VALUE:
            return False
        kvs = [KeyValue(key=cmp.key)]
    return all(_holds(cmp, kv) for kv in kvs)


def _holds(cmp: Compare, kv: KeyValue) -> bool:
    actual: bytes | int
    expected: bytes | int
    if cmp.target == CompareTarget.VALUE:
        actual, expected = kv.value, cmp.value
    elif cmp.target == CompareTarget.VERSION:
        actual, expected = kv.version, cmp.version
    elif cmp.target == CompareTarget.CREATE:
        actual, expected = kv.create_revision, cmp.create_revision
    elif cmp.target == CompareTarget.MOD:
        actual, expected = kv.mod_revision, cmp.mod_revision
    else:
        actual, expected = kv.lease, cmp.lease
    if cmp.result == CompareResult.EQUAL:
        return actual == expected
    if cmp.result == CompareResult.NOT_EQUAL:
        return actual != expected
    if cmp.result == CompareResult.GREATER:
        return actual > expected  # type: ignore[operator]
    return actual < expected  # type: ignore[operator]
