"""etcd's gRPC API at the gRPC door, beyond etcdctl (tests/actors/test_conformance.py): a
Python etcd client from the package index, and bad input -- malformed and mutated protobuf to
every RPC, unknown RPCs, oversize messages, streams that never read or vanish mid-stream. Each
gets a clear status, and the door keeps serving (the same process: the supervisor logged no
death of the gateway, which runs the member's door)."""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from proto_schemas.etcdpb import rpc_pb2, rpc_pb2_grpc
from tools.cluster import LocalCluster, free_port, running

SERVICES = rpc_pb2.DESCRIPTOR.services_by_name
MAX_STREAMS = 30  # the door's bound on watch streams here (from --max-watch-streams)
ROOT = Path(__file__).resolve().parents[2]
# python-etcd3 pins a protobuf older than etcdz's: it lives in a virtualenv of its own
# (`make etcd3-venv`; .ci/run makes it).
ETCD3_PYTHON = os.environ.get("ETCDZ_ETCD3_PYTHON") or str(ROOT / ".venv-etcd3" / "bin" / "python")


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, grpc.Channel]]:
    root = str(tmp_path_factory.mktemp("grpc-bad"))
    with running(root, 1, grpc=True, extra_args=["--max-watch-streams", str(MAX_STREAMS)]) as cluster:
        url = cluster.members[0].grpc_url.removeprefix("http://")
        channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", 8 << 20)])
        grpc.channel_ready_future(channel).result(timeout=30)
        yield cluster, channel
        channel.close()


def door_deaths(cluster: LocalCluster) -> list[str]:
    """The supervisor's log lines about the door's process (the member's gateway) dying: it
    restarts a dead actor, so a crash would be hidden from the client but not from this log."""
    member = cluster.members[0]
    with open(member.log_path or "", encoding="utf-8") as f:
        return [line for line in f if '"actor": "gateway"' in line and "died" in line]


def raw_unary(channel: grpc.Channel, service: str, method: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(f"/etcdserverpb.{service}/{method}")


def call(
    channel: grpc.Channel, service: str, method: str, body: bytes, timeout: float = 10
) -> grpc.StatusCode:
    """Send ``body`` to any RPC (streams get it as their one request): the status it ends with."""
    desc = SERVICES[service].methods_by_name[method]
    path = f"/etcdserverpb.{service}/{method}"
    try:
        if desc.client_streaming:
            stream = channel.stream_stream(path)(iter([body]), timeout=timeout)
            for _ in stream:
                pass
        elif desc.server_streaming:
            for _ in channel.unary_stream(path)(body, timeout=timeout):
                pass
        else:
            raw_unary(channel, service, method)(body, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def wait_for_a_free_stream_place(channel: grpc.Channel, limit_s: float = 30.0) -> None:
    """Until a new watch stream is created (refusals with RESOURCE_EXHAUSTED meanwhile)."""
    watch = channel.stream_stream("/etcdserverpb.Watch/Watch")
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"free/"))
    deadline = time.monotonic() + limit_s
    while True:
        stream = watch(iter([create.SerializeToString()]), timeout=10)
        try:
            assert rpc_pb2.WatchResponse.FromString(next(stream)).created
            return
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.5)
        finally:
            stream.cancel()


def serving(channel: grpc.Channel) -> bool:
    stub = raw_unary(channel, "KV", "Range")
    reply = rpc_pb2.RangeResponse.FromString(
        stub(rpc_pb2.RangeRequest(key=b"x").SerializeToString(), timeout=10)
    )
    return reply.header.cluster_id != 0


ALL_METHODS = [(s, m.name) for s, d in SERVICES.items() for m in d.methods]


