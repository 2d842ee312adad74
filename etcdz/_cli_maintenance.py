"""``etcdzctl alarm|defrag|snapshot|endpoint hashkv``: etcdctl's maintenance commands and
their output."""

from __future__ import annotations

import argparse
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
    return 0


def run_restore(args: argparse.Namespace, path: str) -> int:
    """etcdctl 3.4's ``snapshot restore``: run by the server's command (``etcdz snapshot
    restore``, etcdutl's counterpart), which writes the data dir; the client never imports the
    server's code. Its log lines and errors reach stderr as they are."""
    argv = [sys.executable, "-m", "actors.supervisor", "snapshot", "restore", path, "--name", args.name]
    argv += ["--initial-cluster", args.initial_cluster, "--initial-cluster-token", args.initial_cluster_token]
    argv += ["--initial-advertise-peer-urls", args.initial_advertise_peer_urls]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
