"""``etcdzctl alarm|defrag|snapshot|endpoint hashkv``: etcdctl's maintenance commands and
their output."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz import snapshot
from etcdz.errors import EtcdzError
from proto_schemas.maintenance import AlarmResponse

if TYPE_CHECKING:
    from etcdz.client import Client

HASHKV_COLUMNS = ["ENDPOINT", "HASH"]
SNAPSHOT_COLUMNS = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]


def run_alarm(args: argparse.Namespace, client: Client, out: Callable[[str], None], mode: str) -> int:
    resp = client.alarms() if args.action == "list" else client.alarm_disarm()
    if mode == "json":
        out(fmt.to_json(alarm_json(resp)))
    else:
        for m in resp.alarms:
            out(f"memberID:{m.member_id} alarm:{m.alarm.name}")
    return 0


def alarm_json(resp: AlarmResponse) -> dict[str, Any]:
    """As etcd 3.4 prints it: its Alarm answers carry no header."""
    out: dict[str, Any] = {}
    if resp.alarms:
        out["alarms"] = [{"memberID": m.member_id, "alarm": int(m.alarm)} for m in resp.alarms]
    return out


def run_defrag(
    endpoints: list[str],
    connect: Callable[..., Client],
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    code = 0
    for endpoint in endpoints:
        with connect([endpoint]) as client:
            try:
                client.defragment()
            except EtcdzError as exc:
                err(f"Failed to defragment etcd member[{endpoint}] ({exc.message})")
                code = 1
                continue
        out(f"Finished defragmenting etcd member[{endpoint}]")
    return code


def run_hashkv(
    endpoints: list[str],
    connect: Callable[..., Client],
    out: Callable[[str], None],
    err: Callable[[str], None],
    mode: str,
    revision: int = 0,
) -> int:
    code = 0
    rows: list[tuple[str, Any]] = []
    for endpoint in endpoints:
        with connect([endpoint]) as client:
            try:
                rows.append((endpoint, client.hash_kv(revision)))
            except EtcdzError as exc:
                err(f"Failed to get the hash of endpoint {endpoint} ({exc.message})")
                code = 1
    if mode == "json":
        out(
            fmt.to_json(
                [
                    {
                        "Endpoint": e,
                        "HashKV": {
                            "header": fmt.header_json(r.header),
                            "hash": r.hash,
                            **({"compact_revision": r.compact_revision} if r.compact_revision else {}),
                        },
                    }
                    for e, r in rows
                ]
            )
        )
    elif mode == "fields":
        for e, r in rows:
            lines = [f'"Endpoint" : {fmt.go_quote(e)}', f'"Hash" : {r.hash}', ""]
            out("\n".join([*fmt.fields_header(r.header), *lines]))
    elif mode == "table":
        out(fmt.table(HASHKV_COLUMNS, [[e, str(r.hash)] for e, r in rows]))
    else:
        for e, r in rows:
            out(f"{e}, {r.hash}")
    return code


def run_snapshot(
    args: argparse.Namespace,
    endpoints: list[str],
    connect: Callable[..., Client],
    out: Callable[[str], None],
    err: Callable[[str], None],
    mode: str,
) -> int:
    if len(args.args) != 1:
        raise fmt.ExitError(f"snapshot {args.action} expects one argument", fmt.EXIT_BAD_ARGS)
    path = args.args[0]
    if args.action == "restore":
        return run_restore(args, path)
    if args.action == "save":
        if len(endpoints) != 1:
            raise fmt.ExitError(
                f"snapshot must be requested to one selected node, not multiple {endpoints}",
                fmt.EXIT_BAD_ARGS,
            )
        with connect(endpoints) as client:
            client.snapshot(path)
        out(f"Snapshot saved at {path}")
        return 0
    print_status(path, mode, out)
    return 0


def print_status(path: str, mode: str, out: Callable[[str], None]) -> None:
    """A snapshot file's hash, revision, keys and size as etcdctl 3.4 and etcdutl print them
    (shared with the server's ``etcdz snapshot status``)."""
    st = snapshot.status(path)
    row = [f"{st.hash:x}", str(st.revision), str(st.total_keys), fmt.human_bytes(st.total_size)]
    if mode == "json":
        out(
            fmt.to_json(
                {
                    "hash": st.hash,
                    "revision": st.revision,
                    "totalKey": st.total_keys,
                    "totalSize": st.total_size,
                }
            )
        )
    elif mode == "table":
        out(fmt.table(SNAPSHOT_COLUMNS, [row]))
    else:
        out(", ".join(row))


def run_restore(args: argparse.Namespace, path: str) -> int:
    """etcdctl 3.4's ``snapshot restore``, deprecated as etcdctl 3.5 deprecates it for
    etcdutl's: it writes a data dir, which is the server's work, so it runs the server's
    command (``etcdz snapshot restore``); the client never imports the server's code. Its log
    lines and errors reach stderr as they are."""
    argv = ["snapshot", "restore", path, "--name", args.name]
    argv += ["--initial-cluster", args.initial_cluster, "--initial-cluster-token", args.initial_cluster_token]
    argv += ["--initial-advertise-peer-urls", args.initial_advertise_peer_urls]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    sys.stderr.write("Deprecated: Use `etcdz snapshot restore` instead.\n\n")
    return run_server_command(argv)


def run_offline_defrag(data_dir: str) -> int:
    """etcdctl's ``defrag --data-dir``, deprecated as in etcdctl 3.5: the server's ``etcdz
    defrag --data-dir`` does it, on the data dir of a stopped member."""
    sys.stderr.write("Deprecated: Use `etcdz defrag --data-dir` instead.\n\n")
    return run_server_command(["defrag", "--data-dir", data_dir])


def run_server_command(argv: list[str]) -> int:
    """Run ``etcdz ARGV`` (the one installed beside this Python first, then on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "etcdz")
    server = beside if os.access(beside, os.X_OK) else shutil.which("etcdz")
    if server is None:
        raise fmt.ExitError(
            f"{' '.join(argv[:2])} is the server's work: the etcdz command (installed with the "
            "etcdz server) was not found beside this Python nor on PATH"
        )
    return subprocess.run([server, *argv], stdin=subprocess.DEVNULL, check=False).returncode
