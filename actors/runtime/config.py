"""The configuration of one node, as the supervisor resolved it from flags and environment.

The supervisor writes it once per start as JSON into the node's run directory; every actor reads
the same file, so all actors of a node agree on identities, limits and socket addresses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field

from actors.auth.jwt import JwtOptions
from actors.runtime import curve
from actors.runtime.curve import Curve

ACTORS = ("wal", "raft", "mvcc", "apply", "lease", "gateway")
IPC_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux; keep a margin


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    name: str
    data_dir: str
    member_id: int
    cluster_id: int
    listen_client_urls: list[str]
    advertise_client_urls: list[str]
    listen_peer_urls: list[str] = field(default_factory=list)
    initial_advertise_peer_urls: list[str] = field(default_factory=list)
    initial_cluster: dict[str, list[str]] = field(default_factory=dict)  # name -> peer urls
    peers: dict[int, str] = field(default_factory=dict)  # member id -> name
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: float = 0.0  # seconds (periodic) or revisions (revision); 0: off
    initial_corrupt_check: bool = False
    corrupt_check_ms: int = 0  # the leader's periodic check (0: off)
    quota_backend_bytes: int = 2 * 1024**3
    max_request_bytes: int = 1536 * 1024
    max_txn_ops: int = 128
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5000
    heartbeat_interval_ms: int = 100
    group_commit_delay_ms: int = 5  # actors/raft/group_commit.py (0: off)
    group_commit_siblings: int = 4
    election_timeout_ms: int = 1000
    request_timeout_ms: int = 7000
    auto_promote_max_lag: int = 1000  # entries a learner may be behind and still be promoted
    auto_promote_after_ms: int = 1000  # how long it must have stayed that close
    join: list[str] = field(default_factory=list)  # client URLs of a cluster to add ourselves to
    join_may_bootstrap: bool = False  # named in --initial-cluster: bootstrap it if nobody answers
    max_gap_committed_applied: int = 5000
    wal_segment_bytes: int = 64 * 1024**2
    listen_watch_urls: list[str] = field(default_factory=list)
    advertise_watch_urls: list[str] = field(default_factory=list)
    listen_events_urls: list[str] = field(default_factory=list)  # tcp, for hubs on other hosts
    advertise_events_urls: list[str] = field(default_factory=list)
    watch_hubs: int = 1
    watch_limits: dict[str, int] = field(default_factory=dict)  # HubConfig's bounds (flags.watch_limits)
    max_client_inflight: int = 1000  # requests per client connection at the gateway
    max_client_inflight_bytes: int = 64 << 20
    allow_unauthenticated_hubs: bool = False  # hubs may announce over the client port unproven
    listen_metrics_urls: list[str] = field(default_factory=list)  # http://host:port
    listen_grpc_urls: list[str] = field(default_factory=list)  # http(s)://host:port: etcd's gRPC API
    advertise_grpc_urls: list[str] = field(default_factory=list)
    grpc_cert_file: str = ""  # PEM: TLS of the https:// gRPC URLs (actors/runtime/tls.py)
    grpc_key_file: str = ""
    grpc_trusted_ca_file: str = ""
    grpc_client_cert_auth: bool = False
    watch_progress_notify_ms: int = 600_000
    auth_token_ttl_s: int = 300
    auth_jwt: JwtOptions | None = None  # --auth-token jwt,...; None: simple tokens
    key_file: str = ""  # Curve pair for the client endpoints (gateway, hubs, event stream)
    client_cert_auth: bool = False
    trusted_keys_dir: str = ""
    peer_key_file: str = ""  # Curve pair shared by the members' peer mesh
    peer_client_cert_auth: bool = False
    peer_trusted_keys_dir: str = ""
    log_format: str = "json"
    log_level: str = "info"
    socket_dir: str = ""

    @property
    def wal_dir(self) -> str:
        return os.path.join(self.data_dir, "member", "wal")

    @property
    def snap_dir(self) -> str:
        return os.path.join(self.data_dir, "member", "snap")

    @property
    def db_dir(self) -> str:
        return os.path.join(self.data_dir, "member", "db")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.data_dir, "run")

    def heartbeat_path(self, actor: str) -> str:
        """The file an actor's loop touches every second (the supervisor's sign that it is
        not hung: see actors/supervisor/census.py)."""
        return os.path.join(self.run_dir, "alive", actor)

    @property
    def census_path(self) -> str:
        """The supervisor's report on its actors (up, restarts, causes), for the metrics process."""
        return os.path.join(self.run_dir, "census.cbor")

    @property
    def election_tick(self) -> int:
        return max(2, self.election_timeout_ms // self.heartbeat_interval_ms)

    @property
    def min_lease_ttl(self) -> int:
        """etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds (rounded up), so a
        lease can outlive a leader election."""
        return max(1, -(-3 * self.election_timeout_ms // 2000))

    def inbox(self, actor: str) -> str:
        """The ipc:// address an actor's inbox binds and the others connect to."""
        return f"ipc://{os.path.join(self.socket_dir, actor)}.sock"

    def client_curve(self) -> Curve | None:
        return curve.for_node(self.key_file, self.client_cert_auth, self.trusted_keys_dir)

    def events_curve(self) -> Curve | None:
        """The event stream's: only the members' own key pair may subscribe (the node's hubs
        and hubs elsewhere that hold it), never a client's key, trusted or not."""
        served = self.client_curve()
        if served is None:
            return None
        return dataclasses.replace(served, allowed=frozenset({served.pair.public}))

    def peer_curve(self) -> Curve | None:
        return curve.for_node(self.peer_key_file, self.peer_client_cert_auth, self.peer_trusted_keys_dir)

    @property
    def local_client_url(self) -> str:
        """The gateway's socket for the node's own clients (its watch hubs): inside the
        private socket directory, so whoever reaches it is this node."""
        return f"ipc://{os.path.join(self.socket_dir, 'clients')}.sock"

    @property
    def events_url(self) -> str:
        """The backend's event stream inside the node (hubs of this node subscribe here)."""
        return f"ipc://{os.path.join(self.socket_dir, 'events')}.sock"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        raw = json.loads(text)
        raw["peers"] = {int(k): v for k, v in raw.get("peers", {}).items()}
        if raw.get("auth_jwt"):
            raw["auth_jwt"] = JwtOptions(**raw["auth_jwt"])
        return cls(**raw)

    @classmethod
    def load(cls, path: str) -> NodeConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


def socket_dir_for(data_dir: str) -> str:
    """A private directory for the node's ipc sockets: inside the data dir when the path fits
    in a unix socket address, else a per-data-dir directory under the system temp dir."""
    inside = os.path.join(os.path.abspath(data_dir), "run", "sock")
    if len(inside) + len("/gateway.sock") <= IPC_PATH_LIMIT:
        return inside
    digest = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"etcdz-{digest}")


def member_id_for(name: str, peer_urls: list[str], token: str) -> int:
    """A member id derived as etcd does: from its peer URLs and the cluster token (not random,
    so every member computes the same ids for the initial cluster)."""
    h = hashlib.sha1(("".join(sorted(peer_urls)) + token).encode()).digest()
    return int.from_bytes(h[:8], "big") or 1


def cluster_id_for(member_ids: list[int]) -> int:
    h = hashlib.sha1(b"".join(m.to_bytes(8, "big") for m in sorted(member_ids))).digest()
    return int.from_bytes(h[:8], "big") or 1