def test_malformed_protobuf_to_every_rpc_is_grpc_gos_internal_status(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    cluster, channel = door
    for service, method in ALL_METHODS:
        if method == "Downgrade":
            continue
        code = call(channel, service, method, b"\xff\xff\xff\xff")
        assert code == grpc.StatusCode.INTERNAL, f"{service}.{method}: {code}"
    assert serving(channel)
    assert door_deaths(cluster) == []


def test_malformed_message_text_says_what_was_wrong(door: tuple[LocalCluster, grpc.Channel]) -> None:
    _, channel = door
    with pytest.raises(grpc.RpcError) as caught:
        raw_unary(channel, "KV", "Put")(b"\x0a\x05ab", timeout=10)  # a key of 5 bytes, 2 sent
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details().startswith("grpc: error unmarshalling request")


def test_wrong_field_types_are_unknown_fields_as_in_etcd(door: tuple[LocalCluster, grpc.Channel]) -> None:
    """``key`` (bytes) sent as a varint: protobuf keeps it as an unknown field, so the request
    has no key, and etcd's answer to that is its own."""
    _, channel = door
    with pytest.raises(grpc.RpcError) as caught:
        raw_unary(channel, "KV", "Put")(b"\x08\x01", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "etcdserver: key is not provided"


@pytest.mark.parametrize(
    "path", ["/etcdserverpb.KV/Nope", "/etcdserverpb.Nope/Range", "/etcdserverpb.Maintenance/Downgrade"]
)
def test_unknown_rpcs_are_unimplemented(door: tuple[LocalCluster, grpc.Channel], path: str) -> None:
    _, channel = door
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(path)(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_oversize_messages_get_etcds_statuses(door: tuple[LocalCluster, grpc.Channel]) -> None:
    """Over --max-request-bytes: etcd's ``request is too large``; over that plus gRPC's
    overhead allowance: grpc's own ``RESOURCE_EXHAUSTED`` (as etcd's grpc-go server says)."""
    _, channel = door
    put = raw_unary(channel, "KV", "Put")
    big = rpc_pb2.PutRequest(key=b"big", value=b"v" * (1536 * 1024 + 10)).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        put(big, timeout=10)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    )
    huge = rpc_pb2.PutRequest(key=b"huge", value=b"v" * (4 << 20)).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        put(huge, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert serving(channel)


def test_mutated_requests_to_every_unary_rpc_get_a_status(door: tuple[LocalCluster, grpc.Channel]) -> None:
    """Valid requests with bytes flipped, cut or appended: a status each (never UNKNOWN, the
    sign of an unhandled exception), and the door still serves. Writes are kept to a prefix
    and destructive calls (member changes, auth, leader moves, alarms) are left out."""
    _, channel = door
    rng = random.Random(23)
    seeds: dict[tuple[str, str], Message] = {
        ("KV", "Range"): rpc_pb2.RangeRequest(key=b"f/", range_end=b"f0", limit=3),
        ("KV", "Put"): rpc_pb2.PutRequest(key=b"f/a", value=b"1"),
        ("KV", "DeleteRange"): rpc_pb2.DeleteRangeRequest(key=b"f/a"),
        ("KV", "Txn"): rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"f/a", target=rpc_pb2.Compare.VERSION, version=1)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"f/b", value=b"2"))],
        ),
        ("Lease", "LeaseTimeToLive"): rpc_pb2.LeaseTimeToLiveRequest(ID=1234, keys=True),
        ("Lease", "LeaseLeases"): rpc_pb2.LeaseLeasesRequest(),
        ("Maintenance", "Status"): rpc_pb2.StatusRequest(),
        ("Maintenance", "HashKV"): rpc_pb2.HashKVRequest(revision=1),
        ("Cluster", "MemberList"): rpc_pb2.MemberListRequest(),
    }
    for (service, method), seed in seeds.items():
        good = seed.SerializeToString()
        for _ in range(25):
            data = bytearray(good)
            kind = rng.randrange(3)
            if kind == 0 and data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                data += rng.randbytes(rng.randrange(1, 12))
            code = call(channel, service, method, bytes(data))
            assert code != grpc.StatusCode.UNKNOWN, f"{service}.{method} {bytes(data)!r}"
    assert serving(channel)


