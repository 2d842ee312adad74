"""Merging the messages of one flush per peer (actors/raft/coalesce.py)."""

from __future__ import annotations

from actors.raft.coalesce import coalesce
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
