"""The services of an etcdz deployment, declared once.

``compose()`` renders them as a docker-compose document (``deploy/docker-compose.yml`` is its
output for 3 members and 2 watch hubs: ``python -m tools.cluster compose``), and
``on_loopback()`` turns such a document into processes on 127.0.0.1 — the launcher and every
cluster test start members from it, so what the compose file declares is what the tests run.

In a container every service has its own network namespace: members all listen on the same
ports and find each other by service name. On loopback each (service, port) pair gets a port
of its own and every host name becomes 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLIENT, PEER, WATCH, EVENTS, METRICS, GRPC = 2379, 2380, 2381, 2382, 2383, 2384
DATA_DIR = "/var/lib/etcdz/data"  # inside the volume, so that a restore can create it afresh
VOLUME = "/var/lib/etcdz"
TOKEN = "etcd-cluster"
IMAGE = "etcdz:latest"
BUILD = {"context": "..", "dockerfile": "deploy/Dockerfile"}  # every service: nothing to pull
HUB = "watch-hub"
PUBLISHED_CLIENT = [2379, 22379, 32379]  # host ports of the members' client URLs (etcd's habit)
PUBLISHED_GRPC = [2384, 22384, 32384]  # host ports of the members' gRPC URLs (etcd's API)
PUBLISHED_HUBS = (2381, 2389)  # host port range the hub replicas are published on


def member_name(index: int) -> str:
    return f"etcdz-{index + 1}"


def initial_cluster(names: list[str]) -> str:
    return ",".join(f"{name}=tcp://{name}:{PEER}" for name in names)


def member(
    name: str,
    cluster: str,
    *,
    hubs: int = 0,
    metrics: bool = True,
    grpc: bool = True,
    state: str = "new",
    join: str = "",
) -> dict[str, Any]:
    """One member's service: its own volume, etcd-style flags as ``ETCDZ_*`` variables.
    With ``join`` (client URLs of a running cluster) it adds itself (``etcdz --join``) instead
    of naming an initial cluster."""
    env = {
        "ETCDZ_NAME": name,
        "ETCDZ_DATA_DIR": DATA_DIR,
        "ETCDZ_LISTEN_CLIENT_URLS": f"tcp://0.0.0.0:{CLIENT}",
        "ETCDZ_ADVERTISE_CLIENT_URLS": f"tcp://{name}:{CLIENT}",
        "ETCDZ_LISTEN_PEER_URLS": f"tcp://0.0.0.0:{PEER}",
        "ETCDZ_INITIAL_ADVERTISE_PEER_URLS": f"tcp://{name}:{PEER}",
        "ETCDZ_INITIAL_CLUSTER": cluster,
        "ETCDZ_INITIAL_CLUSTER_TOKEN": TOKEN,
        "ETCDZ_INITIAL_CLUSTER_STATE": state,
        # An example deployment, open anyway (no auth, no keys: see deploy/README.md): hubs
        # announce and subscribe to the events unproven.
        "ETCDZ_EXPERIMENTAL_ALLOW_UNAUTHENTICATED_HUBS": "true",
        "ETCDZ_LISTEN_EVENTS_URLS": f"tcp://0.0.0.0:{EVENTS}",
        "ETCDZ_ADVERTISE_EVENTS_URLS": f"tcp://{name}:{EVENTS}",
        "ETCDZ_WATCH_HUBS": str(hubs),
    }
    if join:
        del env["ETCDZ_INITIAL_CLUSTER"], env["ETCDZ_INITIAL_CLUSTER_STATE"]
        env["ETCDZ_JOIN"] = join
    if hubs:
        env["ETCDZ_LISTEN_WATCH_URLS"] = f"tcp://0.0.0.0:{WATCH}"
        env["ETCDZ_ADVERTISE_WATCH_URLS"] = f"tcp://{name}:{WATCH}"
    if metrics:
        env["ETCDZ_LISTEN_METRICS_URLS"] = f"http://0.0.0.0:{METRICS}"
    if grpc:
        env["ETCDZ_LISTEN_GRPC_URLS"] = f"http://0.0.0.0:{GRPC}"
        env["ETCDZ_ADVERTISE_GRPC_URLS"] = f"http://{name}:{GRPC}"
    return {
        "image": IMAGE,
        "build": dict(BUILD),
        "hostname": name,
        "environment": env,
        "volumes": [f"{name}:{VOLUME}"],
    }


def hub(names: list[str], replicas: int) -> dict[str, Any]:
    """Watch hubs: one definition for every replica (each advertises its own address)."""
    return {
        "image": IMAGE,
        "build": dict(BUILD),
        "command": ["watch-hub"],
        "environment": {
            "ETCDZ_NAME": HUB,
            "ETCDZ_ENDPOINTS": ",".join(f"tcp://{n}:{CLIENT}" for n in names),
            "ETCDZ_BACKEND_EVENTS": ",".join(f"tcp://{n}:{EVENTS}" for n in names),
            "ETCDZ_LISTEN_WATCH_URLS": f"tcp://0.0.0.0:{WATCH}",
        },
        "depends_on": list(names),
        "deploy": {"replicas": replicas},
        "ports": [f"{PUBLISHED_HUBS[0]}-{PUBLISHED_HUBS[1]}:{WATCH}"],
        "healthcheck": {"disable": True},
    }


def compose(
    members: int = 3, hubs: int = 2, *, member_hubs: int = 0, metrics: bool = True, grpc: bool = True
) -> dict[str, Any]:
    """The deployment: ``members`` members (each running ``member_hubs`` hubs of its own) and a
    hub service of ``hubs`` replicas (none when 0)."""
    names = [member_name(i) for i in range(members)]
    cluster = initial_cluster(names)
    services: dict[str, Any] = {}
    for i, name in enumerate(names):
        services[name] = member(name, cluster, hubs=member_hubs, metrics=metrics, grpc=grpc)
        if i < len(PUBLISHED_CLIENT):
            services[name]["ports"] = [f"{PUBLISHED_CLIENT[i]}:{CLIENT}"]
            if grpc:
                services[name]["ports"].append(f"{PUBLISHED_GRPC[i]}:{GRPC}")
    if hubs:
        services[HUB] = hub(names, hubs)
    return {"name": "etcdz", "services": services, "volumes": {name: {} for name in names}}


# -- on loopback ------------------------------------------------------------------------------
@dataclass
class Process:
    """One service instance as a local process: ``etcdz`` + ``command`` with ``env``."""

    instance: str  # the service name, or service-N for a replica
    command: list[str]
    env: dict[str, str]


def instances(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(instance, service) for every process the document runs, in its order."""
    found = []
    for service, spec in doc["services"].items():
        replicas = int(spec.get("deploy", {}).get("replicas", 1))
        found += [(service if replicas == 1 else f"{service}-{r + 1}", service) for r in range(replicas)]
    return found


