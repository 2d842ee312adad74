"""Group commit on the leader: under load, proposals wait a few milliseconds to share a round.

Each batch of proposals the leader steps starts a replication round: a log append and a WAL
write with its fsync, an append to each follower and its WAL write, a commit, an apply batch on
every member and the answers. The cost of a round is mostly per round, not per request (a
handful of messages, each waking an actor process), so under load the store's CPU per write
falls as rounds carry more requests. Left alone, proposals arrive in small bursts (each
gateway's clients answered together send again together) and every burst starts its own round.

The rule, PostgreSQL's ``commit_delay`` / ``commit_siblings`` applied to raft rounds:
- While fewer than ``siblings`` requests were released in the last ``delay_s`` (a light load),
  a proposal is released at once: no write waits for company that is not coming.
- Otherwise a proposal is held until ``delay_s`` after the last release, and everything held
  then goes in one round, in arrival order. A write waits at most ``delay_s``; under a steady
  load of at least ``siblings / delay_s`` requests a second the leader starts one round per
  ``delay_s``.
- ``delay_s`` 0 turns it off (every proposal at once, as etcd does).
- A leader alone (no other member to replicate to) releases every proposal at once: its round
  is a WAL write, which batches by itself (entries arriving during an fsync go with the next),
  and measured on one member the hold halved the write rate without saving CPU.

Held proposals are only delayed, never dropped: one that reaches a member no longer leader
when it is released is forwarded or refused there as any proposal would be.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, delay_s: float, siblings: int) -> None:
        self.delay_s = delay_s
        self.siblings = siblings
        self._released: deque[tuple[float, int]] = deque()  # (when, requests) in the last delay_s
        self._in_window = 0  # requests in ``_released``
        self._last_release = float("-inf")
        self._held: list[T] = []
        self._held_requests = 0

    @property
    def due(self) -> float | None:
        """When the held proposals must go (None: none held)."""
        return self._last_release + self.delay_s if self._held else None

    def offer(self, proposal: T, requests: int, now: float, alone: bool = False) -> list[T]:
        """What to step now: ``[proposal]`` (with anything held, if ``alone``), or nothing if
        it is held until ``due``."""
        if alone:  # anything still held (the peers just left) goes first, in order
            held, self._held = self._held, []
            self._mark(now, (self._held_requests if held else 0) + requests)
            return [*held, proposal]
        if self._held:
            self._held.append(proposal)
            self._held_requests += requests
            return []
        self._forget_before(now - self.delay_s)
        if self._in_window >= self.siblings and now < self._last_release + self.delay_s:
            self._held.append(proposal)
            self._held_requests = requests
            return []
        self._mark(now, requests)
        return [proposal]

    def release(self, now: float) -> list[T]:
        """Everything held, once ``due`` has come (else nothing)."""
        due = self.due
        if due is None or now < due:
            return []
        held, self._held = self._held, []
        self._forget_before(now - self.delay_s)
        self._mark(now, self._held_requests)
        return held

    def _mark(self, now: float, requests: int) -> None:
        self._released.append((now, requests))
        self._in_window += requests
        self._last_release = now

    def _forget_before(self, cutoff: float) -> None:
        released = self._released
        while released and released[0][0] <= cutoff:
            self._in_window -= released.popleft()[1]
