"""The raft shell's peers: messages in and out, held commit-only appends, other members' queries.

Other members' corruption checkers ask for this member's hash on the peer port (``HashQuery``):
the backend computes it (``ReadRequest`` with ``reply_to="raft"``) and the answer goes back to
the asker's connection. At most ``MAX_HASH_QUERIES`` wait at a time (a hash walks the whole
backend); more are dropped and the asker counts the member as not answering.

Followers' gateways pass their clients' lease keep-alives and time-to-lives on to the leader
here (``LeaseQuery``, as etcd's followers do on the peer URLs): the lease expirer answers
(``LeaseCall`` with ``reply_to="raft"``; a member that no longer leads answers ``not leader``)
and the answer goes back to the asker's connection. The follower checked its client's auth; at
most ``MAX_LEASE_QUERIES`` wait at a time, more are dropped (the client's call times out).
"""

from __future__ import annotations

import time

from actors.raft.rawnode import LogLost
from actors.raft.shell_members import MemberShell
from actors.runtime.loop import FatalError, send
from proto_schemas.cluster import (
    HashAnswer,
    HashQuery,
    PeerBatch,
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
HASH_QUERY_TIMEOUT_S = 30.0  # forgotten after this (the asker has given up long before)
MAX_LEASE_QUERIES = 10_000  # followers' lease calls waiting for the expirer at once
LEASE_QUERY_TIMEOUT_S = 30.0  # forgotten after this (a keep-alive times out in seconds)


class PeerShell(MemberShell):
    """What comes from and goes to the other members."""

    def from_peers(self, frames: list[list[bytes]]) -> None:
        self.peers.receive(frames, self._from_peer, self._join_info, self._hash_query, self._lease_query)

    def _hash_query(self, asker: bytes, query: HashQuery) -> None:
        """Another member's corruption checker wants our hash: the backend computes it."""
        now = time.monotonic()
        self._hash_queries = {r: q for r, q in self._hash_queries.items() if q[2] > now}
        if len(self._hash_queries) >= MAX_HASH_QUERIES:
            self.log.warning("hash query dropped", reason="too many waiting", sender=f"{query.from_:x}")
            return
        read_id = next(self._hash_ids)
        self._hash_queries[read_id] = (asker, query.query_id, now + HASH_QUERY_TIMEOUT_S)
        term = self.node.status.term if self.node is not None else 0
        body = encode(HashKVRequest(revision=query.revision))
        send(self.to_mvcc, ReadRequest(read_id=read_id, body=body, raft_term=term, reply_to="raft"))

    def _lease_query(self, asker: bytes, query: LeaseQuery) -> None:
        """A follower passes on a client's lease call: our expirer answers (on a leader)."""
        now = time.monotonic()
        if len(self._lease_queries) >= MAX_LEASE_QUERIES:  # answers lost to an expirer restart
            self._lease_queries = {r: q for r, q in self._lease_queries.items() if q[2] > now}
            if len(self._lease_queries) >= MAX_LEASE_QUERIES:
                self.log.debug("lease query dropped", reason="too many waiting", sender=f"{query.from_:x}")
                return
        read_id = next(self._hash_ids)
        self._lease_queries[read_id] = (asker, query.query_id, now + LEASE_QUERY_TIMEOUT_S)
        send(self.to_lease, LeaseCall(read_id=read_id, request=query.request, reply_to="raft"))

    def _peer_answered(self, result: ReadResult) -> None:
        """The backend's answer to a peer's hash query or the expirer's to its lease query."""
        member_id = self.config.member_id
        waiting = self._hash_queries.pop(result.read_id, None)
        if waiting is not None:
            asker, query_id, _ = waiting
            self.peers.answer(asker, HashAnswer(query_id=query_id, member_id=member_id, body=result.body))
            return
        waiting = self._lease_queries.pop(result.read_id, None)
        if waiting is not None:
            asker, query_id, _ = waiting
            self.peers.answer(asker, LeaseAnswer(query_id=query_id, member_id=member_id, body=result.body))

    def _from_peer(self, msg: PeerBatch | SnapshotChunk) -> None:
        node = self.node
        if node is None:
            return  # not started yet: raft retransmits
        if isinstance(msg, PeerBatch):
            for m in msg.messages:
                if m.to == self.config.member_id:
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

    def _release_held(self) -> None:
        """Send the entry-less appends no newer append has carried along meanwhile."""
        held, self._held = self._held, {}
        if held:
            self._send_peers(list(held.values()))
