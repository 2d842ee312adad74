"""etcdzctl's grammar: every command's arguments and flags, as etcdctl spells them.

Kept apart from the commands themselves so that building the parser (every call, ``--help``
included) imports nothing but argparse: a command's module, the client and the messages are
imported only when that command runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_CHECK_PREFIX = "/etcdctl-check-perf/"
SORT_TARGETS = {"CREATE": "CREATE", "KEY": "KEY", "MODIFY": "MOD", "VALUE": "VALUE", "VERSION": "VERSION"}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
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


_GLOBALS = Parser(add_help=False)
_global_flags(_GLOBALS, suppress=True)


def kv_parsers(sub: Any) -> None:
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


def _misc_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    txn = sub.add_parser("txn", help="Txn processes all the requests in one transaction", parents=parents)
    txn.add_argument("-i", "--interactive", action="store_true")
    compaction = sub.add_parser("compaction", help="Compacts the event history in etcdz", parents=parents)
    compaction.add_argument("revision", type=int)
    compaction.add_argument("--physical", action="store_true")
    endpoint = sub.add_parser("endpoint", help="Endpoint related commands", parents=parents)
    endpoint.add_argument("action", choices=["status", "health", "hashkv"])
    endpoint.add_argument("--cluster", action="store_true")


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole grammar, or with ``argv`` only the group of the command it names: argparse
    builds about fifty parsers for every command (~40 ms, mostly gettext look-ups), and a call
    runs one command. Help asked before any command gets the whole grammar."""
    p = Parser(prog="etcdzctl", description="A command line client for etcdz, mirroring etcdctl.")
    _global_flags(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True)
    words = list(argv or ())
    first = next((w for w in words if w in _COMMANDS or w in ("-h", "--help")), None)
    for commands, group in _GROUPS:
        if first is None or first not in _COMMANDS or first in commands:
            group(sub, [_GLOBALS])
    return p


def _check_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check", help="commands for checking properties of the etcdz cluster", parents=parents
    )
    actions = check.add_subparsers(dest="action", required=True)
    perf = actions.add_parser("perf", help="Check the performance of the etcdz cluster", parents=parents)
    perf.add_argument(
        "--load",
        default="s",
        help="The performance check's workload model. "
        "Accepted workloads: s(small), m(medium), l(large), xl(xLarge)",
    )
    perf.add_argument(
        "--prefix", default=DEFAULT_CHECK_PREFIX, help="The prefix for writing the performance check's keys."
    )
    perf.add_argument(
        "--auto-compact",
        action="store_true",
        help="Compact storage with last revision after test is finished.",
    )
    perf.add_argument("--auto-defrag", action="store_true", help="Defragment storage after test is finished.")
    perf.add_argument("--duration", type=int, default=None, help=argparse.SUPPRESS)  # for tests


def _auth_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="User related commands", parents=parents)
    users = user.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="Adds a new user", parents=parents)
    add.add_argument("args", nargs="*")
    add.add_argument("--no-password", action="store_true", help="Create a user without password")
    add.add_argument(
        "--interactive", default="true", help="Read password from stdin instead of interactive terminal"
    )
    get = users.add_parser("get", help="Gets detailed information of a user", parents=parents)
    get.add_argument("args", nargs="*")
    get.add_argument("--detail", action="store_true", help="Show permissions of roles granted to the user")
    users.add_parser("list", help="Lists all users", parents=parents)
    for name, text in (("delete", "Deletes a user"), ("passwd", "Changes password of user")):
        action = users.add_parser(name, help=text, parents=parents)
        action.add_argument("args", nargs="*")
        if name == "passwd":
            action.add_argument("--interactive", default="true", help="If true, read password from stdin")
    for name, text in (
        ("grant-role", "Grants a role to a user"),
        ("revoke-role", "Revokes a role from a user"),
    ):
        users.add_parser(name, help=text, parents=parents).add_argument("args", nargs="*")

    role = sub.add_parser("role", help="Role related commands", parents=parents)
    roles = role.add_subparsers(dest="action", required=True)
    for name, text in (
        ("add", "Adds a new role"),
        ("delete", "Deletes a role"),
        ("get", "Gets detailed information of a role"),
    ):
        roles.add_parser(name, help=text, parents=parents).add_argument("args", nargs="*")
    roles.add_parser("list", help="Lists all roles", parents=parents)
    for name, text in (
        ("grant-permission", "Grants a key to a role"),
        ("revoke-permission", "Revokes a key from a role"),
    ):
        action = roles.add_parser(name, help=text, parents=parents)
        action.add_argument("args", nargs="*")
        action.add_argument("--prefix", action="store_true", help="grant a prefix permission")
        action.add_argument(
            "--from-key",
            action="store_true",
            help="grant a permission of keys that are greater than or equal to the given key",
        )

    auth = sub.add_parser("auth", help="Enable or disable authentication", parents=parents)
    auth.add_argument("action", choices=["enable", "disable", "status"])


