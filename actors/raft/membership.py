"""The member table and the rules of etcd's Cluster API, without I/O.

The table changes only by applying committed conf-change entries (every member applies the same
ones in the same order, so every member has the same table at the same index). Requests are
checked here before anything is proposed, with etcd's errors: a peer URL used twice, an unknown
member, promoting a voter, and etcd's strict reconfiguration check (a change may not leave the
cluster without a quorum of started members; ``started`` is None where it cannot be known:
only the leader hears from every member).

``MembershipLog`` keeps the table as of each conf change since the last snapshot: a snapshot
sent to a follower is taken at the backend's applied index, which may be behind the raft core,
and must carry the member table of exactly that index.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from proto_schemas.cluster import (
    Member,
    MemberAddRequest,
    MemberChange,
    MemberPromoteRequest,
    MemberRemoveRequest,
    Membership,
    MemberUpdateRequest,
)
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.raft import ConfChange, ConfChangeType, ConfState

MAX_LEARNERS = 1  # etcd's default --max-learners


def quorum(voters: int) -> int:
    return voters // 2 + 1


MAX_URL_LENGTH = 512


def url_problem(url: str, schemes: tuple[str, ...] = ("tcp",)) -> str:
    """Why ``url`` cannot be a peer address ("" if it can): ``tcp://host:port`` (or an
    ``ipc://`` path where ``schemes`` allows it), checked before ZeroMQ is given it (a URL it
    cannot parse makes ``connect`` raise)."""
    if not 0 < len(url) <= MAX_URL_LENGTH or not url.isprintable() or " " in url:
        return f"{url[:64]!r} is not a URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme == "ipc" and "ipc" in schemes:
        return "" if parts.netloc + parts.path else f"{url!r} has no path"
    if parts.scheme not in schemes or not parts.hostname or not port or parts.path or parts.query:
        return f"{url!r} is not tcp://host:port"
    return ""


def check_urls(urls: list[str]) -> None:
    if not urls:
        raise EtcdzError(ErrorCode.MEMBER_BAD_URLS, "no peer URL given")
    for url in urls:
        problem = url_problem(url)
        if problem:
            raise EtcdzError(ErrorCode.MEMBER_BAD_URLS, problem)


class MemberTable:
    def __init__(self, members: list[Member] | None = None, removed: list[int] | None = None) -> None:
        self.members: dict[int, Member] = {m.id: m for m in members or []}
        self.removed: set[int] = set(removed or [])

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> Membership:
        return Membership(members=self.sorted(), removed=sorted(self.removed))

    @classmethod
    def restore(cls, data: bytes) -> MemberTable:
        if not data:
            return cls()
        m = decode(data, expect=Membership)
        return cls(m.members, m.removed)

    def sorted(self) -> list[Member]:
        return [self.members[i] for i in sorted(self.members)]

    def conf_state(self) -> ConfState:
        ms = self.sorted()
        return ConfState(
            voters=[m.id for m in ms if not m.is_learner], learners=[m.id for m in ms if m.is_learner]
        )

    def peer_urls(self) -> dict[int, list[str]]:
        return {i: list(m.peer_urls) for i, m in self.members.items()}

    def voters(self) -> list[int]:
        return [i for i, m in self.members.items() if not m.is_learner]

    # -- applying committed changes ------------------------------------------------------------
    def apply(self, cc: ConfChange) -> MemberChange | None:
        """Apply one committed conf change; returns its decoded context (None if it has none
        or it does not decode: the raft configuration still changes, the table keeps ids)."""
        change: MemberChange | None = None
        if cc.context:
            try:
                change = decode(cc.context, expect=MemberChange)
            except DecodeError:
                change = None
        member = change.member if change is not None else Member(id=cc.node_id)
        current = self.members.get(cc.node_id)
        if cc.type is ConfChangeType.REMOVE_NODE:
            self.members.pop(cc.node_id, None)
            self.removed.add(cc.node_id)
        elif cc.type is ConfChangeType.ADD_NODE:
            base = current if current is not None else member
            self.members[cc.node_id] = dataclasses.replace(
                base, id=cc.node_id, is_learner=False, auto_promote=False
            )
        elif cc.type is ConfChangeType.ADD_LEARNER_NODE:
            if current is None:
                self.members[cc.node_id] = dataclasses.replace(member, id=cc.node_id, is_learner=True)
        elif cc.type is ConfChangeType.UPDATE_NODE and current is not None:
            self.members[cc.node_id] = dataclasses.replace(
                member, id=cc.node_id, is_learner=current.is_learner
            )
        return change

    # -- checking requests ---------------------------------------------------------------------
    def _urls_taken(self, urls: list[str], exclude: int = 0) -> bool:
        taken = {u for i, m in self.members.items() if i != exclude for u in m.peer_urls}
        return any(u in taken for u in urls)

    def plan_add(
        self, req: MemberAddRequest, new_id: int, started: set[int] | None, request_id: int
    ) -> ConfChange:
        check_urls(req.peer_urls)
        if self._urls_taken(req.peer_urls):
            raise EtcdzError(ErrorCode.PEER_URL_EXIST)
        if req.name and any(m.name == req.name for m in self.members.values()):
            raise EtcdzError(ErrorCode.MEMBER_NAME_EXIST, repr(req.name))
        if new_id in self.members or new_id in self.removed:
            raise EtcdzError(ErrorCode.MEMBER_EXIST)
        if req.is_learner:
            if sum(m.is_learner for m in self.members.values()) >= MAX_LEARNERS:
                raise EtcdzError(ErrorCode.TOO_MANY_LEARNERS)
            kind = ConfChangeType.ADD_LEARNER_NODE
        else:
            # The new voter is not started yet: the others must still make a quorum.
            voters = self.voters()
            if started is not None and len(started & set(voters)) < quorum(len(voters) + 1):
                raise EtcdzError(ErrorCode.MEMBER_NOT_ENOUGH_STARTED)
            kind = ConfChangeType.ADD_NODE
        member = Member(
            id=new_id,
            peer_urls=list(req.peer_urls),
            is_learner=req.is_learner,
            auto_promote=req.is_learner and req.auto_promote,
        )
        return self._change(kind, member, request_id)

    def plan_remove(self, req: MemberRemoveRequest, started: set[int] | None, request_id: int) -> ConfChange:
        if req.id in self.removed:
            raise EtcdzError(ErrorCode.ID_REMOVED)
        member = self._get(req.id)
        if not member.is_learner:
            voters = [v for v in self.voters() if v != req.id]
            if not voters:
                raise EtcdzError(ErrorCode.MEMBER_NOT_ENOUGH_STARTED, "cannot remove the last voter")
            if started is not None and len(started & set(voters)) < quorum(len(voters)):
                raise EtcdzError(ErrorCode.MEMBER_NOT_ENOUGH_STARTED)
        return self._change(ConfChangeType.REMOVE_NODE, member, request_id)

    def plan_update(self, req: MemberUpdateRequest, request_id: int) -> ConfChange:
        check_urls(req.peer_urls)
        member = self._get(req.id)
        if self._urls_taken(req.peer_urls, exclude=req.id):
            raise EtcdzError(ErrorCode.PEER_URL_EXIST)
        updated = dataclasses.replace(member, peer_urls=list(req.peer_urls))
        return self._change(ConfChangeType.UPDATE_NODE, updated, request_id)

    def plan_promote(self, req: MemberPromoteRequest, request_id: int, auto: bool = False) -> ConfChange:
        member = self._get(req.id)
        if not member.is_learner:
            raise EtcdzError(ErrorCode.MEMBER_NOT_LEARNER)
        promoted = dataclasses.replace(member, is_learner=False, auto_promote=False)
        return self._change(ConfChangeType.ADD_NODE, promoted, request_id, auto)

    def auto_learners(self) -> set[int]:
        """The learners the leader promotes by itself once they have caught up."""
        return {i for i, m in self.members.items() if m.is_learner and m.auto_promote}

    def plan_publish(
        self, member_id: int, name: str, client_urls: list[str], nonce: int
    ) -> ConfChange | None:
        """The change that records our name and client URLs, or None if the table has them."""
        member = self.members.get(member_id)
        if member is None or (member.name == name and member.client_urls == client_urls):
            return None
        updated = dataclasses.replace(member, name=name, client_urls=list(client_urls))
        return self._change(ConfChangeType.UPDATE_NODE, updated, nonce)

    def _get(self, member_id: int) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise EtcdzError(ErrorCode.MEMBER_NOT_FOUND)
        return member

    @staticmethod
    def _change(kind: ConfChangeType, member: Member, request_id: int, auto: bool = False) -> ConfChange:
        context = encode(MemberChange(request_id=request_id, member=member, auto=auto))
        return ConfChange(type=kind, node_id=member.id, context=context)


def bootstrap_changes(initial: dict[int, tuple[str, list[str]]]) -> list[ConfChange]:
    """The conf changes a new cluster starts from (entries 1..n of every member's log, equal on
    every member because they are computed from the same ``--initial-cluster``)."""
    return [
        MemberTable._change(ConfChangeType.ADD_NODE, Member(id=i, name=name, peer_urls=sorted(urls)), 0)
        for i, (name, urls) in sorted(initial.items())
    ]


class MembershipLog:
    """The member table as of each index since the oldest one still needed."""

    def __init__(self, index: int, table: Membership) -> None:
        self._history: list[tuple[int, Membership]] = [(index, table)]

    def record(self, index: int, table: Membership) -> None:
        self._history.append((index, table))

    def at(self, index: int) -> Membership:
        found = self._history[0][1]
        for i, table in self._history:
            if i > index:
                break
            found = table
        return found

    def forget_before(self, index: int) -> None:
        """Drop tables no longer needed to describe any index >= ``index``."""
        while len(self._history) > 1 and self._history[1][0] <= index:
            self._history.pop(0)

    def encode_at(self, index: int) -> bytes:
        return encode(self.at(index))
