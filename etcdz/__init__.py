"""The etcdz client SDK.

from etcdz import Client, Value, ops
with Client(["tcp://127.0.0.1:2379"]) as client:
    client.put("/config/a", "1")
    client.transaction().when(Value("/config/a") == "1").then(ops.put("/config/b", "2")).commit()
"""

from etcdz import errors, ops
from etcdz.client import Client, Txn
from etcdz.errors import EtcdzError
from etcdz.lease import KeptLease, Session
from etcdz.ops import CreateRevision, LeaseId, ModRevision, Value, Version

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
