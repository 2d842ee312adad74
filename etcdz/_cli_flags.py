"""etcdzctl's grammar: every command's arguments and flags, as etcdctl spells them.

Kept apart from the commands themselves so that building the parser (every call, ``--help``
included) imports nothing but argparse: a command's module, the client and the messages are
imported only when that command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from etcdz._cli_pflag import (  # noqa: F401 (the grammar's names, as the commands import them)
    EXIT_BAD_ARGS,
    Parser,
    UsageError,
    add_bool,
    go_bool,
    go_duration,
    go_int,
)

DEFAULT_CHECK_PREFIX = "/etcdctl-check-perf/"
DEFAULT_DATASCALE_PREFIX = "/etcdctl-check-datascale/"
SORT_TARGETS = {"CREATE": "CREATE", "KEY": "KEY", "MODIFY": "MOD", "VALUE": "VALUE", "VERSION": "VERSION"}
OUTPUT_FORMATS = ("simple", "json", "table", "fields", "protobuf")
ENV_PREFIX = "ETCDZCTL_"  # etcdctl's ETCDCTL_: a global flag's name, upper case, '-' as '_'


def _global_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    """etcdctl's global flags; also accepted after the command (as cobra does), where their
    defaults are suppressed so they do not overwrite values given before it. Each may also come
    from the environment (``ETCDZCTL_<NAME>``, see ``environment_argv``)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def flag(*names: str, value: Any = "", kind: Any = None, help: str | None = None) -> None:
        if kind is go_bool:
            add_bool(p, *names, default=default(value), help=help)
        else:
            p.add_argument(*names, default=default(value), type=kind, help=help)

    flag("--endpoints", value="tcp://127.0.0.1:2379", help="the members' client URLs")
    flag("--watch-endpoints", help="watch hubs to use instead of those the members advertise")
    flag(
        "-w", "--write-out", value="simple", help="set the output format (" + ", ".join(OUTPUT_FORMATS) + ")"
    )
    flag("--hex", value=False, kind=go_bool, help="print byte strings as hex encoded strings")
    flag("--command-timeout", value="5s", kind=go_duration, help="timeout for short running command")
    flag("--dial-timeout", value="2s", kind=go_duration, help="dial timeout for client connections")
    flag(
        "--keepalive-time", value="2s", kind=go_duration, help="keepalive time (accepted; ZeroMQ reconnects)"
    )
    flag("--keepalive-timeout", value="6s", kind=go_duration, help="keepalive timeout (accepted, as above)")
    flag("--debug", value=False, kind=go_bool, help="enable client-side debug logging")
    flag("--user", help="username[:password] for authentication (prompt if password is not supplied)")
    flag(
        "--password",
        help="password for authentication (if this option is used, --user option shouldn't include password)",
    )
    flag(
        "--cacert", help="the members' public CurveZMQ certificate (NAME.key): encrypt and verify the servers"
    )
    flag("--key", help="this client's CurveZMQ secret certificate (NAME.key_secret), for --client-cert-auth")
    flag(
        "--cert", help="this client's CurveZMQ certificate when --key is not given (its secret part is read)"
    )
    flag("--insecure-transport", value=True, kind=go_bool, help="no encryption unless --cacert is given")
    flag("--insecure-skip-tls-verify", value=False, kind=go_bool, help="refused: CurveZMQ always verifies")
    flag("-d", "--discovery-srv", help="refused: etcdz does not discover members by DNS SRV records")
    flag("--discovery-srv-name", help="refused, as --discovery-srv")
    flag("--insecure-discovery", value=True, kind=go_bool, help="accepted for --discovery-srv, refused")


