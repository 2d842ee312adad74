"""The SAME etcdctl binary (ETCDCTL_API=3, gRPC) against a real etcd and against etcdz's gRPC
door: the same output, step by step.

Both stores start empty in this module and take the same writes in the same order, so
revisions agree; what legitimately differs is masked: cluster and member ids, terms, URLs,
lease ids etcd draws, versions, sizes, hashes and timings. Skipped where Debian's etcd and
etcdctl are not installed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from tests.actors.test_conformance import AUTH_STEPS, ETCDCTL, STEPS, _watch_output, mask, run
from tools.cluster import LocalCluster, running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def grpc_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One etcdz member serving etcd's gRPC API: its gRPC URL."""
    url = f"http://127.0.0.1:{free_port()}"
    root = str(tmp_path_factory.mktemp("grpc"))
    with running(root, 1, extra_args=[f"--listen-grpc-urls={url}"]) as cluster:
        wait_serving(cluster, url)
        yield url


def wait_serving(cluster: LocalCluster, url: str) -> None:
    """The door is a side process: it may bind a moment after the member answers."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if run([ETCDCTL, "--endpoints", url, "endpoint", "health"], b"")[0] == 0:  # type: ignore[list-item]
            return
        time.sleep(0.2)
    raise AssertionError(f"the gRPC door at {url} never answered")


def both(etcd: str, door: str, args: list[str], stdin: bytes = b"") -> tuple[tuple, tuple]:
    want = run([ETCDCTL, "--endpoints", etcd, *args], stdin)  # type: ignore[list-item]
    got = run([ETCDCTL, "--endpoints", door, *args], stdin)  # type: ignore[list-item]
    return want, got


def normal(out: bytes, *endpoints: str) -> bytes:
    """What legitimately differs between two stores, masked."""
    out = mask(out)
    for endpoint in endpoints:
        out = out.replace(endpoint.encode(), b"<endpoint>").replace(
            endpoint.removeprefix("http://").encode(), b"<endpoint>"
        )
    out = re.sub(rb"took = [0-9.]+\S*", b"took = X", out)
    out = re.sub(rb',"dbSizeInUse":\d+', b"", out)  # etcd 3.4's server leaves it out
    numbers = rb"ID|leader|hash|dbSize|raftIndex|raftAppliedIndex|raftTerm"
    out = re.sub(rb'"(' + numbers + rb')":\d+', rb'"\1":0', out)
    out = re.sub(rb'"version":"[^"]*"', b'"version":"X"', out)
    out = re.sub(rb'"(name|peerURLs|clientURLs)":(\[[^\]]*\]|"[^"]*")', rb'"\1":"X"', out)
    return out


def test_kv_txn_compaction_and_lease_errors_match_etcd(etcd: str, grpc_node: str) -> None:
    """The ZeroMQ conformance list (put/get with prefix, limit, rev, keys-only, sort, -w json,
    txn, delete, compaction, lease errors, member errors), now with etcdctl on both sides."""
    for args, stdin in STEPS:
        want, got = both(etcd, grpc_node, args, stdin)
        assert (got[0], normal(got[1]), got[2]) == (want[0], normal(want[1]), want[2]), (
            f"etcdctl {' '.join(args)}"
        )


def test_watch_prints_as_on_etcd(etcd: str, grpc_node: str) -> None:
    steps = [
        (["put", "w/a", "1"], b""),
        (["put", "w/a", "2"], b""),
        (["put", "w/b", "3"], b""),
        (["del", "w/a"], b""),
        (["txn"], b"\nput w/x 1\nput w/y 2\n\n\n"),
    ]
    for args in (["--prefix", "w/"], ["--prev-kv", "w/a"], ["--prefix", "w/", "--rev", "HISTORY"]):
        if "HISTORY" in args:  # the last revisions of the runs before, caught up from history
            revision = int(
                run([ETCDCTL, "--endpoints", etcd, "get", "w/", "-w", "json"], b"")[1]
                .split(b'"revision":')[1]
                .split(b",")[0]
            )  # type: ignore[list-item]  # noqa: E501
            args = [*args[:-1], str(revision - 3)]
        want, got = (
            _watch_output([ETCDCTL, "--endpoints", ep], args, steps)[1]  # type: ignore[list-item]
            for ep in (etcd, grpc_node)
        )
        assert got.decode() == want.decode(), f"watch {' '.join(args)}"
        assert want.count(b"PUT") + want.count(b"DELETE") >= 3


def test_watch_of_a_compacted_revision_fails_as_on_etcd(etcd: str, grpc_node: str) -> None:
    outcomes = []
    for ep in (etcd, grpc_node):
        ctl = [ETCDCTL, "--endpoints", ep]
        for i in range(3):
            run([*ctl, "put", "c/k", str(i)], b"")  # type: ignore[list-item]
        rev = int(run([*ctl, "get", "c/k", "-w", "json"], b"")[1].split(b'"revision":')[1].split(b",")[0])  # type: ignore[list-item]
        run([*ctl, "compaction", str(rev)], b"")  # type: ignore[list-item]
        outcomes.append(run([*ctl, "watch", "c/k", "--rev", "1"], b""))  # type: ignore[list-item]
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][0] == 5 and outcomes[0][2] == b"Error: watch is canceled by the server"


def lease_id(out: bytes) -> str:
    found = re.search(rb"lease ([0-9a-f]+) granted", out)
    assert found, out
    return found.group(1).decode()


def test_lease_lifecycle_matches_etcd(etcd: str, grpc_node: str) -> None:
    """grant, attach, keep-alive --once, timetolive (--keys), list, revoke: lease ids are the
    store's to draw, so each side's id is put back as LEASE."""
    results = {}
    for ep in (etcd, grpc_node):
        ctl = [ETCDCTL, "--endpoints", ep]
        granted = run([*ctl, "lease", "grant", "100"], b"")  # type: ignore[list-item]
        lid = lease_id(granted[1])
        outs = [granted]
        for args in (
            ["put", "--lease", lid, "leased", "v"],
            ["lease", "keep-alive", "--once", lid],
            ["lease", "timetolive", lid, "--keys"],
            ["lease", "list"],
            ["lease", "revoke", lid],
            ["lease", "timetolive", lid],
            ["lease", "keep-alive", "--once", lid],
            ["get", "leased"],
        ):
            outs.append(run([*ctl, *args], b""))  # type: ignore[list-item]
        masked = []
        for code, out, err in outs:
            out = out.replace(lid.encode(), b"LEASE")
            out = re.sub(rb"remaining\(\d+s\)", b"remaining(Ns)", out)
            out = re.sub(rb"ttl: \d+", b"ttl: N", out)
            masked.append((code, mask(out), err.replace(lid.encode(), b"LEASE")))
        results[ep] = masked
    assert results[grpc_node] == results[etcd]


@pytest.mark.parametrize(
    "args",
    [
        ["member", "list", "-w", "json"],
        ["endpoint", "status", "-w", "json"],
        ["endpoint", "health"],
        ["alarm", "list"],
        ["alarm", "disarm"],
        ["defrag"],
        ["endpoint", "hashkv", "-w", "json"],
    ],
)
def test_cluster_and_maintenance_commands_match_etcd(etcd: str, grpc_node: str, args: list[str]) -> None:
    want, got = both(etcd, grpc_node, args)
    assert (got[0], normal(got[1], grpc_node), got[2]) == (want[0], normal(want[1], etcd), want[2])


def test_snapshot_save_is_accepted_by_etcdctl(etcd: str, grpc_node: str, tmp_path: object) -> None:
    """The file is etcdz's format (etcdzctl snapshot restore reads it), but etcdctl's save
    takes it: the stream ends with the checksum where etcdctl looks for one."""
    outs = []
    for name, ep in (("etcd", etcd), ("etcdz", grpc_node)):
        path = f"{tmp_path}/{name}.db"
        code, out, err = run([ETCDCTL, "--endpoints", ep, "snapshot", "save", path], b"")  # type: ignore[list-item]
        outs.append((code, out.replace(path.encode(), b"PATH"), err))
    assert outs[1] == outs[0]
    assert outs[0][0] == 0


def test_users_roles_and_auth_match_etcd(etcd: str, grpc_node: str) -> None:
    """The ZeroMQ conformance list of auth steps: the token travels in the ``token`` metadata."""
    for args, stdin in AUTH_STEPS:
        want, got = both(etcd, grpc_node, args, stdin)
        masked = [(c, re.sub(rb'"revision":\d+', b'"revision":0', mask(o)), e) for c, o, e in (want, got)]
        assert masked[1] == masked[0], f"etcdctl {' '.join(args)}"
