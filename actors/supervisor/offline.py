"""etcdutl's offline commands, on files and data dirs rather than a running member:
``etcdz snapshot restore FILE --name ... --data-dir ...``, ``etcdz snapshot status FILE`` and
``etcdz defrag --data-dir DIR``.

They write (or read) a data dir, so they belong to the server's command, as etcd moved them
from etcdctl to etcdutl; ``etcdzctl snapshot restore`` and ``etcdzctl defrag --data-dir`` run
these for scripts written for etcdctl 3.4. Output as etcdutl's: restore and defrag say only
log lines on stderr (JSON), status prints the file's figures; a refusal is ``Error: ...`` (for
defrag, etcdctl's ``Failed to defragment etcd data[DIR] (...)``) and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import plyvel

from actors.mvcc import snapshots
from actors.mvcc.verified import Verified
from actors.supervisor import restore
from etcdz import snapshot
from etcdz._cli_flags import restore_flags
from etcdz._cli_maintenance import print_status
from etcdz.errors import EtcdzError


def snapshot_main(argv: list[str]) -> int:
    """``etcdz snapshot restore|status ...``."""
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    if argv[:1] == ["restore"]:
        return restore_main(argv[1:])
    sys.stderr.write("usage: etcdz snapshot restore|status FILE ... (--help for each)\n")
    return 2


def restore_main(argv: list[str]) -> int:
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


def status_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="etcdz snapshot status", description="Gets backend snapshot status of a given file"
    )
    p.add_argument("path")
    p.add_argument("-w", "--write-out", default="simple", choices=["simple", "table", "json"])
    args = p.parse_args(argv)
    try:
        print_status(args.path, args.write_out, _out)
    except EtcdzError as exc:
        sys.stderr.write(f"Error: {exc.message}\n")
        return 1
    return 0


def defrag_main(argv: list[str]) -> int:
    """``etcdz defrag --data-dir DIR``: the backend of a stopped member, copied into a fresh
    LevelDB that replaces it (what the member does for ``etcdzctl defrag``, offline)."""
    p = argparse.ArgumentParser(
        prog="etcdz defrag",
        description="Defragments the backend of a stopped member's data dir "
        "(a running member: etcdzctl defrag)",
    )
    p.add_argument("--data-dir", required=True, help="the data dir of a member that is not running")
    args = p.parse_args(argv)
    try:
        before, after = defrag(args.data_dir)
    except (plyvel.Error, OSError) as exc:
        sys.stderr.write(f"Failed to defragment etcd data[{args.data_dir}] ({_reason(exc)})\n")
        return 1
    _log("defragmented", data_dir=os.path.abspath(args.data_dir), db_size_before=before, db_size_after=after)
    return 0


def defrag(data_dir: str) -> tuple[int, int]:
    """Defragment ``data_dir``'s backend; -> its size before and after (bytes). LevelDB's lock
    refuses a backend its member holds open, and is taken before anything is touched; the swap
    is the crash-safe one of snapshot installs (the leftovers of an interrupted one are cleared
    first, as the member does at start)."""
    db_dir = os.path.join(data_dir, "member", "db")
    if not os.path.isdir(db_dir):
        raise FileNotFoundError(f"cannot open database at {db_dir}: no such directory")
    db = plyvel.DB(db_dir)
    try:
        snapshots.recover(db_dir)  # with the lock held: no member is installing meanwhile
        before = _size(db_dir)
        copy = snapshots.Incoming(db_dir, snap_id=0)
        try:
            source = snapshots.Outgoing(Verified(db), index=0)  # a garbled record stops the copy
            done = False
            while not done:
                seq, pairs, done = source.next_piece()
                copy.add(seq, pairs)
        except BaseException:
            copy.abandon()
            raise
        ready = copy.finish()
    finally:
        db.close()
    snapshots.swap_in(db_dir, ready)
    return before, _size(db_dir)


def _size(path: str) -> int:
    return sum(e.stat().st_size for e in os.scandir(path) if e.is_file())


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "lock" in text.lower():
        return f"{text}: the member is running; stop it first, or defragment it online with etcdzctl defrag"
    return text


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _log(msg: str, **fields: Any) -> None:
    sys.stderr.write(json.dumps({"level": "info", "ts": round(time.time(), 6), "msg": msg, **fields}) + "\n")
