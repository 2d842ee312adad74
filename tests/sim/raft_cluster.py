"""A whole raft cluster in one process: RawNodes, a fake network, fake disks, fake clock.

Everything is driven by the caller (scripted scenarios) or by a seeded ``random.Random``
(the simulation): no threads, no sockets, no wall clock, so a seed replays exactly.

The disk model is the WAL's: a Ready's entries, hard state and snapshot are *pending* until the
cluster completes that write; only then are they on the node's disk, are its
``messages_after_persist`` released and is ``on_persisted`` called. A crash loses the pending
writes and the volatile state; a restart builds a fresh RawNode from the disk alone.

Membership: a node applying a committed CONF_CHANGE entry calls ``apply_conf_change``, as the
shell does. ``Cluster(n, bootstrap=True)`` starts every member with ``Config.voters == []`` and
bootstraps its empty log with one ADD_NODE per member, so that a restarted node rebuilds its
configuration from its disk alone (snapshot, then replayed entries); without it every node is
configured with the fixed voters 1..n. ``add_node`` starts a member that joins with an empty
disk and no configuration.

Invariants (``check``), after every event:
- election safety: at most one leader per term, and a leader is a voter of its configuration;
- log matching: an (index, term) pair names one entry, with one predecessor term;
- state-machine safety: every node applies the same entry at the same index, contiguously,
  and has the same configuration after applying the same conf change;
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
from proto_schemas.codec import decode
from proto_schemas.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    RaftMessage,
    Snapshot,
)


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
    voters: list[int] = field(default_factory=list)  # Config.voters at every start
    bootstrap: list[ConfChange] = field(default_factory=list)  # for an empty disk
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
        bootstrap: bool = False,
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
        if bootstrap:
            changes = [ConfChange(type=ConfChangeType.ADD_NODE, node_id=i) for i in self.ids]
            self.nodes = {i: SimNode(i, bootstrap=changes) for i in self.ids}
        else:
            self.nodes = {i: SimNode(i, voters=list(self.ids)) for i in self.ids}
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
        self.conf_at: dict[int, ConfState] = {}  # index of a conf change -> config after it
        # Bootstrap applies entries 1..n at once, before they are applied one by one.
        self.bootstrap_index = n if bootstrap else 0
        for i in self.ids:
            self.start(i)
        for i in self.ids:
            self.process(i)  # hands out the bootstrap Ready, if any

    # -- lifecycle ------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.trace:
            print(f"t={self.now:5d} {text}")

    def config(self, i: int) -> Config:
        return Config(
            id=i,
            voters=list(self.nodes[i].voters),
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
        if sn.bootstrap and sn.disk.last_index() == 0:
            sn.node.bootstrap(sn.bootstrap)  # as the shell does when it finds no WAL
        sn.applied = self.snapshot_state(sn.disk.snapshot().metadata.index)
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

    def add_node(self, i: int) -> None:
        """Start a new member with an empty disk and no configuration: it waits, never
        campaigning, until a leader that has applied its ADD_NODE (or ADD_LEARNER_NODE)
        brings it up to date by log or snapshot."""
        assert i not in self.nodes, f"node {i} exists already"
        self.ids.append(i)
        self.nodes[i] = SimNode(i)
        self.restart(i)

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
            self.report_snapshot(m, ok=False)
            return
        if self.msg_filter is not None and not self.msg_filter(m):
            self.report_snapshot(m, ok=False)
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.report_snapshot(m, ok=False)
            return
        copies = 2 if self.dup_rate and self.rng.random() < self.dup_rate else 1
        for _ in range(copies):
            self._seq += 1
            self.net.append(InFlight(self.now + self.delay(), self._seq, m))

    def report_snapshot(self, m: RaftMessage, ok: bool) -> None:
        """The transport tells the sender how a snapshot went (etcd's ``ReportSnapshot``):
        without it the leader would wait for that follower in SNAPSHOT state forever. It comes
        back as a local SNAP_STATUS, since a node must not be stepped inside its Ready."""
        if m.type is MessageType.SNAP:
            self._seq += 1
            report = RaftMessage(type=MessageType.SNAP_STATUS, to=m.from_, from_=m.to, reject=not ok)
            self.net.append(InFlight(self.now + self.delay(), self._seq, report))

    def deliver(self, f: InFlight) -> None:
        m = f.msg
        sn = self.nodes[m.to]
        if m.type is MessageType.SNAP_STATUS:
            if sn.node is not None:
                self.log(f"snapshot to {m.from_} {'failed' if m.reject else 'delivered'}, tell {m.to}")
                sn.node.report_snapshot(m.from_, ok=not m.reject)
                self.process(m.to)
            return
        if sn.node is None or (m.from_, m.to) in self.cut:
            self.report_snapshot(m, ok=False)
            return
        self.log(
            f"deliver {m.type.name} {m.from_}->{m.to} t{m.term} i{m.index} "
            f"lt{m.log_term} n{len(m.entries)} c{m.commit} rej={m.reject}"
        )
        sn.node.step(m)
        self.report_snapshot(m, ok=True)
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
            sn.applied = self.snapshot_state(rd.snapshot.metadata.index)
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

    def snapshot_state(self, upto: int) -> list[Entry]:
        """A snapshot *is* the state machine up to its index: the committed prefix."""
        return [
            Entry(
                term=self.committed[k][0],
                index=k,
                type=EntryType.CONF_CHANGE if k in self.conf_at else EntryType.NORMAL,
                data=self.committed[k][1],
            )
            for k in range(1, upto + 1)
        ]

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
        if e.type == EntryType.CONF_CHANGE:
            cc = decode(e.data, expect=ConfChange)
            cs = self.node(sn.id).apply_conf_change(cc)
            self.log(f"{sn.id} applied {cc.type.name} {cc.node_id} at {e.index}: {cs}")
            seen = self.conf_at.setdefault(e.index, cs)
            if seen != cs and e.index > self.bootstrap_index:
                raise InvariantViolation(
                    f"node {sn.id} has configuration {cs} after the change at {e.index}, "
                    f"another node has {seen}"
                )

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

    def propose_conf_change(self, i: int, type_: ConfChangeType, node_id: int) -> bool:
        try:
            self.node(i).propose_conf_change(ConfChange(type=type_, node_id=node_id))
        except ProposalDropped:
            return False
        finally:
            self.process(i)
        return True

    def compact(self, i: int) -> int:
        """Snapshot node ``i``'s applied state, with its configuration, into its raft storage
        and compact the log there; returns the snapshot index. (The disk keeps the whole log:
        a restart forgets the compaction, which is harmless.)"""
        node = self.node(i)
        storage = node.raft.log.storage
        assert isinstance(storage, MemoryStorage)
        index = node.status.applied
        storage.create_snapshot(index, conf_state=node.conf_state, data=b"state at %d" % index)
        storage.compact(index)
        return index

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
        """The client data node ``i`` applied (conf changes and empty entries left out)."""
        return [e.data for e in self.nodes[i].applied if e.data and e.type == EntryType.NORMAL]

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
            if i not in st.voters:
                raise InvariantViolation(f"leader {i} is not a voter of its configuration {st.voters}")
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
