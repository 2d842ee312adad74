"""Other members' queries waiting on the peer port: ids, answers, bounds per kind."""

from __future__ import annotations

from actors.raft.peer_queries import PeerQueries


class Hash:
    pass


class Read:
    pass


def test_each_query_waits_under_its_own_id_until_answered_once() -> None:
    queries = PeerQueries({Hash: (8, 30.0), Read: (8, 30.0)})
    first = queries.add(b"a", Hash, 7, now=0)
    second = queries.add(b"b", Read, 7, now=0)  # the same asker's number for another kind
    assert first is not None and second is not None and first != second
    waiting = queries.pop(second)
    assert waiting is not None and (waiting.asker, waiting.query_id, waiting.kind) == (b"b", 7, Read)
    assert queries.pop(second) is None  # answered once
    assert len(queries) == 1


def test_a_full_kind_refuses_more_until_one_expires_and_other_kinds_are_unaffected() -> None:
    queries = PeerQueries({Hash: (2, 30.0), Read: (100, 30.0)})
    assert queries.add(b"a", Hash, 1, now=0) is not None
    assert queries.add(b"a", Hash, 2, now=10) is not None
    assert queries.add(b"a", Hash, 3, now=20) is None  # full, none expired
    assert queries.add(b"a", Read, 1, now=20) is not None
    third = queries.add(b"a", Hash, 3, now=30)  # the first one's answer is given up on
    assert third is not None and queries.pop(third) is not None
    assert len(queries) == 2


def test_a_lost_kind_is_taken_out_whole() -> None:
    queries = PeerQueries({Hash: (8, 30.0), Read: (8, 30.0)})
    for n in range(3):
        queries.add(b"r", Read, n, now=0)
    kept = queries.add(b"h", Hash, 9, now=0)
    assert sorted(w.query_id for w in queries.pop_all(Read)) == [0, 1, 2]
    assert queries.pop_all(Read) == [] and len(queries) == 1
    assert kept is not None and queries.pop(kept) is not None
    for n in range(8):  # the places of the taken ones are free again
        assert queries.add(b"r", Read, n, now=1) is not None
