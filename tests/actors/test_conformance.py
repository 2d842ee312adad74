"""The same etcdctl steps against real etcd and etcdzctl steps against etcdz: same output.

Skipped where Debian's etcd-server/etcd-client are not installed (.ci/run installs them).
Revisions are equal on both sides because both stores start empty and take the same writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.cluster import LocalCluster, running
from tools.etcd_cluster import EtcdCluster

ETCDCTL = shutil.which("etcdctl")  # the real etcd runs in the `etcd` fixture (tests/conftest.py)

STEPS: list[tuple[list[str], bytes]] = [
    (["put", "a", "1"], b""),
    (["put", "--prev-kv", "a", "2"], b""),
    (["put", "b", "x"], b""),
    (["put", "c/1", "y"], b""),
    (["get", "a"], b""),
    (["get", "", "--prefix"], b""),
    (["get", "b", "--from-key", "--keys-only"], b""),
    (["get", "a", "--rev", "2"], b""),
    (["get", "", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND"], b""),
    (["get", "", "--prefix", "--limit", "1", "--print-value-only"], b""),
    (["get", "a", "c"], b""),
    (["txn"], b'mod("a") > "0"\n\nput a 3\nget a\ndel nothing\n\nget b\n\n'),
    (["txn"], b'val("a") = "nope"\n\nput a 4\n\nget a\n\n'),
    (["del", "c", "--prefix", "--prev-kv"], b""),
    (["del", "zz"], b""),
    (["compaction", "3"], b""),
    (["get", "a", "--rev", "2"], b""),
    (["get", "a", "--rev", "99"], b""),
    (["get", "a", "-w", "json"], b""),
    (["del", "a", "-w", "json"], b""),
    (["lease", "list"], b""),
    (["lease", "list", "-w", "json"], b""),
    (["lease", "timetolive", "4d2", "--keys"], b""),
    (["lease", "timetolive", "4d2", "-w", "json"], b""),
    (["lease", "revoke", "4d2"], b""),
    (["lease", "keep-alive", "--once", "4d2"], b""),
    (["put", "--lease=4d2", "k", "v"], b""),
    (["put", "--lease=zz", "k", "v"], b""),
    (["lease", "revoke", "zz"], b""),
    (["lease", "grant", "abc"], b""),
    (["lease", "grant"], b""),
    (["lease", "grant", "9999999999999"], b""),
    (["member", "remove", "zz"], b""),
]


def run(argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    result = subprocess.run(
        argv, input=stdin, capture_output=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"}
    )
    # etcdctl logs client retries as JSON lines on stderr before its "Error:" line
    err = b"\n".join(line for line in result.stderr.splitlines() if line.startswith(b"Error:"))
    return result.returncode, result.stdout, err


def mask(out: bytes) -> bytes:
    import re

    return re.sub(
        rb'"(cluster_id|member_id)":\d+', rb'"\1":0', re.sub(rb'"raft_term":\d+', b'"raft_term":0', out)
    )


def test_etcdzctl_matches_etcdctl(etcd: str, node: LocalCluster) -> None:
    for args, stdin in STEPS:
        want = run([ETCDCTL, "--endpoints", etcd, *args], stdin)  # type: ignore[list-item]
        got = run([sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args], stdin)
        assert (got[0], mask(got[1]), got[2]) == (want[0], mask(want[1]), want[2]), (
            f"etcdctl {' '.join(args)}"
        )


def _watch_output(
    ctl: list[str], watch_args: list[str], steps: list[tuple[list[str], bytes]]
) -> tuple[int, bytes, bytes]:
    """Start ``watch`` with ``watch_args`` (a range that holds ``w/a``), run ``steps`` beside it,
    then stop it: its output.

    A watch without ``--rev`` starts at the revision the first step writes, so a slow start of
    the watcher misses nothing; a last put to ``w/a`` of a value naming the watch tells when the
    watcher has printed everything."""
    last = "end of " + " ".join(watch_args)
    if "--rev" not in watch_args:
        header = run([*ctl, "get", "w/", "-w", "json"], b"")[1]
        watch_args = [*watch_args, "--rev", str(int(header.split(b'"revision":')[1].split(b",")[0]) + 1)]
    watcher = subprocess.Popen(
        [*ctl, "watch", *watch_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    for args, stdin in [*steps, (["put", "w/a", last], b"")]:
        run([*ctl, *args], stdin)
    assert watcher.stdout is not None
    lines: list[bytes] = []
    while not lines or lines[-1] not in (f"{last}\n".encode(), b""):  # bounded by the test timeout
        lines.append(watcher.stdout.readline())
    watcher.terminate()
    out, err = watcher.communicate(timeout=10)
    return watcher.returncode, b"".join(lines) + out, err


def test_etcdzctl_watch_prints_as_etcdctl(etcd: str, node: LocalCluster) -> None:
    steps = [
        (["put", "w/a", "1"], b""),
        (["put", "w/a", "2"], b""),
        (["put", "w/b", "3"], b""),
        (["del", "w/a"], b""),
        (["txn"], b"\nput w/x 1\nput w/y 2\n\n\n"),
    ]
    assert ETCDCTL is not None
    ctls = [
        [ETCDCTL, "--endpoints", etcd],
        [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0]],
    ]
    for args in (["--prefix", "w/"], ["--prev-kv", "w/a"]):
        want, got = (_watch_output(ctl, args, steps)[1] for ctl in ctls)
        assert got.decode() == want.decode(), f"watch {' '.join(args)}"
        assert want.count(b"PUT") + want.count(b"DELETE") >= 3


def test_etcdzctl_watch_of_a_compacted_revision_fails_as_etcdctl(etcd: str, node: LocalCluster) -> None:
    outcomes = []
    for ctl in (
        [ETCDCTL, "--endpoints", etcd],
        [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0]],
    ):
        for i in range(3):
            run([*ctl, "put", "c/k", str(i)], b"")
        rev = int(run([*ctl, "get", "c/k", "-w", "json"], b"")[1].split(b'"revision":')[1].split(b",")[0])
        run([*ctl, "compaction", str(rev)], b"")
        outcomes.append(run([*ctl, "watch", "c/k", "--rev", "1"], b""))
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][0] == 5 and outcomes[0][2] == b"Error: watch is canceled by the server"


MAINTENANCE_STEPS = [
    ["alarm", "list"],
    ["alarm", "list", "-w", "json"],
    ["alarm", "disarm"],
    ["alarm", "disarm", "-w", "json"],
    ["endpoint", "hashkv"],
    ["endpoint", "hashkv", "-w", "json"],
    ["defrag"],
    ["snapshot", "status", "/nonexistent/backup.db"],
]


def test_maintenance_commands_print_as_etcdctl(etcd: str, node: LocalCluster) -> None:
    """The hash itself differs (each store hashes its own encoding), and so do the URLs and the
    compaction point (etcd's node is shared by this module's tests, etcdz's is fresh)."""
    import re

    fresh = run(
        [
            sys.executable,
            "-m",
            "etcdz.cli",
            "--endpoints",
            node.endpoints[0],
            "endpoint",
            "hashkv",
            "-w",
            "json",
        ],
        b"",
    )
    assert b'"compact_revision":-1' in fresh[1]  # never compacted, as etcd says it

    def masked(out: bytes, endpoint: str) -> bytes:
        out = mask(out).replace(endpoint.encode(), b"<endpoint>")
        out = re.sub(rb'"(hash|revision|compact_revision)":-?\d+', rb'"\1":0', out)
        return re.sub(rb"(<endpoint>, )\d+", rb"\g<1>0", out)

    for args in MAINTENANCE_STEPS:
        code, out, err = run([ETCDCTL, "--endpoints", etcd, *args], b"")  # type: ignore[list-item]
        want = (code, masked(out, etcd), masked(err, etcd))
        code, out, err = run(
            [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args], b""
        )
        got = (code, masked(out, node.endpoints[0]), masked(err, node.endpoints[0]))
        assert got == want, f"etcdctl {' '.join(args)}"


AUTH_STEPS: list[tuple[list[str], bytes]] = [
    (["user", "add", "root:rootpw"], b""),
    (["user", "add", "alice:apw"], b""),
    (["user", "add", "bob", "--interactive=false"], b"bpw\n"),
    (["user", "add", "alice:x"], b""),
    (["user", "add"], b""),
    (["role", "add", "reader"], b""),
    (["role", "add", "reader"], b""),
    (["role", "grant-permission", "reader", "read", "/a/", "--prefix"], b""),
    (["role", "grant-permission", "reader", "readwrite", "/b", "/c"], b""),
    (["role", "grant-permission", "reader", "write", "/k"], b""),
    (["role", "grant-permission", "reader", "read", "/z", "--from-key"], b""),
    (["role", "grant-permission", "reader", "bogus", "/x"], b""),
    (["role", "grant-permission", "reader", "read"], b""),
    (["role", "get", "reader"], b""),
    (["role", "get", "reader", "-w", "json"], b""),
    (["role", "get", "reader", "-w", "fields"], b""),
    (["role", "list", "-w", "fields"], b""),
    (["role", "list"], b""),
    (["role", "get", "nosuch"], b""),
    (["user", "grant-role", "alice", "reader"], b""),
    (["user", "grant-role", "alice", "nosuch"], b""),
    (["user", "get", "alice"], b""),
    (["user", "get", "alice", "--detail"], b""),
    (["user", "get", "alice", "--detail=true", "-w", "fields"], b""),
    (["user", "get", "alice", "-w", "fields"], b""),
    (["user", "list"], b""),
    (["user", "list", "-w", "json"], b""),
    (["user", "get", "nosuch"], b""),
    (["auth", "enable"], b""),
    (["put", "/a/x", "1"], b""),
    (["--user", "alice:apw", "put", "/a/x", "1"], b""),
    (["--user", "alice:wrong", "get", "/a/x"], b""),
    (["--user", "root:rootpw", "put", "/a/x", "1"], b""),
    (["--user", "alice:apw", "get", "/a/x"], b""),
    (["--user", "alice", "--password", "apw", "put", "/b", "2"], b""),
    (["--user", "root:rootpw", "role", "revoke-permission", "reader", "/k"], b""),
    (["--user", "root:rootpw", "role", "revoke-permission", "reader", "/b", "/c"], b""),
    (["--user", "root:rootpw", "role", "revoke-permission", "reader", "/z", "--from-key"], b""),
    (["--user", "root:rootpw", "role", "revoke-permission", "reader", "/nope"], b""),
    (["--user", "alice:apw", "put", "/b", "3"], b""),
    (["--user", "root:rootpw", "user", "revoke-role", "alice", "reader"], b""),
    (["--user", "root:rootpw", "user", "revoke-role", "alice", "reader"], b""),
    (["--user", "root:rootpw", "user", "passwd", "alice", "--interactive=false"], b"new\n"),
    (["--user", "alice:new", "get", "/a/x"], b""),
    (["--user", "root:rootpw", "user", "delete", "root"], b""),
    (["--user", "root:rootpw", "role", "delete", "root"], b""),
    (["--user", "root:rootpw", "role", "delete", "reader"], b""),
    (["--user", "root:rootpw", "user", "delete", "bob"], b""),
    (["--user", "root:rootpw", "auth", "disable"], b""),
    (["user", "delete", "alice"], b""),
    (["user", "delete", "root"], b""),
    (["role", "delete", "root"], b""),
]


def test_auth_commands_print_and_refuse_as_etcdctl(etcd: str, node: LocalCluster) -> None:
    """Users, roles, permissions, auth enable/disable and what a user may then do, step by
    step on both (leaving auth disabled and no user behind on the shared etcd)."""
    for args, stdin in AUTH_STEPS:
        code, out, err = run([ETCDCTL, "--endpoints", etcd, *args], stdin)  # type: ignore[list-item]
        want = (code, auth_masked(out), err)
        code, out, err = run(
            [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args], stdin
        )
        assert (code, auth_masked(out), err) == want, f"etcdctl {' '.join(args)}"


def auth_masked(out: bytes) -> bytes:
    """An auth step's output without what two stores legitimately differ in (ids, revisions)."""
    out = re.sub(rb'"(ClusterID|MemberID|Revision|RaftTerm)" : \d+', rb'"\1" : 0', out)
    return re.sub(rb'"revision":\d+', b'"revision":0', mask(out))


# -- etcdctl's flag forms, environment variables and output formats -------------------------------

FORM_STEPS: list[tuple[list[str], bytes]] = [
    (["put", "f/a", "1"], b""),
    (["put", "--prev-kv=true", "f/a", "2"], b""),
    (["put", "--prev-kv=false", "f/b", "x"], b""),
    (["get", "f/", "--prefix=true"], b""),
    (["get", "f/a", "--prefix=false"], b""),
    (["get", "--prefix", "f/", "--keys-only=true"], b""),
    (["get", "f/", "--prefix=1", "--print-value-only=TRUE"], b""),
    (["get", "f/", "--prefix=t", "--limit=1", "--sort-by=value", "--order=descend"], b""),
    (["--hex", "get", "f/", "--prefix"], b""),
    (["--hex=true", "put", "f/c", "v"], b""),
    (["--hex=false", "get", "f/c"], b""),
    (["get", "f/a", "-w", "fields"], b""),
    (["get", "f/", "--prefix", "--write-out=fields"], b""),
    (["get", "f/nothing", "-w", "fields"], b""),
    (["put", "f/a", "3", "--prev-kv", "-w", "fields"], b""),
    (["del", "f/b", "--prev-kv=true", "-w", "fields"], b""),
    (["txn", "-w", "fields"], b'mod("f/a") > "0"\n\nput f/x 1\nget f/a\n\n\n'),
    (["txn", "--interactive=false"], b"\n\ndel f/x\n\n"),
    (["txn"], b"\nput f/y 1\n\n"),  # cut short: refused, nothing written
    (["get", "f/y"], b""),
    (["get", "f/", "--prefix", "--consistency=q"], b""),
    (["get", "f/", "--prefix", "--sort-by=bad"], b""),
    (["get", "f/", "--prefix", "--order=sideways"], b""),
    (["get", "f/", "--prefix", "f/z"], b""),
    (["-w", "yaml", "get", "f/a"], b""),
    (["put"], b""),
    (["put", "f/e"], b""),  # no value on stdin: refused, nothing written
    (["get", "f/e"], b""),
    (["get"], b""),
    (["del"], b""),
    (["compaction"], b""),
    (["compaction", "x"], b""),
    (["move-leader"], b""),
    (["member", "remove"], b""),
    (["del", "f/", "--prefix=true", "--prev-kv=false"], b""),
]


def test_flag_forms_and_formats_print_as_etcdctl(node: LocalCluster, tmp_path: Path) -> None:
    """On a fresh etcd (equal revisions on both sides); ids and terms masked."""
    import re

    def masked(out: bytes) -> bytes:
        return re.sub(rb'"(ClusterID|MemberID|RaftTerm)" : \d+', rb'"\1" : 0', out)

    with EtcdCluster(str(tmp_path)) as etcd:
        for args, stdin in FORM_STEPS:
            code, out, err = run([ETCDCTL, "--endpoints", etcd.client_urls[0], *args], stdin)  # type: ignore[list-item]
            want = (code, masked(out), err)
            code, out, err = run(
                [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args], stdin
            )
            assert (code, masked(out), err) == want, f"etcdctl {' '.join(args)}"


def test_environment_variables_work_as_etcdctls(etcd: str, node: LocalCluster) -> None:
    """ETCDCTL_X and ETCDZCTL_X stand for --x. A flag also given on the command line wins with
    a warning, as in etcdctl 3.5 (3.4 stops there: its third step fails)."""
    outcomes = []
    for ctl, prefix, endpoint in (
        ([ETCDCTL], "ETCDCTL_", etcd),
        ([sys.executable, "-m", "etcdz.cli"], "ETCDZCTL_", node.endpoints[0]),
    ):
        env = {**os.environ, "ETCDCTL_API": "3", f"{prefix}ENDPOINTS": endpoint, f"{prefix}HEX": "true"}
        env[f"{prefix}DIAL_TIMEOUT"] = "3s"
        steps = [["put", "e/k", "v"], ["get", "e/k"], ["--hex=false", "get", "e/k", "--print-value-only"]]
        results = [subprocess.run([*ctl, *s], capture_output=True, env=env, timeout=30) for s in steps]
        outcomes.append([(r.returncode, r.stdout) for r in results])
    assert outcomes[1][:2] == outcomes[0][:2]
    assert outcomes[0][1] == (0, b"\\x65\\x2f\\x6b\n\\x76\n")
    assert outcomes[1][2] == (0, b"v\n")


BAD_FLAGS = [
    ["get", "k", "--prefix=yes"],
    ["get", "k", "--prefix="],
    ["get", "k", "--limit=x"],
    ["get", "k", "--foo"],
    ["get", "k", "-x"],
    ["--dial-timeout=5", "get", "k"],
    ["--dial-timeout=abc", "get", "k"],
    ["--command-timeout=1x", "put", "k", "v"],
    ["put", "k", "v", "--prev-kv=maybe"],
]


def test_bad_flags_fail_as_etcdctls_and_change_nothing(etcd: str, node: LocalCluster) -> None:
    """etcdctl prints its error twice (and its usage); etcdzctl once: the same line, the same
    exit code, and nothing written."""
    for args in BAD_FLAGS:
        want = run([ETCDCTL, "--endpoints", etcd, *args], b"")  # type: ignore[list-item]
        got = run([sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args], b"")
        assert (got[0], got[2]) == (want[0], want[2].split(b"\n")[0]), f"etcdctl {' '.join(args)}"
    code, out, _ = run([sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], "get", "k"], b"")
    assert (code, out) == (0, b"")


