"""ReadIndex bookkeeping on the leader (etcd-raft's ``readOnly``, ReadOnlySafe only).

Rules (thesis §6.4):
- A read request records the leader's commit index at the time it arrives. It may be served
  once the leader has confirmed, by a heartbeat round acknowledged by a quorum, that it was
  still the leader *after* the request arrived.
- Requests are batched: every request that arrived since the last round joins the next
  round, and one heartbeat round (one ``context``) confirms all of them. The context is the
  round's own number, not a client's bytes, so requests with equal client contexts (two
  followers' counters) never collide.
- Rounds are ordered: an acknowledged round confirms every earlier round too (the follower
  acknowledged the leader at a later moment), so confirmed requests leave in arrival order.
- Heartbeats sent on ticks carry the newest pending round, so a lost heartbeat or response
  is retried by the next one instead of leaving reads hanging.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReadRequest:
    index: int  # the leader's commit index when the request arrived
    from_: int  # who asked (the leader itself for local requests)
    ctx: bytes  # the asker's context, echoed in its ReadState
    round: int = 0  # 0: waiting for the next heartbeat round


@dataclass
class _Round:
    acks: set[int] = field(default_factory=set)


def encode_round(n: int) -> bytes:
    return n.to_bytes(8, "big")


def decode_round(ctx: bytes) -> int:
    return int.from_bytes(ctx, "big") if len(ctx) == 8 else 0


class ReadOnly:
    def __init__(self) -> None:
        self.queue: list[ReadRequest] = []
        self._rounds: dict[int, _Round] = {}
        self._last_round = 0

    def add_request(self, index: int, from_: int, ctx: bytes) -> None:
        self.queue.append(ReadRequest(index=index, from_=from_, ctx=ctx))

    def has_unsent(self) -> bool:
        return bool(self.queue) and self.queue[-1].round == 0

    def start_round(self, self_id: int) -> bytes:
        """Put every waiting request in a new round; returns the heartbeat context."""
        self._last_round += 1
        n = self._last_round
        for req in self.queue:
            if req.round == 0:
                req.round = n
        self._rounds[n] = _Round(acks={self_id})
        return encode_round(n)

    def pending_context(self) -> bytes:
        """The newest round that still has requests waiting (b"" if none)."""
        if self.queue and self.queue[-1].round:
            return encode_round(self.queue[-1].round)
        return b""

    def recv_ack(self, from_: int, ctx: bytes) -> set[int] | None:
        """Record ``from_``'s acknowledgement of the round; returns that round's acks."""
        n = decode_round(ctx)
        rnd = self._rounds.get(n)
        if rnd is None:
            return None
        rnd.acks.add(from_)
        return rnd.acks

    def advance(self, ctx: bytes) -> list[ReadRequest]:
        """The round in ``ctx`` reached a quorum: release it and every earlier round."""
        n = decode_round(ctx)
        done = [r for r in self.queue if 0 < r.round <= n]
        if done:
            self.queue = [r for r in self.queue if not 0 < r.round <= n]
        for k in [k for k in self._rounds if k <= n]:
            del self._rounds[k]
        return done

    def reset(self) -> None:
        """Leadership lost: pending reads are dropped (the asker times out and retries)."""
        self.queue.clear()
        self._rounds.clear()
