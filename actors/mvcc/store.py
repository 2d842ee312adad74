"""The MVCC store: etcd's revision rules for writes, applied in one LevelDB batch with the consistent index.

Rules (etcd's mvcc package):
- The revision starts at 1. Every write transaction (a Put, a DeleteRange that deletes
  something, a Txn whose executed branch writes) takes the next main revision; its operations
  take sub revisions 0, 1, 2, ... A read, a delete of nothing or a read-only txn takes none.
- A key's create_revision is the main revision of its first put since it last did not exist;
  version counts puts since then (1 on creation); a delete writes a tombstone and resets both.
- ``apply`` is the only writer. It runs a batch of committed raft entries, skips any at or below
  the consistent index, and commits all their changes *and* the new consistent index in one
  LevelDB write batch: after a crash, either the whole batch is there or none of it, and the
  WAL replay re-applies exactly what is missing.
- Reads inside a batch (txn compares, txn ranges, prev_kv) see the batch's earlier writes
  (``reads.py``: the merged view over the versions staged here).
- A second copy of a write in the log (same client session and sequence number) is answered
  as the first was, and applies nothing (``sessions.py``).
- Every key change is also an ``Event`` (with the previous version), in revision order, for
  the watch hubs; a request that fails leaves none; while no hub listens (``events_wanted``
  False) none is made.

The layout is in ``keys.py``; the reads in ``reads.py``; compaction in ``compaction.py``.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from actors.auth.perms import lease_keys_write, leases_touched
from actors.auth.store import AuthStore
from actors.mvcc import compaction
from actors.mvcc import keys as K
from actors.mvcc.alarms import AlarmTable
from actors.mvcc.leases import LeaseTable
from actors.mvcc.reads import StoreReads, with_header
from actors.mvcc.sessions import SessionTable
from actors.mvcc.txn import compare_holds
from proto_schemas.auth import AUTH_REQUESTS
from proto_schemas.codec import encode
from proto_schemas.errors import ErrorCode, EtcdzError, error_response
from proto_schemas.internal import ApplyResult, InternalRequest
from proto_schemas.kv import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    EventType,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    ResponseHeader,
    TxnRequest,
    TxnResponse,
)
from proto_schemas.lease import (
    MAX_LEASE_TTL,
    LeaseCheckpointRequest,
    LeaseCheckpointResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
)
from proto_schemas.maintenance import AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType
from proto_schemas.watch import Event

# The answer to a copy of a write its client has had the answer to: nobody waits for it.
_LATE_COPY = encode(error_response(ErrorCode.BAD_REQUEST, "a late copy of a write already answered"))


class MvccStore(StoreReads):
    """The store: its state and its one writer, ``apply``; the reads come from ``StoreReads``."""

    def __init__(self, db: Any, *, cluster_id: int, member_id: int) -> None:
        self.db = db
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.consistent_index = K.bytes_int(db.get(K.META_CONSISTENT_INDEX))
        self.current_revision = K.bytes_int(db.get(K.META_REVISION)) or 1
        self.compact_revision = K.bytes_int(db.get(K.META_COMPACT))
        self.leases = LeaseTable(db)
        self.alarms = AlarmTable(db)
        self.auth = AuthStore(db)
        self.sessions = SessionTable(db)
        self._overlay = {}
        self._overlay_keys = []
        self._wb: Any = None
        self._seeker: Any = None
        self._term = 0
        self._events: list[Event] = []
        # Whether anyone receives the events (the shell knows which hubs subscribe): without
        # a listener they are not made at all, where each cost a put ~3 us of objects.
        self.events_wanted = True

    # -- apply (the only writer) ---------------------------------------------------------------
    def apply(
        self, requests: list[tuple[int, int, InternalRequest]], last_index: int = 0
    ) -> list[ApplyResult]:
        """Apply committed requests in log order; ``last_index`` advances the consistent index
        past entries that carried no request (a new leader's empty entry)."""
        results: list[ApplyResult] = []
        self._wb = self.db.write_batch()
        try:
            for index, term, req in requests:
                if index <= self.consistent_index:
                    continue
                if req.client_id and (answer := self.sessions.answered(req.client_id, req.seq)) is not None:
                    body = answer if isinstance(answer, bytes) else _LATE_COPY
                    results.append(ApplyResult(request_id=req.request_id, body=body))
                    self.consistent_index = index
                    continue
                self._term = term
                if isinstance(req.request, CompactionRequest):
                    self._commit()  # compaction must see every earlier write on disk
                events_before = len(self._events)
                try:
                    self._admit(req)
                    response: Any = self._apply_one(req.request)
                except EtcdzError as exc:
                    response = exc.to_response()
                    del self._events[events_before:]
                except Exception as exc:  # a bug must not become a poison entry that loops
                    response = EtcdzError(ErrorCode.INTERNAL, repr(exc)).to_response()
                    del self._events[events_before:]
                body = encode(response)
                if req.client_id:
                    self.sessions.record(req.client_id, req.seq, req.acked, body, index)
                results.append(ApplyResult(request_id=req.request_id, body=body))
                self.consistent_index = index
            self.consistent_index = max(self.consistent_index, last_index)
            self._commit()
        finally:
            self._wb = self._seeker = None
            self._overlay.clear()
            self._overlay_keys.clear()
        return results

    def take_events(self) -> list[Event]:
        """The events of what was applied since the last call, in revision order."""
        events, self._events = self._events, []
        return events

    def _commit(self) -> None:
        """One atomic LevelDB write: the pending versions and the metadata describing them."""
        for key, versions in self._overlay.items():
            for main, sub, record in versions:
                self._wb.put(K.index_key(key, main, sub), record)
                self._wb.put(K.history_key(main, sub), key)
        self.sessions.flush(self._wb)
        self._wb.put(K.META_CONSISTENT_INDEX, K.int_bytes(self.consistent_index))
        self._wb.put(K.META_REVISION, K.int_bytes(self.current_revision))
        self._wb.put(K.META_COMPACT, K.int_bytes(self.compact_revision))
        self._wb.write()
        self._wb = self.db.write_batch()
        self._seeker = None  # it would not see what was just written
        self._overlay.clear()
        self._overlay_keys.clear()

    def _admit(self, req: InternalRequest) -> None:
        """The auth check at apply (see ``AuthStore.admit``); revoking a lease or attaching a
        key to it also needs write permission on every key it holds, known only here and
        checked against the log's order (etcd's checkLeasePuts)."""
        self.auth.admit(req.user, req.auth_revision, req.request)
        if not self.auth.enabled or req.user is None:
            return
        for lease in leases_touched(req.request):
            held = self.leases.keys.get(lease)
            if held:
                self.auth.check(req.user, lease_keys_write(held))

    def _apply_one(self, request: Any) -> Any:
        if isinstance(request, AUTH_REQUESTS):
            return self.auth.apply(self._wb, request, self.header())
        if isinstance(request, AlarmRequest):
            return AlarmResponse(header=self.header(), alarms=self._alarm(request))
        self.alarms.check(request)
        if isinstance(request, CompactionRequest):
            self._compact(request.revision)
            return CompactionResponse(header=self.header())
        writes = _Writes(self.current_revision + 1)
        response = self._execute(request, writes)
        if writes.sub:
            self.current_revision += 1
        if isinstance(response, TxnResponse):
            response = _stamp_responses(response, self.current_revision)
        return with_header(response, self.header())

    def _alarm(self, request: AlarmRequest) -> list[AlarmMember]:
        if request.action == AlarmAction.GET:
            return self.alarms.listed(request.alarm)
        if request.alarm == AlarmType.NONE:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "an alarm type is required")
        if request.action == AlarmAction.ACTIVATE:
            return [self.alarms.activate(self._wb, request.member_id, request.alarm)]
        cleared = self.alarms.deactivate(self._wb, request.member_id, request.alarm)
        return [cleared] if cleared is not None else []

    def _execute(self, request: Any, w: _Writes) -> Any:
        if isinstance(request, LeaseGrantRequest | LeaseRevokeRequest | LeaseCheckpointRequest):
            return self._lease_op(request, w)
        if isinstance(request, PutRequest):
            return self._put(request, w)
        if isinstance(request, DeleteRangeRequest):
            return self._delete(request, w)
        if isinstance(request, RangeRequest):
            return self._range(request, self._rev_after(w))
        if isinstance(request, TxnRequest):
            rev = self._rev_after(w)
            ok = all(compare_holds(c, self._kvs(c.key, c.range_end, rev)) for c in request.compare)
            branch = request.success if ok else request.failure
            self._precheck(branch, rev)
            return TxnResponse(
                header=ResponseHeader(),
                succeeded=ok,
                responses=[self._execute(op, w) for op in branch],
            )
        raise EtcdzError(ErrorCode.UNKNOWN_OP, type(request).__name__)

    def _rev_after(self, w: _Writes) -> int:
        return w.main if w.sub else self.current_revision

    def _precheck(self, ops: list[Any], rev: int) -> None:
        """A txn fails as a whole before it writes anything (etcd's checkRequests)."""
        for op in ops:
            if isinstance(op, PutRequest):
                if op.lease and op.lease not in self.leases:
                    raise EtcdzError(ErrorCode.LEASE_NOT_FOUND)
                if (op.ignore_value or op.ignore_lease) and not self._kvs(op.key, b"", rev):
                    raise EtcdzError(ErrorCode.KEY_NOT_FOUND)
            elif isinstance(op, RangeRequest) and op.revision > rev:
                raise EtcdzError(ErrorCode.FUTURE_REV)

    def _put(self, req: PutRequest, w: _Writes) -> PutResponse:
        self._precheck([req], self._rev_after(w))
        prev = self._latest(req.key, self._rev_after(w))
        value = prev.value if req.ignore_value and prev else req.value
        lease = prev.lease if req.ignore_lease and prev else req.lease
        main, sub = w.next()
        create = prev.create_revision if prev else main
        version = prev.version + 1 if prev else 1
        self._stage(req.key, main, sub, K.pack_record(create, version, lease, value))
        if self.events_wanted:
            kv = KeyValue(
                key=req.key,
                create_revision=create,
                mod_revision=main,
                version=version,
                value=value,
                lease=lease,
            )
            self._events.append(Event(type=EventType.PUT, kv=kv, prev_kv=prev))
        self.leases.move(self._wb, req.key, prev.lease if prev else 0, lease)
        return PutResponse(header=ResponseHeader(), prev_kv=prev if req.prev_kv else None)

    def _delete(self, req: DeleteRangeRequest, w: _Writes) -> DeleteRangeResponse:
        found = self._kvs(req.key, req.range_end, self._rev_after(w))
        for kv in found:
            self._delete_one(kv, w)
            self.leases.move(self._wb, kv.key, kv.lease, 0)
        return DeleteRangeResponse(
            header=ResponseHeader(), deleted=len(found), prev_kvs=found if req.prev_kv else []
        )

    def _lease_op(self, request: Any, w: _Writes) -> Any:
        if isinstance(request, LeaseGrantRequest):
            if request.ttl > MAX_LEASE_TTL:
                raise EtcdzError(ErrorCode.LEASE_TTL_TOO_LARGE)
            if request.id <= 0 or request.id in self.leases:
                raise EtcdzError(ErrorCode.LEASE_EXIST)
            self.leases.grant(self._wb, request.id, request.ttl)
            return LeaseGrantResponse(header=ResponseHeader(), id=request.id, ttl=request.ttl)
        if isinstance(request, LeaseCheckpointRequest):
            for cp in request.checkpoints:
                self.leases.checkpoint(self._wb, cp.id, cp.remaining_ttl)
            return LeaseCheckpointResponse(header=ResponseHeader())
        if request.id not in self.leases:
            raise EtcdzError(ErrorCode.LEASE_NOT_FOUND)
        rev = self._rev_after(w)
        for key in self.leases.revoke(self._wb, request.id):  # one revision for all its keys
            latest = self._latest(key, rev)
            if latest is not None:
                self._delete_one(latest, w)
        return LeaseRevokeResponse(header=ResponseHeader())

    def _delete_one(self, kv: KeyValue, w: _Writes) -> None:
        main, sub = w.next()
        self._stage(kv.key, main, sub, K.pack_record(0, 0, 0, b"", tombstone=True))
        if self.events_wanted:
            self._events.append(
                Event(type=EventType.DELETE, kv=KeyValue(key=kv.key, mod_revision=main), prev_kv=kv)
            )

    def _stage(self, key: bytes, main: int, sub: int, record: bytes) -> None:
        versions = self._overlay.get(key)
        if versions is None:
            self._overlay[key] = versions = []
            bisect.insort(self._overlay_keys, key)
        versions.append((main, sub, record))

    # -- compaction ------------------------------------------------------------------------------
    def _compact(self, revision: int) -> None:
        """Compact at ``revision`` (``compaction.py``). Done inside the apply batch, so it is
        atomic with the consistent index; etcd's ``physical`` wait is therefore always satisfied."""
        if revision <= self.compact_revision:
            raise EtcdzError(ErrorCode.COMPACTED)
        if revision > self.current_revision:
            raise EtcdzError(ErrorCode.FUTURE_REV)
        compaction.compact(self.db, self._wb, revision)
        self.compact_revision = revision


class _Writes:
    """Revision allocation for one write transaction: main fixed, sub counting up."""

    __slots__ = ("main", "sub")

    def __init__(self, main: int) -> None:
        self.main = main
        self.sub = 0

    def next(self) -> tuple[int, int]:
        self.sub += 1
        return self.main, self.sub - 1


def _stamp_responses(txn: TxnResponse, revision: int) -> TxnResponse:
    """Sub-responses of a txn carry the txn's revision in their header, as etcd's do."""
    stamped = [_stamp_responses(r, revision) if isinstance(r, TxnResponse) else r for r in txn.responses]
    header = ResponseHeader(revision=revision)
    return dataclasses.replace(txn, responses=[dataclasses.replace(r, header=header) for r in stamped])
