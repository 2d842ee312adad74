"""The deployment of tools/topology.py as Kubernetes manifests (``deploy/kubernetes/etcdz.yaml``
is ``python -m tools.cluster kubernetes``), and those manifests back as a compose document, so
that the tests boot on loopback exactly what a cluster would run.

- Members: a StatefulSet (``etcdz-0``, ``etcdz-1``, ... reachable as ``etcdz-N.etcdz`` through
  the headless Service ``etcdz``), one PersistentVolumeClaim each for the data dir, ready when
  ``/readyz`` says so (``/health``, and not a learner: the client Service sends clients only to
  members that take writes), and a PodDisruptionBudget that never lets voluntary evictions take the
  cluster below a quorum. Every replica runs the same member service as compose
  (``topology.member``) with ``--join`` on the client Service: the first replicas, named in
  ``--initial-cluster``, bootstrap the cluster; a replica added by scaling up adds itself as a
  learner that the leader promotes once caught up. Scaling down is a documented step (remove
  the member, then scale): a preStop hook cannot tell a scale-down from a rolling restart.
- Watch hubs: a Deployment with a HorizontalPodAutoscaler on CPU (hubs scale on their own, as
  the compose service does); each subscribes to the initial members' event streams.
- Clients: the Service ``etcdz-client`` (client API and etcd's gRPC API of ready members).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tools import topology

APP = "etcdz"
HEADLESS = "etcdz"  # the StatefulSet's governing Service: pods are etcdz-N.etcdz
CLIENT_SERVICE = "etcdz-client"
HUBS = "etcdz-watch-hub"
STORAGE = "1Gi"
LABELS = {"app.kubernetes.io/name": APP}


def member_name(index: int) -> str:
    return f"{APP}-{index}"  # the StatefulSet's pod names


def host(name: str) -> str:
    return f"{name}.{HEADLESS}"


def _labels(component: str) -> dict[str, str]:
    return {**LABELS, "app.kubernetes.io/component": component}


def _env(env: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in env.items()]


def _ports(named: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": n, "containerPort": p} for n, p in named.items()]


def quorum(members: int) -> int:
    return members // 2 + 1


def manifests(members: int = 3, hubs: int = 2, max_hubs: int = 10) -> list[dict[str, Any]]:
    names = [member_name(i) for i in range(members)]
    cluster = ",".join(f"{n}=tcp://{host(n)}:{topology.PEER}" for n in names)
    join = f"tcp://{CLIENT_SERVICE}:{topology.CLIENT}"
    pod = "$(POD_NAME)"  # Kubernetes expands it from the variable defined before
    spec = topology.member(pod, cluster, join=join)
    env = {k: v.replace(f"//{pod}:", f"//{host(pod)}:") for k, v in spec["environment"].items()}
    env["ETCDZ_INITIAL_CLUSTER"] = cluster  # with --join: who bootstraps, the others join
    member_ports = {
        "client": topology.CLIENT,
        "peer": topology.PEER,
        "events": topology.EVENTS,
        "metrics": topology.METRICS,
        "grpc": topology.GRPC,
    }
    security = {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "runAsNonRoot": True}
    member_container = {
        "name": "etcdz",
        "image": topology.IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, *_env(env)],
        "ports": _ports(member_ports),
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},  # /health, and not a learner
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": "data", "mountPath": topology.VOLUME}],
    }
    hub_spec = topology.hub([host(n) for n in names], hubs)
    hub_container = {
        "name": "watch-hub",
        "image": topology.IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": hub_spec["command"],
        "env": _env(hub_spec["environment"]),
        "ports": _ports({"watch": topology.WATCH}),
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},  # the autoscaler's base
    }
    member_labels, hub_labels = _labels("member"), _labels("watch-hub")
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": HEADLESS, "labels": member_labels},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,  # peers find each other before any is ready
                "selector": member_labels,
                "ports": [{"name": n, "port": p, "targetPort": n} for n, p in member_ports.items()],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": CLIENT_SERVICE, "labels": member_labels},
            "spec": {
                "selector": member_labels,
                "ports": [
                    {"name": "client", "port": topology.CLIENT, "targetPort": "client"},
                    {"name": "grpc", "port": topology.GRPC, "targetPort": "grpc"},
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": APP, "labels": member_labels},
            "spec": {
                "serviceName": HEADLESS,
                "replicas": members,
                "podManagementPolicy": "Parallel",  # the initial members must meet to elect
                "selector": {"matchLabels": member_labels},
                "template": {
                    "metadata": {"labels": member_labels},
                    "spec": {"securityContext": security, "containers": [member_container]},
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": STORAGE}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": APP, "labels": member_labels},
            "spec": {"minAvailable": quorum(members), "selector": {"matchLabels": member_labels}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": HUBS, "labels": hub_labels},
            "spec": {
                "replicas": hubs,
                "selector": {"matchLabels": hub_labels},
                "template": {
                    "metadata": {"labels": hub_labels},
                    "spec": {"securityContext": security, "containers": [hub_container]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": HUBS, "labels": hub_labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": HUBS},
                "minReplicas": hubs,
                "maxReplicas": max(max_hubs, hubs),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        },
    ]


# -- back to a compose document, for loopback ---------------------------------------------------
_HOST = re.compile(rf"//([a-z0-9-]+)\.{HEADLESS}:")


def as_compose(docs: list[dict[str, Any]], replicas: int | None = None) -> dict[str, Any]:
    """The manifests as the compose document ``topology.on_loopback`` boots: one member service
    per StatefulSet replica (``replicas`` overrides the count: a scaled-up set) with the pod
    template's environment as Kubernetes expands it, the client Service standing for every
    member's client URL, and the hub Deployment as a scaled service."""
    kinds = {d["kind"]: d for d in docs}
    sts = kinds["StatefulSet"]
    count = sts["spec"]["replicas"] if replicas is None else replicas
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    names = [member_name(i) for i in range(count)]
    everyone = ",".join(f"tcp://{n}:{topology.CLIENT}" for n in names)

    def local(value: str, pod: str) -> str:
        value = value.replace("$(POD_NAME)", pod)
        value = value.replace(f"tcp://{CLIENT_SERVICE}:{topology.CLIENT}", everyone)
        return _HOST.sub(r"//\1:", value)

    services: dict[str, Any] = {}
    for name in names:
        env = {e["name"]: local(e["value"], name) for e in container["env"] if "value" in e}
        services[name] = {"environment": env}
    (hub,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    services[HUBS] = {
        "command": list(hub["args"]),
        "environment": {e["name"]: local(e["value"], "") for e in hub["env"]},
        "deploy": {"replicas": kinds["Deployment"]["spec"]["replicas"]},
    }
    return {"services": services}


# -- rendering ---------------------------------------------------------------------------------
HEADER = """\
# etcdz on Kubernetes: a 3-member StatefulSet, watch hubs scaled by an autoscaler, a client Service.
#   kubectl apply -f deploy/kubernetes/etcdz.yaml
# Rendered from tools/topology.py (python -m tools.cluster kubernetes > deploy/kubernetes/etcdz.yaml),
# the same services as deploy/docker-compose.yml; the tests boot them on loopback. Adding,
# removing and replacing members: docs/operations.md.
"""


def render(docs: list[dict[str, Any]]) -> str:
    """Block-style YAML, one document per manifest; every string quoted (JSON scalars are YAML)."""
    lines: list[str] = []

    def emit(value: Any, indent: int, first_prefix: str = "") -> None:
        pad = "  " * indent
        for i, (key, item) in enumerate(value.items()):
            lead = first_prefix if i == 0 and first_prefix else pad
            if isinstance(item, dict) and item:
                lines.append(f"{lead}{key}:")
                emit(item, indent + 1)
            elif isinstance(item, list) and item:
                lines.append(f"{lead}{key}:")
                for x in item:
                    if isinstance(x, dict):
                        emit(x, indent + 2, f"{pad}  - ")
                    else:
                        lines.append(f"{pad}  - {json.dumps(x)}")
            else:
                lines.append(f"{lead}{key}: {json.dumps(item)}")

    for doc in docs:
        lines.append("---")
        emit(doc, 0)
    return HEADER + "\n".join(lines) + "\n"
