"""The MVCC store against a small reference model of etcd's KV semantics.

Random puts, deletes (single key and range), txns (compare-and-swap with two writes) and
compactions, applied in batches of 1-4 requests; after each batch, ranges at random revisions
must agree with the model (kvs with create/mod revision and version, count, errors). A failure
names its seed; ``pytest -k 'seed_N'`` replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.mvcc.store import MvccStore
from etcdz import ops
from etcdz.ops import Value
from proto_schemas.codec import decode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.internal import InternalRequest
from proto_schemas.kv import CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest

KEYS = [b"a", b"a\x00", b"ab", b"b", b"c"]


@dataclass
class Model:
    revision: int = 1
    compacted: int = 0
    history: dict[bytes, list[tuple[int, tuple[bytes, int, int] | None]]] = field(default_factory=dict)

    def live(self, key: bytes, rev: int) -> tuple[bytes, int, int, int] | None:
        """-> (value, create, mod, version) at rev"""
        found = None
        for main, kv in self.history.get(key, []):
            if main <= rev:
                found = (main, kv)
        if found is None or found[1] is None:
            return None
        value, create, version = found[1]
        return value, create, found[0], version

    def keys_in(self, start: bytes, end: bytes) -> list[bytes]:
        if not end:
            return [start]
        return sorted(k for k in KEYS if start <= k and (end == b"\0" or k < end))

    def write(self, writes: list[tuple[bytes, bytes | None]]) -> None:
        """One write transaction; writes of None delete the key if it exists."""
        main = self.revision + 1
        wrote = False
        for key, value in writes:
            prev = self.live(key, main)
            if value is None:
                if prev is not None:
                    self.history.setdefault(key, []).append((main, None))
                    wrote = True
                continue
            create, version = (prev[1], prev[3] + 1) if prev else (main, 1)
            self.history.setdefault(key, []).append((main, (value, create, version)))
            wrote = True
        if wrote:
            self.revision = main

    def apply(self, request: Any) -> None:
        if isinstance(request, PutRequest):
            self.write([(request.key, request.value)])
        elif isinstance(request, DeleteRangeRequest):
            self.write([(k, None) for k in self.keys_in(request.key, request.range_end)])
        elif isinstance(request, TxnRequest):
            cmp = request.compare[0]
            current = self.live(cmp.key, self.revision)
            ok = current is not None and current[0] == cmp.value
            branch = request.success if ok else request.failure
            writes: list[tuple[bytes, bytes | None]] = []
            for op in branch:
                assert isinstance(op, PutRequest | DeleteRangeRequest)
                writes.append((op.key, op.value if isinstance(op, PutRequest) else None))
            self.write(writes)
        elif isinstance(request, CompactionRequest):
            if self.compacted < request.revision <= self.revision:
                self.compacted = request.revision

    def range(
        self, start: bytes, end: bytes, rev: int
    ) -> list[tuple[bytes, bytes, int, int, int]] | ErrorCode:
        at = rev or self.revision
        if at < self.compacted:
            return ErrorCode.COMPACTED
        if at > self.revision:
            return ErrorCode.FUTURE_REV
        out = []
        for k in self.keys_in(start, end):
            kv = self.live(k, at)
            if kv is not None:
                out.append((k, *kv))
        return out


def random_request(rng: random.Random, model: Model) -> Any:
    roll = rng.random()
    key = rng.choice(KEYS)
    if roll < 0.45:
        return ops.put(key, rng.choice([b"x", b"y", b"z"]))
    if roll < 0.6:
        return ops.delete(key)
    if roll < 0.7:
        return ops.delete(key, prefix=True)
    if roll < 0.9:
        other = rng.choice([k for k in KEYS if k != key])
        return ops.txn(
            [Value(key) == rng.choice([b"x", b"y"])],
            [ops.put(key, b"t"), ops.put(other, b"u")],
            [ops.delete(other)],
        )
    return CompactionRequest(revision=rng.randint(max(1, model.compacted - 1), model.revision + 1))


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed_{s}")
def test_store_agrees_with_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    store = MvccStore(db, cluster_id=1, member_id=1)
    model = Model()
    index = 0
    try:
        for _ in range(40):
            batch = []
            for _ in range(rng.randint(1, 4)):
                request = random_request(rng, model)
                index += 1
                batch.append((index, 1, InternalRequest(request_id=index, request=request)))
                model.apply(request)
            for result in store.apply(batch):
                decode(result.body)
            assert store.current_revision == model.revision, f"seed {seed}"
            for _ in range(3):
                start = rng.choice(KEYS)
                end = rng.choice([b"", b"\0", b"b", b"c", b"d"])
                if end and end != b"\0" and end <= start:
                    end = b""
                rev = rng.choice([0, rng.randint(1, model.revision + 1)])
                expected = model.range(start, end, rev)
                try:
                    resp = store.range(ops.get(start, range_end=end or None, revision=rev), 1)
                    got: Any = [
                        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in resp.kvs
                    ]
                    assert resp.count == len(got)
                except EtcdzError as exc:
                    got = exc.code
                assert got == expected, f"seed {seed}: range {start!r}..{end!r} at {rev}"
    finally:
        db.close()


keys = st.sampled_from(KEYS)
values = st.sampled_from([b"x", b"y", b"z"])


def _two_keys(t: TxnRequest) -> bool:
    first, second = t.success
    assert isinstance(first, PutRequest) and isinstance(second, PutRequest)
    return first.key != second.key


requests = st.one_of(
    st.builds(lambda k, v: ops.put(k, v), keys, values),
    st.builds(lambda k: ops.delete(k), keys),
    st.builds(lambda k: ops.delete(k, prefix=True), keys),
    st.builds(
        lambda k, other, v: ops.txn(
            [Value(k) == v], [ops.put(k, b"t"), ops.put(other, b"u")], [ops.delete(other)]
        ),
        keys,
        keys,
        values,
    ).filter(_two_keys),
    st.builds(lambda r: CompactionRequest(revision=r), st.integers(1, 40)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(requests, min_size=1, max_size=4), max_size=12),
    probes=st.lists(
        st.tuples(keys, st.sampled_from([b"", b"\0", b"b", b"d"]), st.integers(0, 40)), max_size=6
    ),
)
def test_store_agrees_with_model_hypothesis(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Any]], probes: list[Any]
) -> None:
    db = plyvel.DB(str(tmp_path_factory.mktemp("db")), create_if_missing=True)
    store = MvccStore(db, cluster_id=1, member_id=1)
    model = Model()
    index = 0
    try:
        for batch in batches:
            entries = []
            for request in batch:
                index += 1
                entries.append((index, 1, InternalRequest(request_id=index, request=request)))
                model.apply(request)
            store.apply(entries)
            assert store.current_revision == model.revision
        for start, end, rev in probes:
            if end and end != b"\0" and end <= start:
                end = b""
            try:
                resp = store.range(ops.get(start, range_end=end or None, revision=rev), 1)
                got: Any = [
                    (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in resp.kvs
                ]
            except EtcdzError as exc:
                got = exc.code
            assert got == model.range(start, end, rev)
    finally:
        db.close()
