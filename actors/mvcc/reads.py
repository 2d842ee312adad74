"""The MVCC store's reads: ranges, streamed ranges, history, hashes and state, over the merged view.

Rules (etcd's mvcc package):
- A read at revision 0 reads the current revision; one below the compacted revision fails
  with ``COMPACTED``, one above the current revision with ``FUTURE_REV``.
- Reads inside a batch (txn compares, txn ranges, prev_kv) see the batch's earlier writes
  through an overlay of pending versions, merged over what LevelDB holds (the merged view
  below; ``store.py`` stages the versions).
"""

from __future__ import annotations

import bisect
import dataclasses
import zlib
from collections.abc import Iterator
from typing import Any

from actors.mvcc import history
from actors.mvcc import keys as K
from actors.mvcc.leases import LeaseTable
from actors.mvcc.txn import in_range
from proto_schemas.auth import AuthState
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.internal import BackendState
from proto_schemas.kv import (
    HashKVRequest,
    HashKVResponse,
    KeyValue,
    RangeRequest,
    RangeResponse,
    RangeStreamRequest,
    RangeStreamResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
)
from proto_schemas.lease import (
    LeaseLeasesResponse,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)
from proto_schemas.watch import WatchHistoryResponse

_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


class StoreReads:
    """What the store answers without writing; ``MvccStore`` (``store.py``) holds the state."""

    db: Any
    cluster_id: int
    member_id: int
    consistent_index: int
    current_revision: int
    compact_revision: int
    leases: LeaseTable
    _term: int
    # pending versions of the batch being applied: key -> [(main, sub, record)]
    _overlay: dict[bytes, list[tuple[int, int, bytes]]]
    _overlay_keys: list[bytes]
    _wb: Any  # the open apply batch's LevelDB write batch (None between batches)
    _seeker: Any  # the open batch's raw iterator for single-key lookups (see ``_lookup``)

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
        return with_header(self._range(req, self.current_revision), self.header(raft_term))

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

    # -- the merged view (LevelDB + the batch's pending versions) --------------------------------
    def _latest(self, key: bytes, rev: int) -> KeyValue | None:
        """One key's live version at ``rev``: the batch's newest pending version of it up to
        ``rev`` if there is one (a tombstone: none), else LevelDB's newest. Every put, delete of
        one key and single-key compare asks this, so it looks at that key alone."""
        staged = self._overlay.get(key)
        if staged:
            best = None
            for main, _sub, record in staged:  # in revision order
                if main <= rev:
                    best = (main, record)
            if best is not None:
                return _to_kv(key, *best)
        prefix = K.INDEX + K.enc(key)
        it = self._lookup()
        it.seek(prefix + K.rev_bytes(rev + 1, 0))  # past the newest version at ``rev``...
        if it.valid():
            it.prev()  # ... and back to it
        else:
            it.seek_to_last()
        if it.valid():
            ikey = it.key()
            if ikey.startswith(prefix):  # ``enc`` is prefix-free: one key's versions only
                return _to_kv(key, K.split_index_key(ikey)[1], it.value())
        return None

    def _lookup(self) -> Any:
        """A raw iterator for ``_latest``. Making one costs more than the seek (LevelDB pins the
        memtables and every table file), so an apply batch makes one for all its lookups: the
        database does not change until the batch commits (its writes wait in the overlay), and
        ``_commit`` drops it. Between batches each read makes its own, which sees every commit."""
        if self._wb is None:
            return self.db.raw_iterator()
        if self._seeker is None:
            self._seeker = self.db.raw_iterator()
        return self._seeker

    def _kvs(self, key: bytes, range_end: bytes, rev: int) -> list[KeyValue]:
        return list(self._iter(key, range_end, rev))

    def _iter(self, key: bytes, range_end: bytes, rev: int) -> Iterator[KeyValue]:
        """Live kvs at ``rev`` in key order, for a single key (empty range_end), a range, or
        every key from ``key`` on (range_end ``\\0``)."""
        if not range_end:
            kv = self._latest(key, rev)
            if kv is not None:
                yield kv
            return
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


def with_header(response: Any, header: ResponseHeader) -> Any:
    return dataclasses.replace(response, header=header)