def mutations(rng: random.Random, good: bytes, n: int) -> Iterator[bytes]:
    for _ in range(n):
        data = bytearray(good)
        if data and rng.random() < 0.5:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data += rng.randbytes(rng.randrange(1, 12))
        yield bytes(data)


def test_mutated_requests_to_the_streams_end_them_with_a_status(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """Watch and LeaseKeepAlive streams fed mutated requests, Snapshot a mutated request: each
    stream ends with a status of its own or runs until the client's deadline (a valid watch
    goes on), never UNKNOWN; the door still serves."""
    _, channel = door
    rng = random.Random(2323)
    seeds = {
        "Watch": rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b"m/", range_end=b"m0", prev_kv=True)
        ).SerializeToString(),
        "LeaseKeepAlive": rpc_pb2.LeaseKeepAliveRequest(ID=77).SerializeToString(),
    }
    for method, good in seeds.items():
        service = "Watch" if method == "Watch" else "Lease"
        for data in mutations(rng, good, 12):
            code = call(channel, service, method, data, timeout=1.0)
            assert code != grpc.StatusCode.UNKNOWN, f"{method} {data!r}"
    for data in mutations(rng, b"", 5):
        code = call(channel, "Maintenance", "Snapshot", data, timeout=10)
        assert code != grpc.StatusCode.UNKNOWN, f"Snapshot {data!r}"
    assert serving(channel)


def test_watch_streams_that_vanish_or_never_read_leave_the_door_serving(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    cluster, channel = door
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"s/", range_end=b"s0"))
    watch = channel.stream_stream("/etcdserverpb.Watch/Watch")
    # 25 streams of 4 watchers each that never read a response, while 300 writes go by
    idle = [watch(iter([create.SerializeToString()] * 4)) for _ in range(25)]
    put = raw_unary(channel, "KV", "Put")
    for i in range(300):
        put(rpc_pb2.PutRequest(key=b"s/%d" % (i % 7), value=b"x" * 1000).SerializeToString(), timeout=10)
    # a stream cancelled right after its watch was created, and one whose client half-closes
    # (as etcd's, the stream still answers)
    hold = threading.Event()

    def create_then_wait() -> Iterator[bytes]:
        yield create.SerializeToString()
        hold.wait(30)

    gone = watch(create_then_wait())
    assert rpc_pb2.WatchResponse.FromString(next(gone)).created
    gone.cancel()
    hold.set()
    closed = watch(iter([create.SerializeToString()]), timeout=30)
    assert rpc_pb2.WatchResponse.FromString(next(closed)).created
    closed.cancel()
    for stream in idle:
        stream.cancel()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not serving(channel):
        time.sleep(0.2)
    assert serving(channel)
    assert door_deaths(cluster) == []


def test_a_watch_stream_whose_hub_restarted_ends_as_unavailable_instead_of_going_silent(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """The member's hub dies and its supervisor starts it again: the watchers it held are gone,
    so the door ends the stream with UNAVAILABLE (etcd's clients then watch again from their
    last revision) rather than keeping it open with nothing behind it."""
    cluster, channel = door
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"hub-restart"))
    hold = threading.Event()

    def requests() -> Iterator[bytes]:
        yield create.SerializeToString()
        hold.wait(60)

    stream = channel.stream_stream("/etcdserverpb.Watch/Watch")(requests(), timeout=60)
    try:
        assert rpc_pb2.WatchResponse.FromString(next(stream)).created
        os.kill(cluster.members[0].actor_pids()["watch0"], 9)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:  # nothing is put: the stream may only end
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value.details()
    finally:
        hold.set()
        stream.cancel()


