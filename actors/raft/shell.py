"""The raft core's shell: feeds the pure RawNode and carries out its Ready.

Start-up: ask the WAL writer for what it replayed (``WalLoad`` -> ``WalState``), fill the
storage with it, then start ticking. Each loop iteration: step every drained message, tick when
due, then for each Ready: entries + hard state to the WAL writer (with the messages that must
wait for durability), other messages to peers right away (a leader replicates in parallel with
its own fsync), committed entries to the apply worker, read states to the gateway; advance.
"""

from __future__ import annotations

import random

import structlog

from actors.raft.rawnode import Config, ProposalDropped, RawNode
from actors.raft.storage import MemoryStorage
from actors.runtime.config import NodeConfig
from actors.runtime.loop import Loop, send
from proto_schemas.errors import ErrorCode
from proto_schemas.internal import (
    Applied,
    Apply,
    Persist,
    Persisted,
    Propose,
    ProposeFailed,
    RaftStatus,
    ReadIndexRequest,
    ReadIndexResponse,
    WalLoad,
    WalState,
)


class RaftShell:
    def __init__(self, config: NodeConfig, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.loop = Loop(log)
        self.node: RawNode | None = None
        self.applied = 0
        self.last_status: RaftStatus | None = None
        self.inbox = self.loop.inbox(config.inbox("raft"))
        self.to_wal = self.loop.outbox(config.inbox("wal"))
        self.to_apply = self.loop.outbox(config.inbox("apply"))
        self.to_gateway = self.loop.outbox(config.inbox("gateway"))
        self.loop.on_messages(self.inbox, self.handle)
        self.loop.every(config.heartbeat_interval_ms / 1000, self.tick)
        self.loop.after_batch(self.flush)
        send(self.to_wal, WalLoad())

    def start(self, state: WalState) -> None:
        storage = MemoryStorage()
        storage.set_hard_state(state.hard_state)
        storage.append(state.entries)
        voters = sorted(self.config.peers) or [self.config.member_id]
        self.node = RawNode(
            Config(
                id=self.config.member_id,
                voters=voters,
                election_tick=self.config.election_tick,
                heartbeat_tick=1,
                applied=0,
                rng=random.Random(),
            ),
            storage,
        )
        self.log.info(
            "raft started",
            term=state.hard_state.term,
            commit=state.hard_state.commit,
            last_index=state.entries[-1].index if state.entries else 0,
            voters=len(voters),
        )
        if len(voters) == 1:
            self.node.campaign()  # a one-member cluster needs no election timeout

    def handle(self, msgs: list[object]) -> None:
        for msg in msgs:
            if isinstance(msg, WalState):
                if self.node is None:
                    self.start(msg)
                continue
            node = self.node
            if node is None:
                if isinstance(msg, Propose):
                    send(
                        self.to_gateway, ProposeFailed(request_ids=msg.request_ids, code=ErrorCode.NO_LEADER)
                    )
                elif isinstance(msg, ReadIndexRequest):
                    send(self.to_gateway, ReadIndexResponse(read_id=msg.read_id, code=ErrorCode.NO_LEADER))
                continue
            if isinstance(msg, Propose):
                dropped = []
                for data, rid in zip(msg.data, msg.request_ids, strict=True):
                    try:
                        node.propose(data)
                    except ProposalDropped:
                        dropped.append(rid)
                if dropped:
                    send(self.to_gateway, ProposeFailed(request_ids=dropped, code=ErrorCode.NO_LEADER))
            elif isinstance(msg, ReadIndexRequest):
                if node.status.leader == 0:
                    send(self.to_gateway, ReadIndexResponse(read_id=msg.read_id, code=ErrorCode.NO_LEADER))
                else:
                    node.read_index(msg.read_id.to_bytes(8, "big"))
            elif isinstance(msg, Persisted):
                node.on_persisted(msg.last_index, msg.last_term)
                # messages released by durability go to peers (replication issue)
            elif isinstance(msg, Applied):
                self.applied = max(self.applied, msg.index)

    def tick(self) -> None:
        if self.node is not None:
            self.node.tick()

    def flush(self) -> None:
        node = self.node
        if node is None:
            return
        while node.has_ready():
            rd = node.ready()
            if rd.soft_state is not None:
                self.log.info("raft role", leader=f"{rd.soft_state.leader:x}", role=rd.soft_state.role.name)
            if rd.entries or rd.hard_state is not None or rd.messages_after_persist:
                send(
                    self.to_wal,
                    Persist(
                        entries=list(rd.entries),
                        hard_state=rd.hard_state,
                        messages=list(rd.messages_after_persist),
                    ),
                )
            if rd.committed_entries:
                send(self.to_apply, Apply(entries=list(rd.committed_entries)))
            for rs in rd.read_states:
                send(
                    self.to_gateway,
                    ReadIndexResponse(read_id=int.from_bytes(rs.request_ctx, "big"), index=rs.index),
                )
            node.advance(rd)
        st = node.status
        status = RaftStatus(
            member_id=self.config.member_id,
            cluster_id=self.config.cluster_id,
            term=st.term,
            leader=st.leader,
            commit=st.commit,
            applied=self.applied,
        )
        if status != self.last_status:
            self.last_status = status
            send(self.to_gateway, status)


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    return RaftShell(config, log).loop
