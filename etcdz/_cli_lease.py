"""``etcdzctl lease ...``: etcdctl's lease commands and their output."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz.errors import EtcdzError, LeaseNotFound

if TYPE_CHECKING:
    from etcdz.client import Client


# etcdctl's words when the argument count is wrong
NEEDS = {
    "grant": "lease grant command needs TTL argument",
    "revoke": "lease revoke command needs 1 argument",
    "timetolive": "lease timetolive command needs lease ID as argument",
    "keep-alive": "lease keep-alive command needs lease ID as argument",
}


def _argument(args: argparse.Namespace) -> int:
    if len(args.args) != 1:
        raise fmt.ExitError(NEEDS[args.action], fmt.EXIT_BAD_ARGS)
    if args.action == "grant":
        return fmt.parse_int(args.args[0], 10, "bad TTL ({})")
    return fmt.parse_int(args.args[0], 16, "bad lease ID arg ({}), expecting ID in Hex")


def _flat(resp: Any, **fields: Any) -> str:
    """etcdctl prints lease responses with the header's fields inlined (Go's embedded struct)."""
    h = resp.header
    head = {"cluster_id": h.cluster_id, "member_id": h.member_id, "revision": h.revision}
    return fmt.to_json({**head, "raft_term": h.raft_term, **fields})


def _fields(resp: Any, *lines: str) -> str:
    return "\n".join([*fmt.fields_header(resp.header), *lines])


def run(args: argparse.Namespace, client: Client, out: Callable[[str], None], mode: str) -> int:
    json_out = mode == "json"
    if args.action == "list":
        listed = client.leases()
        if mode == "fields":
            out(_fields(listed, *(f'"ID" : {le.id}' for le in listed.leases)))
        elif json_out:
            out(_flat(listed, leases=[{"id": le.id} for le in listed.leases]))
        else:
            out(f"found {len(listed.leases)} leases")
            for le in listed.leases:
                out(f"{le.id:016x}")
        return 0
    value = _argument(args)
    if args.action == "grant":
        try:
            resp: Any = client.lease_grant(value)
        except EtcdzError as exc:
            raise fmt.ExitError(f"failed to grant lease ({exc.message})") from None
        if mode == "fields":
            out(_fields(resp, f'"ID" : {resp.id}', f'"TTL" : {resp.ttl}'))
        else:
            out(
                _flat(resp, ID=resp.id, TTL=resp.ttl, Error="")
                if json_out
                else f"lease {resp.id:016x} granted with TTL({resp.ttl}s)"
            )
    elif args.action == "revoke":
        try:
            resp = client.lease_revoke(value)
        except EtcdzError as exc:
            raise fmt.ExitError(f"failed to revoke lease ({exc.message})") from None
        if mode == "fields":
            out(_fields(resp))
        else:
            out(
                fmt.to_json({"header": fmt.header_json(resp.header)})
                if json_out
                else f"lease {value:016x} revoked"
            )
    elif args.action == "timetolive":
        resp = client.lease_time_to_live(value, keys=args.keys)
        if mode == "fields":
            head = [f'"ID" : {resp.id}', f'"TTL" : {resp.ttl}', f'"GrantedTTL" : {resp.granted_ttl}']
            out(_fields(resp, *head, *(f'"Key" : {fmt.go_quote(k)}' for k in resp.keys)))
        elif json_out:
            keys = [fmt._b64(k) for k in resp.keys] or None
            out(_flat(resp, id=resp.id, ttl=resp.ttl, **{"granted-ttl": resp.granted_ttl}, keys=keys))
        elif resp.ttl == -1:
            out(f"lease {resp.id:016x} already expired")
        else:
            line = f"lease {resp.id:016x} granted with TTL({resp.granted_ttl}s), remaining({resp.ttl}s)"
            if args.keys:
                line += ", attached keys([" + " ".join(k.decode(errors="replace") for k in resp.keys) + "])"
            out(line)
    else:
        _keep_alive(client, value, args.once, out, mode)
    return 0


def _keep_alive(client: Client, lease_id: int, once: bool, out: Callable[[str], None], mode: str) -> None:
    while True:
        try:
            resp = client.lease_keep_alive_once(lease_id)
        except LeaseNotFound as exc:
            if once:
                raise fmt.ExitError(exc.message, fmt.EXIT_BAD_CONNECTION) from None
            out(f"lease {lease_id:016x} expired or revoked.")
            return
        if mode == "fields":
            out(_fields(resp, f'"ID" : {resp.id}', f'"TTL" : {resp.ttl}'))
        else:
            out(
                _flat(resp, ID=resp.id, TTL=resp.ttl)
                if mode == "json"
                else f"lease {lease_id:016x} keepalived with TTL({resp.ttl})"
            )
        if once:
            return
        time.sleep(max(resp.ttl / 3, 0.5))
