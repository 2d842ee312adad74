"""``etcdzctl``: etcdctl's commands, flags and output, against etcdz.

    etcdzctl [--endpoints tcp://127.0.0.1:2379] [-w simple|json|table] [--command-timeout 5s] \\
        put|get|del|txn|compaction|endpoint status|health|hashkv|member ...|move-leader ...|
        lease ...|watch ...|alarm list|disarm|defrag|snapshot save|status|restore|
        user ...|role ...|auth enable|disable|status|check perf  [--user name[:password]] [--password ...]

Errors go to stderr as ``Error: <etcd's text>`` with exit code 1, as etcdctl's do.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from etcdz import _cli_auth as authfmt
from etcdz import _cli_check as checkfmt
from etcdz import _cli_cluster as clusterfmt
from etcdz import _cli_format as fmt
from etcdz import _cli_lease as leasefmt
from etcdz import _cli_maintenance as maintfmt
from etcdz import _cli_txn as txnfmt
from etcdz import _cli_watch as watchfmt
from etcdz import ops
from etcdz.client import Client
from etcdz.errors import EtcdzError, PermissionDenied, Unhealthy
from proto_schemas.kv import SortOrder, SortTarget

SORT_TARGETS = {
    "CREATE": SortTarget.CREATE,
    "KEY": SortTarget.KEY,
    "MODIFY": SortTarget.MOD,
    "VALUE": SortTarget.VALUE,
    "VERSION": SortTarget.VERSION,
}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits; a txn line must raise instead
        raise UsageError(message)


def _global_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    """etcdctl's global flags; also accepted after the command (as cobra does), where their
    defaults are suppressed so they do not overwrite values given before it."""

    def default(value: str) -> str:
        return argparse.SUPPRESS if suppress else value

    p.add_argument(
        "--endpoints", default=default(os.environ.get("ETCDZCTL_ENDPOINTS", "tcp://127.0.0.1:2379"))
    )
    p.add_argument(
        "--watch-endpoints",
        default=default(os.environ.get("ETCDZCTL_WATCH_ENDPOINTS", "")),
        help="watch hubs to use instead of those the members advertise",
    )
    p.add_argument("-w", "--write-out", choices=["simple", "json", "table"], default=default("simple"))
    p.add_argument("--command-timeout", default=default("5s"))
    p.add_argument("--dial-timeout", default=default("2s"))
    p.add_argument(
        "--user",
        default=default(os.environ.get("ETCDZCTL_USER", "")),
        help="username[:password] for authentication (prompt if password is not supplied)",
    )
    p.add_argument(
        "--cacert",
        default=default(os.environ.get("ETCDZCTL_CACERT", "")),
        help="the members' public CurveZMQ certificate (NAME.key): encrypt and verify the servers",
    )
    p.add_argument(
        "--key",
        default=default(os.environ.get("ETCDZCTL_KEY", "")),
        help="this client's CurveZMQ secret certificate (NAME.key_secret), for --client-cert-auth members",
    )
    p.add_argument(
        "--password",
        default=default(os.environ.get("ETCDZCTL_PASSWORD", "")),
        help="password for authentication (if this option is used, --user option shouldn't include password)",
    )


_GLOBALS = _Parser(add_help=False)
_global_flags(_GLOBALS, suppress=True)


def _kv_parsers(sub: Any) -> None:
    put = sub.add_parser("put", help="Puts the given key into the store", parents=[_GLOBALS])
    put.add_argument("key")
    put.add_argument("value", nargs="?")
    put.add_argument("--prev-kv", action="store_true")
    put.add_argument("--ignore-value", action="store_true")
    put.add_argument("--ignore-lease", action="store_true")
    put.add_argument("--lease", default="0", help="lease ID (in hexadecimal) to attach to the key")

    get = sub.add_parser("get", help="Gets the key or a range of keys", parents=[_GLOBALS])
    get.add_argument("key")
    get.add_argument("range_end", nargs="?")
    get.add_argument("--prefix", action="store_true")
    get.add_argument("--from-key", action="store_true")
    get.add_argument("--limit", type=int, default=0)
    get.add_argument("--rev", type=int, default=0)
    get.add_argument("--sort-by", choices=sorted(SORT_TARGETS), default="")
    get.add_argument("--order", choices=["ASCEND", "DESCEND"], default="")
    get.add_argument("--keys-only", action="store_true")
    get.add_argument("--count-only", action="store_true")
    get.add_argument("--print-value-only", action="store_true")
    get.add_argument("--consistency", choices=["l", "s"], default="l")

    delete = sub.add_parser(
        "del", help="Removes the specified key or range of keys [key, range_end)", parents=[_GLOBALS]
    )
    delete.add_argument("key")
    delete.add_argument("range_end", nargs="?")
    delete.add_argument("--prefix", action="store_true")
    delete.add_argument("--from-key", action="store_true")
    delete.add_argument("--prev-kv", action="store_true")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="etcdzctl", description="A command line client for etcdz, mirroring etcdctl.")
    _global_flags(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True)
    _kv_parsers(sub)
    txn = sub.add_parser("txn", help="Txn processes all the requests in one transaction", parents=[_GLOBALS])
    txn.add_argument("-i", "--interactive", action="store_true")
    compaction = sub.add_parser("compaction", help="Compacts the event history in etcdz", parents=[_GLOBALS])
    compaction.add_argument("revision", type=int)
    compaction.add_argument("--physical", action="store_true")
    endpoint = sub.add_parser("endpoint", help="Endpoint related commands", parents=[_GLOBALS])
    endpoint.add_argument("action", choices=["status", "health", "hashkv"])
    endpoint.add_argument("--cluster", action="store_true")
    clusterfmt.add_parsers(sub, [_GLOBALS])
    leasefmt.add_parsers(sub, [_GLOBALS])
    watchfmt.add_parsers(sub, [_GLOBALS])
    maintfmt.add_parsers(sub, [_GLOBALS])
    authfmt.add_parsers(sub, [_GLOBALS])
    checkfmt.add_parsers(sub, [_GLOBALS])
    return p


def request_for(args: argparse.Namespace, stdin: Any = None) -> Any:
    """The request a put/get/del command line stands for (shared by txn's op lines)."""
    if args.command == "put":
        value = args.value
        if value is None:
            if args.ignore_value:
                value = ""
            elif stdin is None:
                raise UsageError("put command needs 1 argument and input from stdin or 2 arguments")
            else:
                value = stdin.read()
        lease = fmt.parse_int(args.lease, 16, "bad lease ID ({}), expecting ID in Hex")
        return ops.put(
            args.key,
            value,
            lease=lease,
            prev_kv=args.prev_kv,
            ignore_value=args.ignore_value,
            ignore_lease=args.ignore_lease,
        )
    if args.command == "get":
        if args.prefix and args.from_key:
            raise UsageError("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        order = {"": SortOrder.NONE, "ASCEND": SortOrder.ASCEND, "DESCEND": SortOrder.DESCEND}[args.order]
        target = SORT_TARGETS.get(args.sort_by, SortTarget.KEY)
        if args.sort_by and order == SortOrder.NONE:
            order = SortOrder.ASCEND  # etcdctl: a sort target alone sorts ascending
        return ops.get(
            args.key,
            range_end=args.range_end,
            prefix=args.prefix,
            from_key=args.from_key,
            limit=args.limit,
            revision=args.rev,
            sort_order=order,
            sort_target=target,
            serializable=args.consistency == "s",
            keys_only=args.keys_only,
            count_only=args.count_only,
        )
    if args.command == "del":
        if args.prefix and args.from_key:
            raise UsageError("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        return ops.delete(
            args.key,
            range_end=args.range_end,
            prefix=args.prefix,
            from_key=args.from_key,
            prev_kv=args.prev_kv,
        )
    raise UsageError(f"unknown command {args.command!r}")


def _txn_op(argv: list[str]) -> Any:
    sub = _Parser(prog="txn").add_subparsers(dest="command", required=True)
    _kv_parsers(sub)
    return request_for(
        sub._name_parser_map[argv[0]].parse_args(argv[1:], argparse.Namespace(command=argv[0]))
    )


class Output:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.out = sys.stdout.buffer

    def lines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            self.out.write(line + b"\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self.lines([text.encode()])


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


Connect = Callable[..., Client]  # (endpoints, **Client options) -> a client with the command's flags


def connector(args: argparse.Namespace) -> Connect:
    """Clients as the global flags describe them (timeouts, credentials, watch hubs)."""
    user, sep, password = args.user.partition(":")
    if args.password:
        if sep:
            raise UsageError("--user and --password cannot both carry a password")
        password = args.password
    elif user and not sep:
        password = getpass.getpass("Password: ")
    options: dict[str, Any] = {
        "timeout": fmt.parse_duration(args.command_timeout),
        "dial_timeout": fmt.parse_duration(args.dial_timeout),
        "watch_endpoints": _comma_list(args.watch_endpoints),
        "user": user or None,
        "password": password,
        "server_key": args.cacert or None,
        "client_key": args.key or None,
    }

    def connect(endpoints: list[str], **changes: Any) -> Client:
        client = Client(endpoints, **{**options, **changes})
        if client.user is not None:
            try:
                client.auth_token()  # as etcdctl: a failed login fails the command at once
            except EtcdzError as exc:
                client.close()
                raise fmt.ExitError(exc.message, fmt.EXIT_BAD_CONNECTION) from None
        return client

    return connect


def run(args: argparse.Namespace, out: Output) -> int:
    connect = connector(args)
    timeout = fmt.parse_duration(args.command_timeout)
    endpoints = _comma_list(args.endpoints)
    if getattr(args, "cluster", False):  # endpoint ..., defrag: every member's client URL
        with connect(endpoints) as client:
            endpoints = clusterfmt.cluster_endpoints(client)
    if args.command == "endpoint":
        if args.action == "hashkv":
            return maintfmt.run_hashkv(endpoints, connect, out.text, _stderr, out.mode)
        return _endpoint(args, endpoints, connect, out)
    slow = max(timeout, 60.0)
    if args.command == "defrag":
        return maintfmt.run_defrag(endpoints, lambda e: connect(e, timeout=slow), out.text, _stderr)
    if args.command == "snapshot":
        return maintfmt.run_snapshot(
            args, endpoints, lambda e: connect(e, timeout=slow), out.text, _stderr, out.mode
        )
    if args.command == "check":
        return checkfmt.run(args, endpoints, connect, out.out)
    if args.command == "move-leader":
        return clusterfmt.run_move_leader(args, endpoints, connect, out.text)
    groups: dict[str, Callable[..., int]] = {
        "alarm": maintfmt.run_alarm,
        "member": clusterfmt.run_member,
        "lease": leasefmt.run,
        "user": authfmt.run,
        "role": authfmt.run,
        "auth": authfmt.run,
    }
    if args.command in groups:
        with connect(endpoints) as client:
            return groups[args.command](args, client, out.text, out.mode)
    if args.command == "watch":
        with connect(endpoints) as client:
            return watchfmt.run(args, client, out.lines, out.mode)
    if out.mode == "table":
        raise UsageError("table not supported as output format")
    with connect(endpoints) as client:
        if args.command == "compaction":
            resp = client.compact(args.revision, physical=args.physical)
            out.text(
                fmt.to_json(fmt.response_json(resp))
                if out.mode == "json"
                else f"compacted revision {args.revision}"
            )
            return 0
        if args.command == "txn":
            prompt = out.text if args.interactive else None
            request = txnfmt.build(txnfmt.read_sections(iter(sys.stdin), prompt), _txn_op)
        else:
            request = request_for(args, sys.stdin)
        resp = client.call(request)
    if out.mode == "json":
        out.text(fmt.to_json(fmt.response_json(resp)))
    elif args.command == "get" and args.count_only:
        out.text(str(resp.count))
    else:
        out.lines(fmt.simple(resp, value_only=getattr(args, "print_value_only", False)))
    return 0


def _endpoint(args: argparse.Namespace, endpoints: list[str], connect: Connect, out: Output) -> int:
    code = 0
    rows: list[Any] = []
    for endpoint in endpoints:
        with connect([endpoint]) as client:
            started = time.perf_counter()
            try:
                if args.action == "health":
                    try:
                        client.get("health")
                    except PermissionDenied:
                        pass  # as etcdctl: the refusal went through consensus, which is the point
                    problems = client.status().errors  # what the member cannot serve (a hub down)
                    if problems:
                        raise Unhealthy("; ".join(problems))
                    rows.append((endpoint, True, fmt.duration(time.perf_counter() - started), ""))
                else:
                    rows.append((endpoint, client.status()))
            except EtcdzError as exc:
                code = 1
                if args.action == "health":
                    rows.append((endpoint, False, fmt.duration(time.perf_counter() - started), exc.message))
                else:
                    sys.stderr.write(f"Failed to get the status of endpoint {endpoint} ({exc.message})\n")
    if args.action == "health":
        if out.mode == "json":
            out.text(
                fmt.to_json(
                    [
                        {"endpoint": e, "health": h, "took": t, **({"error": err} if err else {})}
                        for e, h, t, err in rows
                    ]
                )
            )
        else:
            for e, healthy, took, err in rows:
                line = (
                    f"{e} is healthy: successfully committed proposal: took = {took}"
                    if healthy
                    else f"{e} is unhealthy: failed to commit proposal: {err}"
                )
                (out.text if healthy else _stderr)(line)
        if code:
            _stderr("Error: unhealthy cluster")
        return code
    if out.mode == "json":
        out.text(fmt.to_json([fmt.status_json(e, st) for e, st in rows]))
    elif out.mode == "table":
        out.text(fmt.table(fmt.STATUS_COLUMNS, [fmt.status_row(e, st) for e, st in rows]))
    else:
        for e, st in rows:
            out.text(", ".join(fmt.status_row(e, st)))
    return code


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        return run(args, Output(args.write_out))
    except UsageError as exc:
        _stderr(f"Error: {exc}")
        return 1
    except fmt.ExitError as exc:
        _stderr(f"Error: {exc.message}")
        return exc.code
    except EtcdzError as exc:
        _stderr(f"Error: {exc.message}")
        return 1
    except (ValueError, OSError) as exc:
        _stderr(f"Error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
