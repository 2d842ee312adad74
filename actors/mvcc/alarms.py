"""The raised alarms, kept in memory and staged into the apply batch's LevelDB write, and the
writes they stop (etcd's capped and corrupt appliers).

Rules:
- An alarm is (member id, type); raising one that is raised, or clearing one that is not,
  changes nothing. They survive restarts and snapshots (they live in the backend).
- NOSPACE stops what makes the backend grow: puts, txns with a put in either branch, lease
  grants (``etcdserver: mvcc: database space exceeded``). Deletes, compaction and reads go on,
  so an operator can make room.
- CORRUPT stops every write, read-only txns included (``etcdserver: corrupt cluster``): a
  member whose data differs must not take part until an operator acts.
"""

from __future__ import annotations

from typing import Any

from actors.mvcc import keys as K
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.kv import WRITE_REQUESTS, PutRequest, TxnRequest
from proto_schemas.lease import LeaseGrantRequest, LeaseRevokeRequest
from proto_schemas.maintenance import AlarmMember, AlarmType

_CORRUPT_STOPS = (*WRITE_REQUESTS, LeaseGrantRequest, LeaseRevokeRequest)


class AlarmTable:
    def __init__(self, db: Any) -> None:
        self.raised: set[tuple[int, AlarmType]] = set()
        for akey in db.iterator(start=K.ALARM, stop=K.ALARM_END, include_value=False):
            member_id, alarm = K.split_alarm_key(akey)
            self.raised.add((member_id, AlarmType(alarm)))

    def activate(self, wb: Any, member_id: int, alarm: AlarmType) -> AlarmMember:
        if (member_id, alarm) not in self.raised:
            self.raised.add((member_id, alarm))
            wb.put(K.alarm_key(member_id, alarm), b"")
        return AlarmMember(member_id=member_id, alarm=alarm)

    def deactivate(self, wb: Any, member_id: int, alarm: AlarmType) -> AlarmMember | None:
        if (member_id, alarm) not in self.raised:
            return None
        self.raised.discard((member_id, alarm))
        wb.delete(K.alarm_key(member_id, alarm))
        return AlarmMember(member_id=member_id, alarm=alarm)

    def listed(self, alarm: AlarmType = AlarmType.NONE) -> list[AlarmMember]:
        return [
            AlarmMember(member_id=m, alarm=a)
            for m, a in sorted(self.raised)
            if alarm == AlarmType.NONE or a == alarm
        ]

    def check(self, request: Any) -> None:
        """Raise the error an alarm gives ``request``, if any."""
        if not self.raised:
            return
        kinds = {a for _, a in self.raised}
        if AlarmType.CORRUPT in kinds and isinstance(request, _CORRUPT_STOPS):
            raise EtcdzError(ErrorCode.CORRUPT)
        if AlarmType.NOSPACE in kinds and grows(request):
            raise EtcdzError(ErrorCode.NO_SPACE)


KV_OVERHEAD = 256  # etcd's estimate of a put's cost beyond its key and value
LEASE_OVERHEAD = 64


def quota_cost(request: Any) -> int:
    """What ``request`` may add to the backend, as etcd's quota estimates it (0: nothing)."""
    if isinstance(request, PutRequest):
        return KV_OVERHEAD + len(request.key) + len(request.value)
    if isinstance(request, LeaseGrantRequest):
        return LEASE_OVERHEAD
    if isinstance(request, TxnRequest):
        return max(
            sum(quota_cost(op) for op in request.success), sum(quota_cost(op) for op in request.failure)
        )
    return 0


def grows(request: Any) -> bool:
    """Whether ``request`` may add to the backend (what a full backend refuses)."""
    if isinstance(request, PutRequest | LeaseGrantRequest):
        return True
    if isinstance(request, TxnRequest):
        return any(grows(op) for op in (*request.success, *request.failure))
    return False