def test_version_prints_as_etcdctl() -> None:
    want = run([ETCDCTL, "version"], b"")[1].decode().splitlines()  # type: ignore[list-item]
    got = run([sys.executable, "-m", "etcdz.cli", "version"], b"")[1].decode().splitlines()
    assert [line.split(": ")[0] for line in got] == [line.split(": ")[0] for line in want]
    assert want[0].startswith("etcdctl version: 3.") and got[1] == "API version: 3.5"


def test_make_mirror_between_two_clusters(node: LocalCluster, tmp_path: Path, etcd: str) -> None:
    """A prefix of one etcdz cluster mirrored to another under a new prefix: the keys there at
    the start, then the changes as they happen; keys outside the prefix stay behind."""
    with running(str(tmp_path / "dest"), 1, metrics=True) as dest:
        src, dst = node.endpoints[0], dest.endpoints[0]
        with node.client() as source, dest.client() as target:
            source.put("/src/a", "1")
            source.put("/src/b", "2")
            source.put("/other/x", "3")
            mirror = subprocess.Popen(
                [sys.executable, "-m", "etcdz.cli", "--endpoints", src, "make-mirror", "--prefix", "/src/"]
                + ["--dest-prefix", "/dst/", dst],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:

                def mirrored() -> dict[bytes, bytes]:
                    return {kv.key: kv.value for kv in target.get("/", prefix=True).kvs}

                _wait_for(lambda: mirrored() == {b"/dst/a": b"1", b"/dst/b": b"2"})
                source.put("/src/c", "4")
                source.delete("/src/a")
                source.put("/other/y", "5")
                _wait_for(lambda: mirrored() == {b"/dst/b": b"2", b"/dst/c": b"4"})
            finally:
                mirror.terminate()
                mirror.wait(timeout=10)
        both = ["make-mirror", "--dest-prefix", "/x/", "--no-dest-prefix=true", dst]
        want = run([ETCDCTL, "--endpoints", etcd, *both], b"")  # type: ignore[list-item]
        got = run([sys.executable, "-m", "etcdz.cli", "--endpoints", src, *both], b"")
        assert got == want and want[0] == 128

        # check datascale against the destination, which serves metrics
        scale = ["check", "datascale", "--load=s", "--auto-compact=true", "--auto-defrag"]
        metrics = ["--metrics-url", dest.members[0].metrics_url]
        code, out, err = run([sys.executable, "-m", "etcdz.cli", "--endpoints", dst, *scale, *metrics], b"")
        want_code, want_out, _ = run([ETCDCTL, "--endpoints", etcd, *scale], b"")  # type: ignore[list-item]
        assert (code, err) == (want_code, b"") == (0, b"")
        lines, want_lines = out.decode().splitlines(), want_out.decode().splitlines()
        assert (
            lines[0]
            == want_lines[0]
            == (
                "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, "
                "50 concurrent clients]."
            )
        )
        words = [line.split(" ")[0] for line in lines if line[:1].isalpha()]  # not the progress bar
        assert words == [line.split(" ")[0] for line in want_lines if line[:1].isalpha()]
        assert words == ["Start", "Compacting", "Compacted", "Defragmenting", "Defragmented", "PASS:"]
        import re

        assert re.fullmatch(r"PASS: Approximate system memory used : -?\d+\.\d\d MB\.", lines[-1]), lines[-1]
        with dest.client() as target:
            assert target.get("/etcdctl-check-datascale/", prefix=True, count_only=True).count == 0


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


# -- the same etcdctl against etcd and against etcdz's gRPC door -------------------------------
# Both stores start empty for these tests (a fresh etcd and a fresh member serving etcd's gRPC
# API) and take the same writes in the same order, so revisions agree; what legitimately
# differs is masked: cluster and member ids, terms, URLs, lease ids, versions, sizes, hashes,
# timings.


@pytest.fixture(scope="module")
def grpc_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(a fresh etcd's client URL, a fresh etcdz member's gRPC URL)."""
    if not ETCDCTL:
        pytest.skip("etcd/etcdctl not installed")
    from tools.etcd_cluster import EtcdCluster

    with (
        EtcdCluster(str(tmp_path_factory.mktemp("grpc-etcd"))) as etcd,
        running(str(tmp_path_factory.mktemp("grpc-etcdz")), 1, grpc=True) as cluster,
    ):
        url = cluster.members[0].grpc_url
        deadline = time.monotonic() + 30  # the door is a side process: it may bind a moment later
        while run([ETCDCTL, "--endpoints", url, "endpoint", "health"], b"")[0] != 0:
            assert time.monotonic() < deadline, f"the gRPC door at {url} never answered"
            time.sleep(0.2)
        yield etcd.client_urls[0], url


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
    out = re.sub(rb'"hash":\d+,', b"", out)  # each store hashes its own encoding (0: left out)
    numbers = rb"ID|leader|dbSize|raftIndex|raftAppliedIndex|raftTerm"
    out = re.sub(rb'"(' + numbers + rb')":\d+', rb'"\1":0', out)
    out = re.sub(rb'"version":"[^"]*"', b'"version":"X"', out)
    out = re.sub(rb'"(name|peerURLs|clientURLs)":(\[[^\]]*\]|"[^"]*")', rb'"\1":"X"', out)
    return out


def test_kv_txn_compaction_and_lease_errors_match_etcd(grpc_pair: tuple[str, str]) -> None:
    """The ZeroMQ conformance list (put/get with prefix, limit, rev, keys-only, sort, -w json,
    txn, delete, compaction, lease errors, member errors), now with etcdctl on both sides."""
    etcd, grpc_node = grpc_pair
    for args, stdin in STEPS:
        want, got = both(etcd, grpc_node, args, stdin)
        assert (got[0], normal(got[1]), got[2]) == (want[0], normal(want[1]), want[2]), (
            f"etcdctl {' '.join(args)}"
        )


def test_watch_prints_as_on_etcd(grpc_pair: tuple[str, str]) -> None:
    etcd, grpc_node = grpc_pair
    steps = [
        (["put", "w/a", "1"], b""),
        (["put", "w/a", "2"], b""),
        (["put", "w/b", "3"], b""),
        (["del", "w/a"], b""),
        (["txn"], b"\nput w/x 1\nput w/y 2\n\n\n"),
    ]
    for args in (["--prefix", "w/"], ["--prev-kv", "w/a"], ["--prefix", "w/", "--rev", "HISTORY"]):
        if "HISTORY" in args:  # the last revisions of the runs before, caught up from history
            out = both(etcd, grpc_node, ["get", "w/", "-w", "json"])[0][1]
            revision = int(out.split(b'"revision":')[1].split(b",")[0])
            args = [*args[:-1], str(revision - 3)]
        want, got = (
            _watch_output([ETCDCTL, "--endpoints", ep], args, steps)[1]  # type: ignore[list-item]
            for ep in (etcd, grpc_node)
        )
        assert got.decode() == want.decode(), f"watch {' '.join(args)}"
        assert want.count(b"PUT") + want.count(b"DELETE") >= 3


def test_watch_of_a_compacted_revision_fails_as_on_etcd(grpc_pair: tuple[str, str]) -> None:
    etcd, grpc_node = grpc_pair
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


def test_lease_lifecycle_matches_etcd(grpc_pair: tuple[str, str]) -> None:
    """grant, attach, keep-alive --once, timetolive (--keys), list, revoke: lease ids are the
    store's to draw, so each side's id is put back as LEASE."""
    etcd, grpc_node = grpc_pair
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
        ["endpoint", "health", "--cluster"],  # the members' published gRPC URLs
        ["endpoint", "status", "--cluster", "-w", "json"],
        ["alarm", "list"],
        ["alarm", "disarm"],
        ["defrag"],
        ["endpoint", "hashkv", "-w", "json"],
    ],
)
def test_cluster_and_maintenance_commands_match_etcd(grpc_pair: tuple[str, str], args: list[str]) -> None:
    etcd, grpc_node = grpc_pair
    want, got = both(etcd, grpc_node, args)
    assert (got[0], normal(got[1], grpc_node), got[2]) == (want[0], normal(want[1], etcd), want[2])


def test_snapshot_save_is_accepted_by_etcdctl(grpc_pair: tuple[str, str], tmp_path: object) -> None:
    """The file is etcdz's format (etcdzctl reads it, ``etcdz snapshot restore`` restores it),
    but etcdctl's save takes it: the stream ends with the checksum where etcdctl looks."""
    etcd, grpc_node = grpc_pair
    outs = []
    for name, ep in (("etcd", etcd), ("etcdz", grpc_node)):
        path = f"{tmp_path}/{name}.db"
        code, out, err = run([ETCDCTL, "--endpoints", ep, "snapshot", "save", path], b"")  # type: ignore[list-item]
        outs.append((code, out.replace(path.encode(), b"PATH"), err))
    assert outs[1] == outs[0]
    assert outs[0][0] == 0
    status = run([sys.executable, "-m", "etcdz.cli", "snapshot", "status", f"{tmp_path}/etcdz.db"], b"")
    assert status[0] == 0, status


def test_users_roles_and_auth_match_etcd(grpc_pair: tuple[str, str]) -> None:
    """The ZeroMQ conformance list of auth steps: the token travels in the ``token`` metadata."""
    etcd, grpc_node = grpc_pair
    for args, stdin in AUTH_STEPS:
        want, got = both(etcd, grpc_node, args, stdin)
        masked = [(c, auth_masked(o), e) for c, o, e in (want, got)]
        assert masked[1] == masked[0], f"etcdctl {' '.join(args)}"


def test_watch_ids_and_refusals_are_etcds_on_the_wire(grpc_pair: tuple[str, str]) -> None:
    """Raw Watch streams: automatic ids from 0, an explicit id, a duplicate refused, a cancel,
    a cancel of an unknown id (nothing), progress: the same answers from both. (A progress
    request sent while a create is still being answered may be answered first by a hub, after
    it by etcd: the progress request here follows answered creates.)"""
    import threading

    import grpc

    from proto_schemas.etcdpb import rpc_pb2

    def create(watch_id: int = 0) -> bytes:
        return rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b"ids", watch_id=watch_id)
        ).SerializeToString()

    requests = [
        create(),
        create(),
        create(7),
        create(7),
        rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=0)).SerializeToString(),
        rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=99)).SerializeToString(),
        rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()).SerializeToString(),
        create(),
    ]
    answers = {}
    hold, answered = threading.Event(), threading.Event()

    def feed() -> Iterator[bytes]:
        yield from requests[:6]
        answered.wait(30)  # the progress request follows the answers to the creates before it
        yield from requests[6:]
        hold.wait(30)

    for url in grpc_pair:
        hold.clear()
        answered.clear()

        with grpc.insecure_channel(url.removeprefix("http://")) as channel:
            stream = channel.stream_stream("/etcdserverpb.Watch/Watch")(feed(), timeout=30)
            got = []
            for _ in range(7):  # 5 creates, 1 cancel, 1 progress (the unknown cancel: nothing)
                r = rpc_pb2.WatchResponse.FromString(next(stream))
                got.append((r.watch_id, r.created, r.canceled, r.cancel_reason))
                if len(got) == 5:
                    answered.set()
            stream.cancel()
            hold.set()
        answers[url] = got
    etcd, door = grpc_pair
    assert answers[door] == answers[etcd], (answers[door], answers[etcd])
