"""A whole raft cluster in one process: RawNodes, a fake network, fake disks, fake clock.

Everything is driven by the caller (scripted scenarios) or by a seeded ``random.Random``
(the simulation): no threads, no sockets, no wall clock, so a seed replays exactly.

The disk model is the WAL's: a Ready's entries, hard state and snapshot are *pending* until the
cluster completes that write; only then are they on the node's disk, are its
``messages_after_persist`` released and is ``on_persisted`` called. A crash loses the pending
writes and the volatile state; a restart builds a fresh RawNode from the disk alone.

Invariants (``check``), after every event:
- election safety: at most one leader per term;
- log matching: an (index, term) pair names one entry, with one predecessor term;
- state-machine safety: every node applies the same entry at the same index, contiguously;
- leader completeness: a leader of term T holds every entry committed in a term < T
  (commit terms are recorded as an upper bound: the observer's term when first seen);
- read safety: a ReadState's index covers every commit seen before the read was asked.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.raft.rawnode import Config, ProposalDropped, RawNode, Ready, Role
from actors.raft.storage import MemoryStorage
from proto_schemas.raft import Entry, HardState, MessageType, RaftMessage, Snapshot


class InvariantViolation(AssertionError):
    pass


@dataclass
class Write:
    entries: list[Entry]
    hard_state: HardState | None
    snapshot: Snapshot | None
    after: list[RaftMessage]
    due: int = 0


@dataclass
class SimNode:
    id: int
    disk: MemoryStorage = field(default_factory=MemoryStorage)
    node: RawNode | None = None
    pending: deque[Write] = field(default_factory=deque)
    applied: list[Entry] = field(default_factory=list)
    reads: list[tuple[bytes, int]] = field(default_factory=list)  # (ctx, read index)
    checked_commit: int = 0
    was_leader_term: int = 0

    @property
    def up(self) -> bool:
        return self.node is not None


@dataclass(order=True)
class InFlight:
    due: int
    seq: int
    msg: RaftMessage = field(compare=False)


def fresh_storage(disk: MemoryStorage) -> MemoryStorage:
    """What the shell builds at start from the WAL: a copy of the disk."""
    s = MemoryStorage()
    snap = disk.snapshot()
    if snap.metadata.index:
        s.apply_snapshot(snap)
    s.append(list(disk.all_entries()))
    s.set_hard_state(disk.hard_state)
    return s


class Cluster:
    def __init__(
        self,
        n: int,
        seed: int = 0,
        *,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_tick: int = 10,
        max_inflight_msgs: int = 256,
        max_size_per_msg: int = 1 << 20,
        trace: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.ids = list(range(1, n + 1))
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.election_tick = election_tick
        self.max_inflight_msgs = max_inflight_msgs
        self.max_size_per_msg = max_size_per_msg
        self.trace = trace
        self.now = 0
        self._seq = 0
        self.nodes: dict[int, SimNode] = {i: SimNode(i) for i in self.ids}
        self.net: list[InFlight] = []
        # network faults
        self.cut: set[tuple[int, int]] = set()  # directed links that drop everything
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.delay: Callable[[], int] = lambda: 0
        self.disk_delay: Callable[[], int] = lambda: 0
        self.msg_filter: Callable[[RaftMessage], bool] | None = None  # False: drop
        # invariant state
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.entry_map: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.commit_term: dict[int, int] = {}  # index -> upper bound of the committing term
        self.max_commit = 0
        self.read_asked: dict[bytes, int] = {}  # ctx -> max_commit when asked
        for i in self.ids:
            self.start(i)

    # -- lifecycle ------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.trace:
            print(f"t={self.now:5d} {text}")

    def config(self, i: int) -> Config:
        return Config(
            id=i,
            voters=list(self.ids),
            election_tick=self.election_tick,
            heartbeat_tick=1,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_inflight_msgs=self.max_inflight_msgs,
            max_size_per_msg=self.max_size_per_msg,
            rng=random.Random(self.rng.getrandbits(32)),
        )

    def start(self, i: int) -> None:
        sn = self.nodes[i]
        sn.node = RawNode(self.config(i), fresh_storage(sn.disk))
        sn.applied = []
        sn.checked_commit = 0
        sn.pending.clear()
        self.log(f"start {i} hs={sn.disk.hard_state} last={sn.disk.last_index()}")

    def crash(self, i: int) -> None:
        sn = self.nodes[i]
        sn.node = None
        sn.pending.clear()
        self.log(f"crash {i}")

    def restart(self, i: int) -> None:
        self.start(i)
        self.process(i)

    def node(self, i: int) -> RawNode:
        n = self.nodes[i].node
        assert n is not None, f"node {i} is down"
        return n

    # -- network --------------------------------------------------------------------------------

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def partition(self, *groups: list[int]) -> None:
        self.cut.clear()
        for g in groups:
            for h in groups:
                if g is not h:
                    for a in g:
                        for b in h:
                            self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()

    def send(self, m: RaftMessage) -> None:
        if (m.from_, m.to) in self.cut or m.to not in self.nodes:
            return
        if self.msg_filter is not None and not self.msg_filter(m):
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return
        copies = 2 if self.dup_rate and self.rng.random() < self.dup_rate else 1
        for _ in range(copies):
            self._seq += 1
            self.net.append(InFlight(self.now + self.delay(), self._seq, m))

    def deliver(self, f: InFlight) -> None:
        m = f.msg
        sn = self.nodes[m.to]
        if sn.node is None or (m.from_, m.to) in self.cut:
            return
        self.log(
            f"deliver {m.type.name} {m.from_}->{m.to} t{m.term} i{m.index} "
            f"lt{m.log_term} n{len(m.entries)} c{m.commit} rej={m.reject}"
        )
        sn.node.step(m)
        self.process(m.to)

    def deliver_due(self) -> int:
        """Deliver every message due by now, in (due, seq) order. Returns how many."""
        due = [f for f in self.net if f.due <= self.now]
        if not due:
            return 0
        self.net = [f for f in self.net if f.due > self.now]
        due.sort()
        for f in due:
            self.deliver(f)
        return len(due)

    # -- disk -----------------------------------------------------------------------------------

    def complete_write(self, i: int) -> None:
        sn = self.nodes[i]
        w = sn.pending.popleft()
        disk = sn.disk
        if w.snapshot is not None:
            disk.apply_snapshot(w.snapshot)
        disk.append(w.entries)
        if w.hard_state is not None:
            disk.set_hard_state(w.hard_state)
        for m in w.after:
            self.send(m)
        last = disk.last_index()
        self.node(i).on_persisted(last, disk.term(last))
        self.process(i)

    def complete_due_writes(self) -> int:
        n = 0
        for i in self.ids:
            sn = self.nodes[i]
            while sn.node is not None and sn.pending and sn.pending[0].due <= self.now:
                self.complete_write(i)
                n += 1
        return n

    # -- the shell loop -------------------------------------------------------------------------

    def process(self, i: int) -> None:
        sn = self.nodes[i]
        node = sn.node
        if node is None:
            return
        while node.has_ready():
            rd = node.ready()
            self.handle_ready(sn, rd)
            node.advance(rd)
        self.check(i)

    def handle_ready(self, sn: SimNode, rd: Ready) -> None:
        if rd.soft_state is not None:
            self.log(
                f"{sn.id} is {rd.soft_state.role.name} (leader {rd.soft_state.leader}) "
                f"term {self.node(sn.id).status.term}"
            )
        if rd.entries or rd.hard_state is not None or rd.snapshot or rd.messages_after_persist:
            sn.pending.append(
                Write(
                    list(rd.entries),
                    rd.hard_state,
                    rd.snapshot,
                    list(rd.messages_after_persist),
                    self.now + self.disk_delay(),
                )
            )
        for m in rd.messages:
            self.send(m)
        if rd.snapshot is not None:
            # The snapshot *is* the state machine up to its index: take the committed prefix.
            upto = rd.snapshot.metadata.index
            sn.applied = [
                Entry(term=self.committed[k][0], index=k, data=self.committed[k][1])
                for k in range(1, upto + 1)
            ]
        for e in rd.committed_entries:
            self.apply(sn, e)
        for rs in rd.read_states:
            sn.reads.append((rs.request_ctx, rs.index))
            asked = self.read_asked.get(rs.request_ctx)
            if asked is not None and rs.index < asked:
                raise InvariantViolation(
                    f"read {rs.request_ctx!r} at {sn.id} got index {rs.index} "
                    f"< commit {asked} known when asked"
                )

    def apply(self, sn: SimNode, e: Entry) -> None:
        if e.index != len(sn.applied) + 1:
            raise InvariantViolation(f"node {sn.id} applied {e.index} after {len(sn.applied)}")
        got = self.committed.get(e.index)
        if got is not None and got != (e.term, e.data):
            raise InvariantViolation(
                f"state machine safety: node {sn.id} applied {e} but {got} was committed"
            )
        self.committed.setdefault(e.index, (e.term, e.data))
        sn.applied.append(e)

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Scripted mode: persist and deliver until nothing moves (no time passes)."""
        for _ in range(max_rounds):
            moved = 0
            for i in self.ids:
                sn = self.nodes[i]
                while sn.node is not None and sn.pending:
                    self.complete_write(i)
                    moved += 1
            moved += self.deliver_due()
            if not moved:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, *ids: int, times: int = 1) -> None:
        for _ in range(times):
            for i in ids or self.ids:
                if self.nodes[i].up:
                    self.node(i).tick()
                    self.process(i)

    def propose(self, i: int, data: bytes) -> bool:
        try:
            self.node(i).propose(data)
        except ProposalDropped:
            return False
        finally:
            self.process(i)
        return True

    def read_index(self, i: int, ctx: bytes) -> None:
        self.read_asked[ctx] = self.max_commit
        self.node(i).read_index(ctx)
        self.process(i)

    def campaign(self, i: int) -> None:
        self.node(i).campaign()
        self.process(i)

    # -- views ----------------------------------------------------------------------------------

    def leader(self) -> int | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, int] | None = None
        for i in self.ids:
            sn = self.nodes[i]
            if sn.node is not None and sn.node.status.role is Role.LEADER:
                t = sn.node.status.term
                if best is None or t > best[0]:
                    best = (t, i)
        return best[1] if best else None

    def entries(self, i: int) -> list[Entry]:
        return self.node(i).raft.log.all_entries()

    def applied_data(self, i: int) -> list[bytes]:
        return [e.data for e in self.nodes[i].applied if e.data]

    # -- invariants -----------------------------------------------------------------------------

    def check(self, i: int) -> None:
        sn = self.nodes[i]
        node = sn.node
        if node is None:
            return
        raft = node.raft
        st = node.status
        log = raft.log
        if st.role is Role.LEADER:
            holder = self.leaders.setdefault(st.term, i)
            if holder != i:
                raise InvariantViolation(f"two leaders in term {st.term}: {holder} and {i}")
        entries = log.all_entries()
        prev_term = log.term(log.first_index() - 1) or 0
        emap = self.entry_map
        for e in entries:
            key = (e.index, e.term)
            val = (e.data, prev_term)
            seen = emap.setdefault(key, val)
            if seen != val:
                raise InvariantViolation(
                    f"log matching: node {i} has {e} after term {prev_term}, others have {seen}"
                )
            prev_term = e.term
        if log.committed > log.last_index():
            raise InvariantViolation(f"node {i} commit {log.committed} > last {log.last_index()}")
        # newly committed entries at this node
        if log.committed > sn.checked_commit:
            for idx in range(max(sn.checked_commit, log.first_index() - 1) + 1, log.committed + 1):
                t = log.term(idx)
                e = log.slice(idx, idx + 1)[0]
                assert t == e.term
                known = self.committed.get(idx)
                if known is not None and known != (e.term, e.data):
                    raise InvariantViolation(f"node {i} committed {e} at {idx}, but {known} was committed")
                if known is None:
                    self.committed[idx] = (e.term, e.data)
                if idx not in self.commit_term:
                    self.commit_term[idx] = st.term
                    self._check_completeness_of(idx)
            sn.checked_commit = log.committed
            self.max_commit = max(self.max_commit, log.committed)
        if st.role is Role.LEADER and sn.was_leader_term != st.term:
            sn.was_leader_term = st.term
            for idx, t in self.commit_term.items():
                if t < st.term:
                    self._check_leader_has(i, idx)

    def _check_completeness_of(self, idx: int) -> None:
        t = self.commit_term[idx]
        for j in self.ids:
            n = self.nodes[j].node
            if n is not None and n.status.role is Role.LEADER and n.status.term > t:
                self._check_leader_has(j, idx)

    def _check_leader_has(self, j: int, idx: int) -> None:
        log = self.node(j).raft.log
        term, data = self.committed[idx]
        if idx < log.first_index():
            return
        if log.term(idx) != term:
            raise InvariantViolation(
                f"leader completeness: leader {j} (term {self.node(j).status.term}) lacks "
                f"committed entry {idx} (term {term}, committed by term <= "
                f"{self.commit_term[idx]})"
            )


def is_local(m: RaftMessage) -> bool:
    return m.type in (MessageType.HUP, MessageType.BEAT)