_URL = re.compile(r"(tcp|http)://([A-Za-z0-9_.-]+):(\d+)")


def on_loopback(doc: dict[str, Any], root: str, port: Callable[[str, int], int]) -> list[Process]:
    """The document's services as processes on 127.0.0.1: a URL naming a service (or 0.0.0.0,
    the instance itself) points at ``port(instance, container port)``, the data dir moves
    under ``root``. A scaled service must not be named in URLs (its replicas are many)."""
    runs = []
    for instance, service in instances(doc):
        spec = doc["services"][service]

        def local(m: re.Match[str], instance: str = instance) -> str:
            host = instance if m.group(2) == "0.0.0.0" else m.group(2)
            return f"{m.group(1)}://127.0.0.1:{port(host, int(m.group(3)))}"

        env = {}
        for key, value in spec.get("environment", {}).items():
            value = _URL.sub(local, str(value))
            env[key] = os.path.join(root, instance) if value == DATA_DIR else value
        runs.append(Process(instance=instance, command=list(spec.get("command", [])), env=env))
    return runs


HEADER = """\
# etcdz: a 3-member cluster and a watch hub service scaled on its own.
#   docker compose -f deploy/docker-compose.yml up -d
#   docker compose -f deploy/docker-compose.yml up -d --scale watch-hub=4
# Rendered from tools/topology.py (python -m tools.cluster compose > deploy/docker-compose.yml):
# the launcher and the tests start these same services on loopback. See deploy/README.md.
"""


def render(doc: dict[str, Any]) -> str:
    """The document as YAML (block style, every string quoted: no YAML surprise such as a
    port pair read as a base-60 number)."""
    lines: list[str] = []

    def emit(value: Any, indent: int) -> None:
        pad = "  " * indent
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:")
                emit(item, indent + 1)
            elif isinstance(item, list):
                lines.append(f"{pad}{key}:")
                lines.extend(f"{pad}  - {json.dumps(x)}" for x in item)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")

    emit(doc, 0)
    return HEADER + "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{}"
    return str(value) if isinstance(value, int) else json.dumps(value)
