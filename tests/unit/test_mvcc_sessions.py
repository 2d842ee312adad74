"""Exactly-once writes in the store: a second copy of a write is answered, not applied."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from actors.mvcc import keys as K
from actors.mvcc.sessions import STALE, SessionTable
from actors.mvcc.store import MvccStore
from etcdz import ops
from proto_schemas.codec import decode
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.internal import InternalRequest
from proto_schemas.kv import CompactionRequest


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = plyvel.DB(str(path), create_if_missing=True)
        self.store = MvccStore(self.db, cluster_id=1, member_id=2)
        self.index = itertools.count(self.store.consistent_index + 1)
        self.rids = itertools.count(1)

    def write(self, request: Any, client_id: int = 0, seq: int = 0, acked: int = 0) -> Any:
        entry = InternalRequest(
            request_id=next(self.rids), request=request, client_id=client_id, seq=seq, acked=acked
        )
        (result,) = self.store.apply([(next(self.index), 1, entry)])
        assert result.request_id == entry.request_id  # routed to whoever waits for this copy
        return decode(result.body)

    def value(self, key: str) -> bytes | None:
        kvs = self.store.range(ops.get(key), 1).kvs
        return kvs[0].value if kvs else None

    def reopen(self) -> None:
        self.db.close()
        self.__init__(self.path)  # type: ignore[misc]


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "db")
    yield store
    store.db.close()


def test_a_second_copy_answers_as_the_first_and_applies_nothing(s: Store) -> None:
    first = s.write(ops.put("k", "1"), client_id=7, seq=10, acked=10)
    s.write(ops.put("k", "2"), client_id=8, seq=1, acked=1)  # another client writes meanwhile
    again = s.write(ops.put("k", "1"), client_id=7, seq=10, acked=10)
    assert again == first  # the same revision in the header
    assert s.value("k") == b"2"  # the copy did not overwrite the later write
    assert s.store.current_revision == 3  # and took no revision
    assert s.store.take_events()[-1].kv.value == b"2"  # nor made an event


def test_writes_without_a_session_apply_every_time(s: Store) -> None:
    s.write(ops.put("k", "1"))
    s.write(ops.put("k", "1"))
    assert s.store.current_revision == 3


def test_answers_below_acked_are_dropped_and_their_copies_refused(s: Store) -> None:
    s.write(ops.put("a", "1"), client_id=7, seq=1, acked=1)
    s.write(ops.put("b", "1"), client_id=7, seq=2, acked=1)  # 1 not answered yet: both kept
    assert s.store.sessions.answered(7, 1) is not None
    s.write(ops.put("c", "1"), client_id=7, seq=3, acked=3)  # the client has 1 and 2
    assert s.store.sessions.answered(7, 1) is STALE
    late = s.write(ops.put("a", "2"), client_id=7, seq=1, acked=1)
    assert isinstance(late, ErrorResponse) and late.code == ErrorCode.BAD_REQUEST
    assert s.value("a") == b"1"


def test_a_copy_gets_the_first_answer_even_where_it_would_now_be_another(s: Store) -> None:
    txn = ops.txn(compare=[ops.Version("k") == 1], success=[ops.put("k", "2")])
    assert not s.write(txn, client_id=7, seq=1, acked=1).succeeded
    refused = s.write(CompactionRequest(revision=3), client_id=7, seq=2, acked=1)
    assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.FUTURE_REV
    s.write(ops.put("k", "1"))
    s.write(ops.put("j", "1"))
    assert not s.write(txn, client_id=7, seq=1, acked=1).succeeded  # not rerun
    assert s.write(CompactionRequest(revision=3), client_id=7, seq=2, acked=1) == refused
    assert s.value("k") == b"1" and s.store.compact_revision == 0


def test_sessions_survive_a_restart_with_the_data(s: Store) -> None:
    first = s.write(ops.put("k", "1"), client_id=7, seq=1, acked=1)
    s.reopen()
    assert s.write(ops.put("k", "1"), client_id=7, seq=1, acked=1) == first
    assert s.store.current_revision == 2


def test_the_least_recently_used_session_goes_first_in_log_order(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    table = SessionTable(db, max_sessions=2)
    wb = db.write_batch()
    table.record(1, 1, 1, b"a", index=1)
    table.record(2, 1, 1, b"b", index=2)
    table.record(1, 2, 1, b"c", index=3)  # session 1 used again: 2 is now the oldest
    table.record(3, 1, 1, b"d", index=4)
    table.flush(wb)
    wb.write()
    assert (table.answered(2, 1), table.answered(1, 1), table.answered(3, 1)) == (None, b"a", b"d")
    stored = db.iterator(start=K.SESSION, stop=K.SESSION_END, include_value=False)
    assert sorted(int.from_bytes(k[1:], "big") for k in stored) == [1, 3]
    reloaded = SessionTable(db, max_sessions=2)  # a restarted backend drops the same one next
    reloaded.record(4, 1, 1, b"e", index=5)
    assert reloaded.answered(1, 2) is None and reloaded.answered(3, 1) == b"d"
    db.close()
