"""``etcdzctl check perf`` as a user runs it, against a real node: a short run (the hidden
``--duration``) prints etcdctl's verdict lines, exits as they say and leaves the prefix empty;
a prefix holding keys is refused. Where etcd and etcdctl are installed, the refusals are
compared with etcdctl's own (a full etcdctl run takes its 60 s; its lines are checked in
tests/unit/test_cli_check.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tools.cluster import LocalCluster, free_port

ETCDCTL = shutil.which("etcdctl")

VERDICT = [
    r"(PASS: Throughput is|FAIL: Throughput too low:) \d+ writes/s",
    r"(PASS: Slowest request took|Slowest request took too long:) \d+\.\d{6}s",
    r"(PASS: Stddev is|Stddev too high:) \d+\.\d{6}s",
    r"PASS|FAIL",
]


def ctl(node: LocalCluster, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args],
        capture_output=True,
        timeout=60,
    )


def _after_bar(stdout: bytes, seconds: int) -> list[str]:
    """The lines after the progress bar, the bar checked on the way."""
    bar, _, rest = stdout.decode().partition("\n")
    frames = bar.split("\r")
    assert frames[0] == "" and frames[1] == f" 0 / {seconds}    0.00%"
    assert frames[-1] == f" {seconds} / {seconds}  100.00% {seconds}s"
    return rest.splitlines()


def _check_verdict(lines: list[str], returncode: int) -> None:
    errors = [line for line in lines if line.startswith("FAIL: ERROR(") or line == "FAIL: too many errors"]
    verdict = lines[len(errors) :]
    assert len(verdict) == len(VERDICT), lines
    for line, pattern in zip(verdict, VERDICT, strict=True):
        assert re.fullmatch(pattern, line), line
    failed = bool(errors) or any(not line.startswith("PASS") for line in verdict[:-1])
    assert verdict[-1] == ("FAIL" if failed else "PASS")
    assert returncode == (1 if failed else 0)


def test_a_short_small_run_prints_the_verdict_and_cleans_up(shared_node: LocalCluster) -> None:
    result = ctl(shared_node, "check", "perf", "--load", "s", "--duration", "3")
    assert result.stderr == b""
    _check_verdict(_after_bar(result.stdout, 3), result.returncode)
    count = ctl(shared_node, "get", "/etcdctl-check-perf/", "--prefix", "--count-only")
    assert count.stdout == b"0\n"


def test_compaction_and_defrag_after_the_run(shared_node: LocalCluster) -> None:
    result = ctl(
        shared_node,
        "check",
        "perf",
        "--prefix",
        "/perf-b/",
        "--auto-compact",
        "--auto-defrag",
        "--duration",
        "2",
    )
    lines = _after_bar(result.stdout, 2)
    rev = int(lines[0].removeprefix("Compacting with revision "))
    endpoint = shared_node.endpoints[0]
    assert lines[:4] == [
        f"Compacting with revision {rev}",
        f"Compacted with revision {rev}",
        f'Defragmenting "{endpoint}"',
        f'Defragmented "{endpoint}"',
    ]
    _check_verdict(lines[4:], result.returncode)
    assert rev > 2 * 150  # the puts, then the delete
    again = ctl(shared_node, "compaction", str(rev))
    assert again.stderr == b"Error: etcdserver: mvcc: required revision has been compacted\n"
    assert ctl(shared_node, "get", "/perf-b/", "--prefix", "--count-only").stdout == b"0\n"


def test_a_prefix_with_keys_is_refused(shared_node: LocalCluster) -> None:
    ctl(shared_node, "put", "/perf-c/k", "v")
    result = ctl(shared_node, "check", "perf", "--prefix", "/perf-c/", "--duration", "1")
    assert (result.returncode, result.stdout) == (3, b"")
    assert result.stderr == (
        b'Error: prefix "/perf-c/" has keys. Delete with etcdctl del --prefix /perf-c/ first\n'
    )
    assert ctl(shared_node, "get", "/perf-c/k", "--print-value-only").stdout == b"v\n"


def test_an_unknown_load_is_refused(shared_node: LocalCluster) -> None:
    result = ctl(shared_node, "check", "perf", "--load", "huge")
    assert (result.returncode, result.stdout, result.stderr) == (4, b"", b"Error: unknown load option huge\n")


def test_an_unreachable_endpoint_fails_as_other_commands_do() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdz.cli",
            "--endpoints",
            f"tcp://127.0.0.1:{free_port()}",
            "--dial-timeout",
            "200ms",
            "--command-timeout",
            "500ms",
            "check",
            "perf",
        ],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.startswith(b"Error: ") and result.stderr.count(b"\n") == 1


def _etcdctl(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ETCDCTL, "--endpoints", url, *args],  # type: ignore[list-item]
        capture_output=True,
        timeout=30,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def test_refusals_match_etcdctl(etcd: str, shared_node: LocalCluster) -> None:
    for put in (_etcdctl(etcd, "put", "/perf-d/k", "v"), ctl(shared_node, "put", "/perf-d/k", "v")):
        assert put.returncode == 0
    for args in (["--prefix", "/perf-d/"], ["--load", "zz"], ["--load", "xLarge", "--prefix", "/perf-d/"]):
        want = _etcdctl(etcd, "check", "perf", *args)
        got = ctl(shared_node, "check", "perf", *args)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), args
