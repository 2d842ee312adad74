"""The lease expirer's logic (etcd's lessor, the deadline half), without a clock or sockets.

Rules:
- Every member knows every lease (granted TTL, checkpointed remaining TTL) from applied raft
  entries; only the primary (the leader's expirer) keeps deadlines, answers keep-alives and
  hands out expired leases to be revoked through raft.
- A granted TTL below ``min_ttl`` (1.5 election timeouts) is raised to it, so a lease can outlive
  an election.
- On promotion every lease gets its full remaining time (checkpointed remaining, else its TTL)
  plus ``extend_s`` (an election timeout): a leader change never expires a lease early.
- A keep-alive renews to a full TTL; a checkpoint it makes stale is cleared through raft (a
  checkpoint of 0) so that a new leader does not cut the renewed lease short.
- A lease past its deadline is not renewed (``EXPIRED``): its revoke may already be on its way
  through raft, and a renewal answered now would be undone by it, the client sure of a TTL it
  does not have. As etcd's lessor, the caller waits until the revoke applies (the lease is then
  not found) or this member stops leading (the client asks the new leader, whose promotion gave
  the lease a new deadline if the revoke was lost with the old one).
- ``expired`` hands out leases earliest deadline first, at most ``budget`` per call (a token
  bucket of ``max_revokes_per_s``), so a mass expiry is revoked in batches that leave room for
  clients; a lease handed out but not revoked after ``retry_revoke_after_s`` is handed out again
  (its revoke may have been lost with a leader change).
- Long leases (TTL above ``checkpoint_interval_s``) are checkpointed every interval: their
  remaining TTL goes through raft, so a new leader does not restart them at full TTL.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXPIRED = 0  # ``Lessor.keep_alive`` for a lease past its deadline: not renewed


@dataclass
class LeaseInfo:
    id: int
    ttl: int
    remaining: int = 0  # last checkpointed remaining TTL (0: none)
    deadline: float = math.inf  # primary only
    handed_out: float = -math.inf  # when expired() last returned it
    checkpointed_at: float = -math.inf  # when the primary last proposed its checkpoint
    renewed_at: float = -math.inf


class Lessor:
    def __init__(
        self,
        *,
        min_ttl: int,
        checkpoint_interval_s: float = 300.0,
        max_revokes_per_s: int = 1000,
        retry_revoke_after_s: float = 3.0,
    ) -> None:
        self.min_ttl = min_ttl
        self.checkpoint_interval_s = checkpoint_interval_s
        self.max_revokes_per_s = max_revokes_per_s
        self.retry_revoke_after_s = retry_revoke_after_s
        self._leases: dict[int, LeaseInfo] = {}
        self._heap: list[tuple[float, int]] = []  # (deadline, id); stale entries skipped lazily
        self._long: set[int] = set()  # leases long enough to be checkpointed
        self._clear: set[int] = set()  # renewed since their last checkpoint
        self._primary = False
        self._tokens = float(max_revokes_per_s)

    @property
    def is_primary(self) -> bool:
        return self._primary

    def effective_ttl(self, ttl: int) -> int:
        return max(ttl, self.min_ttl)

    def get(self, lease_id: int) -> LeaseInfo | None:
        return self._leases.get(lease_id)

    def ids(self) -> list[int]:
        return sorted(self._leases)

    def __len__(self) -> int:
        return len(self._leases)

    # -- applied state --------------------------------------------------------------------------
    def load(self, leases: list[tuple[int, int, int]], now: float) -> None:
        self._leases, self._heap, self._long, self._clear = {}, [], set(), set()
        for lease_id, ttl, remaining in leases:
            self._add(LeaseInfo(lease_id, self.effective_ttl(ttl), remaining))
        if self._primary:
            self.promote(now, 0.0)

    def granted(self, lease_id: int, ttl: int, now: float) -> None:
        info = self._add(LeaseInfo(lease_id, self.effective_ttl(ttl), checkpointed_at=now))
        if self._primary:
            self._set_deadline(info, now + info.ttl)

    def _add(self, info: LeaseInfo) -> LeaseInfo:
        self._leases[info.id] = info
        if info.ttl > self.checkpoint_interval_s:
            self._long.add(info.id)
        return info

    def revoked(self, lease_id: int) -> None:
        self._leases.pop(lease_id, None)
        self._long.discard(lease_id)
        self._clear.discard(lease_id)

    def checkpointed(self, lease_id: int, remaining: int) -> None:
        info = self._leases.get(lease_id)
        if info is None:
            return
        info.remaining = remaining
        if self._primary and remaining and info.renewed_at > info.checkpointed_at:
            self._clear.add(lease_id)  # renewed while the checkpoint was in flight: stale already

    # -- leadership -----------------------------------------------------------------------------
    def promote(self, now: float, extend_s: float) -> None:
        self._primary = True
        self._heap = []
        for info in self._leases.values():
            info.handed_out = -math.inf
            info.checkpointed_at = now
            self._set_deadline(info, now + (info.remaining or info.ttl) + extend_s)

    def demote(self) -> None:
        self._primary = False
        self._heap = []
        for info in self._leases.values():
            info.deadline = math.inf

    def _set_deadline(self, info: LeaseInfo, deadline: float) -> None:
        info.deadline = deadline
        heapq.heappush(self._heap, (deadline, info.id))

    # -- client operations (primary) ------------------------------------------------------------
    def keep_alive(self, lease_id: int, now: float) -> int | None:
        """The renewed TTL; None for a lease unknown here (or when not primary); ``EXPIRED`` for
        a lease past its deadline, left as it is."""
        info = self._leases.get(lease_id)
        if info is None or not self._primary:
            return None
        if info.deadline <= now:
            return EXPIRED
        if info.remaining:
            self._clear.add(lease_id)
        info.renewed_at = now
        info.handed_out = -math.inf
        self._set_deadline(info, now + info.ttl)
        return info.ttl

    def remaining(self, lease_id: int, now: float) -> int | None:
        info = self._leases.get(lease_id)
        if info is None:
            return None
        if not self._primary:
            return info.remaining or info.ttl
        return max(0, math.ceil(info.deadline - now))

    # -- what to propose (primary) --------------------------------------------------------------
    def revoke_budget(self, elapsed_s: float) -> int:
        """Tokens for this tick: ``max_revokes_per_s`` refilled over time, at most one second's."""
        self._tokens = min(float(self.max_revokes_per_s), self._tokens + elapsed_s * self.max_revokes_per_s)
        return int(self._tokens)

    def expired(self, now: float, budget: int) -> list[int]:
        if not self._primary:
            return []
        out: list[int] = []
        retry: list[tuple[float, int]] = []
        while self._heap and len(out) < budget and self._heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(self._heap)
            info = self._leases.get(lease_id)
            if info is None or info.deadline != deadline:
                continue  # revoked, renewed or re-promoted since: a stale entry
            if now - info.handed_out < self.retry_revoke_after_s:
                retry.append((deadline, lease_id))
                continue
            info.handed_out = now
            out.append(lease_id)
            retry.append((deadline, lease_id))  # stays due until the revoke is applied
        for item in retry:
            heapq.heappush(self._heap, item)
        self._tokens -= len(out)
        return out

    def checkpoints(self, now: float) -> list[tuple[int, int]]:
        """``(id, remaining)`` to propose: long leases due for a checkpoint, and renewed leases
        whose checkpoint is stale (remaining 0: forget it)."""
        if not self._primary:
            return []
        out = [(lease_id, 0) for lease_id in sorted(self._clear)]
        self._clear.clear()
        for lease_id in sorted(self._long):
            info = self._leases[lease_id]
            if now - info.checkpointed_at >= self.checkpoint_interval_s:
                info.checkpointed_at = now
                out.append((lease_id, max(0, math.ceil(info.deadline - now))))
        return out


