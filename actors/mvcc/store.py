"""The MVCC store: etcd's revision rules over the layout in ``keys.py``.

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
  through an overlay of pending versions, merged over what LevelDB holds.
- Every key change is also an ``Event`` (with the previous version), in revision order, for
  the watch hubs; a request that fails leaves none.
"""

from __future__ import annotations

import bisect
import dataclasses
import zlib
from collections.abc import Iterator
from typing import Any

from actors.auth.perms import lease_keys_write, leases_touched
from actors.auth.store import AuthStore
from actors.mvcc import history
from actors.mvcc import keys as K
from actors.mvcc.alarms import AlarmTable
from actors.mvcc.leases import LeaseTable
from actors.mvcc.txn import compare_holds, in_range
from proto_schemas.auth import AUTH_REQUESTS, AuthState
from proto_schemas.codec import encode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.internal import ApplyResult, BackendState, InternalRequest
from proto_schemas.kv import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    EventType,
    HashKVRequest,
    HashKVResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RangeStreamRequest,
    RangeStreamResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from proto_schemas.lease import (
    MAX_LEASE_TTL,
    LeaseCheckpointRequest,
    LeaseCheckpointResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)
from proto_schemas.maintenance import AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType
from proto_schemas.watch import Event, WatchHistoryResponse

_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


