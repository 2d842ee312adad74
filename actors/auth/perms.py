"""What a request needs, and whether a user's roles grant it (etcd's range permission checks).

Rules (etcd's auth store):
- A permission covers one key (``range_end`` empty), the keys in [key, range_end), or every key
  from ``key`` on (``range_end`` b"\\0"). READWRITE counts as both READ and WRITE.
- A request on [key, range_end) is permitted when the union of the user's permissions of the
  needed type covers the whole interval; a single key when one permission contains it. A range
  from a key on (``range_end`` b"\\0") needs an open-ended permission beneath it.
- The root role may do anything. Administration (the auth API, compaction, defragmentation,
  snapshots, hash checks, raising or clearing alarms, membership changes, and what watch hubs
  ask of members) needs it.
- A txn needs read on every compare and every range, write on every put and delete, in both
  branches whatever the compares decide (as etcd: the outcome must not leak through an error).
- A streamed range's chunk reads from its ``resume_key``: that interval is needed too, so a
  resume key outside the range (refused at the gateway anyway) never widens what is read.
- Leases (etcd's checkLeasePuts, CVE-2023-32082): revoking a lease or attaching a key to it
  needs write permission on every key the lease holds already, and a time-to-live with keys
  read permission on every key it lists. Only the backend knows a lease's keys, so
  ``leases_touched`` names the leases whose keys the applier checks, and ``lease_keys_read``
  what a time-to-live answer's keys need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from proto_schemas.auth import (
    AUTH_REQUESTS,
    ROOT,
    AuthCheckRequest,
    AuthenticateRequest,
    AuthStatusRequest,
    Permission,
    PermissionType,
    RoleRecord,
)
from proto_schemas.cluster import CLUSTER_CHANGES, MemberListRequest
from proto_schemas.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    HashKVRequest,
    PutRequest,
    RangeRequest,
    RangeStreamRequest,
    StatusRequest,
    TxnRequest,
)
from proto_schemas.lease import LeaseRevokeRequest
from proto_schemas.maintenance import AlarmAction, AlarmRequest, DefragmentRequest, SnapshotRequest
from proto_schemas.watch import HubAnnounce, WatchHistoryRequest, WatchHubsRequest

OPEN_ENDED = b"\0"


@dataclass(frozen=True, slots=True)
class Need:
    """A key interval a request touches and how (``write`` False: read)."""

    key: bytes
    range_end: bytes
    write: bool


class Admin:
    """The root role is needed."""


class Anyone:
    """Nothing is needed, not even a token (status, the login itself)."""


ADMIN = Admin()
ANYONE = Anyone()
Needs = list[Need] | Admin | Anyone

_ADMIN_ONLY = (
    CompactionRequest,
    DefragmentRequest,
    SnapshotRequest,
    HashKVRequest,
    HubAnnounce,
    WatchHistoryRequest,
    *CLUSTER_CHANGES,
)
_OPEN = (
    StatusRequest,
    AuthenticateRequest,
    AuthStatusRequest,
    AuthCheckRequest,
    WatchHubsRequest,
    MemberListRequest,
)


def needs(request: Any) -> Needs:
    """What ``request`` needs once auth is enabled; ``[]``: any authenticated user may."""
    if isinstance(request, _OPEN):
        return ANYONE
    if isinstance(request, AlarmRequest):
        return ADMIN if request.action != AlarmAction.GET else []
    if isinstance(request, _ADMIN_ONLY + AUTH_REQUESTS):
        return ADMIN
    out: list[Need] = []
    _collect(request, out)
    return out


def _collect(request: Any, out: list[Need]) -> None:
    if isinstance(request, RangeStreamRequest):
        r = request.range
        out.append(Need(r.key, r.range_end, False))
        if request.resume_key:  # what this chunk actually reads, up to the range's end
            out.append(Need(request.resume_key, r.range_end or r.key + b"\0", False))
    elif isinstance(request, RangeRequest):
        out.append(Need(request.key, request.range_end, False))
    elif isinstance(request, PutRequest):
        out.append(Need(request.key, b"", True))
        if request.prev_kv:
            out.append(Need(request.key, b"", False))
    elif isinstance(request, DeleteRangeRequest):
        out.append(Need(request.key, request.range_end, True))
        if request.prev_kv:
            out.append(Need(request.key, request.range_end, False))
    elif isinstance(request, TxnRequest):
        out.extend(Need(c.key, c.range_end, False) for c in request.compare)
        for op in (*request.success, *request.failure):
            _collect(op, out)


def leases_touched(request: Any) -> list[int]:
    """The leases ``request`` revokes or attaches a key to (puts in both branches of a txn, as
    its other needs): the user must be allowed to write every key they hold."""
    if isinstance(request, LeaseRevokeRequest):
        return [request.id]
    if isinstance(request, PutRequest):
        return [request.lease] if request.lease else []
    if isinstance(request, TxnRequest):
        return [lease for op in (*request.success, *request.failure) for lease in leases_touched(op)]
    return []


def lease_keys_write(keys: Iterable[bytes]) -> list[Need]:
    """What revoking a lease holding ``keys``, or attaching a key to it, needs."""
    return [Need(key, b"", True) for key in sorted(keys)]


def lease_keys_read(keys: Iterable[bytes]) -> list[Need]:
    """What being told a lease's ``keys`` (a time-to-live with keys) needs."""
    return [Need(key, b"", False) for key in keys]


class Grants:
    """One user's permissions, merged over their roles (built once per auth revision)."""

    def __init__(self, roles: Iterable[RoleRecord], names: Iterable[str]) -> None:
        by_name = {r.name: r for r in roles}
        self.root = ROOT in names
        perms = [p for name in names if name in by_name for p in by_name[name].perms]
        self._read = _merge(p for p in perms if p.perm_type != PermissionType.WRITE)
        self._write = _merge(p for p in perms if p.perm_type != PermissionType.READ)

    def allows(self, need: Need) -> bool:
        if self.root:
            return True
        return _covers(self._write if need.write else self._read, need.key, need.range_end)

    def allows_all(self, wanted: Needs) -> bool:
        if isinstance(wanted, Anyone):
            return True
        if isinstance(wanted, Admin):
            return self.root
        return all(self.allows(n) for n in wanted)


# An interval is (start, end) with end None for "no end"; a single key k is [k, k + b"\0").
_Interval = tuple[bytes, bytes | None]


def _interval(key: bytes, range_end: bytes) -> _Interval:
    if not range_end:
        return key, key + b"\0"
    if range_end == OPEN_ENDED:
        return key, None
    return key, range_end


def _merge(perms: Iterable[Permission]) -> list[_Interval]:
    """Disjoint, sorted intervals covering the same keys as ``perms``."""
    merged: list[_Interval] = []
    for start, end in sorted((_interval(p.key, p.range_end) for p in perms), key=lambda i: i[0]):
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None or start <= last_end:
                merged[-1] = (last_start, None if last_end is None or end is None else max(last_end, end))
                continue
        merged.append((start, end))
    return merged


def _covers(intervals: list[_Interval], key: bytes, range_end: bytes) -> bool:
    start, end = _interval(key, range_end)
    if end is not None and end <= start:
        return False  # a backwards range names no key; refused rather than guessed at
    for low, high in intervals:
        if low <= start and (high is None or (end is not None and end <= high)):
            return True
    return False
