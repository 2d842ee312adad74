"""ReadIndex on the node (thesis §6.4): linearizable reads confirmed by a heartbeat round, no log entry.

Rules and why (the leader's bookkeeping is ``readonly.py``):
- A leader that has not committed an entry of its term does not know the commit index yet:
  it queues reads until it has (``_maybe_commit`` sends them on).
- A lone voter answers at once: it is its own quorum.
- Reads batch: every read since the last round joins the next heartbeat round, started when
  the RawNode assembles a Ready (``flush_read_round``).
- A follower forwards reads to the leader (``raft.py``'s follower step) and drops them when it
  knows none (the asker times out, as with etcd).
"""

from __future__ import annotations

from actors.raft import quorum
from actors.raft.readonly import ReadRequest
from actors.raft.replication import Replication
from actors.raft.state import MT, Role
from proto_schemas.raft import RaftMessage, ReadState


class ReadIndex(Replication):
    """Reads on the leader: waiting for its first commit, heartbeat rounds, answers."""

    def _read_index_as_leader(self, m: RaftMessage) -> None:
        if len(self.voters) == 1 and self.id in self.voters:
            self._respond_read(ReadRequest(self.log.committed, m.from_, m.context))
        elif not self._committed_in_current_term():
            self.pending_read_index.append(m)  # §6.4 step 1: wait for our first commit
        else:
            self._send_read_index(m)

    def _send_read_index(self, m: RaftMessage) -> None:
        self.read_only.add_request(self.log.committed, m.from_, m.context)
        # The heartbeat round starts when the RawNode assembles the next Ready (batching).

    def flush_read_round(self) -> None:
        """Start one heartbeat round for every read that arrived since the last round."""
        if self.role is Role.LEADER and self.read_only.has_unsent():
            self.bcast_heartbeat(self.read_only.start_round(self.id))

    def _respond_read(self, req: ReadRequest) -> None:
        if req.from_ in (0, self.id):
            self.read_states.append(ReadState(index=req.index, request_ctx=req.ctx))
        else:
            self._send(self._msg(MT.READ_INDEX_RESP, req.from_, index=req.index, context=req.ctx))

    def _on_read_ack(self, m: RaftMessage) -> None:
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is not None and quorum.has_quorum(self.voters, acks):
            for req in self.read_only.advance(m.context):
                self._respond_read(req)
