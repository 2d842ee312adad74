"""The etcdz client SDK.

from etcdz import Client, Value, ops
with Client(["tcp://127.0.0.1:2379"]) as client:
    client.put("/config/a", "1")
    client.transaction().when(Value("/config/a") == "1").then(ops.put("/config/b", "2")).commit()

The names below are loaded when first used (PEP 562), not when the package is imported: every
``etcdzctl`` call imports this package, and a command should pay only for the modules it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etcdz import errors, ops
    from etcdz.client import Client, Txn
    from etcdz.errors import EtcdzError
    from etcdz.lease import KeptLease
    from etcdz.ops import CreateRevision, LeaseId, ModRevision, Value, Version
    from etcdz.session import Session

_WHERE = {
    "Client": "etcdz.client",
    "Txn": "etcdz.client",
    "EtcdzError": "etcdz.errors",
    "KeptLease": "etcdz.lease",
    "Session": "etcdz.session",
    "CreateRevision": "etcdz.ops",
    "LeaseId": "etcdz.ops",
    "ModRevision": "etcdz.ops",
    "Value": "etcdz.ops",
    "Version": "etcdz.ops",
}
_MODULES = {
    "errors",
    "ops",
    "snapshot",
    "watcher",
    "aio",
    "auth",
    "lease",
    "session",
    "client",
    "concurrency",
    "aio_concurrency",
}

__all__ = [
    "Client",
    "CreateRevision",
    "EtcdzError",
    "KeptLease",
    "LeaseId",
    "ModRevision",
    "Session",
    "Txn",
    "Value",
    "Version",
    "errors",
    "ops",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"etcdz.{name}")
    else:
        raise AttributeError(f"module 'etcdz' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
