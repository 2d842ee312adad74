"""``etcdz snapshot restore FILE --name ... --data-dir ...``: etcdutl's offline restore.

It writes a data dir, so it belongs to the server's command, as etcd moved it from etcdctl to
etcdutl; ``etcdzctl snapshot restore`` runs this command for scripts written for etcdctl 3.4.
Its only output is its log lines on stderr (JSON, as etcdutl's); a refusal is ``Error: ...``
and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from actors.supervisor import restore
from etcdz import snapshot
from etcdz._cli_flags import restore_flags
from etcdz.errors import EtcdzError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="etcdz snapshot restore", description="Restores an etcdz member snapshot to an etcdz directory"
    )
    p.add_argument("path")
    restore_flags(p)
    args = p.parse_args(argv)
    data_dir = os.path.abspath(args.data_dir or f"{args.name}.etcdz")
    peer_urls = [u.strip() for u in args.initial_advertise_peer_urls.split(",") if u.strip()]
    try:
        made = restore.plan(args.name, args.initial_cluster, args.initial_cluster_token, peer_urls)
        header, pieces = snapshot.read(args.path)
        _log("restoring snapshot", path=args.path, data_dir=data_dir, revision=header.revision)
        restore.restore(data_dir, made, pieces)
    except (restore.RestoreError, EtcdzError, OSError, ValueError) as exc:
        sys.stderr.write(f"Error: {getattr(exc, 'message', exc)}\n")
        return 1
    _log(
        "restored snapshot",
        path=args.path,
        data_dir=data_dir,
        member_id=f"{made.member_id:x}",
        cluster_id=f"{made.cluster_id:x}",
    )
    return 0


def _log(msg: str, **fields: Any) -> None:
    sys.stderr.write(json.dumps({"level": "info", "ts": round(time.time(), 6), "msg": msg, **fields}) + "\n")
