"""``etcdzctl alarm|defrag|snapshot|endpoint hashkv``: etcdctl's maintenance commands and
their output."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from actors.supervisor import restore
from etcdz import _cli_format as fmt
from etcdz import snapshot
from etcdz.client import Client
from etcdz.errors import EtcdzError
from proto_schemas.maintenance import AlarmResponse

HASHKV_COLUMNS = ["ENDPOINT", "HASH"]
SNAPSHOT_COLUMNS = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    alarm = sub.add_parser("alarm", help="Alarm related commands", parents=parents)
    alarm.add_argument("action", choices=["list", "disarm"])
    defrag = sub.add_parser("defrag", help="Defragments the storage of the etcdz members", parents=parents)
    defrag.add_argument(
        "--cluster", action="store_true", help="use all endpoints from the cluster member list"
    )
    snap = sub.add_parser("snapshot", help="Manages etcdz node snapshots", parents=parents)
    actions = snap.add_subparsers(dest="action", required=True)
    save = actions.add_parser(
        "save", help="Stores an etcdz node backend snapshot to a given file", parents=parents
    )
    save.add_argument("args", nargs="*")
    status = actions.add_parser(
        "status", help="Gets backend snapshot status of a given file", parents=parents
    )
    status.add_argument("args", nargs="*")
    restore = actions.add_parser(
        "restore", help="Restores an etcdz member snapshot to an etcdz directory", parents=parents
    )
    restore.add_argument("args", nargs="*")
    restore.add_argument("--data-dir", default="", help="path to the data directory (default: NAME.etcdz)")
    restore.add_argument("--name", default="default", help="human-readable name for this member")
    restore.add_argument(
        "--initial-cluster",
        default="default=tcp://127.0.0.1:2380",
        help="initial cluster configuration for restore bootstrap",
    )
    restore.add_argument(
        "--initial-cluster-token", default="etcd-cluster", help="initial cluster token for the cluster"
    )
    restore.add_argument(
        "--initial-advertise-peer-urls",
        default="tcp://127.0.0.1:2380",
        help="list of this member's peer URLs to advertise to the rest of the cluster",
    )


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
) -> int:
    code = 0
    rows: list[tuple[str, Any]] = []
    for endpoint in endpoints:
        with connect([endpoint]) as client:
            try:
                rows.append((endpoint, client.hash_kv()))
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
        run_restore(args, path, err)
        return 0
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


def run_restore(args: argparse.Namespace, path: str, err: Callable[[str], None]) -> None:
    """etcdutl's restore: no output but its log lines (on stderr), the data dir made whole."""
    data_dir = os.path.abspath(args.data_dir or f"{args.name}.etcdz")
    peer_urls = [u.strip() for u in args.initial_advertise_peer_urls.split(",") if u.strip()]
    try:
        made = restore.plan(args.name, args.initial_cluster, args.initial_cluster_token, peer_urls)
        header, pieces = snapshot.read(path)
        err(_log_line("restoring snapshot", path=path, data_dir=data_dir, revision=header.revision))
        restore.restore(data_dir, made, pieces)
    except restore.RestoreError as exc:
        raise fmt.ExitError(str(exc)) from None
    err(
        _log_line(
            "restored snapshot",
            path=path,
            data_dir=data_dir,
            member_id=f"{made.member_id:x}",
            cluster_id=f"{made.cluster_id:x}",
        )
    )


def _log_line(msg: str, **fields: Any) -> str:
    return fmt.to_json({"level": "info", "ts": round(time.time(), 6), "msg": msg, **fields})