def test_etcdctl_watch_sees_every_event_across_a_restart_of_the_members_hub(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """etcd's own client end to end: ``etcdctl watch`` through the door, the member's hub
    killed and started again by its supervisor, a put: etcdctl prints it, none lost (the door
    ends the stream as UNAVAILABLE and clientv3 watches again from its last revision)."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        pytest.skip("etcdctl (etcd-client) not installed")
    cluster, _ = door
    member = cluster.members[0]
    ctl, env = [etcdctl, "--endpoints", member.grpc_url], {**os.environ, "ETCDCTL_API": "3"}

    def put(value: str) -> None:
        subprocess.run(
            [*ctl, "put", "hub-restart/k", value], env=env, check=True, capture_output=True, timeout=30
        )

    put("1")
    watch = subprocess.Popen(
        [*ctl, "watch", "hub-restart/k", "--rev", "1"], stdout=subprocess.PIPE, env=env, text=True
    )
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        for line in watch.stdout or []:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()

    def printed(value: str) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if lines.get(timeout=max(0.0, deadline - time.monotonic())) == value:
                    return True
            except queue.Empty:
                break
        return False

    try:
        assert printed("1")
        os.kill(member.actor_pids()["watch0"], 9)
        put("2")
        assert printed("2"), "etcdctl watch missed the put made after the hub restarted"
    finally:
        watch.kill()
        watch.wait(10)


def test_python_etcd3_put_get_txn_watch_lease_lock(door: tuple[LocalCluster, grpc.Channel]) -> None:
    if not os.path.exists(ETCD3_PYTHON):
        pytest.skip("python-etcd3's virtualenv is not there (make etcd3-venv)")
    cluster, _ = door
    host, port = cluster.members[0].grpc_url.removeprefix("http://").rsplit(":", 1)
    script = str(Path(__file__).with_name("etcd3_client_steps.py"))
    result = subprocess.run([ETCD3_PYTHON, script, host, port], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {
        "get": ["1", "/py/a", 1],
        "prefix": ["/py/a"],
        "txn": True,
        "watch": [["PutEvent", "/py/w/1", "x"], ["DeleteEvent", "/py/w/1", ""]],
        "lease_ttl": True,
        "lease_keys": ["/py/leased"],
        "after_revoke": None,
        "lock": [True, True],
        "unlocked": False,
    }


def test_a_standalone_door_serves_a_cluster_from_its_client_urls(
    door: tuple[LocalCluster, grpc.Channel], tmp_path: Path
) -> None:
    """``etcdz grpc-gateway --endpoints ...``: a door of its own, in front of the members."""
    cluster, _ = door
    url = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / "door.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "actors.supervisor",
            "grpc-gateway",
            "--endpoints",
            ",".join(cluster.endpoints),
            "--listen-grpc-urls",
            f"http://{url}",
        ],
        stderr=log,
    )
    try:
        channel = grpc.insecure_channel(url)
        grpc.channel_ready_future(channel).result(timeout=30)
        put = raw_unary(channel, "KV", "Put")
        put(rpc_pb2.PutRequest(key=b"standalone", value=b"1").SerializeToString(), timeout=10)
        got = rpc_pb2.RangeResponse.FromString(
            raw_unary(channel, "KV", "Range")(
                rpc_pb2.RangeRequest(key=b"standalone").SerializeToString(), timeout=10
            )
        )
        assert [kv.value for kv in got.kvs] == [b"1"]
        assert got.header.cluster_id != 0 and got.header.member_id == cluster.members[0].member_id
        create = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=b"standalone", start_revision=got.kvs[0].mod_revision
            )
        )
        stream = channel.stream_stream("/etcdserverpb.Watch/Watch")(
            iter([create.SerializeToString()]), timeout=30
        )
        first = rpc_pb2.WatchResponse.FromString(next(stream))
        assert first.created
        events = rpc_pb2.WatchResponse.FromString(next(stream)).events
        assert [(e.kv.key, e.kv.value) for e in events] == [(b"standalone", b"1")]
        stream.cancel()
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.parametrize("load", ["put", "range", "txn-put", "lease-keepalive"])
def test_the_benchmark_drives_the_door_over_grpc(door: tuple[LocalCluster, grpc.Channel], load: str) -> None:
    """``tools.bench --protocol grpc``: the same loads as through the SDK, none failing."""
    from tools.bench import measure, parse_args

    cluster, _ = door
    args = parse_args(
        [
            load,
            "--protocol",
            "grpc",
            "--endpoints",
            cluster.members[0].grpc_url,
            "--clients",
            "4",
            "--total",
            "40",
        ]
    )
    s = measure(args)
    assert (s["protocol"], s["errors"], s["requests"]) == ("grpc", {}, 40), s
    assert s["requests_per_s"] > 0


def test_watch_streams_past_the_bound_are_refused_with_resource_exhausted(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """``--max-watch-streams`` bounds the door's streams (and its hubs'); the places of ended
    streams are free again at once (their hub connections are reused), so streams opened and
    dropped over and over never fill it."""
    _, channel = door
    hold = threading.Event()
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"b/"))

    def create_then_wait() -> Iterator[bytes]:
        yield create.SerializeToString()
        hold.wait(90)

    watch = channel.stream_stream("/etcdserverpb.Watch/Watch")

    def open_all() -> tuple[list[Any], grpc.RpcError | None]:
        """Open streams until one is refused or all ``MAX_STREAMS`` are: (open ones, refusal)."""
        streams: list[Any] = []
        for _ in range(MAX_STREAMS + 1):
            stream = watch(create_then_wait(), timeout=90)
            try:
                assert rpc_pb2.WatchResponse.FromString(next(stream)).created
            except grpc.RpcError as exc:
                return streams, exc
            streams.append(stream)
        return streams, None

    streams: list[Any] = []
    deadline = time.monotonic() + 30  # a hub frees the place of a connection the earlier tests
    try:  # dropped (not reused) after its idle timeout
        while True:
            streams, refusal = open_all()
            if len(streams) == MAX_STREAMS or time.monotonic() > deadline:
                break
            for stream in streams:
                stream.cancel()
            time.sleep(1)
        for _ in range(3):  # the bound, three times over: each round's places are soon free
            assert len(streams) == MAX_STREAMS and refusal is not None  # (well within a hub's
            soon = time.monotonic() + 5  # 10 s idle timeout: the hub connections were reused)
            while True:
                for stream in streams:
                    stream.cancel()
                streams, refusal = open_all()
                if len(streams) == MAX_STREAMS or time.monotonic() > soon:
                    break
                time.sleep(0.2)
        assert len(streams) == MAX_STREAMS and refusal is not None
        assert (refusal.code(), refusal.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "etcdserver: too many requests",
        )
    finally:
        hold.set()
        for stream in streams:
            stream.cancel()
    assert serving(channel)


def test_every_response_header_carries_cluster_member_revision_and_term(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """As etcd's server fills every header, whichever actor answered (a lease keepalive comes
    from the lease expirer, a watch response from a hub): unary calls, the keepalive and watch
    streams, a snapshot's pieces. The Cluster service's headers carry no revision, as etcd's."""
    _, channel = door
    kv, lease = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.LeaseStub(channel)
    maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
    put = kv.Put(rpc_pb2.PutRequest(key=b"h/a", value=b"1"), timeout=10)
    granted = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10)
    answers: dict[str, Any] = {
        "Put": put,
        "Range": kv.Range(rpc_pb2.RangeRequest(key=b"h/a", serializable=True), timeout=10),
        "Txn": kv.Txn(
            rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"h/a"))]),
            timeout=10,
        ),
        "LeaseGrant": granted,
        "LeaseTimeToLive": lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID), timeout=10),
        "LeaseKeepAlive": next(
            lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)]), timeout=10)
        ),
        "LeaseKeepAlive of no lease": next(
            lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=7)]), timeout=10)
        ),
        "LeaseRevoke": lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), timeout=10),
        "Status": maintenance.Status(rpc_pb2.StatusRequest(), timeout=10),
        "Alarm": maintenance.Alarm(rpc_pb2.AlarmRequest(), timeout=10),
        "HashKV": maintenance.HashKV(rpc_pb2.HashKVRequest(), timeout=10),
        "Snapshot": next(maintenance.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30)),
    }
    hold = threading.Event()

    def create_then_progress() -> Iterator[rpc_pb2.WatchRequest]:
        create = rpc_pb2.WatchCreateRequest(key=b"h/a", start_revision=put.header.revision)
        yield rpc_pb2.WatchRequest(create_request=create)
        hold.wait(30)
        yield rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
        hold.wait(30)

    stream = rpc_pb2_grpc.WatchStub(channel).Watch(create_then_progress(), timeout=30)
    try:
        answers["Watch created"] = next(stream)
        answers["Watch events"] = next(stream)
        hold.set()
        answers["Watch progress"] = next(stream)
    finally:
        hold.set()
        stream.cancel()
    assert answers["Watch events"].events
    for name, answer in answers.items():
        h = answer.header
        assert h.cluster_id and h.member_id and h.revision and h.raft_term, f"{name}: {h}"
    members = rpc_pb2_grpc.ClusterStub(channel).MemberList(rpc_pb2.MemberListRequest(), timeout=10)
    h = members.header
    assert (bool(h.cluster_id), bool(h.member_id), h.revision, bool(h.raft_term)) == (True, True, 0, True)


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


