"""etcd's client TLS at the gRPC door, with etcd's own etcdctl (3.4, ETCDCTL_API=3) and grpcio:
three members without the members' key pair, each member's door on https:// requiring client
certificates signed by the test CA, and a standalone door (``etcdz grpc-gateway``) on https://
without client certificates in front of them. With auth enabled, a client certificate's Common
Name is the user of a request without a token (etcd's "CommonName as user"); a token wins; a
follower passes such a client's lease calls on to the leader. A start with an https:// URL and
no certificate stops at once, naming the flag."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from proto_schemas.etcdpb import rpc_pb2
from tools.cluster import LocalCluster, free_port
from tools.pki import Pki, issue

ETCDCTL = shutil.which("etcdctl")
USER = "alice"  # the client certificate's Common Name, a user once auth is enabled
MEMBERS = 3  # a leader and followers: lease calls are the leader's


@dataclass
class Doors:
    cluster: LocalCluster
    pki: Pki
    member: str  # host:port of the first member's door: TLS, client certificates required
    standalone: str  # host:port of the standalone door: TLS, no client certificates
    members: list[str]  # host:port of every member's door


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    root = tmp_path_factory.mktemp("grpc-tls")
    pki = issue(str(root / "pki"), [USER, "stranger"])
    tls = [
        *("--grpc-cert-file", pki.server_cert, "--grpc-key-file", pki.server_key),
        *("--grpc-trusted-ca-file", pki.ca, "--grpc-client-cert-auth"),
    ]
    cluster = LocalCluster(str(root / "cluster"), MEMBERS, grpc=True, extra_args=tls)
    for m in cluster.members:  # each member's door on https://
        for name in ("ETCDZ_LISTEN_GRPC_URLS", "ETCDZ_ADVERTISE_GRPC_URLS"):
            m.env[name] = m.env[name].replace("http://", "https://")
    members = [m.grpc_url.removeprefix("https://") for m in cluster.members]
    cluster.start()
    try:
        cluster.wait_ready(timeout=60)
        standalone = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "ETCDZ_GRPC_CERT_FILE": pki.server_cert, "ETCDZ_GRPC_KEY_FILE": pki.server_key}
        with open(root / "door.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "actors.supervisor", "grpc-gateway"]
                + ["--endpoints", ",".join(cluster.endpoints), "--listen-grpc-urls", f"https://{standalone}"],
                stderr=log,
                env=env,
            )
        try:
            yield Doors(cluster, pki, members[0], standalone, members)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        cluster.stop()


def etcdctl(endpoint: str, *args: str, tls: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    if ETCDCTL is None:
        pytest.skip("etcdctl not installed")
    argv = [ETCDCTL, f"--endpoints=https://{endpoint}", "--dial-timeout=3s", "--command-timeout=5s", *tls]
    env = {**os.environ, "ETCDCTL_API": "3"}
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, env=env)


def until_served(endpoint: str, tls: tuple[str, ...], limit_s: float = 30.0) -> None:
    """Until the door answers (a standalone door may still be starting)."""
    deadline = time.monotonic() + limit_s
    while etcdctl(endpoint, "get", "ready", tls=tls).returncode != 0:
        assert time.monotonic() < deadline, f"no answer from https://{endpoint}"
        time.sleep(0.5)


def channel(endpoint: str, pki: Pki, user: str = "", root_certs: bool = True) -> grpc.Channel:
    cert = key = None
    if user:
        cert, key = (Path(p).read_bytes() for p in pki.clients[user])
    ca = Path(pki.ca).read_bytes() if root_certs else None
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(endpoint, creds)


def put(chan: grpc.Channel, key: bytes, value: bytes, token: str = "") -> rpc_pb2.PutResponse:
    metadata = [("token", token)] if token else None
    raw = chan.unary_unary("/etcdserverpb.KV/Put")(
        rpc_pb2.PutRequest(key=key, value=value).SerializeToString(), timeout=10, metadata=metadata
    )
    return rpc_pb2.PutResponse.FromString(raw)


def test_etcdctl_puts_and_gets_over_tls_with_the_ca_and_fails_without_it(doors: Doors) -> None:
    """The standalone door serves TLS with the server certificate: etcdctl trusting the CA is
    served; without --cacert it cannot verify the server and fails, as against etcd."""
    ca = ("--cacert", doors.pki.ca)
    until_served(doors.standalone, ca)
    assert etcdctl(doors.standalone, "put", "tls/k", "v1", tls=ca).stdout == "OK\n"
    assert etcdctl(doors.standalone, "get", "tls/k", tls=ca).stdout == "tls/k\nv1\n"
    refused = etcdctl(doors.standalone, "get", "tls/k")
    assert refused.returncode != 0 and "context deadline exceeded" in refused.stderr
    with channel(doors.standalone, doors.pki, root_certs=False) as untrusting:
        with pytest.raises(grpc.RpcError) as failed:
            put(untrusting, b"tls/x", b"1")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value.details())
    with grpc.insecure_channel(doors.standalone) as plain, pytest.raises(grpc.RpcError):
        put(plain, b"tls/x", b"1")  # no plaintext on an https:// URL


def test_client_certificate_auth_refuses_a_client_without_one_at_the_handshake(doors: Doors) -> None:
    ca = ("--cacert", doors.pki.ca)
    mine = (*ca, "--cert", doors.pki.clients[USER][0], "--key", doors.pki.clients[USER][1])
    refused = etcdctl(doors.member, "get", "tls/k", tls=ca)
    assert refused.returncode != 0 and "context deadline exceeded" in refused.stderr
    assert etcdctl(doors.member, "put", "tls/m", "v2", tls=mine).stdout == "OK\n"
    assert etcdctl(doors.member, "get", "tls/m", tls=mine).stdout == "tls/m\nv2\n"
    with channel(doors.member, doors.pki) as anonymous:
        with pytest.raises(grpc.RpcError) as failed:
            put(anonymous, b"tls/x", b"1")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    with channel(doors.member, doors.pki, user=USER) as known:
        assert put(known, b"tls/py", b"1").header.revision > 0


def test_with_auth_the_client_certificates_common_name_is_the_user(doors: Doors) -> None:
    """etcd's rule: no token, auth enabled -> the verified certificate's Common Name is the
    user; a token (--user) wins. It leaves auth enabled for the next test."""
    ca = ("--cacert", doors.pki.ca)
    alice = (*ca, "--cert", doors.pki.clients[USER][0], "--key", doors.pki.clients[USER][1])
    stranger = (*ca, "--cert", doors.pki.clients["stranger"][0], "--key", doors.pki.clients["stranger"][1])
    for step in (
        ["user", "add", "root:rootpw"],
        ["role", "add", "root"],
        ["user", "grant-role", "root", "root"],
        ["role", "add", "app"],
        ["role", "grant-permission", "app", "readwrite", "app/", "--prefix=true"],
        ["user", "add", USER, "--no-password"],
        ["user", "grant-role", USER, "app"],
        ["auth", "enable"],
    ):
        done = etcdctl(doors.member, *step, tls=alice)
        assert done.returncode == 0, (step, done.stderr)
    assert etcdctl(doors.member, "put", "app/x", "1", tls=alice).stdout == "OK\n"
    assert etcdctl(doors.member, "get", "app/x", "--print-value-only", tls=alice).stdout == "1\n"
    for denied in (["put", "other", "1"], ["get", "other"], ["user", "list"]):
        out = etcdctl(doors.member, *denied, tls=alice)
        assert out.returncode != 0 and "Error: etcdserver: permission denied" in out.stderr, denied
    # a certificate whose name is no user is denied too (etcd: no such user to check)
    out = etcdctl(doors.member, "get", "app/x", tls=stranger)
    assert "Error: etcdserver: permission denied" in out.stderr
    # a token wins over the certificate's name: root may write anywhere, a wrong password fails
    assert etcdctl(doors.member, "--user", "root:rootpw", "put", "other", "1", tls=alice).stdout == "OK\n"
    wrong = etcdctl(doors.member, "--user", "root:nope", "put", "other", "1", tls=alice)
    assert "authentication failed" in wrong.stderr
    # a watch checks the name at the member's watch hub, on the token's path
    watch = etcdctl(doors.member, "watch", "other", "--rev=1", tls=alice)
    # etcd's words, which etcdctl prints: the gRPC error's text as the cancel reason
    canceled = "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)"
    assert canceled in watch.stdout + watch.stderr
    with channel(doors.member, doors.pki, user=USER) as known:
        assert put(known, b"app/py", b"1").header.revision > 0
        with pytest.raises(grpc.RpcError) as failed:
            put(known, b"other", b"1")
    assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert failed.value.details() == "etcdserver: permission denied"


def status(endpoint: str, pki: Pki) -> rpc_pb2.StatusResponse:
    with channel(endpoint, pki, user=USER) as chan:
        raw = chan.unary_unary("/etcdserverpb.Maintenance/Status")(
            rpc_pb2.StatusRequest().SerializeToString(), timeout=10
        )
    return rpc_pb2.StatusResponse.FromString(raw)


def test_a_certificate_alone_keeps_a_lease_alive_and_asks_its_time_through_a_follower(doors: Doors) -> None:
    """Auth on (the test before), no token, no members' key pair: a follower checks the
    certificate's user itself and passes keep-alives and time-to-lives on to the leader's lease
    expirer on its peer port, as etcd's followers do; a time-to-live's keys are checked against
    the user here. A certificate naming no user is still denied."""
    ca = ("--cacert", doors.pki.ca)
    alice = (*ca, "--cert", doors.pki.clients[USER][0], "--key", doors.pki.clients[USER][1])
    stranger = (*ca, "--cert", doors.pki.clients["stranger"][0], "--key", doors.pki.clients["stranger"][1])
    follower = next(d for d in doors.members if (s := status(d, doors.pki)).leader != s.header.member_id)
    granted = etcdctl(follower, "lease", "grant", "60", tls=alice)
    assert granted.returncode == 0, granted.stderr
    lease = granted.stdout.split()[1]  # "lease 694d79ada4e6c82c granted with TTL(60s)"
    assert etcdctl(follower, "put", "--lease", lease, "app/leased", "1", tls=alice).stdout == "OK\n"
    kept = etcdctl(follower, "lease", "keep-alive", "--once", lease, tls=alice)
    assert kept.stdout == f"lease {lease} keepalived with TTL(60)\n", kept.stderr
    ttl = etcdctl(follower, "lease", "timetolive", lease, tls=alice)
    assert ttl.stdout.startswith(f"lease {lease} granted with TTL(60s), remaining("), ttl.stderr
    keys = etcdctl(follower, "lease", "timetolive", "--keys", lease, tls=alice)
    assert keys.stdout.endswith("attached keys([app/leased])\n"), keys.stderr
    for call in (["keep-alive", "--once", lease], ["timetolive", lease]):
        out = etcdctl(follower, "lease", *call, tls=stranger)
        assert out.returncode != 0 and "etcdserver: permission denied" in out.stderr, (call, out)


def test_an_https_url_without_a_certificate_stops_the_start_naming_the_flag(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "actors.supervisor", "--data-dir", str(tmp_path / "d")]
    argv += ["--listen-grpc-urls", f"https://127.0.0.1:{free_port()}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--grpc-cert-file" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "d").exists()  # nothing was started
