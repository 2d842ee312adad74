"""The leases the backend holds: which exist (with granted and checkpointed TTLs) and which keys
each one carries, kept in memory and staged into the apply batch's LevelDB write.

Rules (etcd's lessor, the applied half of it):
- A lease exists from its grant until its revoke; a put naming a lease that does not exist
  fails with ``etcdserver: requested lease not found`` (checked before the txn writes anything).
- A put attaches its key to its lease and detaches it from the lease it had; a put without a
  lease and a delete detach. Revoking a lease deletes its keys in one revision (one txn), so
  watchers see them go together.
- Deadlines are not here: they belong to the leader's lease expirer. The backend only records
  granted TTLs and checkpointed remaining TTLs, from which the expirer is rebuilt at start.
"""

from __future__ import annotations

from typing import Any

from actors.mvcc import keys as K
from proto_schemas.lease import LeaseEvent


class LeaseTable:
    def __init__(self, db: Any) -> None:
        self.leases: dict[int, tuple[int, int]] = {}  # id -> (ttl, remaining)
        self.keys: dict[int, set[bytes]] = {}
        for raw_key, raw in db.iterator(start=K.LEASE, stop=K.LEASE_END):
            self.leases[K.bytes_int(raw_key[1:])] = K.unpack_lease(raw)
        for akey in db.iterator(start=K.ATTACH, stop=K.ATTACH_END, include_value=False):
            lease_id, key = K.split_attach_key(akey)
            self.keys.setdefault(lease_id, set()).add(key)
        self.events: list[LeaseEvent] = []

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def grant(self, wb: Any, lease_id: int, ttl: int) -> None:
        self.leases[lease_id] = (ttl, 0)
        wb.put(K.lease_key(lease_id), K.pack_lease(ttl, 0))
        self.events.append(LeaseEvent(id=lease_id, ttl=ttl))

    def checkpoint(self, wb: Any, lease_id: int, remaining: int) -> None:
        if lease_id not in self.leases:
            return  # revoked meanwhile: nothing to remember
        ttl = self.leases[lease_id][0]
        self.leases[lease_id] = (ttl, remaining)
        wb.put(K.lease_key(lease_id), K.pack_lease(ttl, remaining))
        self.events.append(LeaseEvent(id=lease_id, ttl=ttl, remaining=remaining, checkpointed=True))

    def revoke(self, wb: Any, lease_id: int) -> list[bytes]:
        """Forget the lease; returns its keys, sorted (the caller deletes them)."""
        del self.leases[lease_id]
        wb.delete(K.lease_key(lease_id))
        keys = sorted(self.keys.pop(lease_id, set()))
        for key in keys:
            wb.delete(K.attach_key(lease_id, key))
        self.events.append(LeaseEvent(id=lease_id, revoked=True))
        return keys

    def move(self, wb: Any, key: bytes, old: int, new: int) -> None:
        """``key`` now carries lease ``new`` (0: none) instead of ``old`` (0: none)."""
        if old == new:
            return
        if old:
            self.keys.get(old, set()).discard(key)
            wb.delete(K.attach_key(old, key))
        if new:
            self.keys.setdefault(new, set()).add(key)
            wb.put(K.attach_key(new, key), b"")

    def take_events(self) -> list[LeaseEvent]:
        events, self.events = self.events, []
        return events