# grpcio's asyncio client, when the door refused a stream while the client was still sending
# its first request: the client's own status for its failed send (grpc/aio/_call.py), not one
# the door sent. A stream refused.
CLIENT_LOST_RACE = "Internal error from Core"


MANY_STREAMS_CLIENT = """
import asyncio, collections, json, os, sys, grpc
from proto_schemas.etcdpb import rpc_pb2
create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"t/")).SerializeToString()
async def open_many(url, n):
    channel = grpc.aio.insecure_channel(url)
    hold = asyncio.Event()
    watch = channel.stream_stream("/etcdserverpb.Watch/Watch")
    async def requests():
        yield create
        await hold.wait()
    async def one():
        stream = watch(requests(), timeout=120)
        try:
            await stream.read()
            return "OK"  # created: it holds a place until its client goes
        except grpc.aio.AioRpcError as exc:
            return "RESOURCE_EXHAUSTED" if exc.details() == sys.argv[3] else exc.code().name
    return await asyncio.gather(*(one() for _ in range(n)))
codes = asyncio.new_event_loop().run_until_complete(open_many(sys.argv[1], int(sys.argv[2])))
print(json.dumps(collections.Counter(codes)), flush=True)
os._exit(0)  # the connection goes with the process: grpcio's asyncio teardown of 10,000 calls can hang
"""


