"""Merging the messages of one flush per peer (actors/raft/coalesce.py)."""

from __future__ import annotations

from actors.raft.coalesce import coalesce, hold_commit_only
from proto_schemas.raft import Entry, MessageType, RaftMessage

APP, RESP, BEAT = MessageType.APP, MessageType.APP_RESP, MessageType.HEARTBEAT


def app(to: int, index: int, log_term: int, entries: list[int], commit: int, term: int = 2) -> RaftMessage:
    return RaftMessage(
        type=APP,
        to=to,
        from_=1,
        term=term,
        log_term=log_term,
        index=index,
        entries=[Entry(term=term, index=i) for i in entries],
        commit=commit,
    )


def resp(index: int, reject: bool = False, term: int = 2) -> RaftMessage:
    return RaftMessage(type=RESP, to=1, from_=2, term=term, index=index, reject=reject)


def test_an_append_and_the_commit_that_follows_it_become_one_append() -> None:
    merged = coalesce([app(2, 10, 2, [11, 12], commit=10), app(2, 12, 2, [], commit=12)])
    assert merged == [app(2, 10, 2, [11, 12], commit=12)]
    merged = coalesce([app(2, 10, 2, [], commit=9), app(2, 10, 2, [11], commit=10)])  # commit, then more
    assert merged == [app(2, 10, 2, [11], commit=10)]


def test_appends_merge_per_peer_and_keep_each_peers_order() -> None:
    msgs = [
        app(2, 10, 2, [11], 10),
        app(3, 10, 2, [11], 10),
        app(2, 11, 2, [12], 11),
        app(3, 11, 2, [12], 11),
        app(2, 12, 2, [13], 11),
    ]
    assert coalesce(msgs) == [app(2, 10, 2, [11, 12, 13], 11), app(3, 10, 2, [11, 12], 11)]


def test_appends_that_do_not_continue_each_other_or_span_terms_stay_apart() -> None:
    gap = [app(2, 10, 2, [11], 10), app(2, 12, 2, [13], 10)]  # a probe after a rejection, say
    assert coalesce(gap) == gap
    wrong_term = [app(2, 10, 2, [11], 10), app(2, 11, 1, [12], 10)]
    assert coalesce(wrong_term) == wrong_term
    new_term = [app(2, 10, 2, [11], 10), app(2, 11, 2, [12], 10, term=3)]
    assert coalesce(new_term) == new_term


def test_nothing_overtakes_a_message_in_between() -> None:
    beat = RaftMessage(type=BEAT, to=2, from_=1, term=2, commit=10, context=b"read")
    msgs = [app(2, 10, 2, [11], 10), beat, app(2, 11, 2, [12], 11)]
    assert coalesce(msgs) == msgs


def test_append_answers_keep_the_last_success_and_every_rejection() -> None:
    assert coalesce([resp(11), resp(12), resp(14)]) == [resp(14)]
    assert coalesce([resp(11), resp(9, reject=True), resp(12)]) == [resp(11), resp(9, reject=True), resp(12)]
    assert coalesce([resp(12), resp(11)]) == [resp(12), resp(11)]  # behind: not merged
    assert coalesce([resp(12), resp(13, term=3)]) == [resp(12), resp(13, term=3)]


def test_an_append_carrying_only_a_commit_is_held_until_entries_can_carry_it() -> None:
    beat = RaftMessage(type=BEAT, to=3, from_=1, term=2, commit=12)
    now, held = hold_commit_only([app(2, 12, 2, [], commit=12), beat, app(3, 12, 2, [], commit=12)], {})
    assert now == [beat] and held == {2: app(2, 12, 2, [], commit=12), 3: app(3, 12, 2, [], commit=12)}
    # The next flush to peer 2 has entries: they carry the commit; peer 3 stays held.
    now, held = hold_commit_only([app(2, 12, 2, [13], commit=12)], held)
    assert now == [app(2, 12, 2, [13], commit=12)] and held == {3: app(3, 12, 2, [], commit=12)}


def test_a_held_append_goes_out_before_newer_messages_to_its_peer() -> None:
    """What cannot merge with it (a vote, a heartbeat) still follows it, never overtakes it."""
    beat = RaftMessage(type=BEAT, to=2, from_=1, term=3, commit=12)
    now, held = hold_commit_only([beat], {2: app(2, 12, 2, [], commit=12)})
    assert now == [app(2, 12, 2, [], commit=12), beat] and held == {}
    # An append with entries is never held, nor one that entries follow in the same flush.
    now, held = hold_commit_only([app(2, 12, 2, [], commit=12), app(2, 12, 2, [13], commit=12)], {})
    assert now == [app(2, 12, 2, [13], commit=12)] and held == {}