class Wait(enum.Enum):
    """Why a held keep-alive is not answered yet."""

    DONE = 0  # it was answered
    GRANT = 1  # its lease is unknown here: the grant may be on its way
    REVOKE = 2  # its lease is past its deadline: the revoke may be on its way


class Held:
    """Keep-alives that cannot be answered yet.

    A grant reaches the expirer from the apply worker, its keep-alive from the gateway: the
    client had the grant's answer, yet the keep-alive may overtake the grant's event. Held
    rather than refused, it is answered as soon as the grant arrives; only a lease still unknown
    after ``wait_s`` is "not found". A keep-alive for an expired lease waits for the revoke
    (its lease is then unknown, refused as above) at most ``revoke_wait_s``.
    """

    def __init__(self, wait_s: float, revoke_wait_s: float) -> None:
        self.wait_s = wait_s
        self.revoke_wait_s = revoke_wait_s
        self._calls: list[tuple[float, Any]] = []  # (held since, call)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def hold(self, call: Any, now: float) -> None:
        self._calls.append((now, call))

    def retry(self, answer: Callable[[Any], Wait], now: float) -> list[Any]:
        """Try each held call again (``answer`` says whether it answered it, or what it still
        waits for); the calls that waited long enough in vain are returned, to be refused."""
        waiting, self._calls = self._calls, []
        given_up = []
        for since, call in waiting:
            wait = answer(call)
            if wait is Wait.DONE:
                continue
            limit = self.wait_s if wait is Wait.GRANT else self.revoke_wait_s
            if now - since < limit:
                self._calls.append((since, call))
            else:
                given_up.append(call)
        return given_up
