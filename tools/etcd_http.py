"""A small client of a real etcd's JSON gateway (etcd 3.4: ``POST /v3/...``), so the benchmark
drives etcd and etcdz with Python clients of the same cost.

    with EtcdHTTPClient("http://127.0.0.1:2379") as c:
        c.put(b"k", b"v")
        lease_id = c.lease_grant(60)
        c.lease_keep_alive_once(lease_id)

Rules of the gateway it follows:

- one keep-alive HTTP/1.1 connection per client, opened on first use and again after a failure;
  like the SDK's ``Client``, calls are serialised by a lock, so threads may share one client;
- keys and values travel base64-encoded, and int64 fields come back as JSON strings;
- an error answers with a non-200 status and ``{"error", "message", "code"}``; a streamed RPC
  (lease keep-alive) answers 200 with ``{"result": ...}`` or ``{"error": ...}``. Either way
  ``EtcdHTTPError`` is raised, as it is when the connection fails (then ``status`` is 0 and
  the request may have happened);
- a keep-alive answered with TTL 0 raises as etcd's ``KeepAliveOnce`` does: the lease is gone.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

LEASE_NOT_FOUND = "etcdserver: requested lease not found"


class EtcdHTTPError(Exception):
    """etcd refused a request (``status`` and gRPC ``code`` as the gateway gave them), or the
    connection failed (``status`` 0)."""

    def __init__(self, message: str, *, status: int = 0, code: int = 0) -> None:
        self.message = message
        self.status = status
        self.code = code
        super().__init__(message)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _put(key: bytes, value: bytes) -> dict[str, str]:
    return {"key": _b64(key), "value": _b64(value)}


class EtcdHTTPClient:
    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        """``endpoint``: ``http://host:port``, an etcd client URL."""
        url = urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"an etcd endpoint is http://host:port, not {endpoint!r}")
        self.endpoint = endpoint
        self._conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        self._lock = threading.Lock()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                self._conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                response = self._conn.getresponse()
                status, data = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()  # the next request opens a fresh connection
                raise EtcdHTTPError(f"{path}: {exc!r}") from exc
        try:
            answer = json.loads(data)
        except ValueError:
            raise EtcdHTTPError(f"{path}: not JSON: {data[:200]!r}", status=status) from None
        error = answer.get("error") if isinstance(answer, dict) else None
        if status != 200 or error is not None:
            if isinstance(error, dict):  # a streamed RPC's error
                answer = error
            message = answer.get("message") or answer.get("error") or f"HTTP {status}"
            raise EtcdHTTPError(str(message), status=status, code=int(answer.get("code", 0)))
        return answer

    def put(self, key: bytes, value: bytes) -> dict[str, Any]:
        return self._post("/v3/kv/put", _put(key, value))

    def get(self, key: bytes, *, range_end: bytes = b"", serializable: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(key), "serializable": serializable}
        if range_end:
            body["range_end"] = _b64(range_end)
        return self._post("/v3/kv/range", body)

    def txn_put(self, pairs: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """A txn with no compares whose success branch puts every (key, value) of ``pairs``."""
        return self._post("/v3/kv/txn", {"success": [{"request_put": _put(k, v)} for k, v in pairs]})

    def cas(self, key: bytes, mod_revision: int, value: bytes) -> int:
        """Put ``value`` if ``key``'s mod revision is ``mod_revision``, else read it: the key's
        mod revision afterwards (0: it does not exist)."""
        compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}
        answer = self._post(
            "/v3/kv/txn",
            {
                "compare": [compare],
                "success": [{"request_put": _put(key, value)}],
                "failure": [{"request_range": {"key": _b64(key)}}],
            },
        )
        if answer.get("succeeded"):
            return int(answer["header"]["revision"])
        kvs = answer["responses"][0]["response_range"].get("kvs", [])
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def lease_grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        return int(self._post("/v3/lease/grant", {"TTL": ttl})["ID"])

    def lease_keep_alive_once(self, lease_id: int) -> int:
        """Renew the lease once; the TTL it was renewed for."""
        result = self._post("/v3/lease/keepalive", {"ID": str(lease_id)}).get("result", {})
        ttl = int(result.get("TTL", 0))
        if ttl <= 0:
            raise EtcdHTTPError(LEASE_NOT_FOUND, status=200, code=5)
        return ttl

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EtcdHTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
