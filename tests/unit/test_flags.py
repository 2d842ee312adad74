"""The etcdz command's flags (and the standalone watch hub's): etcd's names, env fallbacks, clear
errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from zmq.auth import create_certificates

from actors.gateway.grpc_door import door_config, tls_files
from actors.runtime.config import NodeConfig
from actors.runtime.tls import plaintext_warning
from actors.supervisor.flags import FLAGS, env_name, resolve
from actors.watch.__main__ import from_node, standalone
from tools.pki import issue


def test_defaults_are_etcds() -> None:
    cfg = resolve([], environ={})
    assert cfg.name == "default"
    assert cfg.listen_client_urls == ["tcp://127.0.0.1:2379"]
    assert cfg.quota_backend_bytes == 2 * 1024**3
    assert cfg.max_request_bytes == 1536 * 1024
    assert (cfg.heartbeat_interval_ms, cfg.election_timeout_ms) == (100, 1000)
    assert cfg.election_tick == 10
    assert (cfg.group_commit_delay_ms, cfg.group_commit_siblings) == (5, 4)
    assert resolve(["--group-commit-delay", "0s"], environ={}).group_commit_delay_ms == 0
    assert cfg.peers == {cfg.member_id: "default"}


def test_environment_is_read_and_flags_win() -> None:
    env = {
        "ETCDZ_NAME": "envname",
        "ETCDZ_INITIAL_CLUSTER": "a=tcp://127.0.0.1:1,envname=tcp://127.0.0.1:2",
        "ETCDZ_LISTEN_PEER_URLS": "tcp://127.0.0.1:2",
        "ETCDZ_SNAPSHOT_COUNT": "77",
    }
    cfg = resolve([], environ=env)
    assert cfg.name == "envname" and cfg.snapshot_count == 77 and len(cfg.peers) == 2
    assert resolve(["--snapshot-count", "5"], environ=env).snapshot_count == 5


def test_every_member_computes_the_same_ids() -> None:
    cluster = "a=tcp://127.0.0.1:1,b=tcp://127.0.0.1:2"
    a = resolve(
        ["--name", "a", "--listen-peer-urls", "tcp://127.0.0.1:1", "--initial-cluster", cluster], environ={}
    )
    b = resolve(
        ["--name", "b", "--listen-peer-urls", "tcp://127.0.0.1:2", "--initial-cluster", cluster], environ={}
    )
    assert a.cluster_id == b.cluster_id and a.peers == b.peers and a.member_id != b.member_id


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--initial-cluster", "other=tcp://127.0.0.1:9"], "couldn.t find local name"),
        (["--listen-client-urls", "http://127.0.0.1:1"], "tcp://host:port"),
        (["--snapshot-count", "many"], "expected int"),
        (["--election-timeout", "200"], "at least 5 times"),
        (["--group-commit-delay", "5"], "duration like"),
        (["--group-commit-delay", "200ms"], "tenth of --election-timeout"),
        (["--group-commit-siblings", "0"], "siblings at least 1"),
        (["--initial-cluster-state", "maybe"], "new' or 'existing"),
        (["--max-watchers-per-stream", "0"], "--max-watchers-per-stream must be at least 1"),
        (["--max-client-requests-in-flight", "0"], "in-flight must be at least 1"),
        (["--join", "tcp://127.0.0.1:1", "--initial-cluster-state", "existing"], "--join finds the cluster"),
        (["--join", "http://127.0.0.1:1"], "tcp://host:port"),
        (["--auto-promote-max-lag", "-1"], "must not be negative"),
    ],
)
def test_bad_flags_say_what_is_wrong(argv: list[str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        resolve(argv, environ={})


def test_join_adds_a_member_unless_it_is_named_to_bootstrap_the_cluster() -> None:
    assert resolve([], environ={}).join == []
    joiner = resolve(
        ["--name", "d", "--listen-peer-urls", "tcp://127.0.0.1:4", "--join", "tcp://h:2379"], environ={}
    )
    assert joiner.join == ["tcp://h:2379"] and not joiner.join_may_bootstrap
    cluster = "a=tcp://127.0.0.1:1,b=tcp://127.0.0.1:2"
    # A replica named in --initial-cluster may bootstrap it; another adds itself, whatever the list.
    a = resolve(
        [
            "--name",
            "a",
            "--listen-peer-urls",
            "tcp://127.0.0.1:1",
            "--initial-cluster",
            cluster,
            "--join",
            "tcp://h:1",
        ],
        environ={},
    )
    c = resolve(
        [
            "--name",
            "c",
            "--listen-peer-urls",
            "tcp://127.0.0.1:3",
            "--initial-cluster",
            cluster,
            "--join",
            "tcp://h:1",
        ],
        environ={},
    )
    assert a.join_may_bootstrap and len(a.initial_cluster) == 2
    assert not c.join_may_bootstrap and c.initial_cluster == {"c": ["tcp://127.0.0.1:3"]}
    promote = resolve(["--auto-promote-max-lag", "50", "--auto-promote-after", "3s"], environ={})
    assert (promote.auto_promote_max_lag, promote.auto_promote_after_ms) == (50, 3000)
    assert (resolve([], environ={}).auto_promote_max_lag, resolve([], environ={}).auto_promote_after_ms) == (
        1000,
        1000,
    )


def test_env_names() -> None:
    assert env_name("initial-cluster") == "ETCDZ_INITIAL_CLUSTER"
    assert all(env_name(f).startswith("ETCDZ_") for f in FLAGS)


def test_metrics_urls_are_http_host_port() -> None:
    assert resolve(["--listen-metrics-urls", "http://127.0.0.1:2382"], environ={}).listen_metrics_urls == [
        "http://127.0.0.1:2382"
    ]
    assert resolve([], environ={}).listen_metrics_urls == []
    for bad in ("tcp://127.0.0.1:2382", "http://127.0.0.1", "http://:80"):
        with pytest.raises(ValueError, match="listen-metrics-urls"):
            resolve(["--listen-metrics-urls", bad], environ={})


def test_the_standalone_hub_reads_flags_then_the_environment() -> None:
    env = {"ETCDZ_ENDPOINTS": "tcp://a:2379,tcp://b:2379", "ETCDZ_LISTEN_WATCH_URLS": "tcp://127.0.0.1:9"}
    hub = standalone([], env)
    assert hub.endpoints == ["tcp://a:2379", "tcp://b:2379"] and hub.advertise_urls == ["tcp://127.0.0.1:9"]
    hub = standalone(["--listen-watch-urls", "tcp://127.0.0.1:8", "--log-level", "debug"], env)
    assert hub.listen_urls == ["tcp://127.0.0.1:8"] and hub.log_level == "debug"
    with pytest.raises(ValueError, match="--endpoints"):
        standalone([], {})
    with pytest.raises(ValueError, match="tcp://host:port"):
        standalone([], {**env, "ETCDZ_BACKEND_EVENTS": "http://x"})
    anywhere = standalone(["--listen-watch-urls", "tcp://0.0.0.0:2381"], env)
    assert anywhere.listen_urls == ["tcp://0.0.0.0:2381"]
    assert "0.0.0.0" not in anywhere.advertise_urls[0]  # this host's address instead


def test_the_bounds_on_one_client_reach_the_gateway_and_every_hub() -> None:
    default = resolve([], environ={})
    assert (default.max_client_inflight, default.max_client_inflight_bytes) == (1000, 64 << 20)
    assert from_node(default, 0).max_watchers_per_stream == 10_000
    cfg = resolve(
        ["--max-watch-streams", "7", "--max-watchers-per-stream", "8", "--max-watch-queue-bytes", "9"]
        + ["--max-client-requests-in-flight", "10", "--max-client-bytes-in-flight", "11"],
        environ={},
    )
    assert (cfg.max_client_inflight, cfg.max_client_inflight_bytes) == (10, 11)
    hub = from_node(NodeConfig.from_json(cfg.to_json()), 1)  # as the supervisor hands it over
    assert (hub.max_streams, hub.max_watchers_per_stream, hub.max_queued_bytes) == (7, 8, 9)
    alone = standalone(["--endpoints", "tcp://a:2379", "--max-watch-streams", "3"], {})
    assert (alone.max_streams, alone.max_watchers_per_stream) == (3, 10_000)


def test_curve_flags_are_checked_before_anything_starts(tmp_path: Path) -> None:
    public, secret = create_certificates(str(tmp_path), "server")
    os.chmod(secret, 0o600)
    with pytest.raises(ValueError, match="--client-cert-auth needs --key-file"):
        resolve(["--client-cert-auth"], environ={})
    with pytest.raises(ValueError, match="no secret key"):
        resolve(["--peer-key-file", public], environ={})
    with pytest.raises(ValueError, match="cannot read key file"):
        resolve(["--key-file", str(tmp_path / "missing")], environ={})
    config = resolve(
        ["--key-file", secret, "--client-cert-auth", "--trusted-keys-dir", str(tmp_path)], environ={}
    )
    curve = config.client_curve()
    assert curve is not None and curve.allowed is not None and len(curve.allowed) == 1  # server.key itself
    assert config.peer_curve() is None
    with pytest.raises(ValueError, match="--auth-token-ttl"):
        resolve(["--auth-token-ttl", "0"], environ={})


def test_auth_token_is_simple_or_jwt_with_a_usable_key(tmp_path: Path) -> None:
    key = tmp_path / "jwt.key"
    key.write_bytes(os.urandom(64))
    key.chmod(0o600)
    assert resolve([], environ={}).auth_jwt is None
    config = resolve(["--auth-token", f"jwt,priv-key={key},sign-method=HS512,ttl=10m"], environ={})
    jwt = config.auth_jwt
    assert jwt is not None and (jwt.key_file, jwt.method, jwt.ttl_s) == (str(key), "HS512", 600)
    assert type(config).from_json(config.to_json()) == config  # as every actor reads it
    env = {"ETCDZ_AUTH_TOKEN": f"jwt,priv-key={key}"}
    from_env = resolve([], environ=env).auth_jwt
    assert from_env is not None and (from_env.method, from_env.ttl_s) == ("HS256", 300)
    for value, fragment in (
        ("opaque", "must be 'simple' or 'jwt"),
        ("jwt", "needs priv-key"),
        (f"jwt,priv-key={key},sign-method=RS1024", "sign-method 'RS1024'"),
        (f"jwt,priv-key={key},sign-method=RS256", "cannot load the JWT keys for RS256"),
        (f"jwt,pub-key={tmp_path / 'x'},sign-method=ES256", "cannot read the JWT public key"),
        (f"jwt,priv-key={key},kid=x", "unknown jwt option"),
        (f"jwt,priv-key={key},ttl=0s", "ttl must be positive"),
        (f"jwt,priv-key={key},ttl=soon", "expected a duration"),
        (f"jwt,priv-key={tmp_path / 'missing'}", "cannot read the JWT key"),
    ):
        with pytest.raises(ValueError, match=fragment):
            resolve(["--auth-token", value], environ={})
    key.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        resolve(["--auth-token", f"jwt,priv-key={key}"], environ={})


def test_ports_etcd_has_not_derive_from_the_client_url_so_members_on_one_host_never_collide() -> None:
    """A member started with etcd's flags alone: its hubs bind a free port on the client URL's
    host and advertise that host (the port is filled in with what was bound); no event stream,
    no metrics."""
    cfg = resolve(
        [
            "--listen-client-urls=tcp://0.0.0.0:32379",
            "--advertise-client-urls=tcp://node-b:32379",
            "--listen-peer-urls=tcp://127.0.0.1:32380",
        ],
        environ={},
    )
    assert cfg.listen_watch_urls == ["tcp://0.0.0.0:0"]
    assert cfg.advertise_watch_urls == ["tcp://node-b:0"]
    assert cfg.listen_events_urls == [] and cfg.listen_metrics_urls == []
    fixed = resolve(["--listen-watch-urls=tcp://127.0.0.1:4000"], environ={})
    assert fixed.listen_watch_urls == fixed.advertise_watch_urls == ["tcp://127.0.0.1:4000"]
    assert standalone(["--endpoints", "tcp://127.0.0.1:2379"], {}).listen_urls == ["tcp://127.0.0.1:0"]


def test_an_event_stream_on_tcp_needs_a_key_unless_the_cluster_is_open_anyway() -> None:
    with pytest.raises(ValueError, match="--listen-events-urls needs --key-file"):
        resolve(["--listen-events-urls=tcp://127.0.0.1:2382"], environ={})
    opened = ["--listen-events-urls=tcp://127.0.0.1:2382", "--experimental-allow-unauthenticated-hubs"]
    cfg = resolve(opened, environ={})
    assert cfg.allow_unauthenticated_hubs and cfg.listen_events_urls == ["tcp://127.0.0.1:2382"]
    assert not resolve([], environ={}).allow_unauthenticated_hubs


def test_a_port_of_zero_is_advertised_as_bound_and_each_hub_of_a_member_gets_its_own() -> None:
    from actors.runtime.listen import resolve_advertised
    from actors.watch.__main__ import from_node

    cfg = resolve([], environ={})
    assert from_node(cfg, 1).listen_urls == ["tcp://127.0.0.1:0"]  # port 0 is not shifted
    fixed = resolve(["--listen-watch-urls=tcp://127.0.0.1:4000", "--watch-hubs=2"], environ={})
    assert from_node(fixed, 1).listen_urls == ["tcp://127.0.0.1:4001"]
    assert resolve_advertised(["tcp://node-b:0"], ["tcp://0.0.0.0:0"], ["tcp://0.0.0.0:41234"]) == [
        "tcp://node-b:41234"
    ]
    assert resolve_advertised(["tcp://x:7"], ["tcp://0.0.0.0:0"], ["tcp://0.0.0.0:41234"]) == ["tcp://x:7"]


def test_a_taken_listener_is_named_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from actors.supervisor import listeners

    monkeypatch.setattr(listeners, "WAIT_S", 0.2)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cfg = resolve([f"--listen-watch-urls=tcp://127.0.0.1:{port}"], environ={})
        with pytest.raises(listeners.ListenerTaken, match=f"--listen-watch-urls tcp://127.0.0.1:{port}"):
            listeners.check(cfg)
        ephemeral = resolve([f"--listen-client-urls=tcp://127.0.0.1:{free()}"], environ={})
        assert ("--listen-watch-urls", "tcp://127.0.0.1:0") not in listeners.addresses(ephemeral)


def free() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_grpc_tls_flags_are_checked_before_anything_starts(tmp_path: Path) -> None:
    """https:// needs a certificate and its key, client-cert-auth a CA; each file is read and
    checked at start, and the error names the flag (etcd's names, prefixed: --key-file and
    --client-cert-auth are the CurveZMQ ones)."""
    pki = issue(str(tmp_path / "pki"), ["alice"])
    https = ["--listen-grpc-urls", "https://127.0.0.1:2384"]
    pair = ["--grpc-cert-file", pki.server_cert, "--grpc-key-file", pki.server_key]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for argv, fragment in (
        (https, "needs --grpc-cert-file and --grpc-key-file: --grpc-cert-file is not set"),
        ([*https, "--grpc-cert-file", pki.server_cert], "--grpc-key-file is not set"),
        (
            [*https, *pair[:2], "--grpc-key-file", pki.clients["alice"][1]],
            "--grpc-key-file: .* is not the key",
        ),
        (
            [*https, "--grpc-cert-file", str(tmp_path / "none.pem"), *pair[2:]],
            "--grpc-cert-file: cannot read",
        ),
        ([*https, "--grpc-cert-file", str(junk), *pair[2:]], "--grpc-cert-file: .* holds no PEM certificate"),
        ([*https, *pair[:2], "--grpc-key-file", str(junk)], "--grpc-key-file: .* holds no unencrypted PEM"),
        ([*https, *pair, "--grpc-client-cert-auth"], "--grpc-client-cert-auth needs --grpc-trusted-ca-file"),
        ([*https, *pair, "--grpc-trusted-ca-file", str(junk)], "--grpc-trusted-ca-file: .* holds no PEM"),
        (["--listen-grpc-urls", "grpcs://127.0.0.1:1"], "http://host:port or https://host:port"),
        # an http URL serves plaintext, but files given must still be usable (as etcd reads them)
        (["--listen-grpc-urls", "http://127.0.0.1:1", "--grpc-cert-file", str(junk), *pair[2:]], "no PEM"),
        (
            ["--listen-grpc-urls", "http://127.0.0.1:1", "--grpc-cert-file", pki.server_cert],
            "--grpc-key-file",
        ),
        (["--listen-grpc-urls", "http://127.0.0.1:1", "--grpc-client-cert-auth"], "--grpc-trusted-ca-file"),
        (["--listen-grpc-urls", "http://127.0.0.1:1", "--grpc-trusted-ca-file", str(junk)], "no PEM"),
    ):
        with pytest.raises(ValueError, match=fragment):
            resolve(argv, environ={})
    env = {
        "ETCDZ_LISTEN_GRPC_URLS": "https://127.0.0.1:2384",
        "ETCDZ_GRPC_CERT_FILE": pki.server_cert,
        "ETCDZ_GRPC_KEY_FILE": pki.server_key,
        "ETCDZ_GRPC_TRUSTED_CA_FILE": pki.ca,
        "ETCDZ_GRPC_CLIENT_CERT_AUTH": "true",
    }
    cfg = resolve([], environ=env)
    assert cfg.listen_grpc_urls == cfg.advertise_grpc_urls == ["https://127.0.0.1:2384"]
    assert (cfg.grpc_cert_file, cfg.grpc_trusted_ca_file, cfg.grpc_client_cert_auth) == (
        pki.server_cert,
        pki.ca,
        True,
    )
    assert type(cfg).from_json(cfg.to_json()) == cfg  # as the gateway reads it
    door = door_config(cfg, b"s" * 32)
    assert (
        door.tls is not None and door.tls.client_cert_auth and door.tls.trusted_ca.startswith(b"-----BEGIN")
    )
    plain = resolve(["--listen-grpc-urls", "http://127.0.0.1:1", *pair], environ={})
    assert door_config(plain).tls is None  # etcd: http ignores the files, with a warning
    assert "serve plaintext" in plaintext_warning(plain.listen_grpc_urls, tls_files(plain))
    assert plaintext_warning(cfg.listen_grpc_urls, tls_files(cfg)) == ""
    client_side = resolve(
        ["--listen-grpc-urls", "http://127.0.0.1:1", "--grpc-trusted-ca-file", pki.ca], environ={}
    )
    assert client_side.grpc_trusted_ca_file == pki.ca and door_config(client_side).tls is None


def test_the_standalone_grpc_door_takes_the_same_tls_flags(tmp_path: Path) -> None:
    from actors.v3rpc.__main__ import standalone as standalone_door

    pki = issue(str(tmp_path / "pki"), [])
    alone = ["--endpoints", "tcp://127.0.0.1:2379", "--listen-grpc-urls", "https://127.0.0.1:0"]
    with pytest.raises(ValueError, match="--grpc-cert-file is not set"):
        standalone_door(alone, {})
    env = {"ETCDZ_GRPC_CERT_FILE": pki.server_cert, "ETCDZ_GRPC_KEY_FILE": pki.server_key}
    door, _, _, warnings = standalone_door(alone, env)
    assert door.tls is not None and not door.tls.client_cert_auth and warnings == []
    assert door.cert_secret == b""  # without the members' key it cannot vouch for a user
    checked = [*alone, "--grpc-trusted-ca-file", pki.ca, "--grpc-client-cert-auth"]
    door, _, _, warnings = standalone_door(checked, env)
    assert door.tls is not None and door.tls.client_cert_auth
    assert any("without --key-file" in w for w in warnings)
