"""etcdzctl as a user runs it: a subprocess against a real node."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from tools.cluster import LocalCluster


def ctl(node: LocalCluster, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args],
        input=stdin,
        capture_output=True,
        timeout=30,
    )


def test_put_get_del(shared_node: LocalCluster) -> None:
    assert ctl(shared_node, "put", "/cli/a", "1").stdout == b"OK\n"
    assert ctl(shared_node, "put", "/cli/b", "2", "--prev-kv").stdout == b"OK\n"
    assert ctl(shared_node, "get", "/cli/", "--prefix").stdout == b"/cli/a\n1\n/cli/b\n2\n"
    assert ctl(shared_node, "get", "/cli/a", "--print-value-only").stdout == b"1\n"
    assert ctl(shared_node, "get", "/cli/", "--prefix", "--count-only").stdout == b"2\n"
    desc = ctl(
        shared_node, "get", "/cli/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "--keys-only"
    )
    assert desc.stdout == b"/cli/b\n\n/cli/a\n\n"
    out = json.loads(ctl(shared_node, "get", "/cli/a", "-w", "json").stdout)
    assert out["kvs"][0]["key"] == "L2NsaS9h" and out["count"] == 1 and out["header"]["revision"] > 1
    assert ctl(shared_node, "del", "/cli/", "--prefix", "--prev-kv").stdout == b"2\n/cli/a\n1\n/cli/b\n2\n"


def test_txn_from_stdin(shared_node: LocalCluster) -> None:
    ctl(shared_node, "put", "/cli/t", "v1")
    script = b'val("/cli/t") = "v1"\n\nput /cli/t v2\nget /cli/t\n\nget /cli/t\n\n'
    assert ctl(shared_node, "txn", stdin=script).stdout == b"SUCCESS\n\nOK\n\n/cli/t\nv2\n"
    assert ctl(shared_node, "txn", stdin=script).stdout == b"FAILURE\n\n/cli/t\nv2\n"
    interactive = ctl(shared_node, "txn", "-i", stdin=script).stdout
    assert interactive.startswith(
        b"compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n"
    )


def test_compaction_status_health(shared_node: LocalCluster) -> None:
    rev = json.loads(ctl(shared_node, "put", "/cli/c", "x", "-w", "json").stdout)["header"]["revision"]
    assert ctl(shared_node, "compaction", str(rev)).stdout == f"compacted revision {rev}\n".encode()
    again = ctl(shared_node, "compaction", str(rev))
    assert again.returncode == 1
    assert again.stderr == b"Error: etcdserver: mvcc: required revision has been compacted\n"
    table = ctl(shared_node, "endpoint", "status", "-w", "table").stdout.decode()
    assert "RAFT APPLIED INDEX" in table and "| true |" in table.replace(" ", "").replace(
        "|true|", "| true |"
    )
    health = ctl(shared_node, "endpoint", "health")
    assert health.returncode == 0
    assert health.stdout.decode().startswith(
        f"{shared_node.endpoints[0]} is healthy: successfully committed proposal: took = "
    )


def test_errors_go_to_stderr_with_exit_1(shared_node: LocalCluster) -> None:
    big = ctl(shared_node, "put", "/cli/big", stdin=b"x" * (2 * 1024 * 1024))
    assert (big.returncode, big.stdout, big.stderr) == (1, b"", b"Error: etcdserver: request is too large\n")
    table = ctl(shared_node, "get", "k", "-w", "table")
    assert table.returncode == 1 and table.stderr == b"Error: table not supported as output format\n"


def test_unreachable_endpoint_is_unhealthy() -> None:
    dead = subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdz.cli",
            "--endpoints",
            "tcp://127.0.0.1:9",
            "--command-timeout",
            "300ms",
            "endpoint",
            "health",
        ],
        capture_output=True,
        timeout=30,
    )
    assert dead.returncode == 1
    assert b"tcp://127.0.0.1:9 is unhealthy: failed to commit proposal" in dead.stderr


def test_interactive_watch_reads_go_flag_forms(shared_node: LocalCluster) -> None:
    """``watch -i`` lines take the command line's flag forms; --hex applies to what they print."""
    watcher = subprocess.Popen(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", shared_node.endpoints[0], "--hex", "watch", "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert watcher.stdin is not None and watcher.stdout is not None
        watcher.stdin.write(b"watch --bogus=1 x\nwatch --prefix=true /wi/\n")
        watcher.stdin.flush()
        seen = threading.Event()

        def put_until_seen() -> None:  # the watch starts at some point: put until it sees one
            for _ in range(120):
                ctl(shared_node, "put", "/wi/a", "1")
                if seen.wait(0.5):
                    return
            watcher.kill()  # never seen: end the read below

        threading.Thread(target=put_until_seen, daemon=True).start()
        first = watcher.stdout.readline()
        seen.set()
        assert first == b"PUT\n"
        assert watcher.stdout.readline() == b"\\x2f\\x77\\x69\\x2f\\x61\n"
    finally:
        watcher.kill()
        _, err = watcher.communicate(timeout=10)
    assert b"Invalid command: unknown flag: --bogus" in err
