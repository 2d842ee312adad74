"""etcd's command-line flags, resolved into a NodeConfig.

Every flag can also come from the environment as ``ETCDZ_`` + the flag name in upper snake case
(``--initial-cluster`` -> ``ETCDZ_INITIAL_CLUSTER``), as etcd reads ``ETCD_*``; a flag on the
command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actors.auth.jwt import METHODS, JwtOptions, load_keys
from actors.runtime.config import NodeConfig, cluster_id_for, member_id_for, socket_dir_for
from actors.runtime.curve import for_node
from actors.runtime.flagtable import (
    WATCH_LIMIT_FLAGS,
    Table,
    boolean,
    comma_list,
    env_name,
    parse_duration_ms,
    read,
    urls,
    watch_limits,
)
from actors.runtime.flagtable import parser as table_parser
from actors.runtime.tls import GRPC_TLS_FLAGS, grpc_urls
from actors.runtime.tls import check as check_grpc_tls
from actors.runtime.tls import files as grpc_tls_files

__all__ = ["FLAGS", "Table", "boolean", "env_name", "parse_duration_ms", "parser", "read", "resolve", "urls"]


# flag -> (type, default, help). Defaults are etcd's.
FLAGS: dict[str, tuple[Callable[[str], object], object, str]] = {
    "name": (str, "default", "human-readable name for this member"),
    "data-dir": (str, "", "path to the data directory (default: ${name}.etcdz)"),
    "listen-client-urls": (str, "tcp://127.0.0.1:2379", "URLs to listen on for client traffic"),
    "advertise-client-urls": (str, "", "client URLs advertised to the cluster"),
    "listen-peer-urls": (str, "tcp://127.0.0.1:2380", "URLs to listen on for peer traffic"),
    "initial-advertise-peer-urls": (str, "", "peer URLs advertised to the cluster"),
    "initial-cluster": (str, "", "initial cluster configuration: name=url,name=url"),
    "initial-cluster-state": (str, "new", "new or existing"),
    "initial-cluster-token": (str, "etcd-cluster", "initial cluster token"),
    "listen-watch-urls": (
        str,
        "",
        "URLs the watch hubs of this member listen on (default: tcp://HOST:0 with the host of "
        "--listen-client-urls: each hub binds a free port and the member advertises the port it "
        "bound, so members on one host never collide); a fixed port counts up per hub",
    ),
    "advertise-watch-urls": (
        str,
        "",
        "watch hub URLs advertised to clients (default: the listen URLs; by default the host of "
        "--advertise-client-urls); a port of 0 is replaced by the port the hub bound",
    ),
    "listen-events-urls": (
        str,
        "",
        "tcp URLs to publish committed events on, for watch hubs on other hosts (off by default; "
        "needs --key-file: only hubs holding the members' key may subscribe)",
    ),
    "advertise-events-urls": (str, "", "event stream URLs told to authenticated watch hubs"),
    "listen-metrics-urls": (
        str,
        "",
        "http://host:port URLs to serve /metrics and /health on (off by default)",
    ),
    "listen-grpc-urls": (
        str,
        "",
        "http://host:port or https://host:port (TLS: --grpc-cert-file) URLs to serve etcd's v3 "
        "gRPC API on, for etcdctl and etcd's client libraries (off by default; a port of 0 is a "
        "free port)",
    ),
    "advertise-grpc-urls": (str, "", "gRPC URLs of this member told to clients (default: the listen URLs)"),
    **GRPC_TLS_FLAGS,
    "watch-hubs": (int, 1, "watch hubs to start with this member (0: none)"),
    "experimental-allow-unauthenticated-hubs": (
        boolean,
        False,
        "for a cluster that is open anyway (no auth, no --key-file): accept watch hub "
        "announcements over the client port from anyone, and --listen-events-urls without "
        "--key-file; else only hubs holding the members' key (or, with auth enabled, logged in "
        "as root) may announce, and only hubs holding that key may subscribe to the events",
    ),
    "experimental-watch-progress-notify-interval": (
        str,
        "10m",
        "duration of periodic watch progress notifications",
    ),
    "auto-compaction-mode": (str, "periodic", "'periodic' (retention: a duration) or 'revision' (a count)"),
    "auto-compaction-retention": (
        str,
        "0",
        "auto compaction retention: a duration (periodic; a bare number is hours) or a revision "
        "count (revision); 0 disables auto compaction",
    ),
    "experimental-initial-corrupt-check": (
        boolean,
        False,
        "check the member's data against its peers' before serving (raises CORRUPT on a mismatch)",
    ),
    "experimental-corrupt-check-time": (
        str,
        "0s",
        "duration between the leader's corruption checks of the cluster (0s: none)",
    ),
    "quota-backend-bytes": (int, 2 * 1024**3, "raise an alarm when the backend exceeds this size"),
    "max-request-bytes": (int, 1536 * 1024, "maximum client request size in bytes"),
    "snapshot-count": (int, 100_000, "committed transactions that trigger a snapshot"),
    "experimental-snapshot-catchup-entries": (
        int,
        5000,
        "entries kept after a snapshot for slow followers to catch up from",
    ),
    "heartbeat-interval": (int, 100, "time (in milliseconds) of a heartbeat interval"),
    "election-timeout": (int, 1000, "time (in milliseconds) for an election to timeout"),
    "group-commit-delay": (
        str,
        "5ms",
        "under load (see --group-commit-siblings) the leader holds a proposal up to this long "
        "so that it shares a replication round with others: less CPU per write, up to this much "
        "more latency; 0s: every proposal at once",
    ),
    "group-commit-siblings": (
        int,
        4,
        "the leader holds proposals only while at least this many requests started a round "
        "in the last --group-commit-delay",
    ),
    "auto-promote-max-lag": (
        int,
        1000,
        "the leader promotes a learner added with auto-promotion (the default of member add "
        "--learner and of --join) once its log is at most this many entries behind the leader's",
    ),
    "auto-promote-after": (
        str,
        "1s",
        "... and has stayed that close for this long, every other voter being healthy and no "
        "membership change pending",
    ),
    "join": (
        str,
        "",
        "client URLs of members of a running cluster: this member adds itself as a learner "
        "(checking the cluster token and its name), catches up and is promoted by the leader; "
        "restarted, it checks that its data dir belongs to that cluster. A member named in "
        "--initial-cluster bootstraps that cluster instead when no member answers",
    ),
    "auth-token": (
        str,
        "simple",
        "simple, or jwt,priv-key=FILE[,pub-key=FILE][,sign-method=HS256|RS256|PS256|ES256|...]"
        "[,ttl=5m] (signed tokens)",
    ),
    "auth-token-ttl": (int, 300, "seconds a simple auth token lives after its last use"),
    "key-file": (str, "", "CurveZMQ secret certificate the client endpoints serve with (encrypts them)"),
    "client-cert-auth": (boolean, False, "accept only clients whose public key is in --trusted-keys-dir"),
    "trusted-keys-dir": (str, "", "directory of the public certificates (*.key) of trusted clients"),
    "peer-key-file": (str, "", "CurveZMQ secret certificate of the peer mesh (the same on every member)"),
    "peer-client-cert-auth": (
        boolean,
        False,
        "accept only peers holding the peer key or one in --peer-trusted-keys-dir",
    ),
    "peer-trusted-keys-dir": (str, "", "directory of further public certificates (*.key) peers may use"),
    "max-client-requests-in-flight": (
        int,
        1000,
        "requests one client connection may have unanswered at a member (beyond: too many requests)",
    ),
    "max-client-bytes-in-flight": (int, 64 << 20, "bytes of those requests, at most"),
    **WATCH_LIMIT_FLAGS,
    "log-format": (str, "json", "json or console"),
    "log-level": (str, "info", "debug, info, warn, error"),
}


def parser(
    table: Table = FLAGS,
    prog: str = "etcdz",
    description: str = "Run one etcdz member (its actors as separate processes).",
) -> argparse.ArgumentParser:
    return table_parser(table, prog, description)


def ephemeral(client_url: str) -> str:
    """A watch hub's default: the client URL's host, port 0 (the OS picks a free port; the hub
    announces what it bound). An ipc client URL gives loopback."""
    if not client_url.startswith("tcp://"):
        return "tcp://127.0.0.1:0"
    return f"{client_url.rpartition(':')[0]}:0"


def _http_urls(value: str, flag: str = "--listen-metrics-urls") -> list[str]:
    found = comma_list(value)
    for url in found:
        host, _, port = url.removeprefix("http://").rpartition(":")
        if not url.startswith("http://") or not host or not port.isdigit():
            raise ValueError(f"{flag} must be http://host:port, got {url!r}")
    return found


def parse_auth_token(value: str) -> JwtOptions | None:
    """``--auth-token`` as etcd reads it: ``simple`` (None), or ``jwt`` with comma-separated
    options; the key files are read here so a bad one stops the start, not the first login."""
    kind, *options = value.split(",")
    if kind == "simple" and not options:
        return None
    if kind != "jwt":
        raise ValueError(f"--auth-token must be 'simple' or 'jwt,...', got {value!r}")
    found: dict[str, str] = {}
    for option in options:
        name, sep, setting = option.partition("=")
        if not sep or name not in ("priv-key", "pub-key", "sign-method", "ttl"):
            raise ValueError(
                f"--auth-token: unknown jwt option {option!r} (priv-key, pub-key, sign-method, ttl)"
            )
        found[name] = setting
    method = found.get("sign-method", "HS256")
    if method not in METHODS:
        raise ValueError(f"--auth-token: sign-method {method!r} is not one of {', '.join(METHODS)}")
    if not found.get("priv-key") and not found.get("pub-key"):
        raise ValueError(
            "--auth-token jwt needs priv-key=FILE (HS*: a secret of at least 32 bytes; "
            "RS*, PS*, ES*: a PEM private key) or, to only check tokens, pub-key=FILE"
        )
    ttl_s = parse_duration_ms(found.get("ttl", "5m")) / 1000
    if ttl_s <= 0:
        raise ValueError("--auth-token: ttl must be positive")
    parsed = JwtOptions(
        os.path.abspath(found["priv-key"]) if found.get("priv-key") else "",
        method,
        ttl_s,
        os.path.abspath(found["pub-key"]) if found.get("pub-key") else "",
    )
    load_keys(parsed)
    return parsed


def parse_retention(mode: str, value: str) -> float:
    """``--auto-compaction-retention`` in seconds (periodic) or revisions (revision), as etcd
    reads it: for periodic, a bare number counts hours."""
    if mode not in ("periodic", "revision"):
        raise ValueError(f"--auto-compaction-mode must be 'periodic' or 'revision', got {mode!r}")
    try:
        number = float(value)
    except ValueError:
        if mode == "revision":
            raise ValueError(f"--auto-compaction-retention: expected a count, got {value!r}") from None
        return parse_duration_ms(value) / 1000
    if number < 0 or (mode == "revision" and not number.is_integer()):
        raise ValueError(f"--auto-compaction-retention: expected a non-negative count, got {value!r}")
    return number * 3600 if mode == "periodic" else number


def parse_initial_cluster(value: str) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name:
            raise ValueError(f"--initial-cluster entry must be name=url, got {part!r}")
        cluster.setdefault(name, []).extend(urls(url))
    return cluster


def _curve_settings(values: Mapping[str, object]) -> dict[str, Any]:
    """The Curve flags, checked: each key file readable (and private), no cert-auth without
    a key to serve with."""
    found: dict[str, object] = {}
    for side in ("", "peer-"):
        key_file = str(values[f"{side}key-file"])
        cert_auth = bool(values[f"{side}client-cert-auth"])
        trusted = str(values[f"{side}trusted-keys-dir"])
        if cert_auth and not key_file:
            raise ValueError(f"--{side}client-cert-auth needs --{side}key-file")
        for_node(os.path.abspath(key_file) if key_file else "", cert_auth, trusted)  # raises if unusable
        prefix = side.replace("-", "_")
        found[f"{prefix}key_file"] = os.path.abspath(key_file) if key_file else ""
        found[f"{prefix}client_cert_auth"] = cert_auth
        found[f"{prefix}trusted_keys_dir"] = os.path.abspath(trusted) if trusted else ""
    return found


def _grpc_tls_settings(values: Mapping[str, object], listen_grpc: list[str]) -> dict[str, Any]:
    """The gRPC door's TLS flags, their files read and checked now (actors/runtime/tls.py)."""
    given = grpc_tls_files(values)
    check_grpc_tls(given, listen_grpc)
    return {
        "grpc_cert_file": given.cert_file,
        "grpc_key_file": given.key_file,
        "grpc_trusted_ca_file": given.trusted_ca_file,
        "grpc_client_cert_auth": given.client_cert_auth,
    }


