"""What of a Ready goes through the WAL writer, and which answers may leave at once."""

from __future__ import annotations

from actors.raft.persisting import Persisting
from actors.raft.rawnode import Ready
from proto_schemas.raft import Entry, HardState, MessageType, RaftMessage

GEN = 11


def ready(
    *, hs: HardState | None = None, entries: list[Entry] | None = None, after: list[RaftMessage] | None = None
) -> Ready:
    return Ready(
        soft_state=None,
        hard_state=hs,
        entries=entries or [],
        snapshot=None,
        committed_entries=[],
        messages=[],
        messages_after_persist=after or [],
        read_states=[],
    )


def answer(index: int) -> RaftMessage:
    return RaftMessage(type=MessageType.APP_RESP, to=1, from_=2, term=3, index=index)


def vote_answer(reject: bool) -> RaftMessage:
    return RaftMessage(type=MessageType.VOTE_RESP, to=3, from_=2, term=4, reject=reject)


def started() -> Persisting:
    p = Persisting()
    p.loaded(HardState(term=3, vote=1, commit=4))
    return p


def test_entries_go_to_the_wal_writer_with_the_answer_that_vouches_for_them() -> None:
    p = started()
    persist, now = p.take(ready(entries=[Entry(term=3, index=5)], after=[answer(5)]), GEN)
    assert now == []
    assert persist is not None and persist.messages == [answer(5)]
    assert (persist.generation, persist.seq) == (GEN, 1)


def test_a_commit_that_moved_alone_is_not_written_and_rides_along_with_the_next_write() -> None:
    p = started()
    assert p.take(ready(hs=HardState(term=3, vote=1, commit=5)), GEN) == (None, [])
    persist, _ = p.take(ready(entries=[Entry(term=3, index=6)]), GEN)
    assert persist is not None and persist.hard_state == HardState(term=3, vote=1, commit=5)


def test_an_answer_vouching_only_for_durable_entries_leaves_at_once_when_no_write_is_on_its_way() -> None:
    p = started()
    persist, _ = p.take(ready(entries=[Entry(term=3, index=5)], after=[answer(5)]), GEN)
    assert persist is not None
    # A commit-only append answered while entry 5 is still on its way to disk: through the WAL.
    later, now = p.take(ready(hs=HardState(term=3, vote=1, commit=5), after=[answer(5)]), GEN)
    assert now == [] and later is not None and later.seq == 2 and later.messages == [answer(5)]
    p.persisted(1)
    still, now = p.take(ready(after=[answer(5)]), GEN)  # #2 not acknowledged yet
    assert still is not None and now == []
    p.persisted(3)
    assert p.take(ready(hs=HardState(term=3, vote=1, commit=6), after=[answer(5)]), GEN) == (
        None,
        [answer(5)],
    )


def test_a_new_term_or_vote_is_always_written_first() -> None:
    p = started()
    persist, now = p.take(ready(hs=HardState(term=4, vote=3, commit=4), after=[vote_answer(False)]), GEN)
    assert now == [] and persist is not None and persist.hard_state == HardState(term=4, vote=3, commit=4)
    p.persisted(persist.seq)
    # Asked again in the same term: the vote cast is durable, the same answer leaves at once.
    assert p.take(ready(after=[vote_answer(False)]), GEN) == (None, [vote_answer(False)])
