"""The raft shell's peers: messages in and out, held commit-only appends, other members' queries.

Other members ask this member on its peer port (``peer_queries.py`` keeps them until answered;
the answer goes back to the asker's connection):
- ``HashQuery``: another member's corruption checker wants our hash. The backend computes it
  (``ReadRequest`` with ``reply_to="raft"``); at most ``MAX_HASH_QUERIES`` wait at a time (a
  hash walks the whole backend), more are dropped and the asker counts us as not answering.
- ``LeaseQuery``: a follower's gateway passes on its client's lease keep-alive or time-to-live,
  as etcd's followers do on the peer URLs. Our lease expirer answers (``LeaseCall`` with
  ``reply_to="raft"``; a member that no longer leads answers ``not leader``). The follower
  checked its client's auth.
- ``ReadIndexQuery``: a follower's gateway wants a read point for a batch of linearizable
  reads. Raft takes it as its own ReadIndex (context ``QUERY_CONTEXT`` + the local id), which
  joins the next heartbeat round; a query that arrives while no leader is known is answered
  ``no leader`` at once, and every one still waiting when the leader changes ``leader changed``
  (raft dropped them), so the follower's reads never wait for a lost answer.
Lease and ReadIndex queries: at most ``MAX_MEMBER_QUERIES`` of each wait at a time, more are
dropped (the client's call times out).
"""

from __future__ import annotations

import time

from actors.raft.peer_queries import PeerQueries
from actors.raft.rawnode import LogLost
from actors.raft.shell_members import MemberShell
from actors.raft.transport import MemberQuery
from actors.runtime.loop import FatalError, send
from proto_schemas.cluster import (
    HashAnswer,
    HashQuery,
    PeerBatch,
    ReadIndexAnswer,
    ReadIndexQuery,
    SnapshotChunk,
)
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorCode
from proto_schemas.internal import (
    InternalRequest,
    ProposeFailed,
    ReadRequest,
    ReadResult,
)
from proto_schemas.kv import HashKVRequest
from proto_schemas.lease import LeaseAnswer, LeaseCall, LeaseQuery
from proto_schemas.raft import (
    EntryType,
    MessageType,
    RaftMessage,
)

MAX_HASH_QUERIES = 8  # peers' hash queries waiting for the backend at once
MAX_MEMBER_QUERIES = 10_000  # followers' lease calls (or ReadIndex queries) waiting at once
QUERY_TIMEOUT_S = 30.0  # forgotten after this when full (the asker has given up long before)
QUERY_CONTEXT = b"q"  # a ReadIndex context that is a member's query, not our gateway's round


def peer_queries() -> PeerQueries:
    return PeerQueries(
        {
            HashQuery: (MAX_HASH_QUERIES, QUERY_TIMEOUT_S),
            LeaseQuery: (MAX_MEMBER_QUERIES, QUERY_TIMEOUT_S),
            ReadIndexQuery: (MAX_MEMBER_QUERIES, QUERY_TIMEOUT_S),
        }
    )


class PeerShell(MemberShell):
    """What comes from and goes to the other members."""

    def from_peers(self, frames: list[list[bytes]]) -> None:
        self.peers.receive(frames, self._from_peer, self._join_info, self._member_query)

    def _offer_proposal(self, proposal: RaftMessage) -> None:
        """Step a follower's proposal now or hold it for a shared round (shell.py)."""
        raise NotImplementedError

    def _member_query(self, asker: bytes, query: MemberQuery) -> None:
        node = self.node
        if isinstance(query, ReadIndexQuery) and (node is None or node.status.leader == 0):
            member_id = self.config.member_id
            answer = ReadIndexAnswer(query_id=query.query_id, member_id=member_id, code=ErrorCode.NO_LEADER)
            self.peers.answer(asker, answer)
            return
        local_id = self.queries.add(asker, type(query), query.query_id, time.monotonic())
        if local_id is None:  # a hash walks the whole backend: an operator should hear of that one
            level = self.log.warning if isinstance(query, HashQuery) else self.log.debug
            level(
                "member query dropped",
                reason="too many waiting",
                kind=type(query).__name__,
                sender=f"{query.from_:x}",
            )
            return
        if isinstance(query, HashQuery):
            term = node.status.term if node is not None else 0
            body = encode(HashKVRequest(revision=query.revision))
            send(self.to_mvcc, ReadRequest(read_id=local_id, body=body, raft_term=term, reply_to="raft"))
        elif isinstance(query, LeaseQuery):
            send(self.to_lease, LeaseCall(read_id=local_id, request=query.request, reply_to="raft"))
        elif node is not None:
            node.read_index(QUERY_CONTEXT + local_id.to_bytes(8, "big"))

    def _peer_answered(self, result: ReadResult) -> None:
        """The backend's answer to a hash query or the expirer's to a lease query."""
        waiting = self.queries.pop(result.read_id)
        if waiting is None:
            return
        kind = HashAnswer if waiting.kind is HashQuery else LeaseAnswer
        answer = kind(query_id=waiting.query_id, member_id=self.config.member_id, body=result.body)
        self.peers.answer(waiting.asker, answer)

    def _read_point(self, ctx: bytes, index: int) -> bool:
        """Whether the read state of ``ctx`` answered a member's ReadIndex query (else it is
        the gateway's)."""
        if ctx[:1] != QUERY_CONTEXT or len(ctx) != 9:
            return False
        waiting = self.queries.pop(int.from_bytes(ctx[1:], "big"))
        if waiting is not None:
            answer = ReadIndexAnswer(query_id=waiting.query_id, member_id=self.config.member_id, index=index)
            self.peers.answer(waiting.asker, answer)
        return True

    def _read_queries_lost(self) -> None:
        """The leader changed: raft dropped the reads it had not answered."""
        member_id, code = self.config.member_id, ErrorCode.LEADER_CHANGED
        for waiting in self.queries.pop_all(ReadIndexQuery):
            answer = ReadIndexAnswer(query_id=waiting.query_id, member_id=member_id, code=code)
            self.peers.answer(waiting.asker, answer)

    def _from_peer(self, msg: PeerBatch | SnapshotChunk) -> None:
        node = self.node
        if node is None:
            return  # not started yet: raft retransmits
        if isinstance(msg, PeerBatch):
            for m in msg.messages:
                if m.to == self.config.member_id:
                    if m.type is MessageType.PROP:
                        self._offer_proposal(m)
                        continue
                    try:
                        node.step(m)
                    except LogLost as exc:
                        raise FatalError(
                            f"{exc}; remove this member (etcdzctl member remove) and add it again "
                            "with an empty data dir"
                        ) from exc
        else:
            self.snapshots.chunk(msg)

    def _send_peers(self, messages: list[RaftMessage]) -> None:
        rest = self.snapshots.outgoing(messages, time.monotonic()) if messages else []
        failed = self.peers.send(rest) if rest else []
        node = self.node
        for peer in failed:
            if node is not None:
                node.report_unreachable(peer)
        if failed:
            self._fail_forwarded([m for m in rest if m.to in failed and m.type is MessageType.PROP])

    def _fail_forwarded(self, props: list[RaftMessage]) -> None:
        """Proposals forwarded to a leader we cannot reach never left this member: say so at
        once (a definite error the client may retry) instead of letting them time out."""
        rids = []
        for m in props:
            for entry in m.entries:
                if entry.type == EntryType.NORMAL and entry.data:
                    try:
                        rids.append(decode(entry.data, expect=InternalRequest).request_id)
                    except DecodeError:
                        continue
        if rids:
            send(self.to_gateway, ProposeFailed(request_ids=rids, code=ErrorCode.NO_LEADER))
