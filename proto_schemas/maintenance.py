"""etcd's Maintenance API (rpc.proto) as etcdz messages (type ids 180-199): alarms,
defragmentation and snapshots of the backend.

Alarms are raft entries, applied by every member and kept in the backend, so every member
refuses the same writes while one is raised: NOSPACE (a member's backend passed the quota)
stops puts, txns that put and lease grants; CORRUPT (members' HashKV disagree) stops every
write. Defragment and Snapshot are answered by the member asked, from its own backend.
"""

from __future__ import annotations

import enum
from dataclasses import field

from proto_schemas.codec import message, wire
from proto_schemas.kv import ResponseHeader


class AlarmType(enum.IntEnum):
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


class AlarmAction(enum.IntEnum):
    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


@message(180)
@wire
class AlarmMember:
    member_id: int
    alarm: AlarmType


@message(181)
@wire
class AlarmRequest:
    """GET lists every raised alarm; ACTIVATE / DEACTIVATE raise or clear ``alarm`` for
    ``member_id``. All three go through raft, so a GET sees every alarm applied before it."""

    action: AlarmAction = AlarmAction.GET
    member_id: int = 0
    alarm: AlarmType = AlarmType.NONE


@message(182)
@wire
class AlarmResponse:
    header: ResponseHeader
    alarms: list[AlarmMember] = field(default_factory=list)


@message(183)
@wire
class DefragmentRequest:
    pass


@message(184)
@wire
class DefragmentResponse:
    """``db_size_before`` / ``db_size_after``: what the defragmentation reclaimed (etcdz's
    addition to etcd's response)."""

    header: ResponseHeader
    db_size_before: int = 0
    db_size_after: int = 0


@message(185)
@wire
class SnapshotRequest:
    """A point-in-time copy of the member's backend, one piece per request (so neither side
    holds it whole): ``snap_id`` 0 opens a new copy, later requests name it and the next
    ``seq``. A copy left unread for a while is closed by the member."""

    snap_id: int = 0
    seq: int = 0


@message(186)
@wire
class SnapshotResponse:
    """Piece ``seq`` of copy ``snap_id``: backend records as key, value, key, value, ...;
    ``done`` on the last. ``revision`` and ``consistent_index`` are the copy's."""

    header: ResponseHeader
    snap_id: int = 0
    seq: int = 0
    pairs: list[bytes] = field(default_factory=list)
    done: bool = False
    revision: int = 0
    compact_revision: int = 0
    consistent_index: int = 0


@message(187)
@wire
class SnapshotFileHeader:
    """The first item of a snapshot file: where the copy stands."""

    revision: int = 0
    compact_revision: int = 0
    consistent_index: int = 0
    cluster_id: int = 0
    member_id: int = 0