class MvccStore:
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
        # pending versions of the batch being applied: key -> [(main, sub, record)]
        self._overlay: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self._overlay_keys: list[bytes] = []
        self._wb: Any = None
        self._term = 0
        self._events: list[Event] = []

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
                results.append(ApplyResult(request_id=req.request_id, body=encode(response)))
                self.consistent_index = index
            self.consistent_index = max(self.consistent_index, last_index)
            self._commit()
        finally:
            self._wb = None
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
        self._wb.put(K.META_CONSISTENT_INDEX, K.int_bytes(self.consistent_index))
        self._wb.put(K.META_REVISION, K.int_bytes(self.current_revision))
        self._wb.put(K.META_COMPACT, K.int_bytes(self.compact_revision))
        self._wb.write()
        self._wb = self.db.write_batch()
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
        return _with_header(response, self.header())

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
        kv = KeyValue(
            key=req.key, create_revision=create, mod_revision=main, version=version, value=value, lease=lease
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
        self._events.append(
            Event(type=EventType.DELETE, kv=KeyValue(key=kv.key, mod_revision=main), prev_kv=kv)
        )

    def lease_time_to_live(
        self, request: LeaseTimeToLiveRequest, remaining: int | None
    ) -> LeaseTimeToLiveResponse:
        """``remaining`` comes from the leader's expirer (None or -1: unknown there, so the
        checkpointed or granted TTL)."""
        found = self.leases.leases.get(request.id)
        if found is None:
            return LeaseTimeToLiveResponse(header=self.header(), id=request.id, ttl=-1)
        ttl, checkpointed = found
        keys = sorted(self.leases.keys.get(request.id, set())) if request.keys else []
        left = remaining if remaining is not None and remaining >= 0 else (checkpointed or ttl)
        return LeaseTimeToLiveResponse(
            header=self.header(), id=request.id, ttl=left, granted_ttl=ttl, keys=keys
        )

    def lease_leases(self) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(
            header=self.header(), leases=[LeaseStatus(id=i) for i in sorted(self.leases.leases)]
        )

    def _stage(self, key: bytes, main: int, sub: int, record: bytes) -> None:
        versions = self._overlay.get(key)
        if versions is None:
            self._overlay[key] = versions = []
            bisect.insort(self._overlay_keys, key)
        versions.append((main, sub, record))

    # -- compaction ------------------------------------------------------------------------------
    def _compact(self, revision: int) -> None:
        """Drop every version below ``revision`` except each key's latest one at it (which goes
        too when it is a tombstone). Done inside the apply batch, so it is atomic with the
        consistent index; etcd's ``physical`` wait is therefore always satisfied."""
        if revision <= self.compact_revision:
            raise EtcdzError(ErrorCode.COMPACTED)
        if revision > self.current_revision:
            raise EtcdzError(ErrorCode.FUTURE_REV)
        group: bytes | None = None
        keep: tuple[bytes, bytes] | None = None  # latest version <= revision of the group
        for ikey, raw in self.db.iterator(start=K.INDEX, stop=K.INDEX_END):
            ekey, main, sub = K.split_index_key(ikey)
            if ekey != group:
                self._drop_if_tombstone(keep)
                group, keep = ekey, None
            if main > revision:
                continue
            if keep is not None:
                self._drop(*keep)
            keep = (ikey, raw)
        self._drop_if_tombstone(keep)
        self.compact_revision = revision

    def _drop(self, ikey: bytes, raw: bytes) -> None:
        _, main, sub = K.split_index_key(ikey)
        self._wb.delete(ikey)
        self._wb.delete(K.history_key(main, sub))

    def _drop_if_tombstone(self, keep: tuple[bytes, bytes] | None) -> None:
        if keep is not None and K.unpack_record(keep[1])[3]:
            self._drop(*keep)

    # -- reads -----------------------------------------------------------------------------------
    def header(self, raft_term: int | None = None) -> ResponseHeader:
        return ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.current_revision,
            raft_term=self._term if raft_term is None else raft_term,
        )

    def _check_revision(self, revision: int) -> int:
        if revision <= 0:
            return self.current_revision
        if revision < self.compact_revision:
            raise EtcdzError(ErrorCode.COMPACTED)
        if revision > self.current_revision:
            raise EtcdzError(ErrorCode.FUTURE_REV)
        return revision

    def range(self, req: RangeRequest, raft_term: int) -> RangeResponse:
        self._term = raft_term
        return _with_header(self._range(req, self.current_revision), self.header(raft_term))

    def _range(self, req: RangeRequest, current: int) -> RangeResponse:
        rev = current if req.revision <= 0 else self._check_revision(req.revision)
        filtered = bool(
            req.min_mod_revision or req.max_mod_revision or req.min_create_revision or req.max_create_revision
        )
        sorting = req.sort_order != SortOrder.NONE or req.sort_target != SortTarget.KEY
        count = 0
        kvs: list[KeyValue] = []
        cap = req.limit + 1 if req.limit and not (filtered or sorting) else 0
        for kv in self._iter(req.key, req.range_end, rev):
            count += 1
            if req.count_only or (cap and len(kvs) >= cap):
                continue
            if filtered and not _passes(req, kv):
                continue
            kvs.append(kv)
        if sorting:
            order = req.sort_order if req.sort_order != SortOrder.NONE else SortOrder.ASCEND
            kvs.sort(key=_SORT_KEYS[req.sort_target], reverse=order == SortOrder.DESCEND)
        more = bool(req.limit) and len(kvs) > req.limit
        if req.limit:
            kvs = kvs[: req.limit]
        if req.keys_only:
            kvs = [
                KeyValue(
                    key=kv.key,
                    create_revision=kv.create_revision,
                    mod_revision=kv.mod_revision,
                    version=kv.version,
                    lease=kv.lease,
                )
                for kv in kvs
            ]
        return RangeResponse(
            header=ResponseHeader(), kvs=[] if req.count_only else kvs, more=more, count=count
        )

    def range_stream(self, req: RangeStreamRequest, raft_term: int) -> RangeStreamResponse:
        r = req.range
        rev = self._check_revision(r.revision)
        end = r.range_end or _single_end(r.key)
        start = max(req.resume_key, r.key)  # never before the range, whatever the client sent
        kvs: list[KeyValue] = []
        size = 0
        resume = b""
        if end != b"\0" and start >= end:  # resumed at or past the range's end: nothing left
            return RangeStreamResponse(header=self.header(raft_term))
        for kv in self._iter(start, end, rev):
            if kvs and size + len(kv.key) + len(kv.value) > req.chunk_bytes:
                resume = kv.key
                break
            if r.keys_only:
                kv = KeyValue(
                    key=kv.key,
                    create_revision=kv.create_revision,
                    mod_revision=kv.mod_revision,
                    version=kv.version,
                    lease=kv.lease,
                )
            kvs.append(kv)
            size += len(kv.key) + len(kv.value)
        return RangeStreamResponse(header=self.header(raft_term), kvs=kvs, resume_key=resume, count=len(kvs))

    def history(self, start_revision: int, max_bytes: int) -> WatchHistoryResponse:
        """Committed events from ``start_revision`` on, whole revisions (see WatchHistoryRequest)."""
        start = start_revision if start_revision > 0 else self.current_revision + 1
        header = self.header()
        if start < self.compact_revision:
            return WatchHistoryResponse(
                header=header,
                start_revision=start,
                revision=start - 1,
                compact_revision=self.compact_revision,
            )
        events, upto = history.read(self.db, start, self.current_revision, max_bytes)
        return WatchHistoryResponse(
            header=header,
            start_revision=start,
            revision=upto,
            compact_revision=self.compact_revision,
            events=events,
        )

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """crc32 over every stored version up to ``revision`` (0: current), in key order:
        members with the same history and compaction have the same hash."""
        rev = self._check_revision(revision)
        h = 0
        for ikey, raw in self.db.iterator(start=K.INDEX, stop=K.INDEX_END):
            if K.split_index_key(ikey)[1] <= rev:
                h = zlib.crc32(raw, zlib.crc32(ikey, h))
        return h, self.compact_revision, rev

    def hash_kv_response(self, req: HashKVRequest, raft_term: int) -> HashKVResponse:
        h, compact, rev = self.hash_kv(req.revision)
        header = self.header(raft_term)
        # etcd reports -1 for a store never compacted
        return HashKVResponse(header=header, hash=h, compact_revision=compact or -1)

    def state(self, read_id: int = 0, db_size: int = 0, auth: AuthState | None = None) -> BackendState:
        in_use = sum(self.db.approximate_sizes((K.INDEX, K.INDEX_END), (K.HISTORY, b"s")))
        return BackendState(
            auth=auth,
            read_id=read_id,
            consistent_index=self.consistent_index,
            revision=self.current_revision,
            compact_revision=self.compact_revision,
            db_size=db_size,
            db_size_in_use=min(in_use, db_size) if db_size else in_use,
        )

    # -- the merged view (LevelDB + the batch's pending versions) --------------------------------
    def _latest(self, key: bytes, rev: int) -> KeyValue | None:
        found = self._kvs(key, b"", rev)
        return found[0] if found else None

    def _kvs(self, key: bytes, range_end: bytes, rev: int) -> list[KeyValue]:
        return list(self._iter(key, range_end, rev))

    def _iter(self, key: bytes, range_end: bytes, rev: int) -> Iterator[KeyValue]:
        """Live kvs at ``rev`` in key order, for a single key (empty range_end), a range, or
        every key from ``key`` on (range_end ``\\0``)."""
        pending = self._pending_in(key, range_end, rev) if self._overlay else {}
        db = self._iter_db(key, range_end, rev)
        if not pending:
            yield from db
            return
        merged = {kv.key: kv for kv in db}
        for k, kv in pending.items():
            if kv is None:
                merged.pop(k, None)
            else:
                merged[k] = kv
        for k in sorted(merged):
            yield merged[k]

    def _pending_in(self, key: bytes, range_end: bytes, rev: int) -> dict[bytes, KeyValue | None]:
        out: dict[bytes, KeyValue | None] = {}
        lo = bisect.bisect_left(self._overlay_keys, key)
        for k in self._overlay_keys[lo:]:
            if not in_range(k, key, range_end):
                break  # overlay keys are sorted and start at ``key``: past the range
            best = None
            for main, _sub, record in self._overlay[k]:
                if main <= rev:
                    best = (main, record)
            if best is not None:
                out[k] = _to_kv(k, best[0], best[1])
        return out

    def _iter_db(self, key: bytes, range_end: bytes, rev: int) -> Iterator[KeyValue]:
        if not range_end:
            prefix = K.INDEX + K.enc(key)
            for ikey, raw in self.db.iterator(
                start=prefix, stop=prefix + K.rev_bytes(rev + 1, 0), reverse=True
            ):
                kv = _to_kv(key, K.split_index_key(ikey)[1], raw)
                if kv is not None:
                    yield kv
                return
            return
        start = K.INDEX + K.enc(key)
        stop = K.INDEX_END if range_end == b"\0" else K.INDEX + K.enc(range_end)
        group: bytes | None = None
        best: tuple[int, bytes] | None = None
        for ikey, raw in self.db.iterator(start=start, stop=stop):
            ekey, main, _ = K.split_index_key(ikey)
            if ekey != group:
                if best is not None and group is not None:
                    kv = _to_kv(K.dec(group), *best)
                    if kv is not None:
                        yield kv
                group, best = ekey, None
            if main <= rev:
                best = (main, raw)
        if best is not None and group is not None:
            kv = _to_kv(K.dec(group), *best)
            if kv is not None:
                yield kv


