"""Run by test_grpc_api.py's python-etcd3 test in a virtualenv of its own (python-etcd3
pins an old protobuf): put/get/txn/watch/lease/lock against one gRPC endpoint, printing
what it saw as JSON for the test to check. Not collected by pytest (no test_ prefix)."""

import json
import sys
import threading

import etcd3

host, port = sys.argv[1], int(sys.argv[2])
client = etcd3.client(host=host, port=port, timeout=10)
seen: dict[str, object] = {}
client.put("/py/a", "1")
value, meta = client.get("/py/a")
seen["get"] = [value.decode(), meta.key.decode(), meta.version]
seen["prefix"] = sorted(m.key.decode() for _, m in client.get_prefix("/py/"))
ok, responses = client.transaction(
    compare=[client.transactions.value("/py/a") == "1"],
    success=[client.transactions.put("/py/b", "2")],
    failure=[client.transactions.get("/py/a")],
)
seen["txn"] = ok
events, cancel = client.watch_prefix("/py/w/")
got: list[tuple[str, str, str]] = []


def consume() -> None:
    for event in events:
        got.append((type(event).__name__, event.key.decode(), event.value.decode()))
        if len(got) == 2:
            break


reader = threading.Thread(target=consume)
reader.start()
client.put("/py/w/1", "x")
client.delete("/py/w/1")
reader.join(20)
cancel()
seen["watch"] = got
lease = client.lease(30)
client.put("/py/leased", "v", lease=lease)
seen["lease_ttl"] = 0 < lease.remaining_ttl <= 30
seen["lease_keys"] = [k.decode() for k in lease.keys]
lease.refresh()
lease.revoke()
seen["after_revoke"] = client.get("/py/leased")[0]
lock = client.lock("py-lock", ttl=10)
seen["lock"] = [lock.acquire(timeout=10), lock.is_acquired()]
lock.release()
seen["unlocked"] = lock.is_acquired()
print(json.dumps(seen))