def check_member(name: str, cluster: dict[str, list[str]], advertise_peer: list[str]) -> None:
    """This member's entry in ``--initial-cluster`` names its peer URLs (etcd's checks)."""
    if name not in cluster:
        raise ValueError(f'couldn\'t find local name "{name}" in the initial cluster configuration')
    if sorted(cluster[name]) != sorted(advertise_peer):
        raise ValueError(
            f"--initial-cluster has {','.join(cluster[name])} but missing from "
            f"--initial-advertise-peer-urls={','.join(advertise_peer)}"
        )


def resolve(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Flags + environment -> the node's config (raises ValueError with a clear message)."""
    values = read(parser(), FLAGS, argv, os.environ if environ is None else environ)
    name = str(values["name"])
    data_dir = str(values["data-dir"]) or f"{name}.etcdz"
    listen_client = urls(str(values["listen-client-urls"]))
    advertise_client = urls(str(values["advertise-client-urls"])) or listen_client
    listen_peer = urls(str(values["listen-peer-urls"]))
    advertise_peer = urls(str(values["initial-advertise-peer-urls"])) or listen_peer
    token = str(values["initial-cluster-token"])
    cluster = parse_initial_cluster(str(values["initial-cluster"])) or {name: advertise_peer}
    join = urls(str(values["join"]))
    # With --join, --initial-cluster names the members that bootstrap the cluster (a
    # StatefulSet's first replicas); any other member adds itself.
    may_bootstrap = bool(join) and name in cluster and len(cluster) > 1
    if join and name not in cluster:
        cluster = {name: advertise_peer}
    check_member(name, cluster, advertise_peer)
    peers = {member_id_for(n, peer_urls, token): n for n, peer_urls in cluster.items()}
    state = str(values["initial-cluster-state"])
    if state not in ("new", "existing"):
        raise ValueError("--initial-cluster-state must be 'new' or 'existing'")
    listen_watch = urls(str(values["listen-watch-urls"]))
    advertise_watch = urls(str(values["advertise-watch-urls"])) or listen_watch
    if not listen_watch:
        listen_watch = [ephemeral(listen_client[0])]
        advertise_watch = advertise_watch or [ephemeral(advertise_client[0])]
    hubs = int(values["watch-hubs"])  # type: ignore[call-overload]
    if hubs < 0:
        raise ValueError("--watch-hubs must be 0 or more")
    listen_events = urls(str(values["listen-events-urls"]))
    open_hubs = bool(values["experimental-allow-unauthenticated-hubs"])
    if listen_events and not values["key-file"] and not open_hubs:
        raise ValueError(
            "--listen-events-urls needs --key-file: the event stream carries every key and value, "
            "and only watch hubs holding the members' key may subscribe (a cluster open anyway "
            "may pass --experimental-allow-unauthenticated-hubs)"
        )
    token_ttl = int(values["auth-token-ttl"])  # type: ignore[call-overload]
    if token_ttl <= 0:
        raise ValueError("--auth-token-ttl must be a positive number of seconds")
    heartbeat = int(values["heartbeat-interval"])  # type: ignore[call-overload]
    election = int(values["election-timeout"])  # type: ignore[call-overload]
    if heartbeat <= 0 or election < 5 * heartbeat:
        raise ValueError("--election-timeout must be at least 5 times --heartbeat-interval")
    group_delay_ms = parse_duration_ms(str(values["group-commit-delay"]))
    group_siblings = int(values["group-commit-siblings"])  # type: ignore[call-overload]
    if group_delay_ms > election // 10 or group_siblings < 1:
        raise ValueError(
            "--group-commit-delay must be at most a tenth of --election-timeout and "
            "--group-commit-siblings at least 1"
        )
    max_lag = int(values["auto-promote-max-lag"])  # type: ignore[call-overload]
    promote_after_ms = parse_duration_ms(str(values["auto-promote-after"]))
    if max_lag < 0 or promote_after_ms < 0:
        raise ValueError("--auto-promote-max-lag and --auto-promote-after must not be negative")
    if join and state == "existing":
        raise ValueError("--join finds the cluster itself: give no --initial-cluster-state existing")
    in_flight = int(values["max-client-requests-in-flight"])  # type: ignore[call-overload]
    in_flight_bytes = int(values["max-client-bytes-in-flight"])  # type: ignore[call-overload]
    if in_flight < 1 or in_flight_bytes < 1:
        raise ValueError(
            "--max-client-requests-in-flight and --max-client-bytes-in-flight must be at least 1"
        )
    listen_grpc = grpc_urls(str(values["listen-grpc-urls"]), "--listen-grpc-urls")
    return NodeConfig(
        name=name,
        data_dir=os.path.abspath(data_dir),
        member_id=member_id_for(name, advertise_peer, token),
        cluster_id=cluster_id_for(list(peers)),
        listen_client_urls=listen_client,
        advertise_client_urls=advertise_client,
        listen_peer_urls=listen_peer,
        initial_advertise_peer_urls=advertise_peer,
        initial_cluster=cluster,
        peers=peers,
        initial_cluster_state=state,
        initial_cluster_token=token,
        auto_compaction_mode=str(values["auto-compaction-mode"]),
        auto_compaction_retention=parse_retention(
            str(values["auto-compaction-mode"]), str(values["auto-compaction-retention"])
        ),
        initial_corrupt_check=bool(values["experimental-initial-corrupt-check"]),
        corrupt_check_ms=parse_duration_ms(str(values["experimental-corrupt-check-time"])),
        quota_backend_bytes=int(values["quota-backend-bytes"]),  # type: ignore[call-overload]
        max_request_bytes=int(values["max-request-bytes"]),  # type: ignore[call-overload]
        snapshot_count=int(values["snapshot-count"]),  # type: ignore[call-overload]
        snapshot_catchup_entries=int(values["experimental-snapshot-catchup-entries"]),  # type: ignore[call-overload]
        heartbeat_interval_ms=heartbeat,
        election_timeout_ms=election,
        group_commit_delay_ms=group_delay_ms,
        group_commit_siblings=group_siblings,
        auto_promote_max_lag=max_lag,
        auto_promote_after_ms=promote_after_ms,
        join=join,
        join_may_bootstrap=may_bootstrap,
        listen_watch_urls=listen_watch,
        advertise_watch_urls=advertise_watch,
        listen_events_urls=listen_events,
        advertise_events_urls=urls(str(values["advertise-events-urls"])) or listen_events,
        watch_hubs=hubs,
        watch_limits=watch_limits(values),
        max_client_inflight=in_flight,
        max_client_inflight_bytes=in_flight_bytes,
        allow_unauthenticated_hubs=open_hubs,
        listen_metrics_urls=_http_urls(str(values["listen-metrics-urls"])),
        listen_grpc_urls=listen_grpc,
        advertise_grpc_urls=grpc_urls(str(values["advertise-grpc-urls"]), "--advertise-grpc-urls")
        or listen_grpc,
        **_grpc_tls_settings(values, listen_grpc),
        watch_progress_notify_ms=parse_duration_ms(
            str(values["experimental-watch-progress-notify-interval"])
        ),
        auth_token_ttl_s=token_ttl,
        auth_jwt=parse_auth_token(str(values["auth-token"])),
        **_curve_settings(values),
        log_format=str(values["log-format"]),
        log_level=str(values["log-level"]),
        socket_dir=socket_dir_for(data_dir),
    )