class _Writes:
    """Revision allocation for one write transaction: main fixed, sub counting up."""

    __slots__ = ("main", "sub")

    def __init__(self, main: int) -> None:
        self.main = main
        self.sub = 0

    def next(self) -> tuple[int, int]:
        self.sub += 1
        return self.main, self.sub - 1


def _to_kv(key: bytes, main: int, raw: bytes) -> KeyValue | None:
    create, version, lease, tombstone, value = K.unpack_record(raw)
    if tombstone:
        return None
    return KeyValue(
        key=key, create_revision=create, mod_revision=main, version=version, value=value, lease=lease
    )


def _single_end(key: bytes) -> bytes:
    return key + b"\0"  # the range [key, key+\0) holds exactly key


def _passes(req: RangeRequest, kv: KeyValue) -> bool:
    return not (
        (req.min_mod_revision and kv.mod_revision < req.min_mod_revision)
        or (req.max_mod_revision and kv.mod_revision > req.max_mod_revision)
        or (req.min_create_revision and kv.create_revision < req.min_create_revision)
        or (req.max_create_revision and kv.create_revision > req.max_create_revision)
    )


def _stamp_responses(txn: TxnResponse, revision: int) -> TxnResponse:
    """Sub-responses of a txn carry the txn's revision in their header, as etcd's do."""
    stamped = [_stamp_responses(r, revision) if isinstance(r, TxnResponse) else r for r in txn.responses]
    header = ResponseHeader(revision=revision)
    return dataclasses.replace(txn, responses=[dataclasses.replace(r, header=header) for r in stamped])


def _with_header(response: Any, header: ResponseHeader) -> Any:
    return dataclasses.replace(response, header=header)
