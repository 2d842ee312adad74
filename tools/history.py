"""A history recorder: concurrent SDK clients issue puts, linearizable gets, deletes,
compare-and-swap txns and lease puts/revokes on a small key space, and every call is recorded
with its invoke and return times (``tools.linearizability.Op``) for the checker.

A call that fails definitely (the cluster says it did not happen) is left out; one whose outcome
is unknown (a timeout after the request was sent) is recorded without a return: it may have
taken effect at any time after its invoke, or never.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from typing import Any

from etcdz import Client, ops
from etcdz.errors import EtcdzError
from proto_schemas.lease import LeaseRevokeRequest
from tools.linearizability import Op

LEASE_TTL = 600  # leases outlive any run: only revokes end them


class Recorder:
    """``clients`` threads, each with its own SDK client (spread over the endpoints), issuing
    random operations on ``keys`` keys until ``stop()``."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        clients: int = 4,
        keys: int = 4,
        seed: int = 0,
        timeout: float = 2.0,
        prefix: str = "/lin/",
        leases: bool = True,
        pinned: bool = False,
        readers: int = 0,
    ) -> None:
        """``pinned``: each client talks to one endpoint only (client i to endpoint i mod n),
        so that a member cut off from the others keeps its clients. The first ``readers``
        clients only read: a writer waits out a write its member cannot commit, a reader goes
        on reading there meanwhile."""
        self.endpoints = endpoints
        self.keys = [f"{prefix}{k}" for k in range(keys)]
        self.timeout = timeout
        self.leases = leases
        self.pinned = pinned
        self.readers = readers
        self.ops: list[Op] = []
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i, random.Random(f"{seed}/{i}")), daemon=True)
            for i in range(clients)
        ]

    def start(self) -> Recorder:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Op]:
        """Stop the clients (each finishes its call in flight) and return the history."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout * 3 + 5)
        with self._lock:
            return list(self.ops)

    def _client(self, index: int, rng: random.Random) -> None:
        first = index % len(self.endpoints)
        endpoints = (
            [self.endpoints[first]] if self.pinned else self.endpoints[first:] + self.endpoints[:first]
        )
        leased: list[tuple[int, str, str]] = []  # (lease, key, value) granted by this client
        with Client(endpoints, timeout=self.timeout) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                value = f"c{index}-{n}"
                key = rng.choice(self.keys)
                kinds = ["put", "get", "get", "delete", "cas"]
                if index < self.readers:
                    kinds = ["get"]
                elif self.leases:
                    kinds += ["lease-put"] + (["revoke"] if leased else [])
                kind = rng.choice(kinds)
                if kind == "revoke":
                    lease, key, value = leased.pop(rng.randrange(len(leased)))
                    self._call(client, Op(index, "revoke", key, 0, value=value), LeaseRevokeRequest(id=lease))
                elif kind == "lease-put":
                    try:
                        lease = client.lease_grant(LEASE_TTL).id
                    except EtcdzError as exc:
                        self._count(exc)
                        continue
                    leased.append((lease, key, value))
                    self._call(
                        client, Op(index, "put", key, 0, value=value), ops.put(key, value, lease=lease)
                    )
                elif kind == "put":
                    self._call(client, Op(index, "put", key, 0, value=value), ops.put(key, value))
                elif kind == "get":
                    self._call(client, Op(index, "get", key, 0), ops.get(key))
                elif kind == "delete":
                    self._call(client, Op(index, "delete", key, 0), ops.delete(key))
                else:
                    expect = self._expectation(key, rng)
                    compare = ops.CreateRevision(key) == 0 if expect is None else ops.Value(key) == expect
                    cas = Op(index, "cas", key, 0, value=value, expect=expect)
                    self._call(client, cas, ops.txn([compare], [ops.put(key, value)]))

    def _expectation(self, key: str, rng: random.Random) -> str | None:
        """The value a CAS compares with: the key's latest value seen, now and then none."""
        with self._lock:
            recent = [op for op in self.ops[-50:] if op.key == key and op.known]
        if rng.random() < 0.2:
            return None
        for op in reversed(recent):
            if op.kind == "get":
                return op.found
            if op.kind == "put" or (op.kind == "cas" and op.succeeded):
                return op.value
        return None

    def _call(self, client: Client, call: Op, request: object) -> None:
        """Send ``request`` and record ``call`` (inputs only) with its times and outputs."""
        invoke = time.monotonic()
        try:
            resp = client.call(request)
        except EtcdzError as exc:
            self._count(exc)
            if not exc.definite:
                self._record(replace(call, invoke=invoke))
            return
        outputs: dict[str, Any] = {
            "invoke": invoke,
            "ret": time.monotonic(),
            "revision": resp.header.revision,
        }
        if call.kind == "get":
            kv = resp.kvs[0] if resp.kvs else None
            outputs.update(found=kv.value.decode() if kv else None, mod_revision=kv.mod_revision if kv else 0)
        elif call.kind == "delete":
            outputs["deleted"] = resp.deleted
        elif call.kind == "cas":
            outputs["succeeded"] = resp.succeeded
        self._record(replace(call, **outputs))

    def _record(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def _count(self, exc: EtcdzError) -> None:
        with self._lock:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
