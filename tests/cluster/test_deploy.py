"""deploy/docker-compose.yml: it is what tools/topology.py renders, it uses only flags etcdz
accepts with ports and initial cluster that agree, and its services, booted on loopback by the
launcher, serve: 3 members and 2 watch hubs, a watcher on each hub sees every put.
deploy/kubernetes/etcdz.yaml: rendered from the same topology, valid against Kubernetes'
schemas (kubernetes-validate, offline), and booted on loopback it serves, scales up by a replica
that joins by itself and is promoted, and scales down by the documented step."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from actors.supervisor.flags import FLAGS, env_name, resolve
from actors.watch.__main__ import HUB_FLAGS, standalone
from etcdz import Client
from tools import kubernetes, topology
from tools.cluster import LocalCluster, running
from tools.workload import wait_until

KUBERNETES_VERSION = "1.30"  # the oldest release whose schemas the manifests must pass

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")


def compose_file() -> dict[str, Any]:
    with open(os.path.join(DEPLOY, "docker-compose.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def members_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in doc["services"].items() if "command" not in s}


def test_the_compose_file_is_the_rendered_topology() -> None:
    rendered = topology.render(topology.compose(3, 2))
    assert compose_file() == yaml.safe_load(rendered), (
        "deploy/docker-compose.yml differs from tools/topology.py: "
        "python -m tools.cluster compose > deploy/docker-compose.yml"
    )


def test_members_use_only_flags_etcdz_accepts_and_agree_with_each_other() -> None:
    doc = compose_file()
    members = members_of(doc)
    assert len(members) == 3
    configs = {}
    for name, service in members.items():
        env = service["environment"]
        assert set(env) <= {env_name(f) for f in FLAGS}, set(env) - {env_name(f) for f in FLAGS}
        config = resolve([], environ=env)  # what `etcdz` makes of it (raises if inconsistent)
        assert config.name == name == service["hostname"]
        configs[name] = config
        listening = {int(u.rsplit(":", 1)[1]) for u in _listen_urls(env)}
        for mapping in service.get("ports", []):
            assert int(mapping.split(":")[-1]) in listening, mapping
        volume, target = service["volumes"][0].split(":")
        assert volume in doc["volumes"] and config.data_dir.startswith(target + "/")
    for config in configs.values():
        assert set(config.initial_cluster) == set(members)
        for other, urls in config.initial_cluster.items():
            assert urls == configs[other].initial_advertise_peer_urls
        assert config.cluster_id == next(iter(configs.values())).cluster_id
    published = [p.split(":")[0] for s in members.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)) == 6  # client and gRPC ports of each member


def test_the_hub_service_uses_only_hub_flags_and_names_every_member() -> None:
    doc = compose_file()
    members = members_of(doc)
    hub = doc["services"][topology.HUB]
    env = hub["environment"]
    assert hub["command"] == ["watch-hub"] and hub["deploy"]["replicas"] == 2
    assert set(env) <= {env_name(f) for f in HUB_FLAGS}
    config = standalone([], env)
    assert config.endpoints == [m["environment"]["ETCDZ_ADVERTISE_CLIENT_URLS"] for m in members.values()]
    assert config.events_urls == [m["environment"]["ETCDZ_ADVERTISE_EVENTS_URLS"] for m in members.values()]
    assert set(hub["depends_on"]) == set(members)
    (mapping,) = hub["ports"]
    assert int(mapping.split(":")[-1]) == int(config.listen_urls[0].rsplit(":", 1)[1])
    assert config.advertise_urls and "0.0.0.0" not in config.advertise_urls[0]  # this host's address


def test_the_image_runs_as_a_user_with_a_volume_and_a_health_check() -> None:
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    assert re.search(r"^USER etcdz$", dockerfile, re.M)
    assert re.search(rf"^VOLUME {topology.VOLUME}$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*etcdzctl.*endpoint.*health", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["etcdz"\]$', dockerfile, re.M)
    exposed = {int(p) for p in re.search(r"^EXPOSE (.*)$", dockerfile, re.M).group(1).split()}  # type: ignore[union-attr]
    assert {topology.CLIENT, topology.PEER, topology.WATCH, topology.EVENTS, topology.METRICS} <= exposed


def _listen_urls(env: dict[str, str]) -> list[str]:
    return [u for k, v in env.items() if k.startswith("ETCDZ_LISTEN_") for u in v.split(",")]


@pytest.fixture
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("compose")), doc=compose_file()) as cluster:
        yield cluster


def test_the_compose_services_serve_on_loopback(deployed: LocalCluster) -> None:
    """Both hubs deliver every put, made through every member, and go on when the leader stops
    (each hub subscribes to every member's event stream)."""
    assert len(deployed.members) == 3 and len(deployed.hubs) == 2
    assert all(not m.watch_url for m in deployed.members)  # every watcher is on the hub service
    with deployed.client() as c:
        assert sorted(c.watch_hubs()) == sorted(h.watch_url for h in deployed.hubs)
        start = c.put("/deploy/start", "0").header.revision + 1
    with contextlib.ExitStack() as stack:
        watches = {}
        for hub in deployed.hubs:
            c = stack.enter_context(Client(deployed.endpoints, watch_endpoints=[hub.watch_url]))
            watches[hub.name] = stack.enter_context(c.watch("/deploy/k", prefix=True, start_revision=start))
            assert watches[hub.name].created.wait(10) and c.watch_stream().hub == hub.watch_url
        puts = [f"/deploy/k{i:02}" for i in range(40)]
        for i, key in enumerate(puts[:30]):  # through every member in turn
            with deployed.members[i % 3].client(timeout=5) as c:
                c.put(key, str(i))
        leader = deployed.leader()
        deployed.stop(leader)  # the others hold writes through the election, none is refused
        rest = [m for m in deployed.members if m is not leader]
        for i, key in enumerate(puts[30:]):
            with rest[i % 2].client(timeout=5) as c:
                c.put(key, str(i))
        for name, w in watches.items():
            seen: list[str] = []
            deadline = time.monotonic() + 20
            while len(seen) < len(puts) and time.monotonic() < deadline:
                resp = w.get(timeout=1)
                seen += [e.kv.key.decode() for e in resp.events] if resp else []
            assert seen == puts, name


def kubernetes_file() -> list[dict[str, Any]]:
    with open(os.path.join(DEPLOY, "kubernetes", "etcdz.yaml"), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_the_kubernetes_manifests_are_the_rendered_topology_and_valid() -> None:
    # a test dependency (setup.cfg): imported here so that the other tests run without it
    from kubernetes_validate import utils as k8s_schemas

    docs = kubernetes_file()
    assert docs == [
        yaml.safe_load(d) for d in kubernetes.render(kubernetes.manifests(3, 2)).split("---\n")[1:]
    ], (
        "deploy/kubernetes/etcdz.yaml differs from tools/kubernetes.py: "
        "python -m tools.cluster kubernetes > deploy/kubernetes/etcdz.yaml"
    )
    for doc in docs:
        k8s_schemas.validate(doc, KUBERNETES_VERSION, strict=True)
    broken = json_copy(docs[2])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = 5
    with pytest.raises(k8s_schemas.ValidationError):  # the schemas are really checked
        k8s_schemas.validate(broken, KUBERNETES_VERSION, strict=True)
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
    sts = kinds["StatefulSet"]["spec"]
    (member,) = sts["template"]["spec"]["containers"]
    assert member["readinessProbe"]["httpGet"]["path"] == "/readyz"  # /health, and not a learner
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == member["volumeMounts"][0]["name"]
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 2  # a quorum of 3 stays up
    assert (
        kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == kinds["Deployment"]["metadata"]["name"]
    )
    # Every replica runs flags etcdz accepts; the first three bootstrap, a fourth joins.
    doc = kubernetes.as_compose(docs, replicas=4)
    configs = {
        name: resolve([], environ=s["environment"])
        for name, s in doc["services"].items()
        if "command" not in s
    }
    assert [c.join_may_bootstrap for c in configs.values()] == [True, True, True, False]
    assert all(c.join for c in configs.values())
    hub = doc["services"][kubernetes.HUBS]
    assert set(hub["environment"]) <= {env_name(f) for f in HUB_FLAGS}


def json_copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def test_the_kubernetes_topology_serves_on_loopback_and_scales_by_join(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The StatefulSet's replicas as processes: the initial three bootstrap together, the hub
    replicas announce themselves, every member is ready by /readyz; a fourth replica (a
    scale-up) adds itself and is promoted; the documented scale-down removes it first."""
    import urllib.request

    doc = kubernetes.as_compose(kubernetes_file(), replicas=4)
    cluster = LocalCluster(str(tmp_path_factory.mktemp("kubernetes")), doc=doc)
    initial, extra = cluster.members[:3], cluster.members[3]
    try:
        for service in [*initial, *cluster.hubs]:
            cluster.start(service)
        for m in initial:
            cluster.wait_ready(timeout=30, member=m)
        with cluster.client() as c:
            wait_until(lambda: len(c.watch_hubs()) == 2, timeout=30, what="both hubs announced")
            c.put("/k8s/before", "1")
        for m in initial:
            with urllib.request.urlopen(
                m.metrics_url.replace("0.0.0.0", "127.0.0.1") + "/health", timeout=5
            ) as r:
                assert r.status == 200  # the readiness probe's answer
        cluster.start(extra)  # kubectl scale statefulset etcdz --replicas=4

        def four_voters() -> bool:
            with cluster.client() as c:
                members = c.member_list().members
            return len(members) == 4 and not any(m.is_learner for m in members)

        wait_until(four_voters, timeout=90, what="the fourth replica joined and promoted")
        cluster.wait_ready(timeout=30, member=extra)
        with extra.client(timeout=5) as c:
            assert c.get("/k8s/before").kvs[0].value == b"1"
        # Scaling down: remove the member first, then the replica goes (kubectl scale).
        with initial[0].client(timeout=7) as c:
            c.member_remove(extra.member_id)
            assert len(c.member_list().members) == 3
        cluster.stop(extra)
        with cluster.client() as c:
            c.put("/k8s/after", "2")
            assert sorted(m.name for m in c.member_list().members) == ["etcdz-0", "etcdz-1", "etcdz-2"]
    finally:
        cluster.stop()
