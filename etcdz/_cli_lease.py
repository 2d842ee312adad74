"""``etcdzctl lease ...``: etcdctl's lease commands and their output."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from etcdz import _cli_format as fmt
from etcdz.client import Client


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    lease = sub.add_parser("lease", help="Lease related commands", parents=parents)
    actions = lease.add_subparsers(dest="action", required=True)
    grant = actions.add_parser("grant", help="Creates leases", parents=parents)
    grant.add_argument("ttl", type=int)
    revoke = actions.add_parser("revoke", help="Revokes leases", parents=parents)
    revoke.add_argument("lease_id")
    ttl = actions.add_parser("timetolive", help="Get lease information", parents=parents)
    ttl.add_argument("lease_id")
    ttl.add_argument("--keys", action="store_true", help="Get keys attached to this lease")
    actions.add_parser("list", help="List all active leases", parents=parents)
    keep = actions.add_parser("keep-alive", help="Keeps leases alive (renew)", parents=parents)
    keep.add_argument("lease_id")
    keep.add_argument(
        "--once", action="store_true", help="Resets the keep-alive time to its original value once"
    )


def _lease_id(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"bad lease ID arg ({text!r}), expecting ID in Hex") from None


def _json(resp: Any) -> str:
    out: dict[str, Any] = {"cluster_id": resp.header.cluster_id, "member_id": resp.header.member_id}
    out["revision"] = resp.header.revision
    out["raft_term"] = resp.header.raft_term
    for name, key in (("id", "id"), ("ttl", "ttl"), ("granted_ttl", "granted-ttl")):
        if hasattr(resp, name):
            out[key] = getattr(resp, name)
    if getattr(resp, "keys", None):
        out["keys"] = [fmt._b64(k) for k in resp.keys]
    return fmt.to_json(out)


def run(args: argparse.Namespace, client: Client, out: Callable[[str], None], mode: str) -> int:
    if args.action == "grant":
        resp: Any = client.lease_grant(args.ttl)
        out(_json(resp) if mode == "json" else f"lease {resp.id:x} granted with TTL({resp.ttl}s)")
    elif args.action == "revoke":
        lease_id = _lease_id(args.lease_id)
        resp = client.lease_revoke(lease_id)
        out(_json(resp) if mode == "json" else f"lease {lease_id:x} revoked")
    elif args.action == "timetolive":
        resp = client.lease_time_to_live(_lease_id(args.lease_id), keys=args.keys)
        if mode == "json":
            out(_json(resp))
        elif resp.ttl == -1:
            out(f"lease {resp.id:x} already expired")
        else:
            line = f"lease {resp.id:x} granted with TTL({resp.granted_ttl}s), remaining({resp.ttl}s)"
            if args.keys:
                line += ", attached keys([" + " ".join(k.decode(errors="replace") for k in resp.keys) + "])"
            out(line)
    elif args.action == "list":
        resp = client.leases()
        if mode == "json":
            out(fmt.to_json({"leases": [{"ID": le.id} for le in resp.leases]}))
        else:
            out(f"found {len(resp.leases)} leases")
            for le in resp.leases:
                out(f"{le.id:x}")
    else:
        lease_id = _lease_id(args.lease_id)
        while True:
            resp = client.lease_keep_alive_once(lease_id)
            out(_json(resp) if mode == "json" else f"lease {lease_id:x} keepalived with TTL({resp.ttl})")
            if args.once:
                break
            time.sleep(max(resp.ttl / 3, 0.5))
    return 0