def _maintenance_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
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
    restore_flags(restore)


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", nargs="?", default="")
    p.add_argument("range_end", nargs="?", default=None)
    p.add_argument("--prefix", action="store_true", help="Watch on a prefix if prefix is set")
    p.add_argument("--rev", type=int, default=0, help="Revision to start watching")
    p.add_argument(
        "--prev-kv", action="store_true", help="get the previous key-value pair before the event happens"
    )


def _watch_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="Watches events stream on keys or prefixes", parents=parents)
    add_watch_arguments(p)
    p.add_argument("-i", "--interactive", action="store_true", help="Interactive mode")


def _lease_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    lease = sub.add_parser("lease", help="Lease related commands", parents=parents)
    actions = lease.add_subparsers(dest="action", required=True)
    grant = actions.add_parser("grant", help="Creates leases", parents=parents)
    grant.add_argument("args", nargs="*")
    revoke = actions.add_parser("revoke", help="Revokes leases", parents=parents)
    revoke.add_argument("args", nargs="*")
    ttl = actions.add_parser("timetolive", help="Get lease information", parents=parents)
    ttl.add_argument("args", nargs="*")
    ttl.add_argument("--keys", action="store_true", help="Get keys attached to this lease")
    actions.add_parser("list", help="List all active leases", parents=parents)
    keep = actions.add_parser("keep-alive", help="Keeps leases alive (renew)", parents=parents)
    keep.add_argument("args", nargs="*")
    keep.add_argument(
        "--once", action="store_true", help="Resets the keep-alive time to its original value once"
    )


def _cluster_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    member = sub.add_parser("member", help="Membership related commands", parents=parents)
    actions = member.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Lists all members in the cluster", parents=parents)
    add = actions.add_parser("add", help="Adds a member into the cluster", parents=parents)
    add.add_argument("name")
    add.add_argument("--peer-urls", required=True, help="comma separated peer URLs for the new member")
    add.add_argument("--learner", action="store_true", help="indicates if the new member is raft learner")
    remove = actions.add_parser("remove", help="Removes a member from the cluster", parents=parents)
    remove.add_argument("member_id")
    update = actions.add_parser("update", help="Updates a member in the cluster", parents=parents)
    update.add_argument("member_id")
    update.add_argument("--peer-urls", required=True)
    promote = actions.add_parser(
        "promote", help="Promotes a non-voting member in the cluster", parents=parents
    )
    promote.add_argument("member_id")
    move = sub.add_parser(
        "move-leader", help="Transfers leadership to another etcdz cluster member.", parents=parents
    )
    move.add_argument("transferee_id")


def _coordination_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    lock = sub.add_parser("lock", help="Acquires a named lock", parents=parents)
    lock.add_argument("--ttl", type=int, default=10, help="timeout for session")
    lock.add_argument("name", nargs="?", default="")
    lock.add_argument("exec", nargs=argparse.REMAINDER, help="a command to run while holding the lock")
    elect = sub.add_parser("elect", help="Observes and participates in leader election", parents=parents)
    elect.add_argument("-l", "--listen", action="store_true", help="observation mode")
    elect.add_argument("--ttl", type=int, default=10, help="timeout for session")
    elect.add_argument("name", nargs="?", default="")
    elect.add_argument("proposal", nargs="?")


_GROUPS: tuple[tuple[frozenset[str], Callable[[Any, list[argparse.ArgumentParser]], None]], ...] = (
    (frozenset({"put", "get", "del"}), lambda sub, parents: kv_parsers(sub)),
    (frozenset({"txn", "compaction", "endpoint"}), _misc_parsers),
    (frozenset({"member", "move-leader"}), _cluster_parsers),
    (frozenset({"lease"}), _lease_parsers),
    (frozenset({"watch"}), _watch_parsers),
    (frozenset({"alarm", "defrag", "snapshot"}), _maintenance_parsers),
    (frozenset({"user", "role", "auth"}), _auth_parsers),
    (frozenset({"check"}), _check_parsers),
    (frozenset({"lock", "elect"}), _coordination_parsers),
)
_COMMANDS = {command for commands, _ in _GROUPS for command in commands}


def restore_flags(p: argparse.ArgumentParser) -> None:
    """etcdutl's ``snapshot restore`` flags: etcdzctl's command passes them on to the server's
    (``etcdz snapshot restore``), which reads them with this same definition."""
    p.add_argument("--data-dir", default="", help="path to the data directory (default: NAME.etcdz)")
    p.add_argument("--name", default="default", help="human-readable name for this member")
    p.add_argument(
        "--initial-cluster",
        default="default=tcp://127.0.0.1:2380",
        help="initial cluster configuration for restore bootstrap",
    )
    p.add_argument(
        "--initial-cluster-token", default="etcd-cluster", help="initial cluster token for the cluster"
    )
    p.add_argument(
        "--initial-advertise-peer-urls",
        default="tcp://127.0.0.1:2380",
        help="list of this member's peer URLs to advertise to the rest of the cluster",
    )
