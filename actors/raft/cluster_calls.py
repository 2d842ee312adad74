"""Clients' Cluster requests inside the raft core: check, propose, answer once applied.

A member list is answered at once from the local table (as etcd 3.4 does). A change is checked
against the table (``MemberTable.plan_*``), proposed as a conf change whose context carries the
request id, and answered by the member that holds the request when that entry is applied —
wherever it was proposed, the change is applied by every member in log order. A leader transfer
is answered when the target becomes leader. Requests that get nowhere are forgotten after the
request timeout; the gateway has already answered them with ``request timed out``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from actors.raft.membership import MemberTable
from actors.raft.rawnode import ProposalDropped, RawNode, Role
from proto_schemas.cluster import (
    ClusterCall,
    Member,
    MemberAddRequest,
    MemberAddResponse,
    MemberListRequest,
    MemberListResponse,
    MemberPromoteRequest,
    MemberPromoteResponse,
    MemberRemoveRequest,
    MemberRemoveResponse,
    MemberUpdateRequest,
    MemberUpdateResponse,
    MoveLeaderRequest,
    MoveLeaderResponse,
)
from proto_schemas.codec import encode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.internal import ReadResult
from proto_schemas.kv import ResponseHeader
from proto_schemas.raft import ConfChange

PUBLISH_EVERY_S = 1.0

_RESPONSES: dict[type, type] = {
    MemberAddRequest: MemberAddResponse,
    MemberRemoveRequest: MemberRemoveResponse,
    MemberUpdateRequest: MemberUpdateResponse,
    MemberPromoteRequest: MemberPromoteResponse,
}


@dataclass(slots=True)
class _Waiting:
    deadline: float
    request: Any
    member: Member | None = None


class MemberSettings(Protocol):
    """What the calls need of the node's config (the shell passes its ``NodeConfig``; the
    core does not import it, which would bring the key files' sockets library along)."""

    @property
    def cluster_id(self) -> int: ...
    @property
    def member_id(self) -> int: ...
    @property
    def request_timeout_ms(self) -> int: ...
    @property
    def initial_cluster_token(self) -> str: ...


class ClusterCalls:
    def __init__(self, config: MemberSettings, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.timeout_s = config.request_timeout_ms / 1000
        self._waiting: dict[int, _Waiting] = {}
        self._last_publish = -1e9
        self._rng = random.Random()

    def header(self, node: RawNode) -> ResponseHeader:
        return ResponseHeader(
            cluster_id=self.config.cluster_id, member_id=self.config.member_id, raft_term=node.status.term
        )

    def _reply(self, read_id: int, body: Any) -> ReadResult:
        return ReadResult(read_id=read_id, body=encode(body))

    def call(
        self, msg: ClusterCall, node: RawNode, table: MemberTable, started: set[int] | None, now: float
    ) -> list[ReadResult]:
        try:
            return self._call(msg, node, table, started, now)
        except EtcdzError as exc:
            return [self._reply(msg.read_id, exc.to_response())]

    def _call(
        self, msg: ClusterCall, node: RawNode, table: MemberTable, started: set[int] | None, now: float
    ) -> list[ReadResult]:
        req = msg.request
        rid = msg.read_id
        if isinstance(req, MemberListRequest):
            return [self._reply(rid, MemberListResponse(header=self.header(node), members=table.sorted()))]
        if isinstance(req, MoveLeaderRequest):
            return self._move_leader(rid, req, node, table, now)
        if started is not None:
            started = started | {self.config.member_id}
        if isinstance(req, MemberAddRequest):
            if req.cluster_token and req.cluster_token != self.config.initial_cluster_token:
                raise EtcdzError(ErrorCode.CLUSTER_TOKEN_MISMATCH)
            new_id = self._rng.getrandbits(64) or 1
            cc = table.plan_add(req, new_id, started, rid)
        elif isinstance(req, MemberRemoveRequest):
            cc = table.plan_remove(req, started, rid)
        elif isinstance(req, MemberUpdateRequest):
            cc = table.plan_update(req, rid)
        else:
            cc = table.plan_promote(req, rid)
            match = node.match_of(req.id)
            if match is not None and match < node.status.commit * 0.9:
                raise EtcdzError(ErrorCode.LEARNER_NOT_READY)
        self._propose(node, cc)
        self._waiting[rid] = _Waiting(now + self.timeout_s, req)
        return []

    def _propose(self, node: RawNode, cc: ConfChange) -> None:
        if node.status.leader == 0:
            raise EtcdzError(ErrorCode.NO_LEADER)
        try:
            node.propose_conf_change(cc)
        except ProposalDropped as exc:
            # A change is still pending (single-step changes) or leadership is moving.
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS, str(exc)) from None

    def _move_leader(
        self, rid: int, req: MoveLeaderRequest, node: RawNode, table: MemberTable, now: float
    ) -> list[ReadResult]:
        if node.status.role is not Role.LEADER:
            raise EtcdzError(ErrorCode.NOT_LEADER)
        target = table.members.get(req.target_id)
        if target is None or target.is_learner:
            raise EtcdzError(ErrorCode.BAD_LEADER_TRANSFEREE)
        if req.target_id == self.config.member_id:
            return [self._reply(rid, MoveLeaderResponse(header=self.header(node)))]
        try:
            node.transfer_leader(req.target_id)
        except ProposalDropped as exc:
            raise EtcdzError(ErrorCode.NOT_LEADER, str(exc)) from None
        self._waiting[rid] = _Waiting(now + self.timeout_s, req)
        return []

    # -- events ----------------------------------------------------------------------------------
    def applied(self, request_id: int, cc: ConfChange, table: MemberTable, node: RawNode) -> list[ReadResult]:
        waiting = self._waiting.pop(request_id, None)
        if waiting is None or isinstance(waiting.request, MoveLeaderRequest):
            return []
        response_type = _RESPONSES[type(waiting.request)]
        fields: dict[str, Any] = {"header": self.header(node), "members": table.sorted()}
        if response_type is MemberAddResponse:
            fields["member"] = table.members.get(cc.node_id) or Member(id=cc.node_id)
        return [self._reply(request_id, response_type(**fields))]

    def leader_changed(self, leader: int) -> list[ReadResult]:
        replies = []
        for rid, waiting in list(self._waiting.items()):
            if isinstance(waiting.request, MoveLeaderRequest) and waiting.request.target_id == leader:
                del self._waiting[rid]
                header = ResponseHeader(cluster_id=self.config.cluster_id, member_id=self.config.member_id)
                replies.append(self._reply(rid, MoveLeaderResponse(header=header)))
        return replies

    def expire(self, now: float) -> None:
        """Forget what the gateway has given up on (it answered ``request timed out``)."""
        for rid in [rid for rid, w in self._waiting.items() if w.deadline <= now]:
            del self._waiting[rid]

    def may_publish(self, now: float) -> bool:
        if now - self._last_publish < PUBLISH_EVERY_S:
            return False
        self._last_publish = now
        return True