def environment_argv(environ: Mapping[str, str], argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The global flags ``ETCDZCTL_*`` variables set (``ETCDZCTL_DIAL_TIMEOUT=3s`` is
    ``--dial-timeout=3s``), to put before ``argv``, and the warnings to print: as etcdctl 3.5, a
    flag given on the command line wins over its variable (with a warning) and a variable that
    names no global flag is ignored (with a warning)."""
    names: dict[str, str] = {}
    shorts: dict[str, str] = {}
    for action in _GLOBALS._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        for long in longs:
            names[long[2:].upper().replace("-", "_")] = long
            shorts.update({s: long for s in action.option_strings if not s.startswith("--")})
    words = list(argv)
    end = words.index("--") if "--" in words else len(words)
    given = set()
    for word in words[:end]:
        flag = word.split("=", 1)[0]
        given.add(flag if flag.startswith("--") else shorts.get(flag[:2], flag))
    extra: list[str] = []
    warnings: list[str] = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        if name not in names:
            warnings.append(f"unrecognized environment variable {key}={environ[key]}")
        elif names[name] in given:
            warnings.append(
                f"recognized environment variable {key}, but unused: shadowed by corresponding flag"
            )
        else:
            extra.append(f"{names[name]}={environ[key]}")
    return extra, warnings


_GLOBALS = Parser(add_help=False)
_global_flags(_GLOBALS, suppress=True)


def kv_parsers(sub: Any) -> None:
    put = sub.add_parser("put", help="Puts the given key into the store", parents=[_GLOBALS])
    put.add_argument("key")
    put.add_argument("value", nargs="?")
    add_bool(put, "--prev-kv")
    add_bool(put, "--ignore-value")
    add_bool(put, "--ignore-lease")
    put.add_argument("--lease", default="0", help="lease ID (in hexadecimal) to attach to the key")

    get = sub.add_parser("get", help="Gets the key or a range of keys", parents=[_GLOBALS])
    get.add_argument("key")
    get.add_argument("range_end", nargs="?")
    add_bool(get, "--prefix")
    add_bool(get, "--from-key")
    get.add_argument("--limit", type=go_int, default=0, help="Maximum number of results")
    get.add_argument("--rev", type=go_int, default=0, help="Specify the kv revision")
    get.add_argument("--sort-by", default="", help="Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION")
    get.add_argument("--order", default="", help="Order of results; ASCEND or DESCEND (ASCEND by default)")
    add_bool(get, "--keys-only")
    add_bool(get, "--count-only")
    add_bool(get, "--print-value-only")
    get.add_argument("--consistency", default="l", help="Linearizable(l) or Serializable(s)")
    for bound in ("min", "max"):  # etcdctl 3.5's revision filters
        for kind in ("create", "mod"):
            get.add_argument(
                f"--{bound}-{kind}-rev",
                type=go_int,
                default=0,
                help=f"{bound.capitalize()}imum {kind} revision of the returned keys",
            )

    delete = sub.add_parser(
        "del", help="Removes the specified key or range of keys [key, range_end)", parents=[_GLOBALS]
    )
    delete.add_argument("key")
    delete.add_argument("range_end", nargs="?")
    add_bool(delete, "--prefix")
    add_bool(delete, "--from-key")
    add_bool(delete, "--prev-kv")


def _misc_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    txn = sub.add_parser("txn", help="Txn processes all the requests in one transaction", parents=parents)
    add_bool(txn, "-i", "--interactive")
    compaction = sub.add_parser("compaction", help="Compacts the event history in etcdz", parents=parents)
    compaction.add_argument("revision")
    add_bool(compaction, "--physical")
    endpoint = sub.add_parser("endpoint", help="Endpoint related commands", parents=parents)
    endpoint.add_argument("action", choices=["status", "health", "hashkv"])
    add_bool(endpoint, "--cluster", help="use all endpoints from the cluster member list")
    endpoint.add_argument(
        "--rev", type=go_int, default=0, help="maximum revision to hash (default: all revisions)"
    )


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
    add_bool(
        perf,
        "--auto-compact",
        help="Compact storage with last revision after test is finished.",
    )
    add_bool(perf, "--auto-defrag", help="Defragment storage after test is finished.")
    perf.add_argument("--duration", type=int, default=None, help=argparse.SUPPRESS)  # for tests
    scale = actions.add_parser(
        "datascale",
        help="Check the memory usage of holding data for different workloads on a given server endpoint.",
        parents=parents,
    )
    scale.add_argument(
        "--load",
        default="s",
        help="The datascale check's workload model. "
        "Accepted workloads: s(small), m(medium), l(large), xl(xLarge)",
    )
    scale.add_argument(
        "--prefix",
        default=DEFAULT_DATASCALE_PREFIX,
        help="The prefix for writing the datascale check's keys.",
    )
    add_bool(scale, "--auto-compact", help="Compact storage with last revision after test is finished.")
    add_bool(scale, "--auto-defrag", help="Defragment storage after test is finished.")
    scale.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # keys, for tests
    scale.add_argument(
        "--metrics-url",
        default="",
        help="the member's metrics URL (etcdz serves /metrics apart from clients)",
    )


def _other_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    sub.add_parser("version", help="Prints the version of etcdzctl", parents=parents)
    help_ = sub.add_parser("help", help="Help about any command", parents=parents)
    help_.add_argument("topic", nargs="*")
    mirror = sub.add_parser(
        "make-mirror", help="Makes a mirror at the destination etcdz cluster", parents=parents
    )
    mirror.add_argument("destination", nargs="*")
    mirror.add_argument("--prefix", default="", help="Key-value prefix to mirror")
    mirror.add_argument(
        "--dest-prefix",
        default="",
        help="destination prefix to mirror a prefix to a different prefix in the destination cluster",
    )
    add_bool(mirror, "--no-dest-prefix", help="mirror key-values to the root of the destination cluster")
    mirror.add_argument(
        "--dest-cacert", default="", help="the destination members' public CurveZMQ certificate"
    )
    mirror.add_argument(
        "--dest-key", default="", help="this client's CurveZMQ secret certificate for the destination"
    )
    mirror.add_argument("--dest-cert", default="", help="as --dest-key, when --dest-key is not given")
    add_bool(
        mirror, "--dest-insecure-transport", default=True, help="no encryption unless --dest-cacert is given"
    )
    mirror.add_argument("--dest-user", default="", help="destination username[:password] for authentication")
    mirror.add_argument("--dest-password", default="", help="destination password for authentication")
    migrate = sub.add_parser("migrate", help="refused: etcdz has no v2 store to migrate", parents=parents)
    for name in ("--data-dir", "--wal-dir", "--transformer"):
        migrate.add_argument(name, default="")
    add_bool(migrate, "--no-ttl", help="Do not convert TTL keys")
    completion = sub.add_parser(
        "completion", help="Generate the autocompletion script for the specified shell", parents=parents
    )
    completion.add_argument("shell", choices=["bash", "fish", "powershell", "zsh"])
    add_bool(completion, "--no-descriptions", help="disable completion descriptions")


def _auth_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="User related commands", parents=parents)
    users = user.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="Adds a new user", parents=parents)
    add.add_argument("args", nargs="*")
    add_bool(add, "--no-password", help="Create a user without password")
    add_bool(
        add, "--interactive", default=True, help="Read password from stdin instead of interactive terminal"
    )
    add.add_argument("--new-user-password", default="", help="Supply password from the command line flag")
    get = users.add_parser("get", help="Gets detailed information of a user", parents=parents)
    get.add_argument("args", nargs="*")
    add_bool(get, "--detail", help="Show permissions of roles granted to the user")
    users.add_parser("list", help="Lists all users", parents=parents)
    for name, text in (("delete", "Deletes a user"), ("passwd", "Changes password of user")):
        action = users.add_parser(name, help=text, parents=parents)
        action.add_argument("args", nargs="*")
        if name == "passwd":
            add_bool(action, "--interactive", default=True, help="If true, read password from stdin")
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
        add_bool(action, "--prefix", help="grant a prefix permission")
        add_bool(
            action,
            "--from-key",
            help="grant a permission of keys that are greater than or equal to the given key",
        )

    auth = sub.add_parser("auth", help="Enable or disable authentication", parents=parents)
    auth.add_argument("action", choices=["enable", "disable", "status"])


def _maintenance_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    alarm = sub.add_parser("alarm", help="Alarm related commands", parents=parents)
    alarm.add_argument("action", choices=["list", "disarm"])
    defrag = sub.add_parser("defrag", help="Defragments the storage of the etcdz members", parents=parents)
    add_bool(defrag, "--cluster", help="use all endpoints from the cluster member list")
    defrag.add_argument(
        "--data-dir",
        default="",
        help="a stopped member's data dir, defragmented offline (deprecated: etcdz defrag)",
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
    restore.add_argument("--wal-dir", default="", help="refused: etcdz keeps its WAL inside --data-dir")
    add_bool(restore, "--skip-hash-check", help="refused: an etcdz snapshot always carries its hash")


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", nargs="?", default="")
    p.add_argument("range_end", nargs="?", default=None)
    add_bool(p, "--prefix", help="Watch on a prefix if prefix is set")
    p.add_argument("--rev", type=go_int, default=0, help="Revision to start watching")
    add_bool(p, "--prev-kv", help="get the previous key-value pair before the event happens")


def _watch_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="Watches events stream on keys or prefixes", parents=parents)
    add_watch_arguments(p)
    add_bool(p, "-i", "--interactive", help="Interactive mode")
    add_bool(p, "--progress-notify", help="get periodic watch progress notification from server")


def _lease_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    lease = sub.add_parser("lease", help="Lease related commands", parents=parents)
    actions = lease.add_subparsers(dest="action", required=True)
    grant = actions.add_parser("grant", help="Creates leases", parents=parents)
    grant.add_argument("args", nargs="*")
    revoke = actions.add_parser("revoke", help="Revokes leases", parents=parents)
    revoke.add_argument("args", nargs="*")
    ttl = actions.add_parser("timetolive", help="Get lease information", parents=parents)
    ttl.add_argument("args", nargs="*")
    add_bool(ttl, "--keys", help="Get keys attached to this lease")
    actions.add_parser("list", help="List all active leases", parents=parents)
    keep = actions.add_parser("keep-alive", help="Keeps leases alive (renew)", parents=parents)
    keep.add_argument("args", nargs="*")
    add_bool(keep, "--once", help="Resets the keep-alive time to its original value once")


def _cluster_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    member = sub.add_parser("member", help="Membership related commands", parents=parents)
    actions = member.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Lists all members in the cluster", parents=parents)
    add = actions.add_parser("add", help="Adds a member into the cluster", parents=parents)
    add.add_argument("name")
    add.add_argument("--peer-urls", required=True, help="comma separated peer URLs for the new member")
    add_bool(add, "--learner", help="indicates if the new member is raft learner")
    add_bool(
        add,
        "--auto-promote",
        default=True,
        help="the leader promotes the learner once it has caught up (false: etcd's manual promotion)",
    )
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
    add_bool(elect, "-l", "--listen", help="observation mode")
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
    (frozenset({"version", "help", "make-mirror", "migrate", "completion"}), _other_parsers),
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