def test_ten_thousand_streams_at_once_are_bounded_and_leave_the_door_serving(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """One client opens 10,000 watch streams at once: the door's bound holds (the streams past
    it get ``RESOURCE_EXHAUSTED``), the places of the streams of a client that went come back,
    and the gateway process that runs the door neither dies nor keeps what they cost."""
    cluster, channel = door
    gateway = cluster.members[0].actor_pids()["gateway"]
    before = resident_mib(gateway)
    url = cluster.members[0].grpc_url.removeprefix("http://")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", MANY_STREAMS_CLIENT, url, "10000", CLIENT_LOST_RACE],
        capture_output=True,
        env=env,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    created, refused = codes.get("OK", 0), codes.get("RESOURCE_EXHAUSTED", 0)
    assert 0 < created <= MAX_STREAMS and created + refused == 10_000, codes
    wait_for_a_free_stream_place(channel)  # the places of the client's streams come back
    assert serving(channel)
    assert door_deaths(cluster) == []
    assert resident_mib(gateway) - before < 150, (before, resident_mib(gateway))


VANISHING_CLIENT = """
import sys, threading, grpc
from proto_schemas.etcdpb import rpc_pb2
channel = grpc.insecure_channel(sys.argv[1])
hold = threading.Event()
def then_wait(first):
    yield first.SerializeToString()
    hold.wait()
create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"v/", prev_kv=True))
watches = [channel.stream_stream("/etcdserverpb.Watch/Watch")(then_wait(create)) for _ in range(3)]
for w in watches:
    assert rpc_pb2.WatchResponse.FromString(next(w)).created
grant = rpc_pb2.LeaseGrantRequest(TTL=60).SerializeToString()
lease = rpc_pb2.LeaseGrantResponse.FromString(channel.unary_unary("/etcdserverpb.Lease/LeaseGrant")(grant))
keepalive = rpc_pb2.LeaseKeepAliveRequest(ID=lease.ID)
keep = channel.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive")(then_wait(keepalive))
next(keep)
snapshot = rpc_pb2.SnapshotRequest().SerializeToString()
snap = channel.unary_stream("/etcdserverpb.Maintenance/Snapshot")(snapshot)
next(snap)
print("ready", flush=True)
hold.wait()
"""


def test_a_client_killed_mid_stream_leaves_the_door_serving(door: tuple[LocalCluster, grpc.Channel]) -> None:
    """A client process killed (its connection gone, no cancel sent) with watch, keepalive and
    snapshot streams open: the door ends them, frees their places and serves on."""
    cluster, channel = door
    url = cluster.members[0].grpc_url.removeprefix("http://")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", VANISHING_CLIENT, url], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            put = raw_unary(channel, "KV", "Put")
            for i in range(20):  # events for the dead client's watchers
                put(rpc_pb2.PutRequest(key=b"v/%d" % i, value=b"x" * 100).SerializeToString(), timeout=10)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    wait_for_a_free_stream_place(channel)  # the dead streams' places come back
    assert serving(channel)
    assert door_deaths(cluster) == []


def test_random_and_mutated_protobuf_to_every_rpc_gets_a_status(
    door: tuple[LocalCluster, grpc.Channel],
) -> None:
    """The fuzz test: random bytes, and valid empty requests with random fields appended, to
    every RPC of every service: each call ends with a status (never UNKNOWN, the sign of an
    unhandled exception), and the door serves on. Last in this module: a random request may
    raise an alarm or compact. MemberAdd is left out (a random peer URL that parses would add a
    member this single-member cluster cannot reach, and lose its quorum)."""
    cluster, channel = door
    rng = random.Random(2323)
    for service, method in ALL_METHODS:
        if method == "MemberAdd":
            continue
        streaming = SERVICES[service].methods_by_name[method].client_streaming
        for i in range(16):
            if i % 2:
                data = rng.randbytes(rng.randrange(0, 48))
            else:  # fields with random numbers and wire types after a valid (empty) request
                data = b"".join(
                    bytes([rng.randrange(1, 256) & ~0x80]) + rng.randbytes(rng.randrange(1, 6))
                    for _ in range(rng.randrange(1, 4))
                )
            code = call(channel, service, method, data, timeout=1.0 if streaming else 10)
            assert code != grpc.StatusCode.UNKNOWN, f"{service}.{method} {data!r}"
    assert serving(channel)
    assert door_deaths(cluster) == []


def test_the_door_serves_again_when_its_gateway_is_killed(door: tuple[LocalCluster, grpc.Channel]) -> None:
    """The door runs in the gateway's process: ``kill -9`` of it ends the door too, the
    supervisor restarts the gateway alone, and the door serves again on the same URL (the
    client's channel reconnects). Last in the module: the other tests check that the gateway
    never died."""
    import signal

    cluster, channel = door
    member = cluster.members[0]
    before = member.actor_pids()
    os.kill(before["gateway"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        after = member.actor_pids()
        try:
            if after.get("gateway", before["gateway"]) != before["gateway"] and serving(channel):
                break
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "the door did not come back"
        time.sleep(0.2)
    assert {a: p for a, p in after.items() if a != "gateway"} == {
        a: p for a, p in before.items() if a != "gateway"
    }
